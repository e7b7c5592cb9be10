"""The instrumentation never raises into the application, and keeps what the SDK keeps (issue #19, defects 1, 8).

Each case here raised in the caller, or lost its span or record, before the fix.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import obsbox
from obsbox import logger
from obsbox.instrumentation.setup import Telemetry
from obsbox.testing import OTLPReceiver


@pytest.fixture
def telemetry(otlp_receiver: OTLPReceiver) -> Iterator[Telemetry]:
    t = obsbox.configure(service_name="never-raise", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    yield t
    t.shutdown()


# pytest's own log capture fails a test on a badly formatted record, so these run in a process of their own.
_BAD_FORMAT = """
import logging, sys, obsbox
t = obsbox.configure(service_name="bad-format", endpoint=sys.argv[1], schedule_delay=0.05,
                     traces_exporter=sys.argv[2], metrics_exporter=sys.argv[2], logs_exporter=sys.argv[2])
logging.getLogger("lib").warning("bad fmt %d", "x")
logging.getLogger("lib").warning("too few %s %s", "x")
def caller():
    logging.getLogger("lib").error("from the caller %d", "x")
caller()
t.shutdown()
print("carried on")
"""


@pytest.mark.parametrize("exporter", ["otlp", "none"])
def test_a_stdlib_record_with_a_bad_format_does_not_raise(otlp_receiver: OTLPReceiver, exporter: str) -> None:
    out = subprocess.run([sys.executable, "-c", _BAD_FORMAT, otlp_receiver.endpoint, exporter],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "carried on" in out.stdout, out.stderr  # TypeError in the caller before
    if exporter == "otlp":
        records = {r.body: r for r in otlp_receiver.logs()}
        assert {"bad fmt %d", "too few %s %s", "from the caller %d"} <= set(records)
        assert records["from the caller %d"].attributes["code.function.name"] == "caller"


@pytest.mark.parametrize("message", ['payload {"a": 1}', "brace {0} without args", "unclosed {", "{x.y}",
                                     "{user:>>>>}"])
def test_loguru_brace_text_with_keyword_fields_does_not_raise(telemetry: Telemetry, otlp_receiver: OTLPReceiver,
                                                              message: str) -> None:
    logger.info(message, user="u")  # KeyError / IndexError / ValueError before
    telemetry.force_flush()
    (record,) = [r for r in otlp_receiver.logs() if r.attributes.get("user") == "u"]
    assert record.body == message


def test_loguru_formatting_with_fields_still_works(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    logger.bind(shop="s").info("order {order_id} placed", order_id=42)
    telemetry.force_flush()
    (record,) = [r for r in otlp_receiver.logs() if r.attributes.get("shop") == "s"]
    assert record.body == "order 42 placed" and record.attributes["order_id"] == 42


def test_get_tracer_with_a_lone_surrogate_does_not_raise(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    tracer = trace.get_tracer("lib\udcff", "1.0\udcff")  # UnicodeEncodeError before
    with tracer.start_as_current_span("work"):
        pass
    telemetry.force_flush()
    (span,) = otlp_receiver.spans("work")
    assert span.scope == "lib\ufffd" or span.scope == "lib?"


# --- defect 8: the whole span was dropped where the SDK keeps it -------------------------------------------------
def _one(otlp_receiver: OTLPReceiver, telemetry: Telemetry, name: str) -> Any:
    telemetry.force_flush()
    spans = otlp_receiver.spans(name)
    assert len(spans) == 1, otlp_receiver.summary()
    return spans[0]


def test_a_non_str_attribute_key_drops_the_attribute_not_the_span(telemetry: Telemetry,
                                                                  otlp_receiver: OTLPReceiver) -> None:
    with trace.get_tracer("t").start_as_current_span("keys") as span:
        span.set_attribute(1, "one")  # type: ignore[arg-type]
        span.set_attribute("kept", "yes")
        span.set_attributes({None: 2, "also": 3})  # type: ignore[dict-item]
    received = _one(otlp_receiver, telemetry, "keys")
    assert received.attributes == {"kept": "yes", "also": 3}


def test_an_event_named_none_keeps_the_span(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    with trace.get_tracer("t").start_as_current_span("events") as span:
        span.add_event(None)  # type: ignore[arg-type]
        span.add_event("real", {"n": 1})
    received = _one(otlp_receiver, telemetry, "events")
    assert [name for name, _ in received.events] == ["", "real"]


def test_a_span_named_none_is_kept_with_an_empty_name(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    with trace.get_tracer("t").start_as_current_span(None) as span:  # type: ignore[arg-type]
        span.set_attribute("marker", "none-name")
    telemetry.force_flush()
    assert [s.name for s in otlp_receiver.spans() if s.attributes.get("marker") == "none-name"] == [""]


def test_lone_surrogates_in_status_and_exception_messages_keep_the_span(telemetry: Telemetry,
                                                                        otlp_receiver: OTLPReceiver) -> None:
    with pytest.raises(ValueError), trace.get_tracer("t").start_as_current_span("surrogate"):
        raise ValueError("bad \udcff byte")
    with trace.get_tracer("t").start_as_current_span("status") as span:
        span.set_status(StatusCode.ERROR, "broken \ud800")
        span.add_event("ev\udc80", {"k\udc81": "v\udc82"})
    received = _one(otlp_receiver, telemetry, "surrogate")
    assert received.status_code == 2 and "bad" in received.status_message
    assert received.events[0][0] == "exception"
    assert "bad" in received.events[0][1]["exception.message"]
    status = _one(otlp_receiver, telemetry, "status")
    assert status.status_message.startswith("broken") and status.events[0][0].startswith("ev")


def test_log_records_with_odd_fields_are_exported(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    logger.bind(**{"weird\udcff": "v\udcff"}).info("odd \udcff")
    logging.getLogger("lib").warning("stdlib \ud800 %s", "arg\udc00")
    telemetry.force_flush()
    bodies = [str(r.body) for r in otlp_receiver.logs()]
    assert any(b.startswith("odd ") for b in bodies) and any(b.startswith("stdlib ") for b in bodies)
