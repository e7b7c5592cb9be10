"""The Celery app of the integration test: its worker runs in a separate process (prefork) and configures obsbox
itself (OBSBOX_TEST_WORKER=1); the test process only sends tasks."""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from opentelemetry import trace

import obsbox

if os.environ.get("OBSBOX_TEST_WORKER") == "1":
    obsbox.configure(service_name="shop-worker", console=False, schedule_delay=0.05)

app = Celery("shopjobs", broker=os.environ.get("CELERY_TEST_BROKER", "redis://127.0.0.1:1/0"),
             backend=os.environ.get("CELERY_TEST_BROKER", "redis://127.0.0.1:1/0"))
# One message taken at a time per worker process: the rest wait in the broker, where the backlog gauge sees them.
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
                worker_prefetch_multiplier=1)


@app.task(bind=True, max_retries=1, name="shop.fulfil")
def fulfil(self: Any, order: str) -> str:
    if order == "fail":
        raise ValueError("cannot fulfil")
    if order == "retry" and self.request.retries == 0:
        raise self.retry(countdown=0)
    with trace.get_tracer("shop").start_as_current_span("pack"):  # the task's own span, under its CONSUMER span
        return f"fulfilled {order}"


@app.task(name="shop.restock")
def restock(seconds: float) -> None:
    time.sleep(seconds)
