"""The lean instruments: interned attribute sets and plain mappings land in the same series; exemplars are right."""

from __future__ import annotations

import threading

from opentelemetry.trace import SpanContext, TraceFlags

from obsbox.instrumentation._metrics import AttributeSet, Counter, Histogram, InFlight


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


class _Request:
    """A request in flight as InFlight sees it."""

    def __init__(self, method: str) -> None:
        self.active = AttributeSet({"http.request.method": method, "url.scheme": "http"})


def _points(active: InFlight) -> dict[str, int | float]:
    metric = active.collect(1)
    assert metric.data.is_monotonic is False  # an up-down counter
    return {str(p.attributes["http.request.method"]): p.value for p in metric.data.data_points}


def test_in_flight_counts_begun_requests_until_they_end_and_keeps_their_series_at_zero() -> None:
    active = InFlight("http.server.active_requests", "{request}", "")
    get_a, get_b, post = _Request("GET"), _Request("GET"), _Request("POST")
    for request in (get_a, get_b, post):
        active.begin(request)
    assert _points(active) == {"GET": 2, "POST": 1}
    active.end(get_a)
    active.end(post)
    active.end(post)  # a second end changes nothing
    assert _points(active) == {"GET": 1, "POST": 0}  # POST's series stays, at 0
    active.add(2, {"url.scheme": "http", "http.request.method": "GET"})  # other callers' amounts come on top
    assert active.value({"http.request.method": "GET", "url.scheme": "http"}) == 3
    active.end(get_b)
    assert _points(active) == {"GET": 2, "POST": 0}
    active.reset()
    assert _points(active) == {}


def test_in_flight_loses_no_count_when_threads_begin_and_end_at_once() -> None:
    active = InFlight("http.server.active_requests", "{request}", "")
    done = threading.Barrier(8)
    seen: list[int | float] = []

    def serve() -> None:
        done.wait()
        for _ in range(2000):
            request = _Request("GET")
            active.begin(request)
            seen.append(active.value({"http.request.method": "GET", "url.scheme": "http"}))
            active.end(request)

    threads = [threading.Thread(target=serve) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert min(seen) >= 1 and max(seen) <= 8  # each saw itself, and never more than the threads running
    assert _points(active) == {"GET": 0}
    assert active.requests == {}  # nothing kept once every request ended
