"""Sending pprof profiles to Grafana Pyroscope's HTTP ingest API, in the background, bounded, never raising.

>>> sender = PyroscopeSender("http://127.0.0.1:4040", "orders", {"deployment_environment_name": "staging"})  # doctest: +SKIP
>>> sender.start(); sender.offer("cpu", pprof_gz, start_ns, end_ns)                                       # doctest: +SKIP

One request per profile: `POST {endpoint}/ingest?name=<service>{label=value,...}&from=<s>&until=<s>&format=pprof
&sampleRate=<Hz>&spyName=obsbox` with the gzip-compressed pprof as the body. These are the facts of Pyroscope's
ingest handler this relies on (tests/profiling/test_continuous.py pins each one):

- `format=pprof` makes the raw body the profile (no multipart form needed); `name` is parsed as
  `app{key=value,...}`: the app name becomes the `service_name` label and the others series labels; a value ends
  at `,` or `}` (so those are left out of values here); `from`/`until` are Unix seconds.
- The profile's type (`__name__`) comes from its sample types: one named `wall` makes it `wall`, one containing
  `cpu` makes it `process_cpu` — so CPU and wall time go as two profiles, the CPU one with Go's sample types
  (`samples/count`, `cpu/nanoseconds`) to be Pyroscope's `process_cpu:cpu:nanoseconds:cpu:nanoseconds`.
- spyName `pyspy`/`rbspy` would make Pyroscope rewrite function names as "file:-1 - name"; obsbox's is `obsbox`.
- Sample labels other than `span_id` become series labels; `span_id` is kept per sample (span profiles).

Failures (connection refused, timeouts, non-2xx) drop the profile and count it (`on_drop`); the first failure of an
outage logs one warning, the recovery one info line. At most MAX_PENDING profiles wait; more are dropped, counted.
"""

from __future__ import annotations

import collections
import http.client
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping

__all__ = ["MAX_PENDING", "PyroscopeSender", "ingest_name"]

_log = logging.getLogger("obsbox")
MAX_PENDING = 4
_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")
_VALUE_STOP = re.compile(r"[,{}\s]")


def ingest_name(service: str, labels: Mapping[str, str]) -> str:
    """The `name` parameter: `service{key=value,...}` with what the ingest parser would misread left out."""
    app = _VALUE_STOP.sub("_", service) or "unknown_service"
    pairs = []
    for key, value in sorted(labels.items()):
        name = _LABEL_NAME.sub("_", key)
        text = _VALUE_STOP.sub("_", str(value))
        if name and text and not name.startswith("__"):
            pairs.append(f"{name}={text}")
    return app + "{" + ",".join(pairs) + "}"


class PyroscopeSender:
    """A background thread posting profiles to `endpoint`/ingest; `offer` never blocks and never raises."""

    def __init__(self, endpoint: str, service: str, labels: Mapping[str, str], *, rate: int = 19,
                 timeout: float = 3.0, on_drop: Callable[[int], None] | None = None,
                 on_sent: Callable[[int], None] | None = None) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        self.endpoint = endpoint
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path.rstrip("/") + "/ingest"
        self._name = ingest_name(service, labels)
        self._rate = rate
        self._timeout = timeout
        self._on_drop = on_drop or (lambda n: None)
        self._on_sent = on_sent or (lambda n: None)
        self._pending: collections.deque[tuple[str, bytes, int, int]] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._failing = False
        self._thread: threading.Thread | None = None
        self.thread_ident: int | None = None
        self.sent = 0
        self.dropped = 0

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="obsbox-profile-sender", daemon=True)
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """Send what is pending (within `timeout` seconds), then end the thread."""
        thread, self._thread = self._thread, None
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if thread is not None:
            thread.join(timeout)

    def after_fork(self) -> None:
        """In a forked child: the parent's pending profiles and thread are not this process's."""
        self._thread = None
        self.thread_ident = None
        self._wake = threading.Condition()
        self._pending.clear()
        self._failing = False

    def offer(self, kind: str, body: bytes, start_ns: int, end_ns: int) -> bool:
        """Queue one profile ("cpu" or "wall"); False when it was dropped because MAX_PENDING are waiting."""
        with self._wake:
            if len(self._pending) >= MAX_PENDING:
                self._drop(1)
                return False
            self._pending.append((kind, body, start_ns, end_ns))
            self._wake.notify()
        return True

    def _drop(self, n: int) -> None:
        self.dropped += n
        try:
            self._on_drop(n)
        except Exception:  # noqa: BLE001
            _log.debug("obsbox: counting a dropped profile failed", exc_info=True)

    def _run(self) -> None:
        self.thread_ident = threading.get_ident()
        while True:
            with self._wake:
                while not self._pending and not self._stopping:
                    self._wake.wait()
                if not self._pending:
                    return
                item = self._pending.popleft()
            self._send(*item)

    def url(self, start_ns: int, end_ns: int) -> str:
        query = urllib.parse.urlencode({
            "name": self._name, "from": start_ns // 1_000_000_000, "until": max(end_ns // 1_000_000_000, 1),
            "format": "pprof", "sampleRate": self._rate, "spyName": "obsbox",
        })
        return f"{self._path}?{query}"

    def _send(self, kind: str, body: bytes, start_ns: int, end_ns: int) -> None:
        connection_type = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        try:
            connection = connection_type(self._host, self._port, timeout=self._timeout)
            try:
                connection.request("POST", self.url(start_ns, end_ns), body=body,
                                   headers={"Content-Type": "application/octet-stream"})
                response = connection.getresponse()
                response.read(64 * 1024)
                if not 200 <= response.status < 300:
                    raise OSError(f"HTTP {response.status}")
            finally:
                connection.close()
        except Exception as err:  # noqa: BLE001 - refused, timed out, refused by the server: drop and count
            self._drop(1)
            if not self._failing:
                self._failing = True
                _log.warning("obsbox: profiles cannot be sent to %s (%s); dropping them and counting them in "
                             "obsbox.export.items{signal=\"profiles\"} until it answers", self.endpoint,
                             type(err).__name__ if not str(err) else err)
            return
        self.sent += 1
        try:
            self._on_sent(1)
        except Exception:  # noqa: BLE001
            _log.debug("obsbox: counting a sent profile failed", exc_info=True)
        if self._failing:
            self._failing = False
            _log.info("obsbox: profiles reach %s again", self.endpoint)
