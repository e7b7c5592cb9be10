"""The global MeterProvider obsbox installs: one that can switch to a fresh SDK MeterProvider.

>>> provider = SwitchableMeterProvider()
>>> metrics.set_meter_provider(provider)                     # once per process      # doctest: +SKIP
>>> counter = metrics.get_meter("shop").create_counter("orders.placed")              # doctest: +SKIP
>>> provider.switch(sdk_meter_provider)                      # every configure()     # doctest: +SKIP

OpenTelemetry lets the global MeterProvider be set once, and an SDK MeterProvider keeps its aggregations for
ever. obsbox wants `configure()` to be repeatable (tests, reconfiguration) and each forked worker to start from zero.
So the global provider hands out meters and instruments that remember how they were created and re-create
themselves on whatever SDK provider is current: a new configuration, or a new worker, starts with fresh state and
the instruments user code and libraries already hold keep working. The indirection costs one Python call per
measurement, on SDK instruments only (obsbox's HTTP instruments are its own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.util.types import Attributes

_NOOP = metrics.NoOpMeterProvider()


class _Rebinding:
    """Remembers the factory call that made the real instrument, to repeat it on another meter."""

    def __init__(self, factory: str, args: tuple[Any, ...], kwargs: dict[str, Any], meter: metrics.Meter) -> None:
        self._factory, self._args, self._kwargs = factory, args, kwargs
        self._real: Any = None
        self.rebind(meter)

    def rebind(self, meter: metrics.Meter) -> None:
        self._real = getattr(meter, self._factory)(*self._args, **self._kwargs)


class _Counter(_Rebinding, metrics.Counter):
    def add(self, amount: int | float, attributes: Attributes = None, context: Context | None = None) -> None:
        self._real.add(amount, attributes, context)


class _UpDownCounter(_Rebinding, metrics.UpDownCounter):
    def add(self, amount: int | float, attributes: Attributes = None, context: Context | None = None) -> None:
        self._real.add(amount, attributes, context)


class _Histogram(_Rebinding, metrics.Histogram):
    def record(self, amount: int | float, attributes: Attributes = None, context: Context | None = None) -> None:
        self._real.record(amount, attributes, context)


class _Gauge(_Rebinding, metrics._Gauge):
    def set(self, amount: int | float, attributes: Attributes = None, context: Context | None = None) -> None:
        self._real.set(amount, attributes, context)


class _ObservableCounter(_Rebinding, metrics.ObservableCounter):
    pass


class _ObservableUpDownCounter(_Rebinding, metrics.ObservableUpDownCounter):
    pass


class _ObservableGauge(_Rebinding, metrics.ObservableGauge):
    pass


class SwitchableMeter(metrics.Meter):
    """A meter whose instruments follow the provider's current SDK MeterProvider."""

    def __init__(self, name: str, version: str | None, schema_url: str | None, attributes: Attributes,
                 target: metrics.MeterProvider) -> None:
        super().__init__(name, version, schema_url)
        self._attributes = attributes
        self._lock = threading.Lock()
        self._made: list[_Rebinding] = []
        self._real = self._meter_of(target)

    def _meter_of(self, provider: metrics.MeterProvider) -> metrics.Meter:
        return provider.get_meter(self.name, self.version, self.schema_url, self._attributes)

    def rebind(self, provider: metrics.MeterProvider) -> None:
        with self._lock:
            self._real = self._meter_of(provider)
            for instrument in self._made:
                instrument.rebind(self._real)

    def _make(self, cls: Callable[..., _Rebinding], factory: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            instrument = cls(factory, args, kwargs, self._real)
            self._made.append(instrument)
            return instrument

    def create_counter(self, name: str, unit: str = "", description: str = "") -> metrics.Counter:
        made: metrics.Counter = self._make(_Counter, "create_counter", name, unit, description)
        return made

    def create_up_down_counter(self, name: str, unit: str = "", description: str = "") -> metrics.UpDownCounter:
        made: metrics.UpDownCounter = self._make(_UpDownCounter, "create_up_down_counter", name, unit, description)
        return made

    def create_histogram(self, name: str, unit: str = "", description: str = "", *,
                         explicit_bucket_boundaries_advisory: Sequence[float] | None = None) -> metrics.Histogram:
        made: metrics.Histogram = self._make(
            _Histogram, "create_histogram", name, unit, description,
            explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory,
        )
        return made

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> metrics._Gauge:
        made: metrics._Gauge = self._make(_Gauge, "create_gauge", name, unit, description)
        return made

    def create_observable_counter(self, name: str, callbacks: Sequence[metrics.CallbackT] | None = None,
                                  unit: str = "", description: str = "") -> metrics.ObservableCounter:
        made: metrics.ObservableCounter = self._make(
            _ObservableCounter, "create_observable_counter", name, callbacks, unit, description)
        return made

    def create_observable_up_down_counter(self, name: str, callbacks: Sequence[metrics.CallbackT] | None = None,
                                          unit: str = "", description: str = "") -> metrics.ObservableUpDownCounter:
        made: metrics.ObservableUpDownCounter = self._make(
            _ObservableUpDownCounter, "create_observable_up_down_counter", name, callbacks, unit, description)
        return made

    def create_observable_gauge(self, name: str, callbacks: Sequence[metrics.CallbackT] | None = None,
                                unit: str = "", description: str = "") -> metrics.ObservableGauge:
        made: metrics.ObservableGauge = self._make(
            _ObservableGauge, "create_observable_gauge", name, callbacks, unit, description)
        return made


class SwitchableMeterProvider(metrics.MeterProvider):
    """Hands out SwitchableMeters; `switch()` moves all of them (and their instruments) to another provider."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: metrics.MeterProvider = _NOOP
        self._meters: dict[tuple[str, str | None, str | None], SwitchableMeter] = {}

    def get_meter(self, name: str, version: str | None = None, schema_url: str | None = None,
                  attributes: Attributes = None) -> metrics.Meter:
        key = (name, version, schema_url)
        with self._lock:
            meter = self._meters.get(key)
            if meter is None:
                meter = self._meters[key] = SwitchableMeter(name, version, schema_url, attributes, self._target)
            return meter

    def switch(self, target: metrics.MeterProvider | None) -> None:
        """Make `target` (None: a no-op provider) the real provider behind every meter handed out."""
        with self._lock:
            self._target = target if target is not None else _NOOP
            meters = list(self._meters.values())
        for meter in meters:
            meter.rebind(self._target)

    def after_fork(self) -> None:
        """In a forked child: fresh locks (another thread of the parent may have held one at the fork)."""
        self._lock = threading.Lock()
        for meter in self._meters.values():
            meter._lock = threading.Lock()

    @property
    def target(self) -> metrics.MeterProvider:
        return self._target
