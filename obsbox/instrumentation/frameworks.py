"""`obsbox.instrument(app)`: server telemetry for any Python web app, framework detected.

>>> import obsbox
>>> from fastapi import FastAPI
>>> obsbox.configure(service_name="orders")            # doctest: +SKIP
>>> app = obsbox.instrument(FastAPI())                  # doctest: +SKIP

| app | what happens | route template |
|---|---|---|
| FastAPI, Starlette | middleware added in place (keep using `app`) | `/items/{item_id}` |
| Flask | `app.wsgi_app` wrapped in place + a before-request hook | `/items/<int:item_id>` |
| Django WSGIHandler / ASGIHandler | instrumented in place (keep using `application`) | `/items/<int:pk>/` |
| any other ASGI / WSGI callable | returns a wrapped app (use the return value) | none |

Span names follow the HTTP semantic conventions: `METHOD route` whenever the framework matched a route — also when
its handler answered 404 (an unknown id) or the route exists for other methods only (405; Flask keeps no rule for
those, so it is looked up again for them) — and just `METHOD` with no `http.route` when nothing matched, since the
conventions forbid the raw path as route or name. Those share one metric series per method/status, so raw paths
never become labels. Django's root route, `path("")`, is "/". Instrumenting twice is harmless
(one span per request). For Django there is also a MIDDLEWARE entry, `ObsboxDjangoMiddleware` (see below).

FastAPI 0.16x and later has telemetry of its own that switches on when global OpenTelemetry providers exist. On an
instrumented app obsbox stands in for it: FastAPI's request span, HTTP metrics and log events are switched off for
that app (its operation spans hang off its request span, so they go too), and FastAPI reports the matched route to
obsbox instead — exactly one SERVER span and one set of HTTP metrics per request.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from obsbox.instrumentation._django import ObsboxDjangoMiddleware, hook_resolve_request
from obsbox.instrumentation._routes import django_early_route, flask_early_route, starlette_early_route
from obsbox.instrumentation._server import EXCEPTION_KEY, ROUTE_KEY, report
from obsbox.instrumentation.asgi import ObsboxASGIMiddleware, RouteSource
from obsbox.instrumentation.wsgi import ObsboxWSGIMiddleware

__all__ = ["ObsboxDjangoMiddleware", "instrument", "require"]

App = TypeVar("App")
_MARK = "_obsbox_instrumented"
_log = logging.getLogger("obsbox")

EXTRAS = {"fastapi": "fastapi", "starlette": "starlette", "flask": "flask", "django": "django",
          "httpx": "httpx", "requests": "requests"}


def require(module: str) -> Any:
    """Import an integration's framework, or fail with the `pip install` that fixes it.

    >>> require("json").__name__
    'json'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = EXTRAS.get(top)
        hint = f"pip install 'obsbox[{extra}]'" if extra else f"pip install {top}"
        raise ImportError(f"obsbox needs {top} for this integration: {hint}") from exc


def _is(app: object, *qualified: str) -> bool:
    """Whether `app` is an instance of a class named `module.Class` (checked without importing the framework)."""
    return any(f"{cls.__module__}.{cls.__qualname__}" in qualified for cls in type(app).__mro__)


def instrument(app: App, *, excluded_paths: Iterable[str] | None = None) -> App:
    """Give a web app one SERVER span, `http.server.request.duration` and `http.server.active_requests` per request.

    >>> app = obsbox.instrument(app)                                   # doctest: +SKIP
    >>> app = obsbox.instrument(app, excluded_paths={"/ping"})         # doctest: +SKIP

    `excluded_paths` are exact paths that produce no telemetry (default: /health, /healthz, /ready, /readyz,
    /livez, /metrics). Returns the app: the same object for FastAPI, Starlette, Flask and Django handlers
    (instrumented in place, so `obsbox.instrument(application)` with the result discarded works), a wrapper for
    other ASGI/WSGI callables (plain functions cannot be changed in place: use the return value).
    Raises TypeError for something that is not a web app.
    """
    if getattr(app, _MARK, False) or isinstance(app, ObsboxASGIMiddleware | ObsboxWSGIMiddleware):
        return app
    if _is(app, "fastapi.applications.FastAPI"):
        _instrument_starlette(app, excluded_paths, "fastapi" if _stand_in_for_fastapi(app) else "starlette")
    elif _is(app, "starlette.applications.Starlette"):
        _instrument_starlette(app, excluded_paths, "starlette")
    elif _is(app, "flask.app.Flask", "flask.sansio.app.App"):
        _instrument_flask(app, excluded_paths)
    elif _is(app, "django.core.handlers.wsgi.WSGIHandler"):
        hook_resolve_request(app)
        _serve_through(app, lambda call: ObsboxWSGIMiddleware(call, excluded_paths=excluded_paths,
                                                              early_route=django_early_route), asynchronous=False)
    elif _is(app, "django.core.handlers.asgi.ASGIHandler"):
        hook_resolve_request(app)
        _serve_through(app, lambda call: ObsboxASGIMiddleware(call, excluded_paths=excluded_paths, routes="scope",
                                                              early_route=django_early_route), asynchronous=True)
    elif _is_asgi(app):
        return _wrapped(app, ObsboxASGIMiddleware(cast(Any, app), excluded_paths=excluded_paths, routes="scope"))
    elif callable(app):
        return _wrapped(app, ObsboxWSGIMiddleware(cast(Any, app), excluded_paths=excluded_paths))
    else:
        raise TypeError(
            f"obsbox.instrument() needs an ASGI or WSGI app (FastAPI, Starlette, Flask, Django, ...), "
            f"got {type(app).__name__}; install the framework's extra, e.g. pip install 'obsbox[fastapi]'"
        )
    _mark(app)
    return app


def _mark(app: object) -> None:
    with contextlib.suppress(Exception):  # objects without __dict__: the isinstance check still catches wrappers
        setattr(app, _MARK, True)


def _wrapped(app: App, wrapper: object) -> App:
    """A middleware standing in for the app it wraps (same protocol, so the caller's type is kept)."""
    _mark(wrapper)
    return cast(App, wrapper)


_MIDDLEWARE_ATTR = "_obsbox_middleware"
_in_place_classes: dict[type, type] = {}


def _serve_through(handler: Any, wrap: Callable[[Any], Any], *, asynchronous: bool) -> None:
    """Instrument a Django handler in place: its class becomes a subclass whose `__call__` goes through the obsbox
    middleware (wrapped around the original `__call__`), so the object the user already holds is instrumented.

    Servers call `application(...)`, which Python looks up on the class, so the instance's class is what changes.
    """
    cls = type(handler)
    in_place = _in_place_classes.get(cls)
    if in_place is None:
        if asynchronous:
            async def __call__(self: Any, scope: Any, receive: Any, send: Any) -> None:
                await getattr(self, _MIDDLEWARE_ATTR)(scope, receive, send)
        else:
            def __call__(self: Any, environ: Any, start_response: Any) -> Any:  # type: ignore[misc]
                return getattr(self, _MIDDLEWARE_ATTR)(environ, start_response)
        in_place = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                               "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
        _in_place_classes[cls] = in_place
    setattr(handler, _MIDDLEWARE_ATTR, wrap(cls.__call__.__get__(handler, cls)))
    handler.__class__ = in_place


def _is_asgi(app: object) -> bool:
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)  # noqa: B004 - the bound __call__, to see if it is async
    return inspect.iscoroutinefunction(call)


def _stand_in_for_fastapi(app: Any) -> bool:
    """Switch FastAPI's own request telemetry off for this app; True when FastAPI reports routes to obsbox."""
    config = getattr(app, "_telemetry", None)
    if isinstance(config, dict):
        # NativeTelemetry holds this very dict, so the change applies to requests from now on.
        config["tracing"] = False
        config["metrics"] = False
        config["logs"] = False
        config["operation_spans"] = False
        return True
    if hasattr(app, "_native_telemetry"):
        _log.warning("obsbox: could not switch off FastAPI's own telemetry on this FastAPI version; requests may "
                     "get a second server span. Pass FastAPI(telemetry={'tracing': False, 'metrics': False}).")
    return False


def _instrument_starlette(app: Any, excluded_paths: Iterable[str] | None, routes: RouteSource) -> None:
    early = starlette_early_route(app)
    if getattr(app, "middleware_stack", None) is None:
        app.add_middleware(ObsboxASGIMiddleware, excluded_paths=excluded_paths, routes=routes, early_route=early)
    else:  # already serving: wrap the built stack (a rebuild would drop it, as it does for add_middleware)
        app.middleware_stack = ObsboxASGIMiddleware(app.middleware_stack, excluded_paths=excluded_paths,
                                                    routes=routes, early_route=early)


def _rule_without_the_method(app: Any, request: Any) -> Any:
    """The rule whose path a request matched when its method did not (a 405): Flask knows the route, but does not
    keep it; matching again with an allowed method finds it. Only 405s pay for this."""
    allowed = getattr(request.routing_exception, "valid_methods", None)
    if not allowed:
        return None
    adapter = app.create_url_adapter(request)  # as Flask made the one that matched (subdomains, SERVER_NAME)
    rule, _ = adapter.match(method=next(iter(allowed)), return_rule=True)
    return rule


def _instrument_flask(app: Any, excluded_paths: Iterable[str] | None) -> None:
    flask = require("flask")

    def report_route() -> None:
        try:
            request = flask.request
            rule = request.url_rule
            if rule is None and request.routing_exception is not None:
                rule = _rule_without_the_method(app, request)
            if rule is not None:
                request.environ[ROUTE_KEY] = rule.rule
        except Exception as exc:
            report(exc)

    def report_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
        # Flask answers unhandled exceptions with a 500 itself; keep the exception for error.type.
        try:
            flask.request.environ[EXCEPTION_KEY] = exception
        except Exception as exc:
            report(exc)

    # First in line, so a user hook that answers early cannot hide the route.
    app.before_request_funcs.setdefault(None, []).insert(0, report_route)
    flask.got_request_exception.connect(report_exception, app, weak=False)
    app.wsgi_app = ObsboxWSGIMiddleware(app.wsgi_app, excluded_paths=excluded_paths, early_route=flask_early_route(app))
