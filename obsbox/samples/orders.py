"""orders: places orders (FastAPI). The one service with real dependencies, so it shows every resilience pattern.

    GET  /catalogue          the items for sale (from inventory)
    GET  /catalogue/{sku}    one item
    POST /orders             {"sku": "tea-01", "quantity": 2} with an optional Idempotency-Key header
    GET  /orders/{order_id}  the order and whether it has been fulfilled

Every call to inventory goes through a retry policy (transient failures heal by themselves); a payment goes
through a circuit breaker (when payments is down, fail fast instead of piling up waiting requests); fulfilment is
handed to a worker pool so the customer does not wait for it. Every step shows up in the telemetry without
extra code: retries as span events and `obsbox_retry_*` metrics, the breaker's state as `obsbox_circuit_breaker_*`,
the pool's queue and busy workers as `obsbox_pool_*`.

With Redis ($OBSBOX_SAMPLES_REDIS_URL, see `_deps.py`) orders also uses it as a real service would: inventory's
catalogue answers are cached there for a few seconds (cache-aside: GET, on a miss SET with a TTL), and fulfilment
is handed on to the Celery worker (`fulfilment.py`) over Redis as the broker, which marks the order fulfilled in
Redis. Without Redis it says so once at start and fulfils in its own pool as before.

Tuning (environment): ORDERS_BREAKER_MINIMUM_CALLS, ORDERS_BREAKER_FAILURE_RATIO, ORDERS_BREAKER_WINDOW_S,
ORDERS_BREAKER_RESET_S, ORDERS_RETRY_ATTEMPTS, ORDERS_RETRY_BACKOFF_S, ORDERS_WORKERS, ORDERS_QUEUE_SIZE,
ORDERS_FULFIL_MS, ORDERS_CACHE_TTL_S. Downstream: INVENTORY_URL, PAYMENTS_URL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

import obsbox
from obsbox import AsyncWorkerPool, CircuitBreaker, CircuitOpenError, Retry, RetryExhaustedError, logger
from obsbox.instrumentation.pull import exposition
from obsbox.resilience import PoolFullError, retryable_http_error
from obsbox.samples._chaos import FaultInjector
from obsbox.samples._deps import note, redis_url
from obsbox.samples._env import env_float, env_int, service_url
from obsbox.samples._idempotency import Answer, IdempotencyKeyReused, IdempotencyStore
from obsbox.samples._tasks import QUEUE, TASK, celery_app, fulfilled_key


class OrderRequest(BaseModel):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, ge=1, le=100)


def create_app() -> FastAPI:
    telemetry = obsbox.configure(service_name="orders")
    inventory, payments = service_url("inventory"), service_url("payments")
    client = httpx.AsyncClient(timeout=env_float("ORDERS_TIMEOUT_S", 2.0))

    payments_breaker = CircuitBreaker(
        "payments",
        failure_ratio=env_float("ORDERS_BREAKER_FAILURE_RATIO", 0.5),
        minimum_calls=env_int("ORDERS_BREAKER_MINIMUM_CALLS", 10),
        window=env_float("ORDERS_BREAKER_WINDOW_S", 30.0),
        reset_timeout=env_float("ORDERS_BREAKER_RESET_S", 10.0),
    )
    inventory_retry = Retry(
        "inventory",
        attempts=env_int("ORDERS_RETRY_ATTEMPTS", 3),
        initial_backoff=env_float("ORDERS_RETRY_BACKOFF_S", 0.05),
        max_backoff=1.0,
        # Timeouts, connection errors and 408/429/502/503/504 heal by themselves; other errors would fail again.
        retry_on=retryable_http_error,
    )
    # A full queue makes the request wait up to a second for room (backpressure), then gives up visibly.
    fulfilment = AsyncWorkerPool("fulfilment", workers=env_int("ORDERS_WORKERS", 4),
                                 queue_size=env_int("ORDERS_QUEUE_SIZE", 100), submit_timeout=1.0)
    fulfil_s = env_float("ORDERS_FULFIL_MS", 50.0) / 1000.0
    idempotency = IdempotencyStore(max_entries=10_000)
    orders: OrderedDict[str, dict[str, Any]] = OrderedDict()  # bounded below, like every in-memory store here
    cache_ttl_s = env_int("ORDERS_CACHE_TTL_S", 5)
    broker = redis_url()
    cache: Any = None
    celery: Any = None
    if broker is not None:
        import redis.asyncio

        cache = redis.asyncio.Redis.from_url(broker)
        celery = celery_app(broker)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if broker is None:  # the shop's one line on what it runs without (orders is what would use Redis)
            logger.warning(note())
        yield
        await fulfilment.close()  # let queued fulfilments finish
        await client.aclose()
        if cache is not None:
            await cache.aclose()
        if celery is not None:
            celery.close()  # the broker connections
        telemetry.shutdown()

    faults = FaultInjector("orders")
    app = FastAPI(title="orders", lifespan=lifespan, dependencies=[faults.fastapi_dependency()])

    async def call_inventory(method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        response = await client.request(method, f"{inventory}{path}", json=body)
        if response.status_code >= 500 or response.status_code in (408, 429):
            response.raise_for_status()  # hand the failure to the retry policy, which decides if it is transient
        return response  # a success, or a 4xx that is the answer (unknown item, out of stock)

    async def from_inventory(method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response | Answer:
        """inventory's answer, or the (status, body) to give when it cannot be had."""
        try:
            return await inventory_retry.call_async(call_inventory, method, path, body)
        except RetryExhaustedError:
            logger.error("inventory unavailable after retries", path=path)
            return 503, {"error": "inventory unavailable, try again later"}
        except httpx.HTTPError as exc:  # not worth retrying (e.g. a 500)
            logger.error("inventory failed", path=path, error=type(exc).__name__)
            return 502, {"error": "inventory failed"}

    async def charge(order_id: str, amount_cents: int) -> dict[str, Any]:
        response = await client.post(f"{payments}/charges", json={"order_id": order_id, "amount_cents": amount_cents})
        # 5xx is payments failing, which is what the breaker counts; a 4xx would be about this order only.
        if response.status_code >= 500:
            response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def fulfil(order_id: str) -> None:
        if celery is not None:
            # Celery's send blocks on the broker: in a thread, which carries the trace context along.
            await asyncio.to_thread(celery.send_task, TASK, args=(order_id,), queue=QUEUE)
            return
        await asyncio.sleep(fulfil_s)  # picking and packing
        if order_id in orders:  # it may have been forgotten already under heavy load
            orders[order_id]["status"] = "fulfilled"
        logger.info("order fulfilled", order_id=order_id)

    async def place(order: OrderRequest) -> Answer:
        order_id = f"o-{uuid.uuid4().hex[:12]}"
        reservation = await from_inventory("POST", "/reservations", {"sku": order.sku, "quantity": order.quantity})
        if isinstance(reservation, tuple):
            return reservation
        if reservation.status_code != 201:  # unknown item, out of stock: the customer's answer, not a failure
            return reservation.status_code, reservation.json()
        amount = int(reservation.json()["unit_price_cents"]) * order.quantity
        try:
            payment = await payments_breaker.call_async(charge, order_id, amount)
        except CircuitOpenError:
            logger.warning("payments circuit open, order refused", order_id=order_id)
            return 503, {"error": "payments unavailable, try again later"}
        except httpx.HTTPError as exc:
            logger.error("payment failed", order_id=order_id, error=type(exc).__name__)
            return 502, {"error": "payment failed"}
        orders[order_id] = {"order_id": order_id, "sku": order.sku, "quantity": order.quantity,
                            "amount_cents": amount, "charge_id": payment["charge_id"], "status": "accepted"}
        while len(orders) > 10_000:
            orders.popitem(last=False)
        # The customer does not wait for fulfilment; the pool's queue absorbs bursts (and shows them).
        try:
            await fulfilment.submit(fulfil, order_id)
        except PoolFullError:
            # The customer has paid: accept the order; a real shop would sweep unqueued orders later.
            logger.error("fulfilment queue full, order left for the sweeper", order_id=order_id)
        logger.info("order placed", order_id=order_id, sku=order.sku, amount_cents=amount)
        return 201, dict(orders[order_id])

    async def browse(path: str) -> Response:
        key = f"obsbox-shop:catalogue:{path}"
        if cache is not None:
            cached = await cache.get(key)
            if cached is not None:
                return Response(cached, 200, media_type="application/json")
        answer = await from_inventory("GET", path)
        if isinstance(answer, tuple):
            return JSONResponse(answer[1], answer[0])
        if cache is not None and answer.status_code == 200:
            await cache.set(key, answer.content, ex=cache_ttl_s)
        return Response(answer.content, answer.status_code, media_type="application/json")

    @app.get("/catalogue")
    async def catalogue() -> Response:
        return await browse("/items")

    @app.get("/catalogue/{sku}")
    async def item(sku: str) -> Response:
        return await browse(f"/items/{sku}")

    @app.post("/orders")
    async def place_order(
        order: OrderRequest, idempotency_key: str | None = Header(default=None, max_length=128)
    ) -> JSONResponse:
        if idempotency_key is None:
            status, body = await place(order)
            return JSONResponse(body, status)
        try:
            (status, body), replayed = await idempotency.run(idempotency_key, lambda: place(order),
                                                             fingerprint=order.model_dump_json())
        except IdempotencyKeyReused:
            return JSONResponse({"error": "this Idempotency-Key was used for a different order"}, 422)
        if replayed:
            logger.info("idempotent replay answered from store", order_id=body.get("order_id"))
        return JSONResponse(body, status, headers={"Idempotent-Replayed": str(replayed).lower()})

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str) -> JSONResponse:
        if order_id not in orders:
            return JSONResponse({"error": "no such order"}, 404)
        found = orders[order_id]
        if cache is not None and found["status"] == "accepted" and await cache.exists(fulfilled_key(order_id)):
            found["status"] = "fulfilled"
        return JSONResponse(found)

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        # The pull endpoint, on the service's own port: the series obsbox pushes, for scrapers (OpenMetrics with
        # exemplars when the scraper asks for it).
        body, content_type = exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    faults.add_fastapi_admin(app)
    obsbox.instrument(app, excluded_paths=["/metrics", "/admin/faults"])
    return app
