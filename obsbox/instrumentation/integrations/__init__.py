"""The libraries `configure()` instruments besides HTTP: databases and caches — one module each, registered here.

>>> from obsbox.instrumentation.integrations import instrument_libraries, uninstrument_libraries
>>> instrument_libraries()            # configure() does this, less what `disabled_integrations` names  # doctest: +SKIP
{'sqlalchemy': 'instrumented', 'psycopg': 'instrumented', 'asyncpg': 'not installed', 'redis': 'instrumented'}
>>> uninstrument_libraries()                                                                           # doctest: +SKIP

Each module has the same shape: `LIBRARY` (the import name), `DISTRIBUTION` (its PyPI name), `SUPPORTED`
(the version range, lowest included, highest excluded), `instrument()` and `uninstrument()`, both idempotent.
A library that is not installed is skipped; one of a version outside its range is left alone with one warning;
either way the application runs as before. One debug line says what was instrumented and what was not.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import re
from collections.abc import Collection
from types import ModuleType

__all__ = ["INTEGRATIONS", "instrument_libraries", "uninstrument_libraries"]

_log = logging.getLogger("obsbox")

# name → module under obsbox.instrumentation.integrations; the order is the order they are instrumented in.
INTEGRATIONS: tuple[str, ...] = ("sqlalchemy", "psycopg", "asyncpg", "redis", "grpc", "celery")


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"obsbox.instrumentation.integrations.{name}")


def _installed_version(module: ModuleType) -> str | None:
    if importlib.util.find_spec(module.LIBRARY) is None:
        return None
    try:
        return importlib.metadata.version(module.DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def supported(version: str, bounds: tuple[str, str]) -> bool:
    """Whether `version` is in [low, high)."""
    low, high = bounds
    v = _version_tuple(version)
    return _version_tuple(low) <= v < _version_tuple(high)


_warned: set[tuple[str, str]] = set()


def instrument_libraries(disabled: Collection[str] = ()) -> dict[str, str]:
    """Instrument every registered library that is installed, of a supported version, and not `disabled`.

    Returns each library's outcome: instrumented, disabled, not installed, unsupported version, or failed.
    Never raises.
    """
    outcome: dict[str, str] = {}
    for name in INTEGRATIONS:
        try:
            module = _module(name)
            if name in disabled or "all" in disabled:
                module.uninstrument()
                outcome[name] = "disabled"
                continue
            version = _installed_version(module)
            if version is None:
                outcome[name] = "not installed"
                continue
            if not supported(version, module.SUPPORTED):
                outcome[name] = f"unsupported version {version}"
                if (name, version) not in _warned:
                    _warned.add((name, version))
                    _log.warning("obsbox: %s %s is not instrumented: obsbox supports %s >=%s,<%s",
                                 module.DISTRIBUTION, version, module.DISTRIBUTION, *module.SUPPORTED)
                continue
            module.instrument()
            outcome[name] = "instrumented"
        except Exception:  # noqa: BLE001 - a library that cannot be instrumented must not stop the others
            outcome[name] = "failed"
            _log.warning("obsbox: instrumenting %s failed; it runs uninstrumented", name, exc_info=True)
    _log.debug("obsbox: libraries: %s", ", ".join(f"{name} {state}" for name, state in outcome.items()))
    return outcome


def uninstrument_libraries() -> None:
    """Undo `instrument_libraries()` for every library."""
    for name in INTEGRATIONS:
        try:
            _module(name).uninstrument()
        except Exception:  # noqa: BLE001
            _log.debug("obsbox: uninstrumenting %s failed", name, exc_info=True)
