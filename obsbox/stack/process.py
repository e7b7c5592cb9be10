"""Starting and stopping supervised native components, and telling live processes from stale pid records.

>>> from obsbox.stack.process import pid_matches
>>> import os
>>> pid_matches(os.getpid(), "python")
True

A pid in a state file may have been reused by an unrelated process after a reboot or crash; `pid_matches` checks
the process's command line too, so obsbox never signals a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obsbox.stack.state import read_json

SUPERVISOR_MODULE = "obsbox.stack._supervise"


def cmdline(pid: int) -> list[str]:
    """The argv of a live process, or [] when it is gone or not ours to see."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def pid_matches(pid: int | None, needle: str) -> bool:
    """True when `pid` is alive and its command line mentions `needle` (guards against pid reuse)."""
    if not pid or not pid_alive(pid):
        return False
    return any(needle in part for part in cmdline(pid))


@dataclass
class Supervised:
    """What a component's state file says, checked against the live process table."""

    name: str
    state: str            # running | starting | restarting | exited | stopped | absent
    supervisor_pid: int | None
    pid: int | None
    restarts: int
    exit_code: int | None

    @property
    def alive(self) -> bool:
        return self.state in ("running", "starting", "restarting")


def read_supervised(name: str, state_file: Path) -> Supervised:
    """The component's state; a record whose supervisor is gone (or whose pid was reused) reads as exited."""
    data: dict[str, Any] = read_json(state_file) or {}
    if not data:
        return Supervised(name, "absent", None, None, 0, None)
    sup = data.get("supervisor_pid")
    child = data.get("pid")
    state = str(data.get("state", "absent"))
    restarts = int(data.get("restarts") or 0)
    code = data.get("exit_code")
    supervisor_live = pid_matches(sup, SUPERVISOR_MODULE) and pid_matches(sup, f"--name={name}")
    if state in ("running", "starting", "restarting") and not supervisor_live:
        # The supervisor died without writing a final state (kill -9, reboot): stale record.
        state = "exited"
    return Supervised(name, state, sup if supervisor_live else None, child, restarts, code)


def start_supervised(
    name: str, argv: list[str], *, state_file: Path, log_file: Path, env: dict[str, str],
    max_restarts: int = 3, stop_timeout: float = 10.0, cwd: Path | None = None,
) -> int:
    """Start `argv` under a detached supervisor; returns the supervisor's pid."""
    state_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.unlink(missing_ok=True)
    sup_argv = [
        sys.executable, "-m", SUPERVISOR_MODULE, f"--name={name}", f"--state={state_file}", f"--log={log_file}",
        f"--max-restarts={max_restarts}", f"--stop-timeout={stop_timeout}", "--", *argv,
    ]
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            sup_argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            cwd=str(cwd) if cwd else None, start_new_session=True,
        )
    return proc.pid


def stop_supervised(name: str, state_file: Path, *, timeout: float = 15.0) -> None:
    """Stop a component: SIGTERM to its supervisor (which stops the child), SIGKILL both if that hangs."""
    data = read_json(state_file) or {}
    sup = data.get("supervisor_pid")
    child = data.get("pid")
    binary = Path(str((data.get("argv") or ["?"])[0])).name
    if isinstance(sup, int) and pid_matches(sup, SUPERVISOR_MODULE):
        os.kill(sup, signal.SIGTERM)
        _wait_gone(sup, timeout)
    # The child of a supervisor that was killed hard: stop it only if it still is that binary.
    if isinstance(child, int) and pid_matches(child, binary):
        os.kill(child, signal.SIGTERM)
        _wait_gone(child, timeout)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        _kill(pid)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
