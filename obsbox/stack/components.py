"""The components of the box as the native runtime knows them: binary names, ports, health and pinned releases.

>>> from obsbox.stack.components import COMPONENTS
>>> COMPONENTS["alertmanager"].binaries
('alertmanager', 'prometheus-alertmanager')
>>> COMPONENTS["prometheus"].default_port
9090

Ports are the ones users expect (`OBSBOX_<NAME>_PORT` overrides each; `0` asks the OS for a free one, which is
what the tests do). The docker runtime publishes the same defaults from stack.yml.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass

from obsbox.stack.errors import UsageError
from obsbox.stack.tree import pinned_images


@dataclass(frozen=True)
class Release:
    """A pinned official release: where to fetch it and how to check it.

    `sha256` pins the archive's digest in this file; when it is None the digest is read from the project's own
    checksum file for the same release (`checksums_url`), which the download then must match.
    """

    version: str
    url: str
    member: str                  # path of the binary inside the archive
    sha256: str | None = None
    checksums_url: str | None = None


@dataclass(frozen=True)
class Component:
    name: str
    binaries: tuple[str, ...]
    default_port: int
    health_path: str
    image_hint: str              # how a compose service of this component is recognised (image name part)
    install_hint: str
    image_var: str | None = None  # its pin in the tree's .env: the version the box runs and the build builds
    release_of: Callable[[str], Release] | None = None  # the official release of a version, for --download
    native: bool = True          # the native runtime knows how to render its config and run it
    fixed_port: bool = False     # natively it listens where the tree's config says (OBSBOX_<NAME>_PORT not read)
    health_port: int | None = None  # health answers on this port rather than the main one

    def health_url(self, port: int) -> str:
        return f"http://127.0.0.1:{self.health_port or port}{self.health_path}"

    @property
    def version(self) -> str | None:
        """The pinned version, from the image tag in .env ('prom/prometheus:v3.14.0' -> '3.14.0').

        >>> COMPONENTS["prometheus"].version == pinned_images()["PROMETHEUS_IMAGE"].rsplit(":v", 1)[1]
        True
        """
        if self.image_var is None:
            return None
        image = pinned_images().get(self.image_var, "")
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        return tag.removeprefix("v") or None

    @property
    def release(self) -> Release | None:
        """The official release archive of the pinned version (what `obsbox up --download` fetches)."""
        version = self.version
        return self.release_of(version) if self.release_of is not None and version else None


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _prometheus_release(v: str) -> Release:
    a = _arch()
    base = f"https://github.com/prometheus/prometheus/releases/download/v{v}"
    return Release(v, f"{base}/prometheus-{v}.linux-{a}.tar.gz", f"prometheus-{v}.linux-{a}/prometheus",
                   checksums_url=f"{base}/sha256sums.txt")


def _alertmanager_release(v: str) -> Release:
    a = _arch()
    base = f"https://github.com/prometheus/alertmanager/releases/download/v{v}"
    return Release(v, f"{base}/alertmanager-{v}.linux-{a}.tar.gz", f"alertmanager-{v}.linux-{a}/alertmanager",
                   checksums_url=f"{base}/sha256sums.txt")


def _collector_release(v: str) -> Release:
    a = _arch()
    base = f"https://github.com/open-telemetry/opentelemetry-collector-releases/releases/download/v{v}"
    return Release(v, f"{base}/otelcol-contrib_{v}_linux_{a}.tar.gz", "otelcol-contrib",
                   checksums_url=f"{base}/opentelemetry-collector-releases_otelcol-contrib_checksums.txt")


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            "prometheus", ("prometheus",), 9090, "/-/ready", "prometheus",
            "`obsbox build` (builds the pinned version with Go) or `obsbox up --download`",
            "PROMETHEUS_IMAGE", _prometheus_release,
        ),
        Component(
            "alertmanager", ("alertmanager", "prometheus-alertmanager"), 9093, "/-/ready", "alertmanager",
            "`obsbox build` (builds the pinned version with Go) or `obsbox up --download`",
            "ALERTMANAGER_IMAGE", _alertmanager_release,
        ),
        Component(
            "grafana", ("grafana", "grafana-server"), 3000, "/api/health", "grafana",
            "install Grafana from https://grafana.com/grafana/download, or run the box with Docker",
            "GRAFANA_IMAGE", fixed_port=True,
        ),
        Component(
            "loki", ("loki",), 3100, "/ready", "loki",
            "download loki from https://github.com/grafana/loki/releases, or run the box with Docker",
            "LOKI_IMAGE", fixed_port=True,
        ),
        Component(
            "pyroscope", ("pyroscope",), 4040, "/ready", "pyroscope",
            "download pyroscope from https://github.com/grafana/pyroscope/releases, or run the box with Docker",
            "PYROSCOPE_IMAGE", fixed_port=True,
        ),
        Component(
            "jaeger", ("jaeger",), 16686, "/status", "jaeger",
            "`obsbox build` (builds the pinned version with Go), or run the box with Docker",
            "JAEGER_IMAGE", fixed_port=True, health_port=13134,  # render.NATIVE_JAEGER_PORTS moves 13133 off the collector's
        ),
        Component(
            "collector", ("otelcol-contrib",), 4318, "/", "opentelemetry-collector",
            "`obsbox build` (builds the pinned version with Go) or `obsbox up --download`",
            "OTELCOL_IMAGE", _collector_release, fixed_port=True, health_port=13133,
        ),
    )
}

BROWSABLE = ("grafana", "prometheus", "jaeger", "alertmanager", "pyroscope")


def port_setting(name: str, default: int) -> int:
    """The port for `name` from OBSBOX_<NAME>_PORT (0 = any free port), else `default`."""
    var = f"OBSBOX_{name.upper()}_PORT"
    raw = os.environ.get(var)
    if raw is None or raw == "":
        return default
    try:
        port = int(raw)
    except ValueError:
        raise UsageError(f"{var}={raw!r} is not a port number", "give an integer 1-65535, or 0 for any free port") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"{var}={raw!r} is out of range", "give an integer 1-65535, or 0 for any free port")
    return port
