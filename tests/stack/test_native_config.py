"""The native configs rendered from the shipped tree, checked with the real promtool and amtool."""

from __future__ import annotations

import fnmatch
import glob
import subprocess
from pathlib import Path

import pytest
import yaml

from obsbox.stack.binaries import find_tool as _tool
from obsbox.stack.compose import StackTree
from obsbox.stack.native import NativeRuntime
from obsbox.stack.native_config import dump, render_alertmanager, render_prometheus
from obsbox.stack.tree import stack_root

PORTS = {"prometheus": 19090, "alertmanager": 19093}


@pytest.fixture
def tree() -> StackTree:
    return StackTree.load(stack_root())


def test_container_paths_map_to_the_tree(tree: StackTree) -> None:
    assert tree.service_of("alertmanager")[0] == "alertmanager"  # type: ignore[index]
    assert tree.service_of("collector")[0] == "collector"  # type: ignore[index]
    assert tree.host_path("prometheus", "/etc/obsbox/alerts/x.yml") == tree.root / "alerts" / "x.yml"
    assert tree.container_port("prometheus") == 9090


def test_prometheus_2_config_is_local_and_loadable(tree: StackTree, tmp_path: Path) -> None:
    config, sd_file = render_prometheus(tree, ports=PORTS, version="2.42.0", state=tmp_path,
                                        scrape_interval="3s", evaluation_interval="3s")
    assert "otlp" not in config  # Prometheus 2.x rejects the block
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["prometheus"]["static_configs"][0]["targets"] == ["127.0.0.1:19090"]
    assert jobs["alertmanager"]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    for absent in ("collector", "loki", "pyroscope", "jaeger", "grafana"):  # not running natively: not scraped
        assert absent not in jobs
    assert config["global"]["scrape_interval"] == config["global"]["scrape_timeout"] == "3s"
    assert config["global"]["evaluation_interval"] == "3s"
    assert all(str(p).startswith(str(tree.root / "alerts")) for p in config["rule_files"])
    assert any(glob.glob(p) for p in config["rule_files"])
    assert sd_file.parent == tmp_path / "file_sd" and any(
        fnmatch.fnmatch(str(sd_file), f) for job in jobs.values()
        for sd in job.get("file_sd_configs", []) for f in sd["files"])
    promtool = _tool("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (scripts/install-system-deps.sh installs it)")
    out = subprocess.run([promtool, "check", "config", str(dump(config, tmp_path / "prometheus.yml"))],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheus_3_keeps_the_otlp_block(tree: StackTree, tmp_path: Path) -> None:
    config, _ = render_prometheus(tree, ports=PORTS, version="3.14.0", state=tmp_path)
    assert "service.name" in config["otlp"]["promote_resource_attributes"]


def test_flags_follow_the_binary_major_version(tree: StackTree, tmp_path: Path) -> None:
    runtime = NativeRuntime(tmp_path, tree)
    v2 = runtime._launch("prometheus", Path("/usr/bin/prometheus"), "2.42.0", PORTS).argv
    v3 = runtime._launch("prometheus", Path("/opt/prometheus"), "3.14.0", PORTS).argv
    assert "--web.enable-otlp-receiver" not in v2 and "--web.enable-otlp-receiver" in v3
    assert "--web.listen-address=127.0.0.1:19090" in v2
    am = runtime._launch("alertmanager", Path("/usr/bin/prometheus-alertmanager"), "0.25.0", PORTS).argv
    assert "--cluster.listen-address=" in am and "--web.listen-address=127.0.0.1:19093" in am


def test_alertmanager_config_is_valid_for_the_local_amtool(tree: StackTree, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSBOX_ALERT_WEBHOOK_URL", "http://127.0.0.1:9999/hook")
    config = render_alertmanager(tree, ports=PORTS)
    assert all(t.startswith(str(tree.root)) for t in config.get("templates", []))
    hooks = [w["url"] for r in config["receivers"] for w in r.get("webhook_configs", [])]
    assert "http://127.0.0.1:9999/hook" in hooks
    amtool = _tool("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (scripts/install-system-deps.sh installs it)")
    path = dump(config, tmp_path / "alertmanager.yml")
    out = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert yaml.safe_load(path.read_text()) == config
    assert path.stat().st_mode & 0o777 == 0o600, "the rendered config may hold notification secrets"


FULL = {"prometheus": 19090, "alertmanager": 19093, "loki": 3100, "pyroscope": 4040, "jaeger": 16686,
        "collector": 4318, "grafana": 3000}


def test_loki_jaeger_collector_and_grafana_are_rendered_for_local_processes(
        tree: StackTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Loki, Jaeger, collector or Grafana binary exists here: what is checked is what they would be given."""
    monkeypatch.setenv("OBSBOX_STATE_DIR", str(tmp_path))
    runtime = NativeRuntime(tmp_path, tree)
    loki = runtime._launch("loki", Path("/opt/loki/loki"), "3.7.6", FULL).argv
    loki_config = yaml.safe_load(Path(loki[1].split("=", 1)[1]).read_text())
    assert loki_config["ruler"]["alertmanager_url"] == "http://127.0.0.1:19093"
    assert loki_config["common"]["path_prefix"].startswith(str(tmp_path))
    collector = runtime._launch("collector", Path("/opt/otelcol-contrib"), "0.159.0", FULL).argv
    text = Path(collector[1].split("=", 1)[1]).read_text()
    assert "http://127.0.0.1:19090/api/v1/otlp" in text and "0.0.0.0" not in text
    assert "127.0.0.1:14317" in text  # traces to Jaeger, moved off the collector's own 4317
    jaeger = runtime._launch("jaeger", Path("/opt/jaeger"), "2.20.0", FULL).argv
    text = Path(jaeger[1].split("=", 1)[1]).read_text()
    assert "http://127.0.0.1:19090" in text and "127.0.0.1:14317" in text and "0.0.0.0" not in text
    grafana = runtime._launch("grafana", Path("/usr/sbin/grafana"), "13.2.0", FULL).argv
    assert grafana[1] == "server" and grafana[2].startswith("--homepath=")
    datasources = (tmp_path / "native" / "grafana" / "provisioning" / "datasources" / "obsbox.yaml").read_text()
    assert "http://127.0.0.1:19090" in datasources and "http://127.0.0.1:19093" in datasources
    assert "http://prometheus:" not in datasources
    env = runtime._launch("grafana", Path("/usr/sbin/grafana"), "13.2.0", FULL).env
    assert env["GF_SERVER_HTTP_ADDR"] == "127.0.0.1" and env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == (tmp_path / "grafana-admin-password").read_text().strip()
    assert env["GF_PATHS_PROVISIONING"] == str(tmp_path / "native" / "grafana" / "provisioning")


def test_prometheus_scrapes_the_native_components_where_they_listen(tree: StackTree, tmp_path: Path) -> None:
    config, _ = render_prometheus(tree, ports=FULL, version="3.14.0", state=tmp_path)
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
               if job.get("static_configs")}
    assert targets["collector"] == ["127.0.0.1:8888"]
    assert targets["jaeger"] == ["127.0.0.1:8889"]  # Jaeger's self-metrics moved off the collector's 8888
    assert targets["loki"] == ["127.0.0.1:3100"] and targets["grafana"] == ["127.0.0.1:3000"]
    assert targets["pyroscope"] == ["127.0.0.1:4040"]


def test_binaries_found_on_path_are_planned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            tree: StackTree) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("prometheus", "prometheus-alertmanager", "loki", "grafana-server"):
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\necho 'version 1.2.3'\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("OBSBOX_CACHE_DIR", str(tmp_path / "cache"))
    plan = NativeRuntime(tmp_path, tree).plan(lambda _m: None)
    assert set(plan.run) == {"prometheus", "alertmanager", "loki", "grafana"}
    assert set(plan.unavailable) == {"jaeger", "collector", "pyroscope"}
    assert "otelcol-contrib" in plan.unavailable["collector"] and "to get it" in plan.unavailable["collector"]
    # like Loki: not built here, so the hint names its releases and Docker
    assert "`pyroscope` binary" in plan.unavailable["pyroscope"]
    assert "github.com/grafana/pyroscope/releases" in plan.unavailable["pyroscope"]
    assert "Docker" in plan.unavailable["pyroscope"]


def test_a_pyroscope_binary_on_path_is_planned_and_started_after_loki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                      tree: StackTree) -> None:
    from obsbox.stack.native import BACKEND_ORDER

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("prometheus", "pyroscope"):
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\necho 'version 1.2.3'\n")
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("OBSBOX_CACHE_DIR", str(tmp_path / "cache"))
    plan = NativeRuntime(tmp_path, tree).plan(lambda _m: None)
    assert plan.run["pyroscope"] == bin_dir / "pyroscope"
    assert "pyroscope" not in plan.unavailable
    # before Grafana, which provisions it as a datasource
    assert BACKEND_ORDER.index("pyroscope") < BACKEND_ORDER.index("grafana")
