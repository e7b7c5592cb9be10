"""Secret markers through every documented API (issue #19, "Keep the probe"): one process configured with obsbox
sends a unique marker through each way a secret can travel — log fields (flat, nested, headers objects), messages
formatted from fields, URLs in messages and exceptions, the OpenTelemetry logs API, stdlib logging, span status and
exception events, an instrumented FastAPI and Flask app (query string, Authorization, Cookie, X-Api-Key headers) and
the outgoing httpx and requests clients (query string, user:password@) — and then reads everything the receiver
got: no marker may be there. (Real servers: tests/instrumentation/test_access_log_redaction.py.)
"""

from __future__ import annotations

import logging

import httpx
import pytest
import requests
from fastapi import FastAPI
from flask import Flask
from opentelemetry import _logs as logs_api
from opentelemetry import trace
from starlette.testclient import TestClient

import obsbox
from obsbox import logger
from obsbox.testing import OTLPReceiver

MARKERS = [f"MARK{i:02d}x7" for i in range(40)]


def _marker() -> str:
    return MARKERS.pop(0)


def test_no_marker_reaches_the_receiver(otlp_receiver: OTLPReceiver) -> None:
    used: list[str] = []

    def mark() -> str:
        used.append(_marker())
        return used[-1]

    t = obsbox.configure(service_name="secret-markers", endpoint=otlp_receiver.endpoint, schedule_delay=0.05)
    try:
        # obsbox.logger: fields, nested fields, headers objects, messages formatted from fields
        logger.info("flat", password=mark(), api_key=mark(), session_id=mark())
        logger.bind(creds={"token": mark(), "inner": {"client_secret": mark()}}).info("nested")
        logger.info("headers", headers={"Authorization": f"Bearer {mark()}", "Cookie": f"sid={mark()}",
                                        "X-Api-Key": mark()}, pairs=[("authorization", mark())])
        logger.info("user {user} token {token}", user="ann", token=mark())
        logger.info(f"calling https://u:{mark()}@api.example.com/x?access_token={mark()}")
        # stdlib logging and exceptions quoting URLs
        logging.getLogger("lib").warning("GET /a?api_key=%s&page=1 HTTP/1.1", mark())
        try:
            raise ValueError(f"failed for url: https://x.example/v1?signature={mark()}")
        except ValueError:
            logger.exception("boom")
            logging.getLogger("lib").exception("boom (stdlib)")
        # the OpenTelemetry logs API
        logs_api.get_logger("third.party").emit(body=f"?token={mark()}", attributes={"password": mark(),
                                                                                      "cfg": {"secret": mark()}})
        # spans: status and exception events
        with pytest.raises(RuntimeError), trace.get_tracer("t").start_as_current_span("work"):
            raise RuntimeError(f"https://api.example.com/?apikey={mark()}")
        # an instrumented FastAPI app and a Flask app: query strings and credential headers
        api = FastAPI()

        @api.get("/items/{item}")
        def item(item: str) -> dict[str, str]:
            return {"item": item}

        client = TestClient(obsbox.instrument(api))
        client.get(f"/items/1?token={mark()}&page=2",
                   headers={"Authorization": f"Bearer {mark()}", "Cookie": f"s={mark()}", "X-Api-Key": mark()})
        flask_app = Flask("markers")

        @flask_app.get("/posts/<int:post>")
        def post(post: int) -> str:
            return str(post)

        obsbox.instrument(flask_app)
        flask_app.test_client().get(f"/posts/1?password={mark()}", headers={"Authorization": f"Basic {mark()}"})
        # outgoing clients: query strings and userinfo
        base = otlp_receiver.endpoint.replace("http://", f"http://user:{mark()}@")
        httpx.get(f"{base}/nothing?api_key={mark()}", timeout=5)
        requests.get(f"{otlp_receiver.endpoint}/nothing?client_secret={mark()}", timeout=5)
        t.force_flush()
    finally:
        t.shutdown()
    everything = repr(otlp_receiver.spans()) + repr(otlp_receiver.logs())
    assert len(used) >= 25 and "flat" in everything and "/items/{item}" in everything  # the carriers arrived
    leaked = [m for m in used if m in everything]
    assert not leaked, leaked
