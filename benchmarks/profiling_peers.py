"""obsbox's continuous profiler against the maintained one on PyPI, the Pyroscope agent (`pyroscope-io`, py-spy
inside the process): CPU cost, memory, what reaches the backend.

    .venv/bin/python benchmarks/profiling_peers.py                  # 3 rounds x 10 s per mode, about 2 minutes
    .venv/bin/python benchmarks/profiling_peers.py --rounds 5 --seconds 20 --json out.json

Each mode runs the same program in a fresh process: one thread burning CPU inside a span (counting iterations),
eight threads idle 30 frames deep, each profiler at 100 Hz (the Pyroscope agent's default; obsbox's is 19) sending to a receiver in this
process that stores what it gets. Modes alternate within a round. Per mode, medians over the rounds:

- work/CPU s: iterations per CPU second of the busy thread (what the application keeps of its own speed);
- profiler CPU: the process's CPU time beyond the busy thread's, per wall second, minus that of the `none` mode
  (the profiler's own threads, native ones included);
- max RSS: the process's peak resident memory (ru_maxrss);
- requests, formats, span ids: what the receiver got (how many uploads, their `format`, whether samples carry
  a span id — the Pyroscope agent needs its separate pyroscope-otel package and thread tags for that).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PROGRAM = textwrap.dedent("""
    import json, os, resource, sys, threading, time
    mode, endpoint, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    import obsbox
    telemetry = obsbox.configure(service_name="peer-" + mode, console=False, traces_exporter="none",
                                 metrics_exporter="none", logs_exporter="none", profiling=mode == "obsbox",
                                 profiling_endpoint=endpoint, profiling_interval=5.0, profiling_rate=100)
    if mode == "pyroscope-io":
        import pyroscope
        pyroscope.configure(application_name="peer-pyroscope-io", server_address=endpoint, upload_interval=5)
    stop = threading.Event()
    result = {}

    def deep(depth, fn):
        return deep(depth - 1, fn) if depth else fn()

    def busy():
        n = 0
        with telemetry.tracer.start_as_current_span("busy"):
            start = time.thread_time()
            while not stop.is_set():
                sum(i * i for i in range(2_000))
                n += 1
            result["work_per_cpu_s"] = n / (time.thread_time() - start)
            result["busy_cpu_s"] = time.thread_time() - start

    threads = [threading.Thread(target=deep, args=(30, busy))]
    threads += [threading.Thread(target=deep, args=(30, stop.wait)) for _ in range(8)]
    t0, c0 = time.monotonic(), time.process_time()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    result["other_cpu_per_s"] = (cpu - result["busy_cpu_s"]) / wall
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if mode == "pyroscope-io":
        pyroscope.shutdown()
    telemetry.shutdown()
    print(json.dumps(result))
""")

MODES = ("none", "obsbox", "pyroscope-io")


class Store:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path, _, query = self.path.partition("?")
                store.requests.append((path, dict(urllib.parse.parse_qsl(query)), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"


def _span_ids_in(body: bytes) -> bool:
    import gzip

    raw = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
    return b"span_id" in raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    got: dict[str, list[tuple[str, dict[str, str], bytes]]] = {}
    for round_ in range(args.rounds):
        for mode in MODES if round_ % 2 == 0 else MODES[::-1]:
            store = Store()
            out = subprocess.run([sys.executable, "-c", PROGRAM, mode, store.endpoint, str(args.seconds)],
                                 capture_output=True, text=True, timeout=args.seconds * 4 + 60, check=False)
            store.server.shutdown()
            if out.returncode != 0:
                print(f"{mode}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            got[mode] = store.requests
            print(f"[round {round_ + 1}] {mode:13s} {runs[mode][-1]}", file=sys.stderr, flush=True)
    base = statistics.median(r["other_cpu_per_s"] for r in runs["none"]) if runs["none"] else 0.0
    base_work = statistics.median(r["work_per_cpu_s"] for r in runs["none"]) if runs["none"] else 0.0
    rows = []
    print("| mode | work/CPU s (× none) | profiler CPU (% of a core) | max RSS MiB | uploads | format | span ids |")
    print("|---|---|---|---|---|---|---|")
    for mode in MODES:
        if not runs[mode]:
            continue
        work = statistics.median(r["work_per_cpu_s"] for r in runs[mode])
        other = statistics.median(r["other_cpu_per_s"] for r in runs[mode]) - base
        rss = statistics.median(r["max_rss_mib"] for r in runs[mode])
        requests = got.get(mode, [])
        formats = sorted({q.get("format") or path for path, q, _ in requests})  # the connect API has no format
        spans = any(_span_ids_in(body) for _, _, body in requests)
        row = {"mode": mode, "work_per_cpu_s": work, "work_vs_none": work / base_work if base_work else 0,
               "profiler_cpu_pct": 100 * other, "max_rss_mib": rss, "uploads_last_round": len(requests),
               "formats": formats, "span_ids": spans}
        rows.append(row)
        print(f"| {mode} | {work:.0f} ({row['work_vs_none']:.3f}) | {100 * other:.2f} | {rss:.1f} | {len(requests)} "
              f"| {', '.join(formats) or '—'} | {'yes' if spans else 'no'} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
