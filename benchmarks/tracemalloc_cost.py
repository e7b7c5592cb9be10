"""What switching the pprof endpoint on costs: tracemalloc traces every allocation while /debug/pprof/ is on.

    .venv/bin/python benchmarks/tracemalloc_cost.py              # 7 rounds, off and on alternating
    .venv/bin/python benchmarks/tracemalloc_cost.py --rounds 3

One workload, a request's worth of typical Python allocation (a dict parsed from JSON, a list comprehension, string
formatting, a small object), is timed with tracemalloc off and then on (16 frames, as obsbox.profiling.endpoint
starts it), alternating, in one process pinned to whatever core it gets. Printed: µs per workload, medians, the
ratio, and the memory tracemalloc itself uses with the workload's garbage collected (`get_tracemalloc_memory()`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc

PAYLOAD = json.dumps({"items": [{"id": i, "name": f"item-{i}", "price": i * 1.5} for i in range(20)],
                      "user": {"id": 42, "roles": ["a", "b"]}})


class Item:
    __slots__ = ("id", "name", "price")

    def __init__(self, id: int, name: str, price: float) -> None:  # noqa: A002
        self.id, self.name, self.price = id, name, price


def workload() -> int:
    data = json.loads(PAYLOAD)
    items = [Item(d["id"], d["name"], d["price"]) for d in data["items"]]
    text = ",".join(f"{it.name}={it.price:.2f}" for it in items)
    return len(json.dumps({"n": len(items), "text": text}))


def timed(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        workload()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("-n", type=int, default=20_000, help="workloads per round and mode")
    args = parser.parse_args()
    timed(2000)
    off: list[float] = []
    on: list[float] = []
    overhead = 0
    for _ in range(args.rounds):
        off.append(timed(args.n))
        tracemalloc.start(16)
        on.append(timed(args.n))
        overhead = tracemalloc.get_tracemalloc_memory()
        tracemalloc.stop()
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(f"tracemalloc off: {m_off:.1f} us per workload (median of {args.rounds}; {min(off):.1f}-{max(off):.1f})")
    print(f"tracemalloc on:  {m_on:.1f} us per workload (median of {args.rounds}; {min(on):.1f}-{max(on):.1f})")
    print(f"ratio on/off: {m_on / m_off:.2f}x; tracemalloc's own memory at the end of a round: "
          f"{overhead / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
