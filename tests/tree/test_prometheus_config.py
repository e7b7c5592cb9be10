"""backends/prometheus/prometheus.yml: what it scrapes, where it sends alerts, which rules it loads — checked with
the real promtool and Prometheus of the pinned version (built by scripts/build-components.sh) after rendering it
with the native runtime's own renderer (obsbox.stack.native_config.render_prometheus)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import yaml

from obsbox.stack.binaries import find_tool as _tool
from obsbox.stack.components import COMPONENTS
from obsbox.stack.compose import StackTree
from obsbox.stack.native_config import dump, render_prometheus
from obsbox.stack.tree import stack_root
from tests._processes import free_port, stop

ROOT = stack_root()
SOURCE = (ROOT / "backends/prometheus/prometheus.yml").read_text()
STACK_JOBS = {
    "prometheus": "localhost:9090",
    "alertmanager": "alertmanager:9093",
    "collector": "collector:8888",
    "loki": "loki:3100",
    "pyroscope": "pyroscope:4040",
    "jaeger": "jaeger:8888",
    "grafana": "grafana:3000",
}

PROMTOOL, PROMETHEUS = _tool("promtool"), _tool("prometheus")
PINNED = str(COMPONENTS["prometheus"].version)
# Every component running, on its default port: what the box looks like natively.
ALL_PORTS = {"prometheus": 9090, "alertmanager": 9093, "collector": 4318, "loki": 3100, "pyroscope": 4040,
             "jaeger": 16686, "grafana": 3000}

needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/build-components.sh builds it (or Debian's prometheus)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing: scripts/build-components.sh builds it (or Debian's prometheus)"
)


def config() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(SOURCE)
    return data


def native(tmp_path: Path, *, ports: dict[str, int] | None = None, version: str = PINNED,
           evaluation_interval: str | None = None) -> Path:
    """The config the native runtime writes for these components and ports (file discovery in tmp/file_sd)."""
    config, _ = render_prometheus(StackTree.load(ROOT), ports=ALL_PORTS if ports is None else ports,
                                  version=version, state=tmp_path, evaluation_interval=evaluation_interval)
    return dump(config, tmp_path / "prometheus.yml")


def test_scrapes_every_component_of_the_stack() -> None:
    jobs = {job["job_name"]: job for job in config()["scrape_configs"]}
    for name, target in STACK_JOBS.items():
        assert jobs[name]["static_configs"] == [{"targets": [target]}], name


def test_stack_job_ports_are_where_the_components_listen() -> None:
    collector = yaml.safe_load((ROOT / "collector/config.yaml").read_text())
    reader = collector["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    jaeger = yaml.safe_load((ROOT / "backends/jaeger/config.yaml").read_text())
    jreader = jaeger["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    loki = yaml.safe_load((ROOT / "backends/loki/config.yaml").read_text())
    assert STACK_JOBS["collector"].endswith(f":{reader['port']}")
    assert STACK_JOBS["jaeger"].endswith(f":{jreader['port']}")
    assert STACK_JOBS["loki"].endswith(f":{loki['server']['http_listen_port']}")
    # Pyroscope serves /metrics on its HTTP port (server.register_instrumentation, default true: its reference
    # configuration cmd/pyroscope/pyroscope.yaml)
    pyroscope = yaml.safe_load((ROOT / "backends/pyroscope/config.yaml").read_text())
    assert "register_instrumentation" not in pyroscope["server"]
    assert STACK_JOBS["pyroscope"].endswith(f":{pyroscope['server']['http_listen_port']}")


def test_alerts_go_to_alertmanager() -> None:
    assert config()["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]


def test_rule_files_are_the_prometheus_rules_of_alerts_dir() -> None:
    patterns = config()["rule_files"]
    assert patterns == ["/etc/obsbox/alerts/prometheus/*.yml", "/etc/obsbox/alerts/prometheus/*.yaml"]
    local = sorted(p for pattern in ("*.yml", "*.yaml") for p in (ROOT / "alerts/prometheus").glob(pattern))
    assert local, "alerts/prometheus/ holds no rule file"
    for path in local:
        assert "groups" in yaml.safe_load(path.read_text()), path


def test_pull_job_reads_the_targets_directory() -> None:
    pull = next(job for job in config()["scrape_configs"] if job["job_name"] == "pull")
    assert pull["honor_labels"] is True
    files = pull["file_sd_configs"][0]["files"]
    assert files == ["/etc/obsbox/targets/*.json", "/etc/obsbox/targets/*.yml", "/etc/obsbox/targets/*.yaml"]


def test_otlp_resource_attributes_become_labels() -> None:
    assert config()["otlp"]["promote_resource_attributes"] == [
        "service.name",
        "service.namespace",
        "service.instance.id",
        "deployment.environment.name",
    ]


def test_evaluation_interval_fits_the_error_rate_alert() -> None:
    seconds = int(re.fullmatch(r"(\d+)s", config()["global"]["evaluation_interval"])[1])  # type: ignore[index]
    assert seconds <= 15


def test_render_for_prometheus_3_keeps_the_otlp_block_and_2_drops_it(tmp_path: Path) -> None:
    assert yaml.safe_load(native(tmp_path).read_text())["otlp"] == config()["otlp"]
    assert "otlp" not in yaml.safe_load(native(tmp_path, version="2.42.0").read_text())


def test_render_for_native_rewrites_hosts_paths_and_intervals(tmp_path: Path) -> None:
    without_grafana = {k: v for k, v in ALL_PORTS.items() if k != "grafana"}
    rendered = yaml.safe_load(native(tmp_path, ports=without_grafana, evaluation_interval="5s").read_text())
    assert rendered["global"]["evaluation_interval"] == "5s"
    assert rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert rendered["rule_files"][0] == f"{ROOT / 'alerts'}/prometheus/*.yml"
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    assert "grafana" not in jobs  # a component that does not run is not scraped
    assert jobs["collector"]["static_configs"][0]["targets"] == ["127.0.0.1:8888"]
    assert jobs["pull"]["file_sd_configs"][0]["files"][0] == f"{tmp_path / 'file_sd'}/*.json"
    assert "jaeger" in jobs and jobs["jaeger"]["job_name"] == "jaeger"  # job names are not hostnames


@needs_promtool
def test_promtool_check_config_with_every_rule_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(PROMTOOL), "check", "config", str(native(tmp_path))], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = re.search(r"SUCCESS: (\d+) rule files found", output)
    expected = len(list((ROOT / "alerts/prometheus").glob("*.y*ml")))
    assert found is not None and int(found[1]) == expected, output
    assert output.count(" rules found") == expected  # each rule file was parsed, not just listed


@needs_promtool
def test_promtool_rejects_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a scrape job without a name is an error."""
    path = native(tmp_path)
    broken = yaml.safe_load(path.read_text())
    del broken["scrape_configs"][0]["job_name"]
    path.write_text(yaml.safe_dump(broken))
    result = subprocess.run([str(PROMTOOL), "check", "config", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0


class _Metrics(BaseHTTPRequestHandler):
    body = (
        b"# TYPE http_server_active_requests gauge\n"
        b'http_server_active_requests{service_name="billing",http_request_method="GET"} 3\n'
    )

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def pull_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _readme_example() -> list[dict[str, Any]]:
    readme = (ROOT / "backends/prometheus/targets/README.md").read_text()
    block = re.search(r"```json\n(.*?)```", readme, re.S)
    assert block is not None
    example: list[dict[str, Any]] = json.loads(block[1])
    return example


@pytest.mark.stack
@needs_prometheus
def test_real_prometheus_loads_rules_and_scrapes_a_documented_targets_file(
    tmp_path: Path, pull_endpoint: str
) -> None:
    """The pinned Prometheus runs the rendered config: every rule group loads, and a targets file written in the
    format of backends/prometheus/targets/README.md is discovered and scraped with the endpoint's own labels."""
    path = native(tmp_path, ports={"prometheus": 9090})
    group = _readme_example()
    group[0]["targets"] = [pull_endpoint]
    (tmp_path / "file_sd" / "billing.json").write_text(json.dumps(group))
    port = free_port()
    text = path.read_text().replace("127.0.0.1:9090", f"127.0.0.1:{port}")
    text = text.replace("scrape_interval: 15s", "scrape_interval: 1s").replace("scrape_timeout: 10s", "scrape_timeout: 1s")
    path.write_text(text)
    process = subprocess.Popen(
        [
            str(PROMETHEUS),
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        series: list[Any] = []
        while time.monotonic() < deadline and not series:
            time.sleep(0.5)
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                query = 'http_server_active_requests{job="pull"}'
                series = _get(f"{base}/api/v1/query?query={urllib.request.quote(query)}")["data"]["result"]
            except OSError:
                continue
        assert series, "the pull target was not scraped"
        assert series[0]["metric"]["service_name"] == "billing"
        assert series[0]["metric"]["instance"] == pull_endpoint
        groups = _get(f"{base}/api/v1/rules")["data"]["groups"]
        files = {Path(g["file"]).name for g in groups}
        # Prometheus 3 lists no group without rules (slo-objectives.yml ships with none: it is for overrides).
        expected = {p.name for p in (ROOT / "alerts/prometheus").glob("*.y*ml")
                    if any(g["rules"] for g in yaml.safe_load(p.read_text())["groups"])}
        assert files == expected
        assert all(rule["health"] != "err" for g in groups for rule in g["rules"])
    finally:
        stop(process)
