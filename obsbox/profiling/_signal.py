"""CPU samples of the main thread taken by SIGPROF, where a sampler thread cannot see them.

>>> install()                     # in the main thread: take SIGPROF if nobody else has it   # doctest: +SKIP
>>> arm(record, period_s=0.01)    # from any thread: SIGPROF every 10 ms of main-thread CPU  # doctest: +SKIP
>>> disarm(record)                # the timer stops when nobody is armed                    # doctest: +SKIP

A sampler thread only runs when it holds the GIL, and it gets the GIL where the busy thread lets go of it: at the
5 ms switch interval or at a blocking call. An asyncio service that burns CPU in bursts shorter than that between
two awaits lets go of the GIL only in its event loop's `select`, so a sampler thread would see every such thread
in `select` and charge the CPU there. SIGPROF has no such bias: a kernel CPU-time timer fires while the thread
is using the CPU, and CPython runs the Python handler in the main thread at the next bytecode,
handing it the frame that was running. The handler reads the main thread's CPU clock and gives the CPU time used
since its previous run to that frame's stack, in the current context (so a span current in a copied context or a
task is seen too).

The timer is the main thread's own CPU clock where Linux offers it (timer_create on the thread's CPU-time clock,
delivered to that thread alone, SIGEV_THREAD_ID, through ctypes): SIGPROF then comes once per `period_s` of
the main thread's CPU, never to another thread, however much CPU the process's other threads use. Elsewhere (or
if that fails) it is the process's ITIMER_PROF, which fires per second of the whole process's CPU and may land in
any thread that is running (CPython still runs the handler in the main thread).

The profiler takes SIGPROF only when its handler is the default one (another profiler may own it), and only from
the main thread (where Python lets a handler be set); otherwise it keeps to the sampler thread for every thread.
The handler is set with `siginterrupt(SIGPROF, False)` (SA_RESTART), so system calls resume after it instead of
failing with EINTR, and it is left installed (idle: without an armed timer no SIGPROF comes). Neither kind of
timer is inherited across fork(); a forked child's profiler arms its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["arm", "armed", "cpu_clock", "disarm", "install", "installed"]

Record = Callable[[FrameType, int], None]  # (the interrupted frame, the main thread's CPU ns since the last run)

_installed = False
_listeners: list[Record] = []
_last_cpu = 0  # the main thread's CPU clock at the handler's previous run; 0: the next run only starts counting
_period = 0.0
_pid = os.getpid()  # the process the listeners and the timer belong to


def cpu_clock(native_id: int) -> int:
    """The Linux CPU-time clock of one thread of this process (glibc's pthread_getcpuclockid computes the same id;
    for a thread that has ended, clock_gettime fails with EINVAL instead of reading another's clock)."""
    return (~native_id << 3) | 6  # MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)


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
    """Call `record` with the main thread's frame about every `period_s` of its CPU time; False (and nothing armed)
    when the handler is not installed."""
    global _last_cpu, _period
    if not installed():
        return False
    _in_this_process()
    if record not in _listeners:
        _listeners.append(record)
    if len(_listeners) == 1 or period_s < _period:
        _last_cpu = 0
        _period = period_s
        _timer.start(period_s)
    return True


def disarm(record: Record) -> None:
    global _period
    _in_this_process()
    if record in _listeners:
        _listeners.remove(record)
    if not _listeners and _period:
        _period = 0.0
        _timer.stop()


def armed() -> bool:
    _in_this_process()
    return bool(_listeners)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Sigevent(ctypes.Structure):  # Linux's struct sigevent: 64 bytes, the thread id first in its union
    _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int), ("sigev_notify", ctypes.c_int),
                ("sigev_tid", ctypes.c_int), ("_pad", ctypes.c_int * 11)]


_SIGEV_THREAD_ID = 4


class _Timer:
    """SIGPROF every `period` of the main thread's CPU time (Linux), or of the process's (ITIMER_PROF) elsewhere."""

    def __init__(self) -> None:
        self._id: ctypes.c_void_p | None = None  # the thread CPU-time timer, while armed
        self._libc: Any = None
        if sys.platform.startswith("linux") and ctypes.sizeof(_Sigevent) == 64:
            with contextlib.suppress(OSError, AttributeError):
                libc = ctypes.CDLL(None, use_errno=True)
                libc.timer_create.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
                libc.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
                libc.timer_delete.argtypes = [ctypes.c_void_p]
                self._libc = libc

    def start(self, period: float) -> None:
        self.stop()
        if self._libc is not None and self._start_thread_timer(period):
            return
        signal.setitimer(signal.ITIMER_PROF, period, period)

    def _start_thread_timer(self, period: float) -> bool:
        tid = os.getpid()  # the main thread's id on Linux (in a forked child too)
        event = _Sigevent(None, signal.SIGPROF, _SIGEV_THREAD_ID, tid)
        timer = ctypes.c_void_p()
        if self._libc.timer_create(cpu_clock(tid), ctypes.byref(event), ctypes.byref(timer)) != 0:
            return False
        ns = max(int(period * 1e9), 1)
        every = _Timespec(ns // 1_000_000_000, ns % 1_000_000_000)
        if self._libc.timer_settime(timer, 0, ctypes.byref(_Itimerspec(every, every)), None) != 0:
            self._libc.timer_delete(timer)
            return False
        self._id = timer
        return True

    def stop(self) -> None:
        timer, self._id = self._id, None
        if timer is not None:
            self._libc.timer_delete(timer)
        else:
            with contextlib.suppress(ValueError, OSError):
                signal.setitimer(signal.ITIMER_PROF, 0, 0)

    def thread_timer(self) -> bool:
        """True while the main thread's CPU-time timer is armed (not ITIMER_PROF)."""
        return self._id is not None

    def after_fork(self) -> None:
        self._id = None  # timers are not inherited: the child has none to delete


_timer = _Timer()


def _in_this_process() -> None:
    """After fork(): the child has no timer (none is inherited) and the parent's listeners are not its own. Checked
    when arming rather than in an at-fork hook, whose order against the profiler's own hook is not ours to fix."""
    global _pid, _last_cpu, _period
    if _pid != os.getpid():
        _pid = os.getpid()
        _listeners.clear()
        _timer.after_fork()
        _last_cpu = 0
        _period = 0.0
