"""`python -m obsbox.samples`: prints where each service listens, serves, and stops every child on terminate."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from obsbox.samples import SERVICES, faults, shop
from obsbox.testing import OTLPReceiver

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc (Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_services_list_names_ports_and_frameworks() -> None:
    assert [(s.name, s.default_port) for s in SERVICES.values()] == [
        ("gateway", 8080), ("orders", 8081), ("payments", 8082), ("inventory", 8083)]
    assert {s.interface for s in SERVICES.values()} == {"asgi", "wsgi"}
    assert SERVICES["payments"].url_env == "PAYMENTS_URL"


@pytest.mark.parametrize("stop", ["terminate", "ctrl-c"])
def test_run_all_prints_ports_serves_and_stops_every_child(stop: str) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("counts child processes through /proc (Linux only)")
    with OTLPReceiver() as receiver:
        env = os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "PYTHONUNBUFFERED": "1"}
        ports = [arg for name in SERVICES for arg in (f"--{name}-port", "0")]
        # its own process group, like a shell job: Ctrl-C reaches the whole group
        parent = subprocess.Popen([sys.executable, "-m", "obsbox.samples", *ports], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                  start_new_session=True)
        try:
            urls: dict[str, str] = {}
            assert parent.stdout is not None
            deadline = time.monotonic() + 60
            while len(urls) < len(SERVICES) and time.monotonic() < deadline:
                line = parent.stdout.readline()
                if not line:
                    break
                match = re.match(r"(\w+)\s+(http://127\.0\.0\.1:\d+)", line)
                if match:
                    urls[match[1]] = match[2]
            assert set(urls) == set(SERVICES), urls
            with urllib.request.urlopen(urls["gateway"] + "/catalogue", timeout=10) as response:
                assert response.status == 200
            children = _children(parent.pid)
            assert len(children) == len(SERVICES)
            if stop == "terminate":
                parent.send_signal(signal.SIGTERM)
            else:
                os.killpg(parent.pid, signal.SIGINT)
            assert parent.wait(30) == 0
            for pid in children:  # every child ended (a zombie would still be reaped by init)
                assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            with pytest.raises(OSError):
                urllib.request.urlopen(urls["gateway"] + "/catalogue", timeout=2)
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait()


def test_start_reports_a_taken_port_plainly() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(shop.ShopError, match=f"cannot listen on 127.0.0.1:{port}"):
            shop.start(ports={"payments": port}, services=["payments"])
    with pytest.raises(ValueError, match="unknown sample service 'billing'"):
        shop.start(services=["billing"])


@pytest.mark.parametrize("service", ["inventory", "payments"])  # one ASGI (uvicorn), one WSGI (werkzeug, threaded)
def test_serve_one_service_on_any_port_and_stop_cleanly(service: str) -> None:
    with OTLPReceiver() as receiver:
        env = os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "PYTHONUNBUFFERED": "1",
                            "OTEL_BSP_SCHEDULE_DELAY": "60000"}  # only the shutdown flush can export in time
        child = subprocess.Popen([sys.executable, "-m", "obsbox.samples", "serve", service, "--port", "0"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            match = re.search(rf"^{service} \(.+\) listening on (http://127\.0\.0\.1:\d+)$", line.strip())
            assert match, line
            path = "/items" if service == "inventory" else "/charges/count"
            deadline = time.monotonic() + 30
            while True:  # the socket is bound before the app is built: connections wait in the backlog
                try:
                    with urllib.request.urlopen(match[1] + path, timeout=10) as response:
                        assert response.status == 200
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            # The client has its answer before the server has finished the request (a WSGI server closes the
            # response afterwards, and that ends the span): wait until the service's own /metrics counts it done,
            # so what follows tests the shutdown flush and not that race.
            while True:
                with urllib.request.urlopen(match[1] + "/metrics", timeout=10) as response:
                    lines = response.read().decode().splitlines()
                if any(line.startswith("http_server_request_duration_seconds_count{")
                       and f'http_route="{path}"' in line for line in lines):
                    break
                assert time.monotonic() < deadline, "the request never finished on the server"
                time.sleep(0.1)
            child.send_signal(signal.SIGTERM)
            child.wait(20)
            assert child.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean shutdown
            # the graceful stop flushed the span (the batch delay alone would hold it for a minute)
            assert receiver.wait_for(lambda: [s for s in receiver.spans() if s.attributes.get("http.route") == path]
                                     or None, timeout=5)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_a_service_that_fails_to_start_is_reported_with_its_output(tmp_path: Path) -> None:
    with pytest.raises(shop.ShopError, match=r"(?s)sample service orders exited with code 1 while starting.*workers"):
        shop.start(ports={"orders": 0}, services=["orders"], env={"ORDERS_WORKERS": "0"}, log_dir=tmp_path)


def test_the_wsgi_service_finishes_a_request_in_flight_when_stopped_and_exports_its_span() -> None:
    # payments runs on werkzeug's threaded server: SIGTERM during a slow request must let it finish (the client
    # gets its answer) and the shutdown flush must carry its span.
    with OTLPReceiver() as receiver:
        env = os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "PYTHONUNBUFFERED": "1",
                            "OTEL_BSP_SCHEDULE_DELAY": "60000"}  # only the shutdown flush can export in time
        child = subprocess.Popen([sys.executable, "-m", "obsbox.samples", "serve", "payments", "--port", "0"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            assert child.stdout is not None
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)$", child.stdout.readline().strip())
            assert match
            base = match[1]
            deadline = time.monotonic() + 30
            while True:  # the socket is bound before the app is built
                try:
                    faults.set_faults(base, latency_ms=1500)
                    break
                except ConnectionError:
                    assert time.monotonic() < deadline, "payments never answered"
                    time.sleep(0.2)
            answers: list[int] = []

            def slow_request() -> None:
                with urllib.request.urlopen(base + "/charges/count", timeout=20) as response:
                    answers.append(response.status)

            client = threading.Thread(target=slow_request)
            client.start()
            time.sleep(0.5)  # the request is now sleeping its injected 1.5 s on the server
            child.send_signal(signal.SIGTERM)
            client.join(20)
            assert answers == [200]  # answered although the server was told to stop meanwhile
            child.wait(20)
            assert child.returncode == 0
            assert receiver.wait_for(
                lambda: [s for s in receiver.spans() if s.attributes.get("http.route") == "/charges/count"] or None,
                timeout=5,
            )
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
