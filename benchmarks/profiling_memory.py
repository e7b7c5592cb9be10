"""Memory over time with the continuous profiler on: RSS of a busy traced process, sampled, side by side with the
same process without profiling.

    .venv/bin/python benchmarks/profiling_memory.py                     # 10 minutes, RSS every 10 s
    .venv/bin/python benchmarks/profiling_memory.py --minutes 2 --json out.json

Two worker processes run the same load for the whole time: four threads and an asyncio loop of 20 tasks, each
taking spans (nested, named from a small set), burning CPU in stacks of varying depth and sleeping in between (about
a third of a core together), exporting spans and metrics over OTLP to benchmarks/receiver.py, which also takes the
profiles on its Pyroscope-style /ingest. One worker has `profiling=True` (default rate, 15 s interval). The parent
reads each worker's VmRSS from /proc every `--every` seconds and prints a table; a flat curve for `profiling` is the
aim (docs/benchmarks.md records a run).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable

WORKER = textwrap.dedent("""
    import asyncio, os, random, sys, threading, time
    import obsbox

    telemetry = obsbox.configure(service_name=sys.argv[1], console=False,
                                 profiling=sys.argv[1].endswith("profiling"))
    tracer = telemetry.tracer
    stop = time.monotonic() + float(sys.argv[2])

    def burn(depth, n):
        if depth:
            return burn(depth - 1, n)
        x = 0
        for i in range(n):
            x += i * i
        return x

    def work(rng):
        with tracer.start_as_current_span(rng.choice(("load", "store", "render", "check"))):
            with tracer.start_as_current_span("inner"):
                burn(rng.randrange(1, 30), 2_000)

    def thread_loop(seed):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            work(rng)
            time.sleep(0.02)

    async def task_loop(seed):
        rng = random.Random(seed)
        while time.monotonic() < stop:
            work(rng)
            await asyncio.sleep(0.2)

    async def tasks():
        await asyncio.gather(*(task_loop(100 + i) for i in range(20)))

    threads = [threading.Thread(target=thread_loop, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    telemetry.shutdown()
""")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between two RSS readings")
    parser.add_argument("--json", type=Path, help="write the readings here")
    args = parser.parse_args()
    seconds = args.minutes * 60
    receiver = subprocess.Popen([PYTHON, str(HERE / "receiver.py"), "0"], stdout=subprocess.PIPE, text=True)
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline().split()[-1])
    endpoint = f"http://127.0.0.1:{port}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OBSBOX_", "OTEL_"))},
           "OBSBOX_ENDPOINT": endpoint, "OBSBOX_PROFILING_ENDPOINT": endpoint}
    modes = ("memory-plain", "memory-profiling")
    workers = {mode: subprocess.Popen([PYTHON, "-c", WORKER, mode, str(seconds)], env=env) for mode in modes}
    readings: list[dict[str, float]] = []
    start = time.monotonic()
    print("| t (s) | " + " | ".join(f"{m} RSS MiB" for m in modes) + " |\n|---|" + "---|" * len(modes), flush=True)
    try:
        while time.monotonic() - start < seconds - 1 and all(w.poll() is None for w in workers.values()):
            time.sleep(args.every)
            row: dict[str, float] = {"t": round(time.monotonic() - start, 1)}
            for mode, worker in workers.items():
                try:
                    row[mode] = rss_kib(worker.pid) / 1024
                    row[mode + " cpu s"] = cpu_seconds(worker.pid)
                except OSError:
                    pass
            readings.append(row)
            print(f"| {row['t']:.0f} | " + " | ".join(f"{row.get(m, 0):.1f}" for m in modes) + " |", flush=True)
    finally:
        for worker in workers.values():
            worker.wait(timeout=60)
        with urllib.request.urlopen(endpoint + "/stats", timeout=5) as response:
            stats = json.load(response)
        receiver.send_signal(signal.SIGINT)
        receiver.wait(timeout=10)
    print(f"\nreceived: {json.dumps({m: stats.get(m, {}) for m in modes})}")
    if args.json:
        args.json.write_text(json.dumps({"readings": readings, "received": stats,
                                         "loadavg": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
