"""Serving the small real applications in tests/apps/ as their users do, on 127.0.0.1, and talking to them.

>>> with serve([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"], APPS / "bookshelf", env, port):
...     status, body = get(port, "/books/1/")                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from obsbox.testing import OTLPReceiver

APPS = Path(__file__).parent / "apps"


def app_env(receiver: OTLPReceiver | None, **extra: str) -> dict[str, str]:
    """The environment of a served app: obsbox exports to `receiver` (None: to obsbox's default endpoint)
    quickly, prints nothing, and no setting of the test run's own environment leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSBOX_", "OTEL_", "DJANGO_", "FLASK_"))}
    env.update(OBSBOX_CONSOLE="false", OBSBOX_SCHEDULE_DELAY="50", OBSBOX_METRIC_EXPORT_INTERVAL="300",
               PYTHONUNBUFFERED="1")
    if receiver is not None:
        env["OBSBOX_ENDPOINT"] = receiver.endpoint
    env.update(extra)
    return env


def get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """GET `path` on a new connection (so a multi-worker server spreads the requests)."""
    return request(port, "GET", path, timeout)


def request(port: int, method: str, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """`method` `path` on a new connection; the status and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"Connection": "close", "Content-Length": "0"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextlib.contextmanager
def serve(command: list[str], cwd: Path, env: dict[str, str], port: int, *, ready: str = "/",
          timeout: float = 60.0) -> Iterator[subprocess.Popen[str]]:
    """Run `command` (a server listening on `port`) in its own process group until `ready` answers; stop the whole
    group afterwards (Django's autoreloader and gunicorn's workers included)."""
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                get(port, ready, timeout=2.0)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    _stop(process)
                    raise AssertionError(f"{' '.join(command)} did not start:\n{output(process)}") from None
                time.sleep(0.2)
        yield process
    finally:
        _stop(process)


def output(process: subprocess.Popen[str]) -> str:
    """What a stopped server printed."""
    return process.stdout.read() if process.stdout and not process.stdout.closed else ""


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # Children of the group (the autoreloader's server process) may outlive the leader for a moment.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)

