"""End to end: two real services on 127.0.0.1, each its own process exporting to a real OTLP receiver.

front: FastAPI under uvicorn, calls back with httpx and logs with obsbox.logger inside its handler.
back:  Flask under a real threaded WSGI server (werkzeug).

One request through both must give ONE trace: front's SERVER span → front's CLIENT span → back's SERVER span, with
HTTP metrics of the right names, units and attributes whose exemplars point at those spans, and logs carrying the
same trace id. Run as a module, this file serves one of the two services:
`python -m tests.instrumentation.test_two_services front|back` (prints "PORT <n>" once listening).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obsbox.testing import OTLPReceiver

ROOT = Path(__file__).resolve().parents[2]
SERVER, CLIENT = 2, 3  # OTLP span kinds


# --- the two services ---------------------------------------------------------------------------------------

def _configure(name: str) -> None:
    import obsbox

    obsbox.configure(service_name=name, endpoint=os.environ["TEST_OTLP_ENDPOINT"], metric_export_interval=0.5,
                     schedule_delay=0.1)


def serve_back() -> None:
    from flask import Flask
    from werkzeug.serving import make_server

    import obsbox

    _configure("back-test")
    app = Flask("back")

    @app.get("/payments/<int:order_id>")
    def payment(order_id: int) -> dict[str, Any]:
        if order_id == 0:
            raise LookupError("no payment for order 0")
        obsbox.logger.info("payment looked up", order_id=order_id)
        return {"order_id": order_id, "paid": True}

    server = make_server("127.0.0.1", 0, obsbox.instrument(app), threaded=True)
    print(f"PORT {server.server_port}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    server.serve_forever()


def serve_front() -> None:
    import httpx
    import uvicorn
    from fastapi import FastAPI, HTTPException

    import obsbox

    _configure("front-test")
    back = os.environ["BACK_URL"]
    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, Any]:
        obsbox.logger.info("fetching payment", order_id=order_id)
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{back}/payments/{order_id}")
        if response.status_code != 200:
            raise HTTPException(status_code=502, detail="payments failed")
        return {"order_id": order_id, "payment": response.json()}

    @app.get("/health")
    async def health() -> str:
        return "ok"

    obsbox.instrument(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until uvicorn accepts them
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.run(sockets=[sock])


# --- the test -----------------------------------------------------------------------------------------------

def _start(role: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.instrumentation.test_two_services", role],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{role} did not start: {line!r}")
    return proc, int(line.split()[1])


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT if proc.args[-1] == "front" else signal.SIGTERM)  # type: ignore[index]
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # stdlib: not instrumented, no trace context
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture(scope="module")
def run() -> Iterator[dict[str, Any]]:
    with OTLPReceiver() as receiver:
        env = {"TEST_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SEMCONV_STABILITY_OPT_IN": ""}
        back, back_port = _start("back", env)
        try:
            front, front_port = _start("front", {**env, "BACK_URL": f"http://127.0.0.1:{back_port}"})
            try:
                base = f"http://127.0.0.1:{front_port}"
                statuses = {path: _get(base + path) for path in ("/orders/7", "/orders/0", "/no/such/page",
                                                                 "/also/missing", "/health")}
                receiver.wait_for(lambda: len([s for s in receiver.spans() if s.kind == SERVER]) >= 6, timeout=20)
                receiver.wait_for(lambda: {"front-test", "back-test"} <= {
                    p.resource.get("service.name") for p in receiver.metrics("http.server.request.duration")
                    if p.count}, timeout=20)
                receiver.wait_for(lambda: receiver.metrics("http.client.request.duration"), timeout=20)
                receiver.wait_for(lambda: len(receiver.logs()) >= 2, timeout=20)
            finally:
                _stop(front)
        finally:
            _stop(back)
        yield {"receiver": receiver, "statuses": statuses, "back_port": back_port}


def _service(record: Any) -> Any:
    return record.resource.get("service.name")


def test_requests_answered(run: dict[str, Any]) -> None:
    assert run["statuses"] == {"/orders/7": 200, "/orders/0": 502, "/no/such/page": 404, "/also/missing": 404,
                               "/health": 200}


def test_one_trace_across_both_services(run: dict[str, Any]) -> None:
    receiver: OTLPReceiver = run["receiver"]
    spans = receiver.spans()
    (front_server,) = [s for s in spans if _service(s) == "front-test" and s.kind == SERVER
                       and s.attributes.get("url.path") == "/orders/7"]
    assert front_server.name == "GET /orders/{order_id}" and front_server.parent_span_id == ""
    trace = [s for s in spans if s.trace_id == front_server.trace_id]
    # exactly one SERVER span per service and one CLIENT span: no duplicate from FastAPI's own telemetry
    assert sorted((_service(s), s.kind, s.name) for s in trace) == [
        ("back-test", SERVER, "GET /payments/<int:order_id>"),
        ("front-test", SERVER, "GET /orders/{order_id}"),
        ("front-test", CLIENT, "GET"),
    ]
    (client,) = [s for s in trace if s.kind == CLIENT]
    (back_server,) = [s for s in trace if _service(s) == "back-test"]
    assert client.parent_span_id == front_server.span_id
    assert back_server.parent_span_id == client.span_id
    assert client.attributes["server.address"] == "127.0.0.1"
    assert client.attributes["server.port"] == run["back_port"]
    assert client.attributes["http.response.status_code"] == 200
    assert back_server.attributes["http.route"] == "/payments/<int:order_id>"
    assert front_server.attributes["http.response.status_code"] == 200


def test_failure_path(run: dict[str, Any]) -> None:
    spans = run["receiver"].spans()
    (back_fail,) = [s for s in spans if _service(s) == "back-test" and s.attributes.get("url.path") == "/payments/0"]
    assert back_fail.status_code == 2 and back_fail.attributes["error.type"] == "LookupError"
    assert back_fail.attributes["http.response.status_code"] == 500
    (client,) = [s for s in spans if s.span_id == back_fail.parent_span_id]
    assert client.kind == CLIENT and client.attributes["error.type"] == "500" and client.status_code == 2
    (front,) = [s for s in spans if s.span_id == client.parent_span_id]
    assert front.attributes["http.response.status_code"] == 502 and front.status_code == 2


def test_unmatched_and_excluded(run: dict[str, Any]) -> None:
    receiver: OTLPReceiver = run["receiver"]
    front = [s for s in receiver.spans() if _service(s) == "front-test" and s.kind == SERVER]
    unmatched = [s for s in front if s.attributes.get("http.response.status_code") == 404]
    assert [s.name for s in unmatched] == ["GET", "GET"]
    assert all("http.route" not in s.attributes and s.status_code == 0 for s in unmatched)
    assert not [s for s in front if s.attributes.get("url.path") == "/health"]
    points = [p for p in receiver.latest("http.server.request.duration") if _service(p) == "front-test"
              and p.attributes.get("http.response.status_code") == 404]
    (point,) = points  # both unmatched paths share one series
    assert point.count == 2 and "http.route" not in point.attributes


def test_metrics_names_units_attributes_and_exemplars(run: dict[str, Any]) -> None:
    receiver: OTLPReceiver = run["receiver"]
    span_ids = {(s.trace_id, s.span_id): s for s in receiver.spans()}
    server = receiver.latest("http.server.request.duration")
    assert {_service(p) for p in server} == {"front-test", "back-test"}
    allowed = {"http.request.method", "url.scheme", "http.route", "http.response.status_code", "error.type"}
    for point in server:
        assert point.unit == "s" and point.kind == "histogram" and point.temporality == 2
        assert set(point.attributes) <= allowed
        assert point.explicit_bounds[:3] == (0.005, 0.01, 0.025)
    ok = [p for p in server if p.attributes.get("http.route") == "/orders/{order_id}"
          and p.attributes["http.response.status_code"] == 200]
    assert len(ok) == 1 and ok[0].count == 1
    assert ok[0].attributes == {"http.request.method": "GET", "url.scheme": "http", "http.route": "/orders/{order_id}",
                                "http.response.status_code": 200}
    exemplars = [e for p in server for e in p.exemplars]
    assert exemplars
    for exemplar in exemplars:  # every exemplar points at a real server span
        span = span_ids[(exemplar.trace_id, exemplar.span_id)]
        assert span.kind == SERVER
    client = receiver.latest("http.client.request.duration")
    assert client and all(p.unit == "s" and _service(p) == "front-test" for p in client)
    assert {p.attributes["server.port"] for p in client} == {run["back_port"]}
    assert {p.attributes.get("error.type") for p in client} == {None, "500"}
    for exemplar in (e for p in client for e in p.exemplars):
        assert span_ids[(exemplar.trace_id, exemplar.span_id)].kind == CLIENT
    active = receiver.latest("http.server.active_requests")
    assert active and all(p.kind == "sum" and not p.monotonic and p.unit == "{request}" for p in active)
    assert {tuple(sorted(p.attributes)) for p in active} == {("http.request.method", "url.scheme")}


def test_logs_carry_the_trace(run: dict[str, Any]) -> None:
    receiver: OTLPReceiver = run["receiver"]
    spans = receiver.spans()
    for service, message, route in (("front-test", "fetching payment", "/orders/{order_id}"),
                                    ("back-test", "payment looked up", "/payments/<int:order_id>")):
        (record,) = [r for r in receiver.logs() if _service(r) == service and message in str(r.body)
                     and r.attributes.get("order_id") == 7]
        (span,) = [s for s in spans if s.span_id == record.span_id]
        assert span.trace_id == record.trace_id and span.kind == SERVER and span.attributes["http.route"] == route


if __name__ == "__main__":
    {"front": serve_front, "back": serve_back}[sys.argv[1]]()
