"""Serving one sample service: uvicorn for the ASGI ones, werkzeug's threaded server for the Flask one.

Werkzeug comes with Flask (so with the `samples` extra) and serves each request on its own thread, which is what
a WSGI app behind a real server sees; a single-threaded server would turn payments' latency into queueing.
Shutdown is graceful on SIGTERM and SIGINT: uvicorn runs the ASGI lifespan shutdown, and the WSGI path exits
through SystemExit so the service's atexit hooks flush its telemetry.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from obsbox.samples._services import SERVICES


def build_app(service: str) -> Any:
    """The service's application, configured (the service calls obsbox.configure itself)."""
    module = importlib.import_module(SERVICES[service].module)
    return module.create_app()


def serve(service: str, *, host: str = "127.0.0.1", port: int = 0, fd: int | None = None,
          exit_with_parent: bool = False) -> None:
    """Serve `service` until SIGTERM/SIGINT. `fd`: an already bound listening socket handed over by the parent."""
    if service not in SERVICES:
        raise ValueError(f"unknown sample service {service!r}; the services are: {', '.join(SERVICES)}")
    if exit_with_parent:
        _exit_with_parent()
    app = build_app(service)
    if SERVICES[service].interface == "asgi":
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, fd=fd, log_level="warning", lifespan="on",
                                access_log=False)
        uvicorn.Server(config).run()
    else:
        _serve_wsgi(app, host, port, fd)


def _serve_wsgi(app: Any, host: str, port: int, fd: int | None) -> None:
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = make_server(host, port, app, threaded=True, fd=fd)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _exit_with_parent() -> None:
    """When the process that started us dies without stopping us, stop too rather than hold the port forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

