"""payments: charges customers (Flask, served by a threaded WSGI server). Stands in for a card processor.

    POST /charges          {"order_id": "o-…", "amount_cents": 1200} → 201 {"charge_id": …}
    GET  /charges/count    how many charges were made (all, or ?order_id=… for one order)

A WSGI example: `obsbox.instrument(app)` is the same one call as for ASGI. The count endpoint lets anyone check that
an order replayed with the same Idempotency-Key was charged once — the property orders must guarantee.
PAYMENTS_BANK_MS sets the simulated processor's latency.
"""

from __future__ import annotations

import atexit
import random
import threading
import time
import uuid
from collections import Counter

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue

import obsbox
from obsbox import logger
from obsbox.instrumentation.pull import exposition
from obsbox.samples._chaos import FaultInjector
from obsbox.samples._env import env_float


def create_app() -> Flask:
    telemetry = obsbox.configure(service_name="payments")
    bank_s = env_float("PAYMENTS_BANK_MS", 15.0) / 1000.0
    app = Flask("payments")
    atexit.register(telemetry.shutdown)  # WSGI has no lifespan: flush the last telemetry when the process exits
    charges_by_order: Counter[str] = Counter()
    total = Counter[str]()  # total["charges"]: every charge ever made
    lock = threading.Lock()  # requests run on many threads

    @app.post("/charges")
    def charge() -> ResponseReturnValue:
        body = request.get_json(silent=True) or {}
        order_id, amount = body.get("order_id"), body.get("amount_cents")
        if not isinstance(order_id, str) or not isinstance(amount, int) or amount <= 0:
            return jsonify(error="order_id (string) and amount_cents (positive integer) are required"), 400
        time.sleep(bank_s * random.uniform(0.5, 1.5))  # the card processor's round trip
        with lock:
            charges_by_order[order_id] += 1
            total["charges"] += 1
            if len(charges_by_order) > 100_000:  # bounded: forget the oldest orders' counts
                del charges_by_order[next(iter(charges_by_order))]
        charge_id = f"ch-{uuid.uuid4().hex[:12]}"
        logger.info("charged", order_id=order_id, amount_cents=amount, charge_id=charge_id)
        return jsonify(charge_id=charge_id, order_id=order_id, amount_cents=amount), 201

    @app.get("/charges/count")
    def charge_count() -> ResponseReturnValue:
        order_id = request.args.get("order_id")
        with lock:
            count = charges_by_order[order_id] if order_id else total["charges"]
        return jsonify(count=count)

    @app.get("/metrics")
    def metrics() -> Response:
        # The pull endpoint on the service's own port (OpenMetrics with exemplars when the scraper asks for it).
        body, content_type = exposition(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    FaultInjector("payments").install_flask(app)
    obsbox.instrument(app, excluded_paths=["/metrics", "/admin/faults"])
    return app
