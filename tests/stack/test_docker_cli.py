"""The docker runtime's own commands against the real docker CLI and the real Compose plugin, with no engine.

Every `docker compose …` command `obsbox up | status | logs | down | down --purge` issues is recorded through the
fake docker (tests/stack/fake_docker.py) and then replayed against the real CLI: Compose parses the flags, loads
the project and names the service before it needs an engine, so an accepted command gets exactly as far as
Compose's "no engine" error. (`--dry-run` is no help here: Compose 5.6 connects to the engine first even then.)
The fake's canned answers are compared with what the real CLI prints: without an engine, and for `ps --format json`
from an engine stand-in that serves the fake's containers through the Engine API."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socketserver
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from obsbox.stack.compose import StackTree
from obsbox.stack.docker import _NO_ENGINE_HINT, DockerRuntime
from obsbox.stack.errors import DockerError
from tests.stack._compose_cli import docker_with_compose_plugin
from tests.stack.test_docker_runtime import FAKE, calls, docker_env, invoke, tree  # noqa: F401  (fixtures)

NO_ENGINE = re.compile(r"failed to connect to the docker API at unix://\S+; check if the path is correct and if "
                       r"the daemon is running")
REFUSED = ("unknown flag", "unknown shorthand", "unknown command", "no such service", "invalid compose project",
           "variable is not set", "accepts", "requires")


@pytest.fixture
def real_cli(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The real docker CLI with the real Compose plugin; asked for before `docker_env` puts the fake first on PATH."""
    return docker_with_compose_plugin(tmp_path)


def obsbox_commands(log: Path) -> list[dict[str, object]]:
    """What the docker runtime ran: up (with the samples profile), status, logs -f, down --purge, up, down."""
    os.environ["FAKE_DOCKER_MODE"] = "empty"
    assert invoke("up", "--runtime", "docker", "--samples").exit_code == 0
    del os.environ["FAKE_DOCKER_MODE"]
    assert invoke("status").exit_code == 0
    assert invoke("logs", "prometheus", "-f").exit_code == 0
    assert invoke("down", "--purge").exit_code == 0
    assert invoke("up", "--runtime", "docker").exit_code == 0
    assert invoke("down").exit_code == 0
    return [c for c in calls(log) if c["argv"][:1] == ["compose"] and c["argv"][1:2] != ["version"]]


def replay(docker: str, env: dict[str, str], call: dict[str, object]) -> subprocess.CompletedProcess[str]:
    argv = [docker, *call["argv"]]  # type: ignore[misc]
    run_env = {**env, "OBSBOX_GRAFANA_PASSWORD": str(call["password"] or "")}
    if call.get("alertmanager_config"):
        run_env["OBSBOX_ALERTMANAGER_CONFIG"] = str(call["alertmanager_config"])
    return subprocess.run(argv, capture_output=True, text=True, env=run_env, timeout=60)


def test_every_compose_command_of_the_runtime_is_accepted_by_the_real_cli(
        real_cli: tuple[str, dict[str, str]], docker_env: Path) -> None:  # noqa: F811
    docker, env = real_cli
    recorded = obsbox_commands(docker_env)
    verbs = {tuple(a for a in c["argv"] if a in ("up", "ps", "logs", "down", "--volumes", "--follow", "--wait"))
             for c in recorded}  # type: ignore[attr-defined]
    assert {("up", "--wait"), ("ps",), ("logs", "--follow"), ("down",), ("down", "--volumes")} <= verbs, verbs
    for call in recorded:
        out = replay(docker, env, call)
        assert out.returncode == 1 and NO_ENGINE.search(out.stderr), (call["argv"], out.stderr)
        assert not [r for r in REFUSED if r in out.stderr], (call["argv"], out.stderr)


@pytest.mark.parametrize("change, refusal", [
    (("--wait", "--wiat"), "unknown flag: --wiat"),
    (("prometheus", "prometeus"), "no such service: prometeus"),
    (("--all", "--everything"), "unknown flag: --everything"),
])
def test_the_replay_tells_a_refused_command(real_cli: tuple[str, dict[str, str]], docker_env: Path,  # noqa: F811
                                            change: tuple[str, str], refusal: str) -> None:
    """The check above is not vacuous: a misspelt flag or service is refused before Compose needs an engine."""
    docker, env = real_cli
    call = next(c for c in obsbox_commands(docker_env) if change[0] in c["argv"])  # type: ignore[operator]
    bad = {**call, "argv": [change[1] if a == change[0] else a for a in call["argv"]]}  # type: ignore[attr-defined]
    out = replay(docker, env, bad)
    assert out.returncode != 0 and refusal in out.stderr and not NO_ENGINE.search(out.stderr), out.stderr


def test_the_real_no_engine_error_gets_the_no_engine_hint(tmp_path: Path, tree: Path,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    docker, env = docker_with_compose_plugin(tmp_path)
    for key in ("DOCKER_HOST", "DOCKER_CONFIG"):
        if key in env:
            monkeypatch.setenv(key, env[key])
    (tmp_path / "state").mkdir()
    runtime = DockerRuntime(tmp_path / "state", StackTree.load(tree), docker=docker)
    with pytest.raises(DockerError) as failed:
        runtime.run("ps", "--all", "--format", "json", timeout=60)
    assert NO_ENGINE.search(failed.value.stderr) and failed.value.hint == _NO_ENGINE_HINT


def _fake(tmp_path: Path, mode: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"FAKE_DOCKER_LOG": str(tmp_path / "fake.jsonl"), "FAKE_DOCKER_MODE": mode, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(FAKE), *argv], capture_output=True, text=True, env=env, timeout=30)


def test_the_fakes_answers_are_the_real_clis(tmp_path: Path, tree: Path) -> None:  # noqa: F811
    docker, env = docker_with_compose_plugin(tmp_path)
    socket = env["DOCKER_HOST"].removeprefix("unix://")

    def real(*argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([docker, *argv], capture_output=True, text=True, env={**env, **extra}, timeout=60)
        return subprocess.CompletedProcess(out.args, out.returncode, out.stdout,
                                           out.stderr.replace(socket, "/var/run/docker.sock"))

    # No engine: `docker version` (how obsbox asks for one without the SDK) and any compose command.
    server = ["version", "--format", "{{.Server.Version}}"]
    assert real(*server).stderr.strip() == _fake(tmp_path, "noengine", *server).stderr.strip()
    ps = ["compose", "-p", "obsbox", "-f", str(tree / "stack.yml"), "--env-file", str(tree / ".env"),
          "ps", "--all", "--format", "json"]
    real_ps, fake_ps = real(*ps, OBSBOX_GRAFANA_PASSWORD="x"), _fake(tmp_path, "noengine", *ps)
    assert (real_ps.returncode, real_ps.stderr) == (fake_ps.returncode, fake_ps.stderr)
    # The plugin's version, as `check_compose` reads it: a bare x.y.z.
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", real("compose", "version", "--short").stdout)
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", _fake(tmp_path, "", "compose", "version", "--short").stdout)
    # No compose plugin at all: the docker CLI parses the flags itself.
    (tmp_path / "bare-config").mkdir()
    for argv in (["compose", "version", "--short"], ["compose", "version"], ps):
        bare, fake = real(*argv, DOCKER_CONFIG=str(tmp_path / "bare-config")), _fake(tmp_path, "nocompose", *argv)
        assert (bare.returncode, bare.stderr) == (fake.returncode, fake.stderr), argv


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Just enough of the Docker Engine API for `docker compose ps`: the ping, the container list and inspect,
    serving `containers` (engine-API JSON). It lets the real CLI print its own `ps --format json`."""

    daemon_threads = True

    def __init__(self, path: Path, containers: list[dict[str, Any]], inspect: dict[str, dict[str, Any]]) -> None:
        self.containers, self.inspect = containers, inspect
        super().__init__(str(path), _EngineHandler)


class _EngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Engine

    def _send(self, body: Any, code: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.51")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self) -> None:  # the CLI's ping
        self.send_response(200)
        self.send_header("Api-Version", "1.51")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        match = re.fullmatch(r"/v[\d.]+/containers/(\w+)/json", path)
        if path.endswith("/containers/json"):
            self._send(self.server.containers)
        elif match and match.group(1) in self.server.inspect:
            self._send(self.server.inspect[match.group(1)])
        else:
            self._send({"message": f"not served by the test's engine: {path}"}, 404)

    def log_message(self, format: str, *args: object) -> None:
        pass


# What the engine holds in the fake's "crashed" scenario (FAKE_DOCKER_COLLECTOR_HEALTH_PORT=13133), in the Engine
# API's terms: service, image, state, health (None: no health check), exit code, published (ip, container, host).
ENGINE_SCENARIO = [
    ("prometheus", "prom/prometheus:v3.14.0", "running", "healthy", 0, [("127.0.0.1", 9090, 9090)]),
    ("alertmanager", "prom/alertmanager:v0.34.0", "running", "healthy", 0, [("127.0.0.1", 9093, 9093)]),
    ("grafana", "grafana/grafana:13.2.0", "exited", None, 1, []),
    ("collector", "otel/opentelemetry-collector-contrib:0.159.0", "running", None, 0,
     [("127.0.0.1", 4317, 4317), ("127.0.0.1", 4318, 4318), ("127.0.0.1", 13133, 13133)]),
]


def _engine_view(service: str, image: str, state: str, health: str | None, exit_code: int,
                 ports: list[tuple[str, int, int]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One container as the engine lists it and inspects it."""
    name = f"obsbox-{service}-1"
    cid = hashlib.sha256(name.encode()).hexdigest()
    labels = {"com.docker.compose.project": "obsbox", "com.docker.compose.service": service,
              "com.docker.compose.container-number": "1", "com.docker.compose.oneoff": "False"}
    listed = {"Id": cid, "Names": ["/" + name], "Image": image, "Command": "/bin/x", "Created": 1764750000,
              "State": state, "Labels": labels, "Mounts": [], "NetworkSettings": {"Networks": {}},
              "Status": "Up 2 minutes" if state == "running" else f"Exited ({exit_code}) 3 seconds ago",
              "Ports": [{"IP": ip, "PrivatePort": inside, "PublicPort": host, "Type": "tcp"}
                        for ip, inside, host in ports]}
    status: dict[str, Any] = {"Status": state, "Running": state == "running", "ExitCode": exit_code, "Pid": 0}
    if health:
        status["Health"] = {"Status": health, "FailingStreak": 0, "Log": []}
    inspect = {"Id": cid, "Name": "/" + name, "State": status, "Config": {"Image": image, "Labels": labels},
               "HostConfig": {}, "NetworkSettings": {"Networks": {}, "Ports": {}}, "Mounts": []}
    return listed, inspect


def test_the_fakes_ps_rows_are_what_the_real_cli_prints(real_cli: tuple[str, dict[str, str]], tree: Path,  # noqa: F811
                                                        tmp_path: Path) -> None:
    """The real CLI's `ps --format json` of the containers an engine stand-in holds, against the fake's answer for
    the same containers (healthy, exited, no health check): every field the fake answers is one the real CLI
    prints, with the same value and type, one object per line."""
    docker, env = real_cli
    ps = ["compose", "-p", "obsbox", "-f", str(tree / "stack.yml"), "--env-file", str(tree / ".env"),
          "ps", "--all", "--format", "json"]
    fake_env = {"FAKE_DOCKER_LOG": str(tmp_path / "fake.jsonl"), "FAKE_DOCKER_MODE": "crashed",
                "FAKE_DOCKER_COLLECTOR_HEALTH_PORT": "13133", "PATH": "/usr/bin:/bin"}
    fake_out = subprocess.run([sys.executable, str(FAKE), *ps], capture_output=True, text=True, env=fake_env,
                              timeout=30).stdout
    fake_rows = [json.loads(line) for line in fake_out.splitlines()]
    assert {r["State"] for r in fake_rows} == {"running", "exited"} and "" in {r["Health"] for r in fake_rows}
    views = [_engine_view(*c) for c in ENGINE_SCENARIO]
    socket_path = tmp_path / "engine.sock"
    engine = _Engine(socket_path, [v[0] for v in views], {v[1]["Id"]: v[1] for v in views})
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    try:
        out = subprocess.run([docker, *ps], capture_output=True, text=True, timeout=60,
                             env={**env, "DOCKER_HOST": f"unix://{socket_path}", "OBSBOX_GRAFANA_PASSWORD": "x"})
    finally:
        engine.shutdown()
        engine.server_close()
    assert out.returncode == 0, out.stderr
    real_rows = {r["Name"]: r for r in map(json.loads, out.stdout.splitlines())}
    assert set(real_rows) == {r["Name"] for r in fake_rows}
    for row in fake_rows:
        real = real_rows[row["Name"]]
        assert {k: real.get(k) for k in row} == row, (real, row)
