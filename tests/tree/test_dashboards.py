"""Lint of the Grafana dashboards in dashboards/obsbox/: what Grafana cannot check for us until a user opens them.

Every panel names a provisioned datasource uid, a unit and a description; every rate() and increase() uses
$__rate_interval; the dashboards link to each other; no sample service is named; the JSON matches
dashboards/generate.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.tree.test_queries import (
    DASHBOARD_FILES,
    RATE_INTERVAL,
    ROOT,
    dashboard_queries,
    load,
    metric_names,
    panels,
    range_functions,
    substitute,
)

DATASOURCE_UIDS = {"prometheus", "loki", "jaeger", "pyroscope", "alertmanager"}
# Grafana unit ids the dashboards use (a typo would silently show raw numbers); "suffix:..." is Grafana's custom unit.
GRAFANA_UNITS = {"none", "short", "percentunit", "reqps", "ops", "s", "ns", "bytes"}
EXPECTED = {
    "services-overview.json": "obsbox-services-overview",
    "service-detail.json": "obsbox-service-detail",
    "slos.json": "obsbox-slos",
    "resilience.json": "obsbox-resilience",
    "runtime.json": "obsbox-runtime",
    "logs.json": "obsbox-logs",
    "stack-health.json": "obsbox-stack-health",
    "dependencies.json": "obsbox-dependencies",
}
SAMPLE_SERVICES = ("gateway", "orders", "payments", "inventory")
BOARDS = {p.name: load(p) for p in DASHBOARD_FILES}
ALL_PANELS = [(name, p) for name, board in BOARDS.items() for p in panels(board) if p["type"] != "row"]


def _pid(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}/{item[1]['title']}"


def test_the_eight_dashboards_exist_with_fixed_uids() -> None:
    assert {name: b["uid"] for name, b in BOARDS.items()} == EXPECTED


def test_the_json_is_what_the_generator_writes() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "dashboards" / "generate.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_the_folder_and_opens_the_overview_at_home() -> None:
    # backends/grafana provisions dashboards/ with foldersFromFilesStructure (the sub-folder obsbox/ becomes a
    # Grafana folder) and stack.yml points the home dashboard at the overview.
    provider = yaml.safe_load((ROOT / "backends/grafana/provisioning/dashboards/obsbox.yaml").read_text())
    assert provider["providers"][0]["options"]["foldersFromFilesStructure"] is True
    assert "/etc/grafana/dashboards/obsbox/services-overview.json" in (ROOT / "stack.yml").read_text()
    datasources = yaml.safe_load((ROOT / "backends/grafana/provisioning/datasources/obsbox.yaml").read_text())
    assert {d["uid"] for d in datasources["datasources"]} == DATASOURCE_UIDS


@pytest.mark.parametrize("item", ALL_PANELS, ids=_pid)
def test_every_panel_has_datasource_unit_and_description(item: tuple[str, dict[str, Any]]) -> None:
    _, p = item
    assert p["datasource"]["uid"] in DATASOURCE_UIDS
    for target in p["targets"]:
        assert target["datasource"]["uid"] == p["datasource"]["uid"]
    unit = p["fieldConfig"]["defaults"].get("unit", "")
    assert unit in GRAFANA_UNITS or unit.startswith("suffix:"), f"unit {unit!r}"
    for override in p["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "unit":
                assert prop["value"] in GRAFANA_UNITS
    assert len(p.get("description", "")) > 20, "no description"


@pytest.mark.parametrize("item", ALL_PANELS, ids=_pid)
def test_thresholds_where_they_mean_something(item: tuple[str, dict[str, Any]]) -> None:
    _, p = item
    title = p["title"].lower()
    steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
    alerting = any(w in title for w in ("error", "p99", "usage", "utilisation", "burn", "failure"))
    if p["type"] in ("timeseries", "stat") and (alerting or p["type"] == "stat"):
        # error ratios, latencies, usage ratios and burn rates have a good and a bad side
        assert len(steps) >= 2 or "objective" in title or p["fieldConfig"]["defaults"]["unit"] in ("reqps", "short"), (
            f"{p['title']}: thresholds expected")
    assert steps[0]["value"] is None, "the first threshold step is the base (value null)"
    values = [s["value"] for s in steps[1:]]
    assert values == sorted(values)


def test_every_rate_and_increase_uses_rate_interval() -> None:
    checked = 0
    for q in dashboard_queries():
        if q.lang != "promql":
            continue
        for func, window in range_functions(substitute(q.expr)):
            if func in ("rate", "increase", "irate"):
                checked += 1
                assert window.total_seconds() == int(RATE_INTERVAL.rstrip("s")), f"{q.id}: {func} over {window}"
    assert checked > 50


def test_logql_ranges_follow_the_time_picker() -> None:
    for q in dashboard_queries():
        if q.lang == "logql" and "[" in q.expr:
            assert all(r == "$__auto" for r in re.findall(r"\[([^\]]+)\]", q.expr)), q.id


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboards_link_to_each_other(name: str) -> None:
    board = BOARDS[name]
    assert "obsbox" in board["tags"]
    tag_links = [link for link in board["links"] if link["type"] == "dashboards"]
    assert tag_links and tag_links[0]["tags"] == ["obsbox"] and tag_links[0]["keepTime"]


def test_every_internal_link_points_at_an_existing_dashboard() -> None:
    text = "\n".join(json.dumps(b) for b in BOARDS.values())
    targets = set(re.findall(r"/d/([a-z0-9-]+)", text))
    assert targets and targets <= set(EXPECTED.values())


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_no_sample_service_is_named(name: str) -> None:
    text = json.dumps(BOARDS[name]).lower()
    for sample in SAMPLE_SERVICES:
        assert not re.search(rf"\b{sample}\b", text), f"{name} names {sample}"


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_queries_key_on_service_name_never_job(name: str) -> None:
    for q in dashboard_queries():
        if q.dashboard == name and q.dashboard != "stack-health.json":
            assert "job" not in q.expr, q.id


def test_panels_are_core_grafana_panel_types() -> None:
    # core panels only: a plugin panel would render empty in a Grafana without that plugin. The flame graph is
    # core too (grafana/grafana public/app/plugins/panel/flamegraph/plugin.json: id "flamegraph").
    core = {"row", "timeseries", "stat", "table", "heatmap", "logs", "state-timeline", "alertlist", "flamegraph"}
    assert {p["type"] for board in BOARDS.values() for p in panels(board)} <= core


def test_panel_ids_are_unique_and_fit_the_grid() -> None:
    for name, board in BOARDS.items():
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), name
        for p in panels(board):
            pos = p["gridPos"]
            assert pos["x"] + pos["w"] <= 24, f"{name}/{p['title']}"


# --- what each dashboard must offer (issue: dashboards 1-7) ---------------------------------------------------


def _by_title(name: str) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in panels(BOARDS[name])}


def test_overview_lists_every_service_with_red_percentiles_alerts_and_links_to_detail() -> None:
    table = _by_title("services-overview.json")["Services"]
    columns = table["transformations"][1]["options"]["renameByName"]
    assert set(columns.values()) >= {"Service", "Requests/s", "Errors (5xx)", "p50", "p95", "p99", "Firing alerts"}
    links = json.dumps(table["fieldConfig"]["overrides"])
    assert "/d/obsbox-service-detail?var-service_name=${__value.raw}" in links
    sparklines = [p for p in panels(BOARDS["services-overview.json"]) if p["type"] == "stat"]
    assert sparklines and all(p["options"]["graphMode"] == "area" for p in sparklines)


def test_overview_shows_alerts_and_silences_of_alertmanager() -> None:
    board = BOARDS["services-overview.json"]
    by_title = _by_title("services-overview.json")
    alerts = by_title["Alerts"]
    assert alerts["type"] == "alertlist" and alerts["datasource"] == {"type": "alertmanager", "uid": "alertmanager"}
    assert alerts["options"]["stateFilter"]["firing"] and not alerts["options"]["dashboardAlerts"]
    silences = by_title["Silences"]
    assert silences["targets"][0]["expr"].startswith('sum(alertmanager_silences{state="active"})')
    silences_page = "/alerting/silences?alertmanager=Alertmanager"
    assert silences["fieldConfig"]["defaults"]["links"] == [{"title": "Manage silences", "url": silences_page}]
    assert any(link.get("url") == silences_page for link in board["links"])
    datasources = yaml.safe_load((ROOT / "backends/grafana/provisioning/datasources/obsbox.yaml").read_text())
    (alertmanager,) = [d for d in datasources["datasources"] if d["uid"] == "alertmanager"]
    assert alertmanager["name"] == "Alertmanager", "the silences link selects the data source by its name"


def test_service_detail_has_route_variable_heatmap_with_exemplars_logs_and_traces() -> None:
    board = BOARDS["service-detail.json"]
    assert [v["name"] for v in board["templating"]["list"]] == ["environment", "service_name", "http_route"]
    by_title = _by_title("service-detail.json")
    heatmap = by_title["Request duration heatmap"]
    assert heatmap["type"] == "heatmap" and heatmap["targets"][0]["exemplar"] is True
    assert heatmap["targets"][0]["format"] == "heatmap"
    assert by_title["Logs"]["type"] == "logs" and by_title["Logs"]["datasource"]["uid"] == "loki"
    assert by_title["Recent traces"]["datasource"]["uid"] == "jaeger"
    assert any("jaeger" in link["url"] for link in board["links"])
    exprs = " ".join(t["expr"] for p in panels(board) for t in p.get("targets", []) if "expr" in t)
    for needed in ("http_server_active_requests", "error_type", "http_response_status_code", "server_address"):
        assert needed in exprs


def test_slo_dashboard_shows_objective_sli_budget_and_burn_rates() -> None:
    titles = set(_by_title("slos.json"))
    for slo in ("Availability", "Latency"):
        assert {f"{slo} objective", f"{slo} over the last day", f"{slo} error budget left (3 days)",
                f"{slo} burn rate by window"} <= titles


def test_resilience_runtime_logs_and_stack_health_cover_the_issue() -> None:
    exprs = {name: " ".join(q.expr for q in dashboard_queries() if q.dashboard == name) for name in BOARDS}
    for metric in ("obsbox_circuit_breaker_state", "obsbox_circuit_breaker_transitions_total",
                   "obsbox_circuit_breaker_calls_total", "obsbox_retry_calls_total", "obsbox_retry_retries_total",
                   "obsbox_pool_size", "obsbox_pool_busy", "obsbox_pool_queue_depth",
                   "obsbox_pool_task_duration_seconds"):
        assert metric in exprs["resilience.json"]
    for metric in ("process_cpu_time_seconds_total", "process_memory_usage_bytes", "cpython_gc_collections_total",
                   "process_thread_count", "process_unix_file_descriptor_count",
                   "obsbox_process_file_descriptor_limit"):
        assert metric in exprs["runtime.json"]
    assert "severity_text" in exprs["logs.json"] and "sum by (service_name)" in exprs["logs.json"]
    for needle in ("otelcol_receiver_accepted", "otelcol_receiver_refused", "otelcol_exporter_send_failed",
                   "otelcol_exporter_queue_size", "prometheus_", "loki_", "alertmanager_notifications"):
        assert needle in exprs["stack-health.json"]


def test_dependencies_dashboard_covers_databases_queues_and_peers_by_the_conventions() -> None:
    """Per service and dependency: rate, errors, p50/p99 by operation, the slowest operations, exemplars — on the
    semantic-convention series only (any service instrumented with them shows), linked from the service detail."""
    board = BOARDS["dependencies.json"]
    assert [v["name"] for v in board["templating"]["list"]] == ["environment", "service_name"]
    queries = [q for q in dashboard_queries() if q.dashboard == "dependencies.json"]
    names = set().union(*(metric_names(substitute(q.expr)) for q in queries if not q.panel.startswith("variable")))
    assert names == {f"{m}_{suffix}" for m in ("db_client_operation_duration_seconds",
                                               "messaging_client_operation_duration_seconds",
                                               "messaging_process_duration_seconds",
                                               "http_client_request_duration_seconds",
                                               "rpc_client_call_duration_seconds")
                     for suffix in ("count", "bucket")} | {"db_client_operation_duration_seconds_sum",
                                                           "obsbox_celery_queue_messages"}
    exprs = " ".join(q.expr for q in queries)
    for label in ("db_system_name", "db_operation_name", "db_collection_name", "db_query_summary", "server_address",
                  "messaging_destination_name", "rpc_method", 'error_type!=""'):
        assert label in exprs, label
    by_title = _by_title("dependencies.json")
    for title in ("Operations per second by dependency", "Error ratio by dependency", "p50 latency by operation",
                  "p99 latency by operation", "Messages processed per second", "Processing error ratio",
                  "Calls per second by peer", "Error ratio by peer", "p99 latency by peer", "Queue backlog"):
        assert title in by_title, title
    for title, p in by_title.items():
        if "latency" in title.lower():
            assert all(t["exemplar"] for t in p["targets"]), title  # a dot opens the trace in Jaeger
    slowest = by_title["Slowest database and cache operations"]
    assert slowest["type"] == "table" and all(t["instant"] for t in slowest["targets"])
    assert all("topk(10, histogram_quantile(0.99" in t["expr"] for t in slowest["targets"])
    # every column is limited to the ten slowest, so the merged table has ten rows, not one per operation
    assert set(slowest["transformations"][1]["options"]["renameByName"].values()) >= {
        "Service", "Query summary", "p99", "Mean", "Operations/s", "Errors"}
    links = BOARDS["service-detail.json"]["links"]
    assert any(link["url"].startswith("/d/obsbox-dependencies?var-service_name=${service_name}") for link in links)


def test_logs_dashboard_searches_slow_operations_on_their_structured_fields() -> None:
    """The slow-operation line (integrations/_db.py) carries duration_s, db.system.name, db.query.summary as
    attributes; Loki stores them as structured metadata with dots as underscores, where a label filter reads them."""
    slow = [q for q in dashboard_queries() if q.dashboard == "logs.json" and "Slow operations" in q.panel]
    assert len(slow) == 2
    for q in slow:
        assert '{service_name=~"$service_name"} | duration_s >= $slow_s' in q.expr, q.id
    (count,) = [q for q in slow if "count_over_time" in q.expr]
    assert ("sum by (service_name, db_system_name, db_operation_name, db_query_summary, messaging_system, "
            "celery_task_name)") in count.expr
    (variable,) = [v for v in BOARDS["logs.json"]["templating"]["list"] if v["name"] == "slow_s"]
    assert variable["current"]["value"] == "1"  # the integrations' default slow_operation_threshold


def test_the_slow_operation_line_carries_the_fields_the_logs_dashboard_filters_on() -> None:
    """What the integrations log for a slow operation, at a real OTLP receiver: the attribute names the LogQL above
    reads after Loki's dots-to-underscores."""
    from obsbox.instrumentation.integrations._db import DbCall, Operation, Slow, Target
    from obsbox.testing import capture

    with capture(service_name="checkout", console=False) as cap:
        before, Slow.threshold = Slow.threshold, 0.0
        try:
            call = DbCall.begin(Target("postgresql", "db.internal", 5432, "shop"),
                                Operation.of_sql("SELECT * FROM items WHERE sku = 'secret'"))
            assert call is not None
            call.finish(None)
        finally:
            Slow.threshold = before
        record = cap.receiver.wait_for(lambda: next((r for r in cap.logs() if "slow database operation" in
                                                     str(r.body)), None))
    loki_fields = {name.replace(".", "_") for name in record.attributes}
    assert {"duration_s", "db_system_name", "db_operation_name", "db_query_summary"} <= loki_fields
    assert isinstance(record.attributes["duration_s"], float) and "secret" not in str(record.attributes)


def test_the_dependency_and_celery_alerts_open_the_dependencies_dashboard_with_their_service() -> None:
    rules = yaml.safe_load((ROOT / "alerts/prometheus/dependencies.rules.yml").read_text())
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert {r["alert"] for r in alerts} >= {"DependencyHighErrorRate", "DependencyHighLatency", "CeleryQueueBacklog"}
    for rule in alerts:
        assert "/d/obsbox-dependencies?var-service_name={{ $labels.service_name }}" in (
            rule["annotations"]["dashboard_url"]), rule["alert"]
