"""The supervisor of one native component: `python -m obsbox.stack._supervise --name N --state F --log L -- CMD...`.

It runs CMD with output appended to the log file, restarts it when it crashes (at most --max-restarts times, with
a growing pause), and on SIGTERM stops it the clean way: SIGTERM, then SIGKILL after --stop-timeout seconds.
Everything `obsbox status` needs is in the state file, rewritten atomically on each change:
{"name", "supervisor_pid", "pid", "state": "starting|running|exited|stopped", "restarts", "exit_code", "argv"}.

It runs detached (its own session), so `obsbox up` can return and the component outlives the terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from obsbox.stack.state import write_json

_PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    # Linux: the child gets SIGKILL if the supervisor itself is killed, so a `kill -9` never leaks a component.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Supervisor:
    def __init__(self, args: argparse.Namespace) -> None:
        self.name: str = args.name
        self.state_path = Path(args.state)
        self.log_path = Path(args.log)
        self.max_restarts: int = args.max_restarts
        self.stop_timeout: float = args.stop_timeout
        self.argv: list[str] = args.command
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.restarts = 0
        self.exit_code: int | None = None

    def write(self, state: str) -> None:
        data: dict[str, Any] = {
            "name": self.name,
            "supervisor_pid": os.getpid(),
            "pid": self.child.pid if self.child else None,
            "state": state,
            "restarts": self.restarts,
            "exit_code": self.exit_code,
            "argv": self.argv,
            "updated_at": time.time(),
        }
        write_json(self.state_path, data)

    def spawn(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns the descriptor from here on
        try:
            self.child = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_supervisor,
            )
        finally:
            log.close()
        self.write("running")

    def on_term(self, signum: int, frame: object) -> None:
        self.stopping = True

    def stop_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_term)
        signal.signal(signal.SIGINT, self.on_term)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.write("starting")
        try:
            self.spawn()
        except OSError as e:
            self.exit_code = 127
            self.log_path.open("a").write(f"obsbox: cannot start {self.argv[0]}: {e}\n")
            self.write("exited")
            return 1
        while True:
            assert self.child is not None
            while not self.stopping and self.child.poll() is None:
                time.sleep(0.2)
            if self.stopping:
                self.stop_child()
                self.exit_code = self.child.returncode
                self.write("stopped")
                return 0
            self.exit_code = self.child.returncode
            if self.restarts >= self.max_restarts:
                self.write("exited")
                return 1
            self.restarts += 1
            with self.log_path.open("a") as log:
                log.write(f"obsbox: {self.name} exited with code {self.exit_code}; restart {self.restarts}"
                          f" of {self.max_restarts}\n")
            self.write("restarting")
            deadline = time.monotonic() + min(2.0 ** (self.restarts - 1), 10.0)
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.stopping:
                self.write("stopped")
                return 0
            self.spawn()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="obsbox-supervise")
    parser.add_argument("--name", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--max-restarts", type=int, default=3)
    parser.add_argument("--stop-timeout", type=float, default=10.0)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    return _Supervisor(args).run()


if __name__ == "__main__":
    sys.exit(main())
