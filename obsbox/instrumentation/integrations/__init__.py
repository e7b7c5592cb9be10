"""The libraries `configure()` instruments besides HTTP — databases, caches, Celery, gRPC — one module each,
registered here.

>>> from obsbox.instrumentation.integrations import instrument_libraries, uninstrument_libraries
>>> instrument_libraries()            # configure() does this, less what `disabled_integrations` names  # doctest: +SKIP
{'sqlalchemy': 'instrumented', 'psycopg': 'instrumented on import', 'asyncpg': 'not installed', ...}
>>> uninstrument_libraries()                                                                           # doctest: +SKIP

Each module has the same shape: `LIBRARY` (the import name), `DISTRIBUTION` (its PyPI name), `SUPPORTED`
(the version range, lowest included, highest excluded), `instrument()` and `uninstrument()`, both idempotent.
A library that is not installed is skipped; one of a version outside its range is left alone with one warning;
either way the application runs as before. A library the application has not imported yet is not imported by
`configure()` (that would cost every service the start-up time of libraries it may never use): it is
instrumented when the application first imports it, by a finder on `sys.meta_path`. One debug line says what was instrumented and what was not.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import logging
import re
import sys
import threading
from collections.abc import Collection, Sequence
from types import ModuleType
from typing import Any

__all__ = ["INTEGRATIONS", "instrument_libraries", "uninstrument_libraries"]

_log = logging.getLogger("obsbox")

# name → module under obsbox.instrumentation.integrations; the order is the order they are instrumented in.
INTEGRATIONS: tuple[str, ...] = ("sqlalchemy", "django", "psycopg", "asyncpg", "redis", "grpc", "celery")


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
# library import name -> integration name, for libraries to instrument when they are first imported
_pending: dict[str, str] = {}
_lock = threading.Lock()


class _Loader(importlib.abc.Loader):
    """The library's own loader, then the integration, once the library's module has run."""

    def __init__(self, loader: Any, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        _instrument_pending(self._name)

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package, ...: the library's loader's
        return getattr(self._loader, attr)


class _OnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when a pending library is imported, wraps the loader the other finders return."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: importlib.machinery.ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader, _pending[fullname])
                return spec
        return None


_finder = _OnImport()


def _instrument_pending(name: str) -> None:
    with _lock:
        module = _module(name)
        if _pending.pop(module.LIBRARY, None) is None:
            return
    try:
        module.instrument()
    except Exception:  # noqa: BLE001 - never break the application's import
        _log.warning("obsbox: instrumenting %s failed; it runs uninstrumented", name, exc_info=True)


def instrument_libraries(disabled: Collection[str] = (), slow_threshold: float | None = None) -> dict[str, str]:
    """Instrument every registered library that is installed, of a supported version, and not `disabled`.

    `slow_threshold`: seconds from which a database or cache operation also logs a line.
    Returns each library's outcome: instrumented, instrumented on import, disabled, not installed, unsupported
    version, or failed.
    Never raises.
    """
    outcome: dict[str, str] = {}
    if slow_threshold is not None:
        from obsbox.instrumentation.integrations._db import Slow

        Slow.threshold = slow_threshold
    for name in INTEGRATIONS:
        try:
            module = _module(name)
            if name in disabled or "all" in disabled:
                _pending.pop(module.LIBRARY, None)
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
            if module.LIBRARY in sys.modules:
                module.instrument()
                outcome[name] = "instrumented"
            else:
                with _lock:
                    _pending[module.LIBRARY] = name
                    if _finder not in sys.meta_path:
                        sys.meta_path.insert(0, _finder)
                outcome[name] = "instrumented on import"
        except Exception:  # noqa: BLE001 - a library that cannot be instrumented must not stop the others
            outcome[name] = "failed"
            _log.warning("obsbox: instrumenting %s failed; it runs uninstrumented", name, exc_info=True)
    _log.debug("obsbox: libraries: %s", ", ".join(f"{name} {state}" for name, state in outcome.items()))
    return outcome


def uninstrument_libraries() -> None:
    """Undo `instrument_libraries()` for every library."""
    _pending.clear()
    for name in INTEGRATIONS:
        try:
            _module(name).uninstrument()
        except Exception:  # noqa: BLE001
            _log.debug("obsbox: uninstrumenting %s failed", name, exc_info=True)
