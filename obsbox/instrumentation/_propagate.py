"""`opentelemetry.propagate`, imported so that a bad OTEL_PROPAGATORS cannot make `import obsbox` raise.

>>> from obsbox.instrumentation._propagate import propagate
>>> propagate.get_global_textmap()                     # doctest: +SKIP

The API module builds the propagators OTEL_PROPAGATORS names when it is first imported, and raises ValueError for
a name that is misspelt or not installed (`OTEL_PROPAGATORS=bogus`). obsbox imports it through here: such names are
left out with one warning naming the variable (the W3C tracecontext and baggage propagators when none is left),
only for that import; the variable itself is not changed.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING

__all__ = ["propagate"]

_log = logging.getLogger("obsbox")
_VARIABLE = "OTEL_PROPAGATORS"
_DEFAULT = "tracecontext,baggage"


def _usable(configured: str) -> str | None:
    """The names of `configured` that are installed propagators, or None when all are."""
    from importlib.metadata import entry_points

    known = {ep.name for ep in entry_points(group="opentelemetry_propagator")}
    names = [name.strip() for name in configured.split(",") if name.strip()]
    unknown = [name for name in names if name.lower() != "none" and name not in known]
    if not unknown:
        return None
    usable = [name for name in names if name not in unknown]
    fallback = ",".join(usable) or _DEFAULT
    _log.warning("obsbox: ignoring %s entries %s (misspelt or not installed); using %s", _VARIABLE,
                 ", ".join(repr(name[:40]) for name in unknown), fallback)
    return fallback


def _import() -> ModuleType:
    if "opentelemetry.propagate" in sys.modules:
        return sys.modules["opentelemetry.propagate"]
    configured = os.environ.get(_VARIABLE)
    replacement = None
    if configured:
        try:
            replacement = _usable(configured)
        except Exception:  # noqa: BLE001 - unreadable package metadata: let the API decide
            replacement = None
    for attempt in (replacement, _DEFAULT):
        if attempt is not None:
            os.environ[_VARIABLE] = attempt
        try:
            import opentelemetry.propagate as module

            return module
        except Exception:  # noqa: BLE001 - a propagator that fails to load
            if attempt == _DEFAULT:
                raise
            _log.warning("obsbox: the propagators %s names could not be loaded; using %s", _VARIABLE, _DEFAULT,
                         exc_info=True)
        finally:
            if configured is None:
                os.environ.pop(_VARIABLE, None)
            else:
                os.environ[_VARIABLE] = configured
    raise AssertionError("unreachable")


if TYPE_CHECKING:
    from opentelemetry import propagate
else:
    propagate = _import()
