"""The benchmark's server: one minimal FastAPI endpoint, instrumented the way MODE says, under uvicorn.

    python benchmarks/app.py obsbox        # prints "PORT <n>" once bound, then serves until SIGINT/SIGTERM

Every mode gets the same endpoint and the same server settings (one worker, access log off, uvloop and
httptools when installed); only the instrumentation differs. OTLP modes export to OTEL_EXPORTER_OTLP_ENDPOINT
(the benchmark points it at its receiver) under the service name OTEL_SERVICE_NAME.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

MODES: dict[str, str] = {
    "bare": "no instrumentation",
    "obsbox": "obsbox.configure() + obsbox.instrument(app): server span, RED metrics, exemplars over OTLP",
    "obsbox-profiling": "as obsbox, with the continuous profiler at its default rate (19 Hz) sending pprof to the "
                        "receiver's /ingest every 15 s",
    "contrib": "OpenTelemetry SDK + OTLP/HTTP exporters + contrib FastAPIInstrumentor (stable HTTP semconv)",
    "contrib-lean": "as contrib, with exclude_spans=['receive', 'send']: the server span only",
    "native": "OpenTelemetry SDK + OTLP/HTTP exporters + FastAPI's own telemetry (operation spans on)",
    "native-lean": "as native, with FastAPI(telemetry={'operation_spans': False})",
    "logfire": "logfire.configure(send_to_logfire=False) exporting OTLP to the receiver + instrument_fastapi",
    "pfi": "prometheus-fastapi-instrumentator: metrics only, pulled from /metrics (no OTLP export)",
}


def _routes(app: FastAPI) -> FastAPI:
    @app.get("/items/{item_id}")
    async def read_item(item_id: int) -> dict[str, object]:
        return {"item_id": item_id, "name": "widget", "price": 9.5}

    return app


def _otel_sdk() -> None:
    """Global SDK providers exporting OTLP/HTTP protobuf, configured from the standard OTEL_* env."""
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # service.name from OTEL_SERVICE_NAME
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def bare() -> FastAPI:
    return _routes(FastAPI())


def obsbox_mode() -> FastAPI:
    import obsbox

    obsbox.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "bench-obsbox"))
    return obsbox.instrument(_routes(FastAPI()))


def obsbox_profiling() -> Any:
    import obsbox

    if os.environ.get("BENCH_SIGPROF") == "0":  # SIGPROF taken: the profiler keeps to its sampler thread
        signal.signal(signal.SIGPROF, lambda signum, frame: None)
    telemetry = obsbox.configure(service_name=os.environ.get("OTEL_SERVICE_NAME", "bench-obsbox-profiling"),
                                 profiling=True, profiling_endpoint=os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    app = obsbox.instrument(_routes(FastAPI()))
    if "BENCH_TOGGLE_OUT" in os.environ:  # benchmarks/profiling_paired.py
        return _toggled(app, telemetry.profiler)
    return app


def _toggled(app: Any, profiler: Any) -> Any:
    """`app` counting its requests, and a thread switching `profiler` off and on in segments of BENCH_TOGGLE_SECONDS
    under the benchmark's steady load; each segment's profiler state, process CPU seconds, requests and wall seconds
    go to BENCH_TOGGLE_OUT (JSON, rewritten after every segment). Pairs of segments run on-off, then off-on (drift
    cancels). BENCH_TOGGLE_CONTROL=1 keeps the profiler on throughout (an A/A run: what the method reads when
    nothing changes).

    BENCH_TOGGLE_MODE=pause (the default) switches with `Profiler.pause()`/`resume()`: the SIGPROF timer, the sampler
    thread's ticks and span noting, with the threads kept. The profiler's own flush is put off (the server runs with
    a long profiling interval) and this thread flushes instead, at the end of an "on" segment once
    BENCH_TOGGLE_FLUSH seconds of "on" time have gone by since the last one: the encoding and sending of a window
    land in an "on" segment, once per interval of sampling, as in a process that profiles all the time.
    BENCH_TOGGLE_MODE=restart switches with `stop()`/`start()` (every stop sends a window, every start starts the
    threads): a cost per segment that a profiling process does not pay, so an upper bound."""
    seconds = float(os.environ.get("BENCH_TOGGLE_SECONDS", "5"))
    warmup = float(os.environ.get("BENCH_TOGGLE_WARMUP", "5"))
    control = os.environ.get("BENCH_TOGGLE_CONTROL") == "1"
    restart = os.environ.get("BENCH_TOGGLE_MODE", "pause") == "restart"
    flush_every = float(os.environ.get("BENCH_TOGGLE_FLUSH", "15"))
    out = os.environ["BENCH_TOGGLE_OUT"]
    requests = [0]
    off, on = (profiler.stop, profiler.start) if restart else (profiler.pause, profiler.resume)

    async def counted(scope: Any, receive: Any, send: Any) -> None:
        requests[0] += 1
        await app(scope, receive, send)

    def segments() -> None:
        while requests[0] < 100:  # the load has begun
            time.sleep(0.1)
        time.sleep(warmup)
        done: list[dict[str, Any]] = []
        running = True
        sampled = 0.0  # seconds "on" since the last flush (pause mode)
        for i in itertools.count():
            this_on = i % 4 in (0, 3)  # on, off | off, on | on, off | ...: each pair has one of each, in turn first
            cpu, count, start = time.process_time(), requests[0], time.monotonic()
            if this_on and not running:
                on()
                running = True
            time.sleep(seconds)
            flushed = False
            if this_on and not restart:
                sampled += seconds
                if sampled >= flush_every:
                    profiler.flush()
                    sampled, flushed = 0.0, True
            if i % 4 == 0 and not control:  # (the next segment is off)
                off()
                running = False
            done.append({"on": this_on, "cpu_s": time.process_time() - cpu, "requests": requests[0] - count,
                         "wall_s": time.monotonic() - start, "flushed": flushed})
            if i % 20 == 19 or seconds >= 2:
                with open(out + ".tmp", "w") as f:
                    json.dump({"control": control, "seconds": seconds, "restart": restart, "segments": done}, f)
                os.replace(out + ".tmp", out)

    threading.Thread(target=segments, name="bench-toggle", daemon=True).start()
    return counted


def contrib() -> FastAPI:
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    _otel_sdk()
    app = _routes(FastAPI())
    FastAPIInstrumentor.instrument_app(app)
    return app


def contrib_lean() -> FastAPI:
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    _otel_sdk()
    app = _routes(FastAPI())
    FastAPIInstrumentor.instrument_app(app, exclude_spans=["receive", "send"])
    return app


def native() -> FastAPI:
    _otel_sdk()
    return _routes(FastAPI())


def native_lean() -> FastAPI:
    _otel_sdk()
    return _routes(FastAPI(telemetry={"operation_spans": False}))


def logfire_mode() -> FastAPI:
    import logfire

    # OTEL_EXPORTER_OTLP_ENDPOINT makes logfire add an OTLP span exporter and metric reader of its own.
    logfire.configure(
        send_to_logfire=False,
        console=False,
        service_name=os.environ.get("OTEL_SERVICE_NAME", "bench-logfire"),
        inspect_arguments=False,
    )
    app = _routes(FastAPI())
    logfire.instrument_fastapi(app)
    return app


def pfi() -> FastAPI:
    from prometheus_fastapi_instrumentator import Instrumentator

    app = _routes(FastAPI())
    Instrumentator().instrument(app).expose(app)
    return app


BUILDERS: dict[str, Callable[[], FastAPI]] = {
    "bare": bare,
    "obsbox": obsbox_mode,
    "obsbox-profiling": obsbox_profiling,
    "contrib": contrib,
    "contrib-lean": contrib_lean,
    "native": native,
    "native-lean": native_lean,
    "logfire": logfire_mode,
    "pfi": pfi,
}


def serve(mode: str) -> None:
    import uvicorn

    app = BUILDERS[mode]()
    # Bind here, on an ephemeral port, and tell the parent which one: no fixed ports, no race.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, workers=1, access_log=False, log_level="warning", loop="auto", http="auto")
    server = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in BUILDERS:
        sys.exit(f"usage: app.py {{{','.join(BUILDERS)}}}")
    serve(sys.argv[1])
