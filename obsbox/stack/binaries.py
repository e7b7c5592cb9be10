"""Finding a component's binary: PATH (with Debian's names), then the cache, then a pinned, verified download.

>>> from obsbox.stack.binaries import find_binary
>>> from obsbox.stack.components import COMPONENTS
>>> find_binary(COMPONENTS["alertmanager"])     # doctest: +SKIP
PosixPath('/usr/bin/prometheus-alertmanager')

A download is written to a temporary file, its sha256 compared with the pinned digest (or the digest in the
project's own checksum file for that release), and only then unpacked into the cache: a bad checksum leaves
nothing installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from obsbox.stack.components import Component, Release
from obsbox.stack.errors import BuildError, DownloadError

_CHUNK = 1 << 16
_GITHUB = "https://github.com"


def cache_dir() -> Path:
    """Where downloaded binaries live: $OBSBOX_CACHE_DIR, else $XDG_CACHE_HOME/obsbox/bin, else ~/.cache/obsbox/bin."""
    explicit = os.environ.get("OBSBOX_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "obsbox" / "bin"


def find_binary(component: Component) -> Path | None:
    """The component's executable at its pinned version in the cache (built by scripts/build-components.sh or
    downloaded), else on PATH (any of its names), else an unversioned one in the cache, else None.

    The pinned version comes first: it is what the box ships and what the tests run, so an older package on PATH
    (Debian's Prometheus 2.42) is only a fallback.
    """
    version = component.version
    if version:
        for name in component.binaries:
            pinned = cache_dir() / component.name / version / name
            if pinned.is_file() and os.access(pinned, os.X_OK):
                return pinned
    for name in component.binaries:
        found = shutil.which(name)
        if found:
            return Path(found)
    for name in component.binaries:
        cached = cache_dir() / component.name / name
        if cached.is_file() and os.access(cached, os.X_OK):
            return cached
    return None


# The tools each component's build or release carries besides its server (their versions go together).
_TOOLS = {"promtool": "prometheus", "amtool": "alertmanager"}


def find_tool(name: str) -> Path | None:
    """A component's server or tool ('prometheus', 'promtool', 'alertmanager', 'amtool', ...): the pinned build in
    the cache first, then PATH (Debian names included).

    >>> find_tool("promtool")          # doctest: +SKIP
    PosixPath('/root/.cache/obsbox/bin/prometheus/3.14.0/promtool')
    """
    from obsbox.stack.components import COMPONENTS

    owner = COMPONENTS.get(_TOOLS.get(name, name)) or next(
        (c for c in COMPONENTS.values() if name in c.binaries), None)
    if owner is not None and owner.version:
        pinned = cache_dir() / owner.name / owner.version / name
        if pinned.is_file() and os.access(pinned, os.X_OK):
            return pinned
    if owner is not None and name == owner.name:
        return find_binary(owner)
    found = shutil.which(name)
    return Path(found) if found else None


BUILDABLE = ("collector", "prometheus", "alertmanager", "jaeger", "helm", "compose")


def build(components: tuple[str, ...] = ()) -> None:
    """Build the pinned versions of `components` (default: all of BUILDABLE) from their Go modules into the cache.

    Runs the tree's scripts/build-components.sh (shipped in the wheel too), which prints its progress on stderr,
    keeps what is already built, and says what it skips without a Go toolchain.
    """
    from obsbox.stack.tree import stack_root

    script = stack_root() / "scripts" / "build-components.sh"
    bash = shutil.which("bash")
    if bash is None or not script.is_file():
        raise BuildError(f"cannot build: {'bash is missing' if bash is None else f'{script} is missing'}",
                         "reinstall obsbox, or use `obsbox up --download` / Docker")
    env = {**os.environ, "OBSBOX_CACHE_DIR": str(cache_dir())}
    code = subprocess.call([bash, str(script), *components], env=env)
    if code != 0:
        raise BuildError(f"the build of {' '.join(components) or 'the components'} failed (exit {code})",
                         "see the messages above; `obsbox up --download` fetches official releases instead")


def binary_version(binary: Path) -> str | None:
    """'2.42.0' from `binary --version` (Prometheus-style and most Go binaries print it on the first line)."""
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+\.\d+\.\d+)", out.stdout + out.stderr)
    return match.group(1) if match else None


def download(
    component: Component, release: Release | None = None, *, progress: Callable[[str], None] | None = None,
    timeout: float = 30.0,
) -> Path:
    """Fetch the pinned release of `component`, verify its sha256, unpack its binary into the cache."""
    release = release or component.release
    if release is None:
        raise DownloadError(f"obsbox has no pinned release of {component.name} to download", component.install_hint)
    release = _mirrored(release)
    say = progress or (lambda _m: None)
    expected = release.sha256 or _published_digest(release, timeout)
    target_dir = cache_dir() / component.name / release.version
    target = target_dir / Path(release.member).name
    say(f"downloading {component.name} {release.version} from {release.url}")
    with tempfile.TemporaryDirectory(prefix="obsbox-dl-") as tmp:
        archive = Path(tmp) / Path(release.url).name
        digest = _fetch(release.url, archive, timeout, say)
        if digest != expected.lower():
            raise DownloadError(
                f"checksum mismatch for {release.url}: expected sha256 {expected}, got {digest}; nothing was installed",
                "retry later (a truncated or tampered download), or install the binary yourself: "
                + component.install_hint,
            )
        data = _extract_member(archive, release.member)
        target_dir.mkdir(parents=True, exist_ok=True)
        staged = target_dir / f".{target.name}.tmp"
        staged.write_bytes(data)
        staged.chmod(0o755)
        os.replace(staged, target)
    say(f"{component.name} {release.version} verified (sha256 {expected[:12]}…) and installed in {target}")
    return target


def _mirrored(release: Release) -> Release:
    """OBSBOX_RELEASE_MIRROR=<base URL> fetches github.com release files from a mirror with the same layout
    (an internal artifact proxy; the tests' local server). The pinned digests still apply."""
    mirror = os.environ.get("OBSBOX_RELEASE_MIRROR", "").rstrip("/")
    if not mirror:
        return release

    def move(url: str | None) -> str | None:
        return mirror + url[len(_GITHUB):] if url and url.startswith(_GITHUB) else url

    return dataclasses.replace(release, url=move(release.url) or release.url, checksums_url=move(release.checksums_url))


def _fetch(url: str, dest: Path, timeout: float, say: Callable[[str], None]) -> str:
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, dest.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done, shown = 0, -1
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                pct = done * 100 // total if total else -1
                if total and pct // 10 != shown:
                    shown = pct // 10
                    say(f"  {done / 2**20:.1f} / {total / 2**20:.1f} MiB ({pct}%)")
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {url}: {reason}", "check the network, or install the binary yourself") from None
    return sha.hexdigest()


def _published_digest(release: Release, timeout: float) -> str:
    if not release.checksums_url:
        raise DownloadError(f"no checksum is pinned for {release.url}", "install the binary yourself")
    try:
        with urllib.request.urlopen(release.checksums_url, timeout=timeout) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {release.checksums_url}: {reason}",
                            "check the network, or install the binary yourself") from None
    name = Path(release.url).name
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            return str(parts[0]).lower()
    raise DownloadError(f"{release.checksums_url} lists no sha256 for {name}", "install the binary yourself")


def _extract_member(archive: Path, member: str) -> bytes:
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                return zf.read(member)
        with tarfile.open(archive) as tf:
            handle = tf.extractfile(member)
            if handle is None:
                raise KeyError(member)
            return io.BytesIO(handle.read()).getvalue()
    except (KeyError, tarfile.TarError, zipfile.BadZipFile) as e:
        raise DownloadError(f"{archive.name} does not contain {member} ({e})", "install the binary yourself") from None
