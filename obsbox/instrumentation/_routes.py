"""Route templates: which framework route served a request, as a low-cardinality template (`/items/{item_id}`).

>>> from fastapi import FastAPI                                      # doctest: +SKIP
>>> probe = fastapi_probe(); scope["fastapi.telemetry"] = probe      # doctest: +SKIP
>>> await app(scope, receive, send); probe.route                     # doctest: +SKIP
'/items/{item_id}'

- FastAPI (0.16x and later) reports the route it selects, including router prefixes and mount paths, to the object
  it finds under `scope["fastapi.telemetry"]`; we hand it a probe of its own type, which also tells FastAPI (and
  FastAPI apps mounted inside) that the request's telemetry is taken care of.
- Starlette (and older FastAPI) leaves the matched route in `scope["route"]`; mounts add their path to
  `scope["root_path"]`.
- Flask and Django hooks (in frameworks.py) leave the template under `ROUTE_KEY` in the environ or scope.
- Anything else has no template: the request carries no `http.route`, and every such request shares one series.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from obsbox.instrumentation._server import ROUTE_KEY

FASTAPI_SCOPE_KEY = "fastapi.telemetry"


def _load_fastapi_probe() -> Callable[[], Any] | None:
    try:
        from fastapi.telemetry._api import _RequestTelemetry
    except ImportError:  # FastAPI before native telemetry: scope["route"] serves
        return None

    fields = _RequestTelemetry(span=None, span_method="").__dict__
    fields.pop("_exceptions")
    fields["data"] = None  # request data is FastAPI's business, read through its own context key, not ours
    new = object.__new__

    def probe() -> Any:
        # As _RequestTelemetry(span=None, span_method="") without the dataclass machinery: this runs per request.
        instance = new(_RequestTelemetry)
        instance.__dict__.update(fields)
        instance._exceptions = []
        return instance

    return probe


_fastapi_probe: Callable[[], Any] | None | bool = False


def fastapi_probe() -> Any | None:
    """A fresh route probe for one FastAPI request, or None when this FastAPI does not report routes."""
    global _fastapi_probe
    if _fastapi_probe is False:
        _fastapi_probe = _load_fastapi_probe()
    return _fastapi_probe() if callable(_fastapi_probe) else None


_mount: type | None = None


def _mount_type() -> type:
    global _mount
    if _mount is None:
        from starlette.routing import (
            Mount,  # imported on first use: only Starlette apps put routes in the scope
        )

        _mount = Mount
    return _mount


def starlette_route(scope: MutableMapping[str, Any], entry_root_path: str) -> str | None:
    """The template of the route Starlette matched, with the paths of the mounts it went through in front."""
    route = scope.get("route")
    if route is None:
        return scope.get(ROUTE_KEY)
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return None
    root_path = scope.get("root_path", "")
    prefix = root_path[len(entry_root_path):] if root_path.startswith(entry_root_path) else ""
    if isinstance(route, _mount_type()):
        # A mounted non-router app: the mount's own path is already in root_path.
        return prefix + "/{path}"
    return prefix + template if prefix else template


def django_route(route: str) -> str:
    """Django's `resolver_match.route` ("items/<int:pk>/") as an absolute template ("/items/<int:pk>/"); the root
    route, `path("", view)`, is "" in Django and "/" here.

    >>> django_route("items/<int:pk>/"), django_route("")
    ('/items/<int:pk>/', '/')
    """
    return route if route.startswith("/") else "/" + route


# --- the route before the framework routes: for sampling rules, asked only while the sampler needs it -----------
def starlette_early_route(app: Any) -> Callable[[MutableMapping[str, Any]], str | None]:
    """The template the Starlette/FastAPI `app` will match for a request's scope, by asking its routes as its
    router does (first full match; into mounts), before the request reaches it."""

    def early_route(scope: MutableMapping[str, Any]) -> str | None:
        return _match_routes(getattr(app, "routes", ()), scope)

    return early_route


def _match_routes(routes: Any, scope: MutableMapping[str, Any]) -> str | None:
    from starlette.routing import Match

    route: Any
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        if _mount_type() in type(route).__mro__:
            prefix: str = route.path
            inner = route.routes
            if not inner:  # a mounted app without routes: as starlette_route reports it
                return prefix + "/{path}"
            found = _match_routes(inner, {**scope, **child})
            return None if found is None else prefix + found
        template = getattr(route, "path_format", None)
        return template if isinstance(template, str) else None
    return None


def flask_early_route(app: Any) -> Callable[[MutableMapping[str, Any]], str | None]:
    """The rule the Flask `app` will match for a WSGI environ, from its URL map."""

    def early_route(environ: MutableMapping[str, Any]) -> str | None:
        try:
            rule, _ = app.url_map.bind_to_environ(environ).match(return_rule=True)
        except Exception:  # NotFound, MethodNotAllowed, RequestRedirect: no route (yet)
            return None
        template = getattr(rule, "rule", None)
        return template if isinstance(template, str) else None

    return early_route


def django_early_route(carrier: MutableMapping[str, Any]) -> str | None:
    """The route Django's URL resolver will give a request (WSGI environ / META, or ASGI scope)."""
    from django.urls import Resolver404, resolve

    path = carrier.get("PATH_INFO")
    if path is None:  # an ASGI scope
        path = carrier.get("path", "/")
        root = carrier.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
    try:
        route = resolve(path).route
    except Resolver404:
        return None
    return django_route(route) if isinstance(route, str) and route else None
