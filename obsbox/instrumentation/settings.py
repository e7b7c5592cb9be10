"""Every setting of `obsbox.configure()`, declared once: name, type, default, environment variables, meaning.

>>> from obsbox.instrumentation.settings import resolve
>>> s = resolve({"service_name": "orders"}, environ={"OTEL_TRACES_SAMPLER": "traceidratio",
...                                                  "OTEL_TRACES_SAMPLER_ARG": "0.25"})
>>> (s.service_name, s.sampler, s.sample_ratio, s.endpoint)
('orders', 'traceidratio', 0.25, 'http://127.0.0.1:4318')

Precedence: the argument to `configure()` > the `OBSBOX_*` variable > the standard `OTEL_*` variable > the
default. An invalid value never crashes the service: it produces one warning naming where it came from and the
value used instead, and the next source in line (finally the default) applies. docs/configuration.md is generated
from the table below (`python -m obsbox.instrumentation.settings`), and a test keeps the two in sync.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

_log = logging.getLogger("obsbox")

SAMPLERS = (
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
    "always_on", "always_off", "traceidratio",
)
PROTOCOLS = ("http/protobuf", "grpc")
SIGNALS = ("traces", "metrics", "logs")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


class InvalidSetting(ValueError):
    """A value that cannot be used; the message says what is expected."""


# --- parsers: text or Python value → typed value, or InvalidSetting -------------------------------------------
def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise InvalidSetting("expected a string")
    return v


def _nonempty(v: Any) -> str:
    text = _str(v).strip()
    if not text:
        raise InvalidSetting("expected a non-empty string")
    return text


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = _str(v).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidSetting("expected true or false")


def _int(minimum: int, maximum: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool):
            raise InvalidSetting("expected an integer")
        try:
            n = v if isinstance(v, int) else int(_str(v).strip())
        except ValueError:
            raise InvalidSetting("expected an integer") from None
        if not minimum <= n <= maximum:
            raise InvalidSetting(f"expected an integer from {minimum} to {maximum}")
        return n

    return parse


def _seconds(v: Any, *, from_ms: bool = False) -> float:
    if isinstance(v, bool):
        raise InvalidSetting("expected a number")
    try:
        x = float(v) if isinstance(v, (int, float)) else float(_str(v).strip())
    except ValueError:
        raise InvalidSetting("expected a number" + (" of milliseconds" if from_ms else "")) from None
    if from_ms:
        x /= 1000.0
    if not 0.0 < x < 86400.0 or x != x:
        raise InvalidSetting("expected a positive duration")
    return x


def _ratio(v: Any) -> float:
    if isinstance(v, bool):
        raise InvalidSetting("expected a number from 0 to 1")
    try:
        x = float(v) if isinstance(v, (int, float)) else float(_str(v).strip())
    except ValueError:
        raise InvalidSetting("expected a number from 0 to 1") from None
    if not 0.0 <= x <= 1.0:
        raise InvalidSetting("expected a number from 0 to 1")
    return x


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        text = _str(v).strip().lower()
        if text not in options:
            raise InvalidSetting("expected one of " + ", ".join(options))
        return text

    return parse


def _url(v: Any) -> str:
    text = _str(v).strip().rstrip("/")
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidSetting("expected an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InvalidSetting("expected a valid port in the URL") from None
    return text


def _pairs(v: Any) -> dict[str, str]:
    """W3C-baggage-like "k1=v1,k2=v2" (values URL-decoded), as OTEL_RESOURCE_ATTRIBUTES and _HEADERS use it."""
    if isinstance(v, Mapping):
        return {str(k): str(x) for k, x in v.items()}
    out: dict[str, str] = {}
    for item in _str(v).split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidSetting("expected comma-separated key=value pairs")
        out[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return out


def _exporter(v: Any) -> str:
    """OTEL_*_EXPORTER: a comma list of exporter names; obsbox knows `otlp` and `none` ("none" alone turns it off)."""
    names = {part.strip().lower() for part in _str(v).split(",") if part.strip()}
    unknown = names - {"otlp", "none"}
    if unknown or not names:
        raise InvalidSetting("expected otlp or none" + (f"; {', '.join(sorted(unknown))} is not supported"
                                                        if unknown else ""))
    return "otlp" if "otlp" in names else "none"


def _level(v: Any) -> str:
    text = _str(v).strip().upper()
    if text == "WARN":
        text = "WARNING"
    if text not in ("TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"):
        raise InvalidSetting("expected a log level such as DEBUG, INFO, WARNING")
    return text


def _port(v: Any) -> int:
    return _int(0, 65535)(v)


@dataclass(frozen=True)
class Setting:
    """One setting: the `configure()` keyword, its environment variables and how to read them."""

    name: str
    type: str  # for the docs
    default: Any
    doc: str
    parse: Callable[[Any], Any]
    obsbox_env: str | None = None
    otel_env: tuple[str, ...] = ()
    env_in_ms: bool = False  # environment values are milliseconds (the OTEL_* convention), arguments seconds

    def parse_env(self, text: str) -> Any:
        return _seconds(text, from_ms=True) if self.env_in_ms else self.parse(text)


def _env(name: str) -> str:
    return "OBSBOX_" + name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting("service_name", "str", "unknown_service:python",
            "`service.name` of every span, metric and log (`service_name` in Prometheus and Loki).",
            _nonempty, _env("service_name"), ("OTEL_SERVICE_NAME",)),
    Setting("service_version", "str", None, "`service.version` resource attribute.",
            _nonempty, _env("service_version")),
    Setting("environment", "str", None,
            "`deployment.environment.name` resource attribute (for example production, staging).",
            _nonempty, _env("environment")),
    Setting("resource_attributes", "key=value,...", {},
            "Extra resource attributes; explicit service settings above win over the same keys here.",
            _pairs, _env("resource_attributes"), ("OTEL_RESOURCE_ATTRIBUTES",)),
    Setting("endpoint", "URL", None,
            "OTLP base URL; /v1/traces, /v1/metrics and /v1/logs are appended for http/protobuf. Default "
            "http://127.0.0.1:4318 (http/protobuf) or http://127.0.0.1:4317 (grpc).",
            _url, _env("endpoint"), ("OTEL_EXPORTER_OTLP_ENDPOINT",)),
    *(Setting(f"{signal}_endpoint", "URL", None,
              f"OTLP URL for {signal} only, used as is (nothing appended; a URL without a path posts to /); "
              "overrides `endpoint` for this signal.",
              _url, _env(f"{signal}_endpoint"), (f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT",))
      for signal in SIGNALS),
    Setting("protocol", "http/protobuf or grpc", "http/protobuf",
            "OTLP transport. grpc needs `pip install 'obsbox[grpc]'`; without it obsbox warns and uses "
            "http/protobuf.",
            _choice(PROTOCOLS), _env("protocol"), ("OTEL_EXPORTER_OTLP_PROTOCOL",)),
    Setting("headers", "key=value,...", {}, "Headers sent with every export (for example an API key).",
            _pairs, _env("headers"), ("OTEL_EXPORTER_OTLP_HEADERS",)),
    *(Setting(f"{signal}_headers", "key=value,...", None,
              f"Headers for {signal} exports only; when set they replace `headers` for this signal.",
              _pairs, _env(f"{signal}_headers"), (f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS",))
      for signal in SIGNALS),
    *(Setting(f"{signal}_exporter", "otlp or none", "otlp",
              f"`none`: {signal} are not sent over OTLP at all (no connection, no drops, no warning)"
              + {"traces": "; spans are still created and sampled, so trace ids still reach logs and exemplars.",
                 "metrics": "; the /metrics pull endpoint still serves them.",
                 "logs": "; the console still prints them."}[signal]
              + " A comma list is accepted; other exporters (console, ...) are not supported: one warning, "
              "then otlp.",
              _exporter, _env(f"{signal}_exporter"), (f"OTEL_{signal.upper()}_EXPORTER",))
      for signal in SIGNALS),
    Setting("compression", "none or gzip", "none", "Compression of export bodies.",
            _choice(("none", "gzip")), _env("compression"), ("OTEL_EXPORTER_OTLP_COMPRESSION",)),
    Setting("export_timeout", "seconds", 3.0,
            "Timeout of one export request (environment: milliseconds). Short on purpose: a slow collector "
            "must not hold telemetry back.",
            _seconds, _env("export_timeout"), ("OTEL_EXPORTER_OTLP_TIMEOUT",), env_in_ms=True),
    Setting("sampler", "name", "parentbased_always_on",
            "Trace sampler: " + ", ".join(SAMPLERS) + ".",
            _choice(SAMPLERS), _env("sampler"), ("OTEL_TRACES_SAMPLER",)),
    Setting("sample_ratio", "0..1", 1.0, "Ratio for the traceidratio samplers.",
            _ratio, _env("sample_ratio"), ("OTEL_TRACES_SAMPLER_ARG",)),
    Setting("disabled", "bool", False,
            "Turn all telemetry off: configure() installs nothing and returns a no-op handle.",
            _bool, _env("disabled"), ("OTEL_SDK_DISABLED",)),
    Setting("metric_export_interval", "seconds", 15.0,
            "Interval between metric exports (environment: milliseconds).",
            _seconds, _env("metric_export_interval"), ("OTEL_METRIC_EXPORT_INTERVAL",), env_in_ms=True),
    Setting("max_queue_size", "int", 2048,
            "Spans (and, separately, log records) held for export at most; beyond it new ones are dropped "
            "and counted in obsbox.export.items{export.outcome=\"dropped\"}.",
            _int(1, 10_000_000), _env("max_queue_size"), ("OTEL_BSP_MAX_QUEUE_SIZE",)),
    Setting("max_export_batch_size", "int", 512, "Spans or log records per export request at most.",
            _int(1, 1_000_000), _env("max_export_batch_size"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",)),
    Setting("schedule_delay", "seconds", 1.0,
            "Longest wait before queued spans and logs are exported (environment: milliseconds).",
            _seconds, _env("schedule_delay"), ("OTEL_BSP_SCHEDULE_DELAY",), env_in_ms=True),
    Setting("batch_export_timeout", "seconds", 5.0,
            "Time budget of one batch including its retry (environment: milliseconds).",
            _seconds, _env("batch_export_timeout"), ("OTEL_BSP_EXPORT_TIMEOUT",), env_in_ms=True),
    Setting("metrics_port", "port", None,
            "Also serve Prometheus/OpenMetrics text at GET /metrics on this port (0: any free port).",
            _port, _env("metrics_port")),
    Setting("metrics_host", "host", "127.0.0.1",
            "Address of the /metrics endpoint; 0.0.0.0 exposes it beyond this machine.",
            _nonempty, _env("metrics_host")),
    Setting("console", "bool", True,
            "Print log records to stderr in loguru's readable format (with a short trace id).",
            _bool, _env("console")),
    Setting("log_level", "level", "INFO", "Lowest level printed and exported by the obsbox logger.",
            _level, _env("log_level")),
    Setting("export_logs", "bool", True, "Export log records over OTLP.", _bool, _env("export_logs")),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The resolved values (see SETTINGS for their meaning)."""

    service_name: str
    service_version: str | None
    environment: str | None
    resource_attributes: dict[str, str]
    endpoint: str | None
    traces_endpoint: str | None
    metrics_endpoint: str | None
    logs_endpoint: str | None
    protocol: str
    headers: dict[str, str]
    traces_headers: dict[str, str] | None
    metrics_headers: dict[str, str] | None
    logs_headers: dict[str, str] | None
    traces_exporter: str
    metrics_exporter: str
    logs_exporter: str
    compression: str
    export_timeout: float
    sampler: str
    sample_ratio: float
    disabled: bool
    metric_export_interval: float
    max_queue_size: int
    max_export_batch_size: int
    schedule_delay: float
    batch_export_timeout: float
    metrics_port: int | None
    metrics_host: str
    console: bool
    log_level: str
    export_logs: bool

    @property
    def otlp_endpoint(self) -> str:
        """The endpoint in force: the configured one, else the protocol's default port on 127.0.0.1."""
        if self.endpoint:
            return self.endpoint
        return "http://127.0.0.1:4317" if self.protocol == "grpc" else "http://127.0.0.1:4318"

    def exports(self, signal: str) -> bool:
        """Whether `signal` ("traces", "metrics", "logs") is sent over OTLP at all."""
        if signal == "logs" and not self.export_logs:
            return False
        return bool(getattr(self, f"{signal}_exporter") == "otlp")

    def signal_endpoint(self, signal: str) -> tuple[str, bool]:
        """(URL, exact) for `signal`: its own endpoint used as is, else the common one (a path is appended)."""
        own: str | None = getattr(self, f"{signal}_endpoint")
        return (own, True) if own else (self.otlp_endpoint, False)

    def signal_headers(self, signal: str) -> dict[str, str]:
        own: dict[str, str] | None = getattr(self, f"{signal}_headers")
        return self.headers if own is None else own


def _warn(source: str, value: Any, problem: str, fallback: str) -> None:
    shown = value if len(str(value)) <= 80 else str(value)[:77] + "..."
    _log.warning("obsbox: ignoring %s=%r (%s); using %s", source, shown, problem, fallback)


def resolve(arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: argument > OBSBOX_* > OTEL_* > default; invalid values warn once and fall through."""
    env = os.environ if environ is None else environ
    unknown = set(arguments) - set(BY_NAME)
    if unknown:
        raise TypeError(f"configure() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        candidates: list[tuple[str, Any, bool]] = []  # (source, raw value, from environment)
        if arguments.get(setting.name) is not None:
            candidates.append((f"{setting.name} argument", arguments[setting.name], False))
        for var in ((setting.obsbox_env,) if setting.obsbox_env else ()) + setting.otel_env:
            if env.get(var, "").strip():
                candidates.append((var, env[var], True))
        chosen: Any = setting.default
        for i, (source, raw, from_env) in enumerate(candidates):
            try:
                chosen = setting.parse_env(raw) if from_env else setting.parse(raw)
                break
            except InvalidSetting as err:
                fallback = candidates[i + 1][0] if i + 1 < len(candidates) else f"the default {setting.default!r}"
                _warn(source, raw, str(err), fallback)
        values[setting.name] = chosen
    return Settings(**values)


def render_markdown() -> str:
    """docs/configuration.md, generated from SETTINGS."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m obsbox.instrumentation.settings > docs/configuration.md`; do not edit. -->",
        "",
        "`obsbox.configure()` takes every setting below as a keyword argument. Each one can also come from the",
        "environment. Precedence: **argument > `OBSBOX_*` variable > standard `OTEL_*` variable > default**.",
        "An invalid value never stops the service: obsbox logs one warning naming the variable and the value it",
        "uses instead.",
        "",
        "| setting | type | default | environment | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        envs = ", ".join(f"`{v}`" for v in ((s.obsbox_env,) if s.obsbox_env else ()) + s.otel_env)
        default = "—" if s.default in (None, {}) else f"`{s.default}`"
        lines.append(f"| `{s.name}` | {s.type} | {default} | {envs} | {s.doc} |")
    lines += [
        "",
        "W3C `tracecontext` and `baggage` propagators are installed globally unless `OTEL_PROPAGATORS` names",
        "others. Durations given in the environment are milliseconds, as in the OpenTelemetry specification; as",
        "arguments they are seconds. As the OTLP exporter specification says, `endpoint` is a base URL to which",
        "/v1/traces, /v1/metrics or /v1/logs is appended, while a per-signal endpoint",
        "(`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and the like) is the full URL of that signal.",
        "",
        "Forked workers (gunicorn, with or without `--preload`) restart the export thread and get a new",
        "`service.instance.id` on their own; `uvicorn --workers N` starts each worker afresh. The `/metrics`",
        "endpoint is served by the process that called `configure()`; with several workers, prefer OTLP push.",
        "",
    ]
    return "\n".join(lines)


assert {f.name for f in fields(Settings)} == set(BY_NAME), "Settings and SETTINGS must declare the same names"

if __name__ == "__main__":
    print(render_markdown(), end="")
