"""`obsbox top`: a terminal view of the box built from the Prometheus and Alertmanager HTTP APIs.

>>> from obsbox.stack.top import sparkline
>>> sparkline([0, 1, 2, 3, 4, 5, 6, 7])
'▁▂▃▄▅▆▇█'

`snapshot()` reads per service request rate, error ratio and p99 (with a rate history for the sparkline), circuit
breakers, worker pools and firing alerts; `render()` turns it into plain text with ANSI colours.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from obsbox.instrumentation.catalogue import CATALOGUE
from obsbox.stack.health import firing_alerts, get_json, prometheus_query
from obsbox.stack.model import Alert

_BARS = "▁▂▃▄▅▆▇█"
_REQ = "http_server_request_duration_seconds"
_RED, _GREEN, _YELLOW, _BOLD, _DIM, _RESET = "\033[31m", "\033[32m", "\033[33m", "\033[1m", "\033[2m", "\033[0m"


def sparkline(values: list[float]) -> str:
    """One block character per value, scaled between the smallest and largest."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return ""
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    return "".join(" " if math.isnan(v) else _BARS[min(7, int((v - low) / span * 7.999))] for v in values)


@dataclass
class ServiceRow:
    name: str
    rps: float = 0.0
    error_ratio: float = 0.0
    p99: float = math.nan
    history: list[float] = field(default_factory=list)


@dataclass
class Breaker:
    service: str
    name: str
    state: str
    rejected_rps: float = 0.0


@dataclass
class Pool:
    service: str
    name: str
    size: float = math.nan
    busy: float = math.nan
    queued: float = math.nan


@dataclass
class Snapshot:
    services: list[ServiceRow] = field(default_factory=list)
    breakers: list[Breaker] = field(default_factory=list)
    pools: list[Pool] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    taken_at: float = field(default_factory=time.time)


def _by(result: list[dict[str, object]], *labels: str) -> dict[tuple[str, ...], float]:
    out = {}
    for item in result:
        metric = item.get("metric") or {}
        value = item.get("value") or [0, "nan"]
        assert isinstance(metric, dict) and isinstance(value, list)
        out[tuple(str(metric.get(label, "")) for label in labels)] = float(value[1])
    return out


def snapshot(prometheus: str, alertmanager: str | None, *, window: str = "1m", history_minutes: int = 10) -> Snapshot:
    """Everything `top` shows, read once."""
    snap = Snapshot()
    try:
        rps = _by(prometheus_query(prometheus, f"sum by (service_name) (rate({_REQ}_count[{window}]))"), "service_name")
        errors = _by(prometheus_query(
            prometheus,
            f'sum by (service_name) (rate({_REQ}_count{{http_response_status_code=~"5.."}}[{window}]))'),
            "service_name")
        p99 = _by(prometheus_query(
            prometheus,
            f"histogram_quantile(0.99, sum by (service_name, le) (rate({_REQ}_bucket[{window}])))"),
            "service_name")
        history = _history(prometheus, f"sum by (service_name) (rate({_REQ}_count[{window}]))", history_minutes)
        for (name,), value in sorted(rps.items()):
            err = errors.get((name,), 0.0)
            snap.services.append(ServiceRow(name, value, err / value if value else 0.0, p99.get((name,), math.nan),
                                            history.get(name, [])))
        state = CATALOGUE["obsbox.circuit_breaker.state"].prometheus_name
        calls = CATALOGUE["obsbox.circuit_breaker.calls"].prometheus_name
        rejected = _by(prometheus_query(
            prometheus, f'sum by (service_name, breaker_name) (rate({calls}{{breaker_outcome="rejected"}}[{window}]))'),
            "service_name", "breaker_name")
        for (svc, name, st), _ in sorted(_by(prometheus_query(prometheus, f"{state} == 1"),
                                             "service_name", "breaker_name", "breaker_state").items()):
            snap.breakers.append(Breaker(svc, name, st, rejected.get((svc, name), 0.0)))
        pools: dict[tuple[str, str], Pool] = {}
        for attr, metric in (("size", "obsbox.pool.size"), ("busy", "obsbox.pool.busy"),
                             ("queued", "obsbox.pool.queue.depth")):
            query = f"sum by (service_name, pool_name) ({CATALOGUE[metric].prometheus_name})"
            for (svc, name), value in _by(prometheus_query(prometheus, query), "service_name", "pool_name").items():
                setattr(pools.setdefault((svc, name), Pool(svc, name)), attr, value)
        snap.pools = [pools[k] for k in sorted(pools)]
    except (OSError, ValueError) as e:
        snap.errors.append(f"prometheus at {prometheus}: {e}")
    snap.alerts, alert_error = firing_alerts(prometheus, alertmanager)
    if alert_error:
        snap.errors.append(alert_error)
    return snap


def _history(prometheus: str, query: str, minutes: int) -> dict[str, list[float]]:
    """Each service's value of `query` at `points` evenly spaced times over the last `minutes` (NaN: no value)."""
    end = int(time.time())
    step = max(5, minutes * 60 // 30)
    start = end - minutes * 60
    points = (end - start) // step + 1
    body = get_json(f"{prometheus}/api/v1/query_range",
                    {"query": query, "start": str(start), "end": str(end), "step": str(step)})
    out: dict[str, list[float]] = {}
    for series in body.get("data", {}).get("result", []):
        name = str(series.get("metric", {}).get("service_name", ""))
        row = [math.nan] * points
        for t, v in series.get("values", []):
            # Prometheus evaluates at start + k*step; place each value by its offset, not by an exact timestamp.
            slot = round((float(t) - start) / step)
            if 0 <= slot < points:
                row[slot] = float(v)
        out[name] = row
    return out


def _fmt_seconds(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def render(snap: Snapshot, *, colour: bool = True, title: str = "") -> str:
    """The screen for one snapshot, as text (ANSI colours unless `colour` is False)."""

    def c(code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if colour else text

    lines = [c(_BOLD, f"obsbox top  {title}  {time.strftime('%H:%M:%S', time.localtime(snap.taken_at))}"), ""]
    lines.append(c(_BOLD, f"{'SERVICE':<16} {'REQ/S':>8} {'ERRORS':>8} {'P99':>9}  RATE (last 10 min)"))
    if not snap.services:
        lines.append(c(_DIM, "  no HTTP traffic seen yet (is the shop running? `obsbox up --samples`)"))
    for row in snap.services:
        err = f"{row.error_ratio * 100:.1f}%"
        err = c(_RED if row.error_ratio >= 0.05 else _GREEN, f"{err:>8}")
        lines.append(f"{row.name:<16} {row.rps:>8.2f} {err} {_fmt_seconds(row.p99):>9}  {sparkline(row.history)}")
    lines += ["", c(_BOLD, "CIRCUIT BREAKERS")]
    if not snap.breakers:
        lines.append(c(_DIM, "  none reported"))
    for b in snap.breakers:
        st = c(_GREEN if b.state == "closed" else (_RED if b.state == "open" else _YELLOW), b.state)
        lines.append(f"  {b.service:<14} {b.name:<20} {st}  rejected {b.rejected_rps:.2f}/s")
    lines += ["", c(_BOLD, "WORKER POOLS")]
    if not snap.pools:
        lines.append(c(_DIM, "  none reported"))
    for p in snap.pools:
        lines.append(f"  {p.service:<14} {p.name:<20} busy {_num(p.busy)}/{_num(p.size)}  queued {_num(p.queued)}")
    # Watchdog always fires (a dead man's switch): its presence means the alert path works, so it is not listed.
    alerts = [a for a in snap.alerts if a.name != "Watchdog"]
    path = "  (alert path working)" if len(alerts) < len(snap.alerts) else ""
    lines += ["", c(_BOLD, "FIRING ALERTS") + c(_DIM, path)]
    if not alerts:
        lines.append(c(_GREEN, "  none"))
    for a in alerts:
        where = a.labels.get("service_name", "")
        lines.append(f"  {c(_RED, a.name)} {where} {a.labels.get('severity', '')} {a.summary or ''}".rstrip())
    for e in snap.errors:
        lines.append(c(_YELLOW, f"! {e}"))
    return "\n".join(lines)


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"
