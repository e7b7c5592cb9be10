"""Export headers are checked when configure() reads them (issue #19, defect 2).

A header value with CR/LF (a token read from a file) used to be accepted; every export then failed, and the failure's
warning, which quoted the header value, was itself exported. Now the bad header is dropped with one warning that
names where it came from and never its value, and export goes on.
"""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace

import obsbox
from obsbox.instrumentation.settings import resolve
from obsbox.testing import OTLPReceiver

SECRET = "SECRET-b7e1"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "obsbox" and r.levelno >= logging.WARNING]


def _export_one(otlp_receiver: OTLPReceiver, name: str, **kwargs: object) -> obsbox.Telemetry:
    t = obsbox.configure(service_name="headers", endpoint=otlp_receiver.endpoint, schedule_delay=0.05,
                         **kwargs)  # type: ignore[arg-type]
    with trace.get_tracer("t").start_as_current_span(name):
        pass
    t.force_flush()
    t.shutdown()
    return t


@pytest.mark.parametrize("value", [f"Bearer {SECRET}\n", f"Bearer {SECRET}\r\nX-Injected: 1", f"a\x00{SECRET}",
                                   f"Bearer {SECRET}\u20ac"])
def test_a_header_value_that_cannot_be_sent_is_dropped_with_one_warning_naming_the_argument(
        otlp_receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture, value: str) -> None:
    caplog.set_level(logging.DEBUG)
    _export_one(otlp_receiver, "after-bad-header", traces_headers={"authorization": value, "x-tenant": "acme"})
    assert otlp_receiver.spans("after-bad-header"), otlp_receiver.summary()  # export goes on
    sent = [h for h in otlp_receiver.headers if "x-tenant" in h]
    assert sent and all("authorization" not in h for h in sent)
    warnings = [w for w in _warnings(caplog) if "traces_headers argument" in w]
    assert len(warnings) == 1 and "authorization" in warnings[0]
    assert not any(SECRET in r.getMessage() for r in caplog.records)
    assert not any(SECRET in str(r.body) or SECRET in str(r.attributes) for r in otlp_receiver.logs())


def test_crlf_through_the_environment_is_dropped_naming_the_variable(
        otlp_receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{SECRET}%0D%0A,x-tenant=acme")
    _export_one(otlp_receiver, "env-headers")
    assert otlp_receiver.spans("env-headers")
    assert all("authorization" not in h for h in otlp_receiver.headers)
    assert any(h.get("x-tenant") == "acme" for h in otlp_receiver.headers)
    (warning,) = [w for w in _warnings(caplog) if "OTEL_EXPORTER_OTLP_HEADERS" in w]
    assert "authorization" in warning
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_a_header_name_that_is_not_a_token_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    settings = resolve({"headers": {"bad name": "v", "good": "w", "x\n": "v"}}, environ={})
    assert settings.export.headers == {"good": "w"}


def test_a_malformed_headers_variable_never_shows_its_value(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = resolve({}, environ={"OTEL_EXPORTER_OTLP_HEADERS": f"{SECRET}-without-equals-sign"})
    assert settings.export.headers == {}
    (warning,) = _warnings(caplog)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in warning and SECRET not in warning


def test_good_headers_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    settings = resolve({}, environ={"OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%3D%3D,x-scope=a b"})
    assert settings.export.headers == {"api-key": "abc==", "x-scope": "a b"} and not _warnings(caplog)


def test_the_sender_never_quotes_a_header_value(otlp_receiver: OTLPReceiver) -> None:
    from obsbox.instrumentation._transport import ExportError, HttpSender

    sender = HttpSender(otlp_receiver.endpoint, {"authorization": f"Bearer {SECRET}\n"}, "none")
    with pytest.raises(ExportError) as caught:
        sender.send("traces", b"", 1.0)
    assert SECRET not in str(caught.value) and not caught.value.retryable
