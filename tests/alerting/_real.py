"""Real programs and endpoints for the alerting tests: the box's pinned Alertmanager/Prometheus when the components
build put them in the cache (else Debian's; obsbox.stack.binaries.find_tool), a started Alertmanager, and recording
HTTP/SMTP endpoints that stand in for a webhook, Slack, WeCom and a mail server.
"""

from __future__ import annotations

import json
import socketserver
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsbox.stack.binaries import find_tool
from tests._processes import free_port, stop

ALERTMANAGER = find_tool("alertmanager")
AMTOOL = find_tool("amtool")
PROMTOOL = find_tool("promtool")
needs_alertmanager = pytest.mark.skipif(
    ALERTMANAGER is None, reason="alertmanager missing: scripts/install-system-deps.sh installs Debian's")
needs_amtool = pytest.mark.skipif(AMTOOL is None, reason="amtool missing: scripts/install-system-deps.sh installs it")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/install-system-deps.sh installs Debian's prometheus")


def wait_until(check: Any, timeout: float, what: str, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


@contextmanager
def running_alertmanager(config: dict[str, Any] | str, tmp: Path) -> Iterator[str]:
    """Start the real Alertmanager on 127.0.0.1 with `config`; yields its base URL."""
    assert ALERTMANAGER is not None
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "alertmanager.yml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    log = (tmp / "alertmanager.log").open("w")
    process = subprocess.Popen(
        [str(ALERTMANAGER), f"--config.file={path}", f"--storage.path={tmp / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (tmp / "alertmanager.log").read_text()
        try:
            with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, 30, "alertmanager to start")
        yield base
    finally:
        stop(process)
        log.close()


@dataclass
class Received:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Endpoint:
    """A recording HTTP endpoint on 127.0.0.1: what Alertmanager POSTs (and GETs) to it, answered with `status`."""

    name: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    url: str = ""
    server: ThreadingHTTPServer | None = None

    def posts(self) -> list[Received]:
        return [r for r in self.received if r.body is not None]

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self, body: Any) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            endpoint.received.append(Received(parsed.path, dict(urllib.parse.parse_qsl(parsed.query)),
                                              {k.lower(): v for k, v in self.headers.items()}, body))

        def _answer(self, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(endpoint.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            # WeCom's token call (GET <api_url>gettoken?corpid=..&corpsecret=..), see the wechat tests.
            self._record(None)
            self._answer({"errcode": 0, "errmsg": "ok", "access_token": "token-42", "expires_in": 7200})

        def do_POST(self) -> None:  # noqa: N802
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._record(json.loads(raw) if raw else {})
            self._answer({"errcode": 0, "errmsg": "ok", "ok": True})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
            pass

    return Handler


@contextmanager
def endpoints(*names: str) -> Iterator[dict[str, Endpoint]]:
    made: dict[str, Endpoint] = {}
    try:
        for name in names:
            endpoint = Endpoint(name)
            server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
            threading.Thread(target=server.serve_forever, daemon=True).start()
            endpoint.server = server
            endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/{name}/"
            made[name] = endpoint
        yield made
    finally:
        for endpoint in made.values():
            endpoint.close()


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: str


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321 without extensions) for Alertmanager's plain, unauthenticated delivery."""

    mails: list[Mail]

    def _say(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        self._say("220 obsbox-test ESMTP")
        sender, recipients = "", []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            command = raw.decode(errors="replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self._say("250 obsbox-test")
            elif verb == "MAIL":
                sender = command.partition(":")[2].strip().strip("<>")
                self._say("250 OK")
            elif verb == "RCPT":
                recipients.append(command.partition(":")[2].strip().strip("<>"))
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 end with <CRLF>.<CRLF>")
                lines = []
                while True:
                    line = self.rfile.readline().decode(errors="replace")
                    if line in (".\r\n", ".\n", ""):
                        break
                    lines.append(line[1:] if line.startswith("..") else line)
                self.mails.append(Mail(sender, recipients, "".join(lines)))
                sender, recipients = "", []
                self._say("250 OK queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:  # RSET, NOOP, ...
                self._say("250 OK")


@contextmanager
def smtp_sink() -> Iterator[tuple[str, list[Mail]]]:
    """A real SMTP server on 127.0.0.1; yields ("127.0.0.1:port", the mails it accepted)."""
    mails: list[Mail] = []
    handler = type("Handler", (_SMTPHandler,), {"mails": mails})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", mails
    finally:
        server.shutdown()
        server.server_close()
