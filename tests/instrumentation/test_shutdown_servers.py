"""What a server handled just before it was told to stop reaches the collector (issue #19, defect 3).

Each real server runs one of the apps in tests/apps/ with the README's two lines, exports to a real OTLP receiver
with a schedule delay far longer than the test (so nothing is sent before the stop), serves requests, and gets
SIGTERM as a process manager sends it. Every request's span and log record must arrive: uvicorn re-raises SIGTERM
after its graceful shutdown with the default handler in place, so before the fix the exit hook never ran and
everything queued was lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

import pytest

from obsbox.stack.ports import free_port
from obsbox.testing import OTLPReceiver
from tests._apps import APPS, app_env, get, output, serve

pytestmark = pytest.mark.slow

REQUESTS = 12


def _env(receiver: OTLPReceiver) -> dict[str, str]:
    # Nothing leaves before the stop: a schedule delay of ten minutes, batches larger than the test's traffic.
    return app_env(receiver, OBSBOX_IN_APP="1", OBSBOX_SCHEDULE_DELAY="600000",
                   OBSBOX_MAX_EXPORT_BATCH_SIZE="2048")


def _served_then_stopped(command: list[str], app: str, path: str, receiver: OTLPReceiver,
                         stop: signal.Signals = signal.SIGTERM) -> str:
    port = free_port()
    command = [part.replace("PORT", str(port)) for part in command]
    with serve(command, APPS / app, _env(receiver), port, ready="/") as process:
        for _ in range(REQUESTS):
            status, _body = get(port, path)
            assert status == 200
        assert not [s for s in receiver.spans() if s.kind == 2 and s.attributes.get("url.path") == path], \
            "exported before the stop: the test would prove nothing"
        _terminate_group(process.pid, stop)
    return output(process)


def _terminate_group(pgid: int, stop: signal.Signals, grace: float = 20.0) -> None:
    """`stop` to the server's process group, as a process manager (SIGTERM) or a terminal (Ctrl-C) stops it, then
    wait until every process of the group has exited (Django's autoreloader serves from a child process)."""
    os.killpg(pgid, stop)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _assert_all_arrived(receiver: OTLPReceiver, path: str, printed: str) -> None:
    def arrived() -> bool:
        spans = [s for s in receiver.spans() if s.kind == 2 and s.attributes.get("url.path") == path]
        return len(spans) >= REQUESTS

    receiver.wait_for(arrived, timeout=15)


UVICORN = [sys.executable, "-m", "uvicorn", "inventory.main:app", "--host", "127.0.0.1", "--port", "PORT"]


def test_uvicorn_sigterm(otlp_receiver: OTLPReceiver) -> None:
    printed = _served_then_stopped(UVICORN, "inventory", "/stock/apple", otlp_receiver)
    _assert_all_arrived(otlp_receiver, "/stock/apple", printed)
    assert any(r.body == "stock read" for r in otlp_receiver.logs())


def test_uvicorn_workers_sigterm(otlp_receiver: OTLPReceiver) -> None:
    printed = _served_then_stopped(UVICORN + ["--workers", "2"], "inventory", "/stock/apple", otlp_receiver)
    _assert_all_arrived(otlp_receiver, "/stock/apple", printed)


def test_gunicorn_workers_sigterm(otlp_receiver: OTLPReceiver) -> None:
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:PORT", "bookshelf.wsgi"]
    printed = _served_then_stopped(command, "bookshelf", "/books/1/", otlp_receiver)
    _assert_all_arrived(otlp_receiver, "/books/1/", printed)


def test_django_runserver_noreload_sigterm(otlp_receiver: OTLPReceiver) -> None:
    command = [sys.executable, "manage.py", "runserver", "127.0.0.1:PORT", "--noreload"]
    printed = _served_then_stopped(command, "bookshelf", "/books/1/", otlp_receiver)
    _assert_all_arrived(otlp_receiver, "/books/1/", printed)


def test_django_runserver_ctrl_c(otlp_receiver: OTLPReceiver) -> None:
    """runserver as its banner says to stop it (CONTROL-C: SIGINT to the terminal's process group). (With the
    autoreloader, SIGTERM makes the parent process SIGKILL the serving child at once: nothing can be flushed
    there; docs/reliability.md says so.)"""
    command = [sys.executable, "manage.py", "runserver", "127.0.0.1:PORT"]
    printed = _served_then_stopped(command, "bookshelf", "/books/1/", otlp_receiver, signal.SIGINT)
    _assert_all_arrived(otlp_receiver, "/books/1/", printed)


def test_flask_run_sigterm(otlp_receiver: OTLPReceiver) -> None:
    command = [sys.executable, "-m", "flask", "--app", "flaskr", "run", "--port", "PORT"]
    printed = _served_then_stopped(command, "flaskr", "/posts/1", otlp_receiver)
    _assert_all_arrived(otlp_receiver, "/posts/1", printed)
