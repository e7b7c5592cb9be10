"""fulfilment: the Celery worker that picks and packs orders, when the shop has Redis (its broker).

    python -m obsbox.samples worker --port 8084      # OBSBOX_SAMPLES_REDIS_URL=redis://127.0.0.1:6379/0

orders sends the task `shop.fulfil` (by name: orders does not import this module's task code) over the Redis
broker; obsbox's Celery integration carries the trace context in the message, so the worker's `process shop.fulfil`
span joins the order's trace. The task marks the order fulfilled in Redis, where orders reads it back. The worker
runs Celery's thread pool and answers /health (200 once Celery says it is ready) and /metrics on its own port,
so the engine can supervise it like the HTTP services.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
from typing import Any

from obsbox.samples._tasks import FULFILLED_TTL_S, QUEUE, TASK, celery_app, fulfilled_key


def serve_worker(*, host: str = "127.0.0.1", port: int = 0, fd: int | None = None, concurrency: int = 4) -> None:
    """Run the worker until SIGTERM/SIGINT (Celery's warm shutdown), with /health and /metrics on host:port."""
    import obsbox
    from obsbox import logger
    from obsbox.samples._deps import REDIS_URL
    from obsbox.samples._env import env_float
    from obsbox.samples._serve import listen

    broker = os.environ.get(REDIS_URL, "").strip()
    if not broker:
        raise SystemExit(f"fulfilment needs {REDIS_URL} (the Redis server that is the Celery broker)")
    sock = socket.socket(fileno=fd) if fd is not None else listen(host, port)
    telemetry = obsbox.configure(service_name="fulfilment")
    # Imported after configure(): obsbox instruments Celery and redis-py as they are imported.
    import redis
    from celery import signals

    app = celery_app(broker)
    store = redis.Redis.from_url(broker)
    pack_s = env_float("ORDERS_FULFIL_MS", 50.0) / 1000.0
    ready = threading.Event()

    @app.task(name=TASK)  # type: ignore[untyped-decorator]
    def fulfil(order_id: str) -> None:
        time.sleep(pack_s)  # picking and packing
        store.set(fulfilled_key(order_id), "1", ex=FULFILLED_TTL_S)
        logger.info("order fulfilled", order_id=order_id)

    signals.worker_ready.connect(lambda **_: ready.set(), weak=False)
    bound_host, bound_port = sock.getsockname()[:2]
    _serve_health(sock, ready)
    print(f"fulfilment (Celery worker) health on http://{bound_host}:{bound_port}/health", flush=True)
    try:
        app.worker_main(["--quiet", "worker", "--pool", "threads", "--concurrency", str(concurrency),
                         "--queues", QUEUE, "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
                         "--without-heartbeat"])
    finally:
        store.close()
        telemetry.shutdown()


def _serve_health(sock: socket.socket, ready: threading.Event) -> None:
    from obsbox.instrumentation.pull import exposition

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path == "/metrics":
                body, content_type = exposition(self.headers.get("Accept") or "")
                status = 200
            elif self.path == "/health":
                status = 200 if ready.is_set() else 503
                body, content_type = (b"ready\n" if status == 200 else b"starting\n"), "text/plain"
            else:
                status, body, content_type = 404, b"not found\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    threading.Thread(target=server.serve_forever, name="fulfilment-health", daemon=True).start()
