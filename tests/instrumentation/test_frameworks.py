"""obsbox.instrument(): framework detection, what it returns, idempotence, lazy imports and error messages."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterable
from typing import Any

import pytest

import obsbox
from obsbox.instrumentation.asgi import ObsboxASGIMiddleware
from obsbox.instrumentation.frameworks import require
from obsbox.instrumentation.wsgi import ObsboxWSGIMiddleware
from tests.instrumentation.test_asgi_core import Captured

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_in_place_for_fastapi_starlette_and_flask() -> None:
    from fastapi import FastAPI
    from flask import Flask
    from starlette.applications import Starlette

    for app in (FastAPI(), Starlette(), Flask("x")):
        assert obsbox.instrument(app) is app
    flask_app = Flask("y")
    original = flask_app.wsgi_app
    obsbox.instrument(flask_app)
    assert isinstance(flask_app.wsgi_app, ObsboxWSGIMiddleware) and flask_app.wsgi_app.app == original


def test_wrappers_for_plain_callables() -> None:
    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        pass

    class AsgiClass:
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            pass

    def wsgi_app(environ: Any, start_response: Any) -> Iterable[bytes]:
        return []

    assert isinstance(obsbox.instrument(asgi_app), ObsboxASGIMiddleware)
    assert isinstance(obsbox.instrument(AsgiClass()), ObsboxASGIMiddleware)
    wrapped = obsbox.instrument(wsgi_app)
    assert isinstance(wrapped, ObsboxWSGIMiddleware)
    assert obsbox.instrument(wrapped) is wrapped  # instrumenting the result again changes nothing


def test_not_an_app() -> None:
    with pytest.raises(TypeError, match=r"pip install 'obsbox\[fastapi\]'"):
        obsbox.instrument(42)


def test_nested_instrumentation_gives_one_span(capture: Captured) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("hi")

    inner = obsbox.instrument(Starlette(routes=[Route("/hi", hello)]))
    outer = ObsboxASGIMiddleware(inner)  # e.g. a user wrapping an already instrumented app once more
    TestClient(outer).get("/hi")
    assert len(capture.spans()) == 1 and len(capture.server_duration.calls) == 1


def test_excluded_paths_replace_the_defaults(capture: Captured) -> None:
    def wsgi_app(environ: Any, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    from werkzeug.test import Client

    client = Client(obsbox.instrument(wsgi_app, excluded_paths=["/ping"]))
    client.get("/ping", buffered=True)
    client.get("/metrics", buffered=True)
    assert [(s.attributes or {})["url.path"] for s in capture.spans()] == ["/metrics"]


def test_require_names_the_extra() -> None:
    assert require("json").__name__ == "json"
    with pytest.raises(ImportError, match=r"pip install 'obsbox\[django\]'"):
        require("django.no_such_module_here")


def test_frameworks_imported_lazily() -> None:
    code = ("import sys, obsbox, obsbox.instrumentation.frameworks, obsbox.instrumentation.clients; "
            "print(sorted(m for m in ('fastapi', 'starlette', 'flask', 'django', 'httpx', 'requests', 'werkzeug') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
