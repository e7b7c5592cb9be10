"""Binary lookup and the verified download, against a local HTTP server serving an archive made here."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from obsbox.stack import binaries
from obsbox.stack.components import COMPONENTS, Release
from obsbox.stack.errors import DownloadError

MEMBER = "prometheus-9.9.9.linux-amd64/prometheus"
SCRIPT = b"#!/bin/sh\necho 'prometheus, version 9.9.9 (branch: test)'\n"


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OBSBOX_CACHE_DIR", str(tmp_path / "cache"))
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no prometheus on PATH: only the cache counts
    return tmp_path / "cache"


def _archive(root: Path, member: str = MEMBER) -> tuple[str, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = len(SCRIPT)
        info.mode = 0o755
        tf.addfile(info, io.BytesIO(SCRIPT))
    data = buf.getvalue()
    name = "prometheus-9.9.9.linux-amd64.tar.gz"
    (root / name).write_bytes(data)
    return name, hashlib.sha256(data).hexdigest()


def test_a_good_checksum_installs_the_binary_in_the_cache(server: tuple[str, Path], cache: Path) -> None:
    base, root = server
    name, digest = _archive(root)
    said: list[str] = []
    assert binaries.find_binary(COMPONENTS["prometheus"]) is None
    pinned = str(COMPONENTS["prometheus"].version)
    path = binaries.download(COMPONENTS["prometheus"], Release(pinned, f"{base}/{name}", MEMBER, sha256=digest),
                             progress=said.append)
    assert path == cache / "prometheus" / pinned / "prometheus"  # keyed by version, as the components build does
    assert os.access(path, os.X_OK)
    assert "9.9.9" in subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
    assert binaries.find_binary(COMPONENTS["prometheus"]) == path
    assert binaries.binary_version(path) == "9.9.9"
    assert any("verified" in line and digest[:12] in line for line in said)


def test_a_bad_checksum_is_refused_and_nothing_is_installed(server: tuple[str, Path], cache: Path) -> None:
    base, root = server
    name, digest = _archive(root)
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(DownloadError) as err:
        binaries.download(COMPONENTS["prometheus"], Release("9.9.9", f"{base}/{name}", MEMBER, sha256=wrong))
    assert "checksum mismatch" in err.value.message and wrong in err.value.message and digest in err.value.message
    assert "nothing was installed" in err.value.message
    assert err.value.hint
    assert not (cache / "prometheus").exists() or not any((cache / "prometheus").iterdir())
    assert binaries.find_binary(COMPONENTS["prometheus"]) is None


def test_the_digest_can_come_from_the_release_checksum_file(server: tuple[str, Path], cache: Path) -> None:
    base, root = server
    name, digest = _archive(root)
    (root / "sha256sums.txt").write_text(f"{'ab' * 32}  other.tar.gz\n{digest}  {name}\n")
    release = Release("9.9.9", f"{base}/{name}", MEMBER, checksums_url=f"{base}/sha256sums.txt")
    assert binaries.download(COMPONENTS["prometheus"], release).exists()


def test_a_checksum_file_without_the_archive_is_an_error(server: tuple[str, Path], cache: Path) -> None:
    base, root = server
    name, _ = _archive(root)
    (root / "sha256sums.txt").write_text(f"{'ab' * 32}  other.tar.gz\n")
    release = Release("9.9.9", f"{base}/{name}", MEMBER, checksums_url=f"{base}/sha256sums.txt")
    with pytest.raises(DownloadError, match="lists no sha256"):
        binaries.download(COMPONENTS["prometheus"], release)
    assert not (cache / "prometheus").exists()


def test_an_archive_without_the_binary_installs_nothing(server: tuple[str, Path], cache: Path) -> None:
    base, root = server
    name, digest = _archive(root, member="something-else/prometheus")
    with pytest.raises(DownloadError, match="does not contain"):
        binaries.download(COMPONENTS["prometheus"], Release("9.9.9", f"{base}/{name}", MEMBER, sha256=digest))
    assert not (cache / "prometheus" / "9.9.9" / "prometheus").exists()


def test_an_unreachable_server_is_a_clear_error(cache: Path) -> None:
    from obsbox.stack.ports import free_port

    url = f"http://127.0.0.1:{free_port()}/prometheus.tar.gz"
    with pytest.raises(DownloadError, match="cannot download"):
        binaries.download(COMPONENTS["prometheus"], Release("9.9.9", url, MEMBER, sha256="0" * 64), timeout=5)


def test_debian_names_are_found_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "debian-bin"
    bin_dir.mkdir()
    exe = bin_dir / "prometheus-alertmanager"
    exe.write_bytes(b"#!/bin/sh\necho 'alertmanager, version 0.25.0'\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert binaries.find_binary(COMPONENTS["alertmanager"]) == exe
    assert binaries.binary_version(exe) == "0.25.0"
