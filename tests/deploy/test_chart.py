"""deploy/helm/obsbox: the box's rules, dashboards, routing and Collector pipeline rendered for Kubernetes.

Everything here runs the real Helm the components build makes (helm.sh/helm/v4 at HELM_VERSION of .env): `helm lint`
and `helm template` with the default values and with every optional part on (all-on.values.yaml). The rendered
manifests are compared with the box's own files, validated (core kinds against the Kubernetes OpenAPI schemas of
kubernetes-validate, the Prometheus Operator's kinds by a strict decode into its Go API types, the OpenTelemetry
Operator's kinds against a strict schema), and the rules extracted from them go through promtool and the box's own
rule unit tests. No cluster is involved.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from obsbox.stack.binaries import cache_dir
from obsbox.stack.binaries import find_tool as _tool
from obsbox.stack.tree import pinned_images

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = ROOT / "deploy" / "helm" / "obsbox"
FILES = CHART / "files"
ALL_ON = HERE / "all-on.values.yaml"
CRDCHECK = HERE / "crdcheck"
OTEL_SCHEMA = json.loads((HERE / "opentelemetry-operator.schema.json").read_text(encoding="utf-8"))
NAMESPACE = "monitoring"
RELEASE = "obsbox"

# The Kubernetes versions the chart claims (Chart.yaml kubeVersion >=1.34): every one kubernetes-validate has
# schemas for, from 1.34 on.
K8S_VERSIONS = ("1.34.0", "1.35.0", "1.36.0", "1.37.0")

# The box's files and their copies in the chart (`make chart-files` writes them).
SYNCED = {
    "alerts/prometheus/*.yml": "alerts/prometheus",
    "alerts/loki/fake/*.yaml": "alerts/loki",
    "dashboards/obsbox/*.json": "dashboards",
    "collector/config.yaml": "collector",
    "backends/alertmanager/alertmanager.yml": "alertmanager",
}
DATASOURCES = ROOT / "backends" / "grafana" / "provisioning" / "datasources" / "obsbox.yaml"
PROMETHEUS_OPERATOR_KINDS = {"PrometheusRule", "ServiceMonitor", "PodMonitor", "AlertmanagerConfig"}
OTEL_OPERATOR_KINDS = {"OpenTelemetryCollector", "Instrumentation"}
CORE_KINDS = {"ConfigMap"}
IN_CI = bool(os.environ.get("CI"))


def _helm() -> Path | None:
    version = pinned_images().get("HELM_VERSION", "")
    pinned = cache_dir() / "helm" / version / "helm"
    if version and pinned.is_file() and os.access(pinned, os.X_OK):
        return pinned
    found = shutil.which("helm")
    return Path(found) if found else None


HELM = _helm()
HOW_TO_BUILD = "scripts/build-components.sh helm builds it from its Go module (`make components` does too)"


@pytest.fixture(scope="module")
def helm() -> Path:
    if HELM is None:
        if IN_CI:
            pytest.fail(f"no Helm: in CI the components build must have made it ({HOW_TO_BUILD})")
        pytest.skip(f"needs Helm {pinned_images().get('HELM_VERSION')}: {HOW_TO_BUILD}")
    return HELM


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def _template(helm: Path, *values: Path, sets: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    args = [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    result = _run(args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def default(helm: Path) -> list[dict[str, Any]]:
    return _template(helm)


@pytest.fixture(scope="module")
def all_on(helm: Path) -> list[dict[str, Any]]:
    return _template(helm, ALL_ON)


def _of(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _rules_by_source(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {d["metadata"]["annotations"]["obsbox.dev/source"]: d["spec"]["groups"]
            for d in _of(docs, "PrometheusRule")}


def _box_groups(relpath: str) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load((ROOT / relpath).read_text(encoding="utf-8"))["groups"]
    return groups


# --- generated from the box's files ----------------------------------------------------------------------------

def _synced_pairs() -> Iterator[tuple[Path, Path]]:
    for pattern, target in SYNCED.items():
        for source in sorted(ROOT.glob(pattern)):
            yield source, FILES / target / source.name
    yield DATASOURCES, FILES / "grafana" / "datasources.yaml"


def test_the_charts_files_are_the_boxs_files() -> None:
    """Byte for byte, and no file more or less: a change in alerts/, dashboards/, collector/ or backends/ that
    `make chart-files` has not carried into the chart fails here."""
    pairs = list(_synced_pairs())
    stale = [str(s.relative_to(ROOT)) for s, c in pairs if not c.is_file() or c.read_bytes() != s.read_bytes()]
    extra = sorted(str(p.relative_to(CHART)) for p in FILES.rglob("*")
                   if p.is_file() and p not in {c for _, c in pairs})
    links = [str(p) for p in CHART.rglob("*") if p.is_symlink()]
    assert not stale and not extra and not links, (
        f"the chart's copies differ from the box ({stale}), have files the box lacks ({extra}) or are symlinks "
        f"({links}): run `make chart-files`")
    assert len(pairs) >= 18  # 8 rule files, 1 Loki rule file, 7 dashboards, the collector, routes, datasources


def test_every_rule_file_renders_to_a_prometheusrule_with_the_boxs_groups(default: list[dict[str, Any]]) -> None:
    rendered = _rules_by_source(default)
    box = {f"alerts/prometheus/{p.name}" for p in (ROOT / "alerts" / "prometheus").glob("*.yml")}
    assert set(rendered) == box
    for source, groups in rendered.items():
        assert groups == _box_groups(source), source
    for rule in _of(default, "PrometheusRule"):
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_slo_objectives_from_values_are_the_overrides_the_box_writes_by_hand(all_on: list[dict[str, Any]]) -> None:
    """all-on.values.yaml sets for checkout what alerts/tests/fixtures/slo-overrides.yml writes: the rendered
    group is that fixture's, and every other group is still the box's."""
    rendered = _rules_by_source(all_on)
    fixture = _box_groups("alerts/tests/fixtures/slo-overrides.yml")
    assert rendered["alerts/prometheus/slo-objectives.yml"] == fixture
    for source, groups in rendered.items():
        if source != "alerts/prometheus/slo-objectives.yml":
            assert groups == _box_groups(source), source


def test_prometheusrule_labels_follow_the_values(helm: Path) -> None:
    docs = _template(helm, sets=("prometheusRules.labels.release=prom", "prometheusRules.labels.team=sre"))
    for rule in _of(docs, "PrometheusRule"):
        assert rule["metadata"]["labels"].items() >= {("release", "prom"), ("team", "sre")}


def test_every_dashboard_is_a_configmap_with_the_boxs_json_and_the_sidecar_label(
        default: list[dict[str, Any]]) -> None:
    maps = [m for m in _of(default, "ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]]
    rendered = {name: text for m in maps for name, text in m["data"].items()}
    box = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "dashboards" / "obsbox").glob("*.json")}
    assert set(rendered) == set(box)
    for name, text in rendered.items():
        assert text == box[name].rstrip("\n"), name
        assert json.loads(text) == json.loads(box[name])
    assert all(m["metadata"]["annotations"] == {"grafana_folder": "obsbox"} for m in maps)


def test_dashboard_label_and_folder_follow_the_values(helm: Path) -> None:
    docs = _template(helm, sets=("dashboards.label=my_dashboards", "dashboards.labelValue=yes",
                                 "dashboards.folderAnnotation="))
    maps = [m for m in _of(docs, "ConfigMap") if m["metadata"]["name"].startswith(f"{RELEASE}-dashboard-")]
    assert len(maps) == len(list((ROOT / "dashboards" / "obsbox").glob("*.json")))
    assert all(m["metadata"]["labels"]["my_dashboards"] == "yes" and "annotations" not in m["metadata"]
               for m in maps)


def test_loki_rules_are_the_boxs_in_a_configmap_for_the_ruler_sidecar(default: list[dict[str, Any]]) -> None:
    (rules,) = [m for m in _of(default, "ConfigMap") if m["metadata"]["name"] == f"{RELEASE}-loki-rules"]
    box = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "alerts" / "loki" / "fake").glob("*.yaml")}
    assert {k: v + "\n" for k, v in rules["data"].items()} == box
    assert rules["metadata"]["labels"]["loki_rule"] == "1"
    assert rules["metadata"]["annotations"] == {"k8s-sidecar-target-directory": "/rules/fake"}


def test_datasources_keep_the_boxs_uids_and_links_with_in_cluster_urls(all_on: list[dict[str, Any]]) -> None:
    (cm,) = [m for m in _of(all_on, "ConfigMap") if m["metadata"]["name"] == f"{RELEASE}-datasources"]
    assert cm["metadata"]["labels"]["grafana_datasource"] == "1"
    rendered = yaml.safe_load(cm["data"]["obsbox-datasources.yaml"])
    box = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["datasources"]
    assert [d["uid"] for d in rendered["datasources"]] == ["prometheus", "loki", "jaeger", "pyroscope", "alertmanager"]
    for ours, theirs in zip(rendered["datasources"], box["datasources"], strict=True):
        assert ours["url"] == values["urls"][ours["uid"]]
        strip = ("url", "isDefault")
        assert {k: v for k, v in ours.items() if k not in strip} == {k: v for k, v in theirs.items() if k not in strip}
    assert [d["uid"] for d in rendered["datasources"] if d.get("isDefault")] == ["prometheus"]


def test_datasources_by_default_are_off_and_then_only_those_a_kube_prometheus_stack_lacks(helm: Path) -> None:
    assert not [m for m in _template(helm) if m["metadata"]["name"] == f"{RELEASE}-datasources"]
    (cm,) = [m for m in _template(helm, sets=("datasources.enabled=true",))
             if m["metadata"]["name"] == f"{RELEASE}-datasources"]
    rendered = yaml.safe_load(cm["data"]["obsbox-datasources.yaml"])["datasources"]
    assert [d["uid"] for d in rendered] == ["loki", "jaeger"] and not any(d.get("isDefault") for d in rendered)


def test_the_collector_runs_the_boxs_pipeline_with_in_cluster_exporters(all_on: list[dict[str, Any]]) -> None:
    (collector,) = _of(all_on, "OpenTelemetryCollector")
    config = copy.deepcopy(collector["spec"]["config"])
    box = yaml.safe_load((ROOT / "collector" / "config.yaml").read_text(encoding="utf-8"))
    endpoints = {name: e.pop("endpoint") for name, e in config["exporters"].items()}
    expected = copy.deepcopy(box)
    for exporter in expected["exporters"].values():
        exporter.pop("endpoint")
    assert config == expected
    assert endpoints == {
        "otlp_grpc/jaeger": "jaeger-collector.monitoring:4317",
        "otlp_http/loki": "http://loki-gateway.monitoring/otlp",
        "otlp_http/prometheus": "http://kube-prometheus-stack-prometheus.monitoring:9090/api/v1/otlp",
    }
    # The image is the box's Collector release, the one .env pins.
    assert collector["spec"]["image"] == pinned_images()["OTELCOL_IMAGE"]


def test_the_rendered_collector_config_passes_the_real_collectors_validate(
        all_on: list[dict[str, Any]], tmp_path: Path) -> None:
    otelcol = _tool("otelcol-contrib")
    if otelcol is None:
        if IN_CI:
            pytest.fail("no otelcol-contrib: in CI the components build must have made it")
        pytest.skip("needs otelcol-contrib: scripts/build-components.sh collector builds it")
    (collector,) = _of(all_on, "OpenTelemetryCollector")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(collector["spec"]["config"]), encoding="utf-8")
    result = _run([str(otelcol), "validate", f"--config={config}"])
    assert result.returncode == 0, result.stderr
    # and it is not vacuous: an exporter the pipelines name but the config lacks is refused.
    broken = copy.deepcopy(collector["spec"]["config"])
    del broken["exporters"]["otlp_http/loki"]
    config.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert _run([str(otelcol), "validate", f"--config={config}"]).returncode != 0


def test_instrumentation_exports_to_this_releases_collector(all_on: list[dict[str, Any]]) -> None:
    (inst,) = _of(all_on, "Instrumentation")
    assert inst["spec"]["exporter"]["endpoint"] == f"http://{RELEASE}-collector.{NAMESPACE}:4318"


# --- alert routing ---------------------------------------------------------------------------------------------

def _matcher(text: str) -> dict[str, str]:
    match = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"(.*)"\s*', text)
    assert match, text
    return {"name": match[1], "matchType": match[2], "value": match[3]}


_ROUTE_KEYS = {"group_by": "groupBy", "group_wait": "groupWait", "group_interval": "groupInterval",
               "repeat_interval": "repeatInterval"}


def _route(box: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in box.items():
        if key == "matchers":
            out[key] = [_matcher(m) for m in value]
        elif key == "routes":
            out[key] = [_route(r) for r in value]
        else:
            out[_ROUTE_KEYS.get(key, key)] = value
    return out


def test_the_alertmanagerconfig_carries_the_boxs_routes_and_inhibitions(all_on: list[dict[str, Any]]) -> None:
    (amc,) = _of(all_on, "AlertmanagerConfig")
    box = yaml.safe_load((ROOT / "backends" / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8"))
    assert amc["spec"]["route"] == _route(box["route"])
    assert [r["name"] for r in amc["spec"]["receivers"]] == [r["name"] for r in box["receivers"]]
    assert amc["spec"]["inhibitRules"] == [
        {"sourceMatch": [_matcher(m) for m in rule["source_matchers"]],
         "targetMatch": [_matcher(m) for m in rule["target_matchers"]], "equal": rule["equal"]}
        for rule in box["inhibit_rules"]]
    assert amc["metadata"]["labels"]["alertmanagerConfig"] == "obsbox"


def test_notification_settings_come_from_secrets_only(all_on: list[dict[str, Any]]) -> None:
    (amc,) = _of(all_on, "AlertmanagerConfig")
    receivers = {r["name"]: r for r in amc["spec"]["receivers"]}
    assert receivers["team"]["webhookConfigs"] == [
        {"urlSecret": {"name": "obsbox-alerting", "key": "team-webhook-url"}, "sendResolved": True}]
    assert receivers["team"]["slackConfigs"][0]["apiURL"] == {"name": "obsbox-alerting", "key": "slack-api-url"}
    assert receivers["incident"]["emailConfigs"][0]["authPassword"] == {
        "name": "obsbox-alerting", "key": "smtp-password"}
    assert receivers["oncall"]["wechatConfigs"] == [{
        "apiSecret": {"name": "obsbox-alerting", "key": "wecom-api-secret"}, "corpID": "ww0123456789",
        "agentID": "1000002", "toParty": "2", "sendResolved": True}]
    assert set(receivers["blackhole"]) == {"name"} and set(receivers["escalation"]) == {"name"}
    text = json.dumps(amc)
    assert "://" not in text  # no URL of any integration is in the manifest


@pytest.mark.parametrize("clear", [
    "alertmanagerConfig.receivers.team.webhook.url=https://hooks.example.com/x",
    "alertmanagerConfig.receivers.team.slack.apiURL=https://hooks.example.com/x",
    "alertmanagerConfig.receivers.team.email.password=hunter2",
    "alertmanagerConfig.receivers.team.wechat.apiSecret=s3cr3t",
])
def test_a_secret_in_clear_in_the_values_is_refused(helm: Path, clear: str) -> None:
    result = _run([str(helm), "template", RELEASE, str(CHART), "--set", "alertmanagerConfig.enabled=true",
                   "--set", clear])
    assert result.returncode != 0 and "additional properties" in result.stderr.lower(), result.stderr


def test_a_route_key_the_chart_cannot_translate_is_an_error_not_a_silent_drop(helm: Path, tmp_path: Path) -> None:
    chart = tmp_path / "obsbox"
    shutil.copytree(CHART, chart)
    routes = chart / "files" / "alertmanager" / "alertmanager.yml"
    box = yaml.safe_load(routes.read_text(encoding="utf-8"))
    box["route"]["routes"][0]["match"] = {"team": "payments"}  # Alertmanager's deprecated form
    routes.write_text(yaml.safe_dump(box), encoding="utf-8")
    result = _run([str(helm), "template", RELEASE, str(chart), "--set", "alertmanagerConfig.enabled=true"])
    assert result.returncode != 0 and 'route key "match" has no AlertmanagerConfig twin' in result.stderr, (
        result.stderr)


def test_a_receiver_the_box_does_not_have_is_refused(helm: Path) -> None:
    result = _run([str(helm), "template", RELEASE, str(CHART), "--set", "alertmanagerConfig.enabled=true",
                   "--set", "alertmanagerConfig.receivers.pager.webhook.secret=s",
                   "--set", "alertmanagerConfig.receivers.pager.webhook.key=k"])
    assert result.returncode != 0 and "no receiver of that name" in result.stderr, result.stderr


# --- helm lint, the parts on and off, cluster scope ------------------------------------------------------------

@pytest.mark.parametrize("values", [(), (ALL_ON,)], ids=["default", "all-on"])
def test_helm_lint_passes(helm: Path, values: tuple[Path, ...]) -> None:
    args = [str(helm), "lint", str(CHART), "--strict"]
    for v in values:
        args += ["-f", str(v)]
    result = _run(args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_helm_is_the_pinned_build(helm: Path) -> None:
    result = _run([str(helm), "version", "--short"])
    assert result.stdout.startswith(f"v{pinned_images()['HELM_VERSION']}"), result.stdout


def test_by_default_only_the_content_is_installed(default: list[dict[str, Any]],
                                                  all_on: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in default} == {"PrometheusRule", "ConfigMap"}
    assert {d["kind"] for d in all_on} == {"PrometheusRule", "ConfigMap", "OpenTelemetryCollector",
                                           "Instrumentation", "AlertmanagerConfig", "ServiceMonitor", "PodMonitor"}


def test_every_resource_is_namespaced(all_on: list[dict[str, Any]]) -> None:
    """Nothing cluster-scoped (ClusterRole, CRD, Namespace, webhook...): a namespace admin can install it."""
    assert {d["kind"] for d in all_on} <= CORE_KINDS | PROMETHEUS_OPERATOR_KINDS | OTEL_OPERATOR_KINDS
    assert all(d["metadata"]["namespace"] == NAMESPACE for d in all_on)


# --- schemas ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_kinds_validate_against_the_kubernetes_openapi_schemas(
        default: list[dict[str, Any]], all_on: list[dict[str, Any]], version: str) -> None:
    core = [d for d in default + all_on if d["kind"] in CORE_KINDS]
    assert core
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)
    broken = copy.deepcopy(core[0])
    broken["metadata"]["lables"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def _crdcheck() -> Path:
    """The strict decoder of tests/deploy/crdcheck, built once per source into the components cache."""
    sources = [CRDCHECK / n for n in ("go.mod", "go.sum", "main.go")]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    binary = cache_dir() / "crdcheck" / digest / "crdcheck"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        if IN_CI:
            pytest.fail("no Go toolchain: CI builds tests/deploy/crdcheck with it")
        pytest.skip("needs Go >= 1.26 to build tests/deploy/crdcheck (the Prometheus Operator's API types)")
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(".crdcheck.tmp")
    result = subprocess.run([go, "build", "-trimpath", "-o", str(tmp), "."], cwd=CRDCHECK, capture_output=True,
                            text=True, timeout=900, check=False,
                            env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"})
    assert result.returncode == 0, result.stderr
    tmp.replace(binary)
    return binary


def _decode(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    lines = "".join(json.dumps(d) + "\n" for d in docs)
    return subprocess.run([str(_crdcheck())], input=lines, capture_output=True, text=True, timeout=60, check=False)


def test_prometheus_operator_kinds_decode_strictly_into_the_operators_go_types(
        default: list[dict[str, Any]], all_on: list[dict[str, Any]]) -> None:
    docs = [d for d in default + all_on if d["kind"] in PROMETHEUS_OPERATOR_KINDS]
    assert {d["kind"] for d in docs} == PROMETHEUS_OPERATOR_KINDS
    result = _decode(docs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("ok ") == len(docs)


def test_the_strict_decode_rejects_unknown_fields_at_any_depth_in_any_case_and_wrong_types(
        all_on: list[dict[str, Any]]) -> None:
    (amc,) = _of(all_on, "AlertmanagerConfig")
    case_only = copy.deepcopy(amc)
    case_only["metadata"]["name"] = "case-only"
    # encoding/json alone would take groupby for groupBy
    case_only["spec"]["route"]["groupby"] = case_only["spec"]["route"].pop("groupBy")
    in_a_sub_route = copy.deepcopy(amc)
    in_a_sub_route["metadata"]["name"] = "sub-route"
    in_a_sub_route["spec"]["route"]["routes"][1]["group_wait"] = "10s"  # the box's spelling, not the operator's
    rule = copy.deepcopy(_of(all_on, "PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["for"] = 5
    result = _decode([case_only, in_a_sub_route, rule, amc])
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("error AlertmanagerConfig case-only: field spec.route.groupby"), lines
    assert lines[1].startswith("error AlertmanagerConfig sub-route: spec.route.routes[1]"), lines
    assert "group_wait" in lines[1], lines
    assert lines[2].startswith("error PrometheusRule") and "Duration" in lines[2], lines
    assert lines[3] == f"ok AlertmanagerConfig {RELEASE}", lines


def test_opentelemetry_operator_kinds_validate_against_the_strict_schema(all_on: list[dict[str, Any]]) -> None:
    docs = [d for d in all_on if d["kind"] in OTEL_OPERATOR_KINDS]
    assert {d["kind"] for d in docs} == OTEL_OPERATOR_KINDS
    jsonschema.Draft7Validator.check_schema(OTEL_SCHEMA)
    for doc in docs:
        schema = {**OTEL_SCHEMA, "$ref": f"#/definitions/{doc['kind']}"}
        jsonschema.validate(doc, schema)
        broken = copy.deepcopy(doc)
        broken["spec"]["replica"] = 2
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


# --- the rendered rules in promtool ----------------------------------------------------------------------------

def _promtool() -> Path:
    promtool = _tool("promtool")
    out = _run([str(promtool), "--version"]).stdout if promtool else ""
    if promtool is None or not re.search(r"version 3\.", out):
        if IN_CI:
            pytest.fail(f"needs promtool 3.x (found {promtool}): CI builds the pinned Prometheus")
        pytest.skip(f"needs promtool 3.x (found {promtool}): scripts/build-components.sh prometheus builds it")
    return promtool


def _write_rendered_rules(docs: list[dict[str, Any]], into: Path) -> list[Path]:
    """The rendered PrometheusRules as rule files laid out like alerts/, with alerts/tests/ beside them."""
    (into / "alerts" / "prometheus").mkdir(parents=True)
    written = []
    for source, groups in _rules_by_source(docs).items():
        path = into / source
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
        written.append(path)
    shutil.copytree(ROOT / "alerts" / "tests", into / "alerts" / "tests")
    return written


def test_rendered_rules_pass_promtool_check_and_the_boxs_rule_unit_tests(
        default: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = _promtool()
    files = _write_rendered_rules(default, tmp_path)
    check = _run([str(promtool), "check", "rules", *map(str, files)])
    assert check.returncode == 0, check.stdout + check.stderr
    tests = sorted((tmp_path / "alerts" / "tests").glob("*.test.yml"))
    assert tests
    run = _run([str(promtool), "test", "rules", *[t.name for t in tests]], cwd=tmp_path / "alerts" / "tests")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_slo_override_unit_test_passes_on_the_overrides_rendered_from_values(
        all_on: list[dict[str, Any]], tmp_path: Path) -> None:
    """alerts/tests/slo-overrides.test.yml, run with the chart's rendered overrides in place of its fixture."""
    promtool = _promtool()
    _write_rendered_rules(all_on, tmp_path)
    tests = tmp_path / "alerts" / "tests"
    unit = yaml.safe_load((tests / "slo-overrides.test.yml").read_text(encoding="utf-8"))
    unit["rule_files"] = ["../prometheus/slo.rules.yml", "../prometheus/slo-objectives.yml"]
    (tests / "from-values.test.yml").write_text(yaml.safe_dump(unit, sort_keys=False), encoding="utf-8")
    run = _run([str(promtool), "test", "rules", "from-values.test.yml"], cwd=tests)
    assert run.returncode == 0, run.stdout + run.stderr


# --- what docs/kubernetes.md asks of kube-prometheus-stack ------------------------------------------------------

def _documented_kube_prometheus_stack_values() -> dict[str, Any]:
    text = (ROOT / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    match = re.search(r"```yaml\n\s*# values for kube-prometheus-stack\n(.*?)```", text, re.S)
    assert match, "docs/kubernetes.md lost its kube-prometheus-stack values block"
    values: dict[str, Any] = yaml.safe_load(match[1])
    return values


def test_the_documented_prometheus_and_alertmanager_specs_decode_into_the_operators_types() -> None:
    values = _documented_kube_prometheus_stack_values()
    meta = {"name": "kube-prometheus-stack", "namespace": NAMESPACE}
    docs = [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": meta,
         "spec": values["prometheus"]["prometheusSpec"]},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Alertmanager", "metadata": meta,
         "spec": values["alertmanager"]["alertmanagerSpec"]},
    ]
    result = _decode(docs)
    assert result.returncode == 0, result.stdout
    box = yaml.safe_load((ROOT / "backends" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    promoted = values["prometheus"]["prometheusSpec"]["otlp"]["promoteResourceAttributes"]
    assert promoted == box["otlp"]["promote_resource_attributes"]
    # the AlertmanagerConfig selector the docs give selects what the chart labels with all-on.values.yaml
    selector = values["alertmanager"]["alertmanagerSpec"]["alertmanagerConfigSelector"]["matchLabels"]
    assert selector == yaml.safe_load(ALL_ON.read_text(encoding="utf-8"))["alertmanagerConfig"]["labels"]
