"""`obsbox logs` on native log files: the last lines, several files prefixed, and following what is written."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from obsbox.stack.logs import tail


def test_last_lines_and_prefixes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("a1\na2\na3\n")
    b.write_text("b1\n")
    out: list[str] = []
    tail([("prometheus", str(a))], lines=2, follow=False, write=out.append)
    assert out == ["a2", "a3"]
    out.clear()
    tail([("prometheus", str(a)), ("alertmanager", str(b)), ("loki", str(tmp_path / "none.log"))], lines=1,
         follow=False, write=out.append)
    assert out == ["prometheus  | a3", "alertmanager| b1"]


def test_follow_prints_what_is_appended_and_survives_truncation(tmp_path: Path) -> None:
    log = tmp_path / "c.log"
    log.write_text("old\n")
    out: list[str] = []
    stop = threading.Event()
    follower = threading.Thread(target=tail, args=([("c", str(log))],), daemon=True, kwargs=dict(
        lines=5, follow=True, write=out.append, poll=0.05, stop=stop.is_set))
    follower.start()
    try:
        with log.open("a") as f:
            f.write("new 1\nnew 2\n")
        deadline = time.monotonic() + 5
        while out[-1:] != ["new 2"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out == ["old", "new 1", "new 2"]
        log.write_text("rotated\n")  # replaced by a shorter file: read again from its start
        deadline = time.monotonic() + 5
        while out[-1:] != ["rotated"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out[-1] == "rotated"
    finally:
        stop.set()
        follower.join(5)
    assert not follower.is_alive()
