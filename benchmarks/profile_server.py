"""Where a mode's server spends its time under load: py-spy samples it while wrk drives it.

    .venv/bin/python benchmarks/profile_server.py obsbox --duration 10 --out /tmp/obsbox.raw

Same setup as overhead.py (server on the first core, wrk and the OTLP receiver on the second). py-spy samples
the server (pinned to the second core, non-blocking so it does not stop the server) and writes collapsed stacks;
this script then prints the share of samples per package, the top functions by self time and by inclusive time,
and the share per thread (the request loop against the exporter threads). Throughput under py-spy is not a
benchmark figure: use overhead.py for that.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from _harness import Receiver, Server, cpus, run_wrk
from app import MODES

# "func (path/to/module.py:123)" -> ("func", "path/to/module.py")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
_PACKAGES = [
    ("obsbox", "/obsbox/"),
    ("opentelemetry", "/opentelemetry/"),
    ("logfire", "/logfire/"),
    ("prometheus", "/prometheus_"),
    ("fastapi", "/fastapi/"),
    ("starlette", "/starlette/"),
    ("pydantic", "/pydantic"),
    ("uvicorn", "/uvicorn/"),
    ("protobuf", "/google/protobuf/"),
    ("http client (urllib3/requests)", "/urllib3/"),
    ("http client (urllib3/requests)", "/requests/"),
    ("asyncio", "/asyncio/"),
    ("threading/queue", "/threading.py"),
    ("threading/queue", "/queue.py"),
]


def _parse(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip().rpartition(" ")
    return stack.split(";"), int(count)


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    path = re.sub(r"^.*/(site-packages|lib/python3\.\d+)/", "", m["file"])
    return f"{m['func']} ({path})"


def _package(frame: str) -> str:
    for name, marker in _PACKAGES:
        if marker in frame:
            return name
    return "other"


def summarise(raw: Path, top: int = 15) -> str:
    """Text summary of py-spy's collapsed stacks (`--format raw --threads`)."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _parse(line)
        thread, frames = (
            (frames[0], frames[1:]) if frames[0].startswith(("thread ", "process ")) else ("", frames)
        )
        if not frames:
            continue
        total += count
        threads[thread] += count
        leaf = frames[-1]
        self_time[_short(leaf)] += count
        # A package's share is the time spent with its code on top of the stack (self time).
        packages[_package(leaf)] += count
        for name in {_short(f) for f in frames}:
            inclusive[name] += count
    if not total:
        return "no samples"

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    out = [f"{total} samples", "", "self time by package:"]
    out += [f"  {pct(n)}  {name}" for name, n in packages.most_common()]
    out += ["", "threads:"] + [f"  {pct(n)}  {name or '(one thread)'}" for name, n in threads.most_common(6)]
    out += ["", f"top {top} by self time:"] + [
        f"  {pct(n)}  {name}" for name, n in self_time.most_common(top)
    ]
    out += ["", f"top {top} by inclusive time:"]
    out += [f"  {pct(n)}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=list(MODES))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=None, help="keep py-spy's collapsed stacks here")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    raw = args.out or Path(f"/tmp/profile-{args.mode}.raw")
    server_cpu, load_cpu = cpus()
    with Receiver(load_cpu) as receiver:
        server = Server(args.mode, server_cpu, receiver)
        try:
            server.start()
            url = server.url("/items/1")
            run_wrk(url, cpu=load_cpu, connections=args.connections, seconds=2)  # warm-up
            spy = subprocess.Popen(
                ["taskset", "-c", str(load_cpu), pyspy, "record", "--pid", str(server.pid), "--rate",
                 str(args.rate), "--duration", str(round(args.duration)), "--format", "raw", "--threads",
                 "--nonblocking", "--full-filenames", "--output", str(raw)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                result = run_wrk(url, cpu=load_cpu, connections=args.connections, seconds=args.duration)
                _, err = spy.communicate(timeout=args.duration + 30)
            finally:
                if spy.poll() is None:
                    spy.kill()
                    spy.wait()
            if spy.returncode != 0:
                print(f"py-spy failed: {err.strip()}", file=sys.stderr)
                return 1
        finally:
            server.cleanup()
    print(
        f"mode {args.mode}: {result.rps:.0f} req/s under py-spy (not a benchmark figure); stacks in {raw}\n"
    )
    print(summarise(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
