"""What orders and the fulfilment worker agree on: the Celery app over Redis, the task's name and queue, and where
the worker marks an order fulfilled."""

from __future__ import annotations

from typing import Any

QUEUE = "obsbox-shop-fulfilment"
TASK = "shop.fulfil"
FULFILLED_TTL_S = 3600


def fulfilled_key(order_id: str) -> str:
    """Where the worker marks an order fulfilled (orders reads it)."""
    return f"obsbox-shop:fulfilled:{order_id}"


def celery_app(broker: str) -> Any:
    """The shop's Celery app: Redis as the broker, no result backend (orders reads the outcome from Redis)."""
    from celery import Celery

    app = Celery("obsbox-shop", broker=broker)
    app.conf.update(task_default_queue=QUEUE, task_ignore_result=True, broker_connection_retry_on_startup=True,
                    worker_hijack_root_logger=False, task_acks_late=True, worker_prefetch_multiplier=4)
    return app
