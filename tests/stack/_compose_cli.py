"""The real Docker Compose for the tests: the pinned build (scripts/build-components.sh compose), as the standalone
`docker-compose` and as the docker CLI's plugin. Missing: a failure in CI (`make test` builds it first), else a skip
that says how to build it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from obsbox.stack.compose import COMPOSE_PIN, compose_cli, compose_version
from obsbox.stack.tree import pinned_images

_BUILD = "scripts/build-components.sh compose (or `obsbox build`, with every component) builds the pinned Compose"


def _missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what}: in CI `make test` builds it before the tests, so this is a failure ({_BUILD})")
    pytest.skip(f"{what}; {_BUILD}")


def real_compose() -> list[str]:
    """The command that runs the real Compose (the pinned build first)."""
    cli = compose_cli()
    if cli is None:
        _missing("no Docker Compose v2+ here")
        raise AssertionError  # unreachable: _missing skips or fails
    pinned = pinned_images()[COMPOSE_PIN]
    if os.environ.get("CI") == "true" and compose_version(cli) != pinned:
        pytest.fail(f"CI runs Compose {compose_version(cli)} ({' '.join(cli)}), not the pinned {pinned}")
    return cli


def docker_with_compose_plugin(tmp: Path) -> tuple[str, dict[str, str]]:
    """The real docker CLI and an environment where `docker compose` is the real Compose and no engine answers
    (DOCKER_HOST is a socket nobody listens on, so nothing can start even on a machine with an engine)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on PATH (the client is part of our machines; no engine is needed)")
    cli = real_compose()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OBSBOX_", "COMPOSE_")) and k not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env["DOCKER_HOST"] = "unix://" + str(tmp / "no-engine.sock")
    if len(cli) == 1:  # the standalone build: make it the plugin the docker CLI finds
        plugins = tmp / "docker-config" / "cli-plugins"
        plugins.mkdir(parents=True)
        (plugins / "docker-compose").symlink_to(cli[0])
        env["DOCKER_CONFIG"] = str(plugins.parent)
    return docker, env
