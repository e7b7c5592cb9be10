"""backends/loki/config.yaml: a single-binary Loki 3 that takes OTLP logs (tsdb + schema v13), deletes old logs,
and evaluates the LogQL rules of alerts/loki/ into Alertmanager."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import yaml

from obsbox.stack.tree import stack_root

ROOT = stack_root()


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "backends/loki/config.yaml").read_text())
    return data


def test_single_tenant_listening_on_all_interfaces() -> None:
    cfg = config()
    assert cfg["auth_enabled"] is False
    assert cfg["server"]["http_listen_address"] == "0.0.0.0" and cfg["server"]["http_listen_port"] == 3100
    assert cfg["server"]["grpc_listen_address"] == "0.0.0.0"
    assert cfg["common"]["replication_factor"] == 1
    assert cfg["common"]["ring"]["kvstore"]["store"] == "inmemory"


def test_schema_is_tsdb_v13_on_the_filesystem() -> None:
    configs = config()["schema_config"]["configs"]
    assert len(configs) == 1
    schema = configs[0]
    assert (schema["store"], schema["schema"], schema["object_store"]) == ("tsdb", "v13", "filesystem")
    assert schema["index"]["period"] == "24h"
    start = schema["from"]
    start = start if isinstance(start, dt.date) else dt.date.fromisoformat(start)
    assert start <= dt.date.today()


def test_structured_metadata_is_on_for_otlp() -> None:
    assert config()["limits_config"]["allow_structured_metadata"] is True


def test_data_lives_in_the_named_volume_and_is_deleted_after_the_retention() -> None:
    cfg = config()
    assert cfg["common"]["path_prefix"] == "/loki"
    assert cfg["common"]["storage"]["filesystem"]["chunks_directory"].startswith("/loki/")
    assert cfg["compactor"]["working_directory"].startswith("/loki/")
    assert cfg["ruler"]["rule_path"].startswith("/loki/")
    compactor = cfg["compactor"]
    assert compactor["retention_enabled"] is True
    assert compactor["delete_request_store"] == "filesystem"  # Loki 3 requires it with retention
    hours = int(re.fullmatch(r"(\d+)h", cfg["limits_config"]["retention_period"])[1])  # type: ignore[index]
    assert 24 <= hours <= 31 * 24
    volumes = yaml.safe_load((ROOT / "stack.yml").read_text())["services"]["loki"]["volumes"]
    assert "loki-data:/loki" in volumes


def test_ruler_sends_to_alertmanager_and_reads_alerts_loki() -> None:
    cfg = config()
    assert cfg["ruler"]["alertmanager_url"] == "http://alertmanager:9093"
    assert cfg["ruler"]["enable_api"] is True
    rules_directory = cfg["common"]["storage"]["filesystem"]["rules_directory"]
    volumes = yaml.safe_load((ROOT / "stack.yml").read_text())["services"]["loki"]["volumes"]
    assert f"./alerts/loki:{rules_directory}:ro" in volumes


def test_rule_files_sit_in_the_fake_tenant_directory_in_prometheus_format() -> None:
    """With auth off the tenant is "fake": Loki reads <rules_directory>/fake/*.yaml."""
    files = sorted(Path(ROOT / "alerts/loki/fake").glob("*.y*ml"))
    assert files, "alerts/loki/fake/ holds no Loki rule file"
    stray = [p for p in (ROOT / "alerts/loki").iterdir() if p.is_file() and p.suffix in (".yml", ".yaml")]
    assert not stray, f"rule files outside a tenant directory are ignored by Loki: {stray}"
    for path in files:
        groups = yaml.safe_load(path.read_text())["groups"]
        for group in groups:
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule), rule
                assert "{" in rule["expr"], f"{path.name}: a LogQL expression needs a stream selector"


def test_loki_is_not_phoning_home() -> None:
    assert config()["analytics"]["reporting_enabled"] is False


def test_native_loki_keeps_its_data_and_rules_in_local_directories(tmp_path: Path) -> None:
    from obsbox.stack.render import render_loki_config

    data, rules = tmp_path / "loki", ROOT / "alerts/loki"
    cfg = yaml.safe_load(render_loki_config((ROOT / "backends/loki/config.yaml").read_text(), data_dir=data,
                                            rules_dir=rules))
    assert cfg["server"]["http_listen_address"] == cfg["server"]["grpc_listen_address"] == "127.0.0.1"
    assert cfg["common"]["path_prefix"] == str(data)
    for path in (cfg["common"]["storage"]["filesystem"]["chunks_directory"], cfg["compactor"]["working_directory"],
                 cfg["ruler"]["rule_path"]):
        assert Path(path).is_relative_to(data), path
    assert cfg["common"]["storage"]["filesystem"]["rules_directory"] == str(rules)
    assert (rules / "fake").is_dir()
    assert cfg["ruler"]["alertmanager_url"] == "http://127.0.0.1:9093"
    assert cfg["schema_config"] == config()["schema_config"]
    # what the container's Loki is told stays: Grafana's address (the same on the host) and the OTLP mapping
    assert cfg["ruler"]["external_url"] == config()["ruler"]["external_url"] == "http://127.0.0.1:3000"
    assert cfg["limits_config"] == config()["limits_config"]


# --- OTLP attributes: index labels, structured metadata, dropped -------------------------------------------------
#
# Loki 3.7 (pkg/loghttp/push/otlplabels/config.go; pkg/loghttp/push/otlp_config.go before the move):
# - limits_config.otlp_config.resource_attributes = {ignore_defaults, attributes_config: [{action, attributes |
#   regex}]}; action is index_label, structured_metadata or drop (index_label only for resource attributes);
#   exactly one of attributes / regex; the regex is a Prometheus relabel.Regexp, i.e. anchored at both ends.
# - Unless ignore_defaults is true, a rule {action: index_label, attributes: <distributor.otlp_config.
#   default_resource_attributes_as_index_labels>} is PREPENDED to attributes_config (ApplyGlobalOTLPConfig).
# - actionForAttribute walks the rules in order, the first rule whose regex or attribute list matches decides;
#   no match means structured_metadata.
LOKI_DEFAULT_INDEX_LABELS = [
    "service.name", "service.namespace", "service.instance.id", "deployment.environment",
    "deployment.environment.name", "cloud.region", "cloud.availability_zone", "k8s.cluster.name",
    "k8s.namespace.name", "k8s.pod.name", "k8s.container.name", "container.name", "k8s.replicaset.name",
    "k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name", "k8s.cronjob.name", "k8s.job.name",
]
ACTIONS = {"index_label", "structured_metadata", "drop"}


def loki_resource_rules(otlp_config: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule list Loki evaluates, validated the way Loki's UnmarshalYAML does."""
    resource = otlp_config.get("resource_attributes", {})
    rules: list[dict[str, Any]] = list(resource.get("attributes_config", []))
    for rule in rules:
        assert rule.get("action", "structured_metadata") in ACTIONS, rule
        assert ("attributes" in rule) != ("regex" in rule), f"exactly one of attributes / regex: {rule}"
        assert set(rule) <= {"action", "attributes", "regex"}, rule
    if not resource.get("ignore_defaults", False):
        rules.insert(0, {"action": "index_label", "attributes": LOKI_DEFAULT_INDEX_LABELS})
    return rules


def loki_action(rules: list[dict[str, Any]], attribute: str) -> str:
    for rule in rules:
        if "regex" in rule and re.fullmatch(rule["regex"], attribute, flags=re.DOTALL):
            return str(rule.get("action", "structured_metadata"))
        if attribute in rule.get("attributes", []):
            return str(rule.get("action", "structured_metadata"))
    return "structured_metadata"


def obsbox_resource(**arguments: Any) -> dict[str, Any]:
    from obsbox.instrumentation.settings import resolve
    from obsbox.instrumentation.setup import build_resource

    return build_resource(resolve(arguments, environ={}))


def test_the_model_of_lokis_rules_reproduces_what_a_real_loki_showed() -> None:
    """With Loki's defaults (no otlp_config), a real Loki 3.7.6 made service_name AND service_instance_id index
    labels and everything else structured metadata (/work/shared/STACK-FACTS.md): the model says the same."""
    resource = obsbox_resource(service_name="orders")
    rules = loki_resource_rules({})
    labels = {name for name in resource if loki_action(rules, name) == "index_label"}
    assert labels == {"service.name", "service.instance.id"}
    assert all(loki_action(rules, name) == "structured_metadata" for name in resource if name not in labels)


def test_the_instance_id_is_structured_metadata_not_a_stream() -> None:
    rules = loki_resource_rules(config()["limits_config"]["otlp_config"])
    resource = obsbox_resource(service_name="orders", environment="prod")
    actions = {name: loki_action(rules, name) for name in resource}
    assert {name for name, action in actions.items() if action == "index_label"} == {
        "service.name", "deployment.environment.name"}
    assert actions["service.instance.id"] == "structured_metadata"  # `| service_instance_id="..."` still works
    # the same holds for ids that change with every pod or rollout
    assert loki_action(rules, "k8s.pod.name") == loki_action(rules, "k8s.replicaset.name") == "structured_metadata"
    # the stable identities Loki indexes by default stay index labels
    stable = set(LOKI_DEFAULT_INDEX_LABELS) - {"service.instance.id", "k8s.pod.name", "k8s.replicaset.name"}
    assert {name for name in stable if loki_action(rules, name) == "index_label"} == stable


def test_process_and_sdk_facts_are_dropped_and_what_people_filter_on_is_kept() -> None:
    rules = loki_resource_rules(config()["limits_config"]["otlp_config"])
    resource = obsbox_resource(service_name="orders", service_version="1.2.3",
                               resource_attributes={"team": "payments"})
    kept = {name for name in resource if loki_action(rules, name) == "structured_metadata"}
    dropped = {name for name in resource if loki_action(rules, name) == "drop"}
    assert kept == {"service.instance.id", "service.version", "host.name", "team"}
    assert dropped == {name for name in resource if name.startswith(("process.", "telemetry.sdk.", "os."))} | {
        "host.arch"}
    assert "process.pid" in dropped and "process.executable.path" in dropped
    # attributes of other SDKs in the same families go too (process.command_args can carry secrets)
    for name in ("process.command_args", "process.command_line", "telemetry.distro.name", "os.description"):
        assert loki_action(rules, name) == "drop", name


def test_the_otlp_index_labels_fit_lokis_label_limit() -> None:
    """limits_config.max_label_names_per_series defaults to 15 in Loki 3: a stream cannot carry more."""
    rules = loki_resource_rules(config()["limits_config"]["otlp_config"])
    assert sum(len(r["attributes"]) for r in rules if r.get("action") == "index_label") <= 15


def test_ruler_links_point_at_grafana_and_its_loki_datasource() -> None:
    """pkg/ruler/base/ruler.go: GeneratorURL = ruler.external_url + "/explore?left=..." (grafanaLinkForExpression,
    with datasource {type: loki, uid: ruler.datasource_uid} when set); rules.ManagerOptions.ExternalURL is the same
    URL, so templates read it as $externalURL. Grafana is published on 127.0.0.1:3000."""
    ruler = config()["ruler"]
    assert ruler["external_url"] == "http://127.0.0.1:3000"
    assert "127.0.0.1:3000:3000" in " ".join(yaml.safe_load((ROOT / "stack.yml").read_text())["services"]["grafana"]
                                             ["ports"])
    assert ruler["datasource_uid"] == "loki"
    datasources = yaml.safe_load((ROOT / "backends/grafana/provisioning/datasources/obsbox.yaml").read_text())
    assert {"uid": "loki", "type": "loki"}.items() <= next(
        d for d in datasources["datasources"] if d["uid"] == "loki").items()
