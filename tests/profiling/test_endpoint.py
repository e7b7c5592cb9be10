"""The on-demand /debug/pprof/ endpoint of a real process (tests/profiling/_target.py), read with `go tool pprof`
and plain HTTP: off by default, switched at run time, heap, thread and task stacks, the token, the limits."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import obsbox.profiling
from obsbox.profiling import endpoint
from tests._processes import free_port, stop
from tests.profiling._gopprof import go_pprof

TARGET = Path(__file__).with_name("_target.py")
ROOT = Path(__file__).parents[2]


class Target:
    """The target program, its admin port, and its stdin commands."""

    def __init__(self, **env: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(TARGET)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env})
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("port "), line + self.stderr()
        self.port = int(line.split()[1]) if line.split()[1] != "None" else None

    def command(self, text: str) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().strip()
        assert reply.startswith("ok"), reply + self.stderr()
        return reply[3:]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()

    def stderr(self) -> str:
        if self.process.poll() is None:
            return ""
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def close(self) -> str:
        """Stop it; everything it wrote on stderr."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        stop(self.process)
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def target_factory() -> Iterator[type[Target]]:
    started: list[Target] = []

    class Started(Target):
        def __init__(self, **env: str) -> None:
            super().__init__(**env)
            started.append(self)

    yield Started
    for t in started:
        if t.process.poll() is None:
            t.close()


def _port_env(**more: str) -> dict[str, str]:
    return {"OBSBOX_METRICS_PORT": str(free_port()), **more}


NOT_FOUND = (404, b"not found: try /metrics\n")


def test_off_by_default_every_pprof_path_is_a_404(target_factory: type[Target]) -> None:
    target = target_factory(**_port_env())
    for path in ("/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/threads", "/debug/pprof/goroutine?debug=2"):
        status, _, body = target.get(path)
        assert (status, body) == NOT_FOUND, path
    assert target.get("/metrics")[0] == 200


def test_switched_on_and_off_at_run_time(target_factory: type[Target]) -> None:
    target = target_factory(**_port_env())
    assert target.command("enable") == f"{target.base}/debug/pprof/"
    status, content_type, body = target.get("/debug/pprof/")
    assert status == 200 and content_type.startswith("text/html")
    assert b'href="/debug/pprof/heap"' in body and b'href="/debug/pprof/threads"' in body
    target.command("disable")
    assert target.get("/debug/pprof/")[0::2] == NOT_FOUND
    assert target.get("/debug/pprof/threads")[0::2] == NOT_FOUND
    target.command("enable")
    assert target.get("/debug/pprof/threads")[0] == 200
    assert target.get("/metrics")[0] == 200  # the admin port itself was never restarted


def test_enabled_without_an_admin_port_opens_one_on_the_given_port(target_factory: type[Target]) -> None:
    target = target_factory()  # no metrics_port
    assert target.port is None
    assert target.command("enable") == "None"  # nowhere to serve it: a warning, not an exception
    port = free_port()
    assert target.command(f"enable {port}") == f"http://127.0.0.1:{port}/debug/pprof/"
    target.port = port
    assert target.get("/debug/pprof/threads")[0] == 200
    target.command("disable")  # closes the port it opened
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(target.base + "/debug/pprof/", timeout=5)
    assert "needs an admin port" in target.close()


def _assert_heap_held_by_allocator(profile: str) -> None:
    top = go_pprof("-top", "-sample_index=inuse_space", profile)
    assert "Type: inuse_space" in top
    rows = [line.split() for line in top.splitlines() if re.match(r"\s*[\d.]+[kMG]?B\s", line)]
    assert rows[0][-1] == "hold_memory_here", top  # the leaf that holds the most
    assert rows[0][0].endswith("kB") and 24 * 1024 <= float(rows[0][0][:-2]) < 24 * 1024 + 64, top
    objects = go_pprof("-top", "-nodefraction=0", "-sample_index=inuse_objects", profile)
    held = re.search(r"^\s*(\d+)\s.*hold_memory_here$", objects, re.M)
    assert held and 48 <= int(held[1]) <= 60, objects  # 24 bytearrays of two blocks each, and the list's


def test_heap_names_the_allocator_of_memory_allocated_in_the_window(target_factory: type[Target],
                                                                     tmp_path: Path) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true"))
    target.command("alloc")  # before the window: not in the profile
    fetched: list[tuple[int, str, bytes]] = []
    fetch = threading.Thread(target=lambda: fetched.append(target.get("/debug/pprof/heap?seconds=3")))
    fetch.start()
    time.sleep(1)
    assert int(target.command("alloc")) == 48 * 1024 * 1024  # during the window: 24 MB more
    fetch.join(30)
    status, content_type, body = fetched[0]
    assert status == 200 and content_type == "application/octet-stream"
    (tmp_path / "heap.pb.gz").write_bytes(body)
    _assert_heap_held_by_allocator(str(tmp_path / "heap.pb.gz"))


def test_heap_covers_everything_when_tracemalloc_already_runs(target_factory: type[Target],
                                                             tmp_path: Path) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true", PYTHONTRACEMALLOC="16"))
    target.command("alloc")  # before the request, yet in the profile: no window, what tracemalloc holds now
    status, _, body = target.get("/debug/pprof/heap")
    assert status == 200
    (tmp_path / "heap.pb.gz").write_bytes(body)
    _assert_heap_held_by_allocator(str(tmp_path / "heap.pb.gz"))
    top = go_pprof("-top", "-nodefraction=0", str(tmp_path / "heap.pb.gz"))
    assert re.search(r"<\d+ smaller allocation stacks>", top)  # beyond MAX_HEAP_STACKS: summed into one


def test_a_window_beyond_the_limit_is_refused(target_factory: type[Target]) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true"))
    for query in ("seconds=600", "seconds=0", "seconds=ten"):
        status, _, body = target.get("/debug/pprof/heap?" + query)
        assert status == 400, query
        assert body.decode().startswith(f"seconds must be a whole number from 1 to {endpoint.MAX_SECONDS}")


def test_thread_dump_names_blocked_function_and_task_coroutine(target_factory: type[Target]) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true"))
    for path in ("/debug/pprof/threads", "/debug/pprof/goroutine?debug=2"):
        status, content_type, raw = target.get(path)
        assert status == 200 and content_type.startswith("text/plain")
        text = raw.decode()
        blocks = text.split("\n\n")
        blocked = next(b for b in blocks if b.startswith("thread ") and "'blocked-thread'" in b)
        assert "in wait_for_the_event_here" in blocked and "_never.wait()" in blocked
        task = next(b for b in blocks if b.startswith("task 'poller'"))
        assert "coro=poll_forever_here()" in task
        assert "in poll_forever_here" in task and "await asyncio.sleep(3600)" in task
        assert re.match(r"\d+ threads, \d+ asyncio tasks", text)
    traces = go_pprof("-traces", target.base + "/debug/pprof/goroutine")
    assert "wait_for_the_event_here" in traces and "poll_forever_here" in traces
    assert "asyncio task" in traces  # the kind label


def test_token_is_required_and_never_shown(target_factory: type[Target]) -> None:
    token = "s3cret-pprof-token-4242"
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true", OBSBOX_PPROF_TOKEN=token))
    status, _, body = target.get("/debug/pprof/threads")
    assert status == 401 and b"Bearer" in body
    assert target.get("/debug/pprof/threads", {"Authorization": "Bearer wrong"})[0] == 401
    assert target.get("/debug/pprof/threads", {"Authorization": f"Basic {token}"})[0] == 401
    status, _, body = target.get("/debug/pprof/threads", {"Authorization": f"Bearer {token}"})
    assert status == 200 and b"wait_for_the_event_here" in body
    assert target.get("/metrics")[0] == 200  # the scrape needs no token
    assert token not in target.close()


def test_non_loopback_address_without_token_stays_off(caplog: pytest.LogCaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # refused before anything is bound: no socket on 0.0.0.0 is opened here
    monkeypatch.setattr(endpoint, "_admin_server", lambda: None)  # whatever other tests of the session configured
    with caplog.at_level(logging.WARNING, logger="obsbox"):
        assert obsbox.profiling.enable_pprof(port=free_port(), host="0.0.0.0") is None
    assert not obsbox.profiling.pprof_enabled()
    assert "0.0.0.0 is not a loopback address and no pprof_token" in caplog.text


def test_concurrent_profiles_beyond_the_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    def slow(params: dict[str, list[str]]) -> endpoint.Reply:
        entered.release()
        release.wait(30)
        return 200, endpoint.TEXT_TYPE, b"done", {}

    monkeypatch.setitem(endpoint._HANDLERS, "slow", endpoint._limited(slow))
    monkeypatch.setattr(endpoint._state, "enabled", True)
    replies: list[endpoint.Reply | None] = []
    threads = [threading.Thread(target=lambda: replies.append(endpoint.respond("/debug/pprof/slow", "", None)))
               for _ in range(endpoint.MAX_CONCURRENT)]
    for t in threads:
        t.start()
    for _ in threads:
        assert entered.acquire(timeout=10)
    refused = endpoint.respond("/debug/pprof/slow", "", None)
    assert refused is not None and refused[0] == 429
    assert f"at most {endpoint.MAX_CONCURRENT}" in refused[2].decode()
    release.set()
    for t in threads:
        t.join(10)
    assert [r[0] for r in replies if r] == [200] * endpoint.MAX_CONCURRENT
    again = endpoint.respond("/debug/pprof/slow", "", None)
    assert again is not None and again[0] == 200


def test_cpu_profile_has_the_hot_function_at_the_top(target_factory: type[Target]) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true"))
    target.command("burn 8")
    top = go_pprof("-top", target.base + "/debug/pprof/profile?seconds=3")  # go tool pprof fetches it itself
    assert "Type: cpu" in top and "Duration: 3" in top, top
    rows = [line.split() for line in top.splitlines() if re.match(r"\s*[\d.]+m?s\s", line)]
    assert rows[0][-1] == "burn_cpu_here" or rows[0][-1] == "burn_cpu_here.<locals>.<genexpr>", top
    flat = {r[-1]: r[1] for r in rows}
    hot = sum(float(flat.get(n, "0%").rstrip("%")) for n in ("burn_cpu_here", "burn_cpu_here.<locals>.<genexpr>"))
    assert hot > 50, top  # most of the process's CPU time
    assert "wait_for_the_event_here" not in flat  # blocked: no CPU time
    wall = go_pprof("-top", target.base + "/debug/pprof/wall?seconds=2")
    assert "Type: wall" in wall and "wait_for_the_event_here" in wall  # idle threads count in wall time


def test_cpu_samples_in_a_span_carry_its_span_id(target_factory: type[Target], tmp_path: Path) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true"))
    fetched: list[tuple[int, str, bytes]] = []
    fetch = threading.Thread(target=lambda: fetched.append(target.get("/debug/pprof/profile?seconds=4")))
    fetch.start()
    time.sleep(1)  # spans are noted from the start of the profile on
    span_id = target.command("spanburn 2")
    assert re.fullmatch(r"[0-9a-f]{16}", span_id)
    fetch.join(30)
    (tmp_path / "cpu.pb.gz").write_bytes(fetched[0][2])
    tags = go_pprof("-tags", tmp_path / "cpu.pb.gz")
    assert re.search(rf"span_id: Total .*\n\s+\S+ \(\s*[\d.]+%\): {span_id}", tags), tags
    in_span = go_pprof("-top", f"-tagfocus=span_id={span_id}", tmp_path / "cpu.pb.gz")
    assert "burn_cpu_here" in in_span


def test_a_profile_longer_than_the_limit_or_too_many_at_once_is_refused(target_factory: type[Target]) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true"))
    status, _, body = target.get("/debug/pprof/profile?seconds=600")
    assert status == 400 and b"from 1 to 120" in body
    results: list[int] = []
    fetches = [threading.Thread(target=lambda: results.append(target.get("/debug/pprof/profile?seconds=4")[0]))
               for _ in range(endpoint.MAX_CONCURRENT)]
    for f in fetches:
        f.start()
    deadline = time.monotonic() + 20
    while f"being taken: {endpoint.MAX_CONCURRENT} " not in target.get("/debug/pprof/")[2].decode():
        assert time.monotonic() < deadline, "the profiles did not start"
        time.sleep(0.05)
    status, _, body = target.get("/debug/pprof/wall?seconds=1")
    assert status == 429 and f"at most {endpoint.MAX_CONCURRENT} are taken at a time".encode() in body
    for f in fetches:
        f.join(30)
    assert results == [200] * endpoint.MAX_CONCURRENT
    assert target.get("/debug/pprof/wall?seconds=1")[0] == 200  # free again


def test_disabling_ends_a_profile_being_taken(target_factory: type[Target]) -> None:
    target = target_factory(**_port_env(OBSBOX_PPROF_ENDPOINT="true"))
    fetched: list[int] = []
    fetch = threading.Thread(target=lambda: fetched.append(target.get("/debug/pprof/profile?seconds=60")[0]))
    fetch.start()
    time.sleep(1)
    target.command("disable")
    fetch.join(30)  # well before its 60 s
    assert not fetch.is_alive() and fetched == [200]


def test_span_noting_stays_on_until_the_last_profiler_is_done() -> None:
    # the continuous profiler and an on-demand profile both enable it; the on-demand one ending must not switch
    # it off under the continuous one
    from opentelemetry import context as context_api

    from obsbox.profiling import _active

    plain = context_api._RUNTIME_CONTEXT
    assert _active.enable() and _active.enable()
    noting = context_api._RUNTIME_CONTEXT
    assert noting is not plain
    _active.disable()
    assert context_api._RUNTIME_CONTEXT is noting
    _active.disable()
    assert context_api._RUNTIME_CONTEXT is plain
    _active.disable()  # one too many: harmless
    assert context_api._RUNTIME_CONTEXT is plain


def test_a_forked_child_can_switch_off_the_port_it_did_not_open(target_factory: type[Target]) -> None:
    # the parent's admin port (opened by enable_pprof(port=...)) is served by a thread the child does not have:
    # disable_pprof() in the child must not wait for it (http.server's shutdown() would wait forever)
    script = (
        "import os, sys, obsbox.profiling as p\n"
        f"url = p.enable_pprof(port={free_port()})\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    import signal; signal.alarm(20)  # a hang ends in SIGALRM, not in an orphan\n"
        "    on = p.pprof_enabled()\n"
        "    p.disable_pprof()\n"
        "    os._exit(3 if on else 0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(url, p.pprof_enabled(), os.waitstatus_to_exitcode(status))\n"
        "p.disable_pprof()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.stdout.split()[1:] == ["True", "0"], done.stdout + done.stderr
