"""Through the real pipeline: obsbox.configure() exporting OTLP/HTTP to a real receiver that decodes the protobuf.

Proves that every catalogue metric the resilience module and the process metrics own is really emitted, with the
catalogue's name, unit, instrument kind and attribute keys; that the breaker's log line and span events and the
pool's child span arrive too.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import obsbox
from obsbox import AsyncWorkerPool, CircuitBreaker, CircuitOpenError, Retry, RetryExhaustedError, WorkerPool
from obsbox.instrumentation.catalogue import CATALOGUE, SEMCONV_METRICS, MetricSpec
from obsbox.resilience import PoolFullError
from obsbox.resilience._instruments import SECONDS_BUCKETS
from obsbox.testing import MetricPoint, OTLPReceiver

from .conftest import FakeClock

OWNED = [
    spec for name, spec in CATALOGUE.items()
    if name.startswith(("obsbox.circuit_breaker.", "obsbox.retry.", "obsbox.pool.", "obsbox.process."))
]
PROCESS_SEMCONV = [spec for name, spec in SEMCONV_METRICS.items() if name.startswith(("process.", "cpython."))]

# How the OTLP data point kind shows each catalogue instrument kind.
OTLP_KIND = {"counter": ("sum", True), "updown_counter": ("sum", False), "gauge": ("gauge", False),
             "histogram": ("histogram", False)}


class Down(Exception):
    pass


def exercise(clock: FakeClock, prefix: str = "e2e-") -> tuple[dict[str, str], list[object]]:
    """Drive every resilience path once under the names `prefix`*; returns trace/span ids to look for.

    (The global meter provider lives as long as the process, so each test uses its own names.) The second value
    holds the breaker and pools: their gauges report only while they live."""
    ids: dict[str, str] = {}
    keep: list[object] = []
    breaker = CircuitBreaker(f"{prefix}payments", minimum_calls=3, reset_timeout=10.0, clock=clock)
    retry = Retry(f"{prefix}inventory", attempts=2, initial_backoff=0.001, max_backoff=0.001, retry_on=(Down,))

    def down() -> None:
        raise Down()

    from opentelemetry import trace

    t = trace.get_tracer("tests.resilience.pipeline")
    with t.start_as_current_span(f"{prefix}checkout") as span:
        ids["checkout_span"] = format(span.get_span_context().span_id, "016x")
        ids["trace"] = format(span.get_span_context().trace_id, "032x")
        assert breaker.call(lambda: "ok") == "ok"
        for _ in range(2):
            with pytest.raises(Down):
                breaker.call(down)  # then 2 of 3 failed: open
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: "never")
        clock.advance(10.0)
        assert breaker.call(lambda: "trial") == "trial"  # open -> half_open -> closed

        attempts = {"n": 0}

        def second_time_lucky() -> str:
            attempts["n"] += 1
            if attempts["n"] == 1:
                raise Down()
            return "ok"

        assert retry.call(lambda: "first") == "first"
        assert retry.call(second_time_lucky) == "ok"
        with pytest.raises(RetryExhaustedError):
            retry.call(down)
        with pytest.raises(KeyError):
            retry.call({}.__getitem__, "missing")

        release = threading.Event()
        with WorkerPool(f"{prefix}fulfilment", workers=1, queue_size=1) as pool:
            started = threading.Event()

            def block() -> bool:
                started.set()
                return release.wait(5)

            blocker = pool.submit(block)
            assert started.wait(5)
            queued = pool.submit(lambda: "queued")
            with pytest.raises(PoolFullError):
                pool.submit(lambda: "overflow")
            release.set()
            assert blocker.result(timeout=5) is True and queued.result(timeout=5) == "queued"
            with pytest.raises(ZeroDivisionError):
                pool.submit(lambda: 1 / 0).result(timeout=5)

        async def async_part() -> None:
            apool = AsyncWorkerPool(f"{prefix}async", workers=2, queue_size=4)
            keep.append(apool)

            async def ship(n: int) -> int:
                await asyncio.sleep(0)
                return n

            futures = [await apool.submit(ship, n) for n in range(3)]
            assert await asyncio.gather(*futures) == [0, 1, 2]
            await apool.close()

        asyncio.run(async_part())
    keep.extend([breaker, retry, pool])
    return ids, keep


def check_spec(points: list[MetricPoint], spec: MetricSpec) -> None:
    assert points, f"{spec.name} was not received"
    kind, monotonic = OTLP_KIND[spec.kind]
    for p in points:
        assert p.unit == spec.unit, (spec.name, p.unit)
        assert p.kind == kind, (spec.name, p.kind)
        if kind == "sum":
            assert p.monotonic is monotonic, spec.name
        assert set(p.attributes) == set(spec.attributes), (spec.name, p.attributes)


def values(points: list[MetricPoint], key: str) -> dict[object, float | int | None]:
    return {p.attributes[key]: (p.count if p.kind == "histogram" else p.value) for p in points}


def test_every_owned_metric_reaches_a_real_otlp_receiver(otlp_receiver: OTLPReceiver) -> None:
    telemetry = obsbox.configure(service_name="resilience-e2e", endpoint=otlp_receiver.endpoint,
                                 metric_export_interval=60.0)
    try:
        ids, keep = exercise(FakeClock())
        assert telemetry.force_flush()

        def mine(name: str, key: str) -> list[MetricPoint]:
            return [p for p in otlp_receiver.latest(name)
                    if str(p.attributes.get(key, "")).startswith("e2e-")
                    and p.resource.get("service.name") == "resilience-e2e"]

        keys = {"obsbox.circuit_breaker": "breaker.name", "obsbox.retry": "retry.name", "obsbox.pool": "pool.name"}
        for spec in OWNED:
            key = next((k for prefix, k in keys.items() if spec.name.startswith(prefix)), None)
            points = mine(spec.name, key) if key else [
                p for p in otlp_receiver.latest(spec.name) if p.resource.get("service.name") == "resilience-e2e"]
            check_spec(points, spec)
        for spec in PROCESS_SEMCONV:
            check_spec([p for p in otlp_receiver.latest(spec.name)
                        if p.resource.get("service.name") == "resilience-e2e"], spec)

        assert values(mine("obsbox.circuit_breaker.calls", "breaker.name"), "breaker.outcome") == {
            "success": 2, "failure": 2, "rejected": 1}
        transitions = {(p.attributes["breaker.from_state"], p.attributes["breaker.to_state"]): p.value
                       for p in mine("obsbox.circuit_breaker.transitions", "breaker.name")}
        assert transitions == {("closed", "open"): 1, ("open", "half_open"): 1, ("half_open", "closed"): 1,
                               ("half_open", "open"): 0}
        assert values(mine("obsbox.circuit_breaker.state", "breaker.name"), "breaker.state") == {
            "closed": 1, "open": 0, "half_open": 0}
        assert values(mine("obsbox.retry.calls", "retry.name"), "retry.outcome") == {
            "success_first_try": 1, "success_after_retry": 1, "exhausted": 1, "non_retryable": 1}
        assert [p.value for p in mine("obsbox.retry.retries", "retry.name")] == [2]
        assert [p.count for p in mine("obsbox.retry.backoff", "retry.name")] == [2]
        # the seconds histograms carry their own bucket boundaries, not the SDK's millisecond-sized defaults
        for name in ("obsbox.retry.backoff", "obsbox.pool.task.duration"):
            for p in mine(name, "retry.name" if "retry" in name else "pool.name"):
                assert p.explicit_bounds == SECONDS_BUCKETS, name
        pools = {p.attributes["pool.name"]: p.value for p in mine("obsbox.pool.size", "pool.name")}
        assert pools == {"e2e-fulfilment": 0, "e2e-async": 0}  # both shut down before the export
        del keep
        durations = {(p.attributes["pool.name"], p.attributes["task.outcome"]): p.count
                     for p in mine("obsbox.pool.task.duration", "pool.name")}
        assert durations[("e2e-fulfilment", "failure")] == 1 and durations[("e2e-async", "success")] == 3
        assert all(p.value == 0 for p in mine("obsbox.pool.busy", "pool.name") + mine("obsbox.pool.queue.depth",
                                                                                     "pool.name"))

        spans = otlp_receiver.wait_for(lambda: otlp_receiver.spans("e2e-fulfilment task"))
        assert all(s.trace_id == ids["trace"] and s.parent_span_id == ids["checkout_span"] for s in spans)
        async_spans = otlp_receiver.spans("e2e-async task")
        assert len(async_spans) == 3 and all(s.parent_span_id == ids["checkout_span"] for s in async_spans)
        (checkout,) = otlp_receiver.spans("e2e-checkout")
        changes = [a for name, a in checkout.events if name == "circuit_breaker.state_change"]
        assert [(a["breaker.from_state"], a["breaker.to_state"]) for a in changes] == [
            ("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
        retries = [a for name, a in checkout.events if name == "retry"]
        assert [a["retry.attempt"] for a in retries] == [2, 2]

        opened = otlp_receiver.wait_for(lambda: [
            r for r in otlp_receiver.logs() if "e2e-payments: closed -> open" in str(r.body)])
        assert opened[0].severity_text.upper().startswith("WARN")
        assert opened[0].attributes.get("breaker_name") == "e2e-payments"
        assert opened[0].attributes.get("to_state") == "open"
        assert opened[0].trace_id == ids["trace"]  # the log line is correlated with the span that tripped it
    finally:
        telemetry.shutdown()


def test_pull_endpoint_serves_the_catalogues_prometheus_names(otlp_receiver: OTLPReceiver) -> None:
    """The same metrics scraped from /metrics carry the Prometheus names and labels dashboards and alerts use."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    telemetry = obsbox.configure(service_name="resilience-pull", endpoint=otlp_receiver.endpoint,
                                 metrics_port=0, metric_export_interval=60.0)
    try:
        assert telemetry.metrics_port
        _, keep = exercise(FakeClock(), prefix="pull-")
        with urllib.request.urlopen(f"http://127.0.0.1:{telemetry.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        for spec in OWNED + PROCESS_SEMCONV:
            wanted = spec.prometheus_name
            names = ({f"{wanted}_bucket", f"{wanted}_sum", f"{wanted}_count"} if spec.kind == "histogram"
                     else {wanted})
            found = [s for s in samples if s.name in names and s.labels.get("service_name") == "resilience-pull"]
            assert found, f"{wanted} not served"
            for s in found:
                assert set(spec.prometheus_labels) <= set(s.labels), (wanted, s.labels)
        opened = [s for s in samples if s.name == "obsbox_circuit_breaker_transitions_total"
                  and s.labels.get("breaker_name") == "pull-payments" and s.labels.get("breaker_from_state") == "closed"
                  and s.labels.get("breaker_to_state") == "open"]
        assert [s.value for s in opened] == [1.0]
        del keep
    finally:
        telemetry.shutdown()
