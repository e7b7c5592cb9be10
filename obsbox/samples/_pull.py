"""GET /metrics on each sample service's own port: the pull endpoint, rendered from the same metrics obsbox pushes.

Prometheus scrapes it where no collector runs (CI, hosts, Kubernetes); the series names and the `service_name`
label are the ones the OTLP path yields, so the dashboards work either way.
"""

# No `from __future__ import annotations`: FastAPI evaluates the local handler's annotations at run time.
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render() -> tuple[int, bytes, str]:
    """(status, body, content type) of a scrape of this process's metrics."""
    try:
        from obsbox.instrumentation import pull
    except ImportError:
        return 503, b"# the pull endpoint is not available in this obsbox build\n", CONTENT_TYPE
    renderer: Callable[[], Any] | None = getattr(pull, "render", None)
    if renderer is None:
        return 503, b"# the pull endpoint is not available in this obsbox build\n", CONTENT_TYPE
    body = renderer()
    return 200, body if isinstance(body, bytes) else str(body).encode(), CONTENT_TYPE


def add_fastapi_metrics_route(app: Any) -> None:
    from fastapi import Response

    async def metrics() -> Response:
        status, body, content_type = render()
        return Response(body, status, media_type=content_type)

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


def add_flask_metrics_route(app: Any) -> None:
    from flask import Response

    def metrics() -> Response:
        status, body, content_type = render()
        return Response(body, status=status, content_type=content_type)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])


async def asgi_metrics(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    status, body, content_type = render()
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
