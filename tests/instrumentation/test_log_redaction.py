"""Secrets never reach the collector through logs (issue #19, defect 7).

Before the fix each of these reached the receiver: a secret nested in a bound field, a request-headers dict logged
as a field, a secret formatted into the message, a record emitted through the OpenTelemetry logs API with
password/api_key attributes, and a `raise_for_status()` URL with ?api_key= in the span status, the exception event
and the error log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests
from opentelemetry import _logs as logs_api
from opentelemetry import trace

import obsbox
from obsbox import logger
from obsbox.instrumentation.setup import Telemetry
from obsbox.testing import OTLPReceiver

SECRET = "s3cr3t-7f0a"


@pytest.fixture
def telemetry(otlp_receiver: OTLPReceiver) -> Iterator[Telemetry]:
    t = obsbox.configure(service_name="redaction", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    yield t
    t.shutdown()


def leaks(receiver: OTLPReceiver, secret: str = SECRET) -> list[str]:
    """Every exported span or log record (all of its text) that contains `secret`."""
    found = [repr(span) for span in receiver.spans() if secret in repr(span)]
    found += [repr(record) for record in receiver.logs() if secret in repr(record)]
    return found


def _exported(telemetry: Telemetry, receiver: OTLPReceiver, marker: str) -> list[object]:
    telemetry.force_flush()
    records = [r for r in receiver.logs() if marker in str(r.body)]
    assert records, receiver.summary()  # the record itself is exported, only the secret is not
    return records


def test_nested_secrets_in_bound_fields(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    logger.bind(creds={"user": "ann", "password": SECRET}, deep=[{"auth": {"token": SECRET}}]).info("nested")
    (record,) = _exported(telemetry, otlp_receiver, "nested")
    assert "ann" in record.attributes["creds"] and not leaks(otlp_receiver)  # type: ignore[attr-defined]


def test_a_headers_dict_logged_as_a_field(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    from starlette.datastructures import Headers

    raw = {"Authorization": f"Bearer {SECRET}", "Cookie": f"session={SECRET}", "X-Api-Key": SECRET,
           "Accept": "application/json"}
    logger.info("headers dict", headers=raw)
    logger.info("headers object", headers=Headers(raw))
    records = _exported(telemetry, otlp_receiver, "headers")
    assert len(records) == 2 and all("application/json" in str(r.attributes) for r in records)  # type: ignore[attr-defined]
    assert not leaks(otlp_receiver)


def test_secrets_formatted_into_the_message(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    logger.info("login with token {token} for {user}", token=SECRET, user="ann")
    logger.info("calling {url}", url=f"https://api.example.com/v1?api_key={SECRET}&page=2")
    logger.info(f"password={SECRET} inline")  # not a field: nothing to know it by, unless it looks like a query
    telemetry.force_flush()
    bodies = [str(r.body) for r in otlp_receiver.logs()]
    assert "login with token REDACTED for ann" in bodies
    assert "calling https://api.example.com/v1?api_key=REDACTED&page=2" in bodies
    assert not [b for b in bodies if SECRET in b and "inline" not in b]


def test_records_through_the_opentelemetry_logs_api(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    otel_logger = logs_api.get_logger("third.party")
    otel_logger.emit(body="api record", attributes={"password": SECRET, "api_key": SECRET, "user": "ann",
                                                    "url": f"http://x/?token={SECRET}"})
    otel_logger.emit(body=f"GET /a?token={SECRET} HTTP/1.1")
    telemetry.force_flush()
    records = [r for r in otlp_receiver.logs() if r.scope == "third.party"]
    assert len(records) == 2 and records[0].attributes["user"] == "ann"
    assert records[0].attributes["password"] == "REDACTED"
    assert not leaks(otlp_receiver)


def test_raise_for_status_urls_in_span_status_exception_event_and_error_log(
        telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    url = f"{otlp_receiver.endpoint}/missing?api_key={SECRET}&page=1"
    with pytest.raises(requests.HTTPError), trace.get_tracer("t").start_as_current_span("call-partner"):
        try:
            requests.get(url, timeout=5).raise_for_status()  # 404: "... for url: http://...?api_key=..."
        except requests.HTTPError:
            logger.exception("partner call failed")
            logging.getLogger("lib").exception("partner call failed (stdlib)")
            raise
    telemetry.force_flush()
    (span,) = otlp_receiver.spans("call-partner")
    assert span.status_code == 2 and "api_key=REDACTED" in span.status_message
    assert "api_key=REDACTED" in span.events[0][1]["exception.message"]
    errors = [r for r in otlp_receiver.logs() if "partner call failed" in str(r.body)]
    assert len(errors) == 2 and all("api_key=REDACTED" in r.attributes["exception.message"] for r in errors)
    assert not leaks(otlp_receiver)
