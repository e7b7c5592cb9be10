"""No silent loss (issue #19, defect 5): a full queue says so once, like any other drop, and a collector's
Retry-After is honoured. Before the fix, a slow collector lost tens of thousands of spans with no warning, and a
`Retry-After: 30` was ignored (the worker probed twice a second)."""

from __future__ import annotations

import email.utils
import logging
import time

import pytest
from opentelemetry import trace

import obsbox
from obsbox.instrumentation._transport import parse_retry_after
from obsbox.testing import OTLPReceiver


def _overflow_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "obsbox" and "queue is full" in r.getMessage()]


def _dropped(telemetry: obsbox.Telemetry, signal: str) -> int:
    """obsbox.export.items{signal, export.outcome="dropped"} as the process reports it."""
    return sum(int(point.value) for rm in telemetry.collect_metrics().resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics if m.name == "obsbox.export.items" for point in m.data.data_points
               if point.attributes.get("export.outcome") == "dropped" and point.attributes.get("signal") == signal)


def test_a_full_queue_warns_once_and_counts_exactly(otlp_receiver: OTLPReceiver,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    otlp_receiver.delay = 0.5  # healthy, but slower than the service
    t = obsbox.configure(service_name="overflow", endpoint=otlp_receiver.endpoint, schedule_delay=0.05,
                         max_queue_size=20, max_export_batch_size=10, metrics_exporter="none",
                         logs_exporter="none")
    try:
        tracer = trace.get_tracer("t")
        for burst in range(3):
            for i in range(200):
                with tracer.start_as_current_span(f"s{burst}-{i}"):
                    pass
            time.sleep(0.6)
        t.force_flush(10)
        dropped = _dropped(t, "traces")
    finally:
        t.shutdown()
    received = len(otlp_receiver.spans())
    assert dropped > 0 and received + dropped == 600, (received, dropped)
    (warning,) = _overflow_warnings(caplog)  # one warning for three bursts of overflow
    assert "max_queue_size=20" in warning and "traces" in warning


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(otlp_receiver: OTLPReceiver, status: int) -> None:
    otlp_receiver.fail_status = status
    otlp_receiver.retry_after = "30"
    t = obsbox.configure(service_name="retry-after", endpoint=otlp_receiver.endpoint, schedule_delay=0.05,
                         metrics_exporter="none", logs_exporter="none")
    try:
        tracer = trace.get_tracer("t")
        for i in range(25):  # 2.5 s of traffic: five probes and a retry before the fix
            with tracer.start_as_current_span(f"s{i}"):
                pass
            time.sleep(0.1)
        assert otlp_receiver.rejected == 1
    finally:
        otlp_receiver.fail_status = None
        t.shutdown(timeout=0.5)


def test_retry_after_forms() -> None:
    soon = email.utils.format_datetime(email.utils.localtime().astimezone(), usegmt=False)
    assert parse_retry_after("30") == 30.0 and parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("-1") is None and parse_retry_after("x") is None
    assert 0.0 <= (parse_retry_after(soon) or 0.0) <= 1.0
