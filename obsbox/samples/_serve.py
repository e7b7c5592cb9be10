"""Serving one sample service: uvicorn for the ASGI ones, werkzeug's threaded server for the Flask one.

Werkzeug comes with Flask (so with the `samples` extra) and serves each request on its own thread, which is what
a WSGI app behind a real server sees; a single-threaded server would turn payments' latency into queueing.
Shutdown is graceful on SIGTERM and SIGINT: uvicorn runs the ASGI lifespan shutdown; the WSGI path stops
accepting, lets the requests being answered finish (up to DRAIN_SECONDS), then exits through SystemExit so the
service's atexit hooks flush their telemetry too.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
import time
from types import FrameType
from typing import Any

from obsbox.samples._services import SERVICES

DRAIN_SECONDS = 10.0  # how long a stopping WSGI service waits for the requests it is answering


def build_app(service: str) -> Any:
    """The service's application, configured (the service calls obsbox.configure itself)."""
    module = importlib.import_module(SERVICES[service].module)
    return module.create_app()


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port). Raises OSError when the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop (TIME_WAIT)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def serve(service: str, *, host: str = "127.0.0.1", port: int = 0, fd: int | None = None,
          exit_with_parent: bool = False) -> None:
    """Serve `service` until SIGTERM/SIGINT. `fd`: an already bound listening socket handed over by the parent.

    The socket is bound before the app is built, so a taken port fails fast, and port 0 works: the first line
    printed says where the service listens.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown sample service {service!r}; the services are: {', '.join(SERVICES)}")
    if exit_with_parent:
        watch_parent()
    sock = socket.socket(fileno=fd) if fd is not None else listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    app = build_app(service)
    print(f"{service} ({SERVICES[service].framework}) listening on http://{url_host}:{bound_port}", flush=True)
    if SERVICES[service].interface == "asgi":
        import uvicorn

        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    else:
        _serve_wsgi(app, bound_host, bound_port, sock)


def _serve_wsgi(app: Any, host: str, port: int, sock: socket.socket) -> None:
    from werkzeug.serving import WSGIRequestHandler, make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per request
    in_flight = 0
    idle = threading.Condition()

    class CountingHandler(WSGIRequestHandler):
        """Counts requests being answered (not idle keep-alive connections), so shutdown can wait for them."""

        def run_wsgi(self) -> None:
            nonlocal in_flight
            with idle:
                in_flight += 1
            try:
                super().run_wsgi()
            finally:
                with idle:
                    in_flight -= 1
                    idle.notify_all()

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = make_server(host, port, app, threaded=True, request_handler=CountingHandler, fd=sock.fileno())
    try:
        server.serve_forever()
    finally:
        server.server_close()  # no new connections; requests already being answered finish (bounded wait)
        with idle:
            if not idle.wait_for(lambda: in_flight == 0, DRAIN_SECONDS):
                logging.getLogger("obsbox.samples").warning(
                    "stopping with %d request(s) still in flight after %.0f s", in_flight, DRAIN_SECONDS)
        sock.close()


def watch_parent() -> None:
    """When the process that started us dies without stopping us, stop too rather than hold the port forever."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()

