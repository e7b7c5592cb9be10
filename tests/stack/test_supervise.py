"""The native supervisor on its own: bounded restarts, clean stop (SIGTERM, then SIGKILL), state file contents."""

from __future__ import annotations

import os
import sys
import time
from functools import partial
from pathlib import Path

from obsbox.stack import process
from tests.stack._harness import wait_for

PY = sys.executable


_wait = partial(wait_for, timeout=20.0, every=0.1)  # children of these tests start and stop within a second


def _start(tmp_path: Path, code: str, **kw: object) -> tuple[Path, Path]:
    state, log = tmp_path / "sup.json", tmp_path / "child.log"
    process.start_supervised("child", [PY, "-c", code], state_file=state, log_file=log, env=dict(os.environ),
                             **kw)  # type: ignore[arg-type]
    return state, log


def test_a_crashing_child_is_restarted_a_bounded_number_of_times(tmp_path: Path) -> None:
    state, log = _start(tmp_path, "print('boot', flush=True); raise SystemExit(3)", max_restarts=2)
    done = _wait(lambda: (s := process.read_supervised("child", state)).state == "exited" and s)
    assert done.restarts == 2 and done.exit_code == 3 and not done.alive
    text = log.read_text()
    assert text.count("boot") == 3
    assert "restart 1 of 2" in text and "restart 2 of 2" in text


def test_stop_sends_sigterm_and_the_child_exits_cleanly(tmp_path: Path) -> None:
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(0)))\n"
            "print('up', flush=True)\nwhile True: time.sleep(0.1)\n")
    state, log = _start(tmp_path, code)
    running = _wait(lambda: (s := process.read_supervised("child", state)).state == "running"
                    and "up" in log.read_text() and s)
    assert running.pid and process.pid_alive(running.pid)
    process.stop_supervised("child", state, timeout=10)
    after = process.read_supervised("child", state)
    assert after.state == "stopped" and after.exit_code == 0
    assert "got TERM" in log.read_text()
    assert not process.pid_alive(running.pid)


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    code = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\n"
            "while True: time.sleep(0.1)\n")
    state, log = _start(tmp_path, code, stop_timeout=1.0)
    running = _wait(lambda: (s := process.read_supervised("child", state)).state == "running"
                    and "up" in log.read_text() and s)
    began = time.monotonic()
    process.stop_supervised("child", state, timeout=10)
    assert time.monotonic() - began < 8
    after = process.read_supervised("child", state)
    assert after.state == "stopped" and after.exit_code == -9
    assert running.pid and not process.pid_alive(running.pid)


def test_a_missing_binary_is_reported_as_exited(tmp_path: Path) -> None:
    state, log = tmp_path / "sup.json", tmp_path / "child.log"
    process.start_supervised("child", [str(tmp_path / "no-such-binary")], state_file=state, log_file=log,
                             env=dict(os.environ))
    done = _wait(lambda: (s := process.read_supervised("child", state)).state == "exited" and s)
    assert done.exit_code == 127 and "cannot start" in log.read_text()
