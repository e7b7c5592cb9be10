"""The lean instruments: interned attribute sets and plain mappings land in the same series; exemplars are right."""

from __future__ import annotations

from opentelemetry.trace import SpanContext, TraceFlags

from obsbox.instrumentation._metrics import AttributeSet, Counter, Histogram


def test_an_attribute_set_and_an_equal_plain_mapping_record_into_one_series() -> None:
    histogram = Histogram("d", "s", "", (0.1, 1.0))
    sampled = SpanContext(0xA1, 0xB2, False, TraceFlags(1))
    unsampled = SpanContext(0xA3, 0xB4, False, TraceFlags(0))
    histogram.record(0.05, AttributeSet({"http.route": "/a", "http.response.status_code": 200}), sampled)
    histogram.record(0.5, {"http.response.status_code": 200, "http.route": "/a"}, unsampled)
    (point,) = histogram.collect(1).data.data_points
    assert point.count == 2 and point.bucket_counts == [1, 1, 0]
    assert point.attributes == {"http.route": "/a", "http.response.status_code": 200}
    (exemplar,) = point.exemplars  # only the sampled span's: its trace exists in the backend
    assert (exemplar.trace_id, exemplar.span_id, exemplar.value) == (0xA1, 0xB2, 0.05)

    counter = Counter("active", "1", "", monotonic=False)
    counter.add(1, AttributeSet({"m": "GET"}))
    counter.add(1, {"m": "GET"})
    counter.add(-1, AttributeSet({"m": "GET"}))
    assert counter.value({"m": "GET"}) == 1
    assert AttributeSet({"m": "GET", "s": "http"}).key == frozenset({("m", "GET"), ("s", "http")})
