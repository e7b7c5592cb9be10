"""Process and CPython runtime metrics, read with the standard library only, under the semantic-convention names.

>>> from obsbox.instrumentation import process_metrics
>>> process_metrics.register()              # on the global meter provider; idempotent    # doctest: +SKIP
>>> process_metrics.register(meter_provider)  # or on a given one                          # doctest: +SKIP

What is reported (names, units and attributes from obsbox.instrumentation.catalogue):
- process.cpu.time (s, counter; cpu.mode = user | system) from os.times();
- process.memory.usage (By; resident set size) from /proc/self/statm — Linux only;
- process.thread.count from /proc/self/status, else the interpreter's own thread count;
- process.unix.file_descriptor.count from /proc/self/fd (Linux) or /dev/fd (macOS, BSD);
- cpython.gc.collections (counter; cpython.gc.generation = 0 | 1 | 2) from gc.get_stats();
- obsbox.process.file_descriptor.limit: the soft RLIMIT_NOFILE (not reported when unlimited).
Where a source does not exist (another OS, a sandbox), that metric is simply not reported; nothing raises.
Values are read at collection time, so the cost is paid once per export interval, not per request.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from obsbox.instrumentation.catalogue import CATALOGUE, SEMCONV_METRICS, MetricSpec

__all__ = ["register"]

METER_NAME = "obsbox.process"

_lock = threading.Lock()
_registered: weakref.WeakSet[metrics.MeterProvider] = weakref.WeakSet()


def register(meter_provider: metrics.MeterProvider | None = None) -> bool:
    """Create the process instruments on `meter_provider` (default: the global one); False if already there."""
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _lock:
        if provider in _registered:
            return False
        _registered.add(provider)
    meter = provider.get_meter(METER_NAME)
    for spec, callback in (
        (SEMCONV_METRICS["process.cpu.time"], _cpu_time),
        (SEMCONV_METRICS["process.memory.usage"], _memory_usage),
        (SEMCONV_METRICS["process.thread.count"], _thread_count),
        (SEMCONV_METRICS["process.unix.file_descriptor.count"], _fd_count),
        (SEMCONV_METRICS["cpython.gc.collections"], _gc_collections),
        (CATALOGUE["obsbox.process.file_descriptor.limit"], _fd_limit),
    ):
        _observable(meter, spec, _safe(callback))
    return True


def _observable(
    meter: metrics.Meter, spec: MetricSpec, callback: Callable[[CallbackOptions], Iterable[Observation]]
) -> None:
    if spec.kind == "counter":
        meter.create_observable_counter(spec.name, [callback], unit=spec.unit, description=spec.description)
    elif spec.kind == "updown_counter":
        meter.create_observable_up_down_counter(spec.name, [callback], unit=spec.unit, description=spec.description)
    elif spec.kind == "gauge":
        meter.create_observable_gauge(spec.name, [callback], unit=spec.unit, description=spec.description)
    else:  # pragma: no cover - the catalogue declares no observable histograms
        raise ValueError(f"{spec.name}: no observable instrument for kind {spec.kind}")


def _safe(read: Callable[[], list[Observation]]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """A collection callback that reports nothing instead of failing the whole collection."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        try:
            return read()
        except Exception:  # noqa: BLE001 - a missing /proc or a sandbox denial means: no data point
            return []

    return callback


def _cpu_time() -> list[Observation]:
    times = os.times()
    return [Observation(times.user, {"cpu.mode": "user"}), Observation(times.system, {"cpu.mode": "system"})]


def _memory_usage() -> list[Observation]:
    # statm: size resident shared text lib data dt, in pages. ru_maxrss elsewhere is the PEAK, so not used.
    with open("/proc/self/statm", "rb") as f:
        resident_pages = int(f.read().split()[1])
    return [Observation(resident_pages * os.sysconf("SC_PAGE_SIZE"))]


def _thread_count() -> list[Observation]:
    try:
        # Counts native threads too (those of C extensions), which threading cannot see.
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Threads:"):
                    return [Observation(int(line.split()[1]))]
    except OSError:
        pass
    return [Observation(threading.active_count())]


def _fd_count() -> list[Observation]:
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            entries = os.listdir(directory)
        except OSError:
            continue
        # Listing a directory opens one descriptor for it, which shows up in the listing itself.
        return [Observation(max(0, len(entries) - 1))]
    return []


def _gc_collections() -> list[Observation]:
    return [
        Observation(stats["collections"], {"cpython.gc.generation": generation})
        for generation, stats in enumerate(gc.get_stats())
    ]


def _fd_limit() -> list[Observation]:
    if sys.platform == "win32":
        return []
    import resource  # POSIX only

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return []
    return [Observation(soft)]
