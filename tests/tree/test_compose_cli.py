"""stack.yml as the real Docker Compose reads it (`docker compose -f stack.yml --env-file .env config`): with no
profile, with each profile and with what `obsbox up` adds (a user's OBSBOX_STACK_DIR copy, the rendered Alertmanager
config with notification settings). Each loads without error or warning, and the normalised project keeps what the
box promises. Copies of the tree broken on purpose show the same checks fail with Compose's own message."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from obsbox.cli import cli as obsbox_cli
from obsbox.samples import SERVICES
from obsbox.stack.check import check_compose, compose_promises
from obsbox.stack.compose import StackTree, load_project
from obsbox.stack.docker import DockerRuntime
from obsbox.stack.tree import pinned_images, stack_root
from tests.stack._compose_cli import docker_with_compose_plugin, real_compose

ROOT = stack_root()
CORE = {"collector", "prometheus", "alertmanager", "loki", "pyroscope", "jaeger", "grafana"}
CORE_PORTS = {3000, 9090, 9093, 3100, 4040, 16686, 4317, 4318, 13133}
IMAGE_PINS = {"collector": "OTELCOL_IMAGE", "prometheus": "PROMETHEUS_IMAGE", "alertmanager": "ALERTMANAGER_IMAGE",
              "loki": "LOKI_IMAGE", "pyroscope": "PYROSCOPE_IMAGE", "jaeger": "JAEGER_IMAGE",
              "grafana": "GRAFANA_IMAGE"}
# Who waits for whom, and for what: the start order docs/stack.md describes.
DEPENDS_ON = {
    "collector": {"prometheus": "service_healthy", "jaeger": "service_healthy", "loki": "service_started"},
    "prometheus": {"alertmanager": "service_healthy"},
    "loki": {"alertmanager": "service_healthy"},
    "grafana": {"collector": "service_started", "prometheus": "service_healthy", "alertmanager": "service_healthy",
                "loki": "service_healthy", "jaeger": "service_healthy", "pyroscope": "service_healthy"},
    **{name: {"collector": "service_started"} for name in SERVICES},
}
DATA_VOLUMES = {"prometheus": "/prometheus", "alertmanager": "/alertmanager", "loki": "/loki",
                "pyroscope": "/data", "grafana": "/var/lib/grafana"}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without obsbox's and Compose's own variables, plus what `obsbox up` sets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSBOX_", "COMPOSE_"))}
    return {**env, "OBSBOX_GRAFANA_PASSWORD": "s3cret-for-the-test", **extra}


def failures(root: Path) -> list[str]:
    """What `obsbox check` reports of the compose file at `root` with the real Compose: [] when it passes."""
    results = check_compose(StackTree.load(root), env=clean_env())
    assert results and all("docker compose" in r.name for r in results), [r.name for r in results]
    return [f"{r.name}: {r.detail}" for r in results if r.outcome != "ok"]


def loaded(profiles: tuple[str, ...] = ()) -> dict[str, Any]:
    result = load_project(real_compose(), ROOT, profiles=profiles, env=clean_env())
    assert result.warnings == [], result.warnings
    return result.project


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A copy of the tree's compose file and pins, to break on purpose."""
    root = tmp_path / "tree"
    root.mkdir()
    for name in ("stack.yml", ".env"):
        shutil.copy(ROOT / name, root / name)
    return root


def test_the_shipped_tree_loads_cleanly_with_no_profile_and_each_profile() -> None:
    cli = real_compose()
    out = subprocess.run([*cli, "-f", str(ROOT / "stack.yml"), "--env-file", str(ROOT / ".env"), "config",
                          "--profiles"], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.split() == ["samples"]
    assert failures(ROOT) == []
    assert set(loaded()["services"]) == CORE
    assert set(loaded(("samples",))["services"]) == CORE | set(SERVICES)


def test_compose_normalises_the_box_to_what_it_promises() -> None:
    project = loaded(("samples",))
    services = project["services"]
    assert compose_promises(project, pinned_images()) == []
    published = {int(p["published"]) for name in CORE for p in services[name].get("ports", [])}
    assert published == CORE_PORTS
    assert {p["host_ip"] for s in services.values() for p in s["ports"]} == {"127.0.0.1"}
    for name, var in IMAGE_PINS.items():
        image = services[name]["image"]
        assert image == pinned_images()[var] and not image.endswith((":latest", ":"))
    assert {s["build"]["args"]["PYTHON_IMAGE"] for n, s in services.items() if n in SERVICES} == {
        pinned_images()["PYTHON_IMAGE"]}
    assert {n for n, s in services.items() if "healthcheck" not in s} == {"collector"}  # FROM scratch
    conditions = {n: {d: c["condition"] for d, c in s.get("depends_on", {}).items()} for n, s in services.items()}
    assert {n: c for n, c in conditions.items() if c} == DEPENDS_ON
    assert project["volumes"] == {f"{n}-data": {"name": f"obsbox_{n}-data"} for n in DATA_VOLUMES}
    for name, target in DATA_VOLUMES.items():
        mounts = [(v["type"], v["source"]) for v in services[name]["volumes"] if v["target"] == target]
        assert mounts == [("volume", f"{name}-data")], name


def test_what_obsbox_up_hands_compose_loads_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command and environment of the docker runtime itself, run through the real docker CLI and its compose
    plugin: a user's copy of the tree (OBSBOX_STACK_DIR), the samples profile, the generated Grafana password and
    the Alertmanager config rendered with notification settings, mounted through OBSBOX_ALERTMANAGER_CONFIG."""
    docker, env = docker_with_compose_plugin(tmp_path)
    copy = tmp_path / "my-tree"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "node_modules", "*.egg-info",
                                                              "tests", "docs", "benchmarks"))
    for key in [k for k in os.environ if k.startswith("OBSBOX_")]:
        monkeypatch.delenv(key)
    for key, value in {**env, "OBSBOX_STACK_DIR": str(copy),
                       "OBSBOX_ALERT_WEBHOOK_URL": "https://hooks.example.org/obsbox"}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "state").mkdir()
    runtime = DockerRuntime(tmp_path / "state", docker=docker)
    out = runtime.run(*runtime._sample_profile_args(True), "config", "--format", "json", timeout=60)
    project = json.loads(out)
    assert compose_promises(project, pinned_images(copy)) == []
    services = project["services"]
    assert set(services) == CORE | set(SERVICES)
    binds = [Path(v["source"]) for s in services.values() for v in s.get("volumes", []) if v["type"] == "bind"]
    rendered = tmp_path / "state" / "docker" / "alertmanager.yml"
    assert rendered in binds and "https://hooks.example.org/obsbox" in rendered.read_text()
    assert all(p == rendered or p.is_relative_to(copy) for p in binds), binds
    password = (tmp_path / "state" / "grafana-admin-password").read_text().strip()
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == password


def test_without_the_grafana_password_compose_stops_with_the_files_message(broken: Path) -> None:
    env = clean_env()
    del env["OBSBOX_GRAFANA_PASSWORD"]
    out = subprocess.run([*real_compose(), "-f", str(broken / "stack.yml"), "--env-file", str(broken / ".env"),
                          "config", "-q"], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode != 0
    assert "required variable OBSBOX_GRAFANA_PASSWORD is missing a value: run `obsbox up`" in out.stderr


def test_a_misspelt_variable_in_dot_env_fails_with_composes_message(broken: Path) -> None:
    env_file = broken / ".env"
    env_file.write_text(env_file.read_text().replace("PROMETHEUS_IMAGE=", "PROMETHEUS_IMAGES="))
    found = "\n".join(failures(broken))
    assert 'The "PROMETHEUS_IMAGE" variable is not set' in found
    assert 'service "prometheus" has neither an image nor a build context specified' in found


def test_a_misspelt_variable_compose_only_warns_about_still_fails(broken: Path) -> None:
    """Compose loads the file, with a blank sample base image and a warning: a warning is a failure here."""
    env_file = broken / ".env"
    env_file.write_text(env_file.read_text().replace("PYTHON_IMAGE=", "PYTHON_IMAG="))
    found = failures(broken)
    assert len(found) == 2 and all('Compose warning: The "PYTHON_IMAGE" variable is not set' in f for f in found)


def test_a_profile_that_drops_a_needed_service_fails_with_composes_message(broken: Path) -> None:
    stack = broken / "stack.yml"
    text = stack.read_text()
    stack.write_text(text.replace("\n  jaeger:\n    <<: *defaults\n", "\n  jaeger:\n    <<: *defaults\n"
                                  "    profiles: [traces]\n", 1))
    found = failures(broken)
    assert len(found) == 2, found  # no profile, and --profile samples; --profile traces alone loads
    # Compose names the first dependant it meets: the collector or Grafana, both need Jaeger.
    assert all(re.search(r'service "(collector|grafana)" depends on undefined service "jaeger"', f) for f in found)


@pytest.mark.parametrize("spec, where", [("0.0.0.0:9090:9090", "0.0.0.0"), ("9090:9090", "every interface")])
def test_a_port_published_beyond_loopback_fails(broken: Path, spec: str, where: str) -> None:
    stack = broken / "stack.yml"
    stack.write_text(stack.read_text().replace('"127.0.0.1:9090:9090"', f'"{spec}"'))
    found = failures(broken)
    assert len(found) == 2
    assert all(f"prometheus: port 9090 is published on {where}, not 127.0.0.1" in f for f in found)


def test_service_healthy_on_a_service_without_a_health_check_fails(broken: Path) -> None:
    """Compose itself accepts this and only fails at `up`; the promises catch it before."""
    stack = broken / "stack.yml"
    text = stack.read_text()
    start = text.index("\n  jaeger:\n")
    check, end = text.index("    healthcheck:", start), text.index("    deploy:", start)
    stack.write_text(text[:check] + text[end:])
    found = failures(broken)
    assert len(found) == 2 and all("collector: waits for jaeger to be healthy" in f for f in found)


def test_obsbox_check_says_it_used_compose_and_falls_back_without_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cli = real_compose()
    result = CliRunner().invoke(obsbox_cli, ["check", "--tree", str(ROOT)], catch_exceptions=False)
    version = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True).stdout.strip()
    assert f"ok   compose file (docker compose {version} config)" in result.output
    assert f"ok   compose file --profile samples (docker compose {version} config)" in result.output
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("OBSBOX_CACHE_DIR", str(tmp_path / "empty-cache"))
    results = check_compose(StackTree.load(ROOT))
    assert [(r.name, r.outcome) for r in results] == [("compose file (as written)", "ok")]
    assert "no Docker Compose v2+ found" in results[0].detail and "build-components.sh compose" in results[0].detail
