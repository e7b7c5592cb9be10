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
