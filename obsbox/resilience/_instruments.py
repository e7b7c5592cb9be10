"""The resilience instruments, created from the metric catalogue so their names, units and attributes cannot drift.

Every breaker, retry policy and pool records through the OpenTelemetry metrics API: by default through the global
meter provider (whatever `obsbox.configure()` installed; before that, the API's proxy, which starts forwarding as
soon as a provider is set — so a breaker made at import time reports once configure() runs), or through an explicit
`meter_provider=` given to the object (tests, custom pipelines).

Observable instruments (breaker state, pool size) are created once per provider; each callback reports every live
object registered for that provider (the latest one per name), so a thousand breakers still register one callback.
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


class Instruments:
    """The resilience instruments on one meter provider."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.breaker_sources = LatestByName()
        self.pool_sources = LatestByName()
        c = CATALOGUE
        self.breaker_transitions = _counter(meter, c["obsbox.circuit_breaker.transitions"])
        self.breaker_calls = _counter(meter, c["obsbox.circuit_breaker.calls"])
        self.retry_calls = _counter(meter, c["obsbox.retry.calls"])
        self.retry_retries = _counter(meter, c["obsbox.retry.retries"])
        self.retry_backoff = _histogram(meter, c["obsbox.retry.backoff"])
        self.pool_busy = _updown(meter, c["obsbox.pool.busy"])
        self.pool_queue_depth = _updown(meter, c["obsbox.pool.queue.depth"])
        self.pool_task_duration = _histogram(meter, c["obsbox.pool.task.duration"])
        _gauge(meter, c["obsbox.circuit_breaker.state"], self._observe(self.breaker_sources))
        _gauge(meter, c["obsbox.pool.size"], self._observe(self.pool_sources))

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


def _counter(meter: metrics.Meter, spec: MetricSpec) -> metrics.Counter:
    assert spec.kind == "counter", spec
    return meter.create_counter(spec.name, unit=spec.unit, description=spec.description)


def _updown(meter: metrics.Meter, spec: MetricSpec) -> metrics.UpDownCounter:
    assert spec.kind == "updown_counter", spec
    return meter.create_up_down_counter(spec.name, unit=spec.unit, description=spec.description)


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


def _after_fork_in_child() -> None:
    global _lock, _sources_lock
    # Either may have been held by a thread that did not survive the fork.
    _lock = threading.Lock()
    _sources_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
