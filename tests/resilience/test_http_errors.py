"""retryable_http_error and http_client_error against real errors of httpx, requests and urllib and a real server."""

from __future__ import annotations

import email.utils
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests

from obsbox import CircuitBreaker
from obsbox.resilience import Retry, http_client_error, retryable_http_error
from obsbox.resilience.http_errors import retry_after, status_code


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path, _, query = self.path.partition("?")
        if path != self.path:  # /429?retry-after=VALUE: that status with a Retry-After header
            self.send_response(int(path.strip("/")))
            self.send_header("Retry-After", urllib.parse.unquote(query.removeprefix("retry-after=")))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(0.5)
            status = 200
        elif self.path == "/drop":
            self.connection.close()  # no response at all
            return
        else:
            status = int(self.path.strip("/"))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()  # nothing listens here now: connections are refused
    return port


def first_error(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


def httpx_error(url: str, timeout: float = 2.0) -> BaseException:
    return first_error(lambda: httpx.get(url, timeout=timeout).raise_for_status())


def requests_error(url: str, timeout: float = 2.0) -> BaseException:
    return first_error(lambda: requests.get(url, timeout=timeout).raise_for_status())


def urllib_error(url: str, timeout: float = 2.0) -> BaseException:
    return first_error(lambda: urllib.request.urlopen(url, timeout=timeout))


STATUSES = [400, 401, 403, 404, 408, 409, 422, 429, 500, 501, 502, 503, 504]


@pytest.mark.parametrize("client", [httpx_error, requests_error, urllib_error])
@pytest.mark.parametrize("status", STATUSES)
def test_status_codes(server: str, client: object, status: int) -> None:
    exc = client(f"{server}/{status}")  # type: ignore[operator]
    assert status_code(exc) == status
    assert retryable_http_error(exc) is (status in {408, 429, 502, 503, 504})
    assert http_client_error(exc) is (400 <= status < 500)


@pytest.mark.parametrize("client", [httpx_error, requests_error, urllib_error])
def test_connection_refused(client: object, closed_port: int) -> None:
    exc = client(f"http://127.0.0.1:{closed_port}/")  # type: ignore[operator]
    assert retryable_http_error(exc), repr(exc)
    assert not http_client_error(exc) and status_code(exc) is None


@pytest.mark.parametrize("client", [httpx_error, requests_error, urllib_error])
def test_read_timeout(server: str, client: object) -> None:
    exc = client(f"{server}/slow", timeout=0.05)  # type: ignore[operator]
    assert retryable_http_error(exc), repr(exc)


@pytest.mark.parametrize("client", [httpx_error, requests_error])
def test_server_closing_the_connection(server: str, client: object) -> None:
    exc = client(f"{server}/drop")  # type: ignore[operator]
    assert retryable_http_error(exc), repr(exc)


def test_client_mistakes_are_not_retryable() -> None:
    assert not retryable_http_error(httpx.UnsupportedProtocol("ftp://x"))
    assert not retryable_http_error(requests.exceptions.InvalidURL("nope"))
    assert not retryable_http_error(requests.exceptions.SSLError("bad certificate"))
    assert not retryable_http_error(ValueError("bad input"))
    assert retryable_http_error(TimeoutError()) and retryable_http_error(ConnectionResetError())


def test_as_retry_on_with_a_real_server(server: str) -> None:
    """Retry + predicate end to end: 503 is retried until exhausted, 404 fails at once."""
    policy = Retry("http", attempts=3, initial_backoff=0.001, max_backoff=0.002, retry_on=retryable_http_error)
    hits = {"n": 0}

    def get(path: str) -> httpx.Response:
        hits["n"] += 1
        return httpx.get(f"{server}{path}", timeout=2.0).raise_for_status()

    from obsbox import RetryExhaustedError

    with pytest.raises(RetryExhaustedError):
        policy.call(get, "/503")
    assert hits["n"] == 3
    with pytest.raises(httpx.HTTPStatusError):
        policy.call(get, "/404")
    assert hits["n"] == 4


def test_breaker_ignores_client_errors_from_a_real_server(server: str) -> None:
    """404s do not open a breaker that excludes http_client_error; 503s do."""
    breaker = CircuitBreaker("http", minimum_calls=4, exclude=http_client_error)

    def get(path: str) -> httpx.Response:
        return httpx.get(f"{server}{path}", timeout=2.0).raise_for_status()

    for _ in range(6):
        with pytest.raises(httpx.HTTPStatusError):
            breaker.call(get, "/404")
    assert breaker.state == "closed"
    for _ in range(6):
        with pytest.raises(httpx.HTTPStatusError):
            breaker.call(get, "/503")
    assert breaker.state == "open"  # 6 of 12 calls failed


def test_retry_around_a_breaker_does_not_retry_rejections(server: str) -> None:
    """Retry(retry_on=retryable_http_error) around a breaker: 503s are retried and open it; rejections are not."""
    from obsbox import CircuitOpenError

    breaker = CircuitBreaker("composed", minimum_calls=2, reset_timeout=60)
    policy = Retry("composed", attempts=5, initial_backoff=0.001, max_backoff=0.001, retry_on=retryable_http_error)
    hits = {"n": 0}

    def get() -> httpx.Response:
        hits["n"] += 1
        return httpx.get(f"{server}/503", timeout=2.0).raise_for_status()

    with pytest.raises(CircuitOpenError):
        policy.call(breaker.call, get)
    assert hits["n"] == 2  # two 503s opened the breaker; the third attempt was rejected and not retried



@pytest.mark.parametrize("client", [httpx_error, requests_error, urllib_error])
def test_retry_after_header_is_read(server: str, client: object) -> None:
    assert retry_after(client(f"{server}/429?retry-after=7")) == 7.0  # type: ignore[operator]
    in_30s = urllib.parse.quote(email.utils.formatdate(time.time() + 30, usegmt=True))
    assert retry_after(client(f"{server}/503?retry-after={in_30s}")) == pytest.approx(30, abs=2)  # type: ignore[operator]
    past = urllib.parse.quote(email.utils.formatdate(time.time() - 300, usegmt=True))
    assert retry_after(client(f"{server}/503?retry-after={past}")) == 0.0  # type: ignore[operator]
    assert retry_after(client(f"{server}/503?retry-after=soon")) is None  # type: ignore[operator]
    assert retry_after(client(f"{server}/503")) is None  # type: ignore[operator]
    assert retry_after(TimeoutError()) is None


def test_retry_waits_as_long_as_the_server_asks(server: str) -> None:
    slept: list[float] = []

    def policy(**kw: object) -> Retry:
        return Retry("polite", attempts=3, initial_backoff=0.001, max_backoff=5.0, retry_on=retryable_http_error,
                     sleep=slept.append, **kw)  # type: ignore[arg-type]

    def get(path: str) -> httpx.Response:
        return httpx.get(f"{server}{path}", timeout=2.0).raise_for_status()

    from obsbox import RetryExhaustedError

    with pytest.raises(RetryExhaustedError):
        policy().call(get, "/429?retry-after=2")
    assert slept == [2.0, 2.0]
    slept.clear()
    with pytest.raises(RetryExhaustedError) as err:
        policy().call(get, "/429?retry-after=60")  # more than max_backoff: give up rather than knock early
    assert slept == [] and err.value.attempts == 1
    with pytest.raises(RetryExhaustedError):
        policy(respect_retry_after=False).call(get, "/429?retry-after=60")
    assert len(slept) == 2 and max(slept) <= 0.002
