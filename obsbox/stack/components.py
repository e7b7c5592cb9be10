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
from dataclasses import dataclass

from obsbox.stack.errors import UsageError


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
    release: Release | None = None
    native: bool = True          # the native runtime knows how to render its config and run it
    fixed_port: bool = False     # natively it listens where the tree's config says (OBSBOX_<NAME>_PORT not read)
    health_port: int | None = None  # health answers on this port rather than the main one

    def health_url(self, port: int) -> str:
        return f"http://127.0.0.1:{self.health_port or port}{self.health_path}"


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _prometheus_release() -> Release:
    v, a = "3.14.0", _arch()
    base = f"https://github.com/prometheus/prometheus/releases/download/v{v}"
    return Release(v, f"{base}/prometheus-{v}.linux-{a}.tar.gz", f"prometheus-{v}.linux-{a}/prometheus",
                   checksums_url=f"{base}/sha256sums.txt")


def _alertmanager_release() -> Release:
    v, a = "0.34.0", _arch()
    base = f"https://github.com/prometheus/alertmanager/releases/download/v{v}"
    return Release(v, f"{base}/alertmanager-{v}.linux-{a}.tar.gz", f"alertmanager-{v}.linux-{a}/alertmanager",
                   checksums_url=f"{base}/sha256sums.txt")


def _collector_release() -> Release:
    v, a = "0.159.0", _arch()
    base = f"https://github.com/open-telemetry/opentelemetry-collector-releases/releases/download/v{v}"
    return Release(v, f"{base}/otelcol-contrib_{v}_linux_{a}.tar.gz", "otelcol-contrib",
                   checksums_url=f"{base}/opentelemetry-collector-releases_otelcol-contrib_checksums.txt")


COMPONENTS: dict[str, Component] = {
    c.name: c
    for c in (
        Component(
            "prometheus", ("prometheus",), 9090, "/-/ready", "prometheus",
            "Debian/Ubuntu: sudo apt-get install prometheus; or `obsbox up --download`",
            _prometheus_release(),
        ),
        Component(
            "alertmanager", ("alertmanager", "prometheus-alertmanager"), 9093, "/-/ready", "alertmanager",
            "Debian/Ubuntu: sudo apt-get install prometheus-alertmanager; or `obsbox up --download`",
            _alertmanager_release(),
        ),
        Component(
            "grafana", ("grafana", "grafana-server"), 3000, "/api/health", "grafana",
            "install Grafana from https://grafana.com/grafana/download, or run the box with Docker",
            fixed_port=True,
        ),
        Component(
            "loki", ("loki",), 3100, "/ready", "loki",
            "download loki from https://github.com/grafana/loki/releases, or run the box with Docker",
            fixed_port=True,
        ),
        Component(
            "jaeger", ("jaeger",), 16686, "/status", "jaeger",
            "download jaeger v2 from https://github.com/jaegertracing/jaeger/releases, or run the box with Docker",
            fixed_port=True, health_port=13134,  # render.NATIVE_JAEGER_PORTS moves 13133 off the collector's
        ),
        Component(
            "collector", ("otelcol-contrib",), 4318, "/", "opentelemetry-collector",
            "download otelcol-contrib from https://github.com/open-telemetry/opentelemetry-collector-releases/"
            "releases, or run the box with Docker",
            _collector_release(), fixed_port=True, health_port=13133,
        ),
    )
}

BROWSABLE = ("grafana", "prometheus", "jaeger", "alertmanager")


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
