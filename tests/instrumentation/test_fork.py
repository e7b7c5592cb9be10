"""Forking and multi-process servers: every worker exports, each as its own service instance.

Real gunicorn (sync workers, with and without --preload) and `uvicorn --workers 2` serve a small instrumented app;
the OTLP receiver must get server spans and HTTP metrics from every worker process, with a distinct
service.instance.id per worker.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from obsbox.testing import OTLPReceiver
from tests._processes import free_port, stop

pytestmark = pytest.mark.slow

APP = textwrap.dedent("""
    import os

    import obsbox

    processors = []
    if "TEST_SECOND_ENDPOINT" in os.environ:  # a user's SDK processor: a second OTLP destination
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = OTLPSpanExporter(endpoint=os.environ["TEST_SECOND_ENDPOINT"] + "/v1/traces")
        processors.append(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    obsbox.configure(service_name="forked", endpoint=os.environ["TEST_OTLP_ENDPOINT"], console=False,
                     schedule_delay=0.05, metric_export_interval=0.3, span_processors=processors)


    def _wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(os.getpid()).encode()]


    async def _asgi(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


    wsgi = obsbox.instrument(_wsgi)
    asgi = obsbox.instrument(_asgi)
""")


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "forkapp.py").write_text(APP)
    return tmp_path


def _get_pid(port: int) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/work", headers={"Connection": "close"})
        body = conn.getresponse().read()
        conn.close()
        return int(body)
    except (OSError, ValueError, http.client.HTTPException):
        return None


@pytest.fixture
def server(request: pytest.FixtureRequest, app_dir: Path, otlp_receiver: OTLPReceiver) -> Iterator[tuple[int, int]]:
    """Start the server named by the test's parameter; yield (port, server pid)."""
    port = free_port()
    kind = request.param
    if kind.startswith("gunicorn"):
        command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--chdir", str(app_dir),
                   "--graceful-timeout", "5", "forkapp:wsgi"]
        if kind.startswith("gunicorn-preload"):
            command.insert(3, "--preload")
    else:
        command = [sys.executable, "-m", "uvicorn", "forkapp:asgi", "--workers", "2", "--host", "127.0.0.1",
                   "--port", str(port), "--app-dir", str(app_dir), "--log-level", "warning"]
    env = {**os.environ, "TEST_OTLP_ENDPOINT": otlp_receiver.endpoint}
    if kind.endswith("-second"):
        env["TEST_SECOND_ENDPOINT"] = request.getfixturevalue("second_receiver").endpoint
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _get_pid(port) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{kind} did not start: {process.stderr.read() if process.stderr else ''}")
            time.sleep(0.2)
        yield port, process.pid
    finally:
        stop(process, timeout=20)


@pytest.mark.parametrize("server", ["gunicorn", "gunicorn-preload", "uvicorn"], indirect=True)
def test_every_worker_exports(server: tuple[int, int], otlp_receiver: OTLPReceiver) -> None:
    port, _ = server
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:  # new connections until both workers answered
        pid = _get_pid(port)
        if pid is not None:
            pids.add(pid)
    assert len(pids) == 2, f"only workers {pids} answered"

    def from_every_worker() -> bool:
        span_pids = {s.resource.get("process.pid") for s in otlp_receiver.spans() if s.kind == 2}
        metric_pids = {p.resource.get("process.pid") for p in otlp_receiver.metrics("http.server.request.duration")}
        return pids <= span_pids and pids <= metric_pids

    otlp_receiver.wait_for(from_every_worker, timeout=30)
    instances: dict[int, set[str]] = {}
    for span in otlp_receiver.spans():
        if span.resource.get("process.pid") in pids:
            instances.setdefault(span.resource["process.pid"], set()).add(span.resource["service.instance.id"])
    assert all(len(ids) == 1 for ids in instances.values()), instances
    assert len({next(iter(ids)) for ids in instances.values()}) == len(pids)  # one instance id per worker
    assert all(s.resource["service.name"] == "forked" for s in otlp_receiver.spans())


@pytest.fixture
def second_receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as receiver:
        yield receiver


@pytest.mark.parametrize("server", ["gunicorn-preload-second"], indirect=True)
def test_a_users_sdk_processor_exports_from_every_forked_worker(
        server: tuple[int, int], otlp_receiver: OTLPReceiver, second_receiver: OTLPReceiver) -> None:
    """configure() with an SDK BatchSpanProcessor in the parent (--preload), then fork: each worker's spans reach
    the second destination too, under that worker's own service.instance.id (as obsbox's own export has it)."""
    port, _ = server
    pids: set[int] = set()
    deadline = time.monotonic() + 60
    while len(pids) < 2 and time.monotonic() < deadline:
        pid = _get_pid(port)
        if pid is not None:
            pids.add(pid)
    assert len(pids) == 2, f"only workers {pids} answered"

    def instances(receiver: OTLPReceiver) -> dict[int, str]:
        return {s.resource["process.pid"]: s.resource["service.instance.id"] for s in receiver.spans()
                if s.kind == 2 and s.resource.get("process.pid") in pids}

    second = second_receiver.wait_for(lambda: len(instances(second_receiver)) == 2 and instances(second_receiver),
                                      timeout=30)
    first = otlp_receiver.wait_for(lambda: len(instances(otlp_receiver)) == 2 and instances(otlp_receiver),
                                   timeout=30)
    assert second == first and len(set(second.values())) == 2
