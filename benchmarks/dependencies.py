"""What instrumenting a database and a cache costs per call: SQLAlchemy on in-memory SQLite, redis-py GET.

    .venv/bin/python benchmarks/dependencies.py                       # every mode, 3 rounds
    .venv/bin/python benchmarks/dependencies.py --rounds 1 --modes bare obsbox --json /tmp/deps.json

Modes, each in a fresh process pinned to the first core (the receiver and redis-server on the second), exporting
OTLP/HTTP to the benchmark's real receiver (benchmarks/receiver.py) as service `deps-MODE`:

- bare: no instrumentation;
- obsbox: `obsbox.configure()` (which instruments SQLAlchemy and redis-py: lean hooks, see docs/integrations.md);
- contrib: the OpenTelemetry SDK with OTLP exporters and opentelemetry-instrumentation-sqlalchemy / -redis
  (`OTEL_SEMCONV_STABILITY_OPT_IN=database`, the stable conventions obsbox follows);
- logfire: `logfire.configure(send_to_logfire=False)` exporting OTLP to the receiver, `instrument_sqlalchemy()`
  and `instrument_redis()`.

Each case runs `--calls` calls (after a warm-up) in batches; the figure is the median batch's µs per call,
wall-clock in the caller, so the export thread's share of the GIL counts. The calls run as root spans (no request
around them). The receiver's span counts show each mode really exported. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MODES = ("bare", "obsbox", "contrib", "logfire")
CASES = ("sqlalchemy sqlite SELECT", "redis GET")


# --- the child: one mode, both cases ----------------------------------------------------------------------------
def _setup(mode: str) -> None:
    if mode == "obsbox":
        import obsbox

        obsbox.configure(service_name=os.environ["OTEL_SERVICE_NAME"], console=False)
    elif mode == "contrib":
        from app import _otel_sdk
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        _otel_sdk()
        # SQLAlchemy 2.1 is newer than the range the contrib package declares (<2.1): told to go ahead; the
        # receiver's span count shows whether it did.
        SQLAlchemyInstrumentor().instrument(skip_dep_check=True)
        RedisInstrumentor().instrument()
    elif mode == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False, service_name=os.environ["OTEL_SERVICE_NAME"],
                          inspect_arguments=False)
        logfire.instrument_sqlalchemy(skip_dep_check=True)  # as for contrib
        logfire.instrument_redis()


def _time(call: Any, calls: int, batches: int) -> float:
    """Median µs per call over `batches` batches of calls/batches calls (after a warm-up batch)."""
    size = max(1, calls // batches)
    for _ in range(size):
        call()
    results = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(size):
            call()
        results.append((time.perf_counter() - start) / size * 1e6)
    return statistics.median(results)


def child(mode: str, redis_port: int, calls: int, batches: int) -> None:
    _setup(mode)
    import redis
    import sqlalchemy as sa

    engine = sa.create_engine("sqlite://")
    conn = engine.connect()
    conn.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"))
    conn.execute(sa.text("INSERT INTO items VALUES (1, 'widget')"))
    query = sa.text("SELECT name FROM items WHERE id = :id")
    params = {"id": 1}

    def select() -> None:
        conn.execute(query, params).scalar()

    client = redis.Redis(host="127.0.0.1", port=redis_port)
    client.set("item:1", "widget")

    def get() -> None:
        client.get("item:1")

    result = {CASES[0]: _time(select, calls, batches), CASES[1]: _time(get, calls, batches)}
    print("RESULT " + json.dumps(result), flush=True)
    _flush(mode)


def _flush(mode: str) -> None:
    if mode == "obsbox":
        from obsbox.instrumentation.setup import current_telemetry

        telemetry = current_telemetry()
        if telemetry is not None:
            telemetry.shutdown()
    elif mode in ("contrib", "logfire"):
        from opentelemetry import trace

        provider: Any = trace.get_tracer_provider()
        if hasattr(provider, "force_flush"):
            provider.force_flush()


# --- the parent: receiver, redis-server, rounds -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_server(cpu: int) -> tuple[subprocess.Popen[bytes], int, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    root = tempfile.mkdtemp(prefix="obsbox-bench-redis-")
    port = _free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", root]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, port, root
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("redis-server did not start")


def _run_mode(mode: str, cpu: int, endpoint: str, redis_port: int, calls: int, batches: int) -> dict[str, float]:
    from _harness import child_env

    env = child_env({
        "OTEL_SERVICE_NAME": f"deps-{mode}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "database",
    })
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--redis-port", str(redis_port),
            "--calls", str(calls), "--batches", str(batches)]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, float] = json.loads(line[7:])
            return result
    raise RuntimeError(f"{mode} failed (exit {done.returncode}): {done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--redis-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.redis_port, args.calls, args.batches)
        return

    from _harness import Receiver, cpus

    work_cpu, side_cpu = cpus()
    server, redis_port, root = _redis_server(side_cpu)
    per_mode: dict[str, dict[str, list[float]]] = {m: {c: [] for c in CASES} for m in args.modes}
    failures: dict[str, str] = {}
    try:
        with Receiver(side_cpu) as receiver:
            for _ in range(args.rounds):
                for mode in args.modes:
                    if mode in failures:
                        continue
                    try:
                        result = _run_mode(mode, work_cpu, receiver.endpoint, redis_port, args.calls, args.batches)
                    except Exception as err:  # noqa: BLE001 - reported, never dropped silently
                        failures[mode] = str(err)
                        continue
                    for case in CASES:
                        per_mode[mode][case].append(result[case])
            spans = {mode: receiver.stats(f"deps-{mode}").get("spans", 0) for mode in args.modes}
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(root, ignore_errors=True)

    figures: dict[str, Any] = {"rounds": args.rounds, "calls": args.calls, "modes": {}, "failures": failures}
    bare = {c: statistics.median(per_mode["bare"][c]) for c in CASES} if per_mode.get("bare", {}).get(CASES[0]) \
        else None
    print(f"{'case':<26} {'mode':<8} {'µs/call':>8} {'× bare':>7} {'added µs':>9} {'spans recv':>10}")
    for case in CASES:
        for mode in args.modes:
            values = per_mode[mode][case]
            if not values:
                continue
            us = statistics.median(values)
            ratio = us / bare[case] if bare else float("nan")
            added = us - bare[case] if bare else float("nan")
            figures["modes"].setdefault(mode, {})[case] = {"us_per_call": us, "ratio_to_bare": ratio,
                                                           "added_us": added, "rounds": values}
            print(f"{case:<26} {mode:<8} {us:8.2f} {ratio:7.2f} {added:9.2f} {spans.get(mode, 0):10d}")
    if bare and "obsbox" in figures["modes"] and "contrib" in figures["modes"]:
        for case in CASES:
            ours = figures["modes"]["obsbox"][case]["added_us"]
            theirs = figures["modes"]["contrib"][case]["added_us"]
            print(f"{case}: obsbox adds {ours:.2f} µs, contrib {theirs:.2f} µs ({ours / theirs:.2f} of contrib)")
    for mode, reason in failures.items():
        print(f"{mode}: FAILED {reason}")
    figures["spans_received"] = spans
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
