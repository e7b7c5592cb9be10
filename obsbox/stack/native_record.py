"""What the native runtime has running, kept in `<state>/native/record.json` between commands.

>>> record = NativeRecord()
>>> record.components["prometheus"] = Running(port=9090, url="http://127.0.0.1:9090",
...                                           health="http://127.0.0.1:9090/-/ready", version="3.14.0")
>>> NativeRecord.from_json(record.to_json()).components["prometheus"].version
'3.14.0'

`up` writes it, every later command (status, chaos, top, scrape, down) reads it, so they find the components
where `up` put them. Unknown keys in the file are ignored and missing ones take their defaults, so a record
written by another version of obsbox still loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from obsbox.stack.model import ProcessSpec
from obsbox.stack.state import read_json, write_json

Kind = Literal["backend", "sample"]


@dataclass
class Running:
    """One process `up` started: where it listens and how its health is read."""

    port: int
    url: str
    health: str = ""
    kind: Kind = "backend"
    version: str | None = None
    binary: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Running:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class NativeRecord:
    components: dict[str, Running] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)   # component -> why, and how to get it
    samples: list[ProcessSpec] = field(default_factory=list)   # handed to `up`; a later `up` starts them again
    samples_otlp_off: bool = False        # the shop runs with OTLP export off (no collector)
    sd_file: str | None = None            # where Prometheus discovers the shop's pull endpoints

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NativeRecord:
        return cls(
            components={n: Running.from_json(c) for n, c in (data.get("components") or {}).items()
                        if isinstance(c, dict) and "port" in c and "url" in c},
            unavailable=dict(data.get("unavailable") or {}),
            # A record of an older obsbox says only `true`: the processes are handed over again by the next `up`.
            samples=[ProcessSpec.from_json(p) for p in data.get("samples") or [] if isinstance(p, dict)]
            if isinstance(data.get("samples"), list) else [],
            samples_otlp_off=bool(data.get("samples_otlp_off")),
            sd_file=data.get("sd_file"),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: Path) -> NativeRecord:
        return cls.from_json(read_json(path) or {})

    def save(self, path: Path) -> None:
        write_json(path, self.to_json())
