"""What the runtimes report: per-component status, firing alerts, and the result of `up`.

>>> from obsbox.stack.model import ComponentStatus
>>> ComponentStatus("prometheus", "native", "healthy", url="http://127.0.0.1:9090").to_json()["state"]
'healthy'

`StatusReport.to_json()` is the documented, versioned schema of `obsbox status --json` (docs/cli.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

STATUS_SCHEMA_VERSION = 1

_NULLABLE_STR = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}

# The JSON schema of `obsbox status --json` (documented in docs/cli.md; tests validate real output against it).
STATUS_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schema", "runtime", "running", "components", "alerts", "alerts_error"],
    "properties": {
        "schema": {"const": STATUS_SCHEMA_VERSION},
        "runtime": {"enum": ["native", "docker", None]},
        "running": {"type": "boolean"},
        "components": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "kind", "runtime", "state", "healthy", "url", "version", "pid", "restarts",
                         "exit_code", "reason"],
            "properties": {
                "name": {"type": "string"},
                "kind": {"enum": ["backend", "sample"]},
                "runtime": {"enum": ["native", "docker"]},
                "state": {"enum": ["healthy", "running", "starting", "restarting", "exited", "stopped",
                                   "unavailable"]},
                "healthy": {"type": "boolean"},
                "url": _NULLABLE_STR, "version": _NULLABLE_STR, "pid": _NULLABLE_INT,
                "restarts": {"type": "integer"}, "exit_code": _NULLABLE_INT, "reason": _NULLABLE_STR,
            },
        }},
        "alerts": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "state", "labels", "source", "since", "summary"],
            "properties": {
                "name": {"type": "string"}, "state": {"enum": ["firing", "pending"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "source": {"enum": ["alertmanager", "prometheus"]}, "since": _NULLABLE_STR, "summary": _NULLABLE_STR,
            },
        }},
        "alerts_error": _NULLABLE_STR,
        # Added by `obsbox status` (schema 1 still: fields are only ever added), from Alertmanager's API.
        "silences": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "state", "matchers", "starts_at", "ends_at", "created_by", "comment"],
            "properties": {
                "id": {"type": "string"}, "state": {"enum": ["active", "pending", "expired"]},
                "matchers": {"type": "array", "items": {"type": "string"}},
                "starts_at": {"type": "string"}, "ends_at": {"type": "string"},
                "created_by": {"type": "string"}, "comment": {"type": "string"},
            },
        }},
        "silences_error": _NULLABLE_STR,
    },
}

# healthy: answers its health check; running: process/container up, health not (yet) passing;
# exited: stopped on its own (crash); stopped: stopped by obsbox; unavailable: cannot run here (reason says why).
State = Literal["healthy", "running", "starting", "exited", "stopped", "unavailable"]
Progress = Callable[[str], None]


@dataclass
class ComponentStatus:
    name: str
    runtime: str
    state: str
    url: str | None = None
    version: str | None = None
    pid: int | None = None
    kind: Literal["backend", "sample"] = "backend"
    restarts: int = 0
    exit_code: int | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "runtime": self.runtime, "state": self.state,
            "healthy": self.state == "healthy", "url": self.url, "version": self.version, "pid": self.pid,
            "restarts": self.restarts, "exit_code": self.exit_code, "reason": self.reason,
        }


@dataclass
class Alert:
    name: str
    state: str                   # firing | pending
    labels: dict[str, str]
    source: str                  # alertmanager | prometheus
    since: str | None = None
    summary: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "labels": self.labels, "source": self.source,
                "since": self.since, "summary": self.summary}


@dataclass
class StatusReport:
    runtime: str | None
    components: list[ComponentStatus] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    alerts_error: str | None = None

    @property
    def running(self) -> bool:
        return any(c.state in ("healthy", "running", "starting") for c in self.components)

    def component(self, name: str) -> ComponentStatus | None:
        return next((c for c in self.components if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": STATUS_SCHEMA_VERSION,
            "runtime": self.runtime,
            "running": self.running,
            "components": [c.to_json() for c in self.components],
            "alerts": [a.to_json() for a in self.alerts],
            "alerts_error": self.alerts_error,
        }


@dataclass
class Started:
    name: str
    url: str | None
    seconds: float | None        # time to ready; None when it was already running


@dataclass
class UpReport:
    runtime: str
    started: list[Started] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    grafana_password: str | None = None
    password_is_new: bool = False
    note: str | None = None      # why this runtime (e.g. no Docker engine answers)
    notes: list[str] = field(default_factory=list)  # one line each, worth knowing about what was started
    failed_downloads: list[str] = field(default_factory=list)  # `up --download`: components whose download failed


@dataclass(frozen=True)
class ProcessSpec:
    """A process the engine runs beside the box, described by whoever owns it (the sample shop hands its services
    over this way; the engine knows none of them by name).

    `argv` may contain "{host}" and "{port}"; `url_env` is the variable in which every process of the group gets
    this one's base URL; `requires` are modules that must be importable first, `install_hint` says how to get them.
    """

    name: str
    default_port: int
    argv: tuple[str, ...]
    health_path: str = "/"
    url_env: str | None = None
    requires: tuple[str, ...] = ()
    install_hint: str = ""

    def command(self, host: str, port: int) -> list[str]:
        return [a.format(host=host, port=port) for a in self.argv]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessSpec:
        return cls(str(data["name"]), int(data["default_port"]), tuple(data["argv"]),
                   str(data.get("health_path") or "/"), data.get("url_env"), tuple(data.get("requires") or ()),
                   str(data.get("install_hint") or ""))


class Runtime(Protocol):
    """What the CLI asks of a runtime (docker or native)."""

    name: str

    def up(self, *, samples: Sequence[ProcessSpec], progress: Progress) -> UpReport: ...

    def down(self, *, purge: bool, progress: Progress) -> None: ...

    def status(self) -> StatusReport: ...

    def urls(self) -> dict[str, str]: ...

    def log_files(self, component: str | None) -> list[tuple[str, str]]: ...

    def logs(self, component: str | None, *, lines: int, follow: bool, write: Callable[[str], None]) -> int:
        """Show the logs (the last `lines`, then more while `follow`); the exit code to end with."""
        ...
