"""Every thread's and every asyncio task's stack right now: the equivalent of Go's goroutine dump.

>>> text = dump()                        # "thread 1234 'MainThread' ..." blocks, then "task 'Task-3' ..." blocks
>>> "thread" in text and "MainThread" in text
True

Threads come from `sys._current_frames()` (the frame each thread is executing). Tasks are those of every event
loop that is running in some thread (found from the loop's `run_forever` frame in that thread's stack, and from
asyncio's task registry) and not done; a suspended task's stack is its coroutine and the coroutines it is awaiting,
outermost first, as far as the chain of `cr_await` goes. Reading another thread's frames only reads: nothing here
changes the state of the threads or tasks it describes.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

from obsbox.profiling.pprof import ProfileBuilder

__all__ = ["dump", "stacks_profile"]

MAX_DEPTH = 256  # frames shown per stack (the innermost kept)
_RUN_FOREVER = asyncio.BaseEventLoop.run_forever.__code__


def _thread_frames() -> list[tuple[int, FrameType]]:
    return sorted(sys._current_frames().items())


def _loops(frames: list[tuple[int, FrameType]]) -> list[asyncio.AbstractEventLoop]:
    """Event loops that are running: from run_forever frames, the current-task table and the task registry."""
    found: dict[int, asyncio.AbstractEventLoop] = {}
    for _, frame in frames:
        f: FrameType | None = frame
        while f is not None:
            if f.f_code is _RUN_FOREVER:
                loop = f.f_locals.get("self")
                if isinstance(loop, asyncio.AbstractEventLoop):
                    found[id(loop)] = loop
            f = f.f_back
    current: dict[Any, Any] = getattr(asyncio.tasks, "_current_tasks", {})
    for loop in list(current):
        found[id(loop)] = loop
    for name in ("_all_tasks", "_scheduled_tasks"):  # 3.10-3.11, 3.12+ (tasks not created by the C Task)
        registry = getattr(asyncio.tasks, name, None)
        for task in list(registry or ()):
            loop = task.get_loop()
            found[id(loop)] = loop
    return [loop for loop in found.values() if loop.is_running()]


def _tasks(frames: list[tuple[int, FrameType]]) -> list[asyncio.Task[Any]]:
    out: list[asyncio.Task[Any]] = []
    for loop in _loops(frames):
        for _ in range(3):  # the set can change while it is read from another thread
            try:
                out.extend(sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()))
                break
            except RuntimeError:
                continue
    return out


def _task_frames(task: asyncio.Task[Any]) -> list[FrameType]:
    """The task's coroutine and what it awaits, outermost first."""
    out: list[FrameType] = []
    awaitable: Any = task.get_coro()
    while awaitable is not None and len(out) < MAX_DEPTH:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None) \
            or getattr(awaitable, "ag_frame", None)
        if frame is not None:
            out.append(frame)
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None) \
            or getattr(awaitable, "ag_await", None)
    return out


def _outermost_first(frame: FrameType | None) -> list[FrameType]:
    out: list[FrameType] = []
    while frame is not None and len(out) < MAX_DEPTH:
        out.append(frame)
        frame = frame.f_back
    out.reverse()
    return out


def _format(frames: list[FrameType]) -> str:
    summary = traceback.StackSummary.extract(((f, f.f_lineno) for f in frames), lookup_lines=True)
    return "".join(summary.format())


def _thread_header(ident: int, threads: dict[int, threading.Thread]) -> str:
    thread = threads.get(ident)
    if thread is None:
        return f"thread {ident} (not started by threading)"
    kind = "daemon" if thread.daemon else "non-daemon"
    return f"thread {ident} {thread.name!r} ({kind}, native id {thread.native_id})"


def _task_header(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    state = "cancelling" if getattr(task, "cancelling", lambda: 0)() else "pending"
    return f"task {task.get_name()!r} coro={name}() ({state})"


def dump() -> str:
    """Text: one block per thread (most recent call last, as in a traceback), then one per asyncio task."""
    frames = _thread_frames()
    threads = {t.ident: t for t in threading.enumerate() if t.ident is not None}
    blocks = [f"{_thread_header(ident, threads)}:\n{_format(_outermost_first(frame))}" for ident, frame in frames]
    tasks = _tasks(frames)
    blocks += [f"{_task_header(task)}:\n{_format(_task_frames(task))}" for task in tasks]
    head = f"{len(frames)} threads, {len(tasks)} asyncio tasks\n\n"
    del frames
    return head + "\n".join(blocks)


def _leaf_first(frames: list[FrameType]) -> Iterator[tuple[str, str, int]]:
    for f in reversed(frames):
        code = f.f_code
        yield getattr(code, "co_qualname", code.co_name), code.co_filename, f.f_lineno or 0


def stacks_profile(start_ns: int) -> bytes:
    """pprof: one sample per thread and per task, counting identical stacks (Go's `goroutine` profile)."""
    frames = _thread_frames()
    builder = ProfileBuilder([("goroutine", "count")], period_type=("goroutine", "count"), period=1,
                             start_ns=start_ns)
    for _, frame in frames:
        builder.add(list(_leaf_first(_outermost_first(frame))), [1], {"kind": "thread"})
    for task in _tasks(frames):
        builder.add(list(_leaf_first(_task_frames(task))), [1], {"kind": "asyncio task"})
    del frames
    return builder.encode()
