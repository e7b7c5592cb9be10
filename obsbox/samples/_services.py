"""The four sample services: name, default port, framework and the module that builds each app."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from typing import Literal

from obsbox.stack.model import ProcessSpec


@dataclass(frozen=True)
class ServiceInfo:
    """One sample service. `interface` says how it is served: uvicorn for ASGI, a threaded server for WSGI."""

    name: str
    default_port: int
    framework: str
    interface: Literal["asgi", "wsgi"]
    module: str

    @property
    def url_env(self) -> str:
        """The environment variable other services read this service's base URL from (e.g. ORDERS_URL)."""
        return f"{self.name.upper()}_URL"


SERVICES: dict[str, ServiceInfo] = {
    s.name: s
    for s in (
        ServiceInfo("gateway", 8080, "FastAPI + httpx", "asgi", "obsbox.samples.gateway"),
        ServiceInfo("orders", 8081, "FastAPI + httpx", "asgi", "obsbox.samples.orders"),
        ServiceInfo("payments", 8082, "Flask (WSGI)", "wsgi", "obsbox.samples.payments"),
        ServiceInfo("inventory", 8083, "plain ASGI", "asgi", "obsbox.samples.inventory"),
    )
}

# What running the sample shop here (native runtime) and the load generator import: the `samples` extra.
SHOP_MODULES = ("fastapi", "flask", "httpx", "uvicorn", "sqlalchemy", "redis")
WORKER_MODULES = ("celery", "redis")
# The Celery fulfilment worker: not an HTTP service of the shop, but supervised like one (/health on its port).
WORKER = "fulfilment"
WORKER_PORT = 8084
LOAD_MODULES = ("httpx",)
INSTALL_SAMPLES = "pip install 'obsbox[samples]'"


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """Those of `modules` this Python cannot import (looked up, not imported)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(modules: tuple[str, ...], what: str) -> None:
    """MissingPackageError, with the `pip install` line, when a module `what` needs is not installed."""
    from obsbox.stack.errors import MissingPackageError

    missing = missing_modules(modules)
    if missing:
        raise MissingPackageError(f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                                  "not installed (they come with the `samples` extra)", install_hint())


def install_hint() -> str:
    """The exact command that installs the `samples` extra into the Python running obsbox."""
    return f"{INSTALL_SAMPLES}   (into this Python: {sys.executable} -m {INSTALL_SAMPLES})"


# Start order: each service after those it calls.
START_ORDER = ("inventory", "payments", "orders", "gateway")


def shop_processes() -> tuple[ProcessSpec, ...]:
    """The sample shop as processes for the engine to run (`obsbox up --samples` on the native runtime): the four
    services, and the Celery fulfilment worker when a Redis server answers at $OBSBOX_SAMPLES_REDIS_URL."""
    from obsbox.samples._deps import redis_url

    services = tuple(
        ProcessSpec(name, SERVICES[name].default_port,
                    (sys.executable, "-m", "obsbox.samples", "serve", name, "--host", "{host}", "--port", "{port}"),
                    health_path="/admin/faults", url_env=SERVICES[name].url_env, requires=SHOP_MODULES,
                    install_hint=install_hint())
        for name in START_ORDER
    )
    if redis_url() is None:
        return services
    worker = ProcessSpec(WORKER, WORKER_PORT,
                         (sys.executable, "-m", "obsbox.samples", "worker", "--host", "{host}", "--port", "{port}"),
                         health_path="/health", requires=WORKER_MODULES, install_hint=install_hint())
    return (worker, *services)
