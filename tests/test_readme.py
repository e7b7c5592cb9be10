"""The README's library example does what the README says, against a real OTLP receiver."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

import obsbox
from obsbox.testing import OTLPReceiver

README = Path(__file__).parents[1] / "README.md"


def _library_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    example = next(b for b in blocks if "obsbox.configure(" in b and "obsbox.instrument(app)" in b)
    return str(example)


def test_readme_quickstart_gives_a_server_span_red_metrics_and_a_correlated_log(
    otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example passes no endpoint: point the standard variable at the receiver, as a user would at a collector.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    namespace: dict[str, Any] = {}
    exec(compile(_library_example(), str(README), "exec"), namespace)
    app = namespace["app"]
    telemetry = obsbox.configure(service_name="orders")  # a second call returns the handle in force
    try:
        with TestClient(app) as client:
            assert client.get("/orders/42").json() == {"order_id": 42}
        telemetry.force_flush()
        servers = otlp_receiver.wait_for(lambda: [s for s in otlp_receiver.spans() if s.kind == 2])
        assert [s.name for s in servers] == ["GET /orders/{order_id}"]
        server = servers[0]
        assert server.resource["service.name"] == "orders"
        assert server.attributes["http.route"] == "/orders/{order_id}"

        logs = otlp_receiver.wait_for(
            lambda: [r for r in otlp_receiver.logs() if r.body == "order looked up"]
        )
        assert logs[0].trace_id == server.trace_id and logs[0].span_id == server.span_id
        assert logs[0].attributes["order_id"] == 42

        telemetry.force_flush()
        points = otlp_receiver.wait_for(lambda: otlp_receiver.latest("http.server.request.duration"))
        (point,) = [p for p in points if p.attributes.get("http.route") == "/orders/{order_id}"]
        assert point.unit == "s" and point.count == 1
        assert any(e.trace_id == server.trace_id for e in point.exemplars)
        assert otlp_receiver.latest("http.server.active_requests")
    finally:
        telemetry.shutdown()
