"""The optional pull endpoint: GET /metrics in Prometheus text or OpenMetrics (with exemplars).

>>> telemetry = obsbox.configure(service_name="orders", metrics_port=9464)   # doctest: +SKIP
>>> # curl -H 'Accept: application/openmetrics-text' http://127.0.0.1:9464/metrics

The series are named as Prometheus' own OTLP translation names them, so dashboards and alerts work the same for
pushed and pulled metrics: dots become underscores, the unit becomes a suffix (s → _seconds, By → _bytes, units in
braces add nothing), monotonic counters end in _total, histograms give _bucket/_sum/_count. Every series carries
`service_name` (and `service_namespace`, `deployment_environment_name` when set, and `service_instance_id`),
as Prometheus promotes them from the resource. OpenMetrics responses carry each bucket's exemplar as
`# {trace_id="…",span_id="…"} value timestamp`.

The same port serves the on-demand /debug/pprof/ endpoint while it is on (`pprof_endpoint`, see
obsbox.profiling.endpoint); while it is off those paths are 404s like any unknown path.

The server binds 127.0.0.1 unless `metrics_host` says otherwise. A port already in use gives one warning naming
the port and the setting; the service runs on without the endpoint.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    Sum,
)

__all__ = ["CurrentMetrics", "MetricsServer", "current_metrics", "exposition", "prometheus_name", "render", "serve"]

_log = logging.getLogger("obsbox")

OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RESOURCE_LABELS = (
    ("service.name", "service_name"),
    ("service.namespace", "service_namespace"),
    ("deployment.environment.name", "deployment_environment_name"),
    ("service.instance.id", "service_instance_id"),
)
# Unit → name suffix, as Prometheus' OTLP translation (otlptranslator) spells them.
_UNITS = {
    "s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds", "min": "minutes",
    "h": "hours", "d": "days", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "bit": "bits", "%": "percent", "Hz": "hertz",
    "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams", "m": "meters", "Cel": "celsius",
}
_INVALID = re.compile(r"[^a-zA-Z0-9_]+")


def _sanitize(name: str) -> str:
    out = _INVALID.sub("_", name)
    if out and out[0].isdigit():
        out = "_" + out
    return out


def _unit_suffix(unit: str, gauge: bool) -> str:
    unit = re.sub(r"\{[^}]*\}", "", unit or "").strip()
    if not unit:
        return ""
    if unit == "1":
        return "ratio" if gauge else ""
    if "/" in unit:
        num, _, den = unit.partition("/")
        left = _UNITS.get(num, _sanitize(num)) if num else ""
        right = _UNITS.get(den, _sanitize(den))
        return f"{left}_per_{right}" if left else f"per_{right}"
    return _UNITS.get(unit, _sanitize(unit))


def prometheus_name(name: str, unit: str, kind: str) -> str:
    """The base series name: `prometheus_name("http.server.request.duration", "s", "histogram")`.

    kind is counter, gauge or histogram; counters get _total.
    """
    base = _sanitize(name)
    suffix = _unit_suffix(unit, kind == "gauge")
    if suffix and not base.endswith("_" + suffix) and f"_{suffix}_" not in base:
        base = f"{base}_{suffix}"
    if kind == "counter" and not base.endswith("_total"):
        base += "_total"
    return base


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _labels(pairs: Iterable[tuple[str, Any]]) -> str:
    body = ",".join(f'{k}="{_escape(str(v))}"' for k, v in pairs)
    return "{" + body + "}" if body else ""


def _point_labels(attributes: Mapping[str, Any] | None, resource: list[tuple[str, str]]) -> list[tuple[str, Any]]:
    seen = {k for k, _ in resource}
    pairs = list(resource)
    for key, value in (attributes or {}).items():
        label = _sanitize(key)
        if label in seen:
            continue
        seen.add(label)
        if isinstance(value, bool):
            value = "true" if value else "false"
        pairs.append((label, value))
    return pairs


def current_metrics() -> MetricsData:
    """This process's metrics now (empty before configure() or after shutdown)."""
    from obsbox.instrumentation.setup import current_telemetry

    telemetry = current_telemetry()
    return telemetry.collect_metrics() if telemetry is not None else MetricsData([])


def exposition(accept: str | None = None) -> tuple[bytes, str]:
    """(body, content type) for a scrape sending `accept`: OpenMetrics when asked for, else Prometheus text.

    For services that serve /metrics on their own HTTP port:
    >>> body, content_type = exposition(request.headers.get("accept"))   # doctest: +SKIP
    """
    openmetrics = "application/openmetrics-text" in (accept or "")
    return render(None, openmetrics).encode(), OPENMETRICS_TYPE if openmetrics else PROMETHEUS_TYPE


def render(data: MetricsData | None = None, openmetrics: bool = False) -> str:
    """Prometheus text (0.0.4) or OpenMetrics 1.0 text of every metric in `data` (default: this process's)."""
    if data is None:
        data = current_metrics()
    families: dict[str, tuple[str, str, list[str]]] = {}  # name → (type, help, sample lines)
    for rm in data.resource_metrics:
        rattrs = rm.resource.attributes
        resource = [(label, str(rattrs[key])) for key, label in RESOURCE_LABELS if rattrs.get(key) not in (None, "")]
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                _family(families, metric, resource, openmetrics)
    lines: list[str] = []
    for name, (kind, help_text, samples) in families.items():
        lines.append(f"# HELP {name} {_escape(help_text)}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(samples)
    if openmetrics:
        lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _family(families: dict[str, tuple[str, str, list[str]]], metric: Metric, resource: list[tuple[str, str]],
            openmetrics: bool) -> None:
    data = metric.data
    help_text = metric.description or metric.name
    if isinstance(data, Histogram):
        name = prometheus_name(metric.name, metric.unit or "", "histogram")
        samples = families.setdefault(name, ("histogram", help_text, []))[2]
        for hp in data.data_points:
            _histogram(samples, name, hp, _point_labels(hp.attributes, resource), openmetrics)
        return
    if isinstance(data, Sum) and data.is_monotonic:
        name = prometheus_name(metric.name, metric.unit or "", "counter")
        family = name[: -len("_total")] if openmetrics else name
        samples = families.setdefault(family, ("counter", help_text, []))[2]
    elif isinstance(data, (Sum, Gauge)):
        name = prometheus_name(metric.name, metric.unit or "", "gauge")
        samples = families.setdefault(name, ("gauge", help_text, []))[2]
    else:
        return  # exponential histograms are not produced by obsbox's views
    point: NumberDataPoint
    for point in data.data_points:
        samples.append(f"{name}{_labels(_point_labels(point.attributes, resource))} {_number(point.value)}")


def _histogram(samples: list[str], name: str, point: HistogramDataPoint, labels: list[tuple[str, Any]],
               openmetrics: bool) -> None:
    bounds = list(point.explicit_bounds)
    exemplars: dict[int, Exemplar] = {}
    if openmetrics:
        for ex in point.exemplars:
            if ex.trace_id and ex.span_id:
                i = _bucket_index(bounds, ex.value)
                if i not in exemplars or ex.time_unix_nano > exemplars[i].time_unix_nano:
                    exemplars[i] = ex
    cumulative = 0
    for i, count in enumerate(point.bucket_counts):
        cumulative += count
        le = _number(float(bounds[i])) if i < len(bounds) else "+Inf"
        line = f"{name}_bucket{_labels([*labels, ('le', le)])} {cumulative}"
        chosen = exemplars.get(i)
        if chosen is not None:
            line += (f' # {{trace_id="{chosen.trace_id:032x}",span_id="{chosen.span_id:016x}"}}'
                     f" {_number(chosen.value)} {chosen.time_unix_nano / 1e9:.3f}")
        samples.append(line)
    samples.append(f"{name}_sum{_labels(labels)} {_number(point.sum)}")
    samples.append(f"{name}_count{_labels(labels)} {point.count}")


def _bucket_index(bounds: list[float], value: float) -> int:
    for i, bound in enumerate(bounds):
        if value <= bound:
            return i
    return len(bounds)


class CurrentMetrics:
    """What `serve` needs when no configure() handle is at hand: this process's metrics at each scrape."""

    @staticmethod
    def collect_metrics() -> MetricsData:
        return current_metrics()


class MetricsServer:
    """A running /metrics endpoint; `port` is the bound port (useful with port 0)."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.host = str(server.server_address[0])
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="obsbox-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve(telemetry: Any, host: str, port: int) -> MetricsServer | None:
    """Serve `telemetry.collect_metrics()` at GET /metrics on host:port; None (after one warning) if it cannot."""
    handler = _handler(telemetry.collect_metrics)
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        _log.warning(
            "obsbox: cannot serve /metrics on %s:%d (%s); choose another port with metrics_port= or "
            "OBSBOX_METRICS_PORT. The service keeps running without the pull endpoint.", host, port, err.strerror
            or err,
        )
        return None
    server.daemon_threads = True
    return MetricsServer(server)


def _handler(collect: Callable[[], MetricsData]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
            return None

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path, _, query = self.path.partition("?")
            if path.startswith("/debug/pprof"):  # answered only while pprof is on (obsbox.profiling.endpoint)
                from obsbox.profiling.endpoint import respond

                reply = respond(path, query, self.headers.get("Authorization"))
                if reply is not None:
                    self._send(*reply)
                    return
            if path != "/metrics":
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")
                return
            openmetrics = "application/openmetrics-text" in (self.headers.get("Accept") or "")
            try:
                body = render(collect(), openmetrics).encode()
            except Exception:  # noqa: BLE001 - a scrape must not take the service down
                _log.debug("obsbox: /metrics rendering failed", exc_info=True)
                self._send(500, "text/plain; charset=utf-8", b"metrics collection failed\n")
                return
            self._send(200, OPENMETRICS_TYPE if openmetrics else PROMETHEUS_TYPE, body)

        def _send(self, status: int, content_type: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler
