"""Showing the native components' log files: the last lines, and with `follow` what they write next.

>>> from obsbox.stack.logs import tail
>>> tail([("prometheus", "/tmp/none.log")], lines=5, follow=False, write=print)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path


def known_components(extra: Iterable[str] = ()) -> list[str]:
    """Every name `obsbox logs` takes: the box's components, and `extra` (the processes handed to `up`)."""
    from obsbox.stack.components import COMPONENTS

    return [*COMPONENTS, *(n for n in extra if n not in COMPONENTS)]


def tail(files: list[tuple[str, str]], *, lines: int, follow: bool, write: Callable[[str], None],
         poll: float = 0.5, stop: Callable[[], bool] = lambda: False) -> None:
    """Print the last `lines` of each (name, path); prefix lines with the name when there are several files."""
    prefix = len(files) > 1
    offsets: dict[str, int] = {}
    for name, path in files:
        p = Path(path)
        if not p.exists():
            continue
        data = p.read_bytes()
        offsets[path] = len(data)
        for line in data.decode(errors="replace").splitlines()[-lines:]:
            write(f"{name:<12}| {line}" if prefix else line)
    while follow and not stop():
        time.sleep(poll)
        for name, path in files:
            p = Path(path)
            try:
                size = p.stat().st_size
            except OSError:
                continue
            start = offsets.get(path, 0)
            if size < start:
                start = 0  # the file was truncated or replaced
            if size > start:
                with p.open("rb") as f:
                    f.seek(start)
                    chunk = f.read(size - start)
                offsets[path] = size
                for line in chunk.decode(errors="replace").splitlines():
                    write(f"{name:<12}| {line}" if prefix else line)
