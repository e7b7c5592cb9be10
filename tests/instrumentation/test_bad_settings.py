"""A bad setting never turns telemetry off (issue #19, defect 6): one warning naming the argument or variable, then
the next source in line or the default. Before the fix `http://[::1` turned all telemetry off with a traceback,
`http://exa mple:4318` failed only at export, a batch size above the queue size was taken silently, and
OTEL_PROPAGATORS=bogus made `import obsbox` raise."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from opentelemetry import trace

import obsbox
from obsbox.instrumentation.settings import resolve
from obsbox.testing import OTLPReceiver


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "obsbox" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("bad", ["http://[::1", "http://[::1]:99999", "http://exa mple:4318", "http://-bad-:4318",
                                 "http://a..b:4318", "http://host:port"])
def test_a_bad_endpoint_argument_warns_naming_it_and_the_next_source_applies(
        otlp_receiver: OTLPReceiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
        bad: str) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    t = obsbox.configure(service_name="bad-endpoint", endpoint=bad, schedule_delay=0.05)
    try:
        assert t.enabled
        with trace.get_tracer("t").start_as_current_span("still-exported"):
            pass
        t.force_flush()
    finally:
        t.shutdown()
    assert otlp_receiver.spans("still-exported")
    (warning,) = [w for w in _warnings(caplog) if "endpoint argument" in w]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in warning  # what is used instead
    assert not any("telemetry is off" in w for w in _warnings(caplog))


def test_a_bad_endpoint_variable_warns_naming_it_and_the_default_applies(caplog: pytest.LogCaptureFixture) -> None:
    settings = resolve({}, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://[::1"})
    assert settings.export.endpoint is None and settings.export.otlp_endpoint == "http://127.0.0.1:4318"
    (warning,) = _warnings(caplog)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in warning and "default" in warning


@pytest.mark.parametrize("good", ["http://[::1]:4318", "https://otel-collector.example.com", "http://otel_collector:4318",
                                  "http://10.0.0.1:4318/prefix", "http://localhost."])
def test_good_endpoints_are_taken(caplog: pytest.LogCaptureFixture, good: str) -> None:
    assert resolve({"endpoint": good}, environ={}).export.endpoint == good.rstrip("/")
    assert not _warnings(caplog)


def test_a_batch_larger_than_the_queue_is_cut_to_it_naming_the_variable(caplog: pytest.LogCaptureFixture) -> None:
    settings = resolve({}, environ={"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096", "OTEL_BSP_MAX_QUEUE_SIZE": "1000"})
    assert settings.batching.max_export_batch_size == 1000 and settings.batching.max_queue_size == 1000
    (warning,) = _warnings(caplog)
    assert "OTEL_BSP_MAX_EXPORT_BATCH_SIZE" in warning and "4096" in warning


def test_a_batch_argument_larger_than_the_default_queue(caplog: pytest.LogCaptureFixture) -> None:
    settings = resolve({"max_export_batch_size": 5000}, environ={})
    assert settings.batching.max_export_batch_size == 2048
    (warning,) = _warnings(caplog)
    assert "max_export_batch_size argument" in warning


_PROPAGATORS = """
import obsbox
from opentelemetry import propagate, trace
t = obsbox.configure(service_name="propagators", traces_exporter="none", metrics_exporter="none",
                     logs_exporter="none", console=False)
carrier = {}
with trace.get_tracer("t").start_as_current_span("s"):
    propagate.inject(carrier)
print(sorted(carrier))
"""


@pytest.mark.parametrize("value", ["bogus", "tracecontext,bogus", " , "])
def test_unknown_propagators_do_not_make_import_raise(value: str) -> None:
    env = {"OTEL_PROPAGATORS": value, "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _PROPAGATORS], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr  # ValueError at import before
    assert "traceparent" in out.stdout
    if value.strip(" ,"):
        assert "OTEL_PROPAGATORS" in out.stderr and "bogus" in out.stderr
