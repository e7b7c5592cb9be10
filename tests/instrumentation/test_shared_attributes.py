"""Shared attribute blocks: a request's attributes built and encoded once per distinct value set, never duplicated.

The request path gives each server span blocks of attributes it shares with other requests (method, host, client
and user agent; the path; the route and status code) instead of a dict of its own. These tests pin that the bytes
on the wire are what the official encoder makes of the same attributes, that setting an attribute a block already
holds replaces it (one key, the new value), and that a block is only ever shared by requests it fits.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanMessage
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import obsbox
from obsbox.instrumentation import _encode, _runtime, _tracer
from obsbox.instrumentation._encode import SharedAttributes, encode_span
from obsbox.instrumentation._tracer import Span, TracerProvider, attach_span, detach_span
from obsbox.instrumentation.asgi import request_attributes
from obsbox.instrumentation.wsgi import environ_attributes
from tests.instrumentation.test_asgi_core import Recorder

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

REQUEST = {"http.request.method": "GET", "url.scheme": "https", "server.address": "shop.example",
           "server.port": 443, "client.address": "10.1.2.3", "user_agent.original": "probe/1"}
PATH = {"url.path": "/items/7"}
OTHERS = {"url.query": "page=2", "retries": 2, "ratio": 0.5, "cached": True, "tags": ["a", "b"]}


def _keys(span: Span) -> list[str]:
    return [kv.key for kv in SpanMessage.FromString(encode_span(span)).attributes]


def _values(span: Span) -> dict[str, Any]:
    decoded = SpanMessage.FromString(encode_span(span)).attributes
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in decoded}


def _lean_span(shared: list[SharedAttributes] | None, attributes: dict[str, Any] | None) -> Span:
    span = TracerProvider(sink=lambda s: None).get_tracer("t").start_span("GET", kind=SpanKind.SERVER,
                                                                         attributes=attributes)
    assert isinstance(span, Span)
    span.shared = shared
    return span


def test_shared_blocks_encode_as_the_official_encoder_encodes_the_same_attributes() -> None:
    exporter = InMemorySpanExporter()
    provider = SdkTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("GET", kind=SpanKind.SERVER,
                                                        attributes={**REQUEST, **PATH, **OTHERS}):
        pass
    (sdk,) = exporter.get_finished_spans()
    official = encode_spans([sdk]).resource_spans[0].scope_spans[0].spans[0]

    lean = _lean_span([SharedAttributes(REQUEST), SharedAttributes(PATH)], dict(OTHERS))
    decoded = SpanMessage.FromString(encode_span(lean))
    # The attribute fields are byte for byte the official encoder's, in the same order.
    assert [a.SerializeToString() for a in decoded.attributes] == [a.SerializeToString() for a in official.attributes]
    assert lean.all_attributes() == {**REQUEST, **PATH, **OTHERS}


def test_a_block_is_encoded_once_and_skips_none_values() -> None:
    block = SharedAttributes({"a": "x", "gone": None, "n": 3})
    assert dict(block) == {"a": "x", "n": 3}
    assert block.encoded == b"".join(_encode.attributes(b"\x4a", {"a": "x", "n": 3}))


@pytest.mark.parametrize("how", ["set_attribute", "set_attributes"])
def test_setting_an_attribute_a_shared_block_holds_replaces_it(how: str) -> None:
    block = SharedAttributes(REQUEST)
    span = _lean_span([block, SharedAttributes(PATH)], None)
    if how == "set_attribute":
        span.set_attribute("client.address", "192.0.2.9")
    else:
        span.set_attributes({"client.address": "192.0.2.9", "enduser.id": "u1"})
    keys = _keys(span)
    assert sorted(keys) == sorted(set(keys)), "an attribute went out twice"
    values = _values(span)
    assert values["client.address"] == "192.0.2.9" and values["url.path"] == "/items/7"
    assert block["client.address"] == "10.1.2.3", "the shared block itself must not change"


def test_a_new_attribute_leaves_the_blocks_shared() -> None:
    blocks = [SharedAttributes(REQUEST), SharedAttributes(PATH)]
    span = _lean_span(list(blocks), None)
    span.set_attribute("enduser.id", "u1")
    span.set_attributes({"session.id": "s1", "retries": None})
    assert span.shared == blocks and span.attributes == {"enduser.id": "u1", "session.id": "s1"}
    assert _values(span) == {**REQUEST, **PATH, "enduser.id": "u1", "session.id": "s1"}


@pytest.fixture
def lean_spans() -> Iterator[list[Span]]:
    """obsbox's own tracer on the request path (the spans kept as objects, not exported)."""
    spans: list[Span] = []
    previous = _runtime.current()
    provider = TracerProvider(sink=spans.append)
    _runtime.install(_runtime.Runtime(provider.get_tracer("test"), Recorder(), Recorder(), Recorder()))
    try:
        yield spans
    finally:
        _runtime.install(previous)


async def _tagged(request: Request) -> Response:
    span = trace.get_current_span()
    span.set_attribute("enduser.id", "u1")
    span.set_attribute("http.route", "/my/own/route")  # the framework's template still wins
    if request.query_params.get("rewrite"):
        span.set_attribute("user_agent.original", "rewritten")  # one a shared block holds
    return PlainTextResponse("x")


@pytest.mark.parametrize("rewrite", [False, True], ids=["new attributes", "a shared one rewritten"])
def test_attributes_the_app_sets_on_the_server_span_are_sent_once(lean_spans: list[Span], rewrite: bool) -> None:
    app = obsbox.instrument(Starlette(routes=[Route("/tagged/{n}", _tagged), Route("/plain/{n}", _tagged)]))
    client = TestClient(app)
    query = "?rewrite=1" if rewrite else ""
    client.get(f"/tagged/1{query}", headers={"user-agent": "probe/1"})
    client.get(f"/plain/2{query}", headers={"user-agent": "probe/1"})
    first, second = lean_spans
    for span in (first, second):
        keys = _keys(span)
        assert sorted(keys) == sorted(set(keys)), "an attribute went out twice"
        values = _values(span)
        assert values["enduser.id"] == "u1" and values["http.response.status_code"] == 200
        assert values["user_agent.original"] == ("rewritten" if rewrite else "probe/1")
    assert _values(first)["http.route"] == "/tagged/{n}" and _values(first)["url.path"] == "/tagged/1"
    assert _values(second)["http.route"] == "/plain/{n}" and _values(second)["url.path"] == "/plain/2"


def test_requests_share_a_block_only_when_they_carry_the_same_values() -> None:
    scope = {"method": "GET", "path": "/a", "query_string": b"", "client": ("10.0.0.1", 5000), "http_version": "1.1"}
    (one, path_one), _ = request_attributes(scope, "http", b"shop:8080", b"ua/1")
    (again, _), _ = request_attributes(dict(scope), "http", b"shop:8080", b"ua/1")
    (other, path_other), query = request_attributes(
        {**scope, "client": ("10.0.0.2", 5000), "path": "/b", "query_string": b"token=s3cret&q=1"},
        "http", b"shop:8080", b"ua/2")
    assert one is again, "the same request values should share one block"
    assert one["client.address"] == "10.0.0.1" and other["client.address"] == "10.0.0.2"
    assert one["user_agent.original"] == "ua/1" and other["user_agent.original"] == "ua/2"
    assert path_one == {"url.path": "/a"} and path_other == {"url.path": "/b"}
    assert query is not None and "s3cret" not in str(query["url.query"])

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/c", "HTTP_HOST": "shop", "REMOTE_ADDR": "10.0.0.3",
               "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http"}
    (w1, _), _ = environ_attributes(environ, "http")
    (w2, _), _ = environ_attributes({**environ, "REMOTE_ADDR": "10.0.0.4", "REQUEST_METHOD": "PURGE"}, "http")
    assert dict(w1) == {"http.request.method": "POST", "url.scheme": "http", "server.address": "shop",
                        "server.port": 80, "client.address": "10.0.0.3", "network.protocol.version": "1.1"}
    assert w2["client.address"] == "10.0.0.4" and w2["http.request.method"] == "_OTHER"
    assert w2["http.request.method_original"] == "PURGE"


@pytest.mark.parametrize("variable", [True, False], ids=["context variable", "runtime context API"])
def test_attach_span_is_the_api_attach_of_the_span_in_the_parent_context(
    variable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default runtime context is found (the private names it relies on are pinned here) ...
    assert _tracer._CONTEXT_VARIABLE is not None
    if not variable:  # ... and a runtime context of another kind (OTEL_PYTHON_CONTEXT) goes through the API
        monkeypatch.setattr(_tracer, "_CONTEXT_VARIABLE", None)
    span = _lean_span(None, None)
    parent = context_api.set_value("tenant", "t1", context_api.Context())
    before = trace.get_current_span()
    token = attach_span(span, parent)
    try:
        assert trace.get_current_span() is span and context_api.get_value("tenant") == "t1"
        assert trace.get_current_span(parent) is not span, "the parent context must not change"
    finally:
        detach_span(token)
    assert trace.get_current_span() is before and context_api.get_value("tenant") is None


def test_a_context_detached_in_another_task_raises_for_the_caller_to_report() -> None:
    span = _lean_span(None, None)
    token = attach_span(span, context_api.Context())

    async def elsewhere() -> None:
        detach_span(token)

    with pytest.raises(ValueError):
        asyncio.run(elsewhere())
    detach_span(token)
