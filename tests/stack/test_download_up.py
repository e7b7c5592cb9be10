"""`obsbox up --download` on a machine with neither Prometheus nor Alertmanager: both are fetched from a mirror
(a local server with GitHub's release layout and the projects' sha256sums.txt), verified, installed in the cache
and run under supervision. The archives hold small stand-ins that answer like the real servers' health and
version endpoints, so the whole path from download to `status` runs here."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from obsbox.stack.components import COMPONENTS
from tests.stack._harness import alive, component, native_env, obsbox, status, supervised_pids

STAND_IN = """#!{python}
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
if "--version" in sys.argv:
    print("{name}, version {version} (stand-in)")
    sys.exit(0)
address = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--web.listen-address="))
host, port = address.rsplit(":", 1)
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = {{"/api/v2/alerts": [], "/api/v1/alerts": {{"data": {{"alerts": []}}}}}}.get(self.path.split("?")[0], "ok")
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
print("stand-in {name} listening on", address, "argv", sys.argv[1:], flush=True)
HTTPServer((host, int(port)), Handler).serve_forever()
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _publish(www: Path, name: str, corrupt: bool = False) -> None:
    release = COMPONENTS[name].release
    assert release is not None
    script = STAND_IN.format(python=sys.executable, name=name, version=release.version).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(release.member)
        info.size, info.mode = len(script), 0o755
        tf.addfile(info, io.BytesIO(script))
    data = buf.getvalue()
    path = www / release.url.removeprefix("https://github.com/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data + (b"tampered" if corrupt else b""))
    assert release.checksums_url
    sums = www / release.checksums_url.removeprefix("https://github.com/")
    sums.write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    www = tmp_path / "www"
    www.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", www
    finally:
        server.shutdown()
        server.server_close()


def _env(tmp_path: Path, base: str) -> dict[str, str]:
    empty = tmp_path / "no-binaries"
    empty.mkdir(exist_ok=True)
    return native_env(tmp_path, OBSBOX_RELEASE_MIRROR=base, PATH=str(empty))


def test_up_download_fetches_verifies_installs_and_runs(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    base, www = mirror
    _publish(www, "prometheus")
    _publish(www, "alertmanager")
    env = _env(tmp_path, base)
    try:
        without = obsbox(env, "up", check=False)
        assert without.returncode == 1 and "needs Prometheus" in without.stderr and "--download" in without.stderr
        up = obsbox(env, "up", "--download", check=False)
        assert "verified" in up.stderr and "installed in" in up.stderr
        # The mirror has no collector release: that one is named as unavailable, the rest runs, and the command
        # exits 7 as docs/cli.md documents for a failed download.
        assert "collector" in up.stdout and "download failed" in up.stdout
        assert up.returncode == 7, up.stderr
        assert "could not download collector" in up.stderr and "hint:" in up.stderr
        report = status(env)
        prometheus, alertmanager = component(report, "prometheus"), component(report, "alertmanager")
        assert prometheus["state"] == "healthy" and prometheus["version"] == COMPONENTS["prometheus"].release.version  # type: ignore[union-attr]
        assert alertmanager["state"] == "healthy"
        pinned = tmp_path / "cache" / "prometheus" / str(COMPONENTS["prometheus"].version) / "prometheus"
        assert pinned.exists()
        argv = json.loads((tmp_path / "state" / "native" / "prometheus" / "supervisor.json").read_text())["argv"]
        assert argv[0] == str(pinned)
        assert "--web.enable-otlp-receiver" in argv  # a 3.x binary gets the 3.x flags
        rendered = (tmp_path / "state" / "native" / "prometheus" / "prometheus.yml").read_text()
        assert "otlp:" in rendered
    finally:
        obsbox(env, "down", check=False)
    assert not [p for p in supervised_pids(tmp_path / "state") if alive(p)]


def test_a_tampered_download_installs_nothing_and_starts_nothing(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    base, www = mirror
    _publish(www, "prometheus", corrupt=True)
    env = _env(tmp_path, base)
    result = obsbox(env, "up", "--download", check=False)
    assert result.returncode == 7
    assert "checksum mismatch" in result.stderr and "nothing was installed" in result.stderr
    assert not (tmp_path / "cache" / "prometheus").exists()
    assert not supervised_pids(tmp_path / "state")
