"""The box at the versions it ships, end to end, as local processes: the Collector, Prometheus 3, Alertmanager and
Jaeger v2 built from their Go modules (scripts/build-components.sh, which `make test` runs), and the sample shop.

    sample shop ──OTLP──► Collector ──► Jaeger (traces)
                              ├──────► Prometheus 3 over OTLP (metrics, span metrics, service graph)
                              └─x      Loki (not run here: AGPL, no binary)
    (profiles ─x Pyroscope: not run here either, AGPL, no binary)
    Prometheus rules ──► Alertmanager ──► a webhook receiver in this test

`obsbox up --samples` runs the box exactly as a user's does; only the intervals are shortened (scrape and rule
evaluation 2 s, the services' metric export 2 s, Alertmanager's grouping 1 s/5 s in a copy of the tree) so that the
whole run fits in a few minutes. Everything listens on 127.0.0.1; the load is bounded in rate and time.
Loki, Pyroscope and Grafana cannot run here: `up` must name them as unavailable, and the queries and panels that
need them are listed with their reason (the list fails the test when it goes stale). The shop keeps its stock in
SQLite and uses a redis-server this test starts (the integration tests' fixture) as its cache and its Celery
broker, so `up` runs the fulfilment worker too and the dependency panels have data; what the shop does not do
(gRPC) is listed likewise.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from obsbox.samples import load
from obsbox.stack import binaries
from obsbox.stack.components import COMPONENTS
from obsbox.stack.render import render_collector_config
from tests.instrumentation.integrations.conftest import Redis, redis_server  # noqa: F401 - the fixture
from tests.stack._harness import alive, component, native_env, obsbox, status, supervised_pids, wait_for
from tests.tree.test_queries import Query, dashboard_queries, metric_names, substitute

BUILT = ("collector", "prometheus", "alertmanager", "jaeger")
SERVICES = ("gateway", "orders", "payments", "inventory")
WORKER = "fulfilment"  # the shop's Celery worker, run by `up --samples` when its Redis answers
# Where the native Collector and Jaeger listen (fixed: the tree's configs say so; Jaeger's shared ports moved).
FIXED_PORTS = (4317, 4318, 13133, 8888, 16686, 16685, 14317, 14318, 13134, 8889)
ALERT = "HTTPServerHighErrorRate"


def _pinned(name: str) -> Path | None:
    comp = COMPONENTS[name]
    path = binaries.cache_dir() / name / str(comp.version) / comp.binaries[0]
    return path if path.is_file() else None


MISSING = [f"{n} {COMPONENTS[n].version}" for n in BUILT if _pinned(n) is None]
# In CI the components build runs first (make test): a missing binary there is a failure, not a skip.
pytestmark = [
    pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(900),
    pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                       reason=f"not built: {', '.join(MISSING)} (scripts/build-components.sh builds them; "
                              "make test runs it)"),
]

# Dashboard queries that read a component this test cannot run (metric-name prefixes), each with its reason.
NEEDS_COMPONENT = {
    "loki_": "Loki's own metrics: Loki is AGPL, no binary here",
    "otelcol_exporter_sent_log_records": "the Collector's logs exporter delivers to Loki, which cannot run here",
}
# Dashboard panels whose datasource is a backend this test cannot run (datasource uid), each with its reason.
NEEDS_BACKEND = {
    "pyroscope": "Pyroscope is AGPL, no binary here: no profiles to draw the flame graph from",
}
# Dashboard queries about what the sample shop does not do (metric-name prefixes), each with its reason.
NOT_IN_THE_SHOP = {
    "rpc_client_call_duration_seconds": "the sample shop makes no gRPC calls (tests/instrumentation/integrations/"
                                        "test_grpc.py shows the series at a real receiver)",
}
E2E_INTERVALS = {"__rate_interval": "30s", "__interval": "2s", "__auto": "30s", "__range": "5m"}


# --- helpers -----------------------------------------------------------------------------------------------------


class Webhook:
    """A real HTTP server receiving Alertmanager's webhook notifications (JSON bodies, kept in order)."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def notifications(self, alertname: str, status: str) -> list[dict[str, Any]]:
        return [n for n in list(self.received) if n.get("status") == status
                and n.get("commonLabels", {}).get("alertname") == alertname]

    def close(self) -> None:
        self.server.shutdown()


class Traffic:
    """Requests through the gateway at a rate that can change while it runs; stops at `stop()` or a deadline."""

    def __init__(self, gateway: str, rps: float, deadline: float) -> None:
        self.gateway, self.rps, self.deadline = gateway, rps, deadline
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            summary = load.run(self.gateway, rps=self.rps, duration=2.0, progress=None, timeout=3.0)
            self.sent += summary.requests
            # No HTTP answer at all (a timeout, a refused connection); a 5xx is still an answer.
            self.failed += sum(n for status, n in summary.by_status.items() if not status.isdigit())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def wait(what: str, predicate: Any, timeout: float) -> Any:
    return wait_for(predicate, timeout=timeout, every=2.0, what=what)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _component_pid(state: Path, name: str) -> int:
    data = json.loads((state / "native" / name / "supervisor.json").read_text())
    return int(data["pid"])


def _tree_copy(tmp: Path) -> Path:
    """The shipped tree with Alertmanager's grouping shortened (1 s wait, 5 s interval), so a resolved
    notification arrives in seconds rather than at the next 5-minute group interval. Nothing else changes."""
    from obsbox.stack.tree import stack_root

    src, dst = stack_root(), tmp / "tree"
    dst.mkdir()
    for name in ("stack.yml", ".env"):
        shutil.copy(src / name, dst / name)
    for name in ("collector", "backends", "dashboards", "alerts"):
        shutil.copytree(src / name, dst / name)
    am = dst / "backends" / "alertmanager" / "alertmanager.yml"
    config = yaml.safe_load(am.read_text())
    config["route"].update(group_wait="1s", group_interval="5s")
    am.write_text(yaml.safe_dump(config, sort_keys=False))
    return dst


# --- the run ------------------------------------------------------------------------------------------------------


@dataclass
class Box:
    env: dict[str, str]
    state: Path
    urls: dict[str, str]
    webhook: Webhook
    traffic: Traffic
    up_output: str
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def prometheus(self) -> str:
        return self.urls["prometheus"]


def _ports_free() -> list[int]:
    taken = []
    for port in FIXED_PORTS:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                taken.append(port)
    return taken


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory, redis_server: Redis) -> Iterator[Box]:  # noqa: F811
    assert not MISSING, (f"the pinned components are not built: {', '.join(MISSING)}; "
                         "run scripts/build-components.sh (make test does)")
    taken = _ports_free()
    assert not taken, f"ports the native Collector/Jaeger need are in use on 127.0.0.1: {taken}"
    tmp = tmp_path_factory.mktemp("box")
    webhook = Webhook()
    env = native_env(
        tmp, OBSBOX_CACHE_DIR=str(binaries.cache_dir()), OBSBOX_STACK_DIR=str(_tree_copy(tmp)),
        OBSBOX_SCRAPE_INTERVAL="2s", OBSBOX_EVALUATION_INTERVAL="2s", OTEL_METRIC_EXPORT_INTERVAL="2000",
        OBSBOX_ALERT_WEBHOOK_URL=f"{webhook.url}/hook", OBSBOX_START_TIMEOUT="120",
        OBSBOX_SAMPLES_REDIS_URL=f"redis://{redis_server.host}:{redis_server.port}/6",
    )
    state = tmp / "state"
    traffic: Traffic | None = None
    began = time.monotonic()
    try:
        up = obsbox(env, "up", "--samples", timeout=300)
        report: dict[str, Any] = {"up_seconds": round(time.monotonic() - began, 1), "ready_seconds": {
            m[1]: float(m[2]) for m in re.finditer(r"(\w+) ready in ([\d.]+)s", up.stderr + up.stdout)}}
        urls = {c["name"]: c["url"] for c in status(env)["components"] if c.get("url")}
        report["rss_idle_mib"] = {n: round(rss_mib(_component_pid(state, n)), 1) for n in BUILT}
        traffic = Traffic(urls["gateway"], rps=4.0, deadline=time.monotonic() + 600)
        # Faults downstream, so the error, retry, breaker and latency panels have something to show; payments'
        # errors also make HTTPServerHighErrorRate fire (test_alert_reaches_the_webhook_and_resolves).
        obsbox(env, "chaos", "inventory", "--error-rate", "0.3", "--latency-ms", "80", "--jitter-ms", "60")
        obsbox(env, "chaos", "payments", "--error-rate", "0.5")
        wait("the shop's request metrics in Prometheus over OTLP", lambda: query(
            urls["prometheus"], 'http_server_request_duration_seconds_count{service_name="payments"}'), timeout=90)
        time.sleep(30)  # a few rounds of export, span-metrics flush (15 s) and rule evaluation
        report["rss_load_mib"] = {n: round(rss_mib(_component_pid(state, n)), 1) for n in BUILT}
        yield Box(env, state, urls, webhook, traffic, up.stdout + up.stderr, report)
    finally:
        if traffic is not None:
            traffic.stop()
        pids = supervised_pids(state)
        down = obsbox(env, "down", timeout=120, check=False)
        webhook.close()
        left = [p for p in pids if alive(p)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        assert down.returncode == 0, down.stderr
        assert not left, f"processes left behind after down: {left}"


# --- what runs ----------------------------------------------------------------------------------------------------


def test_up_runs_the_pinned_versions_and_names_what_it_cannot_run(box: Box) -> None:
    report = status(box.env)
    for name in BUILT:
        entry = component(report, name)
        assert entry["state"] == "healthy", entry
        assert entry["version"] == COMPONENTS[name].version, entry
        assert str(binaries.cache_dir()) in (json.loads((box.state / "native" / "record.json").read_text())
                                             ["components"][name]["binary"])
    for name in (*SERVICES, WORKER):
        assert component(report, name)["state"] == "healthy"
    for name in ("loki", "pyroscope", "grafana"):
        assert component(report, name)["state"] == "unavailable"
        assert name in box.up_output
    # The builds have no web UI assets; `up` says so instead of sending users to a blank page.
    assert "alertmanager, prometheus, jaeger: built from source without their web UI" in box.up_output
    print("\nbox report:", json.dumps(box.report))


def test_collector_validates_the_shipped_and_the_native_config(box: Box, tmp_path: Path) -> None:
    from obsbox.stack.tree import stack_root

    otelcol = _pinned("collector")
    assert otelcol is not None
    native = tmp_path / "native.yaml"
    native.write_text(render_collector_config((stack_root() / "collector" / "config.yaml").read_text()))
    for config in (stack_root() / "collector" / "config.yaml", native):
        result = subprocess.run([str(otelcol), "validate", f"--config={config}"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0, f"{config}: {result.stderr}"
        assert "deprecat" not in (result.stdout + result.stderr).lower(), result.stderr


# Warnings that the way these binaries are built explains, each with its reason (the test fails on any other).
EXPECTED_WARNINGS = {
    ("jaeger", "ui assets not embedded"): "built from the Go module without the web UI's assets; its API is whole",
}


def test_component_logs_have_no_errors_or_deprecation_warnings(box: Box) -> None:
    bad: dict[str, list[str]] = {}
    for name in BUILT:
        lines = (box.state / "native" / name / f"{name}.log").read_text(errors="replace").splitlines()
        flagged = [line for line in lines if ("deprecat" in line.lower()
                   or re.search(r'(\t|level=|"level":")(error|ERROR|warn|WARN)', line))
                   and not any(n == name and text in line for n, text in EXPECTED_WARNINGS)]
        if flagged:
            bad[name] = flagged[:5]
    assert not bad, json.dumps(bad, indent=1)


# --- metrics over OTLP -----------------------------------------------------------------------------------------


def _values_for(q: Query) -> dict[str, str]:
    service = "orders" if q.dashboard == "service-detail.json" else ".+"
    return {**E2E_INTERVALS, "service_name": service, "environment": ".*"}


def _needs(q: Query) -> str | None:
    names = metric_names(substitute(q.expr, _values_for(q)))
    for prefix, reason in (NEEDS_COMPONENT | NOT_IN_THE_SHOP).items():
        if any(n.startswith(prefix) for n in names):
            return reason
    return None


def test_every_dashboard_query_returns_data_from_prometheus_3_over_otlp(box: Box) -> None:
    promql = [q for q in dashboard_queries() if q.lang == "promql"]
    skipped = {q.id: r for q in promql if (r := _needs(q))}
    todo = [q for q in promql if q.id not in skipped]

    def empty() -> list[Query]:
        return [q for q in todo if not query(box.prometheus, substitute(q.expr, _values_for(q)))]

    left = empty()
    deadline = time.monotonic() + 90  # the slowest series (rate windows, span-metrics flush) fill within this
    while left and time.monotonic() < deadline:
        time.sleep(5)
        left = [q for q in left if not query(box.prometheus, substitute(q.expr, _values_for(q)))]
    assert not left, "queries without data:\n" + "\n".join(f"{q.id}: {q.expr}" for q in left)
    elsewhere = _panels_of_absent_backends()
    print(f"\n{len(todo)} dashboard queries returned data; {len(skipped)} need Loki or gRPC: {sorted(skipped)}; "
          f"panels of backends not run here: {elsewhere}")
    assert len(todo) >= 60
    assert set(skipped.values()) == set(NEEDS_COMPONENT.values()) | set(NOT_IN_THE_SHOP.values())  # none stale
    assert set(elsewhere.values()) == set(NEEDS_BACKEND.values())
    assert "service-detail.json/CPU flame graph" in elsewhere


def _panels_of_absent_backends() -> dict[str, str]:
    """Every dashboard panel that queries a datasource this test cannot run, with the reason."""
    from tests.tree.test_queries import DASHBOARD_FILES, load, panels

    return {f"{path.name}/{p['title']}": NEEDS_BACKEND[uid] for path in DASHBOARD_FILES for p in panels(load(path))
            if (uid := (p.get("datasource") or {}).get("uid")) in NEEDS_BACKEND}


def test_span_metrics_and_service_graph_series_carry_the_labels_dashboards_and_jaeger_use(box: Box) -> None:
    calls = wait("span metrics", lambda: query(
        box.prometheus, 'traces_span_metrics_calls_total{service_name="orders", span_kind="SPAN_KIND_SERVER"}'), 60)
    assert {"service_name", "span_name", "span_kind", "status_code"} <= set(calls[0]["metric"])
    assert query(box.prometheus, 'traces_span_metrics_duration_milliseconds_bucket{service_name="orders"}')
    edges = wait("service graph series", lambda: query(box.prometheus, "traces_service_graph_request_total"), 60)
    pairs = {(e["metric"].get("client"), e["metric"].get("server")) for e in edges}
    assert ("gateway", "orders") in pairs, pairs
    assert ("orders", "payments") in pairs, pairs


# --- traces in Jaeger --------------------------------------------------------------------------------------------


def _jaeger(box: Box, path: str, **params: Any) -> Any:
    answer = httpx.get(f"http://127.0.0.1:16686{path}", params=params, timeout=10)
    answer.raise_for_status()
    return answer.json()


def test_one_order_is_one_trace_across_the_four_services_in_jaeger(box: Box) -> None:
    def complete() -> dict[str, Any] | None:
        data = _jaeger(box, "/api/traces", service="gateway", limit=50, lookback="1h")["data"] or []
        for trace in data:
            services = {p["serviceName"] for p in trace["processes"].values()}
            if set(SERVICES) <= services:
                return dict(trace)
        return None

    trace = wait("a trace that spans gateway, orders, payments and inventory", complete, 90)
    ids = {s["spanID"] for s in trace["spans"]}
    roots = [s for s in trace["spans"] if not s.get("references")]
    assert len(roots) == 1, [s["operationName"] for s in roots]
    for span in trace["spans"]:
        for ref in span.get("references") or []:
            assert ref["traceID"] == trace["traceID"] and ref["spanID"] in ids, span["operationName"]


def test_jaeger_monitor_tab_reads_the_span_metrics_from_prometheus(box: Box) -> None:
    now_ms = int(time.time() * 1000)

    def calls() -> list[Any]:
        data = _jaeger(box, "/api/metrics/calls", service="orders", endTs=now_ms + 60_000, lookback=600_000,
                       step=15_000, ratePer=60_000)
        return [p for m in data.get("metrics") or [] for p in m.get("metricPoints") or []]

    assert wait("Jaeger's Monitor (SPM) data for orders", calls, 90)


def test_an_exemplar_trace_id_from_prometheus_is_found_in_jaeger(box: Box) -> None:
    now = time.time()
    body = httpx.get(f"{box.prometheus}/api/v1/query_exemplars", timeout=10, params={
        "query": 'http_server_request_duration_seconds_bucket{service_name="orders"}',
        "start": str(now - 3600), "end": str(now)}).json()
    trace_ids = [e["labels"]["trace_id"] for s in body["data"] for e in s["exemplars"] if "trace_id" in e["labels"]]
    assert trace_ids, "no exemplars reached Prometheus over OTLP"
    found = wait("an exemplar's trace in Jaeger", lambda: next(
        (t for t in trace_ids[-20:] if httpx.get(f"http://127.0.0.1:16686/api/traces/{t}", timeout=10).status_code
         == 200), None), 60)
    assert _jaeger(box, f"/api/traces/{found}")["data"][0]["traceID"].rjust(32, "0") == found.rjust(32, "0")


# --- alerts ------------------------------------------------------------------------------------------------------


def test_alert_reaches_the_webhook_by_severity_and_resolves(box: Box) -> None:
    def for_payments(status: str) -> list[dict[str, Any]]:
        """Notifications of ALERT for payments, once both receivers of a critical alert have one."""
        found = [n for n in box.webhook.notifications(ALERT, status)
                 if n["commonLabels"].get("service_name") == "payments"]
        return found if {n["receiver"] for n in found} >= {"oncall", "incident"} else []

    firing = wait(f"{ALERT} for payments at the webhook", lambda: for_payments("firing"), timeout=240)
    # critical -> the on-call receiver and the incident channel (graded routing of backends/alertmanager/)
    assert {n["receiver"] for n in firing} == {"oncall", "incident"}
    note = firing[0]
    assert note["commonLabels"]["severity"] == "critical"
    assert note["path"] == "/hook"
    text = obsbox(box.env, "status").stdout
    assert "alerting path: working" in text and f"{ALERT} payments critical" in text

    obsbox(box.env, "chaos", "payments", "--reset")
    box.traffic.rps = 25.0  # healthy traffic outweighs the old errors in the 5-minute window
    resolved = wait(f"the resolved notification of {ALERT}", lambda: for_payments("resolved"), timeout=300)
    assert {n["receiver"] for n in resolved} == {"oncall", "incident"}
    box.traffic.rps = 4.0


# --- faults ------------------------------------------------------------------------------------------------------


def _traced_requests(gateway: str, n: int) -> list[str]:
    """n orders, each in a trace whose id this test chose (W3C traceparent); returns the trace ids."""
    ids = []
    with httpx.Client(timeout=10) as client:
        for _ in range(n):
            trace_id = secrets.token_hex(16)
            client.post(f"{gateway}/orders", json={"sku": load.SKUS[0], "quantity": 1},
                        headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
                                 "Idempotency-Key": secrets.token_hex(8)})
            ids.append(trace_id)
    return ids


def _self_metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and all(
                f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_jaeger_down_for_a_while_the_collector_queue_delivers_what_was_sent_meanwhile(box: Box) -> None:
    state_file = box.state / "native" / "jaeger" / "supervisor.json"
    from obsbox.stack import process

    process.stop_supervised("jaeger", state_file)
    try:
        during = _traced_requests(box.urls["gateway"], 20)
        time.sleep(3)  # the Collector tries, fails, and keeps the batches queued for retry
    finally:
        obsbox(box.env, "up", timeout=180)  # starts what is not running: Jaeger again
    found = wait("every trace sent while Jaeger was down", lambda: all(
        httpx.get(f"http://127.0.0.1:16686/api/traces/{t}", timeout=10).status_code == 200 for t in during), 90)
    assert found
    failed = _self_metric(8888, "otelcol_exporter_send_failed_spans", exporter="otlp_grpc/jaeger")
    sent = _self_metric(8888, "otelcol_exporter_sent_spans", exporter="otlp_grpc/jaeger")
    print(f"\nJaeger outage: {len(during)} traces sent meanwhile, all stored; collector sent {sent:.0f} spans to "
          f"Jaeger, {failed:.0f} given up")
    assert failed == 0


def test_collector_down_under_load_the_services_keep_answering_count_drops_and_recover(box: Box) -> None:
    from obsbox.stack import process

    def dropped() -> float:
        rows = query(box.prometheus, 'sum(obsbox_export_items_total{export_outcome="dropped"})')
        return float(rows[0]["value"][1]) if rows else 0.0

    before_sent, before_failed, dropped_before = box.traffic.sent, box.traffic.failed, dropped()
    process.stop_supervised("collector", box.state / "native" / "collector" / "supervisor.json")
    try:
        time.sleep(12)  # several export rounds of every service find nobody listening
        answered = box.traffic.sent - before_sent
        assert answered > 0 and box.traffic.failed == before_failed, "the services stopped answering"
    finally:
        obsbox(box.env, "up", timeout=180)
    # Once the Collector is back, the services' own counters (cumulative) arrive and show what was dropped.
    assert wait("the drops counted while the Collector was down", lambda: dropped() > dropped_before, 90)
    after = _traced_requests(box.urls["gateway"], 3)
    assert wait("traces flowing again after the restart", lambda: all(
        httpx.get(f"http://127.0.0.1:16686/api/traces/{t}", timeout=10).status_code == 200 for t in after), 60)
