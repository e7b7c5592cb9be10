"""What the continuous profiler costs a saturated server, switched off and on inside one server process.

    .venv/bin/python benchmarks/profiling_paired.py                      # 10 minutes of load, 1 s segments
    .venv/bin/python benchmarks/profiling_paired.py --control            # the same with the profiler never switched
    .venv/bin/python benchmarks/profiling_paired.py --no-sigprof         # the main thread sampled by the sampler thread
    .venv/bin/python benchmarks/profiling_paired.py --rate 100           # another rate than the default
    .venv/bin/python benchmarks/profiling_paired.py --mode restart --seconds 4   # stop()/start(): an upper bound
    .venv/bin/python benchmarks/profiling_paired.py --minutes 20 --json benchmarks/results/x.json

Why not overhead.py's rounds: on a shared 2-core VM the bare server itself moves by +-25% between rounds of 15 s,
so fresh processes compared minutes apart cannot show a 2% difference. Here one server (benchmarks/app.py
obsbox-profiling) runs under one wrk for the whole run, while a thread in it switches the profiler off and on every
`--seconds`. Adjacent segments make a pair, one with the profiler on and one off, the order alternating so a steady
drift cancels; what a pair compares was measured a second apart, in the same process, under the same load.

Switching is `Profiler.pause()` / `resume()` (the SIGPROF timer, the sampler thread's ticks, span noting), which
costs next to nothing, so segments can be short and pairs many: on this VM throughput moves by about 10% from one
segment to the next whatever the profiler does, and only hundreds of pairs bring the interval down to about 1%.
The profiler's own flush is put off; the switching thread encodes and sends the window at the end of an "on"
segment once 15 s of sampling have gone by, as a process profiling all the time does once per interval.
`--mode restart` switches with `stop()` / `start()` instead: every "on" segment then also pays for a window sent
and threads started, which a profiling process pays once, so it gives an upper bound.

Per pair: throughput (requests per wall second, on / off) and server CPU per request (on - off, in microseconds).
The report gives the totals (all "on" segments against all "off" ones, which counts the windows sent) and the
median over the pairs (which leaves those occasional segments out), each with a 95% bootstrap interval over the
pairs. `--control` runs the same with the profiler left on in every segment: the spread an unchanged server shows,
which a real difference must stand out of.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import Receiver, Server, cpus, run_wrk
from overhead import machine

BOOTSTRAP = 4000


def pairs(segments: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(on, off) pairs of adjacent segments, leaving out those the load did not cover in full (its start and end)."""
    usable = [s for s in segments if s["requests"] > 0 and s["wall_s"] > 0]
    if not usable:
        return []
    typical = statistics.median(s["requests"] / s["wall_s"] for s in usable)
    out = []
    for first, second in zip(segments[0::2], segments[1::2], strict=False):
        if any(s["requests"] / max(s["wall_s"], 1e-9) < typical / 2 for s in (first, second)):
            continue  # wrk had not started or had ended
        on, off = (first, second) if first["on"] else (second, first)
        out.append((on, off))
    return out


def _interval(values: list[float], seed: int = 1) -> tuple[float, float]:
    """A 95% bootstrap interval of the median of `values`."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(BOOTSTRAP))
    return medians[int(0.025 * BOOTSTRAP)], medians[int(0.975 * BOOTSTRAP) - 1]


def _totals(matched: list[tuple[dict[str, Any], dict[str, Any]]]) -> tuple[float, float]:
    """Throughput (all "on" requests per "on" second over the same for "off") and CPU per request (on - off, us)
    of the pairs' totals: what the profiler costs on the whole, its occasional windows encoded and sent included,
    which a median over pairs leaves out."""
    on = [sum(p[0][k] for p in matched) for k in ("requests", "wall_s", "cpu_s")]
    off = [sum(p[1][k] for p in matched) for k in ("requests", "wall_s", "cpu_s")]
    return (on[0] / on[1]) / (off[0] / off[1]), (on[2] / on[0] - off[2] / off[0]) * 1e6


def _interval_of(matched: list[Any], statistic: Any, seed: int = 1) -> tuple[float, float]:
    """A 95% bootstrap interval of `statistic` over resamples of the pairs."""
    rng = random.Random(seed)
    values = sorted(statistic(rng.choices(matched, k=len(matched))) for _ in range(BOOTSTRAP // 4))
    n = len(values)
    return values[int(0.025 * n)], values[int(0.975 * n) - 1]


def summarise(segments: list[dict[str, Any]]) -> dict[str, Any]:
    matched = pairs(segments)
    if len(matched) < 4:
        raise SystemExit(f"only {len(matched)} usable pairs of segments: run longer")
    ratio = [(on["requests"] / on["wall_s"]) / (off["requests"] / off["wall_s"]) for on, off in matched]
    cpu = [(on["cpu_s"] / on["requests"] - off["cpu_s"] / off["requests"]) * 1e6 for on, off in matched]
    off_cpu = [off["cpu_s"] / off["requests"] * 1e6 for _, off in matched]
    off_rps = [off["requests"] / off["wall_s"] for _, off in matched]
    totals = _totals(matched)
    return {
        "pairs": len(matched),
        "throughput ratio, all on / all off": totals[0],
        "throughput ratio of totals, 95% interval": _interval_of(matched, lambda m: _totals(m)[0]),
        "CPU per request, all on - all off (us)": totals[1],
        "CPU per request of totals, 95% interval": _interval_of(matched, lambda m: _totals(m)[1]),
        "throughput ratio (on / off), median": statistics.median(ratio),
        "throughput ratio, 95% interval": _interval(ratio),
        "CPU per request, on - off (us), median": statistics.median(cpu),
        "CPU per request difference, 95% interval": _interval(cpu),
        "CPU per request, profiler off (us), median": statistics.median(off_cpu),
        "requests per second, profiler off, median": statistics.median(off_rps),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    server_cpu, load_cpu = cpus()
    with tempfile.TemporaryDirectory() as tmp, Receiver(load_cpu) as receiver:
        out = Path(tmp) / "segments.json"
        env = {
            "BENCH_TOGGLE_OUT": str(out),
            "BENCH_TOGGLE_SECONDS": str(args.seconds),
            "BENCH_TOGGLE_CONTROL": "1" if args.control else "0",
            "BENCH_SIGPROF": "0" if args.no_sigprof else "1",
            "BENCH_TOGGLE_MODE": args.mode,
        }
        if args.rate:
            env["OBSBOX_PROFILING_RATE"] = str(args.rate)
        if args.mode == "pause":  # the toggling thread flushes, once per 15 s of sampling (benchmarks/app.py)
            env["OBSBOX_PROFILING_INTERVAL"] = str(3_600_000)  # (milliseconds)
        server = Server("obsbox-profiling", server_cpu, receiver, env)
        try:
            server.start(timeout=60)
            seconds = args.minutes * 60
            print(f"load for {seconds:.0f} s in segments of {args.seconds:g} s"
                  f"{' (control: the profiler stays on)' if args.control else ''} ...", file=sys.stderr, flush=True)
            started = time.monotonic()
            result = run_wrk(server.url("/items/1"), cpu=load_cpu, connections=args.connections, seconds=seconds)
            if result.errors:
                print(f"wrk reported {result.errors} errors", file=sys.stderr)
            print(f"wrk: {result.requests} requests in {time.monotonic() - started:.0f} s", file=sys.stderr)
            time.sleep(args.seconds)  # the segment under way when the load ended is recorded as mostly empty
        finally:
            server.cleanup()
        segments = json.loads(out.read_text())["segments"]
    return {"segments": segments, "summary": summarise(segments)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of load (default 10)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per segment (default 1)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--control", action="store_true", help="never switch the profiler: the method's null spread")
    parser.add_argument("--no-sigprof", action="store_true",
                        help="take SIGPROF first (a no-op handler), so the profiler samples every thread, the main one "
                             "too, from its sampler thread alone")
    parser.add_argument("--mode", choices=("pause", "restart"), default="pause",
                        help="switch with Profiler.pause()/resume() (default), or stop()/start(): an upper bound that "
                             "charges a window sent and threads started to every segment")
    parser.add_argument("--rate", type=int, help="samples per second (OBSBOX_PROFILING_RATE; default: the profiler's)")
    parser.add_argument("--json", type=Path, help="write the segments, the summary and the machine here")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    result = run(args)
    result["machine"] = machine()
    result["run"] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "minutes": args.minutes, "seconds": args.seconds, "connections": args.connections, "control": args.control,
        "sigprof": not args.no_sigprof, "rate": args.rate, "mode": args.mode,
        "load average before (1, 5, 15 min)": load_before, "load average after": os.getloadavg(),
    }  # fmt: skip
    for key, value in result["summary"].items():
        shown = f"{value[0]:.3f} .. {value[1]:.3f}" if isinstance(value, tuple) else f"{value:.3f}"
        print(f"{key:48s} {shown}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
