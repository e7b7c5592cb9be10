"""Engine detection and container pids through the real docker SDK, talking to a small stand-in of the Docker
Engine API on a unix socket (no engine runs here)."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

pytest.importorskip("docker", reason="the docker SDK is the optional extra obsbox[docker]")

from obsbox.stack.docker import _sdk_pids, engine_available  # noqa: E402


class _Engine(BaseHTTPRequestHandler):
    """Answers the few Engine API calls the SDK makes: /version, /containers/json, /containers/{id}/json."""

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/version"):
            body: object = {"Version": "28.2.2", "ApiVersion": "1.50", "MinAPIVersion": "1.24"}
        elif path.endswith("/containers/json"):
            body = [{"Id": "c0ffee", "Names": ["/obsbox-prometheus-1"]}]
        elif path.endswith("/containers/c0ffee/json"):
            body = {"Id": "c0ffee", "Name": "/obsbox-prometheus-1", "State": {"Status": "running", "Pid": 4242}}
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: object) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[Path]:
    sock = tmp_path / "docker.sock"
    server = _UnixServer(str(sock), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield sock
    finally:
        server.shutdown()
        server.server_close()


def test_an_engine_answering_on_docker_host_is_detected(engine_socket: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{engine_socket}")
    monkeypatch.delenv("OBSBOX_DOCKER_SDK", raising=False)
    assert engine_available() == (True, "28.2.2")
    assert _sdk_pids() == {"obsbox-prometheus-1": 4242}


def test_no_engine_is_said_plainly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'absent.sock'}")
    monkeypatch.delenv("OBSBOX_DOCKER_SDK", raising=False)
    ok, why = engine_available()
    assert not ok and why == f"no Docker engine answers at unix://{tmp_path / 'absent.sock'}"
    assert _sdk_pids() == {}
