"""backends/jaeger/config.yaml: Jaeger v2 with bounded in-memory storage, OTLP receivers reachable from the
collector, its own health check and metrics, and the Monitor tab reading span metrics from Prometheus."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from obsbox.stack.tree import stack_root

ROOT = stack_root()


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "backends/jaeger/config.yaml").read_text())
    return data


def test_extensions_and_pipeline() -> None:
    service = config()["service"]
    assert service["extensions"] == ["jaeger_storage", "jaeger_query", "healthcheckv2"]
    assert service["pipelines"] == {
        "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}
    }
    for name in service["extensions"]:
        assert name in config()["extensions"]


def test_traces_are_stored_in_bounded_memory() -> None:
    cfg = config()
    backends = cfg["extensions"]["jaeger_storage"]["backends"]
    store = cfg["exporters"]["jaeger_storage_exporter"]["trace_storage"]
    assert cfg["extensions"]["jaeger_query"]["storage"]["traces"] == store
    assert list(backends) == [store]
    assert 1000 <= backends[store]["memory"]["max_traces"] <= 100_000


def test_monitor_tab_reads_span_metrics_from_prometheus() -> None:
    cfg = config()
    metrics_store = cfg["extensions"]["jaeger_query"]["storage"]["metrics"]
    prometheus = cfg["extensions"]["jaeger_storage"]["metric_backends"][metrics_store]["prometheus"]
    assert prometheus == {"endpoint": "http://prometheus:9090", "normalize_calls": True, "normalize_duration": True}
    compose = yaml.safe_load((ROOT / "stack.yml").read_text())
    assert "--web.listen-address=0.0.0.0:9090" in compose["services"]["prometheus"]["command"]
    # The collector feeds what Jaeger queries (see test_collector: the names in Prometheus).
    collector = yaml.safe_load((ROOT / "collector/config.yaml").read_text())
    assert "span_metrics" in collector["service"]["pipelines"]["traces"]["exporters"]


def test_every_listener_binds_all_interfaces() -> None:
    cfg = config()
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols == {"grpc": {"endpoint": "0.0.0.0:4317"}, "http": {"endpoint": "0.0.0.0:4318"}}
    assert cfg["extensions"]["healthcheckv2"] == {"use_v2": True, "http": {"endpoint": "0.0.0.0:13133"}}
    query = cfg["extensions"]["jaeger_query"]
    assert query["http"]["endpoint"] == "0.0.0.0:16686" and query["grpc"]["endpoint"] == "0.0.0.0:16685"
    reader = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert reader == {"host": "0.0.0.0", "port": 8888}


def test_ui_and_health_match_stack_yml() -> None:
    jaeger = yaml.safe_load((ROOT / "stack.yml").read_text())["services"]["jaeger"]
    assert jaeger["ports"] == ["127.0.0.1:16686:16686"]
    assert "http://127.0.0.1:13133/status" in jaeger["healthcheck"]["test"]
    assert jaeger["deploy"]["resources"]["limits"]["memory"] == "1G"


def test_native_jaeger_moves_off_the_collectors_ports(tmp_path: Path) -> None:
    """As local processes, Jaeger and the collector share one host: Jaeger takes NATIVE_JAEGER_PORTS, and the
    collector's exporter and Prometheus's scrape job follow it there."""
    from obsbox.stack.compose import StackTree
    from obsbox.stack.native_config import render_prometheus
    from obsbox.stack.render import NATIVE_JAEGER_PORTS, render_collector_config, render_jaeger_config

    jaeger = yaml.safe_load(render_jaeger_config((ROOT / "backends/jaeger/config.yaml").read_text()))
    collector_text = render_collector_config((ROOT / "collector/config.yaml").read_text())
    collector = yaml.safe_load(collector_text)
    assert "0.0.0.0" not in collector_text

    jaeger_listeners = {
        jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        jaeger["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        jaeger["extensions"]["healthcheckv2"]["http"]["endpoint"],
        jaeger["extensions"]["jaeger_query"]["http"]["endpoint"],
        jaeger["extensions"]["jaeger_query"]["grpc"]["endpoint"],
    }
    reader = jaeger["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    jaeger_listeners.add(f"{reader['host']}:{reader['port']}")
    collector_listeners = {
        collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"],
        collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"],
        collector["extensions"]["health_check"]["endpoint"],
    }
    creader = collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    collector_listeners.add(f"{creader['host']}:{creader['port']}")
    assert all(listener.startswith("127.0.0.1:") for listener in jaeger_listeners | collector_listeners)
    assert not jaeger_listeners & collector_listeners
    assert f"127.0.0.1:{NATIVE_JAEGER_PORTS[4317]}" in jaeger_listeners
    assert collector["exporters"]["otlp_grpc/jaeger"]["endpoint"] == f"127.0.0.1:{NATIVE_JAEGER_PORTS[4317]}"
    prometheus, _ = render_prometheus(StackTree.load(ROOT), ports={"prometheus": 9090, "jaeger": 16686},
                                      version="3.14.0", state=tmp_path)
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "jaeger")
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{reader['port']}"]
    spm = jaeger["extensions"]["jaeger_storage"]["metric_backends"]
    assert [b["prometheus"]["endpoint"] for b in spm.values()] == ["http://127.0.0.1:9090"]
