"""Alertmanager's v2 HTTP API: silences, alerts, the loaded config and the notification counters.

>>> matchers = parse_matchers(['alertname="HTTPServerHighErrorRate"', "service_name=~orders|payments"])
>>> [str(m) for m in matchers]
['alertname="HTTPServerHighErrorRate"', 'service_name=~"orders|payments"']
>>> parse_duration("1h30m")
5400.0
>>> api = AlertmanagerAPI("http://127.0.0.1:9093")
>>> silence_id = api.add_silence(matchers, seconds=7200, comment="deploy", created_by="me")  # doctest: +SKIP

Matchers use Alertmanager's syntax (``name op value``, op one of ``=``, ``!=``, ``=~``, ``!~``, the value plain or
double-quoted) and are checked here, so a typo gets a clear MatcherError before anything is sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "AlertmanagerAPI",
    "AlertmanagerAPIError",
    "Matcher",
    "MatcherError",
    "NotificationCounters",
    "Silence",
    "parse_duration",
    "parse_matcher",
    "parse_matchers",
    "parse_notification_counters",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MATCHER = re.compile(r"\s*(?P<name>[^\s=!~]+)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*")
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


class MatcherError(ValueError):
    """A matcher that is not in Alertmanager's syntax, or a set of them a silence cannot use."""


class AlertmanagerAPIError(OSError):
    """Alertmanager did not answer, or answered with an error; `str()` carries its own message."""


@dataclass(frozen=True)
class Matcher:
    """One label matcher, as Alertmanager's API takes it."""

    name: str
    op: str
    value: str

    @property
    def is_regex(self) -> bool:
        return "~" in self.op

    @property
    def is_equal(self) -> bool:
        return not self.op.startswith("!")

    def matches(self, value: str) -> bool:
        """Whether a label value (``""`` for an absent label) satisfies the matcher."""
        hit = re.fullmatch(self.value, value) is not None if self.is_regex else value == self.value
        return hit == self.is_equal

    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Matcher:
        regex, equal = bool(item.get("isRegex")), bool(item.get("isEqual", True))
        op = ("=~" if regex else "=") if equal else ("!~" if regex else "!=")
        return cls(str(item["name"]), op, str(item["value"]))

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def _unquote(text: str, matcher: str) -> str:
    if not (len(text) >= 2 and text[0] == text[-1] == '"'):
        if '"' in text:
            raise MatcherError(f"{matcher!r}: a value with a double quote must be quoted whole, e.g. name=\"a\\\"b\"")
        return text
    out, body, i = [], text[1:-1], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise MatcherError(f"{matcher!r}: unknown escape in the quoted value")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
            continue
        if char == '"':
            raise MatcherError(f"{matcher!r}: a double quote inside a quoted value must be escaped as \\\"")
        out.append(char)
        i += 1
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """One matcher in Alertmanager's syntax: ``name=value``, ``name!="value"``, ``name=~"re"``, ``name!~re``."""
    match = _MATCHER.fullmatch(text)
    if match is None:
        raise MatcherError(
            f"{text!r} is not a matcher: write NAME=VALUE, NAME!=VALUE, NAME=~REGEX or NAME!~REGEX "
            '(e.g. alertname=HTTPServerHighErrorRate or service_name=~"orders|payments")'
        )
    name, op = match["name"], match["op"]
    if match["value"][:1] in ("=", "~"):
        raise MatcherError(f"{text!r} is not a matcher: one operator only (=, !=, =~ or !~); quote a value that "
                           'starts with "=" or "~"')
    if not _NAME.fullmatch(name):
        raise MatcherError(f"{text!r}: {name!r} is not a label name (letters, digits and _, not starting with a digit)")
    value = _unquote(match["value"], text)
    if "~" in op:
        try:
            re.compile(value)
        except re.error as e:
            raise MatcherError(f"{text!r}: {value!r} is not a regular expression ({e})") from None
    return Matcher(name, op, value)


def parse_matchers(texts: Iterable[str], *, for_silence: bool = True) -> list[Matcher]:
    """Every matcher of ``texts`` (one per item; ``{a="x", b="y"}`` lists are split too).

    With ``for_silence`` (the default) the set must be one Alertmanager accepts for a silence: at least one
    matcher, and at least one that does not match the empty string (else the silence would mute every alert).
    """
    matchers: list[Matcher] = []
    for text in texts:
        stripped = text.strip()
        if stripped.startswith("{") and stripped.endswith("}"):
            matchers += [parse_matcher(part) for part in _split_list(stripped[1:-1], text)]
        else:
            matchers.append(parse_matcher(stripped))
    if for_silence:
        if not matchers:
            raise MatcherError("give at least one matcher, e.g. alertname=HTTPServerHighErrorRate")
        if all(m.matches("") for m in matchers):
            raise MatcherError(
                "these matchers match every alert (each one matches an empty label); add one that names something, "
                "e.g. alertname=... or service_name=..."
            )
    return matchers


def _split_list(body: str, original: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in body:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise MatcherError(f"{original!r}: unterminated quoted value")
    parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def parse_duration(text: str) -> float:
    """Seconds of a Prometheus-style duration (``90s``, ``15m``, ``2h``, ``1h30m``, ``1d``); must be positive."""
    compact = text.strip()
    if not compact or "".join(f"{n}{u}" for n, u in _DURATION.findall(compact)) != compact:
        raise ValueError(f"{text!r} is not a duration: use e.g. 30m, 2h, 1h30m or 1d")
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be longer than zero")
    return float(seconds)


@dataclass
class Silence:
    """A silence as Alertmanager reports it."""

    id: str
    state: str                       # active | pending | expired
    matchers: list[Matcher]
    starts_at: str
    ends_at: str
    created_by: str
    comment: str

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Silence:
        return cls(
            id=str(item["id"]), state=str((item.get("status") or {}).get("state", "?")),
            matchers=[Matcher.from_api(m) for m in item.get("matchers") or []],
            starts_at=str(item.get("startsAt", "")), ends_at=str(item.get("endsAt", "")),
            created_by=str(item.get("createdBy", "")), comment=str(item.get("comment", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "matchers": [str(m) for m in self.matchers],
                "starts_at": self.starts_at, "ends_at": self.ends_at, "created_by": self.created_by,
                "comment": self.comment}


@dataclass
class NotificationCounters:
    """Alertmanager's notification counters, summed per (receiver, integration).

    The receiver is ``""`` where the Alertmanager labels its counters by integration only (0.25 does); the
    ``reason``/``code`` label of failures is summed over.
    """

    notifications: dict[tuple[str, str], float] = field(default_factory=dict)
    failed: dict[tuple[str, str], float] = field(default_factory=dict)
    requests: dict[tuple[str, str], float] = field(default_factory=dict)
    requests_failed: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def per_receiver(self) -> bool:
        return any(receiver for receiver, _ in self.notifications)

    def delivered(self, key: tuple[str, str]) -> float:
        """Requests that succeeded (attempted minus failed), the figure that says a receiver accepted a message."""
        return self.requests.get(key, 0.0) - self.requests_failed.get(key, 0.0)

    def since(self, before: NotificationCounters) -> NotificationCounters:
        def delta(now: dict[tuple[str, str], float], then: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
            return {k: v - then.get(k, 0.0) for k, v in now.items()}

        return NotificationCounters(delta(self.notifications, before.notifications), delta(self.failed, before.failed),
                                    delta(self.requests, before.requests),
                                    delta(self.requests_failed, before.requests_failed))


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_COUNTERS = {
    "alertmanager_notifications_total": "notifications",
    "alertmanager_notifications_failed_total": "failed",
    "alertmanager_notification_requests_total": "requests",
    "alertmanager_notification_requests_failed_total": "requests_failed",
}


def parse_notification_counters(text: str) -> NotificationCounters:
    """The notification counters out of Alertmanager's /metrics text."""
    counters = NotificationCounters()
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] not in _COUNTERS:
            continue
        labels: dict[str, str] = dict(_LABEL.findall(match["labels"] or ""))
        key = (labels.get("receiver_name") or labels.get("receiver") or "", labels.get("integration") or "")
        target: dict[tuple[str, str], float] = getattr(counters, _COUNTERS[match["name"]])
        target[key] = target.get(key, 0.0) + float(match["value"])
    return counters


class AlertmanagerAPI:
    """A small client of one Alertmanager's v2 API (standard library only)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, params: Sequence[tuple[str, str]] = ()) -> Any:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(list(params))
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method,
                                         headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace").strip()
            with contextlib.suppress(ValueError):
                detail = str(json.loads(detail).get("message", detail)) if detail.startswith("{") else detail
            raise AlertmanagerAPIError(f"Alertmanager answered {e.code} to {method} {path}: {detail or e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise AlertmanagerAPIError(f"Alertmanager at {self.base_url} did not answer: {reason}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    # --- silences -------------------------------------------------------------------------------------------------

    def add_silence(self, matchers: Sequence[Matcher], *, seconds: float, comment: str, created_by: str,
                    starts_at: datetime | None = None) -> str:
        """Create a silence from now (or ``starts_at``) for ``seconds``; returns its id."""
        start = starts_at or datetime.now(timezone.utc)
        body = {
            "matchers": [m.to_api() for m in matchers],
            "startsAt": _iso(start), "endsAt": _iso(start + timedelta(seconds=seconds)),
            "createdBy": created_by, "comment": comment,
        }
        answer = self._call("POST", "/api/v2/silences", body)
        if not isinstance(answer, dict) or "silenceID" not in answer:
            raise self._unexpected("POST /api/v2/silences", answer)
        return str(answer["silenceID"])

    def silences(self, *, states: Iterable[str] = ("active", "pending")) -> list[Silence]:
        """Silences in the given states (newest end last); ``states=()`` gives every one, expired included."""
        wanted = set(states)
        answer = self._call("GET", "/api/v2/silences") or []
        if not isinstance(answer, list) or not all(isinstance(i, dict) and "id" in i for i in answer):
            raise self._unexpected("GET /api/v2/silences", answer)
        try:
            found = [Silence.from_api(item) for item in answer]
        except (TypeError, KeyError, AttributeError, ValueError):
            raise self._unexpected("GET /api/v2/silences", answer) from None
        return sorted((s for s in found if not wanted or s.state in wanted), key=lambda s: (s.ends_at, s.id))

    def expire_silence(self, silence_id: str) -> None:
        self._call("DELETE", f"/api/v2/silence/{urllib.parse.quote(silence_id, safe='')}")

    # --- alerts, config, metrics ----------------------------------------------------------------------------------

    def alerts(self, matchers: Sequence[Matcher] = (), *, active: bool = True, silenced: bool = True,
               inhibited: bool = True) -> list[dict[str, Any]]:
        params = [("active", str(active).lower()), ("silenced", str(silenced).lower()),
                  ("inhibited", str(inhibited).lower())] + [("filter", str(m)) for m in matchers]
        answer = self._call("GET", "/api/v2/alerts", params=params)
        if not isinstance(answer, list | None) or not all(isinstance(a, dict) for a in answer or []):
            raise self._unexpected("GET /api/v2/alerts", answer)
        return list(answer or [])

    def post_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        self._call("POST", "/api/v2/alerts", list(alerts))

    def config_text(self) -> str:
        """The YAML of the configuration Alertmanager runs (secrets shown as <secret>)."""
        answer = self._call("GET", "/api/v2/status")
        config = answer.get("config") if isinstance(answer, dict) else None
        if not isinstance(config, dict):
            raise self._unexpected("GET /api/v2/status", answer)
        return str(config.get("original", ""))

    def notification_counters(self) -> NotificationCounters:
        return parse_notification_counters(str(self._call("GET", "/metrics") or ""))

    def _unexpected(self, call: str, answer: Any) -> AlertmanagerAPIError:
        shown = repr(answer)
        return AlertmanagerAPIError(f"{self.base_url} answered {call} with something that is not Alertmanager's "
                                    f"v2 API: {shown[:80]}{'...' if len(shown) > 80 else ''}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
