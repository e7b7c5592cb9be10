"""The export pipeline: bounded queues filled by the application, drained by one background thread.

>>> pipeline = Pipeline(senders={"traces": sender, "metrics": sender}, resource=resource, ...)  # doctest: +SKIP
>>> pipeline.spans.offer(span)       # from Span.end(): encoded and queued, never blocks  # doctest: +SKIP
>>> pipeline.force_flush(5.0)                                                      # doctest: +SKIP

The application thread encodes each finished span or log record with obsbox's encoder and appends the bytes to a
deque (or counts a drop when the queue is full). The "obsbox-export" thread wakes when a batch is full or the
schedule delay passes, joins the batch into one export request and sends it; it also collects and sends the
metrics every `metric_export_interval`.

Each signal has its own sender (signals with the same endpoint and headers share one); a signal without a sender
is not exported at all: nothing is queued, collected, sent or counted for it, and with no sender at all there is no
worker thread.

Faults: a failing export is retried once (when a retry can help) within the batch time budget, then its items are
dropped and counted in `obsbox.export.items{signal, export.outcome="dropped"}`. The first failure logs ONE warning
per destination; while it stays unreachable the worker only probes it twice a second; meanwhile items wait in the
bounded queue (new ones beyond its size are dropped and counted at once), so a short outage loses little. The first
success afterwards logs one "recovered" message. A queue that overflows while the collector answers (it is slower
than the service) logs one warning a minute at most. A 429 or 503 with Retry-After is retried after that delay
within the batch budget, else the destination is left alone that long (up to MAX_RETRY_AFTER). Nothing here ever
raises into the application.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from obsbox.instrumentation._encode import encode_batch, encode_log, encode_scope, encode_span
from obsbox.instrumentation._metrics import Counter
from obsbox.instrumentation._sanitize import clean_log, clean_span
from obsbox.instrumentation._transport import ExportError, Sender

_log = logging.getLogger("obsbox")

PROBE_INTERVAL = 0.5  # seconds between export attempts while the collector is unreachable
MAX_RETRY_AFTER = 60.0  # a collector's Retry-After is honoured up to this many seconds
OVERFLOW_WARNING_INTERVAL = 60.0  # seconds between two "queue full" warnings at least
RETRY_BACKOFF = 0.2


class LogItem:
    """One log record waiting for export (what the log encoder reads)."""

    __slots__ = ("time", "observed_time", "severity_number", "severity_text", "body", "attributes", "trace_id",
                 "span_id", "flags", "event_name", "scope")

    def __init__(self, time_ns: int, severity_number: int, severity_text: str, body: Any,
                 attributes: dict[str, Any] | None, trace_id: int = 0, span_id: int = 0, flags: int = 0,
                 scope: bytes = b"", observed_time: int = 0, event_name: str = "") -> None:
        self.time = time_ns
        self.observed_time = observed_time or time_ns
        self.severity_number = severity_number
        self.severity_text = severity_text
        self.body = body
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.event_name = event_name
        self.scope = scope

    @classmethod
    def from_api(cls, record: Any, scope_name: str) -> LogItem:
        """From an OpenTelemetry logs-API record (opentelemetry.sdk._logs LogRecord)."""
        severity = record.severity_number
        attributes = dict(record.attributes) if record.attributes else None
        return cls(
            record.timestamp or record.observed_timestamp or time.time_ns(),
            int(getattr(severity, "value", severity or 0)),
            record.severity_text or "",
            record.body,
            attributes,
            record.trace_id or 0,
            record.span_id or 0,
            int(record.trace_flags or 0),
            encode_scope(scope_name),
            record.observed_timestamp or 0,
            getattr(record, "event_name", None) or "",
        )


class Queue:
    """A bounded queue of one signal's finished items. `offer()` is the application's whole cost of exporting one.

    Items are encoded as they are offered (a few microseconds) rather than in the export thread. The process pays
    the same CPU either way, but what waits for export is then bytes, which the garbage collector ignores: queued
    span objects used to be scanned by every collection and promoted to the oldest generation, which under load
    cost more than the encoding itself.
    """

    __slots__ = ("signal", "items", "max_size", "batch_size", "dropped", "failed", "_wake", "_encode", "_clean")

    def __init__(self, signal: str, max_size: int, batch_size: int, wake: threading.Event,
                 encode: Callable[[Any], bytes], clean: Callable[[Any], Any] = lambda item: item) -> None:
        self.signal = signal
        self.items: deque[tuple[bytes, bytes]] = deque()  # (encoded scope, encoded item)
        self.max_size = max_size
        self.batch_size = batch_size
        self.dropped = 0  # dropped (queue full, or not encodable); the worker moves it into the export counter
        self.failed = 0  # items that could not be encoded
        self._wake = wake
        self._encode = encode
        self._clean = clean

    def offer(self, item: Any) -> None:
        """Queue a finished span or log record (anything with `scope` that `encode` takes); never raises."""
        items = self.items
        n = len(items)
        if n >= self.max_size:
            self.dropped += 1
            return
        encoded: bytes | None
        try:
            encoded = self._encode(item)
        except Exception:  # noqa: BLE001 - never raise into the application
            encoded = self._encode_cleaned(item)
            if encoded is None:
                return
        items.append((item.scope, encoded))
        if n + 1 == self.batch_size:
            self._wake.set()

    def _encode_cleaned(self, item: Any) -> bytes | None:
        """An item the encoder refused (a key that is not a str, a name None, a lone surrogate): exported as the
        SDK would export it (see _sanitize); dropped and counted only if even that fails."""
        try:
            return self._encode(self._clean(item))
        except Exception:  # noqa: BLE001 - never raise into the application
            self.dropped += 1
            self.failed += 1
            if self.failed == 1:
                _log.warning("obsbox: could not encode a %s item for export; it was dropped (later failures are "
                             "only counted in obsbox.export.items)", self.signal, exc_info=True)
            return None

    on_end = offer  # the span processor protocol (see _processors): the OTLP queue is one implementation

    def take(self, limit: int) -> list[tuple[bytes, bytes]]:
        items = self.items
        out = []
        popleft = items.popleft
        try:
            for _ in range(min(limit, len(items))):
                out.append(popleft())
        except IndexError:  # raced with a reset after fork
            pass
        return out


class _Destination:
    """One sender and its health: failures at one collector never hold back signals sent to another."""

    __slots__ = ("sender", "healthy", "next_probe", "dropped_while_down")

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.healthy = True
        self.next_probe = 0.0
        self.dropped_while_down = 0

    def may_try(self) -> bool:
        return self.healthy or time.monotonic() >= self.next_probe


class Pipeline:
    """One process's exporter: span and log queues, the metrics schedule, the worker thread, the health state."""

    def __init__(
        self,
        *,
        senders: Mapping[str, Sender],
        resource: bytes,
        collect_metrics: Callable[[], tuple[bytes, int] | None],
        export_items: Counter,
        max_queue_size: int,
        max_export_batch_size: int,
        schedule_delay: float,
        export_timeout: float,
        batch_export_timeout: float,
        metric_export_interval: float,
        export_logs: bool = True,
    ) -> None:
        self.senders = dict(senders)  # signal -> sender; a signal missing here is not exported
        self.resource = resource
        self._collect_metrics = collect_metrics
        self.export_items = export_items
        self._max_queue_size = max_queue_size
        self._batch_size = max_export_batch_size
        self._schedule_delay = schedule_delay
        self._export_timeout = export_timeout
        self._batch_budget = batch_export_timeout
        self._metric_interval = metric_export_interval
        self.export_logs = export_logs and "logs" in self.senders
        self.export_traces = "traces" in self.senders
        self._init_state()

    def _init_state(self) -> None:
        self._wake = threading.Event()
        self.spans = Queue("traces", self._max_queue_size, self._batch_size, self._wake, encode_span, clean_span)
        self.logs = Queue("logs", self._max_queue_size, self._batch_size, self._wake, encode_log, clean_log)
        self._reported_drops = {"traces": 0, "logs": 0}
        self._overflow_unwarned = {"traces": 0, "logs": 0}
        self._overflow_quiet_until = {"traces": 0.0, "logs": 0.0}
        self._flush_lock = threading.Condition()
        self._flush_requested = 0
        self._flush_done = 0
        self._stopping = False
        by_sender: dict[int, _Destination] = {}
        self._destinations = {signal: by_sender.setdefault(id(sender), _Destination(sender))
                              for signal, sender in self.senders.items()}
        self._next_metrics = time.monotonic() + self._metric_interval
        self._next_drain = time.monotonic() + self._schedule_delay
        self._thread = threading.Thread(target=self._run, name="obsbox-export", daemon=True)
        if self.senders:  # nothing to export, nothing to run
            self._thread.start()

    @property
    def healthy(self) -> bool:
        """True while every destination answers."""
        return all(d.healthy for d in self._destinations.values())

    # --- control from the application -----------------------------------------------------------------------
    def force_flush(self, timeout: float = 5.0) -> bool:
        """Export everything queued and the metrics now; wait up to `timeout` seconds. True when done."""
        if not self.senders:
            return True
        if not self._thread.is_alive() or self._thread is threading.current_thread():
            return False  # (from the worker itself, waiting for the worker would never end)
        with self._flush_lock:
            self._flush_requested += 1
            wanted = self._flush_requested
            self._wake.set()
            return self._flush_lock.wait_for(lambda: self._flush_done >= wanted, timeout)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Flush, stop the worker and close the connection (idempotent)."""
        if self._stopping:
            return
        self.force_flush(timeout)
        self._stopping = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        for sender in {id(s): s for s in self.senders.values()}.values():
            with contextlib.suppress(Exception):  # closing is best effort
                sender.close()

    def after_fork(self, resource: bytes) -> None:
        """In a forked child: fresh queues, locks and worker; the parent's queued items stay the parent's."""
        self.resource = resource
        for sender in {id(s): s for s in self.senders.values()}.values():
            forget = getattr(sender, "forget", None)
            if forget is not None:
                forget()
        self._init_state()

    # --- the worker ------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            now = time.monotonic()
            self._wake.wait(max(0.0, min(self._next_drain, self._next_metrics) - now))
            self._wake.clear()
            with self._flush_lock:
                flush_upto = self._flush_requested
            # Woken because a queue filled a batch: send full batches only, and the rest with a later one (one
            # request per batch_size items under load, not a full one and then a trickle of small ones). Every
            # schedule_delay, on flush and at shutdown, send everything, so nothing waits longer than that.
            now = time.monotonic()
            everything = now >= self._next_drain or flush_upto > self._flush_done or self._stopping
            if everything:
                self._next_drain = now + self._schedule_delay
            try:
                self._drain(self.spans, everything)
                self._drain(self.logs, everything)
                if "metrics" not in self.senders:
                    self._next_metrics = float("inf")  # (no metrics: wake on the span schedule only)
                elif flush_upto > self._flush_done or self._stopping or time.monotonic() >= self._next_metrics:
                    self._next_metrics = time.monotonic() + self._metric_interval
                    self._export_metrics()
                self._count_queue_drops()
            except Exception:  # noqa: BLE001 - the worker must survive anything
                _log.debug("obsbox: export worker error", exc_info=True)
            if flush_upto > self._flush_done:
                with self._flush_lock:
                    self._flush_done = flush_upto
                    self._flush_lock.notify_all()
            if self._stopping:
                return

    def _drain(self, queue: Queue, everything: bool) -> None:
        destination = self._destinations.get(queue.signal)
        if destination is None:
            queue.items.clear()  # (not exported: nothing should be queued; never let it grow)
            return
        least = 1 if everything else self._batch_size
        while len(queue.items) >= least:
            if not destination.may_try():
                return  # the collector is down: items wait in the (bounded) queue until the next probe
            batch = queue.take(self._batch_size)
            if not batch:
                return
            self._send(queue.signal, len(batch), lambda b=batch: encode_batch(self.resource, b))  # type: ignore[misc]

    def _export_metrics(self) -> None:
        if not self._destinations["metrics"].may_try():
            return  # cumulative metrics: the next export after recovery carries the totals
        collected = self._collect_metrics()
        if collected is not None:
            body, points = collected
            self._send("metrics", points, lambda: body)

    def _count_queue_drops(self) -> None:
        for queue in (self.spans, self.logs):
            if queue.signal not in self._destinations:
                continue
            new = queue.dropped - self._reported_drops[queue.signal]
            if new > 0:
                self._reported_drops[queue.signal] = queue.dropped
                self._dropped(queue.signal, new)
                self._warn_overflow(queue, new)

    def _warn_overflow(self, queue: Queue, new: int) -> None:
        """A full queue loses items like a failed export: say so, once a minute at most. (While the collector is
        unreachable the outage's warning has said it already.)"""
        self._overflow_unwarned[queue.signal] += new
        now = time.monotonic()
        if not self._destinations[queue.signal].healthy or now < self._overflow_quiet_until[queue.signal]:
            return
        _log.warning(
            "obsbox: the %s export queue is full (max_queue_size=%d): %d new items were dropped and counted in "
            "obsbox.export.items; the collector takes them slower than this process makes them",
            queue.signal, queue.max_size, self._overflow_unwarned[queue.signal],
        )
        self._overflow_unwarned[queue.signal] = 0
        self._overflow_quiet_until[queue.signal] = now + OVERFLOW_WARNING_INTERVAL

    def _send(self, signal: str, items: int, body: Callable[[], bytes]) -> None:
        destination = self._destinations[signal]
        deadline = time.monotonic() + self._batch_budget
        encoded = body()
        retries = 1 if destination.healthy else 0  # one retry while things were fine; none while probing an outage
        while True:
            timeout = max(0.05, min(self._export_timeout, deadline - time.monotonic()))
            try:
                destination.sender.send(signal, encoded, timeout)
            except ExportError as err:
                wait = RETRY_BACKOFF if err.retry_after is None else min(err.retry_after, MAX_RETRY_AFTER)
                if err.retryable and retries and time.monotonic() + wait + 0.05 < deadline:
                    retries -= 1
                    time.sleep(wait)
                    continue
                self._failed(destination, err)
                self._dropped(signal, items)
                return
            except Exception as err:  # noqa: BLE001 - a transport bug must not kill the worker
                # Only the type: the message of an unexpected error may quote a header (a credential).
                self._failed(destination, ExportError(type(err).__name__, retryable=False))
                self._dropped(signal, items)
                return
            self._succeeded(destination)
            self.export_items.add(items, {"signal": signal, "export.outcome": "exported"})
            return

    def _dropped(self, signal: str, items: int) -> None:
        self.export_items.add(items, {"signal": signal, "export.outcome": "dropped"})
        destination = self._destinations[signal]
        if not destination.healthy:
            destination.dropped_while_down += items

    def _failed(self, destination: _Destination, err: ExportError) -> None:
        # The collector's Retry-After (429, 503) says when to come back; the queue holds what comes meanwhile.
        wait = PROBE_INTERVAL if err.retry_after is None else max(PROBE_INTERVAL, min(err.retry_after, MAX_RETRY_AFTER))
        destination.next_probe = time.monotonic() + wait
        if destination.healthy:
            destination.healthy = False
            destination.dropped_while_down = 0
            _log.warning(
                "obsbox: cannot export telemetry to %s (%s); dropping it and counting the drops in "
                "obsbox.export.items until the collector answers",
                destination.sender.endpoint, err,
            )

    def _succeeded(self, destination: _Destination) -> None:
        if not destination.healthy:
            destination.healthy = True
            _log.info("obsbox: export to %s recovered; %d items were dropped while it was unreachable",
                      destination.sender.endpoint, destination.dropped_while_down)
