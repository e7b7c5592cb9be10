"""Port checks before a start: is a port free on 127.0.0.1, and if not, which process holds it.

>>> from obsbox.stack.ports import port_is_free, free_port
>>> port = free_port()
>>> port_is_free(port)
True
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from pathlib import Path

from obsbox.stack.errors import PortInUseError


def free_port() -> int:
    """A port the OS considers free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when a listener could bind `host:port` now (a bind test, the question that matters)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR as servers set it: TIME_WAIT leftovers of a stopped component do not count as taken.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """'pid N (cmdline)' of the process listening on `port`, when /proc lets us see it (Linux, same user)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    proc = Path("/proc")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return f"pid {entry.name} ({_cmdline(int(entry.name))})"
        except OSError:
            continue
    return "another process"


def check_ports(wanted: dict[str, int], *, settable: Collection[str] | None = None) -> None:
    """Raise PortInUseError for the first component whose port is taken (name → port). `settable`: the names whose
    port an OBSBOX_<NAME>_PORT variable moves (None: all of them)."""
    for component, port in wanted.items():
        if port and not port_is_free(port):
            raise PortInUseError(port, component, port_holder(port),
                                 settable=settable is None or component in settable)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)[:120]
