"""CPU samples of the main thread taken by SIGPROF, where a sampler thread cannot see them.

>>> install()                     # in the main thread: take SIGPROF if nobody else has it   # doctest: +SKIP
>>> arm(record, period_s=0.01)    # from any thread: ITIMER_PROF fires every 10 ms of CPU   # doctest: +SKIP
>>> disarm(record)                # the timer stops when nobody is armed                    # doctest: +SKIP

A sampler thread only runs when it holds the GIL, and it gets the GIL where the busy thread lets go of it: at the
5 ms switch interval or at a blocking call. An asyncio service that burns CPU in bursts shorter than that between
two awaits lets go of the GIL only in its event loop's `select`, so a sampler thread would see every such thread
in `select` and charge the CPU there. SIGPROF has no such bias: the kernel's CPU-time timer (ITIMER_PROF) fires
in the thread that is using the CPU, and CPython runs the Python handler in the main thread at the next bytecode,
handing it the frame that was running. The handler reads the main thread's CPU clock and gives the CPU time used
since its previous run to that frame's stack, in the current context (so a span current in a copied context or a
task is seen too).

The profiler takes SIGPROF only when its handler is the default one (another profiler may own it), and only from
the main thread (where Python lets a handler be set); otherwise it keeps to the sampler thread for every thread.
The handler is set with `siginterrupt(SIGPROF, False)` (SA_RESTART), so system calls resume after it instead of
failing with EINTR, and it is left installed (idle: without an armed timer no SIGPROF comes). Interval timers are
not inherited across fork(); a forked child's profiler arms its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["arm", "armed", "disarm", "install", "installed"]

Record = Callable[[FrameType, int], None]  # (the interrupted frame, the main thread's CPU ns since the last run)

_installed = False
_listeners: list[Record] = []
_last_cpu = 0  # the main thread's CPU clock at the handler's previous run; 0: the next run only starts counting
_period = 0.0


def _on_sigprof(signum: int, frame: FrameType | None) -> None:
    global _last_cpu
    now = time.thread_time_ns()
    last, _last_cpu = _last_cpu, now
    if not last or frame is None or now <= last:
        return
    for record in tuple(_listeners):
        with contextlib.suppress(Exception):  # a signal handler must never raise into the interrupted code
            record(frame, now - last)


def install() -> bool:
    """Set the SIGPROF handler if SIGPROF is free and this is the main thread; True when it is (or was) set."""
    global _installed
    if _installed:
        return True
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGPROF) not in (signal.SIG_DFL, signal.SIG_IGN):
            return False  # someone else's profiler
        signal.signal(signal.SIGPROF, _on_sigprof)
        signal.siginterrupt(signal.SIGPROF, False)
    except (ValueError, OSError, AttributeError):
        return False
    _installed = True
    return True


def installed() -> bool:
    return _installed and signal.getsignal(signal.SIGPROF) is _on_sigprof


def arm(record: Record, period_s: float) -> bool:
    """Call `record` with the main thread's frame about every `period_s` of the process's CPU time; False (and
    nothing armed) when the handler is not installed."""
    global _last_cpu, _period
    if not installed():
        return False
    if record not in _listeners:
        _listeners.append(record)
    if len(_listeners) == 1 or period_s < _period:
        _last_cpu = 0
        _period = period_s
        signal.setitimer(signal.ITIMER_PROF, period_s, period_s)
    return True


def disarm(record: Record) -> None:
    global _period
    if record in _listeners:
        _listeners.remove(record)
    if not _listeners and _period:
        _period = 0.0
        with contextlib.suppress(ValueError, OSError):
            signal.setitimer(signal.ITIMER_PROF, 0, 0)


def armed() -> bool:
    return bool(_listeners)


def _after_fork_in_child() -> None:
    global _last_cpu, _period
    _listeners.clear()  # the child's interval timer is off (not inherited); its profiler arms again
    _last_cpu = 0
    _period = 0.0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

