"""Instructions per request of a mode's server under uvicorn, per thread: a cost figure no neighbour changes.

    .venv/bin/python benchmarks/instructions.py bare obsbox        # needs valgrind (apt-get install valgrind)

Timings on a shared machine move with the neighbours; instruction counts do not. Each mode's server (the same
benchmarks/app.py as overhead.py) runs under callgrind twice, answering 400 and then 2000 requests (after 200 of
warm-up) over 4 keep-alive connections, and the difference divided by 1600 is the count per request, so start-up
and shutdown cancel out. Metrics export is pushed out of the run (OTEL_METRIC_EXPORT_INTERVAL of an hour), since
it is time-based and the server is slow under callgrind. For the same reason the export thread's count here says
little: at ~30 requests a second it sends small scheduled batches, not the full ones of a loaded server.
Expect about 5 minutes per mode.
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from _harness import Receiver, Server, cpus

WARMUP, SMALL, LARGE, CONNECTIONS = 200, 400, 2000, 4


class _CallgrindServer(Server):
    def __init__(self, mode: str, cpu: int, receiver: Receiver, out: Path) -> None:
        super().__init__(mode, cpu, receiver, extra_env={"OTEL_METRIC_EXPORT_INTERVAL": "3600000"})
        self.argv = ["valgrind", "--tool=callgrind", "--separate-threads=yes",
                     f"--callgrind-out-file={out}", *self.argv]


def _drive(port: int, requests: int) -> None:
    def worker(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            for _ in range(count):
                conn.request("GET", "/items/1")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET /items/1 answered {response.status}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(requests // CONNECTIONS,)) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _per_thread(mode: str, requests: int, receiver: Receiver, cpu: int, workdir: Path) -> dict[int, int]:
    out = workdir / f"{mode}-{requests}.out"
    server = _CallgrindServer(mode, cpu, receiver, out)
    try:
        server.start(timeout=600)
        _drive(server.port, WARMUP)
        _drive(server.port, requests)
    finally:
        server.stop(timeout=300)
        server.cleanup()
    counts = {}
    for part in sorted(workdir.glob(f"{out.name}-*")):  # one file per thread: out-01 is the main thread
        match = re.search(r"^summary: (\d+)", part.read_text(errors="replace"), re.MULTILINE)
        if match:
            counts[int(part.name.rsplit("-", 1)[1])] = int(match.group(1))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modes", nargs="+", help="modes of benchmarks/app.py, e.g. bare obsbox")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("instructions.py needs valgrind: apt-get install valgrind")
    server_cpu, load_cpu = cpus()
    with Receiver(load_cpu) as receiver, tempfile.TemporaryDirectory(prefix="obsbox-callgrind-") as tmp:
        for mode in args.modes:
            print(f"{mode}: {SMALL} then {LARGE} requests under callgrind ...", file=sys.stderr, flush=True)
            small = _per_thread(mode, SMALL, receiver, server_cpu, Path(tmp))
            large = _per_thread(mode, LARGE, receiver, server_cpu, Path(tmp))
            for thread in sorted(large):
                per_request = (large[thread] - small.get(thread, 0)) / (LARGE - SMALL)
                name = "request thread" if thread == 1 else f"thread {thread}"
                print(f"{mode:10s} {name:15s} {per_request:10.0f} instructions/request", flush=True)


if __name__ == "__main__":
    main()
