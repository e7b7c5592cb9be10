"""The load generator against a stand-in gateway (a real HTTP server in this process): the mix, bounded
concurrency, error accounting and stopping on time. Its run against the real shop is in test_shop.py."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from obsbox.samples import load


class StandIn:
    """Answers like the gateway; `delay` slows every answer; orders for `fail_sku` get a 503."""

    def __init__(self, delay: float = 0.0, fail_sku: str | None = None) -> None:
        self.delay, self.fail_sku = delay, fail_sku
        self.requests: Counter[tuple[str, str]] = Counter()
        self.keys: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _answer(self, status: int, payload: object) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                with stand_in.lock:
                    stand_in.in_flight += 1
                    stand_in.max_in_flight = max(stand_in.max_in_flight, stand_in.in_flight)
                    route = "/orders/{id}" if self.path.startswith("/orders/") else (
                        "/catalogue/{sku}" if self.path.startswith("/catalogue/") else self.path)
                    stand_in.requests[(self.command, route)] += 1
                try:
                    time.sleep(stand_in.delay)
                    length = int(self.headers.get("Content-Length") or 0)
                    body = json.loads(self.rfile.read(length)) if length else None
                    if self.command == "POST":
                        stand_in.keys[self.headers.get("Idempotency-Key", "")] += 1
                        if body and body.get("sku") == stand_in.fail_sku:
                            self._answer(503, {"error": "down"})
                            return
                        self._answer(201, {"order_id": "o-1"})
                    else:
                        self._answer(200, [])
                finally:
                    with stand_in.lock:
                        stand_in.in_flight -= 1

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = StandIn()
    yield server
    server.close()


def test_steady_rate_realistic_mix_and_replays(stand_in: StandIn) -> None:
    reports: list[load.Progress] = []
    summary = load.run(stand_in.url, rps=40, duration=3, progress=reports.append, seed=3)
    assert 110 <= summary.requests <= 122, summary.format()  # 120 due; generous, not a timing assertion
    assert summary.errors == 0 and sum(stand_in.requests.values()) == summary.requests
    kinds = summary.by_kind
    assert 0.55 < kinds["browse"] / summary.requests < 0.85
    assert 0.12 < (kinds["order"] + kinds["replay"]) / summary.requests < 0.45
    assert kinds["replay"] >= 1 and any(count >= 2 for count in stand_in.keys.values())  # a key sent again
    assert {("GET", "/catalogue"), ("GET", "/catalogue/{sku}"), ("POST", "/orders")} <= set(stand_in.requests)
    assert [round(r.elapsed_s) for r in reports] == [1, 2, 3]
    assert sum(r.rate for r in reports) <= summary.requests
    assert "requests in" in summary.format() and "p99" in summary.format()


def test_concurrency_is_bounded_and_errors_are_counted_by_status() -> None:
    slow = StandIn(delay=0.3, fail_sku="tea-01")
    try:
        started = time.monotonic()
        summary = load.run(slow.url, rps=50, duration=2, concurrency=4, progress=None, seed=5)
        elapsed = time.monotonic() - started
    finally:
        slow.close()
    assert slow.max_in_flight <= 4
    # 4 slots, 0.3 s each: at most ~14 per second can start, whatever the target says
    assert summary.requests < 50, summary.format()
    assert summary.errors == summary.errors_by_status["503"] > 0
    assert summary.by_status["503"] == summary.errors and summary.by_status["200"] > 0
    assert elapsed < 2 + 5 + 2  # the end of the run plus at most one request timeout: it stops by itself


def test_an_unreachable_gateway_is_counted_not_raised() -> None:
    summary = load.run("http://127.0.0.1:9", rps=10, duration=1, progress=None)
    assert summary.requests >= 5 and summary.errors == summary.requests
    assert set(summary.by_status) <= {"ConnectError", "timeout"}


@pytest.mark.parametrize(("rps", "duration"), [(0, 1), (-1, 1), (5, 0)])
def test_bad_arguments(rps: float, duration: float) -> None:
    with pytest.raises(ValueError, match="must be more than 0"):
        load.run("http://127.0.0.1:9", rps=rps, duration=duration, progress=None)
