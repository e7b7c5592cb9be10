"""Where obsbox keeps what it started: the state directory, the runtime record and the Grafana password.

>>> from obsbox.stack.state import state_dir
>>> state_dir()                                   # doctest: +SKIP
PosixPath('/home/me/.local/state/obsbox')

`$OBSBOX_STATE_DIR` wins, then `$XDG_STATE_HOME/obsbox`, then `~/.local/state/obsbox`.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

RUNTIME_FILE = "runtime.json"
PASSWORD_FILE = "grafana-admin-password"


def state_dir() -> Path:
    """The state directory (created on demand, mode 0700: it holds a password)."""
    explicit = os.environ.get("OBSBOX_STATE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(base) / "obsbox"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_json(path: Path, data: dict[str, Any] | list[Any]) -> None:
    """Write atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def active_runtime(root: Path | None = None) -> dict[str, Any] | None:
    """The record of the running stack (`{"runtime": "native"|"docker", ...}`), or None when nothing runs."""
    return read_json((root or state_dir()) / RUNTIME_FILE)


def record_runtime(record: dict[str, Any], root: Path | None = None) -> None:
    write_json((root or state_dir()) / RUNTIME_FILE, record)


def forget_runtime(root: Path | None = None) -> None:
    (root or state_dir()).joinpath(RUNTIME_FILE).unlink(missing_ok=True)


def grafana_password(root: Path | None = None) -> tuple[str, bool]:
    """The Grafana admin password and whether it was generated just now (then the caller prints it, once)."""
    path = (root or state_dir()) / PASSWORD_FILE
    if path.exists():
        return path.read_text().strip(), False
    password = secrets.token_urlsafe(18)
    # Created 0600 from the start: the password never sits in a world-readable file, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password, True
