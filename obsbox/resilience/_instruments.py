"""The resilience instruments, created from the metric catalogue so their names, units and attributes cannot drift.

Every breaker, retry policy and pool records through the OpenTelemetry metrics API: by default through the global
meter provider (whatever `obsbox.configure()` installed; before that, the API's proxy, which starts forwarding as
soon as a provider is set — so a breaker made at import time reports once configure() runs), or through an explicit
`meter_provider=` given to the object (tests, custom pipelines).

Counters and up-down counters are kept here as running totals (`Totals`, one locked integer cell per attribute
set) and reported through observable instruments at collection time: a call through a breaker then costs an
uncontended lock and an addition instead of an SDK measurement (several microseconds), and objects that share a
name add up in one series that never goes backwards, even when one of them is garbage collected. Histograms
(backoff, task duration) stay synchronous, for their buckets and exemplars.

The gauges (breaker state, pool size) report every live object registered for the provider, the latest per name;
a thousand breakers still register one callback per instrument.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from obsbox.instrumentation.catalogue import CATALOGUE, HTTP_DURATION_BUCKETS, MetricSpec

METER_NAME = "obsbox.resilience"

# Bucket boundaries (seconds) for backoffs and task durations, given to the SDK as the instruments' advice: the
# SDK's default boundaries (0, 5, 10, 25, ... 10000) suit milliseconds and would put every backoff in one bucket.
# The HTTP duration buckets, widened at both ends for quick tasks and long jobs.
SECONDS_BUCKETS: tuple[float, ...] = (0.001, 0.0025, *HTTP_DURATION_BUCKETS, 30.0, 60.0)

AttributeValue = str | int


def attributes(spec: MetricSpec, *values: AttributeValue) -> dict[str, AttributeValue]:
    """The attribute dict for `spec`, keys taken from the catalogue in order (so a key can never be misspelt)."""
    if len(values) != len(spec.attributes):
        raise ValueError(f"{spec.name} takes attributes {spec.attributes}, got {len(values)} values")
    return dict(zip(spec.attributes, values, strict=True))


class Observable(Protocol):
    """Something that reports gauge observations (a breaker's state, a pool's size)."""

    def observations(self) -> Iterable[Observation]: ...


class LatestByName:
    """The live objects behind a gauge, one per name: the most recently added one that is still alive.

    A breaker or pool created under a name already in use takes over that name's series (usually it is the same
    dependency rebuilt, say by an app factory run again); when it goes away, the previous one reports again.
    Objects are held weakly: the gauge never keeps a breaker or pool alive.
    """

    def __init__(self) -> None:
        self._refs: dict[str, list[weakref.ref[Observable]]] = {}

    def add(self, name: str, source: Observable) -> None:
        with _sources_lock:
            refs = [r for r in self._refs.get(name, ()) if r() is not None]
            refs.append(weakref.ref(source))
            self._refs[name] = refs

    def live(self) -> list[Observable]:
        out: list[Observable] = []
        with _sources_lock:
            for name, refs in list(self._refs.items()):
                alive = [r for r in refs if r() is not None]
                if not alive:
                    del self._refs[name]
                    continue
                self._refs[name] = alive
                latest = alive[-1]()
                if latest is not None:
                    out.append(latest)
        return out


class Cell:
    """One running total: one attribute set of one counter."""

    __slots__ = ("value", "lock")

    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()

    def add(self, amount: int) -> None:
        with self.lock:  # `+=` on an attribute is not atomic: threads would lose updates
            self.value += amount


class Totals:
    """The running totals behind one observable counter, a cell per attribute set (label values are bounded by
    design: names given in code, outcomes and states from fixed sets)."""

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self._cells: dict[tuple[AttributeValue, ...], Cell] = {}

    def cell(self, *values: AttributeValue) -> Cell:
        """The cell for these attribute values (in the catalogue's key order), made on first use."""
        found = self._cells.get(values)
        if found is None:
            attributes(self.spec, *values)  # the arity check, once
            with _sources_lock:
                found = self._cells.setdefault(values, Cell())
        return found

    def observations(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(cell.value, attributes(self.spec, *key)) for key, cell in list(self._cells.items())]

    def after_fork(self) -> None:
        for cell in list(self._cells.values()):
            cell.lock = threading.Lock()


class Instruments:
    """The resilience instruments on one meter provider."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.breaker_sources = LatestByName()
        self.pool_sources = LatestByName()
        c = CATALOGUE
        self.breaker_transitions = _observable(meter, Totals(c["obsbox.circuit_breaker.transitions"]))
        self.breaker_calls = _observable(meter, Totals(c["obsbox.circuit_breaker.calls"]))
        self.retry_calls = _observable(meter, Totals(c["obsbox.retry.calls"]))
        self.retry_retries = _observable(meter, Totals(c["obsbox.retry.retries"]))
        self.retry_backoff = _histogram(meter, c["obsbox.retry.backoff"])
        self.pool_busy = _observable(meter, Totals(c["obsbox.pool.busy"]))
        self.pool_queue_depth = _observable(meter, Totals(c["obsbox.pool.queue.depth"]))
        self.pool_task_duration = _histogram(meter, c["obsbox.pool.task.duration"])
        _gauge(meter, c["obsbox.circuit_breaker.state"], self._observe(self.breaker_sources))
        _gauge(meter, c["obsbox.pool.size"], self._observe(self.pool_sources))
        self.totals = (self.breaker_transitions, self.breaker_calls, self.retry_calls, self.retry_retries,
                       self.pool_busy, self.pool_queue_depth)

    @staticmethod
    def _observe(sources: LatestByName) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            out: list[Observation] = []
            for source in sources.live():
                try:
                    out.extend(source.observations())
                except Exception:  # noqa: BLE001 - one broken source must not hide the others
                    continue
            return out

        return callback


def _observable(meter: metrics.Meter, totals: Totals) -> Totals:
    spec = totals.spec
    if spec.kind == "counter":
        meter.create_observable_counter(spec.name, [totals.observations], unit=spec.unit,
                                        description=spec.description)
    elif spec.kind == "updown_counter":
        meter.create_observable_up_down_counter(spec.name, [totals.observations], unit=spec.unit,
                                                description=spec.description)
    else:  # pragma: no cover - a catalogue edit that changed a kind
        raise ValueError(f"{spec.name}: kept as totals, so it must be a counter or up-down counter")
    return totals


def _histogram(meter: metrics.Meter, spec: MetricSpec) -> metrics.Histogram:
    assert spec.kind == "histogram" and spec.unit == "s", spec
    return meter.create_histogram(
        spec.name, unit=spec.unit, description=spec.description,
        explicit_bucket_boundaries_advisory=list(SECONDS_BUCKETS),
    )


def _gauge(
    meter: metrics.Meter, spec: MetricSpec, callback: Callable[[CallbackOptions], Iterable[Observation]]
) -> None:
    assert spec.kind == "gauge", spec
    meter.create_observable_gauge(spec.name, [callback], unit=spec.unit, description=spec.description)


_lock = threading.Lock()
_sources_lock = threading.Lock()
# Explicit providers, weakly keyed so a test's provider is not kept alive by the cache.
_by_provider: weakref.WeakKeyDictionary[metrics.MeterProvider, Instruments] = weakref.WeakKeyDictionary()
# The global provider's instruments. Made once: the OpenTelemetry API sets the global provider only once, and
# instruments made before that (on the API's proxy) start forwarding to it when it is set.
_global: Instruments | None = None


def instruments(meter_provider: metrics.MeterProvider | None = None) -> Instruments:
    """The instruments for `meter_provider`, or for the global provider when None (created on first use).

    Callers keep the result: looking it up costs a dict access, recording through it nothing more.
    """
    global _global
    if meter_provider is None:
        if _global is None:
            with _lock:
                if _global is None:
                    _global = Instruments(metrics.get_meter(METER_NAME))
        return _global
    found = _by_provider.get(meter_provider)
    if found is None:
        with _lock:
            found = _by_provider.get(meter_provider)
            if found is None:
                found = Instruments(meter_provider.get_meter(METER_NAME))
                _by_provider[meter_provider] = found
    return found


def detached() -> Instruments:
    """Instruments that report nowhere: for an object whose meter provider failed, so it still works."""
    return Instruments(metrics.NoOpMeter(METER_NAME))


def _after_fork_in_child() -> None:
    global _lock, _sources_lock
    # Any of these may have been held by a thread that did not survive the fork.
    _lock = threading.Lock()
    _sources_lock = threading.Lock()
    for inst in [_global, *list(_by_provider.values())]:
        if inst is not None:
            for totals in inst.totals:
                totals.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
