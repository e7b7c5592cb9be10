"""Instrumentation without code changes, as `obsbox run -- COMMAND` applies it.

>>> from obsbox.instrumentation import auto
>>> auto.boot()          # doctest: +SKIP  (what the sitecustomize of `obsbox run` calls at interpreter start)

`boot()` calls `obsbox.configure()` with the settings of the environment (OBSBOX_* > OTEL_* > defaults, as
configure reads them; without a service name in the environment, `service_name_for` derives one from the command,
as `obsbox run` does and prints) and installs import hooks that
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
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

_log = logging.getLogger("obsbox")
_BOOTED = False
_PATCHED: set[str] = set()


_SERVERS = ("uvicorn", "gunicorn", "hypercorn", "granian", "daphne", "waitress-serve")
# Module names that say nothing about the service: `uvicorn main:app` is named after what is left, or the directory.
_GENERIC = frozenset({"main", "manage", "app", "application", "asgi", "wsgi", "server", "__main__", "__init__"})
_TARGET = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)(?::([A-Za-z_]\w*(?:\(.*\))?))?$")
_SETTINGS_DEFAULT = re.compile(r"""DJANGO_SETTINGS_MODULE['"]\s*,\s*['"]([A-Za-z_][\w.]*)['"]""")
# Server options whose value is a directory the app module is found from.
_APP_DIRS = ("--chdir", "--app-dir", "--pythonpath", "--root-path-dir")
# gunicorn/waitress flags without a value (anything else starting with "-" and without "=" takes the next word).
_FLAGS = frozenset({"--reload", "--preload", "-D", "--daemon", "--check-config", "--print-config", "--spew", "-R",
                    "--enable-stdio-inheritance", "--capture-output", "--no-sendfile", "--reuse-port", "--factory",
                    "--strip-header-spaces", "--proxy-protocol", "--call", "--noreload", "--nothreading"})


class ServiceName(NamedTuple):
    """The service name `obsbox run` gives a program, and where it came from (printed at start)."""

    name: str
    source: str


def service_name_for(argv: Sequence[str], environ: Mapping[str, str] | None = None, cwd: Path | None = None,
                     ) -> ServiceName:
    """A service name for a program: set explicitly, else derived from what it serves, never a host:port.

    >>> service_name_for(["uvicorn", "shop.api:app", "--port", "8000"], {}).name
    'shop.api'
    >>> service_name_for(["gunicorn", "-b", "127.0.0.1:8001", "inventory.main:app"], {}).name
    'inventory'
    >>> service_name_for(["flask", "--app", "flaskr", "run"], {}).name
    'flaskr'
    >>> service_name_for(["python", "/srv/orders.py"], {}).name
    'orders'

    In order: OBSBOX_SERVICE_NAME, OTEL_SERVICE_NAME, `service.name` in OBSBOX_/OTEL_RESOURCE_ATTRIBUTES; the
    project of a Django settings module (`--settings`, DJANGO_SETTINGS_MODULE, or the default manage.py or the
    served wsgi/asgi module sets); the Flask app's import name (`--app`, FLASK_APP); the app module of a server
    command (`uvicorn`, `gunicorn`, ... `module:app`) or the script or `-m` module run; the working directory.
    Generic module names (main, app, wsgi, asgi, ...) are dropped from the end of a module path.
    """
    env = os.environ if environ is None else environ
    here = cwd or Path.cwd()
    for var in ("OBSBOX_SERVICE_NAME", "OTEL_SERVICE_NAME"):
        if env.get(var):
            return ServiceName(env[var], var)
    for var in ("OBSBOX_RESOURCE_ATTRIBUTES", "OTEL_RESOURCE_ATTRIBUTES"):
        for pair in env.get(var, "").split(","):
            key, _, value = pair.partition("=")
            if key.strip() == "service.name" and value.strip():
                return ServiceName(value.strip(), f"service.name in {var}")
    program, args = _program(argv)
    dirs = [here, *(here / v for v in _option_values(args, _APP_DIRS))]

    settings = next(iter(_option_values(args, ("--settings",))), None)
    how = "--settings"
    if not settings and env.get("DJANGO_SETTINGS_MODULE"):
        settings, how = env["DJANGO_SETTINGS_MODULE"], "DJANGO_SETTINGS_MODULE"
    target = _served_module(args) if program in _SERVERS else None
    if not settings and (Path(program).name == "manage.py" or target):
        source = _module_file(target, dirs) if target else here / program
        settings = _settings_default(source) if source else None
        how = f"set in {source.relative_to(here) if source and source.is_relative_to(here) else source}"
    if settings:
        return ServiceName(settings.split(".")[0], f"the project of the Django settings {settings}, {how}")
    if program == "flask":
        app = next(iter(_option_values(args, ("--app", "-A"))), None) or env.get("FLASK_APP")
        name = _module_name(app.split(":")[0].removesuffix(".py").replace("/", ".")) if app else None
        if name:
            return ServiceName(name, f"the Flask app {app}")
    elif target:
        name = _module_name(target)
        if name:
            return ServiceName(name, f"the app module {target}")
    elif program.endswith(".py") or program.startswith("-m "):
        module = program.removeprefix("-m ").removesuffix(".py").split("/")[-1]
        name = _module_name(module)
        if name:
            return ServiceName(name, f"the program {program}")
    if here.name:
        return ServiceName(here.name, "the working directory")
    return ServiceName(program or "python", "the program")


def _program(argv: Sequence[str]) -> tuple[str, list[str]]:
    """The program a command runs (`uvicorn`, `manage.py`, `-m flask` → `flask`, a script path) and its arguments."""
    if not argv:
        return "", []
    first = Path(argv[0]).name
    if not re.fullmatch(r"python[\d.]*", first):
        return (argv[0] if first.endswith(".py") else first), list(argv[1:])
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "-m" and rest:
            module = rest.pop(0)
            return (module if module in (*_SERVERS, "flask", "django") else f"-m {module}"), rest
        if arg in ("-W", "-X"):
            rest = rest[1:]
        elif arg == "-c":
            return "-c", rest
        elif not arg.startswith("-"):
            return (arg if arg.endswith(".py") else Path(arg).name), rest
    return "python", []


def _option_values(args: Sequence[str], names: Sequence[str]) -> list[str]:
    values = []
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in names:
            if eq:
                values.append(value)
            elif i + 1 < len(args):
                values.append(args[i + 1])
    return values


def _served_module(args: Sequence[str]) -> str | None:
    """The app module a server command serves: `module:app` anywhere, else (gunicorn, waitress) the positional
    dotted name; never an option's value such as a bind address or worker class."""
    positional: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg.startswith("-"):
            skip = "=" not in arg and arg not in _FLAGS
            continue
        positional.append(arg)
    for arg in [*positional, *args]:
        match = _TARGET.match(arg)
        if match and match.group(2):
            return match.group(1)
    for arg in reversed(positional):
        match = _TARGET.match(arg)
        if match:
            return match.group(1)
    return None


def _module_file(module: str, dirs: Sequence[Path]) -> Path | None:
    parts = module.split(".")
    for d in dirs:
        for candidate in (d.joinpath(*parts).with_suffix(".py"), d.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


def _settings_default(source: Path) -> str | None:
    """The DJANGO_SETTINGS_MODULE a manage.py or wsgi.py/asgi.py sets by default (as startproject writes them)."""
    try:
        match = _SETTINGS_DEFAULT.search(source.read_text(errors="replace")[:65536])
    except OSError:
        return None
    return match.group(1) if match else None


def _module_name(module: str) -> str | None:
    """A module path without its generic trailing parts (`inventory.main` → `inventory`; `main` → None)."""
    parts = [p for p in module.split(".") if p]
    while parts and parts[-1] in _GENERIC:
        parts.pop()
    return ".".join(parts) or None


def boot() -> None:
    """Configure obsbox from the environment and install the framework hooks (once per process)."""
    global _BOOTED
    if _BOOTED:
        return
    _BOOTED = True
    try:
        import obsbox

        name = service_name_for(getattr(sys, "orig_argv", None) or sys.argv).name
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
