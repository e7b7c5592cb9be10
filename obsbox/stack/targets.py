"""Your own services in the box, by their Prometheus pull endpoint: `obsbox scrape add 127.0.0.1:9464`.

>>> from obsbox.stack import targets
>>> targets.parse_address("localhost:9464")
'localhost:9464'

Services on this machine normally push OTLP to the collector (127.0.0.1:4318, obsbox's default) and need no
registration. Where no collector runs (the native runtime without an `otelcol-contrib` binary), a service serves
`/metrics` (`OBSBOX_METRICS_PORT=9464`) and is listed here: the list is kept in the state dir
(`scrape-targets.json`, across `up`/`down`) and published as a file-discovery file next to the sample services',
which the box's `pull` job reads (honor_labels, so the endpoint's own `service_name` wins). Prometheus notices a
change within seconds, without a restart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from obsbox.stack.errors import UsageError
from obsbox.stack.state import read_json, write_json

TARGETS_FILE = "scrape-targets.json"
# The file-discovery file in the native Prometheus' directory (the tree's `pull` job reads every *.json there).
SD_FILE = "obsbox-user-targets.json"
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*):(\d{1,5})$")


@dataclass(frozen=True)
class Target:
    address: str                  # host:port of the /metrics endpoint
    service_name: str | None = None

    def to_json(self) -> dict[str, str | None]:
        return {"address": self.address, "service_name": self.service_name}


def parse_address(text: str) -> str:
    """`host:port` of a pull endpoint (an http:// prefix and a /metrics suffix are accepted and dropped)."""
    address = text.strip().removeprefix("http://").removesuffix("/metrics").rstrip("/")
    match = _ADDRESS.match(address)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise UsageError(f"{text!r} is not a host:port", "e.g. `obsbox scrape add 127.0.0.1:9464` for a service "
                         "started with OBSBOX_METRICS_PORT=9464")
    return address


def load(state: Path) -> list[Target]:
    data = read_json(state / TARGETS_FILE) or {}
    return [Target(str(t["address"]), t.get("service_name")) for t in data.get("targets", [])
            if isinstance(t, dict) and t.get("address")]


def save(state: Path, targets: list[Target]) -> None:
    write_json(state / TARGETS_FILE, {"targets": [t.to_json() for t in targets]})


def add(state: Path, address: str, service_name: str | None) -> list[Target]:
    """Add (or re-label) a target; returns the list now kept."""
    address = parse_address(address)
    kept = [t for t in load(state) if t.address != address] + [Target(address, service_name or None)]
    save(state, kept)
    return kept


def remove(state: Path, address: str) -> list[Target]:
    """Remove a target; UsageError when it was not listed."""
    address = parse_address(address)
    before = load(state)
    kept = [t for t in before if t.address != address]
    if len(kept) == len(before):
        raise UsageError(f"{address} is not a scrape target", "`obsbox scrape list` shows them")
    save(state, kept)
    return kept


def publish(targets: list[Target], sd_dir: Path) -> Path:
    """Write the targets as a Prometheus file-discovery file in `sd_dir`; its path."""
    groups = [{"targets": [t.address], "labels": {"service_name": t.service_name} if t.service_name else {}}
              for t in targets]
    path = sd_dir / SD_FILE
    write_json(path, groups)
    return path
