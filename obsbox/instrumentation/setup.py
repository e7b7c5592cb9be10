"""`configure()`: one call gives the process traces, RED metrics and trace-correlated logs over OTLP.

>>> import obsbox
>>> telemetry = obsbox.configure(service_name="orders", environment="staging")   # doctest: +SKIP
>>> with telemetry.tracer.start_as_current_span("checkout"):                      # doctest: +SKIP
...     obsbox.logger.info("order placed", order_id=42)
>>> telemetry.shutdown()   # flushes; also done at exit                           # doctest: +SKIP

What it installs, once per process (a second call with the same settings returns the same handle; with other
settings it flushes the old pipeline and reconfigures the same global providers):

- the resource: service.name, service.version, deployment.environment.name, service.instance.id (a uuid4 per
  process, new in every forked worker), process.* and host.name, plus OTEL_RESOURCE_ATTRIBUTES;
- as OpenTelemetry globals: obsbox's lean TracerProvider (standard samplers; W3C tracecontext + baggage
  propagators), a MeterProvider backed by the SDK's (cumulative, the semantic-convention buckets for HTTP
  durations, exemplars from sampled spans) and an SDK LoggerProvider — so user code and libraries record into the
  same pipeline. The TracerProvider implements the OpenTelemetry API with lean spans; it still takes the SDK's
  span processors (`configure(span_processors=...)`, `add_span_processor()`), shown each span as an SDK
  ReadableSpan, and the MeterProvider side takes SDK metric readers (`configure(metric_readers=...)`);
- the lean HTTP instruments the middleware uses (`_runtime.install`), the loguru logger's sinks, the outgoing HTTP
  client hooks, the process metrics, and optionally the /metrics pull endpoint;
- one background export thread (restarted after fork) and an exit hook that flushes; where SIGTERM would end the
  process without exit hooks (its default action), a handler that flushes first, then lets it die as before; the
  ASGI middleware also flushes at the lifespan's shutdown (uvicorn re-raises SIGTERM with the default handler).
  Each waits EXIT_TIMEOUT seconds at most.

Nothing here raises into the application: a failure to set up logs a warning and returns a handle that does nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import platform
import signal as signals
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from opentelemetry import _logs as logs_api
from opentelemetry import metrics, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricReader,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor as SdkSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from obsbox.instrumentation import _limits, _runtime
from obsbox.instrumentation._encode import encode_resource
from obsbox.instrumentation._meters import SwitchableMeterProvider
from obsbox.instrumentation._metrics import Counter, Histogram, InFlight
from obsbox.instrumentation._pipeline import LogItem, Pipeline
from obsbox.instrumentation._propagate import propagate
from obsbox.instrumentation._tracer import Sampler, TracerProvider
from obsbox.instrumentation._transport import GrpcSender, HttpSender, Sender, grpc_available
from obsbox.instrumentation.catalogue import (
    CATALOGUE,
    DB_DURATION_BUCKETS,
    HTTP_DURATION_BUCKETS,
    SEMCONV_METRICS,
)
from obsbox.instrumentation.sampling import RuleSampler
from obsbox.instrumentation.settings import BY_NAME, Settings, resolve

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from obsbox.instrumentation._arguments import SettingArguments

__all__ = ["Telemetry", "configure"]

_log = logging.getLogger("obsbox")
VERSION = "0.1.0"
SCOPE = "obsbox"


def _discard(item: object) -> None:
    return None


class _Instruments:
    """The lean instruments: created once per process so the handles the middleware holds stay valid."""

    def __init__(self) -> None:
        server = SEMCONV_METRICS["http.server.request.duration"]
        active = SEMCONV_METRICS["http.server.active_requests"]
        client = SEMCONV_METRICS["http.client.request.duration"]
        db = SEMCONV_METRICS["db.client.operation.duration"]
        items = CATALOGUE["obsbox.export.items"]
        self.server_duration = Histogram(server.name, server.unit, server.description, HTTP_DURATION_BUCKETS)
        self.server_active = InFlight(active.name, active.unit, active.description)
        self.client_duration = Histogram(client.name, client.unit, client.description, HTTP_DURATION_BUCKETS)
        self.db_duration = Histogram(db.name, db.unit, db.description, DB_DURATION_BUCKETS)
        self.export_items = Counter(items.name, items.unit, items.description, monotonic=True)
        self.all: tuple[Histogram | Counter, ...] = (
            self.server_duration, self.server_active, self.client_duration, self.db_duration, self.export_items,
        )

    def reset(self) -> None:
        for instrument in self.all:
            instrument.reset()


class _LogForwarder(LogRecordProcessor):
    """Records emitted through the OpenTelemetry logs API (SDK LoggerProvider) join obsbox's log queue."""

    def on_emit(self, log_record: Any) -> None:
        telemetry = _state.telemetry
        if telemetry is None or telemetry.pipeline is None or not telemetry.pipeline.export_logs:
            return
        try:
            record = log_record.log_record
            scope = log_record.instrumentation_scope
            from obsbox.instrumentation.logs import redact_item

            telemetry.pipeline.logs.offer(redact_item(LogItem.from_api(record, scope.name if scope else "")))
        except Exception:  # noqa: BLE001 - never raise into the caller
            _log.debug("obsbox: dropping an unexpected log record", exc_info=True)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        telemetry = _state.telemetry
        return telemetry.force_flush(timeout_millis / 1000) if telemetry else True


class _Globals:
    """The process-wide providers, created at the first configure() and kept (OpenTelemetry globals are set once)."""

    def __init__(self) -> None:
        self.instruments = _Instruments()
        self.tracer_provider = TracerProvider(sink=_discard, on_flush=_flush_current, on_shutdown=_shutdown_current)
        self.tracer_provider.shutdown_done = True  # inactive until a pipeline is installed
        # The global MeterProvider is set once; behind it, each configuration (and each forked worker) gets a
        # fresh SDK MeterProvider, so cumulative state never leaks from one to the next.
        self.meter_provider = SwitchableMeterProvider()
        self.sdk_meter_provider: MeterProvider | None = None
        self.reader: InMemoryMetricReader | None = None
        self.logger_provider = LoggerProvider()
        self.logger_provider.add_log_record_processor(_LogForwarder())
        self.collect_lock = threading.Lock()
        self.metric_readers: list[MetricReader] = []  # the user's, for the configuration in force
        self.installed_globally = self._install()

    def _install(self) -> bool:
        if not os.environ.get("OTEL_PROPAGATORS"):  # a user's explicit choice (b3, jaeger, ...) stands
            propagate.set_global_textmap(
                CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        logs_api.set_logger_provider(self.logger_provider)
        ours = True
        for name, installed, provider in (
            ("TracerProvider", trace.get_tracer_provider(), self.tracer_provider),
            ("MeterProvider", metrics.get_meter_provider(), self.meter_provider),
            ("LoggerProvider", logs_api.get_logger_provider(), self.logger_provider),
        ):
            if installed is not provider:
                ours = False
                _log.warning("obsbox: another OpenTelemetry %s was installed first; code that uses the global one "
                             "will not export through obsbox", name)
        return ours

    def fresh_sdk_metrics(self) -> None:
        """Put a new SDK MeterProvider (and reader) behind the global one; retire the previous."""
        previous = self.sdk_meter_provider
        buckets = ExplicitBucketHistogramAggregation(list(HTTP_DURATION_BUCKETS))
        self.reader = InMemoryMetricReader()
        self.sdk_meter_provider = MeterProvider(
            metric_readers=[self.reader],
            views=[
                View(instrument_name="http.server.request.duration", aggregation=buckets),
                View(instrument_name="http.client.request.duration", aggregation=buckets),
            ],
        )
        self.meter_provider.switch(self.sdk_meter_provider)
        if previous is not None:
            with contextlib.suppress(Exception):
                previous.shutdown(timeout_millis=1000)

    def add_metric_reader(self, reader: MetricReader, telemetry: Telemetry) -> None:
        """Let an SDK MetricReader collect what obsbox exports: SDK instruments and obsbox's own, one resource.

        obsbox plays the part of the SDK's MeterProvider towards the reader (it registers the reader's collect
        callback, as the SDK's does), so the reader sees the HTTP metrics too, which are not SDK instruments. The
        data is what obsbox exports: cumulative, obsbox's aggregations; a reader's own temporality and aggregation
        preferences are not applied (a warning says so for a reader that prefers delta).
        """
        if any(t is AggregationTemporality.DELTA for t in reader._instrument_class_temporality.values()):
            _log.warning("obsbox: %s prefers delta temporality; obsbox's metrics are cumulative and it gets them so",
                         type(reader).__name__)

        def collect(_reader: MetricReader, timeout_millis: float = 10_000) -> MetricsData:
            return self.collect(_sdk_resource(telemetry.resource))

        reader._set_collect_callback(collect)  # what the SDK's MeterProvider does with a reader it is given
        self.metric_readers.append(reader)

    def flush_metric_readers(self, timeout: float) -> bool:
        done = True
        for reader in list(self.metric_readers):
            try:
                done = reader.force_flush(timeout_millis=timeout * 1000) and done
            except Exception:  # noqa: BLE001
                _log.debug("obsbox: a metric reader failed to flush", exc_info=True)
                done = False
        return done

    def retire_metric_readers(self) -> None:
        readers, self.metric_readers = self.metric_readers, []
        for reader in readers:
            try:
                reader.shutdown(timeout_millis=1000)
            except Exception:  # noqa: BLE001
                _log.debug("obsbox: a metric reader failed to shut down", exc_info=True)

    def retire_sdk_metrics(self) -> None:
        previous, self.sdk_meter_provider, self.reader = self.sdk_meter_provider, None, None
        self.meter_provider.switch(None)
        if previous is not None:
            with contextlib.suppress(Exception):
                previous.shutdown(timeout_millis=1000)

    def collect(self, resource: Resource) -> MetricsData:
        """SDK metrics (user code, libraries, process metrics) plus the lean instruments, under one resource."""
        with self.collect_lock:
            data = self.reader.get_metrics_data() if self.reader is not None else None
        scopes: list[ScopeMetrics] = []
        if data is not None:
            for rm in data.resource_metrics:
                scopes.extend(sm for sm in rm.scope_metrics if sm.metrics)
        now = time.time_ns()
        lean = [m for m in (i.collect(now) for i in self.instruments.all) if m.data.data_points]
        if lean:
            scopes.append(ScopeMetrics(InstrumentationScope(SCOPE, VERSION), lean, ""))
        return MetricsData([ResourceMetrics(resource, scopes, "")])


class _State:
    lock = threading.RLock()
    globals: _Globals | None = None
    telemetry: Telemetry | None = None


_state = _State()


def current_telemetry() -> Telemetry | None:
    """The handle of the pipeline in force, if configure() set one up."""
    return _state.telemetry


def _flush_current(timeout: float) -> bool:
    telemetry = _state.telemetry
    return telemetry.force_flush(timeout) if telemetry else True


def _shutdown_current() -> None:
    telemetry = _state.telemetry
    if telemetry is not None:
        telemetry.shutdown()


class Telemetry:
    """The handle `configure()` returns.

    >>> telemetry = obsbox.configure(service_name="orders")    # doctest: +SKIP
    >>> telemetry.force_flush()                                 # doctest: +SKIP
    True
    >>> telemetry.shutdown()                                    # doctest: +SKIP

    `tracer` and `meter` are obsbox's own (scope "obsbox"); `resource` the resource attributes;
    `metrics_port` the port of the /metrics endpoint when one is served.
    """

    def __init__(self, settings: Settings, resource: dict[str, Any] | None = None,
                 pipeline: Pipeline | None = None) -> None:
        self.settings = settings
        self.resource: dict[str, Any] = resource or {}
        self.pipeline = pipeline
        self.tracer: trace.Tracer = trace.NoOpTracer()
        self.meter: metrics.Meter = metrics.NoOpMeter(SCOPE)
        self.metrics_server: Any = None
        self.profiler: Any = None  # obsbox.profiling.continuous.Profiler while profiling is on
        self._shutdown = False

    @property
    def enabled(self) -> bool:
        return self.pipeline is not None and not self._shutdown

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_server.port if self.metrics_server is not None else None

    def collect_metrics(self) -> MetricsData:
        """Every metric of this process as it would be exported now (what /metrics renders)."""
        g = _state.globals
        if g is None or not self.enabled:
            return MetricsData([])
        return g.collect(_sdk_resource(self.resource))

    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export queued spans and logs and the current metrics now; True when done within `timeout` seconds."""
        if self.pipeline is None or self._shutdown:
            return True
        try:
            done = self.pipeline.force_flush(timeout)
            g = _state.globals
            if g is not None and _state.telemetry is self:
                done = g.tracer_provider.flush_processors(timeout) and done
                done = g.flush_metric_readers(timeout) and done
            return done
        except Exception:  # noqa: BLE001
            _log.debug("obsbox: flush failed", exc_info=True)
            return False

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush and stop exporting (idempotent). Spans started afterwards are not recorded."""
        with _state.lock:
            if self._shutdown:
                return
            self._shutdown = True
            try:
                _deactivate(self)
                if self.profiler is not None:
                    self.profiler.stop(timeout)
                if self.metrics_server is not None:
                    self.metrics_server.stop()
                    from obsbox.profiling.endpoint import admin_server_stopped

                    admin_server_stopped()
                if self.pipeline is not None:
                    self.pipeline.shutdown(timeout)
            except Exception:  # noqa: BLE001
                _log.debug("obsbox: shutdown failed", exc_info=True)
            if _state.telemetry is self:
                _state.telemetry = None


def _deactivate(telemetry: Telemetry) -> None:
    g = _state.globals
    if g is None or _state.telemetry is not telemetry:
        return
    g.tracer_provider.deactivate()
    g.retire_metric_readers()
    g.retire_sdk_metrics()
    _runtime.install(None)
    from obsbox.instrumentation import logs

    logs.detach_export()


def configure(
    *,
    span_processors: Sequence[SdkSpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    **settings: Unpack[SettingArguments],
) -> Telemetry:
    """Set up traces, metrics and logs for this process; see docs/configuration.md for every setting.

    >>> telemetry = configure(service_name="orders", endpoint="http://collector:4318")   # doctest: +SKIP

    Each setting's argument overrides its `OBSBOX_*` variable, which overrides the standard `OTEL_*` one.

    `span_processors`: OpenTelemetry SDK span processors (for example `BatchSpanProcessor(OTLPSpanExporter(...))`
    for a second destination, `SimpleSpanProcessor(ConsoleSpanExporter())`), shown every sampled span as an SDK
    ReadableSpan, besides obsbox's own export. `metric_readers`: SDK metric readers (`PeriodicExportingMetricReader`,
    `InMemoryMetricReader`), each collecting every metric obsbox exports. Both belong to this configuration: flushed
    and shut down with it. Later, `trace.get_tracer_provider().add_span_processor(...)` adds one too.
    """
    arguments = {k: v for k, v in settings.items() if v is not None}
    unknown = set(arguments) - set(BY_NAME)
    if unknown:  # as Python itself does for a misspelt keyword (mypy reports it before that)
        raise TypeError(f"configure() got unexpected keyword arguments: {', '.join(sorted(unknown))}")
    try:
        resolved = resolve(arguments)
    except Exception:  # noqa: BLE001 - resolve() warns about bad values; anything else must not crash either
        _log.warning("obsbox: could not read the settings; telemetry is off", exc_info=True)
        return Telemetry(resolve({"disabled": True}, environ={}))
    with _state.lock:
        current = _state.telemetry
        if (current is not None and current.enabled and current.settings == resolved
                and not span_processors and not metric_readers):
            return current
        if current is not None:
            current.shutdown()
        try:
            telemetry = _build(resolved, span_processors, metric_readers)
        except Exception:  # noqa: BLE001
            _log.warning("obsbox: telemetry setup failed; the service runs without it", exc_info=True)
            telemetry = Telemetry(resolved)
        _state.telemetry = telemetry if telemetry.enabled else None
        return telemetry


def _build(settings: Settings, span_processors: Sequence[SdkSpanProcessor] = (),
           metric_readers: Sequence[MetricReader] = ()) -> Telemetry:
    from obsbox.instrumentation import logs

    if settings.disabled:
        _runtime.install(_runtime.Runtime(trace.NoOpTracer(), _NoopRecorder(), _NoopRecorder(), _NoopRecorder()))
        logs.configure_console(settings)
        return Telemetry(settings)
    if settings.export.protocol == "grpc" and not grpc_available():
        _log.warning("obsbox: protocol grpc needs the grpc extra (pip install 'obsbox[grpc]'); "
                     "exporting with http/protobuf instead")
        settings = replace(settings, export=replace(settings.export, protocol="http/protobuf"))
    if _state.globals is None:
        _state.globals = _Globals()
    g = _state.globals
    g.instruments.reset()
    g.fresh_sdk_metrics()
    resource = build_resource(settings)
    senders = _senders(settings)
    telemetry = Telemetry(settings, resource)

    def collect_metrics() -> tuple[bytes, int] | None:
        data = g.collect(_sdk_resource(telemetry.resource))
        points = sum(len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics
                     for m in sm.metrics)
        if not points:
            return None
        return encode_metrics(data).SerializeToString(), points

    pipeline = Pipeline(
        senders=senders,
        resource=encode_resource(resource),
        collect_metrics=collect_metrics,
        export_items=g.instruments.export_items,
        max_queue_size=settings.batching.max_queue_size,
        max_export_batch_size=settings.batching.max_export_batch_size,
        schedule_delay=settings.batching.schedule_delay,
        export_timeout=settings.export.export_timeout,
        batch_export_timeout=settings.batching.batch_export_timeout,
        metric_export_interval=settings.batching.metric_export_interval,
        export_logs=settings.export.exports("logs"),
    )
    telemetry.pipeline = pipeline
    _limits.install(_limits.SpanLimits.from_env())
    tp = g.tracer_provider
    # Without trace export spans are still created and sampled (trace ids reach logs and exemplars), then dropped
    # unless a processor of the user's takes them.
    sampling = settings.sampling
    sampler = (RuleSampler(sampling.sampler, sampling.sample_ratio, sampling.sampling_rules)
               if sampling.sampling_rules else Sampler(sampling.sampler, sampling.sample_ratio))
    tp.activate(sampler, resource, [pipeline.spans] if pipeline.export_traces else [], span_processors)
    for reader in metric_readers:
        g.add_metric_reader(reader, telemetry)
    telemetry.tracer = tp.get_tracer(SCOPE, VERSION)
    telemetry.meter = g.meter_provider.get_meter(SCOPE, VERSION)
    _runtime.install(_runtime.Runtime(
        tracer=telemetry.tracer,
        server_duration=g.instruments.server_duration,
        server_active=g.instruments.server_active,
        client_duration=g.instruments.client_duration,
        db_duration=g.instruments.db_duration,
    ))
    logs.configure_console(settings)
    if pipeline.export_logs:
        logs.attach_export(pipeline.logs.offer, settings.logs.log_level)
    _integrations(settings)
    if settings.profiler.profiling:
        telemetry.profiler = _start_profiler(settings, resource, g.instruments.export_items)
    if settings.pull.metrics_port is not None:
        from obsbox.instrumentation import pull

        telemetry.metrics_server = pull.serve(telemetry, settings.pull.metrics_host, settings.pull.metrics_port)
    if settings.pull.pprof_endpoint:
        from obsbox.profiling.endpoint import enable_at_configure

        enable_at_configure(telemetry.metrics_server, settings.pull.pprof_token)
    _register_process_hooks()
    _chain_sigterm()
    return telemetry


def _senders(settings: Settings) -> dict[str, Sender]:
    """One sender per signal exported; signals with the same URL and headers share one (one connection)."""
    senders: dict[str, Sender] = {}
    shared: dict[tuple[str, bool, tuple[tuple[str, str], ...]], Sender] = {}
    for signal in ("traces", "metrics", "logs"):
        if not settings.export.exports(signal):
            continue
        url, exact = settings.export.signal_endpoint(signal)
        headers = settings.export.signal_headers(signal)
        key = (url, exact, tuple(sorted(headers.items())))
        if key not in shared:
            if settings.export.protocol == "grpc":
                shared[key] = GrpcSender(url, headers, settings.export.compression)
            else:
                shared[key] = HttpSender(url, headers, settings.export.compression, exact=exact)
        senders[signal] = shared[key]
    return senders


class _NoopRecorder:
    def record(self, seconds: float, attributes: Mapping[str, Any], span_context: Any = None) -> None:
        return None

    def begin(self, request: object) -> None:
        return None

    def end(self, request: object) -> None:
        return None


def _integrations(settings: Settings) -> None:
    """Outgoing HTTP hooks, database and cache libraries, process metrics: optional parts, each allowed to be
    missing or to fail alone."""
    try:
        from obsbox.instrumentation.integrations import instrument_libraries

        instrument_libraries(settings.libraries.disabled_integrations, settings.libraries.slow_operation_threshold)
    except Exception:  # noqa: BLE001
        _log.debug("obsbox: library integrations not installed", exc_info=True)
    try:
        from obsbox.instrumentation.clients import instrument_http_clients

        instrument_http_clients()
    except Exception:  # noqa: BLE001
        _log.debug("obsbox: HTTP client hooks not installed", exc_info=True)
    try:
        from obsbox.instrumentation import process_metrics

        process_metrics.register()
    except Exception:  # noqa: BLE001
        _log.debug("obsbox: process metrics not registered", exc_info=True)


def _start_profiler(settings: Settings, resource: Mapping[str, Any], export_items: Counter) -> Any:
    """The continuous profiler, sending to Pyroscope with the service's resource as labels; None if it cannot run."""
    try:
        from obsbox.profiling._pyroscope import PyroscopeSender
        from obsbox.profiling.continuous import Profiler

        labels = {key.replace(".", "_"): str(resource[key]) for key in _PROFILE_LABELS if key in resource}
        sender = PyroscopeSender(
            settings.profiler.profiling_endpoint, str(resource.get("service.name", settings.service_name)), labels,
            rate=settings.profiler.profiling_rate, timeout=settings.export.export_timeout,
            on_drop=lambda n: export_items.add(n, {"signal": "profiles", "export.outcome": "dropped"}),
            on_sent=lambda n: export_items.add(n, {"signal": "profiles", "export.outcome": "exported"}))
        profiler = Profiler(sender, rate=settings.profiler.profiling_rate,
                            interval=settings.profiler.profiling_interval)
        profiler.start()
        return profiler
    except Exception:  # noqa: BLE001
        _log.warning("obsbox: the profiler could not start; the service runs without it", exc_info=True)
        return None


# Resource attributes that become Pyroscope series labels (dots as underscores, as in Prometheus); service.name is
# the application name. Per-process ids (service.instance.id, process.pid) are left out: a series each.
_PROFILE_LABELS = ("service.namespace", "service.version", "deployment.environment.name")


# --- resource ---------------------------------------------------------------------------------------------------
def build_resource(settings: Settings) -> dict[str, Any]:
    """The resource attributes: standard process/host facts < OTEL_RESOURCE_ATTRIBUTES < explicit settings."""
    attrs: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "obsbox",
        "telemetry.sdk.version": VERSION,
        "process.pid": os.getpid(),
        "process.executable.name": os.path.basename(sys.executable),
        "process.executable.path": sys.executable,
        "process.runtime.name": sys.implementation.name,
        "process.runtime.version": platform.python_version(),
        "host.name": socket.gethostname(),
        "host.arch": platform.machine(),
        "os.type": sys.platform,
    }
    attrs.update(settings.resource_attributes)
    if settings.service_name != "unknown_service:python" or "service.name" not in attrs:
        attrs["service.name"] = settings.service_name
    if settings.service_version:
        attrs["service.version"] = settings.service_version
    if settings.environment:
        attrs["deployment.environment.name"] = settings.environment
    attrs.setdefault("service.instance.id", str(uuid.uuid4()))
    return attrs


def _sdk_resource(attrs: dict[str, Any]) -> Resource:
    return Resource(attrs)


# --- process hooks: exit and fork ------------------------------------------------------------------------------
_hooks_registered = False


def _register_process_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    atexit.register(_at_exit)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


EXIT_TIMEOUT = 3.0  # seconds a stopping process waits for its last export at most


def _at_exit() -> None:
    telemetry = _state.telemetry
    if telemetry is not None:
        telemetry.shutdown(timeout=EXIT_TIMEOUT)


def flush_before_exit() -> None:
    """The server is stopping (an ASGI lifespan shutdown): export what is queued now, waiting EXIT_TIMEOUT at most."""
    telemetry = _state.telemetry
    if telemetry is not None:
        telemetry.force_flush(EXIT_TIMEOUT)


def _chain_sigterm() -> None:
    """Flush before SIGTERM's default action ends the process, which skips exit hooks (servers that do not handle
    SIGTERM themselves: Django's runserver --noreload, flask run). A handler already in place (gunicorn's,
    uvicorn's, the application's) is left alone: those exit normally and the exit hook flushes."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signals.getsignal(signals.SIGTERM) is signals.SIG_DFL:
            signals.signal(signals.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        return


def _on_sigterm(signum: int, frame: object) -> None:
    try:
        _at_exit()
    finally:
        signals.signal(signals.SIGTERM, signals.SIG_DFL)
        signals.raise_signal(signals.SIGTERM)


def _after_fork_in_child() -> None:
    """A forked worker is a new instance: new id and pid, fresh queues and worker thread, its own counts."""
    _state.lock = threading.RLock()
    g = _state.globals
    telemetry = _state.telemetry
    if g is None or telemetry is None or telemetry.pipeline is None:
        return
    try:
        g.collect_lock = threading.Lock()
        for instrument in g.instruments.all:
            instrument.after_fork()
        g.meter_provider.after_fork()
        g.fresh_sdk_metrics()  # the parent's SDK aggregations are the parent's
        attrs = dict(telemetry.resource)
        attrs["service.instance.id"] = str(uuid.uuid4())
        attrs["process.pid"] = os.getpid()
        telemetry.resource = attrs
        telemetry.pipeline.after_fork(encode_resource(attrs))
        g.tracer_provider.after_fork(attrs, [telemetry.pipeline.spans] if telemetry.pipeline.export_traces else [])
        from obsbox.instrumentation import logs

        if telemetry.pipeline.export_logs:
            logs.attach_export(telemetry.pipeline.logs.offer, telemetry.settings.logs.log_level)
        # The parent keeps its /metrics port; a worker cannot serve the same one.
        telemetry.metrics_server = None
        if telemetry.profiler is not None:  # the worker profiles itself, with a sampler thread of its own
            telemetry.profiler.after_fork()
    except Exception:  # noqa: BLE001
        _log.warning("obsbox: telemetry could not restart in the forked process", exc_info=True)
