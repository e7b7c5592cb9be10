"""Instrumentation without code changes, as `obsbox run -- COMMAND` applies it.

>>> from obsbox.instrumentation import auto
>>> auto.boot()          # doctest: +SKIP  (what the sitecustomize of `obsbox run` calls at interpreter start)

`boot()` calls `obsbox.configure()` with the settings of the environment (OBSBOX_* > OTEL_* > defaults, as
configure reads them; the service name falls back to the program's name) and installs import hooks that
instrument web apps as they are created:

| framework | hook | effect |
|---|---|---|
| FastAPI, Starlette | the app's constructor | `obsbox.instrument(app)` right after `__init__` |
| Flask | `Flask.__init__` | `obsbox.instrument(app)` (wraps `wsgi_app` in place) |
| Django | `get_wsgi_application()` / `get_asgi_application()` | returns the instrumented handler |

The hooks patch a framework only when the program imports it, so a program that uses none pays nothing. Like the
rest of the instrumentation, nothing here raises into the program: a failure is logged and the program runs
uninstrumented.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

_log = logging.getLogger("obsbox")
_BOOTED = False
_PATCHED: set[str] = set()


def service_name_from(argv: Sequence[str]) -> str:
    """A service name for a program nobody named: the app module of a server command, else the script's name.

    >>> service_name_from(["/venv/bin/uvicorn", "shop.api:app", "--port", "8000"])
    'shop.api'
    >>> service_name_from(["/srv/orders.py"])
    'orders'
    """
    for arg in argv[1:]:
        if ":" in arg and not arg.startswith("-") and "/" not in arg:
            return arg.split(":")[0]
    program = Path(argv[0]).name if argv else "python"
    return program[:-3] if program.endswith(".py") else program or "python"


def boot() -> None:
    """Configure obsbox from the environment and install the framework hooks (once per process)."""
    global _BOOTED
    if _BOOTED:
        return
    _BOOTED = True
    try:
        import obsbox

        name = (os.environ.get("OBSBOX_SERVICE_NAME") or os.environ.get("OTEL_SERVICE_NAME")
                or service_name_from(sys.argv))
        obsbox.configure(service_name=name)
    except Exception:  # the program must run even when telemetry cannot start
        _log.warning("obsbox run: configure() failed; the program runs without telemetry", exc_info=True)
        return
    install_hooks()


def _instrument_after_init(cls: Any) -> None:
    original = cls.__init__
    if getattr(original, "_obsbox_hook", False):
        return

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        _instrument(self)

    __init__._obsbox_hook = True  # type: ignore[attr-defined]
    cls.__init__ = __init__


def _instrument_result(module: ModuleType, name: str) -> None:
    original = getattr(module, name)
    if getattr(original, "_obsbox_hook", False):
        return

    @functools.wraps(original)
    def factory(*args: Any, **kwargs: Any) -> Any:
        return _instrument(original(*args, **kwargs))

    factory._obsbox_hook = True  # type: ignore[attr-defined]
    setattr(module, name, factory)


def _instrument(app: Any) -> Any:
    try:
        import obsbox

        return obsbox.instrument(app)
    except Exception:
        _log.warning("obsbox run: could not instrument %r; it runs without server telemetry", app, exc_info=True)
        return app


_HOOKS: dict[str, Callable[[ModuleType], None]] = {
    "starlette.applications": lambda m: _instrument_after_init(m.Starlette),
    "fastapi.applications": lambda m: _instrument_after_init(m.FastAPI),
    "flask.app": lambda m: _instrument_after_init(m.Flask),
    "django.core.wsgi": lambda m: _instrument_result(m, "get_wsgi_application"),
    "django.core.asgi": lambda m: _instrument_result(m, "get_asgi_application"),
}


def _apply(name: str, module: ModuleType) -> None:
    if name in _PATCHED:
        return
    _PATCHED.add(name)
    try:
        _HOOKS[name](module)
    except Exception:
        _log.warning("obsbox run: could not hook %s", name, exc_info=True)


class _HookLoader(importlib.abc.Loader):
    """Runs the real loader, then the hook for the module just executed."""

    def __init__(self, name: str, loader: importlib.abc.Loader) -> None:
        self.name = name
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        _apply(self.name, module)


class _HookFinder(importlib.abc.MetaPathFinder):
    """Finds the hooked framework modules through the other finders and wraps their loader."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None,
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _HOOKS or fullname in _PATCHED:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _HookLoader(fullname, spec.loader)
                return spec
        return None


def install_hooks() -> None:
    """Hook the frameworks: those already imported now, the others when they are imported."""
    for name in _HOOKS:
        module = sys.modules.get(name)
        if module is not None:
            _apply(name, module)
    if not any(isinstance(f, _HookFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _HookFinder())


def sitecustomize_dir() -> Path:
    """The directory `obsbox run` puts first on PYTHONPATH (its sitecustomize.py calls `boot()`)."""
    return Path(__file__).resolve().parents[1] / "cli" / "_sitecustomize"


def command_environment(environ: dict[str, str] | os._Environ[str], *, service_name: str | None = None,
                        ) -> dict[str, str]:
    """The environment for `obsbox run`: PYTHONPATH led by the boot directory, plus the service name if given."""
    env = dict(environ)
    boot_dir = str(sitecustomize_dir())
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != boot_dir]
    env["PYTHONPATH"] = os.pathsep.join([boot_dir, *parts])
    if service_name:
        env["OBSBOX_SERVICE_NAME"] = service_name
    return env
