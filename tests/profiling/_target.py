"""A program to profile: a thread blocked in a known function, an asyncio task awaiting in a known coroutine, and
memory held by a known allocator. Commands on stdin, one per line, each answered with one line on stdout:

    enable [PORT]   obsbox.profiling.enable_pprof(port=PORT) -> "ok <url or None>"
    disable         obsbox.profiling.disable_pprof()         -> "ok"
    alloc           hold_memory_here() keeps ~24 MB           -> "ok <bytes>"
    burn SECONDS    burn_cpu_here() in a new thread           -> "ok"
    spanburn SECONDS  the same inside a span                  -> "ok <span id, 16 hex digits>"

configure() runs first with what the environment says (OBSBOX_METRICS_PORT, OBSBOX_PPROF_ENDPOINT, ...); its admin
port is printed as "port <n>" before anything else.
"""

from __future__ import annotations

import asyncio
import queue
import sys
import threading
import time
from typing import Any

import obsbox
import obsbox.profiling

HELD: list[bytearray] = []
_never = threading.Event()


def hold_memory_here() -> int:
    for _ in range(24):
        HELD.append(bytearray(1024 * 1024))
    return sum(map(len, HELD))


def burn_cpu_here(seconds: float) -> int:
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(i * i for i in range(1000))
    return n


def burn_in_span(tracer: Any, seconds: float, span_ids: queue.Queue[str]) -> None:
    with tracer.start_as_current_span("hot-span") as span:
        span_ids.put(format(span.get_span_context().span_id, "016x"))
        burn_cpu_here(seconds)


def wait_for_the_event_here() -> None:
    _never.wait()


async def poll_forever_here() -> None:
    while True:
        await asyncio.sleep(3600)


def run_loop() -> None:
    async def main() -> None:
        await asyncio.create_task(poll_forever_here(), name="poller")

    asyncio.run(main())


def main() -> None:
    telemetry = obsbox.configure(service_name="pprof-target", traces_exporter="none", metrics_exporter="none",
                                 logs_exporter="none")
    threading.Thread(target=wait_for_the_event_here, name="blocked-thread", daemon=True).start()
    threading.Thread(target=run_loop, name="event-loop", daemon=True).start()
    print(f"port {telemetry.metrics_port}", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "enable":
            print("ok", obsbox.profiling.enable_pprof(port=int(args[0]) if args else None), flush=True)
        elif command == "disable":
            obsbox.profiling.disable_pprof()
            print("ok", flush=True)
        elif command == "burn":
            threading.Thread(target=burn_cpu_here, args=(float(args[0]),), name="burner", daemon=True).start()
            print("ok", flush=True)
        elif command == "spanburn":
            span_ids: queue.Queue[str] = queue.Queue()
            threading.Thread(target=burn_in_span, args=(telemetry.tracer, float(args[0]), span_ids),
                             name="span-burner", daemon=True).start()
            print("ok", span_ids.get(timeout=10), flush=True)
        elif command == "alloc":
            print("ok", hold_memory_here(), flush=True)


if __name__ == "__main__":
    main()
