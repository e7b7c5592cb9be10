"""Fixtures for the resilience tests: a real OpenTelemetry SDK pipeline per test, a fake clock, captured logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from obsbox import logger


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Point:
    name: str
    unit: str
    attributes: dict[str, Any]
    value: float | int | None  # sums and gauges
    count: int | None = None  # histograms
    sum: float | None = None
    bucket_counts: tuple[int, ...] = ()
    monotonic: bool | None = None


class Metrics:
    """A MeterProvider with an in-memory reader; `points(name)` collects and flattens what it holds now."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> list[Point]:
        data = self.reader.get_metrics_data()
        out: list[Point] = []
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name:
                        continue
                    for p in metric.data.data_points:
                        attrs = dict(p.attributes or {})
                        if hasattr(p, "bucket_counts"):
                            out.append(Point(name, metric.unit or "", attrs, None, p.count, p.sum,
                                             tuple(p.bucket_counts)))
                        else:
                            out.append(Point(name, metric.unit or "", attrs, p.value,
                                             monotonic=getattr(metric.data, "is_monotonic", None)))
        return out

    def value(self, name: str, **attrs: Any) -> float | int:
        """The value of the one point of `name` whose attributes include `attrs` (0 when there is none)."""
        matches = [p for p in self.points(name) if all(p.attributes.get(k) == v for k, v in attrs.items())]
        assert len(matches) <= 1, matches
        if not matches:
            return 0
        p = matches[0]
        return p.count if p.count is not None else (p.value or 0)


@pytest.fixture
def sdk_metrics() -> Iterator[Metrics]:
    m = Metrics()
    yield m
    m.provider.shutdown()


class Spans:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests.resilience")

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]


@pytest.fixture
def spans() -> Iterator[Spans]:
    s = Spans()
    yield s
    s.provider.shutdown()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def logs() -> Iterator[list[Any]]:
    records: list[Any] = []  # loguru Message objects (str with a .record)
    handler = logger.add(records.append, level="DEBUG", format="{message}")
    yield records
    logger.remove(handler)
