"""Real servers (uvicorn, werkzeug) in a thread of the test process, on 127.0.0.1, for tests that configure obsbox
in-process.

>>> with served(obsbox.instrument(app)) as base:                  # doctest: +SKIP
...     get(base + "/items/7")
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn until the block ends; yields the base URL."""
    import logging

    import uvicorn

    # uvicorn.Config(log_level=...) sets its loggers' levels process-wide; put them back afterwards so that a later
    # test's INFO record on uvicorn.error is not filtered out by this one's server.
    loggers = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")]
    levels = [lg.level for lg in loggers]
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def wsgi_served(app: Any) -> Iterator[str]:
    """Serve the WSGI `app` with werkzeug's threaded server until the block ends; yields the base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> int:
    """Request `url` (GET unless `method` says otherwise); the status code (errors included)."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
