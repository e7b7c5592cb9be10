"""Every setting with malformed values (issue #19, "Keep the probe"): through each of its variables and as an
argument, a malformed value never raises and never turns telemetry off; it is either read (a value some setting
accepts, such as any text for a name) or left with one warning naming the variable or argument, and then the default
applies. Secrets never appear: header settings never show their value."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace

import obsbox
from obsbox.instrumentation.settings import BY_NAME, SETTINGS, resolve
from obsbox.testing import OTLPReceiver

MALFORMED_TEXT = ["garbage", "-1", "0", "1e999", "nan", "inf", "\x00", "line\r\nbreak", "☃", "9" * 400,
                  "http://[::1", "http://exa mple:4318", "=", ",,", "a=b=c", "true,false", "%ZZ", "\udcff"]
MALFORMED_ARGUMENTS = [object(), 3.5, -7, ["x"], {"k": object()}, b"bytes", True, float("nan"), "\udcff"]


def _obsbox_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "obsbox" and r.levelno >= logging.WARNING]


def _value(settings: object, name: str) -> object:
    return settings.value(name)  # type: ignore[attr-defined]


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.obsbox_env or s.otel_env], ids=lambda s: s.name)
def test_malformed_variables(setting: object, caplog: pytest.LogCaptureFixture) -> None:
    name = setting.name  # type: ignore[attr-defined]
    variables = ((setting.obsbox_env,) if setting.obsbox_env else ()) + setting.otel_env  # type: ignore[attr-defined]
    for variable in variables:
        for text in MALFORMED_TEXT:
            caplog.clear()
            settings = resolve({}, environ={variable: text})  # must not raise
            warnings = [w for w in _obsbox_warnings(caplog) if variable in w]
            assert len(warnings) <= 1, (variable, text, warnings)  # read, or one warning
            if warnings and "left out" not in warnings[0]:
                default = BY_NAME[name].default
                assert _value(settings, name) == default or name == "max_export_batch_size", (variable, text)
                if "headers" in name:
                    assert text[:20] not in warnings[0] or len(text) < 3


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.name not in ("span_processors", "metric_readers")],
                         ids=lambda s: s.name)
def test_malformed_arguments(setting: object, caplog: pytest.LogCaptureFixture) -> None:
    name = setting.name  # type: ignore[attr-defined]
    for value in MALFORMED_ARGUMENTS:
        caplog.clear()
        settings = resolve({name: value}, environ={})  # must not raise
        warnings = [w for w in _obsbox_warnings(caplog) if f"{name} argument" in w]
        assert len(warnings) <= 1, (name, value, warnings)
        if warnings and "left out" not in warnings[0]:
            assert _value(settings, name) == BY_NAME[name].default or name == "max_export_batch_size"


def test_every_variable_malformed_at_once_still_exports(otlp_receiver: OTLPReceiver,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in SETTINGS:
        for variable in ((setting.obsbox_env,) if setting.obsbox_env else ()) + setting.otel_env:
            monkeypatch.setenv(variable, "\x01garbage\r\n")
    t = obsbox.configure(service_name="all-malformed", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    try:
        assert t.enabled
        with trace.get_tracer("t").start_as_current_span("despite-everything"):
            pass
        t.force_flush()
    finally:
        t.shutdown()
    assert otlp_receiver.spans("despite-everything")
