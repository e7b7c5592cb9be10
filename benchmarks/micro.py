"""The request path's hot pieces timed in isolation, obsbox against the OpenTelemetry SDK, in µs per operation.

    .venv/bin/python benchmarks/micro.py                  # every case
    .venv/bin/python benchmarks/micro.py --only span      # cases whose name contains "span"

Each case is a small named function `case_<impl>_<piece>(n) -> seconds` that does `n` operations and returns the
time they took; `CASES` lists them. Add a case by adding a function and a line in `CASES`.

Spans are exported for real, to the benchmark's OTLP receiver in its own process on the other core, with the
batch processor told (OTEL_BSP_*) to hold every span until the case flushes. `span start+end` is then the request
path's cost alone; `span export (flush)` is the process CPU time per span spent encoding and sending (the exporter
thread's work, which a busy service pays under the same GIL), not the wait for the receiver; `span encode only`
is the encoder without network. Histogram records run inside a sampled span, so exemplars are offered.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

_BATCH = 4096  # spans per export case; the queue holds all of them, so nothing exports before the flush
os.environ.update(
    {
        "OTEL_BSP_SCHEDULE_DELAY": "3600000",
        "OTEL_BSP_MAX_QUEUE_SIZE": str(4 * _BATCH),
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": str(2 * _BATCH),
        "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
    }
)

from opentelemetry import context as otel_context  # noqa: E402  (the env above must be set first)
from opentelemetry import trace  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

SPAN_ATTRIBUTES: dict[str, Any] = {
    "http.request.method": "GET",
    "url.scheme": "http",
    "url.path": "/items/1",
    "http.route": "/items/{item_id}",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "network.protocol.version": "1.1",
    "user_agent.original": "wrk",
}
METRIC_ATTRIBUTES: dict[str, Any] = {
    "http.request.method": "GET",
    "http.route": "/items/{item_id}",
    "http.response.status_code": 200,
    "url.scheme": "http",
}


class _Setup:
    """Providers built once per process (both globals can be set only once)."""

    endpoint = ""
    sdk_tracer: Any = None
    sdk_tracer_provider: Any = None
    sdk_histogram: Any = None
    sdk_meter_provider: Any = None
    obsbox_telemetry: Any = None


def _sdk() -> _Setup:
    if _Setup.sdk_tracer is None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": "micro-sdk"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{_Setup.endpoint}/v1/traces"))
        )
        _Setup.sdk_tracer_provider = provider
        _Setup.sdk_tracer = provider.get_tracer("micro")
        # A real reader: without one the SDK skips aggregation and a record costs next to nothing.
        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{_Setup.endpoint}/v1/metrics"))
        _Setup.sdk_meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = _Setup.sdk_meter_provider.get_meter("micro")
        _Setup.sdk_histogram = meter.create_histogram("http.server.request.duration", "s")
    return _Setup


def _obsbox() -> Any:
    """obsbox's runtime after configure(): the tracer and instruments its middleware uses."""
    import obsbox
    from obsbox.instrumentation import _runtime

    if _Setup.obsbox_telemetry is None:
        _Setup.obsbox_telemetry = obsbox.configure(service_name="micro-obsbox", endpoint=_Setup.endpoint)
    return _runtime.current()


def _spans(tracer: trace.Tracer, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        span = tracer.start_span("GET /items/{item_id}", kind=SpanKind.SERVER, attributes=SPAN_ATTRIBUTES)
        span.set_attribute("http.response.status_code", 200)
        span.end()
    return time.perf_counter() - start


def _records(record: Callable[[float, dict[str, Any], Any], None], tracer: trace.Tracer, n: int) -> float:
    span = tracer.start_span("exemplar parent", kind=SpanKind.SERVER)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        span_context = span.get_span_context()
        start = time.perf_counter()
        for i in range(n):
            record(0.001 * (i % 50), METRIC_ATTRIBUTES, span_context)
        return time.perf_counter() - start
    finally:
        otel_context.detach(token)
        span.end()


def _flush(flush: Callable[[], Any], tracer: trace.Tracer, n: int) -> float:
    _spans(tracer, n)
    # CPU time of the whole process (the exporter thread's encode and send), not the wait for the receiver.
    start = time.process_time()
    flush()
    return time.process_time() - start


def case_sdk_span(n: int) -> float:
    setup = _sdk()
    seconds = _spans(setup.sdk_tracer, n)
    setup.sdk_tracer_provider.force_flush()  # untimed: keeps the queue from filling and dropping
    return seconds


def case_obsbox_span(n: int) -> float:
    seconds = _spans(_obsbox().tracer, n)
    _Setup.obsbox_telemetry.force_flush()
    return seconds


def case_sdk_histogram(n: int) -> float:
    setup = _sdk()
    histogram = setup.sdk_histogram
    return _records(lambda s, a, _ctx: histogram.record(s, a), setup.sdk_tracer, n)


def case_obsbox_histogram(n: int) -> float:
    runtime = _obsbox()
    return _records(runtime.server_duration.record, runtime.tracer, n)


def case_obsbox_request(n: int) -> float:
    """Everything obsbox does per request, without the app: span, context, active count, duration + exemplar."""
    from obsbox.instrumentation._server import ServerRequest, paths, request_attributes

    _obsbox()
    # The blocks the ASGI middleware hands over for GET /items/1 (built once per distinct value, as there).
    block = request_attributes("GET", "http", "127.0.0.1", 8000, "127.0.0.1", "wrk", "1.1")
    path = paths["/items/1"]
    start = time.perf_counter()
    for _ in range(n):
        request = ServerRequest.begin("GET", "http", [block, path], None, None)
        assert request is not None
        request.finish("/items/{item_id}", 200, None)
        request.detach()
    seconds = time.perf_counter() - start
    _Setup.obsbox_telemetry.force_flush()
    return seconds


def case_sdk_export(n: int) -> float:
    setup = _sdk()
    return _flush(setup.sdk_tracer_provider.force_flush, setup.sdk_tracer, n)


def case_obsbox_export(n: int) -> float:
    tracer = _obsbox().tracer
    return _flush(_Setup.obsbox_telemetry.force_flush, tracer, n)


def case_sdk_encode(n: int) -> float:
    """The official OTLP protobuf encoder alone, on finished SDK spans (no network)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "micro-encode"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _spans(provider.get_tracer("micro"), n)
    spans = memory.get_finished_spans()
    start = time.perf_counter()
    encode_spans(spans).SerializeToString()
    return time.perf_counter() - start


def case_obsbox_encode(n: int) -> float:
    """obsbox's own OTLP protobuf encoder alone, on finished obsbox spans (no network)."""
    from obsbox.instrumentation._encode import encode_resource, encode_spans_request
    from obsbox.instrumentation._tracer import TracerProvider as ObsboxTracerProvider

    finished: list[Any] = []
    provider = ObsboxTracerProvider(sink=finished.append)
    _spans(provider.get_tracer("micro"), n)
    resource = encode_resource({"service.name": "micro-encode"})
    start = time.perf_counter()
    encode_spans_request(resource, finished)
    return time.perf_counter() - start


CASES: list[tuple[str, str, Callable[[int], float]]] = [
    ("span start+end", "opentelemetry-sdk", case_sdk_span),
    ("span start+end", "obsbox", case_obsbox_span),
    ("histogram record (4 attrs, exemplar)", "opentelemetry-sdk", case_sdk_histogram),
    ("histogram record (4 attrs, exemplar)", "obsbox", case_obsbox_histogram),
    ("whole request telemetry (begin+finish)", "obsbox", case_obsbox_request),
    ("span export (flush), sender CPU per span", "opentelemetry-sdk", case_sdk_export),
    ("span export (flush), sender CPU per span", "obsbox", case_obsbox_export),
    ("span encode only, per span", "opentelemetry-sdk", case_sdk_encode),
    ("span encode only, per span", "obsbox", case_obsbox_encode),
]


def time_case(case: Callable[[int], float], n: int, repeats: int) -> float:
    """Median µs per operation over `repeats` runs of `n` operations, after one warm-up run."""
    case(min(n, 512))
    return statistics.median(case(n) / n * 1e6 for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=_BATCH, help="operations per timed run")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--only", default="", help="run only cases whose piece or implementation contains this"
    )
    args = parser.parse_args(argv)
    args.n = min(args.n, _BATCH)  # more would let the batch processor export inside the timed loop

    from _harness import Receiver, cpus

    with Receiver(cpus()[1]) as receiver:
        _Setup.endpoint = receiver.endpoint
        os.sched_setaffinity(0, {cpus()[0]})
        print(f"| piece | implementation | µs/op (median of {args.repeats} x {args.n}) |")
        print("|---|---|---:|")
        for piece, impl, case in CASES:
            if args.only and args.only not in piece and args.only not in impl:
                continue
            try:
                figure = f"{time_case(case, args.n, args.repeats):.2f}"
            except Exception as exc:  # obsbox pieces that do not exist yet are reported, not hidden
                figure = f"n/a ({type(exc).__name__}: {str(exc)[:60]})"
            print(f"| {piece} | {impl} | {figure} |", flush=True)
        # Shut down while the receiver still listens, so the final flushes land.
        for provider in (_Setup.sdk_tracer_provider, _Setup.sdk_meter_provider, _Setup.obsbox_telemetry):
            if provider is not None:
                provider.shutdown()
        print()
        for label, service in (("opentelemetry-sdk", "micro-sdk"), ("obsbox", "micro-obsbox")):
            print(f"receiver got {receiver.stats(service).get('spans', 0)} spans from {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
