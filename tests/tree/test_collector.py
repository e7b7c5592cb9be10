"""collector/config.yaml: every pipeline is made of defined, current components; every listener binds 0.0.0.0;
each exporter points at the service and port where its backend really listens."""

from __future__ import annotations

import re
from typing import Any

import yaml

from obsbox.stack.tree import stack_root

ROOT = stack_root()
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
# Component types of otelcol-contrib 0.159.0 this config may use (tests/tree/test_facts.py says where each is from).
CURRENT = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch"},
    "exporters": {"otlp_grpc", "otlp_http", "debug"},
    "connectors": {"span_metrics", "service_graph"},
    "extensions": {"health_check"},
}
# Deprecated aliases (they log warnings) and removed components.
OUTDATED = {
    "exporters": {"otlp", "otlphttp", "logging", "loki"},
    "connectors": {"spanmetrics", "servicegraph"},
}


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "collector/config.yaml").read_text())
    return data


def kind(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_every_pipeline_component_is_defined() -> None:
    cfg = config()
    pipelines = cfg["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for name, pipeline in pipelines.items():
        for receiver in pipeline["receivers"]:
            assert receiver in cfg["receivers"] or receiver in cfg["connectors"], (name, receiver)
        for processor in pipeline["processors"]:
            assert processor in cfg["processors"], (name, processor)
        for exporter in pipeline["exporters"]:
            assert exporter in cfg["exporters"] or exporter in cfg["connectors"], (name, exporter)
    for extension in cfg["service"]["extensions"]:
        assert extension in cfg["extensions"]


def test_every_defined_component_is_used() -> None:
    cfg = config()
    pipelines = cfg["service"]["pipelines"].values()
    used = {c for p in pipelines for key in ("receivers", "processors", "exporters") for c in p[key]}
    used |= set(cfg["service"]["extensions"])
    for section in SECTIONS:
        for component in cfg.get(section, {}):
            assert component in used, f"{section}.{component} is defined but unused"


def test_component_types_are_current() -> None:
    cfg = config()
    for section in SECTIONS:
        for component in cfg.get(section, {}):
            assert kind(component) in CURRENT[section], f"{section}.{component}"
            assert kind(component) not in OUTDATED.get(section, set()), f"{section}.{component} is outdated"
    assert not CURRENT["exporters"] & OUTDATED["exporters"]
    assert not CURRENT["connectors"] & OUTDATED["connectors"]


def test_memory_limiter_first_then_batch_in_every_pipeline() -> None:
    for name, pipeline in config()["service"]["pipelines"].items():
        assert pipeline["processors"] == ["memory_limiter", "batch"], name
    limiter = config()["processors"]["memory_limiter"]
    assert limiter["check_interval"] == "1s"
    assert 0 < limiter["spike_limit_percentage"] < limiter["limit_percentage"] <= 90


def test_signals_flow_to_their_backends() -> None:
    pipelines = config()["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == ["otlp"]
    assert pipelines["traces"]["exporters"] == ["otlp_grpc/jaeger", "span_metrics", "service_graph"]
    assert pipelines["metrics"]["receivers"] == ["otlp", "span_metrics", "service_graph"]
    assert pipelines["metrics"]["exporters"] == ["otlp_http/prometheus"]
    assert pipelines["logs"]["exporters"] == ["otlp_http/loki"]


def _endpoints(node: Any, path: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "endpoint" and isinstance(value, str):
                found.append((path, value))
            else:
                found.extend(_endpoints(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_endpoints(value, f"{path}[{index}]"))
    return found


def test_every_listener_binds_all_interfaces() -> None:
    cfg = config()
    listeners = _endpoints(cfg["receivers"]) + _endpoints(cfg["extensions"])
    assert sorted(value for _, value in listeners) == ["0.0.0.0:13133", "0.0.0.0:4317", "0.0.0.0:4318"]
    reader = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert reader == {"host": "0.0.0.0", "port": 8888}


def test_exporters_point_at_the_right_service_and_port() -> None:
    exporters = config()["exporters"]
    jaeger = yaml.safe_load((ROOT / "backends/jaeger/config.yaml").read_text())
    loki = yaml.safe_load((ROOT / "backends/loki/config.yaml").read_text())
    compose = yaml.safe_load((ROOT / "stack.yml").read_text())

    assert exporters["otlp_grpc/jaeger"]["endpoint"] == "jaeger:4317"
    assert exporters["otlp_grpc/jaeger"]["tls"] == {"insecure": True}
    assert jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")

    assert exporters["otlp_http/loki"]["endpoint"] == "http://loki:3100/otlp"
    assert loki["server"]["http_listen_port"] == 3100

    assert exporters["otlp_http/prometheus"]["endpoint"] == "http://prometheus:9090/api/v1/otlp"
    assert "--web.listen-address=0.0.0.0:9090" in compose["services"]["prometheus"]["command"]
    assert "--web.enable-otlp-receiver" in compose["services"]["prometheus"]["command"]

    for exporter in exporters.values():
        host = re.sub(r"^https?://", "", exporter["endpoint"]).split(":")[0]
        assert host in compose["services"], host


def test_otlp_http_exporters_append_the_signal_path() -> None:
    """The otlp_http exporter posts to <endpoint>/v1/<signal>: these must be the backends' OTLP paths."""
    exporters = config()["exporters"]
    assert exporters["otlp_http/loki"]["endpoint"] + "/v1/logs" == "http://loki:3100/otlp/v1/logs"
    assert (
        exporters["otlp_http/prometheus"]["endpoint"] + "/v1/metrics"
        == "http://prometheus:9090/api/v1/otlp/v1/metrics"
    )


def prometheus_name(name: str, unit: str, *, monotonic_sum: bool = False, histogram_series: str = "") -> str:
    """OTLP metric name -> Prometheus name under Prometheus 3's default UnderscoreEscapingWithSuffixes."""
    units = {"ms": "milliseconds", "s": "seconds", "1": ""}
    base = name.replace(".", "_")
    suffix = units[unit]
    if suffix and not base.endswith(f"_{suffix}"):
        base = f"{base}_{suffix}"
    if monotonic_sum:
        base += "_total"
    return base + (f"_{histogram_series}" if histogram_series else "")


def test_span_metrics_reach_prometheus_under_the_names_jaeger_and_dashboards_query() -> None:
    span_metrics = config()["connectors"]["span_metrics"]
    namespace, unit = span_metrics["namespace"], span_metrics["histogram"]["unit"]
    assert prometheus_name(f"{namespace}.calls", "1", monotonic_sum=True) == "traces_span_metrics_calls_total"
    assert (
        prometheus_name(f"{namespace}.duration", unit, histogram_series="bucket")
        == "traces_span_metrics_duration_milliseconds_bucket"
    )
    assert span_metrics["aggregation_temporality"] == "AGGREGATION_TEMPORALITY_CUMULATIVE"


def test_span_metrics_carry_exemplars_and_expire() -> None:
    span_metrics = config()["connectors"]["span_metrics"]
    assert span_metrics["exemplars"] == {"enabled": True}
    assert span_metrics["metrics_expiration"] == "5m"
    buckets = span_metrics["histogram"]["explicit"]["buckets"]
    assert all(re.fullmatch(r"\d+(ms|s)", b) for b in buckets)
    seconds = [int(b[:-2]) / 1000 if b.endswith("ms") else float(b[:-1]) for b in buckets]
    assert seconds == sorted(seconds) and len(set(seconds)) == len(seconds)


def test_service_graph_is_bounded() -> None:
    graph = config()["connectors"]["service_graph"]
    assert graph["store"]["max_items"] > 0 and graph["store"]["ttl"] == "10s"


def test_native_rendering_points_exporters_at_localhost_and_keeps_names() -> None:
    from obsbox.stack.render import localize_hostnames

    text = localize_hostnames((ROOT / "collector/config.yaml").read_text())
    rendered = yaml.safe_load(text)
    endpoints = {name: e["endpoint"] for name, e in rendered["exporters"].items()}
    assert endpoints == {
        "otlp_grpc/jaeger": "127.0.0.1:14317",  # NATIVE_JAEGER_PORTS: the collector keeps 4317
        "otlp_http/loki": "http://127.0.0.1:3100/otlp",
        "otlp_http/prometheus": "http://127.0.0.1:9090/api/v1/otlp",
    }
    assert set(rendered["exporters"]) == set(config()["exporters"])
    assert rendered["service"] == config()["service"]


def test_every_exporter_queues_and_retries_so_a_backend_restart_loses_nothing() -> None:
    """A backend restarting for a few minutes must not lose data (shown for Jaeger in tests/stack/test_box_e2e.py):
    each exporter queues in memory and retries with backoff for five minutes, within memory_limiter's bounds."""
    for name, exporter in config()["exporters"].items():
        if kind(name) == "debug":
            continue
        assert exporter["sending_queue"]["enabled"] is True and exporter["sending_queue"]["queue_size"] >= 100, name
        retry = exporter["retry_on_failure"]
        assert retry["enabled"] is True and retry["max_elapsed_time"] == "300s", name
