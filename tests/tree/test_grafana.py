"""backends/grafana/provisioning/: fixed datasource uids, every cross-link between signals pointing at a uid that
exists, `$` escaped for Grafana's environment expansion, and the dashboards provider reading dashboards/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from obsbox.stack.binaries import find_tool
from obsbox.stack.tree import stack_root

ROOT = stack_root()
PROVISIONING = ROOT / "backends/grafana/provisioning"
UIDS = {"prometheus", "loki", "jaeger", "pyroscope", "alertmanager"}


def datasources() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load((PROVISIONING / "datasources/obsbox.yaml").read_text())
    assert data["apiVersion"] == 1
    return {ds["uid"]: ds for ds in data["datasources"]}


def grafana_expand(value: str, env: dict[str, str]) -> str:
    """What Grafana does to every string of a provisioning file: split on `$$`, expand $VAR / ${VAR} in each part
    (Go os.ExpandEnv: unset is empty), join with a literal `$`."""

    def expand(part: str) -> str:
        return re.sub(
            r"\$(\{([^}]*)\}|[A-Za-z0-9_]+)",
            lambda m: env.get(m[2] if m[2] is not None else m[1], ""),
            part,
        )

    return "$".join(expand(part) for part in value.split("$$"))


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def expanded(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: expanded(value) for key, value in node.items()}
    if isinstance(node, list):
        return [expanded(value) for value in node]
    return grafana_expand(node, dict(os.environ)) if isinstance(node, str) else node


def test_the_five_datasources_have_fixed_unique_uids() -> None:
    data = yaml.safe_load((PROVISIONING / "datasources/obsbox.yaml").read_text())["datasources"]
    uids = [ds["uid"] for ds in data]
    assert sorted(uids) == sorted(UIDS) and len(set(uids)) == len(uids)
    types = {ds["uid"]: ds["type"] for ds in data}
    # grafana/grafana public/app/plugins/datasource/grafana-pyroscope-datasource/plugin.json: id
    # "grafana-pyroscope-datasource" (alias "phlare"), a core datasource: no plugin to install.
    assert types == {"prometheus": "prometheus", "loki": "loki", "jaeger": "jaeger",
                     "pyroscope": "grafana-pyroscope-datasource", "alertmanager": "alertmanager"}
    assert [ds["uid"] for ds in data if ds.get("isDefault")] == ["prometheus"]
    assert all(ds["editable"] is False for ds in data)


def test_urls_point_at_the_services_and_ports_of_stack_yml() -> None:
    compose = yaml.safe_load((ROOT / "stack.yml").read_text())["services"]
    expected = {
        "prometheus": "http://prometheus:9090",
        "loki": "http://loki:3100",
        "jaeger": "http://jaeger:16686",
        "pyroscope": "http://pyroscope:4040",
        "alertmanager": "http://alertmanager:9093",
    }
    for uid, url in expected.items():
        assert datasources()[uid]["url"] == url
        assert uid in compose
    assert datasources()["alertmanager"]["jsonData"]["implementation"] == "prometheus"


def _linked_uids(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["datasourceUid"]] if "datasourceUid" in node else []
        return own + [uid for value in node.values() for uid in _linked_uids(value)]
    if isinstance(node, list):
        return [uid for value in node for uid in _linked_uids(value)]
    return []


def test_every_cross_link_points_at_an_existing_uid() -> None:
    links = _linked_uids(list(datasources().values()))
    assert sorted(links) == ["jaeger", "jaeger", "loki", "prometheus", "pyroscope"]
    assert set(links) <= set(datasources())


def test_exemplars_open_the_trace_in_jaeger() -> None:
    destinations = datasources()["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert destinations == [{"name": "trace_id", "datasourceUid": "jaeger", "urlDisplayLabel": "View trace"}]


def test_log_lines_link_to_their_trace_through_structured_metadata() -> None:
    fields = expanded(datasources()["loki"])["jsonData"]["derivedFields"]
    assert fields == [
        {
            "name": "trace_id",
            "matcherType": "label",
            "matcherRegex": "trace_id",
            "url": "${__value.raw}",
            "datasourceUid": "jaeger",
            "urlDisplayLabel": "View trace",
        }
    ]


def test_spans_link_to_their_logs_and_metrics() -> None:
    json_data = expanded(datasources()["jaeger"])["jsonData"]
    logs = json_data["tracesToLogsV2"]
    assert logs["datasourceUid"] == "loki" and logs["customQuery"] is True
    assert logs["query"] == '{service_name=~".+"} | trace_id="${__trace.traceId}"'
    metrics = json_data["tracesToMetrics"]
    assert metrics["datasourceUid"] == "prometheus"
    assert metrics["tags"] == [{"key": "service.instance.id", "value": "service_instance_id"}]
    assert json_data["nodeGraph"] == {"enabled": True}
    assert {q["name"] for q in metrics["queries"]} == {"Request rate", "Error rate", "p95 duration (ms)"}


@pytest.mark.parametrize("tags", ['service_instance_id="0f3c"', ""], ids=["tag-found", "tag-missing"])
def test_traces_to_metrics_queries_are_valid_promql(tags: str) -> None:
    """Grafana replaces $__tags with the span's mapped tags (nothing when the span lacks them)."""
    for query in expanded(datasources()["jaeger"])["jsonData"]["tracesToMetrics"]["queries"]:
        assert "$__tags" in query["query"]
        promql_parser.parse(query["query"].replace("$__tags", tags))
        assert "traces_span_metrics_" in query["query"]


# --- traces -> metrics: which tag of a span survives the way to Grafana --------------------------------------------


def jaeger_process(resource: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(serviceName, tags) of the span's process as Jaeger's API returns it. Jaeger v2 stores OTLP through the
    Collector's jaeger translator (resourceToJaegerProtoProcess / appendTagsFromResourceAttributes): service.name
    becomes the process's serviceName and is skipped in the tags; every other resource attribute is a tag."""
    tags = [{"key": key, "value": value} for key, value in resource.items() if key != "service.name"]
    return str(resource["service.name"]), tags


def grafana_metric_tags(process_tags: list[dict[str, Any]], mapping: list[dict[str, str]]) -> str:
    """What Grafana 13 puts for $__tags in a trace-to-metrics query (public/app/features/explore/TraceView:
    createSpanLink.tsx -> crossSignalConfig.ts getFormattedTags(getSpanTags(span), tags)): the span's process tags,
    then its own tags, then spanId/traceId/name/duration, each one the mapping names written as value="..." under
    the mapped label name, joined by ", ". The service name is not among them: TraceSpan keeps it in
    span.process.serviceName. (The Jaeger datasource reads Jaeger's v1 JSON API unless the experimental
    jaegerEnableGrpcEndpoint feature toggle is on, which the box does not set.)"""
    found = []
    for tag in process_tags:
        rule = next((m for m in mapping if m["key"] == tag["key"]), None)
        if rule is not None:
            found.append(f'{rule.get("value") or rule["key"]}="{tag["value"]}"')
    return ", ".join(found)


def test_the_mapped_tag_reaches_grafana_and_names_a_prometheus_label() -> None:
    from obsbox.instrumentation.settings import resolve
    from obsbox.instrumentation.setup import build_resource

    resource = build_resource(resolve({"service_name": "orders"}, environ={}))
    _, process_tags = jaeger_process(resource)
    mapping = expanded(datasources()["jaeger"])["jsonData"]["tracesToMetrics"]["tags"]
    assert grafana_metric_tags(process_tags, mapping) == f'service_instance_id="{resource["service.instance.id"]}"'
    # the mapping this replaces expanded to nothing: `{}` in every query, i.e. every service
    assert grafana_metric_tags(process_tags, [{"key": "service.name", "value": "service_name"}]) == ""
    # the span metrics carry the label: Prometheus promotes the resource attribute (dots -> underscores)
    prometheus = yaml.safe_load((ROOT / "backends/prometheus/prometheus.yml").read_text())
    assert "service.instance.id" in prometheus["otlp"]["promote_resource_attributes"]
    assert all(m["value"] == m["key"].replace(".", "_") for m in mapping)


# --- traces -> profiles ----------------------------------------------------------------------------------------
#
# Grafana 13 (grafana/grafana):
# - packages/grafana-o11y-ds-frontend TraceToProfilesSettings.tsx: jsonData.tracesToProfiles = {datasourceUid?,
#   tags?: [{key, value?}], query?, profileTypeId?, customQuery: boolean}; the picker offers only datasources of
#   type grafana-pyroscope-datasource.
# - public/app/plugins/datasource/tempo/resultTransformer.ts transformTrace: the link is a DataLink on the trace's
#   data frame whose Pyroscope query is {labelSelector: customQuery ? query : '{${__tags}}', profileTypeId,
#   queryType: 'profile', spanSelector: [the span's pyroscope.profile.id tag]}.
# - public/app/features/explore/TraceView/createSpanLink.tsx: the trace view turns a data frame's links into a
#   profiles link only when the datasource is a grafana-pyroscope-datasource AND the span has the tag
#   `pyroscope.profile.id` (pyroscopeProfileIdTagKey); without tags it maps service.name -> service_name and
#   service.namespace -> service_namespace (defaultProfilingKeys), which Jaeger's API expands to nothing (below).
TRACES_TO_PROFILES_KEYS = {"datasourceUid", "tags", "query", "profileTypeId", "customQuery"}


def test_spans_link_to_the_cpu_profile_of_their_service_in_pyroscope() -> None:
    board = json.loads((ROOT / "dashboards/obsbox/service-detail.json").read_text())
    (flame,) = [p for p in board["panels"] if p["type"] == "flamegraph"]
    profiles = expanded(datasources()["jaeger"])["jsonData"]["tracesToProfiles"]
    assert set(profiles) <= TRACES_TO_PROFILES_KEYS
    assert profiles["datasourceUid"] == "pyroscope"
    assert datasources()["pyroscope"]["type"] == "grafana-pyroscope-datasource"
    assert profiles["profileTypeId"] == flame["targets"][0]["profileTypeId"]  # what the flame graph shows
    # the span selector narrows to the span; the label selector admits every service (a valid selector)
    assert profiles["customQuery"] is True and "tags" not in profiles
    assert str(promql_parser.parse(profiles["query"])) == '{service_name=~".+"}'


def test_no_tag_of_a_jaeger_span_could_select_the_service_of_a_profile() -> None:
    """Why the profiles link does not map tags: the profiles are labelled service_name (the ingest name) and a few
    resource attributes, never the instance id, and Jaeger's API keeps service.name out of the span's tags."""
    from obsbox.instrumentation.settings import resolve
    from obsbox.instrumentation.setup import build_resource

    resource = build_resource(resolve({"service_name": "orders"}, environ={}))
    _, process_tags = jaeger_process(resource)
    default = [{"key": "service.name", "value": "service_name"}, {"key": "service.namespace",
                                                                   "value": "service_namespace"}]
    assert "service_name" not in grafana_metric_tags(process_tags, default)


# The Prometheus the box pins (the cached build) when there is one, else Debian's: both evaluate these queries alike.
PROMTOOL = find_tool("promtool")


def _span_metrics_test(tmp_path: Path, tags: str) -> Path:
    """A promtool unit test evaluating the trace-to-metrics queries, $__tags filled in as Grafana would, at 30m:
    service alpha has instance a1 (1 call/s until 10m, then gone) and a2 (2 calls/s + 0.25 errors/s, all calls
    between 50 and 100 ms); service beta has b1 (4 calls/s, all under 50 ms)."""
    calls = "traces_span_metrics_calls_total"
    buckets = "traces_span_metrics_duration_milliseconds_bucket"
    unset, error = 'status_code="STATUS_CODE_UNSET"', 'status_code="STATUS_CODE_ERROR"'
    series = [
        (f'{calls}{{service_name="alpha", service_instance_id="a1", {unset}}}', "0+60x10"),
        (f'{calls}{{service_name="alpha", service_instance_id="a2", {unset}}}', "0+120x30"),
        (f'{calls}{{service_name="alpha", service_instance_id="a2", {error}}}', "0+15x30"),
        (f'{calls}{{service_name="beta", service_instance_id="b1", {unset}}}', "0+240x30"),
        (f'{buckets}{{service_name="alpha", service_instance_id="a2", le="50"}}', "0+0x30"),
        (f'{buckets}{{service_name="alpha", service_instance_id="a2", le="100"}}', "0+135x30"),
        (f'{buckets}{{service_name="alpha", service_instance_id="a2", le="+Inf"}}', "0+135x30"),
        (f'{buckets}{{service_name="beta", service_instance_id="b1", le="50"}}', "0+240x30"),
        (f'{buckets}{{service_name="beta", service_instance_id="b1", le="100"}}', "0+240x30"),
        (f'{buckets}{{service_name="beta", service_instance_id="b1", le="+Inf"}}', "0+240x30"),
    ]
    expected = {"Request rate": {"alpha": 2.25, "beta": 4.0}, "Error rate": {"alpha": 0.25},
                "p95 duration (ms)": {"alpha": 97.5, "beta": 47.5}}
    selected = {"": {"alpha", "beta"}, 'service_instance_id="a1"': {"alpha"},
                'service_instance_id="b1"': {"beta"}}[tags]
    queries = expanded(datasources()["jaeger"])["jsonData"]["tracesToMetrics"]["queries"]
    test = {
        "rule_files": [], "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            "promql_expr_test": [
                {"expr": q["query"].replace("$__tags", tags), "eval_time": "30m",
                 "exp_samples": [{"labels": f'{{service_name="{name}"}}', "value": value}
                                 for name, value in expected[q["name"]].items() if name in selected]}
                for q in queries],
        }],
    }
    path = tmp_path / "span-links.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return path


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: scripts/build-components.sh or install-system-deps.sh")
@pytest.mark.parametrize("tags", ['service_instance_id="a1"', 'service_instance_id="b1"', ""],
                         ids=["instance-gone-20m-ago", "other-service", "tag-missing"])
def test_span_links_show_the_whole_service_of_the_spans_instance(tmp_path: Path, tags: str) -> None:
    """Evaluated by promtool's PromQL engine: a span of instance a1 (exited 20 minutes before) opens alpha's rate,
    errors and p95 over all its instances, and nothing of beta; a span without the tag shows each service."""
    path = _span_metrics_test(tmp_path, tags)
    result = subprocess.run([str(PROMTOOL), "test", "rules", path.name], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted(PROVISIONING.rglob("*.yaml")), ids=lambda p: str(p.relative_to(PROVISIONING)))
def test_literal_dollars_are_escaped(path: Path) -> None:
    """A single `$` would be expanded by Grafana (to nothing: no such variable); only `$$` survives as `$`."""
    for value in strings(yaml.safe_load(path.read_text())):
        for part in value.split("$$"):
            assert "$" not in part, f"{path.name}: {value!r}"


def test_the_escaping_check_would_catch_an_unescaped_dollar() -> None:
    assert grafana_expand("${__value.raw}", {}) == ""
    assert grafana_expand("$${__value.raw}", {}) == "${__value.raw}"
    assert grafana_expand("{$$__tags}", {}) == "{$__tags}"
    assert grafana_expand("$HOME/x", {"HOME": "/root"}) == "/root/x"


def test_dashboards_provider_reads_dashboards_dir_with_folders() -> None:
    data = yaml.safe_load((PROVISIONING / "dashboards/obsbox.yaml").read_text())
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert provider["options"] == {"path": "/etc/grafana/dashboards", "foldersFromFilesStructure": True}
    assert "folder" not in provider and "folderUid" not in provider
    grafana = yaml.safe_load((ROOT / "stack.yml").read_text())["services"]["grafana"]
    assert "./dashboards:/etc/grafana/dashboards:ro" in grafana["volumes"]


def test_dashboards_are_one_folder_deep() -> None:
    """foldersFromFilesStructure makes one Grafana folder per directory and does not nest them."""
    for path in (ROOT / "dashboards").rglob("*.json"):
        assert len(path.relative_to(ROOT / "dashboards").parts) <= 2, path


def test_alerting_provisioning_is_valid_and_empty() -> None:
    data = yaml.safe_load((PROVISIONING / "alerting/obsbox.yaml").read_text())
    assert data == {"apiVersion": 1}


def test_native_provisioning_keeps_escapes_and_points_at_local_paths(tmp_path: Path) -> None:
    from obsbox.stack.render import render_grafana_provisioning

    source = (PROVISIONING / "datasources/obsbox.yaml").read_text()
    rendered = render_grafana_provisioning(source, dashboards_dir=tmp_path)
    assert rendered.count("$$") == source.count("$$")
    urls = {ds["uid"]: ds["url"] for ds in yaml.safe_load(rendered)["datasources"]}
    assert urls == {
        "prometheus": "http://127.0.0.1:9090",
        "loki": "http://127.0.0.1:3100",
        "jaeger": "http://127.0.0.1:16686",
        "pyroscope": "http://127.0.0.1:4040",
        "alertmanager": "http://127.0.0.1:9093",
    }
    provider = render_grafana_provisioning((PROVISIONING / "dashboards/obsbox.yaml").read_text(),
                                           dashboards_dir=ROOT / "dashboards")
    assert yaml.safe_load(provider)["providers"][0]["options"]["path"] == str(ROOT / "dashboards")


JS_DIR = ROOT / "tests" / "js"


@pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules").is_dir(),
    reason="node or tests/js/node_modules missing: scripts/install-node-deps.sh installs them",
)
def test_cross_link_queries_parse_with_grafanas_grammars() -> None:
    """The trace-to-logs LogQL and trace-to-metrics PromQL, as Grafana runs them (after its own `$` expansion and
    with the span's values filled in), parse with the lezer grammars of Grafana's query editors."""
    json_data = expanded(datasources()["jaeger"])["jsonData"]
    queries = [{"id": "logs", "lang": "logql",
                "expr": json_data["tracesToLogsV2"]["query"].replace("${__trace.traceId}", "4bf92f3577b34da6")}]
    queries += [{"id": q["name"], "lang": "promql", "expr": q["query"].replace("$__tags", 'service_instance_id="0f3c"')}
                for q in json_data["tracesToMetrics"]["queries"]]
    queries.append({"id": "broken", "lang": "logql", "expr": '{service_name=~".+"} | trace_id="'})
    result = subprocess.run(["node", "parse-queries.mjs"], input=json.dumps(queries), cwd=JS_DIR,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    verdicts = {r["id"]: r["ok"] for r in json.loads(result.stdout)}
    assert verdicts.pop("broken") is False  # the parser does catch a broken query
    assert all(verdicts.values()), result.stdout
