"""Sampling rules: per route template and method, decided as the request's trace starts, parents followed, failed
requests kept — through real apps (FastAPI under uvicorn, Flask and Django under werkzeug) and a real receiver."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import obsbox
from obsbox.instrumentation.sampling import RuleSampler, SamplingRule, parse_rules
from obsbox.instrumentation.settings import resolve
from obsbox.testing import OTLPReceiver, SpanRecord
from tests.instrumentation._served import get, served, wsgi_served

SERVER = 2
SAMPLED = "00-{trace}-00f067aa0ba902b7-01"
UNSAMPLED = "00-{trace}-00f067aa0ba902b7-00"


def test_rules_from_the_environment_and_from_arguments_are_the_same() -> None:
    text = "GET /ping=0, /items/{item_id}=0.25 ,POST /orders/*=1"
    expected = (SamplingRule("/ping", 0.0, "GET"), SamplingRule("/items/{item_id}", 0.25),
                SamplingRule("/orders/*", 1.0, "POST"))
    assert parse_rules(text) == expected
    assert resolve({}, environ={"OBSBOX_SAMPLING_RULES": text}).sampling.sampling_rules == expected
    as_mappings = [{"route": "/ping", "ratio": 0, "method": "get"}, {"route": "/items/{item_id}", "ratio": 0.25},
                   SamplingRule("/orders/*", 1, "POST")]
    assert resolve({"sampling_rules": as_mappings}, environ={}).sampling.sampling_rules == expected


@pytest.mark.parametrize("text", ["/ping", "GET /ping=2", "GET /ping=often", "=0.5", "G3T /x=1"])
def test_an_invalid_rule_text_warns_and_falls_back(text: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        settings = resolve({}, environ={"OBSBOX_SAMPLING_RULES": text})
    assert settings.sampling.sampling_rules == ()
    assert "OBSBOX_SAMPLING_RULES" in caplog.text


def test_the_rule_decides_by_trace_id_as_the_ratio_sampler_does() -> None:
    sampler = RuleSampler("parentbased_always_on", 1.0, parse_rules("/half=0.5,GET /never=0,/*=1"))
    low, high = 0x1234 << 64 | 0x10, 0x1234 << 64 | 0xF000000000000000  # low 64 bits below / above half
    attrs = {"http.route": "/half", "http.request.method": "GET"}
    assert sampler.sample(None, low, attrs) is True
    assert sampler.sample(None, high, attrs) is None  # dropped by the rule: kept only if it fails
    assert sampler.sample(None, low, {"http.route": "/never", "http.request.method": "GET"}) is None
    assert sampler.sample(None, low, {"http.route": "/never", "http.request.method": "POST"}) is True  # `/*`
    # a span without a route (or with no rule for it) gets the sampler setting's decision
    assert RuleSampler("always_off", 1.0, parse_rules("/x=1")).sample(None, low, {}) is False


def _fastapi_app() -> Any:
    app = FastAPI()
    tracer = trace.get_tracer("shop.db")

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    shop = FastAPI()

    @shop.get("/items/{item_id}")
    async def shop_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    app.mount("/shop", shop)

    @app.api_route("/items/{item_id}", methods=["GET", "POST"])
    async def item(item_id: int) -> dict[str, int]:
        with tracer.start_as_current_span("db.query"):
            if item_id == 0:
                raise ValueError("no item 0")
        return {"item_id": item_id}

    return obsbox.instrument(app)


@contextlib.contextmanager
def _configured(receiver: OTLPReceiver, rules: str, **kwargs: Any) -> Iterator[obsbox.Telemetry]:
    telemetry = obsbox.configure(service_name="sampled", endpoint=receiver.endpoint, console=False,
                                 schedule_delay=0.1, metric_export_interval=60, sampling_rules=rules, **kwargs)
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


def _servers(receiver: OTLPReceiver) -> list[SpanRecord]:
    return [s for s in receiver.spans() if s.kind == SERVER]


def test_rules_through_a_real_fastapi_app(otlp_receiver: OTLPReceiver) -> None:
    exporter = InMemorySpanExporter()
    with _configured(otlp_receiver, "GET /ping=0,GET /items/{item_id}=0,/shop/*=0",
                     span_processors=[SimpleSpanProcessor(exporter)]) as telemetry:
        with served(_fastapi_app()) as base:
            statuses = [get(base + "/ping") for _ in range(20)]
            statuses += [get(base + "/items/1"), get(base + "/items/0")]  # GET items: ratio 0; the 500 is kept
            statuses += [get(base + "/items/abc"), get(base + "/shop/items/1")]  # a 4xx is no error; a mount
            statuses.append(get(base + "/items/2", method="POST"))  # POST: no rule, the sampler's always_on
            # a caller's decision is followed, whatever the rule says
            statuses.append(get(base + "/ping", {"traceparent": SAMPLED.format(trace="a" * 32)}))
            statuses.append(get(base + "/items/3", {"traceparent": UNSAMPLED.format(trace="b" * 32)}, "POST"))
        assert statuses == [200] * 21 + [500, 422, 200, 200, 200, 200]
        telemetry.force_flush()
        spans = otlp_receiver.wait_for(lambda: len(_servers(otlp_receiver)) >= 3 and otlp_receiver.spans())
        servers = {(s.name, s.attributes["http.response.status_code"]): s for s in spans if s.kind == SERVER}
        assert sorted(servers) == [("GET /items/{item_id}", 500), ("GET /ping", 200), ("POST /items/{item_id}", 200)]
        assert servers[("GET /ping", 200)].trace_id == "a" * 32  # the sampled caller's
        failed = servers[("GET /items/{item_id}", 500)]
        assert failed.status_code == 2 and failed.attributes["error.type"] == "ValueError"
        assert failed.attributes["url.path"] == "/items/0" and failed.attributes["http.route"] == "/items/{item_id}"
        assert failed.attributes["http.request.method"] == "GET" and "client.address" in failed.attributes
        assert [name for name, _ in failed.events] == ["exception"]
        # the kept span reaches the user's processors too, marked sampled (the SDK's processors check that)
        assert sorted(s.name for s in exporter.get_finished_spans() if s.kind.value == 1) == sorted(
            name for name, _ in servers)
        # the failed request's child span ended before its outcome was known: it was not recorded
        children = [s for s in spans if s.name == "db.query"]
        assert [c.parent_span_id for c in children] == [
            next(s.span_id for s in spans if s.name == "POST /items/{item_id}")]
        # metrics count every request, sampled or not
        telemetry.force_flush()
        points = otlp_receiver.wait_for(lambda: otlp_receiver.latest("http.server.request.duration"))
        counts = {(p.attributes["http.request.method"], p.attributes["http.route"],
                   p.attributes["http.response.status_code"]): p.count for p in points}
        assert counts[("GET", "/ping", 200)] == 21 and counts[("GET", "/items/{item_id}", 500)] == 1
        assert counts[("POST", "/items/{item_id}", 200)] == 2 and counts[("GET", "/items/{item_id}", 422)] == 1
        assert counts[("GET", "/shop/items/{item_id}", 200)] == 1
        # exemplars point only at traces sampled from the start: not at the kept failure
        (failure_point,) = [p for p in points if p.attributes["http.response.status_code"] == 500]
        assert failed.trace_id not in {e.trace_id for e in failure_point.exemplars}


def test_without_rules_nothing_changes_for_the_request_path(otlp_receiver: OTLPReceiver) -> None:
    """No rules: the plain tracer and sampler, so the request path keeps its shortcut (attributes set after the
    start, no early routing); with rules the tracer asks the framework for the route first."""
    from obsbox.instrumentation._tracer import Sampler, Tracer

    with _configured(otlp_receiver, "") as telemetry:
        assert type(telemetry.tracer) is Tracer
        assert type(trace.get_tracer_provider().sampler) is Sampler  # type: ignore[attr-defined]
    with _configured(otlp_receiver, "/ping=0") as telemetry:
        assert type(telemetry.tracer) is not Tracer


def _flask_app() -> Any:
    from flask import Flask

    app = Flask("sampled")

    @app.get("/ping")
    def ping() -> str:
        return "pong"

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, int]:
        if item_id == 0:
            raise ValueError("no item 0")
        return {"item_id": item_id}

    return obsbox.instrument(app)


def test_rules_through_a_real_flask_app(otlp_receiver: OTLPReceiver) -> None:
    with _configured(otlp_receiver, "/ping=0,/items/<int:item_id>=0", sampler="always_on") as telemetry:
        with wsgi_served(_flask_app()) as base:
            assert [get(base + p) for p in ("/ping", "/items/1", "/items/0", "/nowhere")] == [200, 200, 500, 404]
        telemetry.force_flush()
        otlp_receiver.wait_for(lambda: len(_servers(otlp_receiver)) >= 2)
        assert sorted((s.name, s.attributes["http.response.status_code"]) for s in _servers(otlp_receiver)) == [
            ("GET", 404), ("GET /items/<int:item_id>", 500)]


@pytest.mark.parametrize("how", ["instrument", "middleware"])
def test_rules_through_a_real_django_app(otlp_receiver: OTLPReceiver, how: str) -> None:
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import override_settings

    import tests.instrumentation.test_django  # noqa: F401 - configures Django with its URLconf

    middleware = ["obsbox.instrumentation.frameworks.ObsboxDjangoMiddleware"] if how == "middleware" else []
    with override_settings(ROOT_URLCONF="tests.instrumentation.test_django", MIDDLEWARE=middleware), \
            _configured(otlp_receiver, "/items/<int:pk>/=0,/crash/=0") as telemetry:
        handler = WSGIHandler()
        if how == "instrument":
            obsbox.instrument(handler)
        with wsgi_served(handler) as base:
            assert [get(base + p) for p in ("/items/7/", "/crash/", "/api/v2/orders/x1/")] == [200, 500, 200]
        telemetry.force_flush()
        otlp_receiver.wait_for(lambda: len(_servers(otlp_receiver)) >= 2)
        assert sorted((s.name, s.attributes["http.response.status_code"]) for s in _servers(otlp_receiver)) == [
            ("GET /api/v2/orders/<slug:ref>/", 200), ("GET /crash/", 500)]
