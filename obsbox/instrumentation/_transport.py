"""Sending encoded OTLP requests: http/protobuf (stdlib http.client, one kept-alive connection) or gRPC.

>>> sender = HttpSender("http://127.0.0.1:4318", headers={}, compression="none")   # doctest: +SKIP
>>> sender.send("traces", body, timeout=3.0)      # POST http://127.0.0.1:4318/v1/traces  # doctest: +SKIP
>>> HttpSender("http://collector/otlp/traces", {}, "none", exact=True)   # a per-signal URL, used as is  # doctest: +SKIP

Both take bytes already encoded by obsbox's encoders, so the transport choice costs nothing on the hot path.
Failures raise ExportError telling whether a retry may help (connection errors, timeouts, 429 and 5xx
gateway errors) or not (other 4xx: the collector refuses the data or the credentials).
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import importlib
import socket
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
_GRPC_METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RETRYABLE_STATUS = {408, 429, 502, 503, 504}
MAX_RESPONSE_BODY = 64 * 1024  # bytes of a response read at most


class ExportError(Exception):
    """A failed export: whether a retry may help, and after how many seconds the collector asked for one."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Sender(Protocol):
    endpoint: str

    def send(self, signal: str, body: bytes, timeout: float) -> None: ...

    def close(self) -> None: ...

    def forget(self) -> None: ...


class HttpSender:
    """OTLP/HTTP with protobuf bodies, to `endpoint` + /v1/<signal>, or with `exact` to `endpoint` itself."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], compression: str, *, exact: bool = False) -> None:
        self.endpoint = display_endpoint(endpoint)
        parts = urllib.parse.urlsplit(endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/")
        # A per-signal endpoint is the whole URL (OTLP exporter specification); without a path it posts to /.
        self._exact_path = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")) if exact else None
        self._gzip = compression == "gzip"
        self._headers = {
            "Content-Type": "application/x-protobuf",
            "User-Agent": "obsbox-otlp-exporter",
            **dict(headers),
        }
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=timeout)
        return http.client.HTTPConnection(self._host, self._port, timeout=timeout)

    def send(self, signal: str, body: bytes, timeout: float) -> None:
        if self._gzip:
            body = gzip.compress(body, compresslevel=1)
        path = self._exact_path or self._base + SIGNAL_PATHS[signal]
        for attempt in (0, 1):
            reused = self._conn is not None
            conn = self._conn or self._connect(timeout)
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request("POST", path, body, self._headers)
                response = conn.getresponse()
                # The body of an OTLP response is a few bytes (partial success at most); a broken or hostile
                # collector's is read only this far, and the connection is then dropped rather than drained.
                payload = response.read(MAX_RESPONSE_BODY)
            except (ValueError, UnicodeError):  # a header http.client refuses: its message quotes the value
                conn.close()
                self._conn = None
                raise ExportError("a header cannot be sent (control or non-latin-1 characters in it)",
                                  retryable=False) from None
            except (OSError, http.client.HTTPException) as err:
                conn.close()
                self._conn = None
                # A kept-alive connection the collector closed meanwhile: reconnect once at once.
                if attempt == 0 and reused and not isinstance(err, (socket.timeout, TimeoutError)):
                    continue
                raise ExportError(f"{type(err).__name__}: {err}", retryable=True) from None
            self._conn = conn
            if response.will_close or not response.isclosed():
                conn.close()
                self._conn = None
            status = response.status
            if 200 <= status < 300:
                return
            text = payload[:200].decode("utf-8", "replace").strip()
            retry_after = parse_retry_after(response.getheader("Retry-After")) if status in (429, 503) else None
            raise ExportError(f"HTTP {status} {response.reason}: {text}", retryable=status in _RETRYABLE_STATUS,
                              retry_after=retry_after)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def forget(self) -> None:
        """After fork: drop the parent's connection without touching it (the parent still uses the socket)."""
        self._conn = None


class GrpcSender:
    """OTLP/gRPC, sending the same encoded bytes as raw request messages."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], compression: str) -> None:
        grpc: Any = importlib.import_module("grpc")  # the grpc extra; setup checks availability first
        self._grpc = grpc
        self.endpoint = display_endpoint(endpoint)
        self._url = endpoint
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())
        self._compression = grpc.Compression.Gzip if compression == "gzip" else None
        self._open()

    def _open(self) -> None:
        grpc = self._grpc
        parts = urllib.parse.urlsplit(self._url if "://" in self._url else "http://" + self._url)
        target = f"{parts.hostname}:{parts.port or 4317}"
        if parts.scheme == "https":
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(target)
        # No serializers: the request is our encoded bytes, the response is left undecoded.
        self._methods = {signal: self._channel.unary_unary(method) for signal, method in _GRPC_METHODS.items()}

    def send(self, signal: str, body: bytes, timeout: float) -> None:
        grpc = self._grpc
        try:
            self._methods[signal](body, timeout=timeout, metadata=self._metadata, compression=self._compression)
        except grpc.RpcError as err:
            code = err.code()
            retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED,
                                 grpc.StatusCode.CANCELLED)
            raise ExportError(f"gRPC {code.name}: {err.details()}", retryable=retryable) from None

    def close(self) -> None:
        self._channel.close()

    def forget(self) -> None:
        """After fork: a channel of the child's own (gRPC channels do not survive fork)."""
        self._open()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: delay-seconds or an HTTP date (RFC 9110); None when absent or unreadable.

    >>> parse_retry_after("30"), parse_retry_after("soon")
    (30.0, None)
    """
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def display_endpoint(url: str) -> str:
    """The endpoint as it may appear in a log line: without user:password@."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def grpc_available() -> bool:
    try:
        importlib.import_module("grpc")
    except ImportError:
        return False
    return True
