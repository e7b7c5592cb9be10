"""`obsbox run -- COMMAND`: real programs, unchanged, export server spans to a real OTLP receiver."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from obsbox.instrumentation.auto import command_environment, service_name_for, sitecustomize_dir
from obsbox.testing import OTLPReceiver
from tests._apps import APPS, app_env, get, output, serve
from tests._processes import free_port

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


def test_a_program_in_app_py_is_named_after_its_directory(tmp_path: Path) -> None:
    with OTLPReceiver() as receiver:
        result = _run(tmp_path, FASTAPI_APP, receiver)
        assert result.returncode == 0, result.stderr
        spans = receiver.wait_for(lambda: _server_spans(receiver, "/orders/{order_id}"), timeout=15)
    assert f"service.name is {tmp_path.name!r} (the working directory)" in result.stderr
    assert spans[0].resource["service.name"] == tmp_path.name  # type: ignore[attr-defined]
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


BOOKSHELF = Path(__file__).parents[1] / "apps" / "bookshelf"


@pytest.mark.parametrize(("argv", "name"), [
    (["/venv/bin/uvicorn", "shop.api:app", "--port", "8000"], "shop.api"),
    (["uvicorn", "--host", "127.0.0.1", "--port", "8000", "inventory.main:app"], "inventory"),
    (["/venv/bin/gunicorn", "-w", "2", "orders.wsgi:application"], "orders"),
    (["gunicorn", "-b", "127.0.0.1:8001", "-k", "uvicorn.workers.UvicornWorker", "billing.asgi:app"], "billing"),
    (["gunicorn", "--reload", "-b", "127.0.0.1:8001", "orders.wsgi"], "orders"),
    (["/srv/payments.py"], "payments"),
    (["python3", "-m", "flask", "--app", "flaskr:create_app()", "run"], "flaskr"),
    (["flask", "--app=blog", "run", "--port", "5001"], "blog"),
    (["python", "manage.py", "runserver", "127.0.0.1:8000"], "bookshelf"),   # manage.py's settings default
    (["gunicorn", "-b", "127.0.0.1:8001", "-w", "2", "bookshelf.wsgi"], "bookshelf"),  # wsgi.py's
    (["python", "manage.py", "runserver", "--settings=library.settings.dev"], "library"),
    (["uvicorn", "main:app", "--host", "127.0.0.1"], "bookshelf"),  # nothing but a generic name: the directory
    (["flask", "run", "--host", "127.0.0.1"], "bookshelf"),
])
def test_service_name_is_derived_from_what_the_command_serves(argv: list[str], name: str) -> None:
    assert service_name_for(argv, {}, BOOKSHELF).name == name


def test_an_explicit_name_wins_and_a_host_port_is_never_one() -> None:
    assert service_name_for(["uvicorn", "x.y:app"], {"OTEL_SERVICE_NAME": "orders"}).name == "orders"
    assert service_name_for(["uvicorn", "x.y:app"], {"OTEL_RESOURCE_ATTRIBUTES": "service.name=pay"}).name == "pay"
    for argv in (["python", "manage.py", "runserver", "127.0.0.1:8000"], ["gunicorn", "-b", "127.0.0.1:8001"],
                 ["uvicorn", "localhost:8000"], ["hypercorn", "[::1]:8000"]):
        name = service_name_for(argv, {}, Path("/srv/shop")).name
        assert name == "shop", (argv, name)


SERVED = {
    "runserver": ("bookshelf", ["manage.py", "runserver", "127.0.0.1:{port}"], "/books/1/", "bookshelf"),
    "gunicorn": ("bookshelf", ["-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "bookshelf.wsgi"], "/books/1/",
                 "bookshelf"),
    "flask": ("flaskr", ["-m", "flask", "--app", "flaskr", "run", "--port", "{port}"], "/posts/1", "flaskr"),
    "uvicorn": ("inventory", ["-m", "uvicorn", "inventory.main:app", "--port", "{port}"], "/stock/apple",
                "inventory"),
}


@pytest.mark.slow
@pytest.mark.parametrize("server", sorted(SERVED))
def test_obsbox_run_names_a_real_app_and_says_so(server: str) -> None:
    """The apps of tests/apps, unchanged, served as their users serve them under `obsbox run`."""
    app, args, path, name = SERVED[server]
    port = free_port()
    command = [sys.executable, "-m", "obsbox.cli", "run", "--", sys.executable,
               *(a.replace("{port}", str(port)) for a in args)]
    with OTLPReceiver() as receiver:
        with serve(command, APPS / app, app_env(receiver), port, ready=path) as process:
            assert get(port, path)[0] == 200
            spans = receiver.wait_for(lambda: [s for s in receiver.spans() if s.kind == 2], timeout=15)
        printed = output(process)
    assert {s.resource["service.name"] for s in spans} == {name}
    assert f"obsbox run: service.name is {name!r}" in printed and "--service-name NAME" in printed, printed
