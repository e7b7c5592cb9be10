"""Running the real `obsbox` command against a tmp state dir with every port ephemeral."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from obsbox.samples._services import SERVICES, WORKER

NATIVE_PORT_VARS = ["OBSBOX_PROMETHEUS_PORT", "OBSBOX_ALERTMANAGER_PORT"] + [
    f"OBSBOX_{name.upper()}_PORT" for name in [*SERVICES, WORKER]
]

T = TypeVar("T")

needs_native_binaries = pytest.mark.skipif(
    shutil.which("prometheus") is None
    or (shutil.which("prometheus-alertmanager") is None and shutil.which("alertmanager") is None),
    reason="needs Debian's prometheus and prometheus-alertmanager (scripts/install-system-deps.sh installs them)",
)


def native_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment for `obsbox` with its own state and cache dirs, ephemeral ports and no Docker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSBOX_")}
    env.update({var: "0" for var in NATIVE_PORT_VARS})
    env.update(
        OBSBOX_STATE_DIR=str(tmp / "state"),
        OBSBOX_CACHE_DIR=str(tmp / "cache"),
        # Never reach a Docker engine, even on a machine that has one: these tests are about the native runtime.
        DOCKER_HOST="unix://" + str(tmp / "no-docker.sock"),
        OBSBOX_START_TIMEOUT="60",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def obsbox(env: dict[str, str], *args: str, timeout: float = 120, check: bool = True,
           ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "obsbox.cli", *args], env=env, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"obsbox {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def status(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(obsbox(env, "status", "--json").stdout)
    return data


def component(report: dict[str, Any], name: str) -> dict[str, Any]:
    for c in report["components"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"{name} not in status: {[c['name'] for c in report['components']]}")


def supervised_pids(state: Path) -> set[int]:
    """Every supervisor and component pid the native runtime recorded under `state`."""
    pids: set[int] = set()
    for f in (state / "native").glob("*/supervisor.json"):
        data = json.loads(f.read_text())
        pids |= {p for p in (data.get("supervisor_pid"), data.get("pid")) if isinstance(p, int)}
    return pids


def alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate: Callable[[], T], *, timeout: float = 30.0, every: float = 0.3, what: str = "") -> T:
    """The first truthy value of `predicate()`, polled every `every` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s" + (f" waiting for {what}" if what else ""))


@contextlib.contextmanager
def native_session(tmp: Path) -> Iterator[dict[str, str]]:
    """native_env(tmp) for one test; afterwards `obsbox down`, and no supervised process may be left behind."""
    env = native_env(tmp)
    try:
        yield env
    finally:
        obsbox(env, "down", check=False)
        left = [p for p in supervised_pids(tmp / "state") if alive(p)]
        for pid in left:  # never leave a process behind, even when a test failed half-way
            os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left behind: {left}"
