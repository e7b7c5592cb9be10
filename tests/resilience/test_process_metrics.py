"""Process metrics: names, units and attributes from the catalogue; values that follow what the process does."""

from __future__ import annotations

import gc
import os
import resource
import sys
import threading
from collections.abc import Callable

import pytest

from obsbox.instrumentation import process_metrics
from obsbox.instrumentation.catalogue import CATALOGUE, SEMCONV_METRICS

from .conftest import Metrics

OWNED = [
    SEMCONV_METRICS["process.cpu.time"],
    SEMCONV_METRICS["process.memory.usage"],
    SEMCONV_METRICS["process.thread.count"],
    SEMCONV_METRICS["process.unix.file_descriptor.count"],
    SEMCONV_METRICS["cpython.gc.collections"],
    CATALOGUE["obsbox.process.file_descriptor.limit"],
]


@pytest.fixture
def registered(sdk_metrics: Metrics) -> Metrics:
    assert process_metrics.register(sdk_metrics.provider) is True
    return sdk_metrics


def test_register_is_idempotent(registered: Metrics) -> None:
    assert process_metrics.register(registered.provider) is False
    assert len(registered.points("process.thread.count")) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="every source exists on Linux; others degrade")
def test_every_metric_has_the_catalogue_name_unit_and_attributes(registered: Metrics) -> None:
    for spec in OWNED:
        points = registered.points(spec.name)
        assert points, spec.name
        for p in points:
            assert p.unit == spec.unit, spec.name
            assert set(p.attributes) == set(spec.attributes), spec.name
        if spec.kind == "counter":
            assert all(p.monotonic is True for p in points), spec.name
        elif spec.kind == "updown_counter":
            assert all(p.monotonic is False for p in points), spec.name
    modes = {p.attributes["cpu.mode"] for p in registered.points("process.cpu.time")}
    assert modes == {"user", "system"}
    generations = {p.attributes["cpython.gc.generation"] for p in registered.points("cpython.gc.collections")}
    assert generations == {0, 1, 2}


def test_cpu_time_grows_with_work(registered: Metrics) -> None:
    before = registered.value("process.cpu.time", **{"cpu.mode": "user"})
    total = 0
    for i in range(3_000_000):
        total += i * i
    after = registered.value("process.cpu.time", **{"cpu.mode": "user"})
    assert after > before
    assert after == pytest.approx(os.times().user, abs=0.05)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc (Linux)")
def test_memory_follows_a_big_allocation(registered: Metrics) -> None:
    before = registered.value("process.memory.usage")
    block = bytearray(64 * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page so it becomes resident
        block[i] = 1
    after = registered.value("process.memory.usage")
    assert after - before >= 60 * 1024 * 1024
    del block


def deltas(registered: Metrics, name: str, change: Callable[[], Callable[[], None]], tries: int = 5) -> list[float]:
    """The metric's change across `change()` (which returns its undo), measured a few times: threads or sockets
    of other tests still winding down may move the process-wide count once, but not every time."""
    seen = []
    for _ in range(tries):
        before = registered.value(name)
        undo = change()
        try:
            seen.append(registered.value(name) - before)
        finally:
            undo()
    return seen


def test_thread_count_follows_threads(registered: Metrics) -> None:
    def start_three() -> Callable[[], None]:
        stop = threading.Event()
        threads = [threading.Thread(target=stop.wait) for _ in range(3)]
        for t in threads:
            t.start()

        def undo() -> None:
            stop.set()
            for t in threads:
                t.join()

        return undo

    assert 3 in deltas(registered, "process.thread.count", start_three)


@pytest.mark.skipif(sys.platform == "win32", reason="UNIX file descriptors")
def test_fd_count_follows_open_files(registered: Metrics) -> None:
    def open_five() -> Callable[[], None]:
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
        return lambda: [os.close(fd) for fd in fds] and None

    assert 5 in deltas(registered, "process.unix.file_descriptor.count", open_five)


def test_gc_collections_count_up(registered: Metrics) -> None:
    before = registered.value("cpython.gc.collections", **{"cpython.gc.generation": 2})
    gc.collect()
    assert registered.value("cpython.gc.collections", **{"cpython.gc.generation": 2}) == before + 1


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")
def test_fd_limit_is_the_soft_rlimit(registered: Metrics) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        assert registered.points("obsbox.process.file_descriptor.limit") == []
        return
    assert registered.value("obsbox.process.file_descriptor.limit") == soft
    new_soft = max(64, soft - 1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    try:
        assert registered.value("obsbox.process.file_descriptor.limit") == new_soft
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_missing_source_reports_nothing_instead_of_failing(registered: Metrics, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = open

    def no_proc(path: object, *args: object, **kwargs: object) -> object:
        if str(path).startswith("/proc/"):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", no_proc)
    assert registered.points("process.memory.usage") == []  # no /proc: no RSS (ru_maxrss is a peak, not usage)
    assert registered.value("process.thread.count") == threading.active_count()  # the interpreter's count
    assert registered.points("process.cpu.time")  # the others still report
