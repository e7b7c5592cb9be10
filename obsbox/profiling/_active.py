"""Which span is current in each thread and asyncio task, as seen from another thread (the profiler's sampler).

>>> enable()          # from here on, attach/detach note the current span per thread or task   # doctest: +SKIP
>>> active_span(thread_id, loop_task)                                                          # doctest: +SKIP
>>> disable()         # the OpenTelemetry runtime context is the plain one again                 # doctest: +SKIP

A sampler thread cannot read another thread's context variables (CPython keeps each thread's context in its
thread state, out of reach), nor, before Python 3.12, an asyncio task's context. So while profiling is on, the
OpenTelemetry runtime context is replaced by one whose attach/detach also note the span that became current,
keyed by the running asyncio task (when there is one) or else by the thread. Every way a span becomes current goes
through it: the API's `context.attach` (`start_as_current_span`, `use_span`, the database, gRPC and Celery
integrations), and obsbox's request path, whose `attach_span`/`detach_span` shortcut sets the same variable and
notes the span itself (`_tracer.note_span`), without the API's layers. With profiling off nothing of this is
installed: the request path only tests that `note_span` is None.

Known gap: code run with a copied context in another thread (`contextvars.copy_context().run`, as Starlette runs a
sync endpoint in its thread pool) is in the span without attaching it there; its samples carry no span id unless a
span starts inside it.
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as context_api
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace.propagation import _SPAN_KEY

from obsbox.instrumentation import _tracer

__all__ = ["active_span", "disable", "enable", "forget_finished", "reset_after_fork"]

# key (an asyncio Task, or a thread id) -> the span current there. Plain dict operations: atomic under the GIL.
_active: dict[Any, Any] = {}
_get_running_loop = asyncio.events._get_running_loop
_current_tasks: dict[Any, Any] = asyncio.tasks._current_tasks  # type: ignore[attr-defined]
_get_ident = threading.get_ident


def _note_span(span: Any) -> None:
    """`span` is now current in the running asyncio task, or else in this thread (None: no span is)."""
    loop = _get_running_loop()
    key = _current_tasks.get(loop) if loop is not None else None
    if key is None:
        key = _get_ident()
    if span is None:
        _active.pop(key, None)
    else:
        _active[key] = span


def _note(context: Context) -> None:
    _note_span(context.get(_SPAN_KEY))


class _NotingContext(ContextVarsRuntimeContext):
    """The API's contextvars runtime context, on the same variable, noting the current span after each change."""

    def __init__(self, variable: ContextVar[Context]) -> None:  # (the base class would make a new variable)
        self._current_context = variable

    def attach(self, context: Context) -> Token[Context]:
        token = self._current_context.set(context)
        _note(context)
        return token

    def detach(self, token: Token[Context]) -> None:
        self._current_context.reset(token)
        _note(self._current_context.get())


_saved: Any = None  # the runtime context replaced
# Profilers noting spans now: the continuous one and on-demand ones (/debug/pprof/profile) enable and disable
# independently; the runtime context goes back only when the last one is done.
_users = 0
_lock = threading.Lock()


def enable() -> bool:
    """Start noting spans; False (and nothing changed) when another runtime context than the default is in use."""
    global _saved, _users
    with _lock:
        if _saved is None and not _install():
            return False
        _users += 1
        return True


def _install() -> bool:
    global _saved
    if _saved is not None:
        return True
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is not ContextVarsRuntimeContext or not isinstance(variable, ContextVar):
        return False
    _saved = runtime
    context_api._RUNTIME_CONTEXT = _NotingContext(variable)
    _tracer.note_span = _note_span  # obsbox's attach_span/detach_span set the same variable and note it themselves
    return True


def disable() -> None:
    """One user fewer; with none left, stop noting spans: the runtime context and the request path's shortcut are
    what they were."""
    global _saved, _users
    with _lock:
        if _saved is None:
            return
        _users -= 1
        if _users > 0:
            return
        _users = 0
        context_api._RUNTIME_CONTEXT = _saved
        _tracer.note_span = None
        _saved = None
        _active.clear()


def active_span(thread_id: int, task: Any) -> Any:
    """The span current in `task` (the task the thread's event loop is running) or else in the thread."""
    if task is not None:
        span = _active.get(task)
        if span is not None:
            return span
    return _active.get(thread_id)


def forget_finished(thread_ids: set[int]) -> None:
    """Drop entries of threads that ended and tasks that are done (a task cancelled mid-span never detaches)."""
    for key in list(_active):
        if (key not in thread_ids) if isinstance(key, int) else key.done():
            _active.pop(key, None)


def reset_after_fork() -> None:
    """In a forked child only the forking thread lives on; the parent's entries (and profilers) mean nothing there."""
    global _users, _lock
    _active.clear()
    _users = 0
    _lock = threading.Lock()
