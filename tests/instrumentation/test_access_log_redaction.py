"""Access logs are redacted like spans (issue #14, item 3): a request carrying secrets in its query string goes
through each real server, and none of them reaches the receiver; `flask run --debug`'s debugger PIN neither.

Before the fix uvicorn's exported access record carried `GET /stock/apple?token=...&api_key=...` verbatim, and
werkzeug's access lines and debugger PIN were exported as written.
"""

from __future__ import annotations

import re
import signal
import sys

import pytest

from obsbox.stack.ports import free_port
from obsbox.testing import LogRecord, OTLPReceiver
from tests._apps import APPS, app_env, get, serve
from tests.instrumentation.test_log_redaction import leaks

pytestmark = pytest.mark.slow

TOKEN, KEY = "tok-51e2c", "key-9a7d3"
PIN = re.compile(r"\d{3}-\d{3}-\d{3}")


def _records_of(receiver: OTLPReceiver, logger_name: str) -> list[LogRecord]:
    return [r for r in receiver.logs() if str(r.attributes.get("logger.name", "")).startswith(logger_name)]


def _serve_secret_request(command: list[str], app: str, path: str, receiver: OTLPReceiver,
                          access_logger: str | None, **env: str) -> None:
    port = free_port()
    command = [part.replace("PORT", str(port)) for part in command]
    with serve(command, APPS / app, app_env(receiver, OBSBOX_IN_APP="1", **env), port, ready="/") as process:
        status, _ = get(port, f"{path}?token={TOKEN}&api_key={KEY}&page=2")
        assert status == 200
        # The request's span arrives with its query redacted: the request really went through obsbox.
        receiver.wait_for(lambda: [s for s in receiver.spans() if s.kind == 2 and "page=2" in
                                   str(s.attributes.get("url.query", ""))], timeout=20)
        if access_logger is not None:  # and so does the access-log record, without the secrets
            receiver.wait_for(lambda: [r for r in _records_of(receiver, access_logger) if path in str(r.body)],
                              timeout=20)
        process.send_signal(signal.SIGINT)
    assert not leaks(receiver, TOKEN) and not leaks(receiver, KEY), leaks(receiver, TOKEN) + leaks(receiver, KEY)


def test_uvicorn_access_log(otlp_receiver: OTLPReceiver) -> None:
    command = [sys.executable, "-m", "uvicorn", "inventory.main:app", "--host", "127.0.0.1", "--port", "PORT"]
    _serve_secret_request(command, "inventory", "/stock/apple", otlp_receiver, "uvicorn.access")
    (record,) = [r for r in _records_of(otlp_receiver, "uvicorn.access") if "/stock/apple" in str(r.body)]
    assert "token=REDACTED&api_key=REDACTED&page=2" in str(record.body)


def test_gunicorn_access_log(otlp_receiver: OTLPReceiver) -> None:
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:PORT", "--access-logfile", "-",
               "bookshelf.wsgi"]
    _serve_secret_request(command, "bookshelf", "/books/1/", otlp_receiver, "gunicorn.access")


def test_werkzeug_access_log_and_debugger_pin(otlp_receiver: OTLPReceiver) -> None:
    command = [sys.executable, "-m", "flask", "--app", "flaskr", "run", "--debug", "--port", "PORT"]
    _serve_secret_request(command, "flaskr", "/posts/1", otlp_receiver, "werkzeug")
    werkzeug = _records_of(otlp_receiver, "werkzeug")
    pins = [r for r in werkzeug if "Debugger PIN" in str(r.body)]
    assert pins and all(not PIN.search(str(r.body)) for r in pins), [r.body for r in pins]


def test_django_runserver_access_log(otlp_receiver: OTLPReceiver) -> None:
    # runserver's access lines go to its own "django.server" handler (not propagated), so only the span carries
    # the request: what matters is that nothing anywhere holds the secrets.
    command = [sys.executable, "manage.py", "runserver", "127.0.0.1:PORT", "--noreload"]
    _serve_secret_request(command, "bookshelf", "/books/1/", otlp_receiver, None)
