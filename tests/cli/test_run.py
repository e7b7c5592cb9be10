"""`obsbox run -- COMMAND`: real programs, unchanged, export server spans to a real OTLP receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from obsbox.instrumentation.auto import command_environment, service_name_from, sitecustomize_dir
from obsbox.testing import OTLPReceiver

FLASK_APP = """
from flask import Flask
app = Flask(__name__)

@app.get("/items/<int:item_id>")
def item(item_id):
    return {"id": item_id}

print(app.test_client().get("/items/7").status_code)
"""

FASTAPI_APP = """
from fastapi import FastAPI
from fastapi.testclient import TestClient
app = FastAPI()

@app.get("/orders/{order_id}")
def order(order_id: int):
    return {"id": order_id}

print(TestClient(app).get("/orders/42").status_code)
"""


def _run(tmp_path: Path, source: str, receiver: OTLPReceiver, *extra: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "app.py"
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OBSBOX_", "OTEL_"))}
    env.update(OBSBOX_ENDPOINT=receiver.endpoint, OBSBOX_CONSOLE="false")
    return subprocess.run([sys.executable, "-m", "obsbox.cli", "run", *extra, "--", sys.executable, str(script)],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def _server_spans(receiver: OTLPReceiver, route: str) -> list[object]:
    return [s for s in receiver.spans() if s.kind == 2 and s.attributes.get("http.route") == route]


def test_a_flask_program_is_instrumented_without_code_changes(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        result = _run(tmp_path, FLASK_APP, receiver, "--service-name", "shop-flask")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "200"
        spans = receiver.wait_for(lambda: _server_spans(receiver, "/items/<int:item_id>"), timeout=15)
    assert spans[0].resource["service.name"] == "shop-flask"  # type: ignore[attr-defined]


def test_a_fastapi_program_is_named_after_its_script(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        result = _run(tmp_path, FASTAPI_APP, receiver)
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for(lambda: _server_spans(receiver, "/orders/{order_id}"), timeout=15)
    assert spans[0].resource["service.name"] == "app"  # type: ignore[attr-defined]
    assert len(spans) == 1  # one SERVER span per request, even though FastAPI and Starlette are both hooked


def test_a_sitecustomize_of_the_environment_still_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    marker = tmp_path / "marker"
    (site / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    env = command_environment({**os.environ, "PYTHONPATH": str(site), "OBSBOX_DISABLED": "true"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(sitecustomize_dir()), str(site)]
    out = subprocess.run([sys.executable, "-c", "import sys; print('obsbox.instrumentation.auto' in sys.modules)"],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True" and marker.read_text() == "ran"


def test_a_missing_command_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "obsbox.cli", "run", "--", "no-such-program-xyz"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "cannot run 'no-such-program-xyz'" in result.stderr and "hint:" in result.stderr


@pytest.mark.parametrize(("argv", "name"), [
    (["/venv/bin/uvicorn", "shop.api:app", "--port", "8000"], "shop.api"),
    (["/venv/bin/gunicorn", "-w", "2", "orders.wsgi:application"], "orders.wsgi"),
    (["/srv/payments.py"], "payments"),
])
def test_service_name_guess(argv: list[str], name: str) -> None:
    assert service_name_from(argv) == name
