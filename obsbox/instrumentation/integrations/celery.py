"""Celery: a PRODUCER span where a task is sent and a CONSUMER span where a worker runs it, in the same trace.

>>> from obsbox.instrumentation.integrations import celery as celery_integration
>>> celery_integration.instrument()   # configure() does this when Celery is installed       # doctest: +SKIP

Through Celery's signals (so every app and task is covered, nothing is patched): `before_task_publish` starts the
`send {task}` PRODUCER span and writes the trace context (`traceparent`, `tracestate`, baggage) into the message's
headers; `after_task_publish` ends it. In the worker, `task_prerun` reads the context from the task's request and
starts the `process {task}` CONSUMER span as the current span (so the task's own spans and logs join the
producer's trace); `task_postrun` ends it with the task's state. Attributes per the messaging conventions:
messaging.system `celery`, messaging.operation.name / .type (send, process), messaging.destination.name (the
routing key or queue), messaging.message.id (the task id, spans only) and `celery.task.name`. A task that raised
sets error.type (the exception's class) and status ERROR; a retry is marked `celery.task.state` RETRY. Durations:
`messaging.client.operation.duration` (send) and `messaging.process.duration` (process), seconds, labelled with
the task name and outcome, never its arguments. Retries a task asks for are counted in
`obsbox.celery.task.retries` (by task; the conventions have no such metric, so it is in the catalogue). The
backlog: each worker's main process reads, at every metric export, how many messages wait in the broker for each
queue it consumes (`obsbox.celery.queue.messages`, by queue) — a passive queue declare, which the broker answers
with the queue's length (Redis: LLEN of the queue's list; RabbitMQ: the queue's message count); messages a worker
has already taken (prefetched or running) are not counted. The worker's processes export by themselves: obsbox
restarts its pipeline in each forked (prefork) child. A run that takes at least `slow_operation_threshold` logs one
WARNING line, `slow task: shop.fulfil took 1.234 s`, with the run's attributes and duration_s, in its trace.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from obsbox.instrumentation import _runtime
from obsbox.instrumentation._propagation import extract_context, inject_headers
from obsbox.instrumentation._server import error_type, report
from obsbox.instrumentation.catalogue import CATALOGUE, HTTP_DURATION_BUCKETS, SEMCONV_METRICS
from obsbox.instrumentation.integrations._db import Slow, log_slow

__all__ = ["DISTRIBUTION", "LIBRARY", "SUPPORTED", "instrument", "uninstrument"]

LIBRARY = "celery"
DISTRIBUTION = "celery"
SUPPORTED = ("5.2", "6")

_log = logging.getLogger("obsbox")
_SENDING = "_obsbox_send"  # kept on the headers dict between before_ and after_task_publish
_RUNNING: dict[str, tuple[Any, Any, float, dict[str, Any]]] = {}  # task id -> (span, token, started, attributes)
_PUBLISH: dict[int, tuple[Any, float, dict[str, Any]]] = {}  # id(headers) -> (span, started, attributes)


class _Durations:
    send: metrics.Histogram | None = None
    process: metrics.Histogram | None = None

    @classmethod
    def get(cls) -> tuple[metrics.Histogram, metrics.Histogram]:
        if cls.send is None or cls.process is None:
            meter = metrics.get_meter("obsbox.celery")
            send = SEMCONV_METRICS["messaging.client.operation.duration"]
            process = SEMCONV_METRICS["messaging.process.duration"]
            cls.send = meter.create_histogram(send.name, send.unit, send.description,
                                              explicit_bucket_boundaries_advisory=HTTP_DURATION_BUCKETS)
            cls.process = meter.create_histogram(process.name, process.unit, process.description,
                                                 explicit_bucket_boundaries_advisory=HTTP_DURATION_BUCKETS)
        return cls.send, cls.process


def _destination(properties: Any, fallback: Any = None) -> str | None:
    info = properties if isinstance(properties, dict) else {}
    key = info.get("routing_key") or info.get("queue") or fallback
    return str(key) if key else None


def _before_publish(sender: Any = None, body: Any = None, exchange: Any = None, routing_key: Any = None,
                    headers: Any = None, properties: Any = None, **_: Any) -> None:
    try:
        if headers is None or otel_context.get_current().get(
                getattr(otel_context, "_SUPPRESS_INSTRUMENTATION_KEY", "suppress_instrumentation")):
            return
        task = str(headers.get("task") or sender)
        attributes: dict[str, Any] = {"messaging.system": "celery", "messaging.operation.name": "send",
                                      "messaging.operation.type": "send", "celery.task.name": task}
        destination = routing_key or _destination(properties)
        if destination:
            attributes["messaging.destination.name"] = str(destination)
        span = _runtime.current().tracer.start_span(f"send {task}", kind=SpanKind.PRODUCER,
                                                    attributes={**attributes,
                                                                "messaging.message.id": headers.get("id")})
        carrier: dict[str, str] = {}
        inject_headers(span.get_span_context(), carrier)
        headers.update(carrier)
        _PUBLISH[id(headers)] = (span, time.perf_counter(), attributes)
    except Exception as exc:  # noqa: BLE001
        report(exc)


def _after_publish(sender: Any = None, headers: Any = None, **_: Any) -> None:
    pending = _PUBLISH.pop(id(headers), None) if headers is not None else None
    if pending is None:
        return
    span, started, attributes = pending
    try:
        send, _process = _Durations.get()
        send.record(time.perf_counter() - started, attributes, trace.set_span_in_context(span))
        span.end()
    except Exception as exc:  # noqa: BLE001
        report(exc)


def _prerun(task_id: Any = None, task: Any = None, **_: Any) -> None:
    try:
        request = task.request
        parent = extract_context(getattr(request, "traceparent", None), getattr(request, "tracestate", None),
                                 getattr(request, "baggage", None), request,
                                 lambda r: {k: str(getattr(r, k)) for k in ("traceparent", "tracestate", "baggage")
                                            if getattr(r, k, None)})
        attributes: dict[str, Any] = {"messaging.system": "celery", "messaging.operation.name": "process",
                                      "messaging.operation.type": "process", "celery.task.name": task.name}
        destination = _destination(getattr(request, "delivery_info", None))
        if destination:
            attributes["messaging.destination.name"] = destination
        span = _runtime.current().tracer.start_span(f"process {task.name}", context=parent, kind=SpanKind.CONSUMER,
                                                    attributes={**attributes, "messaging.message.id": str(task_id)})
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        _RUNNING[str(task_id)] = (span, token, time.perf_counter(), attributes)
    except Exception as exc:  # noqa: BLE001
        report(exc)


def _failure(task_id: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    pending = _RUNNING.get(str(task_id))
    if pending is None or exception is None:
        return
    try:
        span = pending[0]
        error = error_type(exception)
        pending[3]["error.type"] = error
        span.set_attribute("error.type", error)
        span.set_status(Status(StatusCode.ERROR, error))
    except Exception as exc:  # noqa: BLE001
        report(exc)


def _postrun(task_id: Any = None, task: Any = None, state: Any = None, **_: Any) -> None:
    pending = _RUNNING.pop(str(task_id), None)
    if pending is None:
        return
    span, token, started, attributes = pending
    try:
        otel_context.detach(token)
        if state:
            span.set_attribute("celery.task.state", str(state))
            attributes["celery.task.state"] = str(state)
        _send, process = _Durations.get()
        elapsed = time.perf_counter() - started
        process.record(elapsed, attributes, trace.set_span_in_context(span))
        if elapsed >= Slow.threshold:
            log_slow("task", str(attributes["celery.task.name"]), attributes, elapsed, span)
        span.end()
    except Exception as exc:  # noqa: BLE001
        report(exc)


class _Retries:
    counter: metrics.Counter | None = None

    @classmethod
    def get(cls) -> metrics.Counter:
        if cls.counter is None:
            spec = CATALOGUE["obsbox.celery.task.retries"]
            cls.counter = metrics.get_meter("obsbox.celery").create_counter(spec.name, spec.unit, spec.description)
        return cls.counter


def _retry(sender: Any = None, **_: Any) -> None:
    try:
        _Retries.get().add(1, {"messaging.system": "celery", "celery.task.name": str(getattr(sender, "name", sender))})
    except Exception as exc:  # noqa: BLE001
        report(exc)


class _Backlog:
    """The queues this worker consumes, and the broker connection that reads their length at each export."""

    app: Any = None
    queues: tuple[str, ...] = ()
    pid = 0  # the worker's main process: a prefork child forked later inherits this state and must not report
    connection: Any = None
    gauge: Any = None


def _worker_ready(sender: Any = None, **_: Any) -> None:
    try:
        app = sender.app
        _Backlog.queues = tuple(app.amqp.queues.consume_from or ()) or (str(app.conf.task_default_queue),)
        _Backlog.app, _Backlog.pid = app, os.getpid()
        if _Backlog.gauge is None:
            spec = CATALOGUE["obsbox.celery.queue.messages"]
            _Backlog.gauge = metrics.get_meter("obsbox.celery").create_observable_gauge(
                spec.name, [_observe_backlog], spec.unit, spec.description)
    except Exception as exc:  # noqa: BLE001
        report(exc)


def _observe_backlog(options: CallbackOptions) -> Iterable[Observation]:
    if _Backlog.app is None or os.getpid() != _Backlog.pid:
        return []
    try:
        from kombu.exceptions import ChannelError

        connection = _Backlog.connection
        if connection is None:
            # Bounded: this runs in the metric exporter's thread, which must not hang on an unreachable broker. One
            # attempt per export (a retry would first wait kombu's 2 s: 2.0 s against 0.06 s per export, measured
            # with nothing listening at the broker's address).
            connection = _Backlog.app.connection_for_read(connect_timeout=2)
            connection.ensure_connection(max_retries=0)
            _Backlog.connection = connection
        channel = connection.default_channel
        observations = []
        for queue in _Backlog.queues:
            try:
                waiting = int(channel.queue_declare(queue=queue, passive=True).message_count)
            except ChannelError:  # kombu's Redis transport: an empty queue's list does not exist
                waiting = 0
            observations.append(Observation(waiting, {"messaging.system": "celery",
                                                      "messaging.destination.name": queue}))
        return observations
    except Exception:  # noqa: BLE001 - the broker is unreachable: no observation, a new connection next time
        _log.debug("obsbox: reading the Celery queues' length failed", exc_info=True)
        stale, _Backlog.connection = _Backlog.connection, None
        if stale is not None:
            try:
                stale.release()
            except Exception:  # noqa: BLE001
                _log.debug("obsbox: closing the broker connection failed", exc_info=True)
        return []


def _signals() -> list[tuple[Any, Any]]:
    from celery import signals

    return [(signals.before_task_publish, _before_publish), (signals.after_task_publish, _after_publish),
            (signals.task_prerun, _prerun), (signals.task_failure, _failure), (signals.task_postrun, _postrun),
            (signals.task_retry, _retry), (signals.worker_ready, _worker_ready)]


def instrument() -> None:
    """Connect the signal handlers (weak=False: they are module functions; connecting again replaces)."""
    for signal, handler in _signals():
        signal.connect(handler, weak=False, dispatch_uid=f"obsbox.{handler.__name__}")


def uninstrument() -> None:
    _Backlog.app = None  # the gauge, registered once, reports nothing more
    if LIBRARY not in sys.modules:
        return
    for signal, handler in _signals():
        signal.disconnect(handler, dispatch_uid=f"obsbox.{handler.__name__}")
