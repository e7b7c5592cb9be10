"""End to end: a real Prometheus (Debian 2.42) scrapes the real sample shop under load, evaluates obsbox's rules,
and every PromQL query of every dashboard returns data — except the queries that need a component nobody can run
here (listed in NEEDS_COMPONENT, each with its reason) or read what the shop does not do (NOT_IN_THE_SHOP); the
test fails if either list goes stale.

The shop's four services and its Celery worker serve /metrics on their own ports (the pull path); they push traces
and logs over OTLP to a real receiver in this process. The shop keeps its stock in SQLite and uses a real
redis-server (started by the integration tests' fixture) as its cache and Celery broker, so the dependency
panels have data. A real Alertmanager receives Prometheus' alerts, so the notification metrics
exist. Faults make some requests fail and slow, so the error, retry and breaker panels have something to show.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsbox.stack.binaries import find_tool as _tool
from tests._processes import free_port, stop
from tests.instrumentation.integrations.conftest import Redis, redis_server  # noqa: F401 - the fixture
from tests.tree.test_queries import PROM_RULE_FILES, Query, dashboard_queries, metric_names, substitute

PROMETHEUS = _tool("prometheus")
ALERTMANAGER = _tool("alertmanager")

SCRAPE_INTERVAL = "2s"
# What Grafana would put in for $__rate_interval with a 2 s scrape interval and a short time range (at least four
# scrape intervals); long enough for rate() to see several samples.
E2E_INTERVALS = {"__rate_interval": "30s", "__interval": "2s", "__auto": "30s", "__range": "5m"}

# Queries that read metrics of a component no test here can run; the metric names are matched as prefixes.
NEEDS_COMPONENT = {
    "otelcol_": "OpenTelemetry Collector (and Jaeger v2, built on it) self-metrics: no collector binary here",
    "traces_span_metrics_": "span metrics come from the collector's span_metrics connector",
    "loki_": "Loki's own metrics: no Loki binary here",
}
# Queries about what the sample shop does not do (metric-name prefixes), each with its reason.
NOT_IN_THE_SHOP = {
    "rpc_client_call_duration_seconds": "the sample shop makes no gRPC calls (tests/instrumentation/integrations/"
                                        "test_grpc.py shows the series at a real receiver)",
}


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout}s")
        time.sleep(0.2)


@contextmanager
def process(args: list[str], log: Path, ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            try:
                wait_http(ready_url)
            except TimeoutError:
                raise RuntimeError(f"{args[0]} did not start:\n{log.read_text(errors='replace')[-3000:]}") from None
            yield proc
        finally:
            stop(proc)


@contextmanager
def alertmanager(tmp: Path) -> Iterator[str]:
    """A real Alertmanager on an ephemeral port (clustering off, so it binds nothing else)."""
    assert ALERTMANAGER
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(yaml.safe_dump({"route": {"receiver": "nobody", "group_wait": "1s"},
                                      "receivers": [{"name": "nobody"}]}))
    url = f"http://127.0.0.1:{port}"
    args = [ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with process(args, tmp / "alertmanager.log", f"{url}/-/ready"):
        yield url


@contextmanager
def prometheus(tmp: Path, targets: list[str], alertmanager_url: str | None = None,
               rule_files: list[Path] | None = None) -> Iterator[str]:
    """A real Prometheus on an ephemeral port with tmp storage scraping `targets` (host:port) as job "pull"."""
    assert PROMETHEUS
    port = free_port()
    config: dict[str, Any] = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(p) for p in rule_files or []],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]},
            {"job_name": "pull", "honor_labels": True, "static_configs": [{"targets": targets}]},
        ],
    }
    if alertmanager_url:
        am = alertmanager_url.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am]}]}]}
        config["scrape_configs"].append({"job_name": "alertmanager", "static_configs": [{"targets": [am]}]})
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    url = f"http://127.0.0.1:{port}"
    args = [PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"]
    with process(args, tmp / "prometheus.log", f"{url}/-/ready"):
        yield url


def api(url: str, path: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(params)}", timeout=10) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return body["data"]


def instant(url: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(url, "/api/v1/query", query=expr)["result"]
    return result


needs_binaries = pytest.mark.skipif(
    PROMETHEUS is None or ALERTMANAGER is None,
    reason="prometheus / prometheus-alertmanager missing: scripts/install-system-deps.sh installs them from Debian")


# --- the run --------------------------------------------------------------------------------------------------


@dataclass
class Run:
    prometheus: str
    services: dict[str, str]  # sample service -> base URL


@pytest.fixture(scope="module")
def shop_under_load(tmp_path_factory: pytest.TempPathFactory, redis_server: Redis) -> Iterator[Run]:  # noqa: F811
    from obsbox.samples import SERVICES, faults, load, shop
    from obsbox.samples._deps import REDIS_URL
    from obsbox.testing import OTLPReceiver

    tmp = tmp_path_factory.mktemp("e2e")
    with OTLPReceiver() as receiver, shop.start(
        ports={name: 0 for name in SERVICES},
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OBSBOX_METRIC_EXPORT_INTERVAL": "2",
             REDIS_URL: f"redis://{redis_server.host}:{redis_server.port}/4"},
        log_dir=tmp,
    ) as running:
        assert running.worker_url is not None, "the Celery worker did not start"
        targets = [u.removeprefix("http://") for u in [*running.urls.values(), running.worker_url]]
        with alertmanager(tmp) as am_url, prometheus(tmp, targets, am_url, PROM_RULE_FILES) as prom_url:
            # Some failures and slowness downstream: errors, retries, an opening breaker, a latency spread.
            faults.set_faults(running.urls["payments"], error_rate=0.5)
            faults.set_faults(running.urls["inventory"], error_rate=0.3, latency_ms=80, jitter_ms=60)
            done = threading.Event()

            def drive() -> None:
                try:
                    load.run(running.urls["gateway"], rps=15, duration=40, progress=None, seed=7)
                finally:
                    done.set()

            threading.Thread(target=drive, daemon=True).start()
            done.wait(timeout=90)
            time.sleep(6)  # the last scrapes and rule evaluations
            yield Run(prom_url, dict(running.urls))


def _values_for(query: Query) -> dict[str, str]:
    # service detail selects one service with "=": the one that serves, calls out and retries (orders);
    # the other dashboards select all services, as Grafana's "All" does (allValue .+).
    service = "orders" if query.dashboard == "service-detail.json" else ".+"
    return {**E2E_INTERVALS, "service_name": service, "environment": ".*"}


def _component(query: Query) -> str | None:
    names = metric_names(substitute(query.expr, _values_for(query)))
    for prefix, reason in (NEEDS_COMPONENT | NOT_IN_THE_SHOP).items():
        if any(n.startswith(prefix) for n in names):
            return reason
    return None


PROMQL = [q for q in dashboard_queries() if q.lang == "promql"]


@needs_binaries
@pytest.mark.slow
def test_every_dashboard_query_returns_data_from_a_real_prometheus(shop_under_load: Run) -> None:
    empty: list[Query] = []
    checked, skipped = 0, {}
    for q in PROMQL:
        reason = _component(q)
        if reason:
            skipped[q.id] = reason
            continue
        checked += 1
        if not instant(shop_under_load.prometheus, substitute(q.expr, _values_for(q))):
            empty.append(q)
    if empty:  # on a busy machine a scrape or rule evaluation may lag behind: ask once more
        time.sleep(5)
        empty = [q for q in empty if not instant(shop_under_load.prometheus, substitute(q.expr, _values_for(q)))]
    assert not empty, "queries without data:\n" + "\n".join(f"{q.id}: {q.expr}" for q in empty)
    print(f"{checked} dashboard queries returned data; {len(skipped)} need a component not run here")
    assert checked >= 60
    # Only the stack's own panels (and the span-metrics panel) may need a missing component: every query about
    # services runs here. Each exception is used: a stale entry would hide nothing but mislead readers.
    outside = [i for i, reason in skipped.items() if reason in NEEDS_COMPONENT.values()
               and not i.startswith("stack-health.json") and "(span metrics)" not in i]
    assert not outside, outside
    used = set(skipped.values())
    listed = set(NEEDS_COMPONENT.values()) | set(NOT_IN_THE_SHOP.values())
    assert used == listed, listed - used


@needs_binaries
@pytest.mark.slow
def test_rules_evaluate_on_real_prometheus_without_failures(shop_under_load: Run) -> None:
    groups = api(shop_under_load.prometheus, "/api/v1/rules")["groups"]
    names = {g["name"] for g in groups}
    assert {"obsbox-red", "obsbox-slo-sli", "obsbox-slo-burn-rate", "obsbox-services", "obsbox-stack"} <= names
    broken = [(g["name"], r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r.get("health") == "err"]
    assert not broken, broken
    # the recording rules produce series for every sample service
    services = {r["metric"]["service_name"] for r in instant(shop_under_load.prometheus,
                                                             "service_name:http_server_requests:rate5m")}
    assert services == set(shop_under_load.services)
    assert instant(shop_under_load.prometheus, 'slo:sli_error:ratio_rate3d{slo="latency"}')
    # Watchdog reaches the real Alertmanager
    firing = instant(shop_under_load.prometheus, 'ALERTS{alertname="Watchdog", alertstate="firing"}')
    assert firing


@needs_binaries
@pytest.mark.slow
def test_exemplars_carry_trace_ids_for_the_heatmap(shop_under_load: Run) -> None:
    now = time.time()
    data = api(shop_under_load.prometheus, "/api/v1/query_exemplars",
               query='http_server_request_duration_seconds_bucket{service_name="orders"}',
               # Exemplars carry the time of their request, all within the load; on a busy machine the tests
               # before this one can take longer than any short window, so ask for the whole life of the run.
               start=str(now - 3600), end=str(now))
    labels = [e["labels"] for series in data for e in series["exemplars"]]
    assert labels, "no exemplars scraped from the pull endpoint"
    assert all(len(lbl.get("trace_id", "")) == 32 for lbl in labels)
