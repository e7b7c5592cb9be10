"""The continuous profiler: stack samples of every thread, CPU and wall time, sent to Pyroscope as pprof.

>>> profiler = Profiler(PyroscopeSender("http://127.0.0.1:4040", "orders", {}), rate=19, interval=15.0)  # doctest: +SKIP
>>> profiler.start()     # a daemon thread samples 19 times a second and sends every 15 s     # doctest: +SKIP
>>> profiler.pause()     # no sampling, no SIGPROF, no span noting; threads and window kept  # doctest: +SKIP
>>> profiler.resume()    # sampling again                                                    # doctest: +SKIP
>>> profiler.stop()      # sends what it has, then ends                                      # doctest: +SKIP

`configure(profiling=True)` runs one (see docs/profiling.md). Each tick the sampler thread takes every other
thread's current frame (`sys._current_frames()`), the thread's CPU time (its Linux per-thread CPU clock, read
without a system call per thread beyond clock_gettime) and the span current in it or in the asyncio task its event
loop is running (`_active`). Samples are aggregated by stack and span id; every `interval` seconds two pprof
profiles go to Pyroscope: `cpu` (samples and CPU nanoseconds; only threads that used CPU since the last tick) and
`wall` (samples and wall nanoseconds, every thread, idle ones too). A sample taken inside a span carries the pprof
label `span_id` (16 hex digits), the label Pyroscope keeps per sample for span profiles instead of making it a
series; the trace id is not sent as a label, since Pyroscope would make each trace its own series.

The sampler never touches the application's threads: it only reads. Memory is bounded: at most MAX_STACKS distinct
stacks per interval (samples with further new stacks are dropped and counted), MAX_DEPTH frames per stack (the
leaf-most are kept), and at most MAX_PENDING encoded profiles waiting for the sender.
"""

from __future__ import annotations

import bisect
import logging
import sys
import threading
import time
from typing import Any, Protocol

from opentelemetry import context as context_api
from opentelemetry.trace.propagation import _SPAN_KEY

from obsbox.profiling import _active, _signal
from obsbox.profiling.pprof import ProfileBuilder

__all__ = ["MAX_CPU_SHARE", "MAX_DEPTH", "MAX_STACKS", "ProfileSink", "Profiler"]

_log = logging.getLogger("obsbox")
MAX_DEPTH = 128  # frames kept per stack (the leaf-most)
MAX_STACKS = 20_000  # distinct (stack, span) keys per interval
MAX_CPU_SHARE = 0.005  # of one core, for the sampler thread (its ticks are spaced out beyond it)
MAX_GAP = 1.0  # seconds between two ticks at most, whatever they cost
_CPU_TYPES = [("samples", "count"), ("cpu", "nanoseconds")]
_WALL_TYPES = [("samples", "count"), ("wall", "nanoseconds")]
_current_tasks: dict[Any, Any] = _active._current_tasks


_cpu_clock = _signal.cpu_clock


def _walk(frame: Any, task: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """A stack key and its code objects, from `frame` outwards, leaf first.

    The key is (id of the code, offset of its instruction) pairs, then the task's chosen name if any: cheap to build
    and to hash, where a code object's hash goes through its constants and names and the line of an instruction
    (`f_lineno`) is found by scanning the code's line table, tens of microseconds each for a deep stack of large
    functions. The code objects ride along, kept alive by the window that holds the key (so their ids stay theirs);
    lines are found once per window, when it is encoded (`_Lines`)."""
    key: list[Any] = []
    codes: list[Any] = []
    depth = 0
    f: Any = frame
    while f is not None and depth < MAX_DEPTH:
        code = f.f_code
        codes.append(code)
        key.append(id(code))
        key.append(f.f_lasti)
        f = f.f_back
        depth += 1
    if task is not None:
        name = _task_name(task)
        if name is not None:
            key.append(name)
    return tuple(key), tuple(codes)


class _Lines:
    """The source line of an instruction offset (as `frame.f_lineno` gives it), each code's table read once."""

    def __init__(self) -> None:
        self._tables: dict[int, tuple[list[int], list[int]]] = {}  # id(code) -> (range starts, their lines)

    def line(self, code: Any, offset: int) -> int:
        table = self._tables.get(id(code))
        if table is None:
            starts: list[int] = []
            lines: list[int] = []
            for start, _end, line in code.co_lines():
                starts.append(start)
                lines.append(line or 0)
            table = self._tables[id(code)] = (starts, lines)
        if offset < 0:  # (not started yet: its first line, as f_lineno says)
            return int(code.co_firstlineno)
        i = bisect.bisect_right(table[0], offset) - 1
        return table[1][i] if i >= 0 else int(code.co_firstlineno)


def _span_id(span: Any) -> int:
    if span is None:
        return 0
    try:
        return int(span.get_span_context().span_id)
    except Exception:  # noqa: BLE001 - a foreign span object
        return 0


def _task_name(task: Any) -> str | None:
    """A task's name when someone chose it (asyncio names the others Task-<n>, which says nothing)."""
    try:
        name = task.get_name()
    except Exception:  # noqa: BLE001 - another loop's task-like object
        return None
    return None if not isinstance(name, str) or name.startswith("Task-") else name


class ProfileSink(Protocol):
    """Where a Profiler's profiles go: the PyroscopeSender, or the /debug/pprof/ endpoint's capture."""

    thread_ident: int | None  # a thread of its own, which the sampler leaves out

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...

    def after_fork(self) -> None: ...

    def offer(self, kind: str, body: bytes, start_ns: int, end_ns: int) -> object: ...


class Profiler:
    """Samples the process at `rate` Hz and hands a CPU and a wall profile to `sender` every `interval` seconds."""

    def __init__(self, sender: ProfileSink, *, rate: int = 19, interval: float = 15.0) -> None:
        self.sender = sender
        self.rate = rate
        self.interval = interval
        self.period_ns = 1_000_000_000 // rate
        self._stop = threading.Event()
        self._sampling = threading.Event()  # clear while paused: the sampler thread waits on it
        self._sampling.set()
        self._thread: threading.Thread | None = None
        # Thread ids whose Thread object has a stale native_id: after fork(), threading keeps the parent's.
        self._native_ids: dict[int, int] = {}
        self._reset_window()
        self.samples_dropped = 0  # samples with a new stack beyond MAX_STACKS (for tests and the docs)
        self.ticks = 0  # samples taken of the whole process (the rate in force: ticks / seconds)
        # The main thread's CPU samples, when SIGPROF takes them (_signal): (stack key, its codes, span id, CPU ns),
        # by the handler in the main thread and drained into the window by the sampler thread.
        self._main_cpu: list[tuple[tuple[Any, ...], tuple[Any, ...], int, int]] = []
        self._by_signal: int | None = None  # the main thread's id while SIGPROF samples its CPU

    def _reset_window(self) -> None:
        # (stack key, span id) -> [cpu samples, cpu ns, wall samples, wall ns, the stack's code objects]; a stack
        # key is a flat tuple of (id of a code object, instruction offset) pairs, leaf first, optionally ending with
        # the task's name (_walk).
        self._counts: dict[tuple[tuple[Any, ...], int], list[Any]] = {}
        self._window_start = time.time_ns()
        self._last_cpu: dict[int, int] = {}  # thread id -> CPU ns at the previous tick
        self._last_wall: dict[int, int] = {}  # thread id -> monotonic ns at the previous tick
        # thread id -> (id of its leaf frame, its code, instruction offset, the task running, the stack key, its
        # codes) at the previous tick
        self._last_stack: dict[int, tuple[int, Any, int, Any, tuple[Any, ...], tuple[Any, ...]]] = {}

    # --- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self.sender.start()
        self._stop.clear()
        _signal.install()  # (only the main thread can; configure() and enable_pprof() usually run there)
        self._sampling.clear()
        self.resume()
        self._thread = threading.Thread(target=self._run, name="obsbox-profiler", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop sampling and keep everything else: the threads, the sender, the window (sent at the next interval
        with what was taken before). Nothing runs while paused: the sampler thread waits, the SIGPROF timer is
        disarmed and spans are no longer noted. `resume()` takes up sampling again."""
        if not self._sampling.is_set():
            return
        self._sampling.clear()
        _signal.disarm(self._record_main)
        self._by_signal = None
        _active.disable()

    def resume(self) -> None:
        """Sample again after `pause()` (and, in `start()`, for the first time)."""
        if self._sampling.is_set():
            return
        _active.enable()
        if _signal.arm(self._record_main, self.period_ns / 1e9):
            self._by_signal = threading.main_thread().ident
        self._last_cpu.clear()  # (CPU used while paused is not charged to the stack found on resuming)
        self._last_wall.clear()
        self._sampling.set()

    def stop(self, timeout: float = 3.0) -> None:
        """End sampling, send the last window, wait up to `timeout` seconds for the sender."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self.pause()
        self._stop.set()
        self._sampling.set()  # (a paused sampler thread wakes up to end)
        thread.join(timeout)
        self.sender.stop(timeout)

    def after_fork(self) -> None:
        """In a forked child: the parent's threads are gone; profile this process afresh (a new sampler thread)."""
        self._thread = None
        self._by_signal = None
        self._main_cpu = []
        self._stop = threading.Event()
        self._sampling = threading.Event()
        self._native_ids = {threading.get_ident(): threading.get_native_id()}  # (the hook runs in that thread)
        self._reset_window()
        _active.reset_after_fork()
        self.sender.after_fork()
        self.start()

    # --- the sampler thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        period = self.period_ns / 1e9
        cost = 0.0  # the sampler's own CPU seconds per tick (waking up included), smoothed
        last_cpu = time.thread_time()
        next_tick = time.monotonic()
        flush_at = next_tick + self.interval
        while True:
            # At most MAX_CPU_SHARE of a core: when a tick costs more (many threads, deep stacks, cold caches on a
            # busy machine), ticks are spaced out; CPU and wall values stay right, as they are measured, not counted.
            next_tick += min(max(period, cost / MAX_CPU_SHARE), MAX_GAP)
            now = time.monotonic()
            if next_tick < now:  # fell behind (a long GIL hold): skip the ticks missed, do not catch up in a burst
                next_tick = now + period
            time.sleep(next_tick - now)  # (cheaper than Event.wait: no Condition and lock per tick)
            if not self._sampling.is_set():  # paused: wait, then start ticking afresh
                self._sampling.wait()
                next_tick = time.monotonic()
            if self._stop.is_set():
                break
            try:
                self.sample()
                self.ticks += 1
            except Exception:  # noqa: BLE001 - the profiler must never take anything down
                _log.debug("obsbox: profiler tick failed", exc_info=True)
            if self.ticks > 1:  # (the first tick runs cold: tens of milliseconds once)
                # One slow tick counts as 2 ms at most: a collection of the garbage collector, run in whichever
                # thread allocates, costs tens of ms now and then, and must not stop sampling for seconds.
                cost += (min(time.thread_time() - last_cpu, 0.002) - cost) / 8
            now = time.monotonic()
            if now >= flush_at:
                flush_at += self.interval
                if flush_at <= now:  # (after a pause, or a tick held up that long: one flush, not one per interval)
                    flush_at = now + self.interval
                try:
                    self.flush()
                except Exception:  # noqa: BLE001
                    _log.debug("obsbox: profile not sent", exc_info=True)
            # (encoding, once per interval, is not a tick's cost: it would space the next ticks out for seconds)
            last_cpu = time.thread_time()
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            _log.debug("obsbox: last profile not sent", exc_info=True)

    def sample(self) -> None:
        """Take one sample of every thread but the profiler's own."""
        frames = sys._current_frames()
        me = threading.get_ident()
        now = time.monotonic_ns()
        threads = threading._active  # type: ignore[attr-defined]  # ident -> Thread, without enumerate()'s copy
        loop_task: dict[int, Any] = {}
        for loop, task in list(_current_tasks.items()):
            thread_id = getattr(loop, "_thread_id", None)
            if thread_id is not None:
                loop_task[thread_id] = task
        counts = self._counts
        last_cpu, last_wall = self._last_cpu, self._last_wall
        sender_ident = self.sender.thread_ident
        native_ids = self._native_ids
        last_stack = self._last_stack
        by_signal = self._by_signal
        for thread_id, frame in frames.items():
            if thread_id in (me, sender_ident):
                continue
            cpu_ns = 0
            native_id = native_ids.get(thread_id) or getattr(threads.get(thread_id), "native_id", None)
            if native_id is not None and thread_id != by_signal:  # (SIGPROF counts the main thread's CPU)
                try:
                    cpu = time.clock_gettime_ns(_cpu_clock(native_id))
                except OSError:  # the thread ended since _current_frames(): its wall time still counts
                    cpu = None
                if cpu is not None:
                    previous = last_cpu.get(thread_id)
                    last_cpu[thread_id] = cpu
                    cpu_ns = cpu - previous if previous is not None else 0
            previous_wall = last_wall.get(thread_id)
            last_wall[thread_id] = now
            wall_ns = now - previous_wall if previous_wall is not None else self.period_ns
            task = loop_task.get(thread_id)
            span_id = _span_id(_active.active_span(thread_id, task))
            # A thread still in the same frame at the same instruction as at the last tick (an idle thread waiting)
            # has the same stack: a live frame's callers do not change, and a live frame keeps its address.
            code, offset = frame.f_code, frame.f_lasti
            seen = last_stack.get(thread_id)
            if seen is not None and seen[0] == id(frame) and seen[1] is code and seen[2] == offset and seen[3] is task:
                stack, codes = seen[4], seen[5]
            else:
                stack, codes = _walk(frame, task)
                last_stack[thread_id] = (id(frame), code, offset, task, stack, codes)
            values = counts.get((stack, span_id)) or self._new_slot(stack, span_id, codes)
            if values is None:
                continue
            if cpu_ns > 0:
                values[0] += 1
                values[1] += cpu_ns
            values[2] += 1
            values[3] += wall_ns
        del frames
        self._drain_main()

    def _record_main(self, frame: Any, cpu_ns: int) -> None:
        """SIGPROF's handler, in the main thread: `cpu_ns` of its CPU went to `frame`'s stack (in this context)."""
        loop = _active._get_running_loop()
        task = _current_tasks.get(loop) if loop is not None else None
        stack, codes = _walk(frame, task)
        self._main_cpu.append((stack, codes, _span_id(context_api.get_current().get(_SPAN_KEY)), cpu_ns))

    def _drain_main(self) -> None:
        """Move the main thread's SIGPROF samples into the window (list swap and append: atomic under the GIL)."""
        pending, self._main_cpu = self._main_cpu, []
        counts = self._counts
        for stack, codes, span_id, cpu_ns in pending:
            values = counts.get((stack, span_id)) or self._new_slot(stack, span_id, codes)
            if values is not None:
                values[0] += 1
                values[1] += cpu_ns

    def _new_slot(self, stack: tuple[Any, ...], span_id: int, codes: tuple[Any, ...]) -> list[Any] | None:
        """A window's new [cpu samples, cpu ns, wall samples, wall ns, codes] for (stack, span); None (the sample
        dropped and counted) beyond MAX_STACKS."""
        if len(self._counts) >= MAX_STACKS:
            self.samples_dropped += 1
            return None
        values = self._counts[(stack, span_id)] = [0, 0, 0, 0, codes]
        return values

    def flush(self) -> None:
        """Encode the window's samples as a CPU and a wall profile and queue them for sending; start a new window."""
        self._drain_main()
        counts, start = self._counts, self._window_start
        live = set(sys._current_frames())
        self._counts = {}
        self._window_start = end = time.time_ns()
        for table in (self._last_cpu, self._last_wall, self._last_stack):
            for thread_id in [t for t in table if t not in live]:
                del table[thread_id]
        _active.forget_finished(live)
        if not counts:
            return
        duration = end - start
        cpu = ProfileBuilder(_CPU_TYPES, period_type=("cpu", "nanoseconds"), period=self.period_ns,
                             start_ns=start, duration_ns=duration)
        wall = ProfileBuilder(_WALL_TYPES, period_type=("wall", "nanoseconds"), period=self.period_ns,
                              start_ns=start, duration_ns=duration)
        names: dict[int, tuple[str, str]] = {}  # id(code) -> (function, file)
        lines = _Lines()
        # Keys that differ only in instruction offsets on the same lines make one sample each.
        merged: dict[tuple[tuple[tuple[str, str, int], ...], int], list[int]] = {}
        for (stack, span_id), (cpu_samples, cpu_ns, wall_samples, wall_ns, codes) in counts.items():
            frames: list[tuple[str, str, int]] = []
            for i, code in enumerate(codes):
                name = names.get(stack[2 * i])
                if name is None:
                    name = names[stack[2 * i]] = (code.co_qualname, code.co_filename)
                frames.append((name[0], name[1], lines.line(code, stack[2 * i + 1])))
            if len(stack) % 2:  # the asyncio task's name, as the root-most frame
                frames.append((f"<task {stack[-1]}>", "<asyncio>", 0))
            total = merged.setdefault((tuple(frames), span_id), [0, 0, 0, 0])
            total[0] += cpu_samples
            total[1] += cpu_ns
            total[2] += wall_samples
            total[3] += wall_ns
        for (frames_key, span_id), (cpu_samples, cpu_ns, wall_samples, wall_ns) in merged.items():
            labels = {"span_id": format(span_id, "016x")} if span_id else None
            if cpu_samples:
                cpu.add(list(frames_key), (cpu_samples, cpu_ns), labels)
            if wall_samples:
                wall.add(list(frames_key), (wall_samples, wall_ns), labels)
        for kind, builder in (("cpu", cpu), ("wall", wall)):
            if len(builder):
                self.sender.offer(kind, builder.encode(), start, end)
