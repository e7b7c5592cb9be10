"""The alert drill: one synthetic, clearly labelled alert through the running box's real path, and a per-receiver
report of whether it was delivered.

>>> from obsbox.alerting.drill import run
>>> report = run(severity="critical", progress=print)       # doctest: +SKIP
>>> [(r.receiver, r.integration, r.outcome) for r in report.results]   # doctest: +SKIP
[('oncall', 'webhook[0]', 'delivered'), ('incident', 'wechat[0]', 'failed')]

How it travels, and what each step proves:

1. The drill serves ``obsbox_drill{drill_id, severity} 1`` on a short-lived HTTP endpoint of 127.0.0.1 and lists it
   in the file-discovery directory the running Prometheus watches (job ``pull``): Prometheus scrapes it.
2. The shipped rule ``AlertDrill`` (alerts/prometheus/drill.rules.yml) fires on it with ``drill="true"`` and the
   severity asked for: rule evaluation works and Prometheus sends to Alertmanager.
3. Alertmanager routes it like any alert of that severity; its API says to which receivers.
4. For each integration of those receivers the drill waits until Alertmanager counts a successful request
   (``alertmanager_notification_requests_total`` minus ``..._failed_total``) or a final failure
   (``alertmanager_notifications_failed_total``), and reads Alertmanager's log for the error of a failed one.
5. The endpoint goes away, the series goes stale, the alert resolves, and the drill waits (within its timeout) for
   the resolved notifications of the integrations that send them, so that the next drill starts from quiet
   counters.

Alertmanager (0.25 and 0.34 alike) counts notifications per integration type, not per receiver: when two
receivers use the same type (two webhooks), a success is attributed by elimination, with the log naming the
integration that failed. A notification of another alert through the same integration type during the drill
could be counted as the drill's; the drill's own group (alertname AlertDrill) is never merged with another
alert's.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import yaml

from obsbox.stack.alertmanager_api import AlertmanagerAPI, AlertmanagerAPIError, Matcher, NotificationCounters
from obsbox.stack.errors import NotRunningError, StackError, UsageError
from obsbox.stack.health import get_json

__all__ = ["SEVERITIES", "DrillReport", "DrillResult", "run", "run_against"]

SEVERITIES = ("warning", "critical")
DRILL_ALERT = "AlertDrill"
#: The file the drill writes into the Prometheus file-discovery directory (matches its ``*.json`` pattern).
DRILL_SD_FILE = "obsbox-drill.json"
_LOGFMT = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')

Progress = Callable[[str], None]


@dataclass
class DrillResult:
    receiver: str
    integration: str                      # "webhook[0]", "slack[0]", "email[0]", "wechat[0]", ...
    outcome: Literal["delivered", "failed"]
    error: str | None = None


@dataclass
class DrillReport:
    drill_id: str
    severity: str
    receivers: list[str] = field(default_factory=list)        # as Alertmanager routed the drill alert
    silent: list[str] = field(default_factory=list)           # routed receivers with no integration
    results: list[DrillResult] = field(default_factory=list)
    fired_after: float | None = None      # seconds until Prometheus evaluated the rule as firing
    routed_after: float | None = None     # seconds until Alertmanager held the alert
    resolved_after: float | None = None   # seconds from the end of the drill until Alertmanager resolved it
    resolved_notified: list[str] = field(default_factory=list)  # "receiver/integration" that got the resolved one
    error: str | None = None              # the path broke before any receiver (the message says where)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.results) and all(r.outcome == "delivered" for r in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            "drill_id": self.drill_id, "severity": self.severity, "ok": self.ok, "error": self.error,
            "receivers": self.receivers, "silent_receivers": self.silent,
            "results": [{"receiver": r.receiver, "integration": r.integration, "outcome": r.outcome,
                         "error": r.error} for r in self.results],
            "fired_after_seconds": self.fired_after, "routed_after_seconds": self.routed_after,
            "resolved_after_seconds": self.resolved_after, "resolved_notified": self.resolved_notified,
        }


def run(*, severity: str = "critical", timeout: float = 180.0, progress: Progress | None = None) -> DrillReport:
    """Drill the running box (native runtime). UsageError / NotRunningError before anything is changed."""
    from obsbox.stack import engine
    from obsbox.stack.native import NativeRuntime

    if severity not in SEVERITIES:
        raise UsageError(f"unknown severity {severity!r}", f"use one of: {', '.join(SEVERITIES)}")
    runtime = engine.current()
    if runtime is None:
        raise NotRunningError("obsbox is not running, so there is nothing to drill", "start it with `obsbox up`")
    if not isinstance(runtime, NativeRuntime):
        raise UsageError("obsbox drill works with the native runtime only for now",
                         "the drill's endpoint lives on the host, where the containers' Prometheus cannot scrape it")
    urls = runtime.urls()
    status = runtime.status()
    for name in ("prometheus", "alertmanager"):
        component = status.component(name)
        if component is None or component.state not in ("healthy", "running") or name not in urls:
            raise NotRunningError(f"{name} is not running, so the drill has no path to travel",
                                  "start the box with `obsbox up` (`obsbox status` shows what runs)")
    sd_file = runtime.record().sd_file
    if not sd_file:
        raise NotRunningError("the running Prometheus has no file-discovery directory recorded",
                              "restart the box: `obsbox down && obsbox up`")
    logs = dict(runtime.log_files("alertmanager"))
    return run_against(urls["prometheus"], urls["alertmanager"], sd_dir=Path(sd_file).parent, severity=severity,
                       timeout=timeout, alertmanager_log=Path(logs["alertmanager"]) if logs else None,
                       progress=progress)


def run_against(prometheus: str, alertmanager: str, *, sd_dir: Path, severity: str, timeout: float = 180.0,
                alertmanager_log: Path | None = None, progress: Progress | None = None) -> DrillReport:
    """The drill against a given Prometheus (whose file discovery reads ``sd_dir``) and Alertmanager."""
    say = progress or (lambda _m: None)
    api = AlertmanagerAPI(alertmanager)
    _check_rule_loaded(prometheus)
    config = _receiver_integrations(api)
    drill_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)
    report = DrillReport(drill_id, severity)
    matcher = Matcher("drill_id", "=", drill_id)
    before = api.notification_counters()
    log_offset = alertmanager_log.stat().st_size if alertmanager_log and alertmanager_log.exists() else 0
    begin = time.monotonic()
    deadline = begin + timeout
    with _drill_endpoint(drill_id, severity, sd_dir):
        say(f"drill {drill_id}: serving obsbox_drill{{severity=\"{severity}\"}} for Prometheus to scrape")
        alert = _wait_routed(api, prometheus, matcher, drill_id, report, begin, deadline, say)
        expected: list[tuple[str, str, int]] = []
        resolvable: list[tuple[str, str, int]] = []
        if alert is not None:
            report.receivers = sorted(str(r["name"]) for r in alert.get("receivers") or [])
            expected = [(r, kind, i) for r in report.receivers for kind, i, _ in config.get(r, [])]
            resolvable = [(r, kind, i) for r in report.receivers for kind, i, resolved in config.get(r, []) if resolved]
            report.silent = [r for r in report.receivers if not config.get(r)]
            say(f"Alertmanager routed it to {', '.join(report.receivers) or 'no receiver'}")
            if not expected:
                report.error = (f"no receiver of a {severity} alert has an integration "
                                f"({', '.join(report.receivers) or 'none'}): nobody would hear a real one")
            else:
                report.results = _wait_delivered(api, before, expected, alertmanager_log, log_offset, deadline,
                                                 say)
        before_resolved = api.notification_counters()
        log_offset = alertmanager_log.stat().st_size if alertmanager_log and alertmanager_log.exists() else 0
        ended = time.monotonic()
    if report.routed_after is not None:
        report.resolved_after = _wait_resolved(api, matcher, ended, min(60.0, max(timeout / 3, 20.0)))
        say("the drill alert resolved" if report.resolved_after is not None
            else "the drill alert has not resolved yet (it will once Prometheus re-evaluates the rule)")
        delivered = {(r.receiver, r.integration) for r in report.results if r.outcome == "delivered"}
        resolvable = [item for item in resolvable if (item[0], f"{item[1]}[{item[2]}]") in delivered]
        if report.resolved_after is not None and resolvable:
            # Waiting for the resolved notifications leaves the integrations quiet for the next drill, whose
            # counters would otherwise take them for its own.
            say("waiting for the resolved notifications (at the group's next interval)")
            done = _wait_delivered(api, before_resolved, resolvable, alertmanager_log, log_offset,
                                   time.monotonic() + max(timeout - (time.monotonic() - begin), 30.0), say)
            report.resolved_notified = sorted(f"{r.receiver}/{r.integration}" for r in done
                                              if r.outcome == "delivered")
    return report


def _check_rule_loaded(prometheus: str) -> None:
    try:
        groups = get_json(f"{prometheus}/api/v1/rules", {"type": "alert"})["data"]["groups"]
    except (OSError, ValueError, KeyError) as e:
        raise NotRunningError(f"Prometheus at {prometheus} did not answer: {e}", "`obsbox status` shows it") from None
    if not any(rule.get("name") == DRILL_ALERT for g in groups for rule in g.get("rules", [])):
        raise StackError(f"the running Prometheus has no {DRILL_ALERT} rule (alerts/prometheus/drill.rules.yml)",
                         "restart the box with the shipped rules: `obsbox down && obsbox up`")


def _receiver_integrations(api: AlertmanagerAPI) -> dict[str, list[tuple[str, int, bool]]]:
    """receiver -> [(integration, index, send_resolved)] as the running Alertmanager's config defines them."""
    try:
        config = yaml.safe_load(api.config_text()) or {}
    except AlertmanagerAPIError as e:
        raise NotRunningError(str(e), "`obsbox status` shows whether Alertmanager runs") from None
    found: dict[str, list[tuple[str, int, bool]]] = {}
    for receiver in config.get("receivers") or []:
        found[str(receiver["name"])] = [
            # Alertmanager's default: only the webhook sends resolved notifications unless told otherwise.
            (key.removesuffix("_configs"), i, bool(entry.get("send_resolved", key == "webhook_configs")))
            for key, entries in receiver.items() if key.endswith("_configs") for i, entry in enumerate(entries or [])
        ]
    return found


class _Handler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass


@contextmanager
def _drill_endpoint(drill_id: str, severity: str, sd_dir: Path) -> Iterator[str]:
    """Serve the drill series on 127.0.0.1 and list it for Prometheus; both undone on the way out."""
    body = ("# HELP obsbox_drill 1 while `obsbox drill` runs (a synthetic alert, no action needed).\n"
            "# TYPE obsbox_drill gauge\n"
            f'obsbox_drill{{drill_id="{drill_id}",severity="{severity}"}} 1\n').encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("DrillHandler", (_Handler,), {"body": body}))
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="obsbox-drill")
    thread.start()
    target = f"127.0.0.1:{server.server_address[1]}"
    sd_file = sd_dir / DRILL_SD_FILE
    try:
        _write_atomically(sd_file, json.dumps([{"targets": [target]}]))
        yield target
    finally:
        sd_file.unlink(missing_ok=True)
        server.shutdown()
        server.server_close()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _wait_routed(api: AlertmanagerAPI, prometheus: str, matcher: Matcher, drill_id: str, report: DrillReport,
                 begin: float, deadline: float, say: Progress) -> dict[str, Any] | None:
    """Wait until Alertmanager holds the drill alert; on a timeout, report.error says where the path stopped."""
    while time.monotonic() < deadline:
        if report.fired_after is None and _firing_in_prometheus(prometheus, drill_id):
            report.fired_after = time.monotonic() - begin
            say(f"{DRILL_ALERT} fired in Prometheus after {report.fired_after:.1f}s")
        try:
            alerts = api.alerts([matcher])
        except AlertmanagerAPIError:
            alerts = []
        if alerts:
            report.routed_after = time.monotonic() - begin
            if report.fired_after is None:
                report.fired_after = report.routed_after
            say(f"Alertmanager received it after {report.routed_after:.1f}s")
            return alerts[0]
        time.sleep(0.5)
    scraped = _query(prometheus, f'obsbox_drill{{drill_id="{drill_id}"}}')
    if not scraped:
        report.error = ("Prometheus did not scrape the drill endpoint (is the `pull` file-discovery job in "
                        "prometheus.yml?)")
    elif report.fired_after is None:
        report.error = f"Prometheus scraped the drill series but {DRILL_ALERT} did not fire (rule evaluation)"
    else:
        report.error = ("AlertDrill fired in Prometheus but did not reach Alertmanager "
                        "(Prometheus' alerting.alertmanagers, or PrometheusNotificationsFailing)")
    return None


def _firing_in_prometheus(prometheus: str, drill_id: str) -> bool:
    return bool(_query(prometheus, f'ALERTS{{alertname="{DRILL_ALERT}", alertstate="firing", drill_id="{drill_id}"}}'))


def _query(prometheus: str, expr: str) -> list[Any]:
    try:
        return list(get_json(f"{prometheus}/api/v1/query", {"query": expr})["data"]["result"])
    except (OSError, ValueError, KeyError):
        return []


def _wait_delivered(api: AlertmanagerAPI, before: NotificationCounters, expected: list[tuple[str, str, int]],
                    log: Path | None, log_offset: int, deadline: float, say: Progress) -> list[DrillResult]:
    """Poll the counters (and the log) until every expected integration succeeded or finally failed."""
    while True:
        delta = api.notification_counters().since(before)
        errors = _logged_errors(log, log_offset)
        results, pending = _attribute(delta, expected, errors)
        if not pending:
            return results
        if time.monotonic() >= deadline:
            for receiver, kind, index in pending:
                name = f"{kind}[{index}]"
                error = errors.get((receiver, name)) or "no notification was counted before the drill's timeout"
                results.append(DrillResult(receiver, name, "failed", error))
            return sorted(results, key=lambda r: (r.receiver, r.integration))
        time.sleep(0.5)


def _attribute(delta: NotificationCounters, expected: list[tuple[str, str, int]],
               errors: dict[tuple[str, str], str]) -> tuple[list[DrillResult], list[tuple[str, str, int]]]:
    """Which expected integrations delivered, which failed, which are still pending, from counter deltas.

    Counters are keyed by (receiver, integration) on Alertmanagers that label receivers, else by integration
    type alone: the expected integrations sharing a key are resolved together, failures first to those the log
    names.
    """
    per_receiver = delta.per_receiver
    groups: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for item in expected:
        groups.setdefault((item[0] if per_receiver else "", item[1]), []).append(item)
    results: list[DrillResult] = []
    pending: list[tuple[str, str, int]] = []
    for key, members in groups.items():
        delivered = int(delta.delivered(key))
        failed = int(delta.failed.get(key, 0.0))
        if delivered + failed < len(members):
            pending += members
            continue
        # Failures go first to the integrations the log names, then to the rest in order.
        ordered = sorted(members, key=lambda m: (m[0], f"{m[1]}[{m[2]}]") not in errors)
        for position, (receiver, kind, index) in enumerate(ordered):
            name = f"{kind}[{index}]"
            if position < failed:
                results.append(DrillResult(receiver, name, "failed",
                                           errors.get((receiver, name)) or "Alertmanager counted a failed notification"))
            else:
                results.append(DrillResult(receiver, name, "delivered"))
    return sorted(results, key=lambda r: (r.receiver, r.integration)), pending


def _logged_errors(log: Path | None, offset: int) -> dict[tuple[str, str], str]:
    """(receiver, "kind[i]") -> the last notification error Alertmanager logged since ``offset``."""
    if log is None or not log.exists():
        return {}
    with log.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    found: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        if "Notify" not in line or "err=" not in line:
            continue
        fields = {k: _unquote(v) for k, v in _LOGFMT.findall(line)}
        error = fields.get("err", "")
        receiver, integration = fields.get("receiver"), fields.get("integration")
        prefix = re.match(r"([^/\s]+)/(\w+\[\d+\]): (.*)", error)
        if prefix:  # "Notify for alerts failed": err="oncall/webhook[0]: notify retry canceled ...: <cause>"
            receiver, integration, error = prefix[1], prefix[2], prefix[3]
        if receiver and integration:
            found[(receiver, integration)] = error
    return found


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value[1:-1]
    return value


def _wait_resolved(api: AlertmanagerAPI, matcher: Matcher, since: float, limit: float) -> float | None:
    deadline = since + limit
    while time.monotonic() < deadline:
        try:
            if not api.alerts([matcher]):
                return time.monotonic() - since
        except AlertmanagerAPIError:
            pass
        time.sleep(0.5)
    return None
