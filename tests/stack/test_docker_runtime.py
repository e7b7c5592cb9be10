"""The docker runtime against a fake `docker` executable (no engine runs here): the commands it builds, what it
does with their output, and how each failure reaches the user."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from obsbox.cli import cli
from obsbox.stack import engine
from obsbox.stack.model import STATUS_JSON_SCHEMA
from obsbox.stack.native import NativeRuntime
from obsbox.stack.ports import free_port
from obsbox.stack.tree import stack_root

FAKE = Path(__file__).with_name("fake_docker.py")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the shipped tree whose published ports are free ones (the tests never touch 9090 & co)."""
    root = tmp_path / "tree"
    (root / "backends").mkdir(parents=True)
    shutil.copytree(stack_root() / "backends" / "alertmanager", root / "backends" / "alertmanager")
    shutil.copy(stack_root() / ".env", root / ".env")
    text = (stack_root() / "stack.yml").read_text()
    text = re.sub(r'"127\.0\.0\.1:(\d+):(\d+)"', lambda m: f'"127.0.0.1:{free_port()}:{m.group(2)}"', text)
    (root / "stack.yml").write_text(text)
    return root


@pytest.fixture
def docker_env(tmp_path: Path, tree: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_DOCKER_LOG", str(log))
    monkeypatch.setenv("OBSBOX_DOCKER_SDK", "0")
    monkeypatch.setenv("OBSBOX_STACK_DIR", str(tree))
    monkeypatch.setenv("OBSBOX_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("FAKE_DOCKER_MODE", raising=False)
    published = {name: int(port) for name, port in
                 re.findall(r'\n  (\w+):(?:(?!\n  \w+:).)*?"127\.0\.0\.1:(\d+):', (tree / "stack.yml").read_text(), re.S)}
    monkeypatch.setenv("FAKE_DOCKER_PORTS", json.dumps(published))
    return log


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def compose_prefix(tree: Path) -> list[str]:
    return ["compose", "-p", "obsbox", "-f", str(tree / "stack.yml"), "--env-file", str(tree / ".env")]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_up_runs_compose_up_wait_on_the_tree_with_a_generated_password(docker_env: Path, tree: Path,
                                                                        tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_MODE", "empty")  # nothing runs yet
    result = invoke("up", "--runtime", "docker")
    assert result.exit_code == 0, result.output
    argvs = [c["argv"] for c in calls(docker_env)]
    assert ["version", "--format", "{{.Server.Version}}"] in argvs
    assert ["compose", "version", "--short"] in argvs
    assert compose_prefix(tree) + ["ps", "--all", "--format", "json"] in argvs
    up = [c for c in calls(docker_env) if c["argv"][-3:] == ["up", "-d", "--wait"]]
    assert len(up) == 1 and up[0]["argv"] == compose_prefix(tree) + ["up", "-d", "--wait"]
    password_file = tmp_path / "state" / "grafana-admin-password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    password = password_file.read_text().strip()
    assert len(password) >= 20 and up[0]["password"] == password
    assert f"admin / {password}" in result.output
    assert "Pulling" in result.output  # compose's own progress is streamed
    assert re.search(r"prometheus +http://127\.0\.0\.1:\d+ +ready in", result.output)
    rendered = Path(up[0]["alertmanager_config"])
    assert rendered.parent == tmp_path / "state" / "docker" and "receivers" in rendered.read_text()
    # The password is printed once; the second run reuses it.
    again = invoke("up", "--runtime", "docker")
    assert again.exit_code == 0 and password not in again.output
    assert [c for c in calls(docker_env) if c["argv"][-3:] == ["up", "-d", "--wait"]][-1]["password"] == password


def test_samples_use_the_compose_profile(docker_env: Path, tree: Path) -> None:
    assert invoke("up", "--runtime", "docker", "--samples").exit_code == 0
    up = [c["argv"] for c in calls(docker_env) if "up" in c["argv"]]
    assert up == [compose_prefix(tree) + ["--profile", "samples", "up", "-d", "--wait"]]


def test_a_failing_compose_reports_command_exit_code_and_stderr(docker_env: Path, monkeypatch: pytest.MonkeyPatch,
                                                                ) -> None:
    monkeypatch.setenv("FAKE_DOCKER_MODE", "upfail")
    result = CliRunner().invoke(cli, ["up", "--runtime", "docker"])
    assert result.exit_code == 4
    assert "bin/docker compose -p obsbox -f " in result.output and " up -d --wait` failed" in result.output
    assert "failed with exit code 1" in result.output
    assert "port is already allocated" in result.output
    assert "hint: another process holds a port" in result.output


def test_without_the_compose_plugin(docker_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_MODE", "nocompose")
    result = CliRunner().invoke(cli, ["up", "--runtime", "docker"])
    assert result.exit_code == 5
    assert "compose plugin is missing" in result.output and "--runtime native" in result.output


def test_without_an_engine_docker_is_refused_and_auto_goes_native(docker_env: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_MODE", "noengine")
    result = CliRunner().invoke(cli, ["up", "--runtime", "docker"])
    assert result.exit_code == 5
    assert "no Docker engine answers" in result.output and "hint: start Docker" in result.output
    said: list[str] = []
    chosen = engine.choose("auto", progress=said.append)
    assert isinstance(chosen, NativeRuntime) and "Cannot connect to the Docker daemon" in (chosen.docker_reason or "")
    assert said and "using the native runtime" in said[0]
    assert not [c for c in calls(docker_env) if "up" in c["argv"]]


def test_a_taken_port_stops_up_before_compose_runs(docker_env: Path, tree: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DOCKER_MODE", "empty")  # the box is not running: every published port must be free
    text = (tree / "stack.yml").read_text()
    grafana_port = int(re.search(r'"127\.0\.0\.1:(\d+):3000"', text).group(1))  # type: ignore[union-attr]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", grafana_port))
        taken.listen()
        result = CliRunner().invoke(cli, ["up", "--runtime", "docker"])
    assert result.exit_code == 3
    assert f"port 127.0.0.1:{grafana_port} (grafana) is already in use" in result.output
    assert not [c for c in calls(docker_env) if "up" in c["argv"]]


def test_status_reads_compose_ps(docker_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert invoke("up", "--runtime", "docker").exit_code == 0
    monkeypatch.setenv("FAKE_DOCKER_MODE", "crashed")
    result = invoke("status", "--json")
    report = json.loads(result.output)
    jsonschema.validate(report, STATUS_JSON_SCHEMA)
    by_name = {c["name"]: c for c in report["components"]}
    assert by_name["prometheus"]["state"] == "healthy" and by_name["prometheus"]["version"] == "v3.14.0"
    assert by_name["prometheus"]["url"] == f"http://127.0.0.1:{json.loads(os.environ['FAKE_DOCKER_PORTS'])['prometheus']}"
    assert by_name["grafana"]["state"] == "exited" and by_name["grafana"]["exit_code"] == 1
    assert report["runtime"] == "docker" and report["alerts_error"]  # nothing answers on 9090 here
    assert "exited" in invoke("status").output


def test_down_and_purge(docker_env: Path, tree: Path) -> None:
    assert invoke("up", "--runtime", "docker").exit_code == 0
    assert invoke("down", "--purge").exit_code == 0
    assert compose_prefix(tree) + ["--profile", "samples", "down", "--remove-orphans", "--volumes"] in [
        c["argv"] for c in calls(docker_env)]
    assert "not running" in invoke("status").output


def test_logs_follow_one_component(docker_env: Path, tree: Path) -> None:
    assert invoke("up", "--runtime", "docker").exit_code == 0
    result = CliRunner().invoke(cli, ["logs", "prometheus", "-f", "-n", "200"])
    assert result.exit_code == 0
    assert compose_prefix(tree) + ["logs", "--tail", "200", "--follow", "prometheus"] in [
        c["argv"] for c in calls(docker_env)]


def test_the_collector_is_probed_from_the_host(docker_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No health check runs inside the collector's image; status asks its health_check endpoint instead."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"status":"Server available"}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    assert invoke("up", "--runtime", "docker").exit_code == 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FAKE_DOCKER_COLLECTOR_HEALTH_PORT", str(server.server_address[1]))
    try:
        collector = next(c for c in json.loads(invoke("status", "--json").output)["components"]
                         if c["name"] == "collector")
        assert collector["state"] == "healthy" and collector["url"] == "http://127.0.0.1:4318"
    finally:
        server.shutdown()
        server.server_close()
    collector = next(c for c in json.loads(invoke("status", "--json").output)["components"]
                     if c["name"] == "collector")
    assert collector["state"] == "running"  # up, but its health endpoint does not answer
