"""The sample shop end to end: real processes, real HTTP, telemetry checked at a real OTLP receiver.

The tests share one shop (see conftest.py) and run in file order; each one lifts the faults it set.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from obsbox.instrumentation.catalogue import CATALOGUE, SEMCONV_METRICS
from obsbox.samples import faults, load, shop
from obsbox.testing import OTLPReceiver, SpanRecord

from .conftest import (
    BREAKER_MINIMUM_CALLS,
    BREAKER_RESET_S,
    BREAKER_WINDOW_S,
    RETRY_ATTEMPTS,
    http,
    latest_value,
    points,
    wait_for_value,
)

pytestmark = pytest.mark.slow
SERVER = 2  # SpanKind.SERVER in OTLP


def order(running: shop.Shop, key: str | None = None, sku: str = "tea-01",
          trace_id: str | None = None) -> tuple[int, dict[str, object]]:
    headers = {"Idempotency-Key": key} if key else {}
    if trace_id:  # continue a trace of the test's own, to find this order's spans among all others
        headers["traceparent"] = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    status, body, _ = http("POST", running.urls["gateway"] + "/orders", {"sku": sku, "quantity": 1}, headers)
    return status, body


def charges(running: shop.Shop, order_id: str | None = None) -> int:
    query = f"?order_id={order_id}" if order_id else ""
    status, body, _ = http("GET", running.urls["payments"] + "/charges/count" + query)
    assert status == 200
    return int(body["count"])


def test_every_service_answers_and_serves_its_own_pull_endpoint(running_shop: shop.Shop) -> None:
    status, items, _ = http("GET", running_shop.urls["gateway"] + "/catalogue")
    assert status == 200 and {i["sku"] for i in items} >= {"tea-01", "kettle-99"}
    assert order(running_shop)[0] == 201
    for name, url in running_shop.urls.items():
        status, text, headers = http("GET", url + "/metrics")
        assert status == 200, (name, text)
        assert headers["content-type"].startswith("text/plain")
        assert f'service_name="{name}"' in text, name
        # the RED metrics of every service, under the names the dashboards use, labelled by route template
        server = SEMCONV_METRICS["http.server.request.duration"].prometheus_name + "_count{"
        assert any(line.startswith(server) and 'http_route="' in line for line in text.splitlines()), name
    _, orders_text, _ = http("GET", running_shop.urls["orders"] + "/metrics")
    for metric in ("obsbox.circuit_breaker.state", "obsbox.circuit_breaker.calls", "obsbox.retry.calls",
                   "obsbox.pool.size", "obsbox.pool.busy"):
        assert CATALOGUE[metric].prometheus_name + "{" in orders_text, metric
    assert 'breaker_name="payments",breaker_state="closed"} 1' in orders_text
    _, inventory_text, _ = http("GET", running_shop.urls["inventory"] + "/metrics")
    assert 'http_route="/reservations"' in inventory_text  # the plain ASGI app's template, not the raw path
    _, openmetrics, headers = http("GET", running_shop.urls["payments"] + "/metrics",
                                   headers={"Accept": "application/openmetrics-text"})
    assert headers["content-type"].startswith("application/openmetrics-text") and openmetrics.endswith("# EOF\n")
    # exemplars: from a latency bucket straight to the trace of a request that landed in it
    assert any(line.startswith("http_server_request_duration_seconds_bucket{") and '# {trace_id="' in line
               for line in openmetrics.splitlines())


def test_one_order_is_one_trace_across_the_four_services(running_shop: shop.Shop, receiver: OTLPReceiver) -> None:
    status, body = order(running_shop)
    assert status == 201, body
    # orders logs the order id; the log line carries the trace id (and links the two signals)
    placed = receiver.wait_for(lambda: next((r for r in receiver.logs() if r.body == "order placed"
                                             and r.attributes.get("order_id") == body["order_id"]), None))
    trace_id = placed.trace_id
    assert placed.resource.get("service.name") == "orders" and trace_id

    def trace_servers() -> dict[str, SpanRecord] | None:
        spans = {s.resource.get("service.name"): s for s in receiver.spans()
                 if s.trace_id == trace_id and s.kind == SERVER}
        return spans if len(spans) == 4 else None  # type: ignore[return-value]

    by_service = receiver.wait_for(trace_servers, timeout=15)
    gateway = by_service["gateway"]
    assert gateway.parent_span_id == "" and gateway.attributes.get("http.route") == "/orders"  # the trace's root
    assert by_service["orders"].attributes.get("http.route") == "/orders"
    assert by_service["inventory"].attributes.get("http.route") == "/reservations"  # plain ASGI, template told
    assert by_service["payments"].attributes.get("http.route") == "/charges"
    # ONE trace: no server span of this order's work (nothing else ran meanwhile) started a trace of its own.
    strays = [(s.resource.get("service.name"), s.name) for s in receiver.spans()
              if gateway.start_time_unix_nano <= s.start_time_unix_nano <= gateway.end_time_unix_nano
              and s.kind == SERVER and s.trace_id != trace_id]
    assert strays == []
    # The fulfilment task joins the same trace (the worker pool carries the context).
    assert receiver.wait_for(lambda: [s for s in receiver.spans()
                                      if s.trace_id == trace_id and "fulfilment" in s.name] or None)
    # And every service's log lines carry it: from a log line to the trace, and back.
    wanted = {"order placed", "order fulfilled", "charged", "reserved"}

    def trace_logs() -> dict[str, Any] | None:
        found = {r.body: r for r in receiver.logs() if r.trace_id == trace_id}
        return found if wanted <= set(found) else None

    logs = receiver.wait_for(trace_logs, timeout=10)
    assert logs["charged"].resource.get("service.name") == "payments"
    assert logs["reserved"].resource.get("service.name") == "inventory"


def test_a_replayed_idempotency_key_is_charged_once(running_shop: shop.Shop) -> None:
    key = str(uuid.uuid4())
    before = charges(running_shop)
    first_status, first = order(running_shop, key)
    replay_status, replay = order(running_shop, key)
    assert first_status == replay_status == 201
    assert replay["order_id"] == first["order_id"]
    assert charges(running_shop, str(first["order_id"])) == 1
    assert charges(running_shop) == before + 1
    status, body, headers = http("POST", running_shop.urls["orders"] + "/orders", {"sku": "tea-01"},
                                 {"Idempotency-Key": key})
    assert status == 201 and headers.get("idempotent-replayed") == "true" and body == first
    # the same key for another order is refused, not answered with the first order
    status, body, _ = http("POST", running_shop.urls["gateway"] + "/orders", {"sku": "mug-01", "quantity": 1},
                           {"Idempotency-Key": key})
    assert status == 422 and "different order" in body["error"]
    assert charges(running_shop) == before + 1


def test_sold_out_and_unknown_items_are_answers_not_failures(running_shop: shop.Shop) -> None:
    before = charges(running_shop)
    status, body = order(running_shop, sku="kettle-99")
    assert status == 409 and "out of stock" in str(body["error"])
    status, body = order(running_shop, sku="no-such-thing")
    assert status == 404
    assert http("GET", running_shop.urls["gateway"] + "/catalogue/no-such-thing")[0] == 404
    assert charges(running_shop) == before  # nobody was charged for what cannot be delivered


def test_bad_chaos_input_gets_a_clear_error_and_changes_nothing(running_shop: shop.Shop) -> None:
    url = running_shop.urls["payments"]
    try:
        faults.set_faults(url, latency_ms=1)
        before = faults.get_faults(url)
        with pytest.raises(ValueError, match="error_rate must be between 0 and 1"):
            faults.set_faults(url, error_rate=1.5)
        with pytest.raises(ValueError, match="latency_ms must be zero or more"):
            faults.set_faults(url, latency_ms=-10)
        with pytest.raises(ValueError, match="unknown sample service 'billing'"):
            faults.set_faults("billing", error_rate=0.1)
        # The service validates too: a client that skips validation gets a 400 with the message.
        status, body, _ = http("PUT", url + "/admin/faults", {"error_rate": -0.5, "latency_ms": 5})
        assert status == 400 and "error_rate must be between 0 and 1" in body["error"]
        status, body, _ = http("PUT", url + "/admin/faults", {"errors": 0.5})
        assert status == 400 and "unknown fault setting(s) errors" in body["error"]
        assert faults.get_faults(url) == before
    finally:
        assert faults.reset_faults(url) == faults.Faults()


def test_faults_apply_to_business_routes_only(running_shop: shop.Shop) -> None:
    url = running_shop.urls["inventory"]
    try:
        assert faults.set_faults(url, outage=True).outage is True
        status, body, _ = http("GET", url + "/items")
        assert status == 503 and "outage" in body["error"]
        assert http("GET", url + "/metrics")[0] == 200
        assert faults.get_faults(url).outage is True  # the admin endpoint still answers
        faults.set_faults(url, outage=False, latency_ms=300)
        started = time.monotonic()
        assert http("GET", url + "/items")[0] == 200
        assert time.monotonic() - started >= 0.29
    finally:
        faults.reset_faults(url)
    with pytest.raises(ConnectionError, match="is the shop running"):
        faults.get_faults("http://127.0.0.1:9")


def test_inventory_errors_are_retried_visibly_and_exhaustion_is_counted(
    running_shop: shop.Shop, receiver: OTLPReceiver
) -> None:
    retries_before = latest_value(receiver, "obsbox.retry.retries", "orders", **{"retry.name": "inventory"})
    exhausted_before = latest_value(receiver, "obsbox.retry.calls", "orders",
                                    **{"retry.name": "inventory", "retry.outcome": "exhausted"})
    trace_id = uuid.uuid4().hex
    try:
        faults.set_faults(running_shop.urls["inventory"], error_rate=1.0)
        status, body = order(running_shop, trace_id=trace_id)
        assert status == 503 and "inventory unavailable" in str(body["error"])
    finally:
        faults.reset_faults(running_shop.urls["inventory"])
    wait_for_value(receiver, "obsbox.retry.retries", "orders", lambda v: v == retries_before + RETRY_ATTEMPTS - 1,
                   **{"retry.name": "inventory"})
    wait_for_value(receiver, "obsbox.retry.calls", "orders", lambda v: v == exhausted_before + 1,
                   **{"retry.name": "inventory", "retry.outcome": "exhausted"})
    assert points(receiver, "obsbox.retry.backoff", "orders", **{"retry.name": "inventory"})

    def retry_events() -> list[tuple[str, dict[str, object]]] | None:
        events = [e for s in receiver.spans() if s.trace_id == trace_id and s.resource.get("service.name") == "orders"
                  for e in s.events if e[0] == "retry"]
        return events if len(events) >= RETRY_ATTEMPTS - 1 else None

    events = receiver.wait_for(retry_events, timeout=10)
    assert sorted(e[1]["retry.attempt"] for e in events) == list(range(2, RETRY_ATTEMPTS + 1))  # type: ignore[type-var]
    # inventory saw every attempt: its server spans of this order all answered 503

    def inventory_503() -> list[SpanRecord] | None:
        spans = [s for s in receiver.spans() if s.trace_id == trace_id and s.kind == SERVER
                 and s.resource.get("service.name") == "inventory"]
        return spans if len(spans) >= RETRY_ATTEMPTS else None

    spans = receiver.wait_for(inventory_503, timeout=10)
    assert [s.attributes.get("http.response.status_code") for s in spans] == [503] * RETRY_ATTEMPTS


def test_payments_outage_opens_the_breaker_then_it_closes_again(
    running_shop: shop.Shop, receiver: OTLPReceiver
) -> None:
    labels = {"breaker.name": "payments"}

    def calls(outcome: str) -> float:
        return latest_value(receiver, "obsbox.circuit_breaker.calls", "orders", **labels, **{"breaker.outcome": outcome})

    time.sleep(BREAKER_WINDOW_S + 0.5)  # let earlier successes leave the breaker's window
    failures_before, rejected_before = calls("failure"), calls("rejected")
    payments = running_shop.urls["payments"]
    try:
        faults.set_faults(payments, outage=True)
        statuses = [order(running_shop)[0] for _ in range(BREAKER_MINIMUM_CALLS + 3)]
        # the first `minimum_calls` orders reach payments and fail; then the breaker is open and rejects at once
        assert statuses == [502] * BREAKER_MINIMUM_CALLS + [503] * 3, statuses
        wait_for_value(receiver, "obsbox.circuit_breaker.state", "orders", lambda v: v == 1,
                       **labels, **{"breaker.state": "open"})
        assert latest_value(receiver, "obsbox.circuit_breaker.state", "orders",
                            **labels, **{"breaker.state": "closed"}) == 0
        wait_for_value(receiver, "obsbox.circuit_breaker.calls", "orders",
                       lambda v: v == failures_before + BREAKER_MINIMUM_CALLS, **labels, **{"breaker.outcome": "failure"})
        wait_for_value(receiver, "obsbox.circuit_breaker.calls", "orders", lambda v: v == rejected_before + 3,
                       **labels, **{"breaker.outcome": "rejected"})
    finally:
        faults.reset_faults(payments)
    time.sleep(BREAKER_RESET_S + 0.2)
    status, body = order(running_shop)  # the trial call: half-open, succeeds, closes the breaker
    assert status == 201, body
    wait_for_value(receiver, "obsbox.circuit_breaker.state", "orders", lambda v: v == 1,
                   **labels, **{"breaker.state": "closed"})
    for from_state, to_state in (("closed", "open"), ("open", "half_open"), ("half_open", "closed")):
        assert latest_value(receiver, "obsbox.circuit_breaker.transitions", "orders", **labels,
                            **{"breaker.from_state": from_state, "breaker.to_state": to_state}) >= 1, to_state


def test_load_reaches_its_rate_stops_by_itself_and_moves_the_worker_pool(
    running_shop: shop.Shop, receiver: OTLPReceiver
) -> None:
    pool = {"pool.name": "fulfilment"}
    tasks_before = latest_value(receiver, "obsbox.pool.task.duration", "orders", **pool, **{"task.outcome": "success"})
    reports: list[load.Progress] = []
    started = time.monotonic()
    summary = load.run(running_shop.urls["gateway"], rps=20, duration=4, progress=reports.append, seed=1)
    assert time.monotonic() - started < 15  # it stopped by itself
    assert 70 <= summary.requests <= 82, summary.format()  # ~80 at 20/s for 4 s
    assert summary.errors == 0, summary.format()
    assert summary.by_kind["browse"] > summary.by_kind["order"] > 0
    assert sum(summary.by_status.values()) == summary.requests
    assert 0 < summary.p50_ms <= summary.p99_ms
    assert len(reports) >= 3 and reports[-1].sent <= summary.requests
    assert any(r.rate > 0 for r in reports)

    placed = summary.by_status["201"] - summary.by_kind["replay"]  # replays that got 201 place nothing new
    wait_for_value(receiver, "obsbox.pool.task.duration", "orders", lambda v: v >= tasks_before + max(1, placed),
                   timeout=15, **pool, **{"task.outcome": "success"})
    busy = [p.value for p in points(receiver, "obsbox.pool.busy", "orders", **pool)]
    assert max(v or 0 for v in busy) >= 1  # one worker, 150 ms per task, ~5 orders/s: it was busy
    assert latest_value(receiver, "obsbox.pool.size", "orders", **pool) == 1


def test_scrapes_and_fault_administration_are_not_traffic(running_shop: shop.Shop, receiver: OTLPReceiver) -> None:
    # Every test above scraped /metrics and used /admin/faults; none of it may show as requests.
    for url in running_shop.urls.values():
        http("GET", url + "/metrics")
        faults.get_faults(url)
    time.sleep(0.5)
    paths = {s.attributes.get("url.path") or s.attributes.get("http.route") for s in receiver.spans()
             if s.kind == SERVER}
    assert not paths & {"/metrics", "/admin/faults"}, paths
