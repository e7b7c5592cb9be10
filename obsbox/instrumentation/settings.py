"""Every setting of `obsbox.configure()`, declared once: name, type, default, environment variables, meaning.

>>> from obsbox.instrumentation.settings import resolve
>>> s = resolve({"service_name": "orders"}, environ={"OTEL_TRACES_SAMPLER": "traceidratio",
...                                                  "OTEL_TRACES_SAMPLER_ARG": "0.25"})
>>> (s.service_name, s.sampling.sampler, s.sampling.sample_ratio, s.export.otlp_endpoint)
('orders', 'traceidratio', 0.25, 'http://127.0.0.1:4318')

The declaration is the `Settings` dataclass and its groups (export, batching, sampling, pull, logs, libraries, profiler, as logfire
groups its options): each field says its default, parser, OTEL_* variables and doc (`_setting`). Everything else is
derived from it: the table `SETTINGS` that resolution walks, docs/configuration.md
(`python -m obsbox.instrumentation.settings`) and `configure()`'s typed keyword arguments in `_arguments.py`
(`... --arguments`); tests keep both generated files in sync. A setting has ONE flat name: its keyword, and in
capitals after `OBSBOX_` its variable, whatever group holds it.

Precedence: the argument to `configure()` > the `OBSBOX_*` variable > the standard `OTEL_*` variable > the
default. An invalid value never crashes the service: it produces one warning naming where it came from and the
value used instead, and the next source in line (finally the default) applies."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from obsbox.instrumentation.sampling import SamplingRule

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
    """A value that cannot be used; the message says what is expected. `secret`: the warning must not show the
    value (headers carry credentials)."""

    def __init__(self, message: str, *, secret: bool = False) -> None:
        super().__init__(message)
        self.secret = secret


class PartlyInvalid(InvalidSetting):
    """A value of which a part cannot be used: `usable` is the rest, used with a warning (never a fallback)."""

    def __init__(self, message: str, usable: Any, *, secret: bool = False) -> None:
        super().__init__(message, secret=secret)
        self.usable = usable


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


def _secret(v: Any) -> str:
    try:
        return _nonempty(v)
    except InvalidSetting as err:
        raise InvalidSetting(str(err), secret=True) from None


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


# A host name as DNS (and container networks, with "_") allow it: dot-separated labels of letters, digits, - and _.
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _url(v: Any) -> str:
    text = _str(v).strip().rstrip("/")
    try:
        parts = urllib.parse.urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as err:  # "Invalid IPv6 URL", a port out of range or not a number
        raise InvalidSetting(f"expected an http:// or https:// URL ({err})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidSetting("expected an http:// or https:// URL with a host")
    if not _valid_host(host):
        raise InvalidSetting("expected a valid host name or IP address in the URL")
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


# RFC 9110 field names are tokens; a value may hold visible latin-1 characters, spaces and tabs only (what
# http.client and gRPC metadata send): CR, LF or NUL would split or break the request.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _headers(v: Any) -> dict[str, str]:
    """Export headers: key=value pairs (see `_pairs`) that can be sent as they are; others are left out."""
    try:
        pairs = _pairs(v)
    except InvalidSetting as err:
        raise InvalidSetting(str(err), secret=True) from None
    good = {k: x for k, x in pairs.items() if _HEADER_NAME.fullmatch(k) and _HEADER_VALUE.fullmatch(x)}
    if len(good) < len(pairs):
        bad = ", ".join(repr(k if _HEADER_NAME.fullmatch(k) else k.encode("unicode_escape").decode())
                        for k in pairs if k not in good)
        raise PartlyInvalid(f"header {bad} left out: a name must be a token, a value must not contain CR, LF "
                            "or other control characters", good, secret=True)
    return good


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


def _names(v: Any) -> tuple[str, ...]:
    """A comma list of integration names (or `all`), as registered in obsbox.instrumentation.integrations."""
    from obsbox.instrumentation.integrations import INTEGRATIONS

    items = [str(x) for x in v] if isinstance(v, (list, tuple, set, frozenset)) else _str(v).split(",")
    names = tuple(dict.fromkeys(x.strip().lower() for x in items if x.strip()))
    unknown = [n for n in names if n not in INTEGRATIONS and n != "all"]
    if unknown:
        raise PartlyInvalid(f"unknown integration {', '.join(unknown)} left out (known: all, "
                            + ", ".join(INTEGRATIONS) + ")", tuple(n for n in names if n not in unknown))
    return names


def _rules(v: Any) -> tuple[SamplingRule, ...]:
    from obsbox.instrumentation.sampling import InvalidRule, parse_rules

    try:
        return parse_rules(v)
    except InvalidRule as err:
        raise InvalidSetting(str(err)) from None


@dataclass(frozen=True)
class Setting:
    """One setting as the table shows it: the `configure()` keyword, its environment variables and how to read
    them. Made from the declaration (a field of `Settings` or of one of its groups), never written by hand."""

    name: str
    group: str  # "" for the top level, else the attribute of `Settings` that holds the group
    type: str  # for the docs
    default: Any
    doc: str
    parse: Callable[[Any], Any]
    obsbox_env: str | None = None
    otel_env: tuple[str, ...] = ()
    env_in_ms: bool = False  # environment values are milliseconds (the OTEL_* convention), arguments seconds
    argument: str = ""  # the keyword argument's type in configure()'s signature

    def parse_env(self, text: str) -> Any:
        return _seconds(text, from_ms=True) if self.env_in_ms else self.parse(text)


_DECLARATION = "obsbox.setting"
_GROUP = "obsbox.group"


def _setting(default: Any, type_doc: str, parse: Callable[[Any], Any], doc: str, *, otel: tuple[str, ...] = (),
             env_in_ms: bool = False, argument: str = "", secret: bool = False) -> Any:
    """Declare one setting as a field: its default, how it reads, its OTEL_* variables and its doc.

    The `configure()` keyword is the field's name and the OBSBOX_* variable is its name in capitals, so a setting
    has one name everywhere. `argument` overrides the keyword's type derived from the field's (see `_argument`).
    `secret`: the value is left out of the settings' repr.
    """
    spec = {"default": default, "type": type_doc, "parse": parse, "doc": doc, "otel": otel,
            "env_in_ms": env_in_ms, "argument": argument}
    return field(metadata={_DECLARATION: spec}, repr=not secret)


def _group(cls: type) -> Any:
    return field(metadata={_GROUP: cls})


def _signal_endpoint(signal: str) -> Any:
    return _setting(None, "URL", _url,
                    f"OTLP URL for {signal} only, used as is (nothing appended; a URL without a path posts to /); "
                    "overrides `endpoint` for this signal.",
                    otel=(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT",))


def _signal_headers(signal: str) -> Any:
    return _setting(None, "key=value,...", _headers,
                    f"Headers for {signal} exports only; when set they replace `headers` for this signal.",
                    otel=(f"OTEL_EXPORTER_OTLP_{signal.upper()}_HEADERS",), secret=True)


def _signal_exporter(signal: str) -> Any:
    return _setting("otlp", "otlp or none", _exporter,
                    f"`none`: {signal} are not sent over OTLP at all (no connection, no drops, no warning)"
                    + {"traces": "; spans are still created and sampled, so trace ids still reach logs and "
                                 "exemplars.",
                       "metrics": "; the /metrics pull endpoint still serves them.",
                       "logs": "; the console still prints them."}[signal]
                    + " A comma list is accepted; other exporters (console, ...) are not supported: one warning, "
                    "then otlp. To add an exporter of your own, pass an OpenTelemetry SDK processor or reader "
                    "(`span_processors`, `metric_readers`).",
                    otel=(f"OTEL_{signal.upper()}_EXPORTER",))


# --- the declaration: every setting once, in groups ------------------------------------------------------------
@dataclass(frozen=True)
class ExportSettings:
    """Where and how telemetry is sent over OTLP."""

    endpoint: str | None = _setting(
        None, "URL", _url,
        "OTLP base URL; /v1/traces, /v1/metrics and /v1/logs are appended for http/protobuf. Default "
        "http://127.0.0.1:4318 (http/protobuf) or http://127.0.0.1:4317 (grpc).",
        otel=("OTEL_EXPORTER_OTLP_ENDPOINT",))
    traces_endpoint: str | None = _signal_endpoint("traces")
    metrics_endpoint: str | None = _signal_endpoint("metrics")
    logs_endpoint: str | None = _signal_endpoint("logs")
    protocol: str = _setting(
        "http/protobuf", "http/protobuf or grpc", _choice(PROTOCOLS),
        "OTLP transport. grpc needs `pip install 'obsbox[grpc]'`; without it obsbox warns and uses http/protobuf.",
        otel=("OTEL_EXPORTER_OTLP_PROTOCOL",))
    headers: dict[str, str] = _setting(
        {}, "key=value,...", _headers, "Headers sent with every export (for example an API key).",
        otel=("OTEL_EXPORTER_OTLP_HEADERS",), secret=True)
    traces_headers: dict[str, str] | None = _signal_headers("traces")
    metrics_headers: dict[str, str] | None = _signal_headers("metrics")
    logs_headers: dict[str, str] | None = _signal_headers("logs")
    traces_exporter: str = _signal_exporter("traces")
    metrics_exporter: str = _signal_exporter("metrics")
    logs_exporter: str = _signal_exporter("logs")
    export_logs: bool = _setting(True, "bool", _bool, "Export log records over OTLP.")
    compression: str = _setting("none", "none or gzip", _choice(("none", "gzip")), "Compression of export bodies.",
                                otel=("OTEL_EXPORTER_OTLP_COMPRESSION",))
    export_timeout: float = _setting(
        3.0, "seconds", _seconds,
        "Timeout of one export request (environment: milliseconds). Short on purpose: a slow collector must not "
        "hold telemetry back.",
        otel=("OTEL_EXPORTER_OTLP_TIMEOUT",), env_in_ms=True)

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


@dataclass(frozen=True)
class BatchSettings:
    """How finished spans and log records wait for export, and how often metrics go."""

    max_queue_size: int = _setting(
        2048, "int", _int(1, 10_000_000),
        "Spans (and, separately, log records) held for export at most; beyond it new ones are dropped and counted "
        "in obsbox.export.items{export.outcome=\"dropped\"}.",
        otel=("OTEL_BSP_MAX_QUEUE_SIZE",))
    max_export_batch_size: int = _setting(
        512, "int", _int(1, 1_000_000), "Spans or log records per export request at most.",
        otel=("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",))
    schedule_delay: float = _setting(
        1.0, "seconds", _seconds,
        "Longest wait before queued spans and logs are exported (environment: milliseconds).",
        otel=("OTEL_BSP_SCHEDULE_DELAY",), env_in_ms=True)
    batch_export_timeout: float = _setting(
        5.0, "seconds", _seconds, "Time budget of one batch including its retry (environment: milliseconds).",
        otel=("OTEL_BSP_EXPORT_TIMEOUT",), env_in_ms=True)
    metric_export_interval: float = _setting(
        15.0, "seconds", _seconds, "Interval between metric exports (environment: milliseconds).",
        otel=("OTEL_METRIC_EXPORT_INTERVAL",), env_in_ms=True)


@dataclass(frozen=True)
class SamplingSettings:
    """Which traces are recorded."""

    sampler: str = _setting(
        "parentbased_always_on", "name", _choice(SAMPLERS), "Trace sampler: " + ", ".join(SAMPLERS) + ".",
        otel=("OTEL_TRACES_SAMPLER",))
    sample_ratio: float = _setting(1.0, "0..1", _ratio, "Ratio for the traceidratio samplers.",
                                   otel=("OTEL_TRACES_SAMPLER_ARG",))
    sampling_rules: tuple[SamplingRule, ...] = _setting(
        (), "[METHOD ]ROUTE=RATIO,...", _rules,
        "Per-route ratios for traces that start at a request, matched on the route template (`*` globs) and "
        "the method, first match wins; other requests get `sampler`. A parent's decision is followed. A request "
        "a rule dropped is still exported when it fails (5xx or exception). Arguments: a list of "
        "`SamplingRule(route, ratio, method=None)`. See \"Sampling rules\" below.",
        argument="Sequence[SamplingRule | Mapping[str, Any]] | str | None")


@dataclass(frozen=True)
class PullSettings:
    """The optional admin port: Prometheus /metrics and the on-demand /debug/pprof/ endpoint."""

    metrics_port: int | None = _setting(
        None, "port", _port, "Also serve Prometheus/OpenMetrics text at GET /metrics on this port (0: any free port).")
    metrics_host: str = _setting(
        "127.0.0.1", "host", _nonempty, "Address of the /metrics endpoint; 0.0.0.0 exposes it beyond this machine.")
    pprof_endpoint: bool = _setting(
        False, "bool", _bool,
        "Also serve Go-style /debug/pprof/ (heap, every thread's and asyncio task's stack) on `metrics_port`. "
        "Off by default; `obsbox.profiling.enable_pprof()` / `disable_pprof()` switch it at run time "
        "(docs/profiling.md).")
    pprof_token: str | None = _setting(
        None, "secret", _secret,
        "Bearer token every /debug/pprof/ request must send (`Authorization: Bearer ...`). Required when "
        "`metrics_host` is not a loopback address: without it the endpoint stays off there.", secret=True)


@dataclass(frozen=True)
class LogSettings:
    """What the obsbox logger prints and passes on."""

    console: bool = _setting(True, "bool", _bool,
                             "Print log records to stderr in loguru's readable format (with a short trace id).")
    log_level: str = _setting("INFO", "level", _level, "Lowest level printed and exported by the obsbox logger.")


@dataclass(frozen=True)
class LibrarySettings:
    """Which libraries besides HTTP (databases, caches) configure() instruments."""

    disabled_integrations: tuple[str, ...] = _setting(
        (), "name,...", _names,
        "Libraries configure() leaves uninstrumented: any of sqlalchemy, django, psycopg, asyncpg, redis, grpc, "
        "celery, or `all`. The others are instrumented when installed (see docs/integrations.md).",
        argument="Sequence[str] | str | None")
    slow_operation_threshold: float = _setting(
        1.0, "seconds", _seconds,
        "A database or cache operation or a Celery task run that takes at least this long also logs one structured "
        "WARNING line (`slow database operation` with db.system.name, db.query.summary and duration_s; `slow task` "
        "with celery.task.name, celery.task.state and duration_s), in the trace of the operation (environment: "
        "milliseconds).", env_in_ms=True)


@dataclass(frozen=True)
class ProfilingSettings:
    """The continuous profiler (see docs/profiling.md)."""

    profiling: bool = _setting(
        False, "bool", _bool,
        "Sample every thread's stack (CPU and wall time) and send a pprof profile to Pyroscope every "
        "`profiling_interval`; samples taken in a span carry its `span_id`. Off by default.")
    profiling_endpoint: str = _setting(
        "http://127.0.0.1:4040", "URL", _url, "Pyroscope's base URL; profiles are posted to its /ingest API.")
    profiling_rate: int = _setting(
        19, "Hz", _int(1, 1000),
        "Stack samples per second at most (19: a continuous profile adds them up over minutes; a prime, so they do "
        "not fall in step with periodic work); fewer when sampling would cost more than 0.5% of a core "
        "(see docs/profiling.md).")
    profiling_interval: float = _setting(
        15.0, "seconds", _seconds, "Interval between two profiles sent (environment: milliseconds).",
        env_in_ms=True)


@dataclass(frozen=True)
class Settings:
    """The resolved values, grouped; each field is the one declaration of its setting (see `_setting`)."""

    service_name: str = _setting(
        "unknown_service:python", "str", _nonempty,
        "`service.name` of every span, metric and log (`service_name` in Prometheus and Loki).",
        otel=("OTEL_SERVICE_NAME",))
    service_version: str | None = _setting(None, "str", _nonempty, "`service.version` resource attribute.")
    environment: str | None = _setting(
        None, "str", _nonempty, "`deployment.environment.name` resource attribute (for example production, staging).")
    resource_attributes: dict[str, str] = _setting(
        {}, "key=value,...", _pairs,
        "Extra resource attributes; explicit service settings above win over the same keys here.",
        otel=("OTEL_RESOURCE_ATTRIBUTES",))
    disabled: bool = _setting(False, "bool", _bool,
                              "Turn all telemetry off: configure() installs nothing and returns a no-op handle.",
                              otel=("OTEL_SDK_DISABLED",))
    export: ExportSettings = _group(ExportSettings)
    batching: BatchSettings = _group(BatchSettings)
    sampling: SamplingSettings = _group(SamplingSettings)
    pull: PullSettings = _group(PullSettings)
    logs: LogSettings = _group(LogSettings)
    libraries: LibrarySettings = _group(LibrarySettings)
    profiler: ProfilingSettings = _group(ProfilingSettings)

    def value(self, name: str) -> Any:
        """A setting's value by its flat name (`settings.value("protocol")` is `settings.export.protocol`)."""
        group = BY_NAME[name].group
        return getattr(getattr(self, group) if group else self, name)


def _argument(annotation: str) -> str:
    """The keyword argument's type for a field's: optional, and any mapping where the field holds a dict."""
    core = annotation.removesuffix(" | None")
    return core.replace("dict[", "Mapping[") + " | None"


def _table(cls: type, group: str) -> list[Setting]:
    out: list[Setting] = []
    for f in fields(cls):
        if _GROUP in f.metadata:
            out += _table(f.metadata[_GROUP], f.name)
            continue
        spec = f.metadata[_DECLARATION]
        out.append(Setting(f.name, group, spec["type"], spec["default"], spec["doc"], spec["parse"],
                           "OBSBOX_" + f.name.upper(), spec["otel"], spec["env_in_ms"],
                           spec["argument"] or _argument(str(f.type))))
    return out


SETTINGS: tuple[Setting, ...] = tuple(_table(Settings, ""))
BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
GROUPS: dict[str, type] = {f.name: f.metadata[_GROUP] for f in fields(Settings) if _GROUP in f.metadata}


def _warn(source: str, value: Any, err: InvalidSetting, fallback: str) -> None:
    if isinstance(err, PartlyInvalid):
        _log.warning("obsbox: %s: %s", source, err)
        return
    if err.secret:
        _log.warning("obsbox: ignoring %s (%s; the value is not shown); using %s", source, err, fallback)
        return
    text = str(value)
    if "@" in text:  # user:password@ in a URL
        text = re.sub(r"//[^/@\s]*@", "//REDACTED@", text)
    shown = text if len(text) <= 80 else text[:77] + "..."
    _log.warning("obsbox: ignoring %s=%r (%s); using %s", source, shown, err, fallback)


def _check_together(grouped: dict[str, dict[str, Any]], sources: Mapping[str, str]) -> None:
    """Settings valid alone but not together: one warning naming where the value came from, and a value that fits."""
    for values in grouped.values():
        batch, queue = values.get("max_export_batch_size"), values.get("max_queue_size")
        if batch is not None and queue is not None and batch > queue:
            if "max_export_batch_size" in sources:  # (the default batch above a small queue: no one to tell)
                _log.warning("obsbox: ignoring %s=%d (more than max_queue_size, %d); using %d",
                             sources["max_export_batch_size"], batch, queue, queue)
            values["max_export_batch_size"] = queue


def resolve(arguments: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every setting: argument > OBSBOX_* > OTEL_* > default; invalid values warn once and fall through."""
    env = os.environ if environ is None else environ
    unknown = set(arguments) - set(BY_NAME)
    if unknown:
        raise TypeError(f"configure() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    grouped: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}  # where each value not the default came from
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
            except PartlyInvalid as err:
                _warn(source, raw, err, "")
                chosen = err.usable
                break
            except Exception as err:  # noqa: BLE001 - InvalidSetting, or a parser's own bug: never telemetry off
                fallback = candidates[i + 1][0] if i + 1 < len(candidates) else f"the default {setting.default!r}"
                _warn(source, raw, err if isinstance(err, InvalidSetting) else InvalidSetting(
                    f"unreadable: {type(err).__name__}", secret=True), fallback)
        grouped.setdefault(setting.group, {})[setting.name] = chosen
        if chosen is not setting.default:
            sources[setting.name] = source
    _check_together(grouped, sources)
    top = grouped.pop("", {})
    return Settings(**top, **{name: GROUPS[name](**values) for name, values in grouped.items()})


def render_markdown() -> str:
    """docs/configuration.md, generated from the declaration."""
    lines = [
        "# Configuration",
        "",
        "<!-- Generated by `python -m obsbox.instrumentation.settings > docs/configuration.md`; do not edit. -->",
        "",
        "`obsbox.configure()` takes every setting below as a keyword argument. Each one can also come from the",
        "environment. Precedence: **argument > `OBSBOX_*` variable > standard `OTEL_*` variable > default**.",
        "An invalid value never stops the service: obsbox logs one warning naming the variable and the value it",
        "uses instead. In code, the resolved values are grouped as below (`telemetry.settings.export.endpoint`);",
        "as arguments and variables each setting keeps its one flat name.",
    ]
    for group in ("", *GROUPS):
        title = "General" if not group else f"`{group}`: " + (GROUPS[group].__doc__ or "").strip().rstrip(".")
        lines += ["", f"## {title}", "", "| setting | type | default | environment | meaning |", "|---|---|---|---|---|"]
        for s in SETTINGS:
            if s.group != group:
                continue
            envs = ", ".join(f"`{v}`" for v in ((s.obsbox_env,) if s.obsbox_env else ()) + s.otel_env)
            default = "—" if s.default in (None, {}, ()) else f"`{s.default}`"
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
        "## Sampling rules",
        "",
        "`sampling_rules` keeps a ratio of the traces that start at requests to a route, for example all of",
        "`/v1/track/query` and 0.1% of `GET /healthz`:",
        "",
        "```python",
        "from obsbox import SamplingRule",
        "",
        "obsbox.configure(sampling_rules=[SamplingRule(\"/v1/track/query\", 1.0),",
        "                                 SamplingRule(\"/healthz\", 0.001, method=\"GET\")])",
        "# or: OBSBOX_SAMPLING_RULES=\"/v1/track/query=1,GET /healthz=0.001\"",
        "```",
        "",
        "- **Matched on** the route template as obsbox reports it in `http.route` (`/items/{item_id}` for FastAPI",
        "  and Starlette, `/items/<int:item_id>` for Flask, `/items/<int:pk>/` for Django; `*` matches any run of",
        "  characters) and, when a rule names one, the method. The first matching rule wins; a request that no rule",
        "  matches gets the `sampler` setting's decision. The ratio is applied to the trace id, as the",
        "  `traceidratio` sampler does, so every service using the same ratio agrees.",
        "- **Decided before the span starts**, so the decision travels downstream in `traceparent`: obsbox asks",
        "  the framework which route the request will match before handing it over — FastAPI and Starlette (the",
        "  app's routes, mounts included), Flask (the URL map), Django (the URL resolver, for",
        "  `obsbox.instrument(application)` and `ObsboxDjangoMiddleware`). Where nothing can tell the route in",
        "  advance (a plain ASGI or WSGI app, a request no route matches, Django's per-request `request.urlconf`)",
        "  no rule applies and the `sampler` setting decides. Paths in `excluded_paths` (`/healthz` among them by",
        "  default) produce no telemetry at all, whatever the rules.",
        "- **A parent's decision is followed**: rules decide only for traces that start at this service.",
        "- **Failed requests are kept, as far as a head decision allows**: a request a rule dropped is still",
        "  recorded (as not sampled), and its SERVER span is exported, marked sampled, when it ends with a 5xx",
        "  status or an exception (a 4xx is not an error). What cannot be kept: its child spans (they end before",
        "  the request's outcome is known and were not recorded), the spans of the services it called (they were",
        "  told \"not sampled\"), and an exemplar on its duration (exemplars point only at traces sampled from the",
        "  start). Span processors of your own get the kept span like any other.",
        "- **Metrics count every request**, sampled or not: `http.server.request.duration` and the RED dashboards",
        "  and alerts do not depend on sampling; logs carry the trace id either way.",
        "- **Cost**: without rules, nothing changes on the request path. With rules, each request is routed once",
        "  more by the framework (before the span starts), and deciding costs about 12k instructions per request",
        "  on top of obsbox's ~48k (docs/benchmarks.md).",
        "",
        "## Span processors and metric readers",
        "",
        "`configure(span_processors=[...])` and `trace.get_tracer_provider().add_span_processor(...)` take span",
        "processors written for the OpenTelemetry SDK (`BatchSpanProcessor` or `SimpleSpanProcessor` with any SDK",
        "exporter: OTLP to a second destination, `ConsoleSpanExporter`, `InMemorySpanExporter`, your own).",
        "`configure(metric_readers=[...])` takes SDK metric readers (`PeriodicExportingMetricReader` with any SDK",
        "exporter, `InMemoryMetricReader`). They run besides obsbox's own export and belong to the configuration:",
        "`force_flush()` flushes them, `shutdown()` (or the next `configure()`) shuts them down.",
        "",
        "- A processor's `on_end` gets every sampled span as an SDK `ReadableSpan` (name, ids, parent, kind,",
        "  attributes, events, links, status, times, resource, instrumentation scope), built once per span for all",
        "  processors and only while one is present: without one, a finished span goes straight to obsbox's export",
        "  queue as before. Building it is the SDK's cost: a `SimpleSpanProcessor` with an `InMemorySpanExporter`",
        "  doubles obsbox's instructions per request (docs/benchmarks.md). `on_start` is called with obsbox's span (the API's `Span` methods: `set_attribute`,",
        "  `add_event`, ...) as the span starts, and only for processors that define one. A processor that raises is",
        "  logged once and never reaches the application.",
        "- Spans that the sampler drops reach no processor (as in the SDK).",
        "- A metric reader collects what obsbox exports: SDK instruments (yours, libraries', process metrics) and",
        "  obsbox's own HTTP instruments, under one resource. obsbox registers the reader as the SDK's MeterProvider",
        "  would; the data is obsbox's: cumulative temporality and obsbox's aggregations (a reader's preferred",
        "  temporality and aggregation are not applied; one that prefers delta gets a warning and cumulative data).",
        "",
    ]
    return "\n".join(lines)


def render_arguments() -> str:
    """obsbox/instrumentation/_arguments.py: configure()'s keyword arguments, typed, generated from the declaration."""
    lines = [
        '"""The keyword arguments of `obsbox.configure()`, one per setting (generated from settings.py; do not edit).',
        "",
        "Regenerate with `python -m obsbox.instrumentation.settings --arguments > obsbox/instrumentation/_arguments.py`;",
        'a test keeps it in sync with the declaration."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Mapping, Sequence",
        "from typing import TYPE_CHECKING, Any, TypedDict",
        "",
        "if TYPE_CHECKING:",
        "    from obsbox.instrumentation.sampling import SamplingRule",
        "",
        "",
        "class SettingArguments(TypedDict, total=False):",
        '    """Every setting as a keyword argument of `configure()`; None (or leaving it out) means not given."""',
        "",
    ]
    lines += [f"    {s.name}: {s.argument}" for s in SETTINGS]
    return "\n".join(lines) + "\n"


assert len(BY_NAME) == len(SETTINGS), "every setting needs its own name (it is the flat keyword and variable)"

if __name__ == "__main__":
    import sys

    print(render_arguments() if sys.argv[1:] == ["--arguments"] else render_markdown(), end="")
