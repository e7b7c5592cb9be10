"""The four sample services: name, default port, framework and the module that builds each app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
