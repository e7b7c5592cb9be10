"""What an HTTP client error says about the server: ready-made predicates for httpx, requests and urllib errors.

>>> from obsbox.resilience import http_client_error, retryable_http_error
>>> retryable_http_error(TimeoutError())
True
>>> retryable_http_error(ValueError("bad input"))
False
>>> http_client_error(TimeoutError())
False

`retryable_http_error` is made for `Retry(retry_on=...)`; `http_client_error` for `CircuitBreaker(exclude=...)`: a
4xx answer means the dependency is up and this request was wrong, which must not open the breaker.
`retry_after` reads the server's Retry-After header, which `Retry` honours.

Retryable: timeouts, connection errors (refused, reset, closed mid-response), and responses with status 408
(request timeout), 429 (too many requests), 502, 503 and 504 (a proxy or the server is briefly unavailable) raised
as httpx.HTTPStatusError, requests.HTTPError or urllib.error.HTTPError. Not retryable: every other 4xx (the request
itself is wrong; sending it again will not help), other 5xx, TLS certificate errors, invalid URLs, and anything
else. Retrying a non-idempotent request after a read timeout may repeat its effect — send an idempotency key.

httpx and requests are looked up only if the application already imported them, so the predicate costs no import.
"""

from __future__ import annotations

import asyncio
import email.utils
import sys
import time
import urllib.error
from typing import Any

__all__ = ["RETRYABLE_STATUS_CODES", "http_client_error", "retry_after", "retryable_http_error", "status_code"]

RETRYABLE_STATUS_CODES = frozenset({408, 429, 502, 503, 504})


def retryable_http_error(exc: BaseException) -> bool:
    """True for timeouts, connection errors and 408/429/502/503/504 responses (see the module docs)."""
    httpx = sys.modules.get("httpx")
    if httpx is not None:
        if isinstance(exc, httpx.HTTPStatusError):
            return exc.response.status_code in RETRYABLE_STATUS_CODES
        if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
            return True
        if isinstance(exc, httpx.HTTPError):
            return False  # proxy, decoding, local protocol and URL errors do not heal by themselves
    requests_exceptions = sys.modules.get("requests.exceptions")
    if requests_exceptions is not None:
        if isinstance(exc, requests_exceptions.HTTPError):
            response = getattr(exc, "response", None)
            return getattr(response, "status_code", None) in RETRYABLE_STATUS_CODES
        if isinstance(exc, requests_exceptions.SSLError):
            return False
        if isinstance(
            exc,
            requests_exceptions.Timeout | requests_exceptions.ConnectionError | requests_exceptions.ChunkedEncodingError,
        ):
            return True
        if isinstance(exc, requests_exceptions.RequestException):
            return False
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRYABLE_STATUS_CODES
    if isinstance(exc, urllib.error.URLError):
        return isinstance(exc.reason, _TRANSIENT_OS_ERRORS)
    return isinstance(exc, _TRANSIENT_OS_ERRORS)


# asyncio.TimeoutError is the builtin TimeoutError from Python 3.11 on, a separate class before.
_TRANSIENT_OS_ERRORS = (TimeoutError, asyncio.TimeoutError, ConnectionError)


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of the response an httpx, requests or urllib error carries, else None."""
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        return int(exc.response.status_code)
    requests_exceptions = sys.modules.get("requests.exceptions")
    if requests_exceptions is not None and isinstance(exc, requests_exceptions.HTTPError):
        code = getattr(getattr(exc, "response", None), "status_code", None)
        return code if isinstance(code, int) else None
    if isinstance(exc, urllib.error.HTTPError):
        return int(exc.code)
    return None


def http_client_error(exc: BaseException) -> bool:
    """True for an error raised for a 4xx response (the request was wrong, the server is fine)."""
    code = status_code(exc)
    return code is not None and 400 <= code < 500


def _headers(exc: BaseException) -> Any:
    httpx = sys.modules.get("httpx")
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        return exc.response.headers
    requests_exceptions = sys.modules.get("requests.exceptions")
    if requests_exceptions is not None and isinstance(exc, requests_exceptions.HTTPError):
        return getattr(getattr(exc, "response", None), "headers", None)
    if isinstance(exc, urllib.error.HTTPError):
        return exc.headers
    return None


def retry_after(exc: BaseException, now: float | None = None) -> float | None:
    """The seconds the server asked to wait in the Retry-After header of the error's response, else None.

    Both forms are read: delta-seconds ("120") and an HTTP date; a date in the past means 0. `now` (epoch
    seconds) is for tests.
    """
    headers = _headers(exc)
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
