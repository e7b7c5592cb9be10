"""Memory is bounded in bytes, not only in entries (issue #19, defect 4).

Before the fix, the encoder's caches kept every attribute encoding up to 4096 entries per table whatever its size
(3,000 spans with a unique 100 kB attribute left 572 MB there), a span kept every attribute and event it was given,
and the sender read a collector's whole response body.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import obsbox
from obsbox import logger
from obsbox.instrumentation import _encode, _server
from obsbox.instrumentation._transport import MAX_RESPONSE_BODY, HttpSender
from obsbox.instrumentation.setup import Telemetry
from obsbox.testing import OTLPReceiver


def _table_bytes(table: dict[Any, Any]) -> int:
    total = 0
    for key, value in table.items():
        for part in key if isinstance(key, tuple) else (key,):
            total += len(part) if isinstance(part, (str, bytes)) else 8
        total += len(value) if isinstance(value, bytes) else len(getattr(value, "encoded", b""))
    return total


def _cached_bytes() -> int:
    return (sum(_table_bytes(t) for t in _encode._CACHES.values()) + _table_bytes(_encode._NAMES)
            + _table_bytes(_server.paths))


@pytest.fixture
def telemetry(otlp_receiver: OTLPReceiver) -> Iterator[Telemetry]:
    t = obsbox.configure(service_name="memory", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    yield t
    t.shutdown()


def test_large_unique_attribute_values_are_not_cached(telemetry: Telemetry, otlp_receiver: OTLPReceiver) -> None:
    tracer = trace.get_tracer("t")
    before = _cached_bytes()
    for i in range(200):
        blob = f"{i:06d}" + "x" * 100_000
        with tracer.start_as_current_span(f"big-{i}" + "n" * 5_000) as span:
            span.set_attribute("payload", blob)
        logger.bind(field=blob).info("large field")
        _server.paths["/" + blob]
    telemetry.force_flush()
    assert len(otlp_receiver.spans()) == 200 and otlp_receiver.spans()[0].attributes["payload"].endswith("x")
    grown = _cached_bytes() - before
    assert grown < 1_000_000, f"caches grew by {grown} bytes for 200 x 100 kB values (60 MB before the fix)"


def test_small_values_are_still_cached(telemetry: Telemetry) -> None:
    tracer = trace.get_tracer("t")
    for _ in range(3):
        with tracer.start_as_current_span("small") as span:
            span.set_attribute("route", "/items/{id}")
    cache = _encode._CACHES[_encode._S_ATTR]
    assert ("route", "/items/{id}") in cache


def _sdk_span(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], build: Any) -> Any:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exporter = InMemorySpanExporter()
    provider = SdkTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("t"))
    (span,) = exporter.get_finished_spans()
    return span


def _build(tracer: Any) -> None:
    with tracer.start_as_current_span("limited", attributes={f"start{i}": i for i in range(3)}) as span:
        for i in range(300):
            span.set_attribute(f"a{i}", "v" * 40)
        span.set_attribute("a0", "changed" * 10)  # an existing key may still change
        span.set_attribute("tags", ["short", "y" * 50])
        for i in range(300):
            span.add_event(f"e{i}", {f"k{j}": j for j in range(200)})


@pytest.mark.parametrize("env", [
    {},
    {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "5", "OTEL_SPAN_EVENT_COUNT_LIMIT": "3",
     "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "10", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "2"},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT": "7", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT": "12"},
], ids=["sdk-defaults", "span-limits", "general-limits"])
def test_span_limits_as_the_sdk_applies_them(monkeypatch: pytest.MonkeyPatch, otlp_receiver: OTLPReceiver,
                                             env: dict[str, str]) -> None:
    sdk = _sdk_span(monkeypatch, env, _build)
    t = obsbox.configure(service_name="limits", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    try:
        _build(trace.get_tracer("t"))
        t.force_flush()
    finally:
        t.shutdown()
    (ours,) = otlp_receiver.spans("limited")
    sdk_attributes = {k: list(v) if isinstance(v, tuple) else v for k, v in sdk.attributes.items()}
    assert ours.attributes == sdk_attributes
    assert [name for name, _ in ours.events] == [e.name for e in sdk.events]
    assert [attrs for _, attrs in ours.events] == [dict(e.attributes) for e in sdk.events]


def test_an_invalid_limit_warns_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from obsbox.instrumentation._limits import SpanLimits

    limits = SpanLimits.from_env({"OTEL_SPAN_EVENT_COUNT_LIMIT": "many"})
    assert limits.events == 128
    assert any("OTEL_SPAN_EVENT_COUNT_LIMIT" in r.getMessage() for r in caplog.records)


class _HugeBody:
    """An HTTP server answering 200 with a body of `size` bytes, counting what it managed to send."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {self.size}\r\n\r\n".encode())
            chunk = b"z" * 65536
            try:
                while self.sent < self.size:
                    conn.sendall(chunk)
                    self.sent += len(chunk)
            except OSError:
                pass  # the client hung up

    def close(self) -> None:
        self._sock.close()


def test_the_sender_reads_a_bounded_part_of_a_huge_response_body() -> None:
    server = _HugeBody(300 * 1024 * 1024)
    try:
        sender = HttpSender(f"http://127.0.0.1:{server.port}", {}, "none")
        sender.send("traces", b"", 10.0)  # a 200: exported
        sender.close()
        deadline = time.monotonic() + 5
        while server._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        # What the kernel's socket buffers absorbed, plus the part read: a few MB, not 300 MB.
        assert server.sent < 32 * 1024 * 1024, server.sent
        assert MAX_RESPONSE_BODY <= 64 * 1024
    finally:
        server.close()
