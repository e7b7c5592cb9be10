"""The /metrics pull endpoint: series names as Prometheus' OTLP translation, service labels, OpenMetrics exemplars,
promtool's linter, and a real (Debian) Prometheus scraping it."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace

import obsbox
from obsbox.instrumentation import _runtime
from obsbox.instrumentation.catalogue import CATALOGUE, SEMCONV_METRICS
from obsbox.instrumentation.pull import prometheus_name
from obsbox.instrumentation.setup import Telemetry
from obsbox.stack.binaries import find_tool as _tool
from tests._processes import free_port, stop

ATTRS = {"http.request.method": "GET", "url.scheme": "http", "http.route": "/items/{item_id}",
         "http.response.status_code": 200}


def _get(url: str, accept: str | None = None) -> tuple[str, str]:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode(), response.headers["Content-Type"]


def _samples(body: str, name: str, **labels: str) -> list[str]:
    """Sample lines of series `name` carrying every given label (in any order)."""
    return [line for line in body.splitlines()
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items())]


@pytest.fixture
def served(otlp_receiver: object) -> Iterator[Telemetry]:
    t = obsbox.configure(service_name="pull-test", environment="ci", endpoint=otlp_receiver.endpoint,
                         resource_attributes={"service.namespace": "shop"}, metrics_port=0, console=False)
    assert t.metrics_port
    runtime = _runtime.current()
    with runtime.tracer.start_as_current_span("GET /items/{item_id}") as span:
        runtime.server_duration.record(0.042, ATTRS, span.get_span_context())
    runtime.server_active.add(1, {"http.request.method": "GET", "url.scheme": "http"})
    yield t
    t.shutdown()


@pytest.mark.parametrize("spec", [*CATALOGUE.values(), *SEMCONV_METRICS.values()], ids=lambda s: s.name)
def test_names_match_the_catalogue_and_prometheus_translation(spec: object) -> None:
    kind = {"counter": "counter", "histogram": "histogram"}.get(spec.kind, "gauge")  # type: ignore[attr-defined]
    assert prometheus_name(spec.name, spec.unit, kind) == spec.prometheus_name  # type: ignore[attr-defined]


def test_translation_rules() -> None:
    # pinned from Prometheus' OTLP translation (UnderscoreEscapingWithSuffixes)
    assert prometheus_name("http.server.request.duration", "s", "histogram") == "http_server_request_duration_seconds"
    assert prometheus_name("process.memory.usage", "By", "gauge") == "process_memory_usage_bytes"
    assert prometheus_name("orders.placed", "{order}", "counter") == "orders_placed_total"
    assert prometheus_name("cpu.utilization", "1", "gauge") == "cpu_utilization_ratio"
    assert prometheus_name("net.rate", "By/s", "gauge") == "net_rate_bytes_per_seconds"


def test_prometheus_text(served: Telemetry) -> None:
    body, content_type = _get(f"http://127.0.0.1:{served.metrics_port}/metrics")
    assert content_type.startswith("text/plain; version=0.0.4")
    (count,) = _samples(body, "http_server_request_duration_seconds_count", service_name="pull-test",
                        service_namespace="shop", deployment_environment_name="ci",
                        service_instance_id=served.resource["service.instance.id"], http_request_method="GET",
                        url_scheme="http", http_route="/items/{item_id}", http_response_status_code="200")
    assert count.endswith("} 1")
    assert 'http_server_request_duration_seconds_bucket{' in body and 'le="0.05"} 1' in body and 'le="+Inf"} 1' in body
    assert "# TYPE http_server_request_duration_seconds histogram" in body
    assert "# TYPE http_server_active_requests gauge" in body
    assert "# TYPE process_cpu_time_seconds_total counter" in body
    assert "trace_id" not in body  # exemplars only in OpenMetrics
    for line in body.splitlines():
        if line and not line.startswith("#"):
            assert 'service_name="pull-test"' in line, line


def test_openmetrics_with_exemplars(served: Telemetry) -> None:
    body, content_type = _get(f"http://127.0.0.1:{served.metrics_port}/metrics",
                              "application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n")
    (bucket,) = [line for line in body.splitlines()
                 if line.startswith("http_server_request_duration_seconds_bucket") and 'le="0.05"' in line]
    assert ' # {trace_id="' in bucket and '",span_id="' in bucket and "} 0.042 " in bucket
    assert "# TYPE process_cpu_time_seconds counter" in body and "process_cpu_time_seconds_total{" in body


def test_promtool_accepts_the_exposition(served: Telemetry) -> None:
    promtool = _tool("promtool")
    if promtool is None:
        pytest.skip("promtool missing: scripts/install-system-deps.sh installs Debian's prometheus")
    body, _ = _get(f"http://127.0.0.1:{served.metrics_port}/metrics")
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    # Exit 1 would be a parse error. Exit 3 is promtool's style linter: the only complaints allowed are about
    # names the OpenTelemetry semantic conventions fix (Prometheus' own OTLP translation yields the same names).
    assert result.returncode in (0, 3), result.stdout + result.stderr
    semconv_names = {"process_thread_count", "process_unix_file_descriptor_count"}
    for problem in (result.stdout + result.stderr).strip().splitlines():
        assert problem.split()[0] in semconv_names and "_count" in problem, problem


def test_port_in_use_warns_once_and_the_service_runs_on(caplog: pytest.LogCaptureFixture,
                                                        otlp_receiver: object) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="obsbox"):
            t = obsbox.configure(service_name="busy", endpoint=otlp_receiver.endpoint,
                                 metrics_port=port, console=False)
        try:
            warnings = [r.getMessage() for r in caplog.records if r.name == "obsbox"]
            assert len(warnings) == 1 and str(port) in warnings[0] and "OBSBOX_METRICS_PORT" in warnings[0]
            assert t.enabled and t.metrics_port is None
            with trace.get_tracer("t").start_as_current_span("still traced") as span:
                assert span.is_recording()
        finally:
            t.shutdown()


def _query(base: str, path: str, **params: str) -> dict[str, object]:
    body, _ = _get(f"{base}{path}?{urllib.parse.urlencode(params)}")
    answer: dict[str, object] = json.loads(body)
    return answer


@pytest.mark.stack
def test_real_prometheus_scrapes_it(served: Telemetry, tmp_path: Path) -> None:
    binary = _tool("prometheus")
    if binary is None:
        pytest.skip("prometheus missing: scripts/install-system-deps.sh installs Debian's prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: pulled\n    static_configs: [{{targets: ['127.0.0.1:{served.metrics_port}']}}]\n"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        query = 'http_server_request_duration_seconds_count{service_name="pull-test"}'
        deadline = time.monotonic() + 60
        result: list[dict[str, object]] = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                answer = _query(base, "/api/v1/query", query=query)
            except OSError:
                continue
            result = answer["data"]["result"]  # type: ignore[index]
        assert result, f"Prometheus never returned {query}"
        metric = result[0]["metric"]
        assert metric["http_route"] == "/items/{item_id}" and metric["deployment_environment_name"] == "ci"  # type: ignore[index]
        assert result[0]["value"][1] == "1"  # type: ignore[index]
        now = time.time()
        exemplars = _query(base, "/api/v1/query_exemplars",
                           query="http_server_request_duration_seconds_bucket", start=str(now - 600), end=str(now))
        labels = [e["labels"] for series in exemplars["data"] for e in series["exemplars"]]  # type: ignore[attr-defined,index]
        assert labels and set(labels[0]) == {"trace_id", "span_id"}
    finally:
        stop(process)
