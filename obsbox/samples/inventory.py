"""inventory: stock lookups and reservations, as a plain ASGI application (no framework), the stock in a database.

    GET  /items              every item with price and stock
    GET  /items/{sku}        one item
    POST /reservations       {"sku": "tea-01", "quantity": 2} → 201 {"reservation_id", "unit_price_cents"}, 404
                             for an unknown item, 409 when out of stock

The example for services that speak ASGI directly: `obsbox.instrument(app)` wraps any ASGI callable. The app
handles the lifespan protocol so the server's shutdown flushes the last telemetry. The stock lives in a real
database through SQLAlchemy (`_stock.py`: SQLite by default, $OBSBOX_SAMPLES_DATABASE_URL for PostgreSQL), so each
request's trace shows its queries. The queries run in a thread (asyncio.to_thread carries the trace context),
as blocking database calls in an async service should.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import obsbox
from obsbox import logger
from obsbox.instrumentation.pull import exposition
from obsbox.samples._chaos import FaultInjector
from obsbox.samples._stock import open_stock

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# sku → (name, price in cents, initial stock): the rows a new database starts with. Below the reorder point the
# supplier delivers the initial stock again, so a long demo never runs dry; the kettle is never delivered (a 409).
CATALOGUE: dict[str, tuple[str, int, int]] = {
    "tea-01": ("Assam tea, 250 g", 650, 500),
    "tea-02": ("Sencha tea, 100 g", 900, 300),
    "mug-01": ("Stoneware mug", 1200, 200),
    "pot-01": ("Cast-iron teapot", 4500, 50),
    "kettle-99": ("Gooseneck kettle", 7900, 0),
}
ROUTE_KEY = "obsbox.route"  # where obsbox's ASGI middleware looks for the route template of a plain ASGI app
_ITEM = re.compile(r"^/items/(?P<sku>[^/]+)$")


def create_app() -> ASGIApp:
    telemetry = obsbox.configure(service_name="inventory")
    faults = FaultInjector("inventory")
    stock = open_stock(CATALOGUE)

    async def reserve(body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("sku"), str):
            return 400, {"error": 'expected {"sku": "...", "quantity": n}'}
        sku, quantity = body["sku"], body.get("quantity", 1)
        if not isinstance(quantity, int) or quantity < 1:
            return 400, {"error": "quantity must be a positive integer"}
        slow_s = faults.faults.slow_query_ms / 1000.0  # the slow-query fault (obsbox chaos --slow-query-ms)
        outcome, price = await asyncio.to_thread(stock.reserve, sku, quantity, slow_s)
        if outcome == "unknown":
            return 404, {"error": f"no item {sku}"}
        if outcome == "out of stock":
            return 409, {"error": f"{sku} is out of stock"}
        reservation_id = f"r-{uuid.uuid4().hex[:12]}"
        logger.info("reserved", sku=sku, quantity=quantity, reservation_id=reservation_id)
        return 201, {"reservation_id": reservation_id, "sku": sku, "quantity": quantity, "unit_price_cents": price}

    def startup() -> None:  # said once serving (the first line the service prints says where it listens)
        logger.info("inventory keeps its stock in {}", stock.engine.dialect.name, database=stock.where)

    def shutdown() -> None:
        stock.close()
        telemetry.shutdown()

    async def handle(template: str, method: str, path: str, receive: Receive) -> tuple[int, Any]:
        if template == "/items" and method == "GET":
            return 200, await asyncio.to_thread(stock.items)
        if template == "/items/{sku}" and method == "GET":
            sku = path.rsplit("/", 1)[1]
            found = await asyncio.to_thread(stock.item, sku)
            return (200, found) if found is not None else (404, {"error": f"no item {sku}"})
        if template == "/reservations" and method == "POST":
            try:
                body = json.loads(await read_body(receive) or b"null")
            except ValueError:
                return 400, {"error": "the body must be JSON"}
            return await reserve(body)
        return 405, {"error": f"{method} is not allowed here"}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, startup, shutdown)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/metrics":
            # The pull endpoint on the service's own port (OpenMetrics with exemplars when the scraper asks).
            headers = dict(scope["headers"])
            body, content_type = exposition(headers.get(b"accept", b"").decode("latin-1"))
            await send_bytes(send, 200, body, content_type)
            return
        if path == "/admin/faults":
            client = scope.get("client")
            status, payload = faults.admin(method, await read_body(receive), client[0] if client else None)
            await send_json(send, status, payload)
            return
        template = route_template(path)
        if template is None:
            await send_json(send, 404, {"error": "not found"})  # unrouted: obsbox counts all of these as one route
            return
        # Without a framework nobody else knows the route: tell obsbox the template, so the metrics say
        # /items/{sku} rather than one series per item.
        scope[ROUTE_KEY] = template
        injection = await faults.inject_async(path)
        if injection is not None and injection.status is not None:
            await send_json(send, injection.status, {"error": injection.message})
            return
        await send_json(send, *await handle(template, method, path, receive))

    return obsbox.instrument(app, excluded_paths=["/metrics", "/admin/faults"])


def route_template(path: str) -> str | None:
    if path in ("/items", "/reservations"):
        return path
    return "/items/{sku}" if _ITEM.match(path) else None


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def send_json(send: Send, status: int, payload: Any) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), "application/json")


async def send_bytes(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Receive, send: Send, on_startup: Callable[[], None],
                   on_shutdown: Callable[[], None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            on_startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            on_shutdown()  # close the database, flush the last spans and metrics
            await send({"type": "lifespan.shutdown.complete"})
            return
