"""Start and stop the whole sample shop as local processes on 127.0.0.1.

>>> from obsbox.samples import shop
>>> with shop.start(ports={"gateway": 0}, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) as running:
...     print(running.urls["gateway"])                                        # doctest: +SKIP
http://127.0.0.1:41234

Each service runs in its own process (`python -m obsbox.samples serve NAME --fd N`). The listening sockets are
bound here, before the children start, and handed over: port 0 gives an ephemeral port with no race, all four start
at once, and each already knows where the others listen (ORDERS_URL, PAYMENTS_URL, INVENTORY_URL). `start()`
returns when every service answers, or raises with the failing service's output. When a Redis server answers at
$OBSBOX_SAMPLES_REDIS_URL (in `env` or this process's environment), the Celery fulfilment worker is started too
(`.processes["fulfilment"]`; it is not one of `.urls`, which are the HTTP services).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from obsbox.samples._deps import REDIS_URL, reachable
from obsbox.samples._serve import listen
from obsbox.samples._services import SERVICES, WORKER


class ShopError(RuntimeError):
    """The shop could not start: a port is taken, or a service failed to come up (the message says which)."""


class Shop:
    """The running shop: `.urls` (service → base URL), `.processes`, `.log_dir`; `.stop()` ends every process.
    `.worker_url`: where the Celery fulfilment worker answers /health and /metrics (None when it does not run)."""

    def __init__(self, urls: dict[str, str], processes: dict[str, subprocess.Popen[bytes]], log_dir: Path | None):
        self.urls = urls
        self.processes = processes
        self.log_dir = log_dir
        self.worker_url: str | None = None
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> Shop:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.processes.items()}

    def stop(self, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGTERM every service (they flush their telemetry), SIGKILL what is left after `timeout`; exit codes."""
        for p in self.processes.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.processes.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()
        return {name: p.returncode for name, p in self.processes.items()}

    def log(self, service: str) -> str:
        """What a service wrote to stdout/stderr (when started with a log_dir)."""
        if self.log_dir is None:
            return ""
        path = self.log_dir / f"{service}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _listen(host: str, port: int) -> socket.socket:
    try:
        return listen(host, port)
    except OSError as exc:
        raise ShopError(f"cannot listen on {host}:{port}: {exc.strerror} (is another shop running? choose "
                        "other ports)") from None


def _answers(url: str, path: str = "/admin/faults") -> bool:
    try:
        with urllib.request.urlopen(url + path, timeout=1.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start(
    *,
    ports: Mapping[str, int] | None = None,
    host: str = "127.0.0.1",
    env: Mapping[str, str] | None = None,
    services: Iterable[str] | None = None,
    log_dir: Path | str | None = None,
    timeout: float = 60.0,
) -> Shop:
    """Start the shop; return once every service answers.

    ports: service → port (default: each service's default port; 0 for an ephemeral one). env: extra
    environment for every service (e.g. OTEL_EXPORTER_OTLP_ENDPOINT, ORDERS_BREAKER_RESET_S). log_dir: where each
    service's output goes (`<service>.log`); None lets it through to this process's stdout/stderr.
    """
    names = list(services) if services is not None else list(SERVICES)
    for name in [*names, *(ports or {})]:
        if name not in SERVICES:
            raise ValueError(f"unknown sample service {name!r}; the services are: {', '.join(SERVICES)}")
    chosen = {name: SERVICES[name].default_port for name in names} | dict(ports or {})
    sockets: dict[str, socket.socket] = {}
    try:
        for name in names:
            sockets[name] = _listen(host, chosen[name])
        url_host = f"[{host}]" if ":" in host else host
        urls = {name: f"http://{url_host}:{s.getsockname()[1]}" for name, s in sockets.items()}
        child_env = dict(os.environ) | {SERVICES[n].url_env: u for n, u in urls.items()} | dict(env or {})
        broker = child_env.get(REDIS_URL, "").strip()
        worker: socket.socket | None = None
        if broker and reachable(broker, 6379):
            worker = sockets[WORKER] = _listen(host, 0)
        child_env["PYTHONUNBUFFERED"] = "1"
        # Each service serves /metrics on its own port; a metrics port inherited from the environment would make
        # all four fight over one.
        child_env.pop("OBSBOX_METRICS_PORT", None)
        logs = Path(log_dir) if log_dir is not None else None
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        shop = Shop(urls, {}, logs)
        try:
            for name, sock in sockets.items():
                out: IO[bytes] | None = None
                if logs is not None:
                    out = (logs / f"{name}.log").open("ab")
                    shop._logs.append(out)
                fd = sock.fileno()
                command = ["worker"] if sock is worker else ["serve", name]
                shop.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "obsbox.samples", *command, "--host", host, "--fd", str(fd),
                     "--exit-with-parent"],
                    env=child_env, pass_fds=(fd,), stdout=out, stderr=subprocess.STDOUT if out else None,
                )
            waiting = dict(shop.urls)
            if worker is not None:
                shop.worker_url = waiting[WORKER] = f"http://{url_host}:{worker.getsockname()[1]}"
            _wait_ready(shop, waiting, timeout)
        except BaseException:
            shop.stop()
            raise
        return shop
    finally:
        for sock in sockets.values():
            sock.close()  # the children hold their own copies


def _wait_ready(shop: Shop, waiting: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while waiting:
        for name, url in list(waiting.items()):
            code = shop.processes[name].poll()
            if code is not None:
                tail = shop.log(name)[-2000:]
                raise ShopError(f"sample service {name} exited with code {code} while starting"
                                + (f":\n{tail}" if tail else ""))
            if _answers(url, "/health" if name == WORKER else "/admin/faults"):
                del waiting[name]
        if waiting and time.monotonic() > deadline:
            raise ShopError(f"sample service(s) {', '.join(waiting)} did not answer within {timeout:.0f} s")
        if waiting:
            time.sleep(0.1)
