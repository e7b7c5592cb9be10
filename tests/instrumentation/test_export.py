"""Export under faults: collector down, slow or refusing → bounded queues, counted drops, one warning, one recovery."""

from __future__ import annotations

import logging
import socket
import time

import pytest
from opentelemetry import trace

import obsbox
from obsbox.instrumentation import _pipeline
from obsbox.instrumentation.setup import Telemetry
from obsbox.testing import OTLPReceiver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spans(n: int, name: str = "work") -> None:
    tracer = trace.get_tracer("t")
    for _ in range(n):
        tracer.start_span(name).end()


def _obsbox_warnings(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "obsbox" and r.levelno == level]


def _counted(telemetry: Telemetry, signal: str, outcome: str) -> int:
    for rm in telemetry.collect_metrics().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "obsbox.export.items":
                    return int(sum(p.value for p in m.data.data_points  # type: ignore[union-attr]
                                   if p.attributes == {"signal": signal, "export.outcome": outcome}))
    return 0


def test_collector_down_drops_counts_warns_once_and_recovers(caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pipeline, "PROBE_INTERVAL", 0.2)
    port = _free_port()  # nothing listens here: connection refused
    with caplog.at_level(logging.INFO, logger="obsbox"):
        t = obsbox.configure(service_name="down", endpoint=f"http://127.0.0.1:{port}", console=False,
                             max_queue_size=100, max_export_batch_size=50, schedule_delay=0.05,
                             metric_export_interval=0.2)
        try:
            assert t.pipeline is not None
            _spans(1000)  # far more than the queue holds: the rest is dropped at once, never waited for
            assert len(t.pipeline.spans.items) <= 100
            for _ in range(6):  # several batches and metric exports over ~1 s of outage
                _spans(30)
                t.force_flush(2.0)
                time.sleep(0.1)
            assert _counted(t, "traces", "dropped") >= 900 and len(t.pipeline.spans.items) <= 100
            assert _counted(t, "traces", "exported") == 0
            warnings = _obsbox_warnings(caplog)
            assert len(warnings) == 1, warnings
            assert f"127.0.0.1:{port}" in warnings[0] and "obsbox.export.items" in warnings[0]

            with OTLPReceiver(port=port) as receiver:  # the collector comes back
                _spans(5, "after recovery")
                receiver.wait_for(lambda: t.force_flush(1.0) and receiver.spans("after recovery"), timeout=10)
                t.force_flush()
                t.force_flush()  # carries the final counts
                counts = {p.attributes["export.outcome"]: p.value for p in receiver.latest("obsbox.export.items")
                          if p.attributes["signal"] == "traces"}
                # every span is accounted for: dropped during the outage, or exported once it answered
                assert counts["dropped"] + counts["exported"] == 1000 + 6 * 30 + 5
                assert counts["exported"] == len(receiver.spans()) >= 5
                recovered = [m for m in _obsbox_warnings(caplog, logging.INFO) if "recovered" in m]
                assert len(recovered) == 1
                assert len(_obsbox_warnings(caplog)) == 1
        finally:
            t.shutdown(timeout=2.0)


def test_slow_collector_never_blocks_the_application(otlp_receiver: OTLPReceiver,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    otlp_receiver.delay = 1.5
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="slow", endpoint=otlp_receiver.endpoint, console=False,
                             export_timeout=0.3, batch_export_timeout=0.5, max_queue_size=200,
                             max_export_batch_size=100, schedule_delay=0.05)
        try:
            assert t.pipeline is not None
            _spans(100)
            t.force_flush(0.2)  # the worker is now stuck in a send that times out
            started = time.monotonic()
            _spans(2000)  # while it is stuck, the application carries on: the queue caps, the rest is dropped
            assert len(t.pipeline.spans.items) <= 200
            assert time.monotonic() - started < 5  # generous: it is appends only, the point is "not blocked"
            assert t.force_flush(5.0)
            assert _counted(t, "traces", "dropped") >= 1800
            warnings = _obsbox_warnings(caplog)
            assert len(warnings) == 1 and "timed out" in warnings[0], warnings
            otlp_receiver.delay = 0
            pipeline = t.pipeline
            otlp_receiver.wait_for(lambda: pipeline.force_flush(1.0) and not pipeline.spans.items)  # the backlog
            _spans(3, "fast again")
            assert otlp_receiver.wait_for(lambda: t.force_flush(1.0) and otlp_receiver.spans("fast again"))
        finally:
            t.shutdown(timeout=2.0)


def test_refusing_collector_is_retried_once_then_dropped(otlp_receiver: OTLPReceiver,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    otlp_receiver.fail_status = 503
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="refused", endpoint=otlp_receiver.endpoint, console=False,
                             schedule_delay=0.05, export_logs=False)
        try:
            _spans(10)
            t.force_flush()
            assert otlp_receiver.rejected == 2  # the batch and its one retry
            assert _counted(t, "traces", "dropped") == 10
            (warning,) = _obsbox_warnings(caplog)
            assert "HTTP 503" in warning
        finally:
            otlp_receiver.fail_status = None
            t.shutdown(timeout=2.0)


def test_export_items_counts_what_was_exported(otlp_receiver: OTLPReceiver) -> None:
    t = obsbox.configure(service_name="counted", endpoint=otlp_receiver.endpoint, console=False,
                         schedule_delay=0.05)
    try:
        _spans(7)
        obsbox.logger.info("one record")
        t.force_flush()
        t.force_flush()  # the second export carries the counts of the first
        points = {(p.attributes["signal"], p.attributes["export.outcome"]): p.value
                  for p in otlp_receiver.latest("obsbox.export.items")}
        assert points[("traces", "exported")] == 7
        assert points[("logs", "exported")] == 1
        assert points[("metrics", "exported")] > 0
        assert ("traces", "dropped") not in points
    finally:
        t.shutdown()


def test_export_items_is_emitted_as_the_catalogue_declares_it(otlp_receiver: OTLPReceiver) -> None:
    from obsbox.instrumentation.catalogue import CATALOGUE
    from obsbox.instrumentation.pull import render

    spec = CATALOGUE["obsbox.export.items"]
    t = obsbox.configure(service_name="catalogued", endpoint=otlp_receiver.endpoint, console=False)
    try:
        _spans(1)
        t.force_flush()
        t.force_flush()
        points = otlp_receiver.latest(spec.name)
        assert points
        for p in points:
            assert (p.kind, p.monotonic, p.unit, p.description) == ("sum", True, spec.unit, spec.description)
            assert set(p.attributes) == set(spec.attributes)
            assert p.attributes["signal"] in {"traces", "metrics", "logs"}
            assert p.attributes["export.outcome"] in {"exported", "dropped"}
        exposition = render(t.collect_metrics())
        assert f"# TYPE {spec.prometheus_name} counter" in exposition
        assert all(label in exposition for label in spec.prometheus_labels)
    finally:
        t.shutdown()


def test_the_warning_never_shows_credentials_of_the_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        t = obsbox.configure(service_name="secretive", endpoint=f"http://user:s3cret@127.0.0.1:{port}",
                             console=False, headers={"authorization": "Bearer t0ken"})
        try:
            _spans(1)
            t.force_flush(2.0)
        finally:
            t.shutdown(timeout=1.0)
    (warning,) = _obsbox_warnings(caplog)
    assert f"http://127.0.0.1:{port}" in warning
    assert "s3cret" not in caplog.text and "t0ken" not in caplog.text
