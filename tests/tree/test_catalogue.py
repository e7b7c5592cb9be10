"""Catalogue consistency: every metric a dashboard or rule reads is a semantic-convention metric the library emits,
one of obsbox's catalogue metrics, a self-metric of a stack component (listed below with its source), or a series
our own rules record — and the library really emits every catalogue metric, under the Prometheus name the
dashboards use, both over OTLP (to a real receiver) and on the pull endpoint.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from obsbox.instrumentation.catalogue import CATALOGUE, SEMCONV_METRICS, MetricSpec
from obsbox.testing import OTLPReceiver
from tests.tree.test_queries import (
    dashboard_queries,
    metric_names,
    rule_queries,
    substitute,
)
from tests.tree.test_queries_e2e import alertmanager, needs_binaries, prometheus, wait_http

# Self-metrics of the stack's components that dashboards and rules read, with where each comes from.
STACK_METRICS: dict[str, str] = {
    # Prometheus itself (checked against the real Debian binary below)
    "up": "Prometheus: synthetic series of every scrape",
    "ALERTS": "Prometheus: synthetic series of every pending/firing alert",
    "prometheus_rule_evaluation_failures_total": "Prometheus rule manager",
    "prometheus_rule_group_last_duration_seconds": "Prometheus rule manager",
    "prometheus_notifications_alertmanagers_discovered": "Prometheus notifier",
    "prometheus_notifications_sent_total": "Prometheus notifier",
    "prometheus_notifications_errors_total": "Prometheus notifier",
    "prometheus_notifications_dropped_total": "Prometheus notifier",
    "prometheus_tsdb_head_series": "Prometheus TSDB",
    "prometheus_tsdb_head_samples_appended_total": "Prometheus TSDB",
    # Alertmanager (checked against the real Debian binary below)
    "alertmanager_notifications_total": "Alertmanager notify pipeline",
    "alertmanager_notifications_failed_total": "Alertmanager notify pipeline",
    "alertmanager_alerts": "Alertmanager alert store",
    "alertmanager_silences": "Alertmanager silences (by state)",
    # OpenTelemetry Collector contrib 0.159 internal telemetry (STACK-FACTS.md; no _total when scraped from
    # :8888, _total when pushed over OTLP — queries match both). Jaeger v2 is built on the collector and reports
    # the same names.
    **{f"otelcol_receiver_{o}_{s}": "OpenTelemetry Collector receiver telemetry"
       for o in ("accepted", "refused", "failed") for s in ("spans", "metric_points", "log_records")},
    **{f"otelcol_exporter_{o}_{s}": "OpenTelemetry Collector exporter telemetry"
       for o in ("sent", "send_failed", "enqueue_failed") for s in ("spans", "metric_points", "log_records")},
    "otelcol_exporter_queue_size": "OpenTelemetry Collector exporter sending queue",
    "otelcol_exporter_queue_capacity": "OpenTelemetry Collector exporter sending queue",
    # Span metrics connector of the collector (STACK-FACTS.md: namespace traces.span.metrics)
    "traces_span_metrics_calls_total": "OpenTelemetry Collector span_metrics connector",
    # `obsbox drill` serves it while a drill runs (obsbox/alerting/drill.py); alerts/prometheus/drill.rules.yml
    "obsbox_drill": "obsbox drill: the drill's own short-lived endpoint",
    # Loki 3.x (dskit HTTP middleware and distributor)
    "loki_request_duration_seconds_count": "Loki HTTP server (route, status_code)",
    "loki_distributor_lines_received_total": "Loki distributor",
}
# Series users record themselves in alerts/prometheus/slo-objectives.yml (documented there, read by slo.rules.yml).
USER_OVERRIDES = {"slo:objective_override:ratio", "slo:latency_threshold_override:seconds"}


def _prometheus_names(spec: MetricSpec) -> set[str]:
    base = spec.prometheus_name
    if spec.kind == "histogram":
        return {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return {base}


LIBRARY_NAMES = {n for spec in [*CATALOGUE.values(), *SEMCONV_METRICS.values()] for n in _prometheus_names(spec)}
RECORDED = {r.panel.rsplit("/", 1)[1] for r in rule_queries() if ":" in r.panel.rsplit("/", 1)[1]}


def _plain(name: str) -> str:
    """A __name__ regex of the form used for collector metrics -> the name without the optional _total."""
    return name.removesuffix("(_total)?")


def _used_names() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {}
    for q in [*dashboard_queries(), *rule_queries()]:
        if q.lang == "promql":
            for name in metric_names(substitute(q.expr)):
                # a __name__ regex of plain alternatives (the dependencies dashboard's variable) uses each of them
                names = name.split("|") if re.fullmatch(r"\w+(\|\w+)+", name) else [name]
                for each in names:
                    used.setdefault(_plain(each), set()).add(q.id)
    return used


USED = _used_names()


def test_every_metric_used_is_semconv_catalogue_stack_or_recorded() -> None:
    unknown = {
        name: sorted(where)[:3] for name, where in USED.items()
        if name not in LIBRARY_NAMES | set(STACK_METRICS) | RECORDED | USER_OVERRIDES
        and not name.startswith("obsbox_(")  # the resilience dashboard's variable: a family regex, checked below
    }
    assert not unknown, unknown


def test_family_regexes_match_only_catalogue_metrics() -> None:
    regexes = [n for n in USED if n.startswith("obsbox_(")]
    assert regexes
    for regex in regexes:
        matched = {n for n in LIBRARY_NAMES if re.fullmatch(regex, n)}
        assert matched and all(n.startswith("obsbox_") for n in matched)


def test_the_stack_metric_list_has_no_stale_entries() -> None:
    assert set(STACK_METRICS) <= set(USED), set(STACK_METRICS) - set(USED)


def test_dashboards_and_rules_use_every_catalogue_metric() -> None:
    # a catalogue metric nobody looks at is a metric nobody needs (the retry backoff shows as a histogram)
    for spec in CATALOGUE.values():
        assert _prometheus_names(spec) & set(USED), f"{spec.name} is on no dashboard and in no rule"


def test_catalogue_labels_are_the_ones_the_queries_group_by() -> None:
    text = " ".join(q.expr for q in dashboard_queries() + rule_queries())
    for spec in CATALOGUE.values():
        for label in spec.prometheus_labels:
            assert label in text, f"{spec.name}: label {label} is never used"


# --- the library emits every catalogue metric -----------------------------------------------------------------

# A small program that uses the public API only: resilience helpers, a flush of the export pipeline and the
# pull endpoint; process metrics come with configure().
_EMITTER = textwrap.dedent("""
    import sys, time, urllib.request
    import obsbox
    from obsbox import CircuitBreaker, CircuitOpenError, Retry, RetryExhaustedError, WorkerPool

    telemetry = obsbox.configure(service_name="catalogue-check", endpoint=sys.argv[1], metrics_port=0,
                                 metric_export_interval=0.5)

    def fail():
        raise ValueError("boom")

    breaker = CircuitBreaker("dependency", failure_ratio=0.5, minimum_calls=2, window=30.0, reset_timeout=0.2)
    for _ in range(4):
        try:
            breaker.call(fail)
        except (ValueError, CircuitOpenError):
            pass
    time.sleep(0.3)
    breaker.call(lambda: 1)
    retry = Retry("dependency", attempts=2, initial_backoff=0.01, jitter=False, retry_on=(ValueError,))
    try:
        retry.call(fail)
    except RetryExhaustedError:
        pass
    pool = WorkerPool("jobs", workers=1, queue_size=4)
    pool.submit(lambda: 1).result()
    try:
        pool.submit(fail).result()
    except ValueError:
        pass
    pool.shutdown()

    # Celery: a task that asks for one retry (run eagerly: Celery's own tracer sends task_retry), and a queue
    # with three waiting messages that a worker reports once Celery says it is ready (worker_ready, whose sender
    # is the worker's consumer: only its app is read) — read from the (in-process) broker at each export.
    from celery import Celery, signals

    app = Celery("catalogue", broker="memory://")

    @app.task(bind=True, max_retries=1)
    def flaky(self):
        if self.request.retries == 0:
            raise self.retry(countdown=0)

    flaky.apply()
    for _ in range(3):
        app.send_task("catalogue.later", queue="catalogue")
    app.amqp.queues.select(["catalogue"])
    signals.worker_ready.send(sender=type("Consumer", (), {"app": app})())
    telemetry.force_flush()
    telemetry.force_flush()
    print(telemetry.metrics_port, flush=True)
    sys.stdin.readline()   # the test scrapes /metrics, then lets the program end
    telemetry.shutdown()
""")


@pytest.fixture(scope="module")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], str]:
    """(OTel names seen by a real OTLP receiver, the text of the pull endpoint) of the program above."""
    script = tmp_path_factory.mktemp("emitter") / "emit.py"
    script.write_text(_EMITTER)
    with OTLPReceiver() as receiver:
        proc = subprocess.Popen([sys.executable, str(script), receiver.endpoint], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdin is not None
            port = int(proc.stdout.readline())
            url = f"http://127.0.0.1:{port}/metrics"
            wait_http(url)
            with urllib.request.urlopen(url, timeout=5) as answer:
                exposition = answer.read().decode()
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        names = {CATALOGUE[n].name for n in CATALOGUE}
        receiver.wait_for(lambda: names <= {m.name for m in receiver.metrics()}, timeout=10)
        return {m.name for m in receiver.metrics()}, exposition


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_the_library_emits_every_catalogue_metric_over_otlp(name: str, emitted: tuple[set[str], str]) -> None:
    assert name in emitted[0], f"{name} never reached the OTLP receiver"


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_the_pull_endpoint_serves_every_catalogue_metric_with_its_labels(
        name: str, emitted: tuple[set[str], str]) -> None:
    spec = CATALOGUE[name]
    samples = [line for line in emitted[1].splitlines()
               if line and not line.startswith("#") and line.split("{")[0].split(" ")[0] in _prometheus_names(spec)]
    assert samples, f"{spec.prometheus_name} not on /metrics"
    labels = {k for line in samples for k in re.findall(r'(\w+)="', line.split("}")[0])}
    assert "service_name" in labels
    assert set(spec.prometheus_labels) <= labels, set(spec.prometheus_labels) - labels


# --- the stack self-metrics are real --------------------------------------------------------------------------


@needs_binaries
def test_prometheus_and_alertmanager_expose_the_self_metrics_we_read(tmp_path: Path) -> None:
    rules = tmp_path / "r.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [{"alert": "Always", "expr": "vector(1)"}]}]}))
    with alertmanager(tmp_path) as am_url, prometheus(tmp_path, [], am_url, [rules]) as prom_url:
        expected = {n for n, source in STACK_METRICS.items() if source.startswith(("Prometheus", "Alertmanager"))}
        expected -= {"up", "ALERTS"}
        # Some series appear with the first scrape, rule evaluation or alert sent: poll for a while.
        deadline = time.monotonic() + 30
        while True:
            found: set[str] = set()
            for url in (prom_url, am_url):
                with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
                    found |= {line.split("{")[0].split(" ")[0] for line in answer.read().decode().splitlines()
                              if line and not line.startswith("#")}
            if expected <= found or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert expected <= found, expected - found
