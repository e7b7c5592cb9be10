"""Throughput overhead of instrumenting a FastAPI service: obsbox against the bare app and its peers.

    .venv/bin/python benchmarks/overhead.py                          # 5 rounds x 10 s, every mode
    .venv/bin/python benchmarks/overhead.py --rounds 2 --duration 5 --modes obsbox contrib --json out.json

Method (docs/benchmarks.md explains it): one minimal endpoint under uvicorn pinned to the first core; wrk (one
thread, fixed connections) and a real OTLP/HTTP receiver that decodes every export pinned to the second core.
Each round runs every mode once, bare first (with --alternate, every other round in reverse order), each in a
fresh server process: start, warm up, measure, stop gracefully (the exporters flush), then count what the
receiver got from it. The table reports medians over the rounds and each mode's ratio to bare's median in the
same run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from _harness import Receiver, Server, StartError, cpu_seconds, cpu_times, cpus, run_wrk
from app import MODES

DEFAULT_MODES = ["bare", "obsbox", "contrib", "contrib-lean", "native", "native-lean", "logfire", "pfi"]
_PACKAGES = [
    "obsbox", "fastapi", "starlette", "uvicorn", "uvloop", "httptools", "opentelemetry-sdk",
    "opentelemetry-instrumentation-fastapi", "logfire", "prometheus-fastapi-instrumentator",
]  # fmt: skip


@dataclass
class Run:
    """One mode measured once."""

    mode: str
    round: int
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    requests: int = 0  # every request the server answered: readiness probe + warm-up + measured
    cpu_us: float = 0.0  # server CPU time (all threads) per measured request
    cpu_share: float = 0.0  # server CPU seconds per wall second while measured: < 1 means the core was shared
    core_others: float = 0.0  # share of the server's core that other processes used while measured
    core_idle: float = 0.0  # share of the server's core left idle: the server was waiting, not computing
    errors: int = 0
    received: dict[str, int] = field(default_factory=dict)  # what the OTLP receiver got from this process
    pulled: int | None = None  # pfi: requests counted on its /metrics
    failure: str | None = None


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pfi_count(server: Server) -> int:
    """Sum of http_requests_total on prometheus-fastapi-instrumentator's /metrics: proof it measured."""
    with urllib.request.urlopen(server.url("/metrics"), timeout=10) as response:
        text = response.read().decode()
    return round(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("http_requests_total{")
        )
    )


def measure(mode: str, round_: int, args: argparse.Namespace, receiver: Receiver) -> Run:
    server_cpu, load_cpu = cpus()
    run = Run(mode, round_)
    server = Server(mode, server_cpu, receiver)
    before = receiver.stats(server.service)
    try:
        server.start(timeout=args.start_timeout)
        run.requests = 1  # the readiness probe
        url = server.url("/items/1")
        if args.warmup > 0:
            warm = run_wrk(url, cpu=load_cpu, connections=args.connections, seconds=args.warmup)
            run.requests += warm.requests
        cpu_before, (busy_before, idle_before) = cpu_seconds(server.pid), cpu_times(server_cpu)
        result = run_wrk(url, cpu=load_cpu, connections=args.connections, seconds=args.duration)
        cpu_used = cpu_seconds(server.pid) - cpu_before
        busy_after, idle_after = cpu_times(server_cpu)
        busy, idle = busy_after - busy_before, idle_after - idle_before
        if busy + idle > 0:
            run.core_others = max(0.0, busy - cpu_used) / (busy + idle)
            run.core_idle = idle / (busy + idle)
        run.requests += result.requests
        run.cpu_us = cpu_used / max(result.requests, 1) * 1e6
        run.cpu_share = cpu_used / result.seconds if result.seconds else 0.0
        run.rps, run.p50_ms, run.p99_ms, run.errors = result.rps, result.p50_ms, result.p99_ms, result.errors
        if mode == "pfi":
            run.pulled = _pfi_count(server)
    except (StartError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        run.failure = str(exc)
    finally:
        server.cleanup()
    after = receiver.stats(server.service)
    run.received = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return run


def _gist(failure: str) -> str:
    """The line that says why: the first line, plus the exception at the end of a quoted traceback."""
    lines = [line.strip() for line in failure.strip().splitlines() if line.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"


def _core(ours: float, others: float, idle: float) -> str:
    """How the server's core was spent while measured: this server / other processes / idle, in %."""
    return f"{100 * ours:.0f}/{100 * others:.0f}/{100 * idle:.0f}"


def _fmt_run(run: Run) -> str:
    if run.failure:
        return f"FAILED: {_gist(run.failure)}"
    spans, servers = run.received.get("spans", 0), run.received.get("server_spans", 0)
    tail = f", spans {spans} ({spans / run.requests:.2f}/req, server {servers / run.requests:.2f}/req)"
    if run.pulled is not None:
        tail += f", /metrics counted {run.pulled}"
    return (
        f"{run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
        f"cpu {run.cpu_us:5.0f} µs/req (core: {_core(run.cpu_share, run.core_others, run.core_idle)}){tail}"
    )


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_rev() -> str:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--", "../obsbox"],
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() + (" + uncommitted obsbox/ changes" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def machine() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": _versions(),
        "obsbox_commit": _git_rev(),
        "loadavg_start": os.getloadavg(),
    }


def summarise(runs: list[Run], modes: list[str]) -> list[dict[str, Any]]:
    def ok(mode: str) -> list[Run]:
        return [r for r in runs if r.mode == mode and not r.failure]

    bare = ok("bare")
    bare_rps = statistics.median(r.rps for r in bare) if bare else None
    bare_cpu = statistics.median(r.cpu_us for r in bare) if bare else None
    # Each round's ratio to the bare server of the same round (minutes apart at most): slow drift of the machine's
    # speed cancels out of these, unlike out of the ratio of the two medians.
    bare_by_round = {r.round: r.rps for r in bare}
    rows = []
    for mode in modes:
        good, tried = ok(mode), [r for r in runs if r.mode == mode]
        row: dict[str, Any] = {"mode": mode, "rounds": len(good), "tried": len(tried)}
        if not good:
            row["failure"] = next((r.failure for r in tried if r.failure), "not run")
            rows.append(row)
            continue
        rps = statistics.median(r.rps for r in good)
        requests = sum(r.requests for r in good)
        paired = [r.rps / bare_by_round[r.round] for r in good if r.round in bare_by_round]
        row.update(
            rps=rps,
            rps_min=min(r.rps for r in good),
            rps_max=max(r.rps for r in good),
            ratio=rps / bare_rps if bare_rps else None,
            paired_ratio=statistics.median(paired) if paired else None,
            paired_min=min(paired) if paired else None,
            paired_max=max(paired) if paired else None,
            cpu_us=statistics.median(r.cpu_us for r in good),
            cpu_ratio=bare_cpu / statistics.median(r.cpu_us for r in good) if bare_cpu else None,
            cpu_share=statistics.median(r.cpu_share for r in good),
            core_others=statistics.median(r.core_others for r in good),
            core_idle=statistics.median(r.core_idle for r in good),
            p50_ms=statistics.median(r.p50_ms for r in good),
            p99_ms=statistics.median(r.p99_ms for r in good),
            errors=sum(r.errors for r in good),
            spans_per_request=sum(r.received.get("spans", 0) for r in good) / requests,
            server_spans_per_request=sum(r.received.get("server_spans", 0) for r in good) / requests,
            points=round(statistics.median(r.received.get("points", 0) for r in good)),
            exemplars=round(statistics.median(r.received.get("exemplars", 0) for r in good)),
            pulled_per_request=(
                sum(r.pulled or 0 for r in good) / requests
                if any(r.pulled is not None for r in good)
                else None
            ),
        )
        if len(good) < len(tried):
            row["failure"] = f"{len(tried) - len(good)} round(s) failed: " + next(
                r.failure for r in tried if r.failure
            )
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], args: argparse.Namespace) -> str:
    p = info["packages"]
    lines = [
        f"### Overhead benchmark, {info['date']}",
        "",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}, Python {info['python']}; "
        f"load average {info['loadavg_start'][0]:.2f} at start, {info['loadavg_end'][0]:.2f} at end",
        f"- packages: obsbox {p['obsbox']} ({info['obsbox_commit']}), fastapi {p['fastapi']}, "
        f"starlette {p['starlette']}, uvicorn {p['uvicorn']} (uvloop {p['uvloop']}, httptools {p['httptools']}), "
        f"opentelemetry-sdk {p['opentelemetry-sdk']}, opentelemetry-instrumentation-fastapi "
        f"{p['opentelemetry-instrumentation-fastapi']}, logfire {p['logfire']}, "
        f"prometheus-fastapi-instrumentator {p['prometheus-fastapi-instrumentator']}",
        f"- command: `{info['command']}`",
        f"- {args.rounds} rounds x {args.duration:g} s per mode (+{args.warmup:g} s warm-up), wrk 1 thread "
        f"{args.connections} connections; server on CPU {info['cpus'][0]}, wrk and receiver on CPU {info['cpus'][1]}",
        "",
        "| mode | req/s (median) | min–max | × bare | × bare per round (median, min–max) | p50 ms | p99 ms "
        "| server CPU µs/req | × bare by CPU | core: ours/others/idle % | server spans/req | all spans/req "
        "| metric points | exemplars |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "rps" not in row:
            lines.append(f"| {row['mode']} | failed: {_gist(row['failure'])[:100]} |" + " |" * 12)
            continue
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "–"
        cpu_ratio = f"{row['cpu_ratio']:.2f}" if row["cpu_ratio"] is not None else "–"
        paired = (f"{row['paired_ratio']:.2f} ({row['paired_min']:.2f}–{row['paired_max']:.2f})"
                  if row["paired_ratio"] is not None else "–")
        spans = f"{row['server_spans_per_request']:.2f} | {row['spans_per_request']:.2f}"
        if row["pulled_per_request"] is not None:
            spans = f"– (pull: {row['pulled_per_request']:.2f} counted/req) | –"
        errors = f" ({row['errors']} errors)" if row["errors"] else ""
        lines.append(
            f"| {row['mode']} | {row['rps']:.0f}{errors} | {row['rps_min']:.0f}–{row['rps_max']:.0f} | {ratio} "
            f"| {paired} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['cpu_us']:.0f} | {cpu_ratio} "
            f"| {_core(row['cpu_share'], row['core_others'], row['core_idle'])} | {spans} | {row['points']} | {row['exemplars']} |"
        )
    failures = [row for row in rows if row.get("failure")]
    for row in failures:
        lines += ["", f"{row['mode']}: {row['failure'].strip()}"]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per mode and round")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--modes", nargs="+", default=DEFAULT_MODES, choices=list(MODES), metavar="MODE",
                        help=f"modes to run, bare always included ({', '.join(MODES)})")  # fmt: skip
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--json", type=Path, help="also write every run and the summary here")
    parser.add_argument("--alternate", action="store_true",
                        help="reverse the order of the modes every other round (bare first, then last), so a drift "
                             "of the machine's speed within a round does not favour the same modes every round")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1")
    args.modes = ["bare", *[m for m in dict.fromkeys(args.modes) if m != "bare"]]
    return args


def round_order(modes: list[str], round_: int, alternate: bool) -> list[str]:
    """The order of the modes in a round (counted from 1): as given, or with --alternate reversed in even rounds.

    >>> round_order(["bare", "obsbox", "pfi"], 2, True)
    ['pfi', 'obsbox', 'bare']
    """
    return modes[::-1] if alternate and round_ % 2 == 0 else modes


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM takes the same path as Ctrl-C: every finally runs, every child stops


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    if not os.path.exists("/usr/bin/wrk") and not any(
        os.access(os.path.join(d, "wrk"), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep)
    ):
        print("wrk not found: apt-get install wrk (make bench installs it)", file=sys.stderr)
        return 2
    info = machine()
    info["cpus"] = cpus()
    info["command"] = " ".join(
        ["benchmarks/overhead.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]
    )
    per_run = args.warmup + args.duration + 4
    _progress(
        f"{len(args.modes)} modes x {args.rounds} rounds, about "
        f"{len(args.modes) * args.rounds * per_run / 60:.0f} min; server on CPU {info['cpus'][0]}, "
        f"load and receiver on CPU {info['cpus'][1]}"
        + ("" if info["cpus"][0] != info["cpus"][1] else " (one CPU only: figures mean little)")
    )
    runs: list[Run] = []
    started = time.monotonic()
    with Receiver(info["cpus"][1]) as receiver:
        for round_ in range(1, args.rounds + 1):
            for mode in round_order(args.modes, round_, args.alternate):
                _progress(f"[round {round_}/{args.rounds}] {mode} ...")
                run = measure(mode, round_, args, receiver)
                runs.append(run)
                _progress(f"[round {round_}/{args.rounds}] {mode:12s} {_fmt_run(run)}")
    info["loadavg_end"] = os.getloadavg()
    info["elapsed_s"] = round(time.monotonic() - started)
    rows = summarise(runs, args.modes)
    print(markdown(rows, info, args))
    if args.json:
        payload = {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "summary": rows,
                   "runs": [asdict(r) for r in runs]}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        _progress(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
