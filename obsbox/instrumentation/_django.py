"""Django: the route hook for instrumented handlers, and a middleware class for MIDDLEWARE.

>>> application = obsbox.instrument(get_wsgi_application())      # doctest: +SKIP

or, in settings.py, as the first entry of MIDDLEWARE:

>>> MIDDLEWARE = ["obsbox.instrumentation.frameworks.ObsboxDjangoMiddleware", ...]   # doctest: +SKIP

Both give one SERVER span per request with Django's route (`resolver_match.route`, made absolute:
"/items/<int:pk>/"). Used together they still give one: the middleware only reports the route when an obsbox
middleware further out already handles the request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from obsbox.instrumentation._routes import django_early_route, django_route
from obsbox.instrumentation._server import (
    DEFAULT_EXCLUDED_PATHS,
    EXCEPTION_KEY,
    REQUEST_KEY,
    ROUTE_KEY,
    ServerRequest,
    report,
)
from obsbox.instrumentation.wsgi import begin_environ


def _route_of(request: Any) -> str | None:
    match = getattr(request, "resolver_match", None)
    route = getattr(match, "route", None)
    return django_route(route) if isinstance(route, str) else None


def _carrier(request: Any) -> dict[str, Any]:
    """Where this request's obsbox keys live: the ASGI scope under ASGI, else META (which is the WSGI environ)."""
    scope = getattr(request, "scope", None)
    return scope if isinstance(scope, dict) else request.META


def hook_resolve_request(handler: Any) -> None:
    """Make a Django handler leave each request's route template where the obsbox middleware reads it."""
    original: Callable[[Any], Any] = handler.resolve_request

    def resolve_request(request: Any) -> Any:
        match = original(request)
        try:
            route = getattr(match, "route", None)
            if isinstance(route, str):  # "" is the root: path("", view)
                _carrier(request)[ROUTE_KEY] = django_route(route)
        except Exception as exc:
            report(exc)
        return match

    handler.resolve_request = resolve_request
    _connect_exception_signal()


_connected = False


def _connect_exception_signal() -> None:
    """Django answers view exceptions with a 500 itself; keep the exception for error.type."""
    global _connected
    if _connected:
        return
    import sys

    from django.core.signals import got_request_exception

    def keep_exception(sender: Any, request: Any = None, **extra: Any) -> None:
        try:
            exc = sys.exc_info()[1]
            if exc is not None and request is not None:
                _carrier(request)[EXCEPTION_KEY] = exc
        except Exception as failure:
            report(failure)

    got_request_exception.connect(keep_exception, weak=False, dispatch_uid="obsbox.exception")
    _connected = True


def _streamed(content: Iterable[bytes], request: ServerRequest, route: str | None, status: int) -> Iterator[bytes]:
    try:
        yield from content
    except GeneratorExit:  # the server stopped iterating (the client went away): cut short, not failed
        raise
    except BaseException as exc:
        request.finish(route, status, exc)
        raise
    finally:
        request.finish(route, status, None)


class ObsboxDjangoMiddleware:
    """Django middleware: one SERVER span and the HTTP server metrics per request (sync and async stacks).

    Put it first in MIDDLEWARE. Excluded paths: settings.OBSBOX_EXCLUDED_PATHS, else the health/metrics defaults.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction
        from django.conf import settings

        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        excluded = getattr(settings, "OBSBOX_EXCLUDED_PATHS", None)
        self.excluded_paths = frozenset(DEFAULT_EXCLUDED_PATHS if excluded is None else excluded)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        request_telemetry = self._begin(request)
        if request_telemetry is None:
            response = self.get_response(request)
            self._report_route(request)
            return response
        try:
            response = self.get_response(request)
        except BaseException as exc:
            request_telemetry.finish(_route_of(request), 0, exc)
            raise
        finally:
            request_telemetry.detach()
        return self._finish(request, response, request_telemetry)

    async def _acall(self, request: Any) -> Any:
        request_telemetry = self._begin(request)
        if request_telemetry is None:
            response = await self.get_response(request)
            self._report_route(request)
            return response
        try:
            response = await self.get_response(request)
        except BaseException as exc:
            request_telemetry.finish(_route_of(request), 0, exc)
            raise
        finally:
            request_telemetry.detach()
        return self._finish(request, response, request_telemetry)

    def process_exception(self, request: Any, exception: Exception) -> None:
        # Django turns view exceptions into 500 responses before they reach us; keep the exception for error.type.
        request._obsbox_exception = exception

    def _begin(self, request: Any) -> ServerRequest | None:
        try:
            carrier = _carrier(request)
            if REQUEST_KEY in carrier or request.path_info in self.excluded_paths:
                return None
            meta = request.META
            if "wsgi.url_scheme" not in meta:
                meta = {**meta, "wsgi.url_scheme": request.scheme}
            telemetry = begin_environ(meta, django_early_route)
            if telemetry is not None:
                carrier[REQUEST_KEY] = telemetry
            return telemetry
        except Exception as exc:
            report(exc)
            return None

    def _report_route(self, request: Any) -> None:
        try:
            route = _route_of(request)
            if route is not None:
                _carrier(request)[ROUTE_KEY] = route
        except Exception as exc:
            report(exc)

    def _finish(self, request: Any, response: Any, telemetry: ServerRequest) -> Any:
        route = _route_of(request)
        status: int = getattr(response, "status_code", 0)
        exc = getattr(request, "_obsbox_exception", None)
        try:
            if getattr(response, "streaming", False) and not getattr(response, "is_async", False):
                response.streaming_content = _streamed(response.streaming_content, telemetry, route, status)
                return response
        except Exception as failure:
            report(failure)
        telemetry.finish(route, status, exc)
        return response
