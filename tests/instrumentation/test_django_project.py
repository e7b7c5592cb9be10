"""A Django project in its usual layout (tests/apps/bookshelf: settings module, urls, wsgi.py) served by
`manage.py runserver` and `gunicorn -w 2`, instrumented with the README's lines in wsgi.py:
`obsbox.configure(...)` and `obsbox.instrument(application)` with the return value not used."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from obsbox.testing import OTLPReceiver, SpanRecord
from tests._apps import APPS, app_env, get, serve
from tests._processes import free_port

pytestmark = pytest.mark.slow

SERVERS = {
    "runserver": lambda port: [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}"],
    "gunicorn": lambda port: [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
                              "--graceful-timeout", "5", "bookshelf.wsgi"],
}


@pytest.fixture(scope="module", params=sorted(SERVERS))
def bookshelf(request: pytest.FixtureRequest) -> Iterator[tuple[str, int, OTLPReceiver]]:
    """The bookshelf project served with the README's two lines in its wsgi.py."""
    port = free_port()
    with OTLPReceiver() as receiver, serve(SERVERS[request.param](port), APPS / "bookshelf",
                                           app_env(receiver, OBSBOX_IN_APP="1"), port, ready="/books/2/"):
        yield request.param, port, receiver


def _server_spans(receiver: OTLPReceiver, route: str | None) -> list[SpanRecord]:
    return [s for s in receiver.spans() if s.kind == 2 and s.attributes.get("http.route") == route]


def test_instrument_with_the_result_discarded_instruments_the_application(
        bookshelf: tuple[str, int, OTLPReceiver]) -> None:
    server, port, receiver = bookshelf
    workers = 2 if server == "gunicorn" else 1

    def served_by_every_worker() -> bool:  # a new connection each time, until (gunicorn) both workers served
        assert get(port, "/books/1/")[0] == 200
        return len({s.resource["process.pid"] for s in _server_spans(receiver, "/books/<int:pk>/")}) >= workers

    receiver.wait_for(served_by_every_worker, timeout=45)
    spans = receiver.wait_for(lambda: _server_spans(receiver, "/books/<int:pk>/"), timeout=15)
    assert spans[0].name == "GET /books/<int:pk>/"
    assert spans[0].resource["service.name"] == "bookshelf"
    assert spans[0].attributes["http.response.status_code"] == 200

    def duration_points() -> list[object]:
        return [p for p in receiver.metrics("http.server.request.duration")
                if p.attributes.get("http.route") == "/books/<int:pk>/"]

    assert receiver.wait_for(duration_points, timeout=15)


def test_the_readme_shows_the_lines_the_project_runs() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "get_wsgi_application" in b)
    wsgi = (APPS / "bookshelf" / "bookshelf" / "wsgi.py").read_text()
    for line in block.splitlines():
        code = line.split("#")[0].strip()
        assert code in wsgi, f"README line {code!r} is not what the tested project runs"
