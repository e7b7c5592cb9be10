"""What the continuous profiler costs, in CPU time (robust on a shared machine, unlike throughput):

    .venv/bin/python benchmarks/profiling_cost.py            # about a minute
    .venv/bin/python benchmarks/profiling_cost.py --json out.json

1. Per span: `start_as_current_span` entered and left (the API path every integration takes) and the request
   path's `attach_span`/`detach_span`, with profiling off and on (on: the runtime context notes the current span per
   thread or task). Best of 7 runs of 200 000 each, process CPU time, in ns per span.
2. The sampler thread: its own CPU time (its Linux thread clock) per second of wall time at the default rate, with
   1, 8 and 32 other threads (one busy in a span, the rest idle in sleep, each 30 frames deep), sending to a local
   receiver, and the rate it kept (it spaces its ticks out to stay within 0.5% of a core). That share of one core is
   what a service pays, whatever its request rate.
3. The main thread's SIGPROF sample (obsbox.profiling._signal): what the handler's work costs per call with the
   interrupted frame 10, 40 and 80 frames deep (best of 7 runs of 20 000 calls, process CPU). It runs at most
   `profiling_rate` times per second of the main thread's CPU time, so rate x cost is its share of the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import obsbox
from obsbox.instrumentation._tracer import attach_span, detach_span
from obsbox.profiling import _active
from obsbox.profiling.continuous import _cpu_clock


def _per_call_ns(fn: Callable[[int], None], n: int = 200_000, runs: int = 7) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.process_time_ns()
        fn(n)
        best = min(best, (time.process_time_ns() - start) / n)
    return best


def span_costs(telemetry: Any) -> dict[str, float]:
    tracer = telemetry.tracer
    span = tracer.start_span("request")
    from opentelemetry.context import Context

    parent = Context()

    def api(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("work"):
                pass

    def request_path(n: int) -> None:
        for _ in range(n):
            detach_span(attach_span(span, parent))

    out = {}
    for state in ("off", "on"):
        if state == "on":
            _active.enable()
        out[f"start_as_current_span, profiling {state} (ns)"] = _per_call_ns(api)
        out[f"attach_span+detach_span, profiling {state} (ns)"] = _per_call_ns(request_path)
        _active.disable()
    return out


class _Sink(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _deep(depth: int, fn: Callable[[], None]) -> None:
    if depth:
        _deep(depth - 1, fn)
    else:
        fn()


def sampler_cost(threads: int, seconds: float, endpoint: str) -> dict[str, float]:
    stop = threading.Event()
    telemetry = obsbox.configure(service_name="cost", console=False, profiling=True, profiling_endpoint=endpoint,
                                 traces_exporter="none", metrics_exporter="none", logs_exporter="none")
    tracer, profiler = telemetry.tracer, telemetry.profiler

    def busy() -> None:
        with tracer.start_as_current_span("busy"):
            while not stop.is_set():
                sum(i * i for i in range(2_000))

    workers = [threading.Thread(target=_deep, args=(30, busy))]
    workers += [threading.Thread(target=_deep, args=(30, lambda: stop.wait())) for _ in range(threads - 1)]
    for w in workers:
        w.start()
    sampler = profiler._thread
    time.sleep(1.0)
    clock = _cpu_clock(sampler.native_id)
    cpu0, wall0, ticks0 = time.clock_gettime_ns(clock), time.monotonic_ns(), profiler.ticks
    time.sleep(seconds)
    cpu1, wall1, ticks1 = time.clock_gettime_ns(clock), time.monotonic_ns(), profiler.ticks
    stop.set()
    for w in workers:
        w.join()
    telemetry.shutdown()
    share = (cpu1 - cpu0) / (wall1 - wall0)
    rate = (ticks1 - ticks0) / ((wall1 - wall0) / 1e9)
    return {f"sampler CPU share of a core, {threads} threads (%)": round(100 * share, 2),
            f"samples per second, {threads} threads (Hz)": round(rate, 1),
            f"sampler CPU per tick, {threads} threads (us)": round((cpu1 - cpu0) / 1e3 / max(ticks1 - ticks0, 1), 1)}


def signal_costs() -> dict[str, float]:
    from obsbox.profiling.continuous import Profiler

    class _Nowhere:
        thread_ident = None

        def start(self) -> None: ...

        def stop(self, timeout: float) -> None: ...

        def after_fork(self) -> None: ...

        def offer(self, kind: str, body: bytes, start_ns: int, end_ns: int) -> None: ...

    profiler = Profiler(_Nowhere())
    out: dict[str, float] = {}
    for depth in (10, 40, 80):
        def measure(depth: int = depth) -> None:
            frame = sys._getframe()

            def calls(n: int) -> None:
                for _ in range(n):
                    profiler._record_main(frame, 1000)
                profiler._main_cpu.clear()

            out[f"SIGPROF sample, frame {depth} deep (us per call)"] = round(_per_call_ns(calls, 20_000) / 1e3, 2)

        _deep(depth, measure)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds the sampler is timed per thread count")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, float] = {}
    telemetry = obsbox.configure(service_name="cost", console=False, traces_exporter="none",
                                 metrics_exporter="none", logs_exporter="none")
    results.update(span_costs(telemetry))
    telemetry.shutdown()
    results.update(signal_costs())
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for threads in (1, 8, 32):
        results.update(sampler_cost(threads, args.seconds, f"http://127.0.0.1:{server.server_port}"))
    server.shutdown()
    results["load average (1 min) at the end"] = os.getloadavg()[0]
    for key, value in results.items():
        print(f"{key:60s} {value:10.1f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
