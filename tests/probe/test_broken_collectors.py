"""Broken collectors under a bounded load (issue #19, "Keep the probe"): refused, blackhole, slow, 429/503 with
Retry-After, a huge and a garbage 200 body. For each, 2,000 spans and 2,000 log records are made as fast as the
application can; nothing may raise, and every item must be accounted for exactly: exported + dropped (counted in
obsbox.export.items) + still queued = made. The time per span and log call and the RSS are measured and printed
(`pytest -s`), never asserted; docs/reliability.md records them.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry import trace

import obsbox
from obsbox import logger
from obsbox.testing import OTLPReceiver

ITEMS = 2000


class RawCollector:
    """A TCP server on 127.0.0.1 that answers every request the way `mode` says: "blackhole" (reads, never
    answers), "garbage" (200 with a body that is no protobuf), "huge" (200 claiming 200 MB and streaming it)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(30)
            while not self._stop.is_set():
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    head += chunk
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                body = head.split(b"\r\n\r\n", 1)[1]
                while len(body) < length:
                    body += conn.recv(65536)
                if self.mode == "blackhole":
                    self._stop.wait(30)
                    return
                if self.mode == "garbage":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n\xff\x00garbage")
                    continue
                size = 200 * 1024 * 1024
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                block, sent = b"z" * 65536, 0
                while sent < size and not self._stop.is_set():
                    conn.sendall(block)
                    sent += len(block)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


def _refused() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


@contextlib.contextmanager
def _collector(kind: str) -> Iterator[str]:
    if kind == "refused":
        yield _refused()
    elif kind in ("blackhole", "garbage", "huge"):
        raw = RawCollector(kind)
        try:
            yield raw.endpoint
        finally:
            raw.close()
    else:
        with OTLPReceiver() as receiver:
            if kind == "slow":
                receiver.delay = 0.5
            elif kind.startswith("status"):
                receiver.fail_status = int(kind[-3:])
                receiver.retry_after = "2"
            yield receiver.endpoint


def _counts(telemetry: obsbox.Telemetry) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for rm in telemetry.collect_metrics().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "obsbox.export.items":
                    for p in m.data.data_points:
                        key = (str(p.attributes["signal"]), str(p.attributes["export.outcome"]))
                        out[key] = out.get(key, 0) + int(p.value)
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 1e6


@pytest.mark.parametrize("kind", ["healthy", "refused", "blackhole", "slow", "status-429", "status-503", "huge",
                                  "garbage"])
def test_a_broken_collector_never_blocks_raises_or_loses_count(kind: str) -> None:
    with _collector(kind) as endpoint:
        t = obsbox.configure(service_name=f"probe-{kind}", endpoint=endpoint, schedule_delay=0.2,
                             export_timeout=0.5, batch_export_timeout=1.0, max_queue_size=512,
                             metrics_exporter="none", console=False)
        try:
            rss_before = _rss_mb()
            tracer = trace.get_tracer("probe")
            span_times, log_times = [], []
            for i in range(ITEMS):
                start = time.perf_counter()
                with tracer.start_as_current_span("probe-span") as span:
                    span.set_attribute("i", i)
                middle = time.perf_counter()
                logger.info("probe record {i}", i=i)
                span_times.append(middle - start)
                log_times.append(time.perf_counter() - middle)
            t.force_flush(3)
            counts = _counts(t)
            queued = {"traces": len(t.pipeline.spans.items), "logs": len(t.pipeline.logs.items)}  # type: ignore[union-attr]
            rss_after = _rss_mb()
        finally:
            t.shutdown(timeout=1)
    for signal in ("traces", "logs"):
        exported = counts.get((signal, "exported"), 0)
        dropped = counts.get((signal, "dropped"), 0)
        # Other records the pipeline itself logged (its warnings) are logs too: at least ITEMS for logs.
        total = exported + dropped + queued[signal]
        assert total == ITEMS if signal == "traces" else total >= ITEMS, (kind, signal, counts, queued)
    p99 = statistics.quantiles(span_times, n=100)[98] * 1e6
    print(f"\n{kind}: span p50 {statistics.median(span_times) * 1e6:.1f} us p99 {p99:.1f} us; "
          f"log p50 {statistics.median(log_times) * 1e6:.1f} us; RSS {rss_before:.0f} -> {rss_after:.0f} MB; "
          f"spans exported {counts.get(('traces', 'exported'), 0)} dropped {counts.get(('traces', 'dropped'), 0)} "
          f"queued {queued['traces']}")
