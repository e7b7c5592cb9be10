"""Upstream facts the stack tree relies on, each with where it was read, pinned against the tree.

Nothing here can start the Collector, Loki, Jaeger or Grafana, so each fact the configs depend on is written down
once below (with its source in the upstream project) and the tree is checked against it. Bumping an image in
.env means re-reading these sources: a changed fact must change here first, and the tree with it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsbox.stack.compose import StackTree
from obsbox.stack.native_config import dump, render_prometheus
from obsbox.stack.tree import pinned_images, stack_root

ROOT = stack_root()


def load(relative: str) -> Any:
    return yaml.safe_load((ROOT / relative).read_text())


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = load("stack.yml")["services"]
    return services[name]


# --- Versions: the ones the facts below were read for -------------------------------------------------------------

FACT_VERSIONS = {
    "OTELCOL_IMAGE": "otel/opentelemetry-collector-contrib:0.159.0",  # tags have no "v"; built and run in tests/stack/test_box_e2e.py
    "PROMETHEUS_IMAGE": "prom/prometheus:v3.14.0",
    "ALERTMANAGER_IMAGE": "prom/alertmanager:v0.34.0",
    "LOKI_IMAGE": "grafana/loki:3.7.6",
    "JAEGER_IMAGE": "jaegertracing/jaeger:2.12.0",  # v2 (Go module v1.75.0); built and run in test_box_e2e.py
    "GRAFANA_IMAGE": "grafana/grafana:13.2.0",
    "PYROSCOPE_IMAGE": "grafana/pyroscope:2.0.2",  # its facts: tests/tree/test_pyroscope.py
}


def test_pinned_images_are_the_versions_these_facts_were_checked_for() -> None:
    pins = pinned_images()
    for key, image in FACT_VERSIONS.items():
        assert pins[key] == image, f"{key} changed: re-check the facts in this file for {pins[key]}"


# --- OpenTelemetry Collector contrib 0.159.0 ----------------------------------------------------------------------

# exporter/otlpexporter + otlphttpexporter: types renamed otlp -> otlp_grpc and otlphttp -> otlp_http (0.144.0);
# connector/spanmetricsconnector/metadata.yaml: `type: span_metrics`, `deprecated_type: spanmetrics`;
# connector/servicegraphconnector: the built 0.159.0 binary lists `service_graph` (`otelcol-contrib components`)
# and logs '"servicegraph" alias is deprecated; use "service_graph" instead' for the old name; the real binary
# checks all of these in tests/tree/test_collector_build.py and tests/stack/test_box_e2e.py.
COLLECTOR_TYPES = {"otlp_grpc", "otlp_http", "span_metrics", "service_graph", "otlp", "memory_limiter", "batch",
                   "health_check"}
# connector/spanmetricsconnector/config.go and connector/servicegraphconnector/config.go (mapstructure tags).
SPAN_METRICS_KEYS = {
    "dimensions", "calls_dimensions", "exclude_dimensions", "dimensions_cache_size", "resource_metrics_cache_size",
    "resource_metrics_key_attributes", "aggregation_temporality", "histogram", "metrics_flush_interval",
    "metrics_expiration", "metric_timestamp_cache_size", "namespace", "exemplars", "events",
    "include_instrumentation_scope", "aggregation_cardinality_limit",
}
SPAN_METRICS_HISTOGRAM_KEYS = {"disable", "unit", "exponential", "explicit", "dimensions"}
SERVICE_GRAPH_KEYS = {
    "latency_histogram_buckets", "dimensions", "store", "cache_loop", "store_expiration_loop",
    "virtual_node_peer_attributes", "virtual_node_extra_label", "metrics_flush_interval",
    "database_name_attributes",
}


def test_collector_uses_only_component_types_of_its_release() -> None:
    cfg = load("collector/config.yaml")
    used = {component.split("/")[0] for section in ("receivers", "processors", "exporters", "connectors",
                                                    "extensions") for component in cfg[section]}
    assert used <= COLLECTOR_TYPES, used - COLLECTOR_TYPES


def test_connector_settings_are_keys_the_connectors_define() -> None:
    connectors = load("collector/config.yaml")["connectors"]
    assert set(connectors["span_metrics"]) <= SPAN_METRICS_KEYS
    assert set(connectors["span_metrics"]["histogram"]) <= SPAN_METRICS_HISTOGRAM_KEYS
    assert set(connectors["span_metrics"]["exemplars"]) <= {"enabled", "max_per_data_point"}
    assert set(connectors["service_graph"]) <= SERVICE_GRAPH_KEYS
    assert set(connectors["service_graph"]["store"]) <= {"max_items", "ttl"}


def test_collector_listeners_are_explicit_because_the_default_is_localhost() -> None:
    """Since v0.104.0 receivers, health_check and self-metrics default to localhost: unreachable in a container."""
    cfg = load("collector/config.yaml")
    assert cfg["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    for protocol in cfg["receivers"]["otlp"]["protocols"].values():
        assert protocol["endpoint"].startswith("0.0.0.0:")


def test_collector_image_has_no_shell_so_no_health_check() -> None:
    """otel/opentelemetry-collector-contrib is built FROM scratch: no shell, curl or wget to run a probe."""
    assert "healthcheck" not in service("collector")


def test_collector_reads_its_config_from_the_default_path() -> None:
    """The image's default command is `--config /etc/otelcol-contrib/config.yaml`."""
    assert "./collector/config.yaml:/etc/otelcol-contrib/config.yaml:ro" in service("collector")["volumes"]


# --- Prometheus --------------------------------------------------------------------------------------------------

# Prometheus 3 flags (docs/command-line/prometheus.md): the OTLP receiver at /api/v1/otlp/v1/metrics needs
# --web.enable-otlp-receiver; exemplars need --enable-feature=exemplar-storage.
PROMETHEUS_FLAGS = {"--web.enable-otlp-receiver", "--enable-feature=exemplar-storage"}


def test_prometheus_runs_with_the_otlp_receiver_and_exemplar_storage() -> None:
    assert set(service("prometheus")["command"]) >= PROMETHEUS_FLAGS


def _debian_promtool_2() -> bool:
    found = shutil.which("promtool")
    out = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout if found else ""
    return "version 2." in out


@pytest.mark.skipif(not _debian_promtool_2(), reason="needs Debian's promtool 2.x: scripts/install-system-deps.sh")
def test_prometheus_2_rejects_the_otlp_block_that_3_needs(tmp_path: Path) -> None:
    """Debian's Prometheus 2.42 fails on `otlp:` (a 3.x key): why the native renderer drops it for a 2.x binary."""
    as_is = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(ROOT / "backends/prometheus/prometheus.yml")],
        capture_output=True, text=True, timeout=60,
    )
    assert as_is.returncode != 0 and "field otlp not found" in as_is.stdout + as_is.stderr
    config, _ = render_prometheus(StackTree.load(ROOT), ports={"prometheus": 9090}, version="2.42.0", state=tmp_path)
    rendered = dump(config, tmp_path / "prometheus.yml")
    ok = subprocess.run(["promtool", "check", "config", "--syntax-only", str(rendered)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_prometheus_and_alertmanager_images_have_busybox_wget() -> None:
    """prom/prometheus and prom/alertmanager are built on quay.io/prometheus/busybox: wget is there."""
    for name in ("prometheus", "alertmanager"):
        assert service(name)["healthcheck"]["test"][:2] == ["CMD", "wget"]


# --- Loki 3.7 ----------------------------------------------------------------------------------------------------


def test_loki_checks_its_own_health_with_the_health_flag() -> None:
    """The image is distroless since 3.6 (grafana/loki#20149: no shell, no wget). grafana/loki#20313 added
    `loki -health` (cmd/loki/health.go: GETs -health.url, default http://localhost:3100/ready, exit 0 on 200),
    backported to 3.6 (#20590) and in 3.7; the image's binary is /usr/bin/loki."""
    test = service("loki")["healthcheck"]["test"]
    assert test[:3] == ["CMD", "/usr/bin/loki", "-health"]
    url = re.fullmatch(r"-+health\.url[=:]?(.*)", test[3])  # the flag pattern of cmd/loki/health.go
    assert url is not None and url[1] == "http://127.0.0.1:3100/ready"


def test_loki_otlp_and_ruler_facts() -> None:
    """Loki 3 takes OTLP logs at POST /otlp/v1/logs, needs tsdb + v13 for it, and reads the rules of tenant
    `fake` (auth off) from <rules_directory>/fake/."""
    exporter = load("collector/config.yaml")["exporters"]["otlp_http/loki"]["endpoint"]
    assert exporter + "/v1/logs" == "http://loki:3100/otlp/v1/logs"
    cfg = load("backends/loki/config.yaml")
    assert cfg["auth_enabled"] is False
    assert (ROOT / "alerts/loki/fake").is_dir()


# --- Jaeger v2 2.20 ----------------------------------------------------------------------------------------------


def test_jaeger_image_is_alpine_with_wget_and_healthcheckv2_serves_status() -> None:
    """cmd/jaeger/Dockerfile builds FROM the base image of scripts/build/docker/base/Dockerfile (alpine):
    busybox wget exists. The healthcheckv2 extension (use_v2) answers GET /status on its HTTP endpoint."""
    assert service("jaeger")["healthcheck"]["test"] == [
        "CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:13133/status",
    ]


def test_jaeger_spm_reads_the_span_metric_names_of_the_collector() -> None:
    """With normalize_calls / normalize_duration Jaeger queries traces_span_metrics_calls_total and
    traces_span_metrics_duration_milliseconds_bucket (namespace traces.span.metrics, unit ms)."""
    span_metrics = load("collector/config.yaml")["connectors"]["span_metrics"]
    assert span_metrics["namespace"] == "traces.span.metrics" and span_metrics["histogram"]["unit"] == "ms"
    prometheus = load("backends/jaeger/config.yaml")["extensions"]["jaeger_storage"]["metric_backends"]
    assert all(b["prometheus"]["normalize_calls"] and b["prometheus"]["normalize_duration"]
               for b in prometheus.values())


def test_jaeger_is_started_with_its_config_file() -> None:
    assert service("jaeger")["command"] == ["--config=/etc/jaeger/config.yml"]


# --- Grafana 13 --------------------------------------------------------------------------------------------------


def test_grafana_image_has_curl() -> None:
    """grafana/grafana's Dockerfile installs curl (`apk add ... curl` on Alpine, `apt-get install ... curl` on
    Ubuntu); /api/health answers 200 when the database is reachable."""
    assert service("grafana")["healthcheck"]["test"][:2] == ["CMD", "curl"]


def test_grafana_provisioning_paths_and_env() -> None:
    """Provisioning is read from /etc/grafana/provisioning/{datasources,dashboards,alerting}; environment
    variables GF_<SECTION>_<KEY> override grafana.ini ([security] admin_password, [auth.anonymous] enabled and
    org_role, [dashboards] default_home_dashboard_path)."""
    volumes = service("grafana")["volumes"]
    for kind in ("datasources", "dashboards", "alerting"):
        assert any(v.endswith(f":/etc/grafana/provisioning/{kind}:ro") for v in volumes)
    env = service("grafana")["environment"]
    for key in ("GF_SECURITY_ADMIN_PASSWORD", "GF_AUTH_ANONYMOUS_ENABLED", "GF_AUTH_ANONYMOUS_ORG_ROLE",
                "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"):
        assert key in env


# --- Compose -----------------------------------------------------------------------------------------------------


def test_compose_reads_dot_env_next_to_stack_yml() -> None:
    """docker compose loads `.env` from the project directory, which is the directory of the first -f file:
    so .env sits beside stack.yml, and both ship together in the wheel."""
    assert (ROOT / ".env").is_file() and (ROOT / "stack.yml").is_file()
    for name in ("collector", "prometheus", "alertmanager", "loki", "pyroscope", "jaeger", "grafana"):
        variable = re.fullmatch(r"\$\{(\w+)\}", service(name)["image"])
        assert variable is not None and variable[1] in pinned_images()
