"""Instructions per request of obsbox's server-side telemetry alone (ServerRequest begin + finish, the span queued
for export), counted by callgrind: a figure no neighbour on a shared machine changes.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python benchmarks/request_instructions.py 1000
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python benchmarks/request_instructions.py 11000

The difference of the two "Collected" totals divided by 10000 is the count per request (start-up cancels out). To
compare commits, run it with PYTHONPATH pointing at a checkout of each (and PYTHONHASHSEED=0). Nothing is sent:
the export schedule is an hour and the process ends with os._exit. A second argument prices a seam: `processor`
adds an SDK SimpleSpanProcessor with an InMemorySpanExporter (every span becomes a ReadableSpan), `rules` sets a
sampling rule for the request's route (the span starts with its attributes and the route, as asked in advance).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import obsbox
from obsbox.instrumentation._server import ServerRequest, paths, request_attributes


def main(n: int, seam: str) -> None:
    extra: dict[str, Any] = {}
    if seam == "processor":
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        extra["span_processors"] = [SimpleSpanProcessor(exporter)]
    elif seam == "rules":
        extra["sampling_rules"] = "GET /items/{item_id}=1"
    obsbox.configure(service_name="instructions", endpoint="http://127.0.0.1:9", console=False, schedule_delay=3600,
                     max_queue_size=100_000, max_export_batch_size=100_000, metric_export_interval=3600, **extra)
    block = request_attributes("GET", "http", "127.0.0.1", 8000, "127.0.0.1", "wrk", "1.1")
    path = paths["/items/1"]
    early = (lambda carrier: "/items/{item_id}") if seam == "rules" else None
    for i in range(200 + n):  # 200 of warm-up (interned tables, specialisation), then n
        if seam == "processor" and i % 1000 == 0:
            exporter.clear()  # (memory stays flat; a real exporter sends and forgets)
        request = ServerRequest.begin("GET", "http", [block, path], None, None, early, None)
        assert request is not None
        request.finish("/items/{item_id}", 200, None)
        request.detach()
    os._exit(0)  # no flush, no shutdown: only the requests are counted


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "")
