"""gateway: the shop's front door (FastAPI + httpx). Everything goes on to orders (ORDERS_URL), which owns the
shop's dependencies.

    GET  /catalogue            the items for sale
    GET  /catalogue/{sku}      one item
    POST /orders               place an order; an Idempotency-Key header is passed on, so a client may retry
    GET  /orders/{order_id}    an order's status

An example of a service that only forwards: `obsbox.instrument(app)` gives it server spans and RED metrics, and the
outgoing httpx calls carry the trace context, so the order's trace continues in orders, payments and inventory.
Run it with `python -m obsbox.samples serve gateway`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response

import obsbox
from obsbox import logger
from obsbox.instrumentation.pull import exposition
from obsbox.samples._chaos import FaultInjector
from obsbox.samples._env import env_float, service_url

# Headers worth passing downstream: the idempotency key makes a retried POST safe end to end.
_FORWARDED = ("idempotency-key", "content-type")


def create_app() -> FastAPI:
    telemetry = obsbox.configure(service_name="gateway")  # endpoint etc. from OTEL_* / OBSBOX_* variables
    orders = service_url("orders")
    # One pooled client for the process: connection reuse matters more than anything else on a gateway.
    client = httpx.AsyncClient(timeout=env_float("GATEWAY_TIMEOUT_S", 5.0))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()
        telemetry.shutdown()  # flush the last spans and metrics before the process ends

    faults = FaultInjector("gateway")
    app = FastAPI(title="gateway", lifespan=lifespan, dependencies=[faults.fastapi_dependency()])

    async def forward(request: Request, url: str) -> Response:
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED}
        try:
            upstream = await client.request(request.method, url, headers=headers, content=await request.body())
        except httpx.HTTPError as exc:
            # Name the failure in the log; the trace id on the record links it to the failed span.
            logger.warning("upstream unreachable", url=url, error=type(exc).__name__)
            return Response('{"error": "upstream unreachable"}', 502, media_type="application/json")
        return Response(upstream.content, upstream.status_code, media_type=upstream.headers.get("content-type"))

    @app.get("/catalogue")
    async def catalogue(request: Request) -> Response:
        return await forward(request, f"{orders}/catalogue")

    @app.get("/catalogue/{sku}")
    async def item(request: Request, sku: str) -> Response:
        return await forward(request, f"{orders}/catalogue/{sku}")

    @app.post("/orders")
    async def place_order(request: Request) -> Response:
        return await forward(request, f"{orders}/orders")

    @app.get("/orders/{order_id}")
    async def get_order(request: Request, order_id: str) -> Response:
        return await forward(request, f"{orders}/orders/{order_id}")

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # The pull endpoint, on the service's own port: the series obsbox pushes, for scrapers (OpenMetrics with
        # exemplars when the scraper asks for it).
        body, content_type = exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    faults.add_fastapi_admin(app)
    # Scrapes and fault administration are not traffic: keep them out of the RED metrics.
    obsbox.instrument(app, excluded_paths=["/metrics", "/admin/faults"])
    return app
