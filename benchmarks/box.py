"""What the native box costs and delivers: time to ready, memory of each component, spans sent against spans stored.

    .venv/bin/python benchmarks/box.py                       # 60 s at 40 orders+browses per second
    .venv/bin/python benchmarks/box.py --rps 80 --duration 120 --json benchmarks/results/box-DATE.json

`obsbox up --samples` (native runtime, the pinned builds of scripts/build-components.sh, a temporary state dir),
then: each component's time to ready as `up` reports it; RSS of the Collector, Prometheus, Alertmanager and Jaeger
idle (10 s after up) and the highest seen under load; the sample shop under a sustained load through its gateway
for --duration seconds; then, after the exports have drained, spans counted at every hop:

    services (obsbox.export.items, exported/dropped)  ->  Collector (receiver accepted, exporter sent/failed)
        ->  Jaeger (receiver accepted, jaeger_storage_exporter sent)

Nothing here is asserted: the figures go to docs/benchmarks.md. The box listens on 127.0.0.1 only, and the load
stops by itself after --duration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

BUILT = ("collector", "prometheus", "alertmanager", "jaeger")
COLLECTOR_METRICS, JAEGER_METRICS = 8888, 8889  # where the native Collector and Jaeger serve their self-metrics


def obsbox(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "obsbox.cli", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise SystemExit(f"obsbox {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pids(state: Path) -> dict[str, int]:
    return {n: int(json.loads((state / "native" / n / "supervisor.json").read_text())["pid"]) for n in BUILT}


def self_metric(port: int, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"{name}(_total)?[{{ ]", line) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def prom_sum(prometheus: str, expr: str) -> float:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        result = json.loads(answer.read())["data"]["result"]
    return sum(float(r["value"][1]) for r in result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rps", type=float, default=40.0, help="requests per second at the gateway")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sustained load")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    from obsbox.samples import load
    from obsbox.stack import binaries

    tmp = Path(tempfile.mkdtemp(prefix="obsbox-box-bench-"))
    state = tmp / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSBOX_")}
    env.update(OBSBOX_STATE_DIR=str(state), OBSBOX_CACHE_DIR=str(binaries.cache_dir()),
               DOCKER_HOST=f"unix://{tmp}/no-docker.sock", OTEL_METRIC_EXPORT_INTERVAL="5000",
               **{f"OBSBOX_{n.upper()}_PORT": "0" for n in ("prometheus", "alertmanager", "gateway", "orders",
                                                              "payments", "inventory")})
    began = time.monotonic()
    up = obsbox(env, "up", "--samples")
    figures: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {n: binaries.binary_version(p) for n in BUILT if (p := binaries.find_tool(
            {"collector": "otelcol-contrib"}.get(n, n)))},
        "up_seconds": round(time.monotonic() - began, 1),
        "ready_seconds": {m[1]: float(m[2]) for m in re.finditer(r"(\w+) ready in ([\d.]+)s", up.stderr)},
        "rps": args.rps, "duration_s": args.duration,
    }
    try:
        urls = {c["name"]: c["url"] for c in json.loads(obsbox(env, "status", "--json").stdout)["components"]
                if c.get("url")}
        time.sleep(10)
        running = pids(state)
        figures["rss_idle_mib"] = {n: round(rss_mib(p), 1) for n, p in running.items()}
        peak = dict(figures["rss_idle_mib"])
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                for n, p in running.items():
                    peak[n] = max(peak[n], round(rss_mib(p), 1))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        print(f"load: {args.rps:g} requests/s for {args.duration:g} s through {urls['gateway']}", file=sys.stderr)
        summary = load.run(urls["gateway"], rps=args.rps, duration=args.duration, progress=None, timeout=5.0)
        done.set()
        sampler.join()
        figures["rss_load_peak_mib"] = peak
        figures["requests"] = summary.requests
        figures["achieved_rps"] = round(summary.achieved_rps, 1)
        time.sleep(20)  # the services' batches, the Collector's batch and Jaeger's batch all flush
        figures["spans"] = {
            "services_exported": prom_sum(urls["prometheus"],
                                          'sum(obsbox_export_items_total{signal="traces",export_outcome="exported"})'),
            "services_dropped": prom_sum(urls["prometheus"],
                                         'sum(obsbox_export_items_total{signal="traces",export_outcome="dropped"})'),
            "collector_accepted": self_metric(COLLECTOR_METRICS, "otelcol_receiver_accepted_spans"),
            "collector_sent_to_jaeger": self_metric(COLLECTOR_METRICS, "otelcol_exporter_sent_spans",
                                                    exporter="otlp_grpc/jaeger"),
            "collector_failed_to_jaeger": self_metric(COLLECTOR_METRICS, "otelcol_exporter_send_failed_spans",
                                                      exporter="otlp_grpc/jaeger"),
            "jaeger_accepted": self_metric(JAEGER_METRICS, "otelcol_receiver_accepted_spans"),
            "jaeger_stored": self_metric(JAEGER_METRICS, "otelcol_exporter_sent_spans",
                                         exporter="jaeger_storage_exporter"),
        }
    finally:
        obsbox(env, "down", "--purge")
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
