"""Fault injection for the sample shop: a client for each service's `/admin/faults` endpoint.

>>> from obsbox.samples import faults
>>> faults.set_faults("http://127.0.0.1:8082", error_rate=0.4)        # doctest: +SKIP
Faults(error_rate=0.4, latency_ms=0.0, jitter_ms=0.0, outage=False)
>>> faults.set_faults("payments", latency_ms=200, jitter_ms=50)       # doctest: +SKIP
>>> faults.reset_faults("payments")                                   # doctest: +SKIP
>>> faults.set_faults("inventory", slow_query_ms=1500)               # doctest: +SKIP

`slow_query_ms` is for inventory, the service with a database: each reservation also runs a query that takes that
long in the database (SQLite or PostgreSQL), so the database span, the slow-operation log line and the
dependency latency panels and alerts have something to show.

A target is a base URL or the name of a sample service (then its default local port is used). Every setting is
checked before anything is sent, and the service checks again: bad input raises ValueError and changes nothing.
A PUT merges: settings left out keep their current value, so faults can be layered one command at a time.
Injected errors and outages answer 503; `/admin/faults` and `/metrics` are never affected.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from obsbox.samples._services import SERVICES

ADMIN_PATH = "/admin/faults"
FIELDS = ("error_rate", "latency_ms", "jitter_ms", "outage", "slow_query_ms")
# The services that keep data in a database, where a slow query can be injected.
DATABASE_SERVICES = ("inventory",)
_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Faults:
    """The faults in force in one service."""

    error_rate: float = 0.0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    outage: bool = False
    slow_query_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return (self.outage or self.error_rate > 0 or self.latency_ms > 0 or self.jitter_ms > 0
                or self.slow_query_ms > 0)


def _number(name: str, value: object) -> float:
    # bool is an int in Python; `error_rate=True` is a mistake, not 1.0.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def validate(
    *,
    error_rate: object = None,
    latency_ms: object = None,
    jitter_ms: object = None,
    outage: object = None,
    slow_query_ms: object = None,
    service: str | None = None,
) -> dict[str, Any]:
    """Check fault settings; return the ones given (None means "leave as is"), normalised.

    >>> validate(error_rate=0.25, outage=False)
    {'error_rate': 0.25, 'outage': False}
    >>> validate(error_rate=1.5)
    Traceback (most recent call last):
    ...
    ValueError: error_rate must be between 0 and 1 (a fraction of requests), got 1.5
    """
    if service is not None and service not in SERVICES:
        raise ValueError(f"unknown sample service {service!r}; the services are: {', '.join(SERVICES)}")
    changes: dict[str, Any] = {}
    if error_rate is not None:
        rate = _number("error_rate", error_rate)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1 (a fraction of requests), got {error_rate!r}")
        changes["error_rate"] = rate
    for name, value in (("latency_ms", latency_ms), ("jitter_ms", jitter_ms), ("slow_query_ms", slow_query_ms)):
        if value is not None:
            ms = _number(name, value)
            if ms < 0:
                raise ValueError(f"{name} must be zero or more milliseconds, got {value!r}")
            if ms > 60_000:
                raise ValueError(f"{name} must be at most 60000 ms (one minute), got {value!r}")
            changes[name] = ms
    if outage is not None:
        if not isinstance(outage, bool):
            raise ValueError(f"outage must be true or false, got {outage!r}")
        changes["outage"] = outage
    if changes.get("slow_query_ms") and service is not None and service not in DATABASE_SERVICES:
        raise ValueError(f"slow_query_ms needs a database: only {', '.join(DATABASE_SERVICES)} has one, not {service}")
    return changes


def validate_body(body: Mapping[str, Any], service: str | None = None) -> dict[str, Any]:
    """Check a PUT body as the services receive it: known keys only, then `validate`."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ValueError(f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}")
    return validate(**{k: body[k] for k in FIELDS if k in body}, service=service)


def base_url(target: str) -> str:
    """A base URL as given, or the default local URL of a sample service named `target`."""
    if target.startswith(("http://", "https://")):
        return target.rstrip("/")
    if target not in SERVICES:
        raise ValueError(
            f"unknown sample service {target!r}; give one of {', '.join(SERVICES)} or a URL such as "
            "http://127.0.0.1:8082"
        )
    return f"http://127.0.0.1:{SERVICES[target].default_port}"


def _request(method: str, target: str, body: dict[str, Any] | None = None) -> Faults:
    url = base_url(target) + ADMIN_PATH
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError, AttributeError):  # not JSON: keep the text as it is
            detail = json.loads(detail).get("error", detail)
        if exc.code == 400:
            raise ValueError(detail) from None
        if exc.code == 403:
            raise PermissionError(f"{url}: {detail}") from None
        raise ConnectionError(f"{method} {url} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(f"no sample service answers at {url} ({reason}); is the shop running?") from None
    return Faults(**{k: payload[k] for k in FIELDS})


def get_faults(target: str) -> Faults:
    """The faults in force at `target` (a base URL or a sample service name)."""
    return _request("GET", target)


def set_faults(
    target: str,
    *,
    error_rate: float | None = None,
    latency_ms: float | None = None,
    jitter_ms: float | None = None,
    outage: bool | None = None,
    slow_query_ms: float | None = None,
) -> Faults:
    """Change some faults at `target`; the others keep their value. Returns the faults now in force."""
    changes = validate(error_rate=error_rate, latency_ms=latency_ms, jitter_ms=jitter_ms, outage=outage,
                       slow_query_ms=slow_query_ms)
    base_url(target)  # an unknown service name fails here, before anything is sent
    return _request("PUT", target, changes)


def reset_faults(target: str) -> Faults:
    """Remove every fault at `target`. Returns the (cleared) faults now in force."""
    return _request("DELETE", target)


def chaos(service: str, *, base: str | None = None, error_rate: float | None = None,
          latency_ms: float | None = None, jitter_ms: float | None = None, outage: bool | None = None,
          slow_query_ms: float | None = None, reset: bool = False) -> dict[str, object]:
    """Set (or with `reset` clear) faults in a sample service at `base` (default: its usual local address);
    returns the faults now in force. Bad input raises UsageError before anything is sent."""
    from obsbox.stack.errors import NotRunningError, UsageError

    if service not in SERVICES:
        raise UsageError(f"unknown sample service {service!r}", "the services are: " + ", ".join(SERVICES))
    given = any(v is not None for v in (error_rate, latency_ms, jitter_ms, outage, slow_query_ms))
    if reset and given:
        raise UsageError("--reset clears every fault; give it alone", "e.g. `obsbox chaos payments --reset`")
    if not reset and not given:
        raise UsageError("say which fault to inject",
                         "e.g. `obsbox chaos payments --error-rate 0.5`, `--latency-ms 300`, `--outage` or `--reset`")
    try:
        validate(error_rate=error_rate, latency_ms=latency_ms, jitter_ms=jitter_ms, outage=outage,
                 slow_query_ms=slow_query_ms, service=service)
    except ValueError as e:
        raise UsageError(str(e), "see `obsbox chaos --help`") from None
    target = base or base_url(service)
    try:
        now = reset_faults(target) if reset else set_faults(
            target, error_rate=error_rate, latency_ms=latency_ms, jitter_ms=jitter_ms, outage=outage,
            slow_query_ms=slow_query_ms)
    except ValueError as e:
        raise UsageError(str(e), "see `obsbox chaos --help`") from None
    except (ConnectionError, PermissionError) as e:
        raise NotRunningError(str(e), "start the sample shop with `obsbox up --samples` (or `obsbox demo`)") from None
    return dict(now.to_json())
