"""How the drill turns Alertmanager's counters and log into per-receiver outcomes (obsbox.alerting.drill), for
Alertmanagers that count per integration type only (0.25) and per receiver; log lines in go-kit (0.25) and slog
(0.26+) logfmt."""

from __future__ import annotations

from pathlib import Path

from obsbox.alerting.drill import _attribute, _logged_errors
from obsbox.stack.alertmanager_api import NotificationCounters

GOKIT = (
    'ts=2026-12-03T10:00:01.000Z caller=notify.go:732 level=warn component=dispatcher receiver=incident '
    'integration=webhook[0] msg="Notify attempt failed, will retry later" attempts=1 '
    'err="Post \\"<redacted>\\": dial tcp 127.0.0.1:9: connect: connection refused"\n'
    'ts=2026-12-03T10:00:11.000Z caller=dispatch.go:353 level=error component=dispatcher '
    'msg="Notify for alerts failed" num_alerts=1 err="incident/webhook[0]: notify retry canceled after 3 attempts: '
    'Post \\"<redacted>\\": dial tcp 127.0.0.1:9: connect: connection refused"\n'
)
SLOG = (
    'time=2026-12-03T10:00:01.000Z level=WARN source=notify.go:866 msg="Notify attempt failed, will retry later" '
    'component=dispatcher receiver=team integration=slack[0] aggrGroup="{}:{alertname=\\"AlertDrill\\"}" '
    'attempts=1 err="unexpected status code 500: 500 Internal Server Error"\n'
)
EXPECTED = [("oncall", "webhook", 0), ("incident", "webhook", 0), ("team", "slack", 0)]


def counters(**values: dict[tuple[str, str], float]) -> NotificationCounters:
    return NotificationCounters(**values)


def test_log_errors_in_both_formats(tmp_path: Path) -> None:
    log = tmp_path / "alertmanager.log"
    log.write_text("old line err=x Notify receiver=oncall integration=webhook[0]\n" + GOKIT + SLOG)
    errors = _logged_errors(log, offset=len("old line err=x Notify receiver=oncall integration=webhook[0]\n"))
    assert errors == {
        ("incident", "webhook[0]"): "notify retry canceled after 3 attempts: Post \"<redacted>\": dial tcp "
                                    "127.0.0.1:9: connect: connection refused",
        ("team", "slack[0]"): "unexpected status code 500: 500 Internal Server Error",
    }


def test_per_type_counters_pending_until_every_integration_answered() -> None:
    delta = counters(requests={("", "webhook"): 1.0, ("", "slack"): 1.0})
    results, pending = _attribute(delta, EXPECTED, {})
    assert [(r.receiver, r.outcome) for r in results] == [("team", "delivered")]
    assert pending == [("oncall", "webhook", 0), ("incident", "webhook", 0)]


def test_per_type_failure_goes_to_the_integration_the_log_names() -> None:
    delta = counters(requests={("", "webhook"): 4.0, ("", "slack"): 1.0}, requests_failed={("", "webhook"): 3.0},
                     failed={("", "webhook"): 1.0})
    errors = {("incident", "webhook[0]"): "connection refused"}
    results, pending = _attribute(delta, EXPECTED, errors)
    assert pending == []
    assert [(r.receiver, r.integration, r.outcome, r.error) for r in results] == [
        ("incident", "webhook[0]", "failed", "connection refused"),
        ("oncall", "webhook[0]", "delivered", None),
        ("team", "slack[0]", "delivered", None),
    ]


def test_per_receiver_counters_need_no_log() -> None:
    delta = counters(requests={("oncall", "webhook"): 1.0, ("incident", "webhook"): 2.0, ("team", "slack"): 1.0},
                     requests_failed={("incident", "webhook"): 2.0}, failed={("incident", "webhook"): 1.0},
                     notifications={("oncall", "webhook"): 1.0})
    results, pending = _attribute(delta, EXPECTED, {})
    assert pending == []
    assert [(r.receiver, r.outcome) for r in results] == [("incident", "failed"), ("oncall", "delivered"),
                                                          ("team", "delivered")]
    assert results[0].error == "Alertmanager counted a failed notification"
