"""Every metric obsbox emits beyond the OpenTelemetry semantic conventions, declared once.

The library creates its instruments from these entries, the docs list them, and the tests prove that every metric a
dashboard or alert uses is a semantic-convention metric, a stack component's self-metric, or one of these — and
that the library really emits each of them.

>>> from obsbox.instrumentation.catalogue import CATALOGUE
>>> CATALOGUE["obsbox.circuit_breaker.calls"].prometheus_name
'obsbox_circuit_breaker_calls_total'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InstrumentKind = Literal["counter", "updown_counter", "histogram", "gauge"]

# OpenTelemetry unit → Prometheus suffix, as Prometheus' OTLP translation and our pull endpoint apply it.
# Units in braces ({call}) are annotations and add no suffix.
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its OpenTelemetry name, instrument kind, unit, attribute keys and meaning."""

    name: str
    kind: InstrumentKind
    unit: str
    attributes: tuple[str, ...]
    description: str

    @property
    def prometheus_name(self) -> str:
        """The series name in Prometheus (without _bucket/_sum/_count for histograms)."""
        base = self.name.replace(".", "_")
        suffix = _UNIT_SUFFIX.get(self.unit)
        if suffix and not base.endswith("_" + suffix):
            base = f"{base}_{suffix}"
        if self.kind == "counter":
            base += "_total"
        return base

    @property
    def prometheus_labels(self) -> tuple[str, ...]:
        return tuple(a.replace(".", "_") for a in self.attributes)


def _specs(*specs: MetricSpec) -> dict[str, MetricSpec]:
    return {s.name: s for s in specs}


CATALOGUE: dict[str, MetricSpec] = _specs(
    # --- circuit breakers -------------------------------------------------------------------------------------
    MetricSpec(
        "obsbox.circuit_breaker.state", "gauge", "{state}", ("breaker.name", "breaker.state"),
        "1 for the breaker's current state (closed, open, half_open), 0 for the others.",
    ),
    MetricSpec(
        "obsbox.circuit_breaker.transitions", "counter", "{transition}",
        ("breaker.name", "breaker.from_state", "breaker.to_state"),
        "State changes of a circuit breaker.",
    ),
    MetricSpec(
        "obsbox.circuit_breaker.calls", "counter", "{call}", ("breaker.name", "breaker.outcome"),
        "Calls through a circuit breaker by outcome: success, failure, rejected (breaker open).",
    ),
    # --- retries ----------------------------------------------------------------------------------------------
    MetricSpec(
        "obsbox.retry.calls", "counter", "{call}", ("retry.name", "retry.outcome"),
        "Retried operations by final outcome: success_first_try, success_after_retry, exhausted, "
        "non_retryable (failed with an error the caller does not retry).",
    ),
    MetricSpec(
        "obsbox.retry.retries", "counter", "{retry}", ("retry.name",),
        "Attempts beyond the first (each one follows a backoff).",
    ),
    MetricSpec(
        "obsbox.retry.backoff", "histogram", "s", ("retry.name",),
        "Time slept before each retry.",
    ),
    # --- worker pools -----------------------------------------------------------------------------------------
    MetricSpec("obsbox.pool.size", "gauge", "{worker}", ("pool.name",), "Workers in the pool."),
    MetricSpec("obsbox.pool.busy", "updown_counter", "{worker}", ("pool.name",), "Workers running a task now."),
    MetricSpec(
        "obsbox.pool.queue.depth", "updown_counter", "{task}", ("pool.name",),
        "Tasks submitted and waiting for a worker.",
    ),
    MetricSpec(
        "obsbox.pool.task.duration", "histogram", "s", ("pool.name", "task.outcome"),
        "Run time of each task, by outcome (success, failure).",
    ),
    # --- Celery (beyond the messaging conventions' durations) ------------------------------------------------
    MetricSpec(
        "obsbox.celery.task.retries", "counter", "{retry}", ("messaging.system", "celery.task.name"),
        "Retries Celery tasks asked for (self.retry() or autoretry), counted in the worker by task.",
    ),
    MetricSpec(
        "obsbox.celery.queue.messages", "gauge", "{message}", ("messaging.system", "messaging.destination.name"),
        "Messages waiting in the broker's queue (not yet taken by a worker), read by each worker's main process "
        "for the queues it consumes at every metric export.",
    ),
    # --- the exporter's own health ----------------------------------------------------------------------------
    MetricSpec(
        "obsbox.export.items", "counter", "{item}", ("signal", "export.outcome"),
        "Spans, metric points, log records and profiles (signal=profiles) leaving the process, by outcome: "
        "exported, dropped (queue full, or collector or Pyroscope unreachable after retries).",
    ),
    # --- process (what the semantic conventions do not cover) -------------------------------------------------
    MetricSpec(
        "obsbox.process.file_descriptor.limit", "gauge", "{file_descriptor}", (),
        "The process's soft limit on open file descriptors (RLIMIT_NOFILE).",
    ),
)

# Semantic-convention metrics the library emits (names fixed by OpenTelemetry, listed for the consistency test).
SEMCONV_METRICS: dict[str, MetricSpec] = _specs(
    MetricSpec(
        "http.server.request.duration", "histogram", "s",
        ("http.request.method", "url.scheme", "http.route", "http.response.status_code", "error.type"),
        "Duration of HTTP server requests.",
    ),
    MetricSpec(
        "http.server.active_requests", "updown_counter", "{request}", ("http.request.method", "url.scheme"),
        "HTTP server requests in flight.",
    ),
    MetricSpec(
        "http.client.request.duration", "histogram", "s",
        ("http.request.method", "server.address", "server.port", "http.response.status_code", "error.type"),
        "Duration of outgoing HTTP requests.",
    ),
    MetricSpec(
        "db.client.operation.duration", "histogram", "s",
        ("db.system.name", "db.operation.name", "db.collection.name", "db.query.summary", "db.namespace",
         "server.address", "server.port", "db.response.status_code", "error.type"),
        "Duration of database (and cache) client operations: SQL statements, Redis commands.",
    ),
    MetricSpec(
        "rpc.client.call.duration", "histogram", "s",
        ("rpc.system.name", "rpc.method", "rpc.response.status_code", "server.address", "server.port", "error.type"),
        "Duration of outgoing RPCs (gRPC), until the status arrives.",
    ),
    MetricSpec(
        "rpc.server.call.duration", "histogram", "s",
        ("rpc.system.name", "rpc.method", "rpc.response.status_code", "error.type"),
        "Duration of incoming RPCs (gRPC), until the status is sent.",
    ),
    MetricSpec(
        "messaging.client.operation.duration", "histogram", "s",
        ("messaging.system", "messaging.operation.name", "messaging.operation.type", "messaging.destination.name",
         "celery.task.name", "error.type"),
        "Duration of sending a message (a Celery task).",
    ),
    MetricSpec(
        "messaging.process.duration", "histogram", "s",
        ("messaging.system", "messaging.operation.name", "messaging.operation.type", "messaging.destination.name",
         "celery.task.name", "celery.task.state", "error.type"),
        "Duration of processing a message (running a Celery task), by its final state (SUCCESS, FAILURE, RETRY).",
    ),
    MetricSpec("process.cpu.time", "counter", "s", ("cpu.mode",), "CPU time by mode (user, system)."),
    # Instrument kinds as the semantic conventions define them (model/process/metrics.yaml: updowncounter);
    # in Prometheus these are gauges all the same.
    MetricSpec("process.memory.usage", "updown_counter", "By", (), "Resident set size."),
    MetricSpec("process.thread.count", "updown_counter", "{thread}", (), "Threads of the process."),
    MetricSpec(
        "process.unix.file_descriptor.count", "updown_counter", "{file_descriptor}", (), "Open file descriptors."
    ),
    MetricSpec(
        "cpython.gc.collections", "counter", "{collection}", ("cpython.gc.generation",),
        "Garbage collections by generation.",
    ),
)

# Semantic-convention bucket boundaries for db.client.operation.duration (seconds).
DB_DURATION_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

# Semantic-convention bucket boundaries for HTTP durations (seconds).
HTTP_DURATION_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)
