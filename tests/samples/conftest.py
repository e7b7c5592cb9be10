"""One running shop for the module that asks for it: four real processes on ephemeral 127.0.0.1 ports, exporting
to a real OTLP receiver in this process, tuned (through the services' environment) to make breakers, retries and
exports fast enough for tests."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obsbox.samples import SERVICES, shop
from obsbox.testing import MetricPoint, OTLPReceiver

BREAKER_MINIMUM_CALLS = 4
BREAKER_WINDOW_S = 3.0
BREAKER_RESET_S = 1.5
RETRY_ATTEMPTS = 3

SHOP_ENV = {
    "OTEL_METRIC_EXPORT_INTERVAL": "300",  # ms
    "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms
    "ORDERS_BREAKER_MINIMUM_CALLS": str(BREAKER_MINIMUM_CALLS),
    "ORDERS_BREAKER_WINDOW_S": str(BREAKER_WINDOW_S),
    "ORDERS_BREAKER_RESET_S": str(BREAKER_RESET_S),
    "ORDERS_RETRY_ATTEMPTS": str(RETRY_ATTEMPTS),
    "ORDERS_RETRY_BACKOFF_S": "0.02",
    "ORDERS_WORKERS": "1",
    "ORDERS_FULFIL_MS": "150",
    "PAYMENTS_BANK_MS": "5",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def running_shop(receiver: OTLPReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[shop.Shop]:
    logs = tmp_path_factory.mktemp("shop-logs")
    env = SHOP_ENV | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    with shop.start(ports={name: 0 for name in SERVICES}, env=env, log_dir=logs) as running:
        yield running
        _dump_logs_on_failure(running, logs)


def _dump_logs_on_failure(running: shop.Shop, logs: Path) -> None:
    for name in SERVICES:
        text = running.log(name)
        if "Traceback" in text:
            print(f"--- {name} log ---\n{text[-3000:]}")


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 10.0) -> tuple[int, Any, dict[str, str]]:
    """(status, decoded JSON or text, lower-cased headers) — never raises for an HTTP status."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, hdrs = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), exc.headers
    lowered = {k.lower(): v for k, v in hdrs.items()}
    try:
        return status, json.loads(raw), lowered
    except ValueError:
        return status, raw.decode(errors="replace"), lowered


def points(receiver: OTLPReceiver, name: str, service: str, **attributes: Any) -> list[MetricPoint]:
    """Every received point of metric `name` from `service` whose attributes include `attributes`."""
    return [p for p in receiver.metrics(name)
            if p.resource.get("service.name") == service
            and all(p.attributes.get(k) == v for k, v in attributes.items())]


def latest_value(receiver: OTLPReceiver, name: str, service: str, **attributes: Any) -> float:
    """The newest value (sums, gauges) or count (histograms) of one series; 0 when it never arrived."""
    found = points(receiver, name, service, **attributes)
    if not found:
        return 0.0
    newest = max(found, key=lambda p: p.time_unix_nano)
    value = newest.count if newest.kind == "histogram" else newest.value
    return float(value or 0)


def wait_for_value(receiver: OTLPReceiver, name: str, service: str, predicate: Any, timeout: float = 10.0,
                   **attributes: Any) -> float:
    """Wait until the series' newest value satisfies `predicate`; return it (fail with the last value seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = latest_value(receiver, name, service, **attributes)
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{attributes} from {service} stayed at {value}")
        time.sleep(0.1)
