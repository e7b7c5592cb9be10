"""Lean metric instruments for the request path: a histogram and counters that cost about a microsecond.

>>> h = Histogram("http.server.request.duration", "s", "Duration of HTTP server requests.", (0.1, 1.0))
>>> h.record(0.05, {"http.route": "/items/{id}"})
>>> [p.count for p in h.collect(0).data.data_points]
[1]

The SDK's histogram (≈12 µs per record with four attributes) builds a frozenset key, looks up views and reservoirs
under several locks. Here a record is one dict lookup keyed by the attribute items, a bisect into the bucket
boundaries and a few additions under one lock; the span context the caller passes (or the current span) becomes
the bucket's exemplar when sampled — one exemplar per bucket, the newest, as Prometheus shows them. `collect()`
yields the SDK's own data model, so the OTLP encoder and the /metrics endpoint treat these like any SDK metric.
Aggregation is cumulative; the attribute sets are capped (then an `otel.metric.overflow` cell takes the rest).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)
from opentelemetry.trace import SpanContext

MAX_ATTRIBUTE_SETS = 2000
_OVERFLOW: tuple[tuple[str, Any], ...] = (("otel.metric.overflow", True),)
_get_current_span = trace.get_current_span
_time_ns = time.time_ns
_CUMULATIVE = AggregationTemporality.CUMULATIVE

Items = tuple[tuple[str, Any], ...]
Key = Items | frozenset[tuple[str, Any]]  # a cell's attribute items; AttributeSets key by a frozenset


class AttributeSet(dict[str, Any]):
    """A metric attribute set built once and shared (interned) by the request path, carrying its own cell key.

    >>> attrs = AttributeSet({"http.request.method": "GET"})
    >>> attrs.key
    frozenset({('http.request.method', 'GET')})

    Recording with one costs a dict lookup instead of building and hashing a new key tuple of tuples each time:
    the key is a frozenset, which keeps its hash once computed. It must not be changed after it is made (the key
    would no longer match).
    """

    __slots__ = ("key",)

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        super().__init__(attributes)
        self.key: Key = frozenset(self.items())


def _normalize(key: Key) -> Items:
    # Callers may pass the same attributes in different orders: cells are merged by their sorted items.
    return tuple(sorted(key))


class _Cell:
    __slots__ = ("counts", "count", "sum", "min", "max", "exemplars")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")
        self.exemplars: list[tuple[float, int, int, int] | None] = [None] * buckets


class Histogram:
    """Cumulative explicit-bucket histogram with one exemplar per bucket (implements _runtime.DurationRecorder)."""

    __slots__ = ("name", "unit", "description", "bounds", "_cells", "_lock", "start_time")

    def __init__(self, name: str, unit: str, description: str, bounds: Sequence[float]) -> None:
        self.name, self.unit, self.description = name, unit, description
        self.bounds = tuple(bounds)
        self._cells: dict[Key, _Cell] = {}
        self._lock = threading.Lock()
        self.start_time = _time_ns()

    def record(
        self, seconds: float, attributes: Mapping[str, Any], span_context: SpanContext | None = None
    ) -> None:
        key = attributes.key if type(attributes) is AttributeSet else tuple(attributes.items())
        index = bisect_left(self.bounds, seconds)
        if span_context is None:
            span_context = _get_current_span().get_span_context()
        # SpanContext is a tuple (trace_id, span_id, is_remote, trace_flags, trace_state, is_valid); indexing it
        # skips three property calls per record (the layout is pinned by a test).
        sampled = span_context[3] & 1
        with self._lock:
            cell = self._cells.get(key)
            if cell is None:
                if len(self._cells) >= MAX_ATTRIBUTE_SETS:
                    key = _OVERFLOW
                    cell = self._cells.get(key)
                if cell is None:
                    cell = self._cells[key] = _Cell(len(self.bounds) + 1)
            cell.counts[index] += 1
            cell.count += 1
            cell.sum += seconds
            if seconds < cell.min:
                cell.min = seconds
            if seconds > cell.max:
                cell.max = seconds
            if sampled:  # the trace exists in the backend
                cell.exemplars[index] = (seconds, _time_ns(), span_context[0], span_context[1])

    def reset(self) -> None:
        with self._lock:
            self._cells = {}
            self.start_time = _time_ns()

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held) and no inherited counts."""
        self._lock = threading.Lock()
        self.reset()

    def collect(self, now: int) -> Metric:
        with self._lock:
            cells = [(k, c.count, c.sum, c.min, c.max, list(c.counts), list(c.exemplars))
                     for k, c in self._cells.items()]
        merged: dict[Items, list[Any]] = {}
        for key, count, total, lo, hi, counts, exemplars in cells:
            nk = _normalize(key)
            m = merged.get(nk)
            if m is None:
                merged[nk] = [count, total, lo, hi, counts, exemplars]
                continue
            m[0] += count
            m[1] += total
            m[2], m[3] = min(m[2], lo), max(m[3], hi)
            m[4] = [a + b for a, b in zip(m[4], counts, strict=True)]
            m[5] = [b if b is not None and (a is None or b[1] > a[1]) else a for a, b in zip(m[5], exemplars, strict=True)]
        points = [
            HistogramDataPoint(
                attributes=dict(key),
                start_time_unix_nano=self.start_time,
                time_unix_nano=now,
                count=count,
                sum=total,
                bucket_counts=counts,
                explicit_bounds=list(self.bounds),
                min=lo,
                max=hi,
                exemplars=[Exemplar({}, e[0], e[1], e[3], e[2]) for e in exemplars if e is not None],
            )
            for key, (count, total, lo, hi, counts, exemplars) in merged.items()
        ]
        return Metric(self.name, self.description, self.unit,
                      HistogramData(data_points=points, aggregation_temporality=_CUMULATIVE))


class Counter:
    """Cumulative sum per attribute set: monotonic (a counter) or not (an up-down counter).

    Implements _runtime.ActiveRecorder (`add(amount, attributes)`).
    """

    __slots__ = ("name", "unit", "description", "monotonic", "_values", "_lock", "start_time")

    def __init__(self, name: str, unit: str, description: str, monotonic: bool) -> None:
        self.name, self.unit, self.description, self.monotonic = name, unit, description, monotonic
        self._values: dict[Key, int | float] = {}
        self._lock = threading.Lock()
        self.start_time = _time_ns()

    def add(self, amount: int | float, attributes: Mapping[str, Any] | None = None) -> None:
        if type(attributes) is AttributeSet:
            key = attributes.key
        else:
            key = tuple(attributes.items()) if attributes else ()
        with self._lock:
            values = self._values
            if key in values:
                values[key] += amount
            elif len(values) < MAX_ATTRIBUTE_SETS:
                values[key] = amount
            else:
                values[_OVERFLOW] = values.get(_OVERFLOW, 0) + amount

    def value(self, attributes: Mapping[str, Any] | None = None) -> int | float:
        wanted = _normalize(tuple(attributes.items())) if attributes else ()
        return sum(v for k, v in self._items() if _normalize(k) == wanted)

    def reset(self) -> None:
        with self._lock:
            self._values = {}
            self.start_time = _time_ns()

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def _items(self) -> list[tuple[Key, int | float]]:
        with self._lock:
            return list(self._values.items())

    def collect(self, now: int) -> Metric:
        merged: dict[Items, int | float] = {}
        for key, v in self._items():
            nk = _normalize(key)
            merged[nk] = merged.get(nk, 0) + v
        points = [NumberDataPoint(dict(k), self.start_time, now, v) for k, v in merged.items()]
        return Metric(self.name, self.description, self.unit,
                      Sum(data_points=points, aggregation_temporality=_CUMULATIVE, is_monotonic=self.monotonic))


class ActiveRequest(Protocol):
    """A request in flight as the active-requests recorders see it (InFlight, the runtime's fallback)."""

    active: AttributeSet  # the request's http.server.active_requests attributes


class InFlight(Counter):
    """An up-down counter of the requests in flight (`http.server.active_requests`), counted when collected.

    >>> active = InFlight("http.server.active_requests", "{request}", "Number of active HTTP server requests.")
    >>> class R:
    ...     active = AttributeSet({"http.request.method": "GET"})
    >>> request = R()
    >>> active.begin(request); active.value({"http.request.method": "GET"})
    1
    >>> active.end(request); active.value({"http.request.method": "GET"})
    0

    A locked addition at each request's start and end costs about as much as recording its duration. Here `begin`
    files the request's attribute set under the request's id and `end` takes it out: each is one C-level dict
    operation, atomic under the GIL, so threads need no lock and no count is lost; no reference to the request is
    kept. `collect` counts the attribute sets filed; the ones seen before are reported at 0 once their requests are
    done, as an up-down counter's are. `add` still works for other callers: its amounts come on top.
    """

    __slots__ = ("requests", "_seen")

    def __init__(self, name: str, unit: str, description: str) -> None:
        super().__init__(name, unit, description, monotonic=False)
        self.requests: dict[int, AttributeSet] = {}
        self._seen: dict[Key, None] = {}

    def begin(self, request: ActiveRequest) -> None:
        attributes = self.requests[id(request)] = request.active
        if attributes.key not in self._seen:
            self._seen[attributes.key] = None

    def end(self, request: ActiveRequest) -> None:
        self.requests.pop(id(request), None)

    def _items(self) -> list[tuple[Key, int | float]]:
        in_flight = list(self.requests.values())  # one C-level copy: safe while other threads begin and end
        counts: dict[Key, int | float] = dict.fromkeys(list(self._seen), 0)
        for attributes in in_flight:
            counts[attributes.key] = counts.get(attributes.key, 0) + 1
        with self._lock:
            for key, amount in self._values.items():
                counts[key] = counts.get(key, 0) + amount
        return list(counts.items())

    def reset(self) -> None:
        super().reset()
        self.requests = {}
        self._seen = {}
