"""The docker runtime's own commands against the real docker CLI and the real Compose plugin, with no engine.

Every `docker compose …` command `obsbox up | status | logs | down | down --purge` issues is recorded through the
fake docker (tests/stack/fake_docker.py) and then replayed against the real CLI: Compose parses the flags, loads
the project and names the service before it needs an engine, so an accepted command gets exactly as far as
Compose's "no engine" error. (`--dry-run` is no help here: Compose 5.6 connects to the engine first even then.)
The fake's canned answers are compared with what the real CLI prints where it can print without an engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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
