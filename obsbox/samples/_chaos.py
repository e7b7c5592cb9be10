"""The services' side of fault injection: the faults in force, the `/admin/faults` endpoint, and the hooks that
inject errors, latency and outages into each framework's request handling.

This is demo machinery, not something a real service needs; the services keep it to one or two lines. Faults are
injected after routing (a FastAPI dependency, a Flask before_request hook, inside the plain ASGI app's dispatch),
so an injected 503 is a real answer of the real route: it shows in the HTTP metrics under its route template, in
the server span, and it fires the same alerts a real failure would.

The admin endpoint answers only clients on the loopback interface; in a container, where `obsbox chaos` reaches
the service through a published port, OBSBOX_SAMPLES_ADMIN_ANY_HOST=1 opts in to any client.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations of the handlers defined inside the
# methods below at run time, and their types are imported locally.
import asyncio
import json
import os
import random
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from obsbox.samples.faults import ADMIN_PATH, Faults, validate_body

if TYPE_CHECKING:
    import flask

ANY_HOST_ENV = "OBSBOX_SAMPLES_ADMIN_ANY_HOST"
# Never slowed down or failed: operators must be able to look at a service, and lift faults, during an outage.
EXEMPT_PATHS = frozenset({ADMIN_PATH, "/metrics"})


@dataclass(frozen=True)
class Injection:
    """What to do to one request: wait `delay_s`, then (if `status`) answer it with `message` instead."""

    delay_s: float
    status: int | None
    message: str


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    return host == "::1" or host.startswith("127.") or host.startswith("::ffff:127.")


class FaultInjector:
    """The faults of one service. Thread-safe: Flask serves requests on many threads.

    >>> injector = FaultInjector("payments")
    >>> injector.update({"error_rate": 1.0}).error_rate
    1.0
    >>> injector.draw().status
    503
    """

    def __init__(self, service: str, *, seed: int | None = None) -> None:
        self.service = service
        self._faults = Faults()
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.allow_any_host = os.environ.get(ANY_HOST_ENV, "").lower() in ("1", "true", "yes")

    @property
    def faults(self) -> Faults:
        return self._faults

    def update(self, body: Any) -> Faults:
        """Merge validated settings into the faults in force; on bad input raise ValueError and change nothing."""
        if not isinstance(body, dict):
            raise ValueError('the body must be a JSON object such as {"error_rate": 0.4}')
        changes = validate_body(body, self.service)
        with self._lock:
            self._faults = replace(self._faults, **changes)
            return self._faults

    def reset(self) -> Faults:
        with self._lock:
            self._faults = Faults()
            return self._faults

    def draw(self) -> Injection | None:
        """Decide the fate of one request under the faults in force (None: leave it alone)."""
        f = self._faults  # one consistent snapshot: the dataclass is replaced, never mutated
        if not f.active:
            return None
        with self._lock:
            jitter = self._random.uniform(-f.jitter_ms, f.jitter_ms) if f.jitter_ms else 0.0
            fail = f.error_rate > 0 and self._random.random() < f.error_rate
        delay_s = max(0.0, f.latency_ms + jitter) / 1000.0
        if f.outage:
            return Injection(delay_s, 503, f"{self.service} is down (injected outage)")
        if fail:
            return Injection(delay_s, 503, f"{self.service} failed (injected fault, error_rate={f.error_rate})")
        return Injection(delay_s, None, "")

    def admin(self, method: str, body: bytes, client_host: str | None) -> tuple[int, dict[str, Any]]:
        """Serve `/admin/faults`: GET shows, PUT merges (JSON object), DELETE clears. Returns (status, JSON)."""
        if not (self.allow_any_host or _is_loopback(client_host)):
            return 403, {"error": f"fault injection is only open to loopback clients (set {ANY_HOST_ENV}=1)"}
        if method == "GET":
            return 200, self._faults.to_json()
        if method == "DELETE":
            return 200, self.reset().to_json()
        if method == "PUT":
            try:
                faults = self.update(json.loads(body or b"{}"))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError too
                return 400, {"error": str(exc)}
            return 200, faults.to_json()
        return 405, {"error": f"{method} is not allowed; use GET, PUT or DELETE"}

    # --- framework hooks ----------------------------------------------------------------------------------------

    async def inject_async(self, path: str) -> Injection | None:
        """For asyncio services: sleep the injected latency; return the injection if the request must fail."""
        if path in EXEMPT_PATHS:
            return None
        injection = self.draw()
        if injection is None:
            return None
        if injection.delay_s:
            await asyncio.sleep(injection.delay_s)
        return injection if injection.status else None

    def inject_sync(self, path: str) -> Injection | None:
        """For threaded services: as `inject_async`, sleeping the thread."""
        if path in EXEMPT_PATHS:
            return None
        injection = self.draw()
        if injection is None:
            return None
        if injection.delay_s:
            time.sleep(injection.delay_s)
        return injection if injection.status else None

    def fastapi_dependency(self) -> Any:
        """A FastAPI app dependency (`FastAPI(dependencies=[injector.fastapi_dependency()])`) injecting faults."""
        from fastapi import Depends, HTTPException, Request

        async def inject_faults(request: Request) -> None:
            injection = await self.inject_async(request.url.path)
            if injection is not None and injection.status is not None:
                raise HTTPException(injection.status, detail=injection.message)

        return Depends(inject_faults)

    def add_fastapi_admin(self, app: Any) -> None:
        """Add `/admin/faults` (GET, PUT, DELETE) to a FastAPI app."""
        from fastapi import Request
        from fastapi.responses import JSONResponse

        async def admin_faults(request: Request) -> JSONResponse:
            host = request.client.host if request.client else None
            status, payload = self.admin(request.method, await request.body(), host)
            return JSONResponse(payload, status_code=status)

        app.add_api_route(ADMIN_PATH, admin_faults, methods=["GET", "PUT", "DELETE"], include_in_schema=False)

    def install_flask(self, app: "flask.Flask") -> None:
        """Inject faults into a Flask app (after routing) and add `/admin/faults` to it."""
        from flask import Response, request

        def _json(status: int, payload: dict[str, Any]) -> Response:
            return Response(json.dumps(payload), status=status, mimetype="application/json")

        def inject_faults() -> Response | None:
            injection = self.inject_sync(request.path)
            if injection is not None and injection.status is not None:
                return _json(injection.status, {"error": injection.message})
            return None

        def admin_faults() -> Response:
            return _json(*self.admin(request.method, request.get_data(), request.remote_addr))

        app.before_request(inject_faults)
        app.add_url_rule(ADMIN_PATH, "admin_faults", admin_faults, methods=["GET", "PUT", "DELETE"])
