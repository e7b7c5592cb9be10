"""Graded notification through a real Alertmanager with the box's rendered config: each severity reaches exactly its
receivers, over each integration's own protocol (recording HTTP endpoints stand in for Slack, WeCom and a webhook,
a real SMTP server for e-mail; payloads checked against each integration's documented format), and a maintenance
window mutes the routes it names only while it lasts."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsbox.stack.alertmanager_api import AlertmanagerAPI
from obsbox.stack.render import render_alertmanager_config
from obsbox.stack.tree import stack_root
from tests.alerting._real import (
    Endpoint,
    Mail,
    endpoints,
    needs_alertmanager,
    running_alertmanager,
    smtp_sink,
    wait_until,
)

pytestmark = [pytest.mark.stack, needs_alertmanager]

ROOT = stack_root()
SOURCE = (ROOT / "backends/alertmanager/alertmanager.yml").read_text()
TEMPLATES = ROOT / "backends/alertmanager/templates"
FAST = {"OBSBOX_ALERT_CRITICAL_GROUP_WAIT": "1s", "OBSBOX_ALERT_WARNING_GROUP_WAIT": "1s"}


def alert(name: str, severity: str | None, service: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "service_name": service, **({"severity": severity} if severity else {}),
                   **labels},
        "annotations": {"summary": f"{name} summary.", "description": f"{name} on {service}.",
                        "dashboard_url": f"http://127.0.0.1:3000/d/obsbox-service-detail?var-service_name={service}",
                        "runbook_url": f"https://github.com/obsbox/obsbox/blob/main/alerts/runbooks/{name}.md"},
    }


def names(endpoint: Endpoint) -> list[str]:
    return sorted({a["labels"]["alertname"] for r in endpoint.posts() for a in r.body.get("alerts", [])})


def mail_text(mail: Mail) -> tuple[str, str]:
    """(subject, every decoded text part) of a mail as the SMTP server received it."""
    message = email.message_from_string(mail.data, policy=email.policy.default)
    bodies = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    return str(message["Subject"]), "\n".join(bodies)


@pytest.fixture
def graded(tmp_path: Path) -> Iterator[tuple[str, dict[str, Endpoint], list[Mail]]]:
    with endpoints("slack", "oncall", "wecom", "escalation") as hooks, smtp_sink() as (smarthost, mails):
        env = {
            **FAST,
            "OBSBOX_ALERT_TEAM_SLACK_WEBHOOK_URL": hooks["slack"].url,
            "OBSBOX_ALERT_TEAM_SLACK_CHANNEL": "#team",
            "OBSBOX_ALERT_ONCALL_WEBHOOK_URL": hooks["oncall"].url,
            "OBSBOX_ALERT_ONCALL_EMAIL_TO": "oncall@example.org",
            "OBSBOX_ALERT_ONCALL_EMAIL_FROM": "obsbox@example.org",
            "OBSBOX_ALERT_ONCALL_SMTP_SMARTHOST": smarthost,
            "OBSBOX_ALERT_ONCALL_SMTP_REQUIRE_TLS": "false",
            "OBSBOX_ALERT_INCIDENT_WECHAT_API_URL": hooks["wecom"].url,
            "OBSBOX_ALERT_INCIDENT_WECHAT_CORP_ID": "ww0123",
            "OBSBOX_ALERT_INCIDENT_WECHAT_API_SECRET": "wecom-secret",
            "OBSBOX_ALERT_INCIDENT_WECHAT_AGENT_ID": "1000002",
            "OBSBOX_ALERT_INCIDENT_WECHAT_TO_PARTY": "2",
            "OBSBOX_ALERT_ESCALATION_WEBHOOK_URL": hooks["escalation"].url,
        }
        config = render_alertmanager_config(SOURCE, env, templates_dir=TEMPLATES)
        with running_alertmanager(config, tmp_path) as base:
            yield base, hooks, mails


def test_each_grade_reaches_exactly_its_receivers(graded: tuple[str, dict[str, Endpoint], list[Mail]]) -> None:
    base, hooks, mails = graded
    AlertmanagerAPI(base).post_alerts([
        alert("Watchdog", "info", "box"),
        alert("DiskFilling", None, "db"),
        alert("HTTPServerHighLatency", "warning", "orders"),
        alert("HTTPServerHighErrorRate", "critical", "payments"),
        alert("CriticalAlertEscalated", "critical", "inventory", escalates="HTTPServerHighErrorRate"),
    ])
    wait_until(lambda: hooks["slack"].posts() and hooks["oncall"].posts() and hooks["escalation"].posts()
               and [r for r in hooks["wecom"].posts() if r.path.endswith("/message/send")] and mails,
               30, "every receiver's first notification")
    time.sleep(3)  # group_wait is 1s: anything wrongly routed would arrive within these seconds too
    assert len(hooks["slack"].posts()) == 1  # the warning (its title is checked below)
    assert names(hooks["oncall"]) == ["HTTPServerHighErrorRate"]
    assert names(hooks["escalation"]) == ["CriticalAlertEscalated"]
    assert len(mails) == 1

    # Webhook: Alertmanager's webhook JSON (version 4), the alert with its labels and both links.
    (hook,) = hooks["oncall"].posts()
    assert hook.headers["content-type"].startswith("application/json")
    assert {"version", "groupKey", "status", "receiver", "groupLabels", "commonLabels", "commonAnnotations",
            "externalURL", "alerts"} <= set(hook.body)
    assert (hook.body["version"], hook.body["receiver"], hook.body["status"]) == ("4", "oncall", "firing")
    (notified,) = hook.body["alerts"]
    assert {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"} <= set(notified)
    assert notified["annotations"]["runbook_url"].endswith("/HTTPServerHighErrorRate.md")
    assert notified["annotations"]["dashboard_url"].endswith("var-service_name=payments")

    # Slack: an incoming-webhook message, channel set, one attachment whose title links to the dashboard.
    (slack,) = hooks["slack"].posts()
    assert slack.body["channel"] == "#team"
    (attachment,) = slack.body["attachments"]
    assert attachment["title"] == "[FIRING:1] HTTPServerHighLatency — orders (warning)"
    assert attachment["title_link"] == "http://127.0.0.1:3000/d/obsbox-service-detail?var-service_name=orders"
    assert "Runbook: https://github.com/obsbox/obsbox/blob/main/alerts/runbooks/HTTPServerHighLatency.md" in (
        attachment["text"])

    # WeCom: the token call with corp id and secret, then message/send with that token and a text message.
    gets = [r for r in hooks["wecom"].received if r.body is None]
    assert gets and gets[0].path.endswith("/gettoken")
    assert gets[0].query == {"corpid": "ww0123", "corpsecret": "wecom-secret"}
    (sent,) = [r for r in hooks["wecom"].posts() if r.path.endswith("/message/send")]
    assert sent.query == {"access_token": "token-42"}
    assert {k: sent.body[k] for k in ("toparty", "agentid", "msgtype", "safe")} == {
        "toparty": "2", "agentid": "1000002", "msgtype": "text", "safe": "0"}
    content = sent.body["text"]["content"]
    assert content.startswith("[FIRING:1] HTTPServerHighErrorRate — payments (critical)")
    assert "Dashboard: http://127.0.0.1:3000/d/obsbox-service-detail?var-service_name=payments" in content
    assert "Runbook: https://github.com/obsbox/obsbox/blob/main/alerts/runbooks/HTTPServerHighErrorRate.md" in content

    # E-mail: over SMTP to the on-call address, subject from the title, both links in the text and HTML parts.
    (mail,) = mails
    assert mail.sender == "obsbox@example.org" and mail.recipients == ["oncall@example.org"]
    subject, body = mail_text(mail)
    assert subject == "[FIRING:1] HTTPServerHighErrorRate — payments (critical)"
    assert '<a href="http://127.0.0.1:3000/d/obsbox-service-detail?var-service_name=payments">Dashboard</a>' in body
    assert "Runbook: https://github.com/obsbox/obsbox/blob/main/alerts/runbooks/HTTPServerHighErrorRate.md" in body


def _muting_run(tmp_path: Path, window: str, *, muted: bool) -> tuple[list[str], list[str]]:
    """Fire a warning and a critical alert with `window` muting the team route; what (team, oncall) heard."""
    with endpoints("team", "oncall") as hooks:
        env = {**FAST, "OBSBOX_ALERT_TEAM_WEBHOOK_URL": hooks["team"].url,
               "OBSBOX_ALERT_ONCALL_WEBHOOK_URL": hooks["oncall"].url,
               "OBSBOX_ALERT_MAINTENANCE": window, "OBSBOX_ALERT_MAINTENANCE_RECEIVERS": "team"}
        config = yaml.safe_load(render_alertmanager_config(SOURCE, env, templates_dir=TEMPLATES))
        with running_alertmanager(config, tmp_path) as base:
            AlertmanagerAPI(base).post_alerts([alert("HTTPServerHighLatency", "warning", "orders"),
                                               alert("HTTPServerHighErrorRate", "critical", "orders")])
            wait_until(lambda: hooks["oncall"].posts(), 30, "the critical alert's notification")
            # The warning route's group_wait is 1s too: a notification it sends arrives within this wait.
            if muted:
                time.sleep(4)
            else:
                wait_until(lambda: hooks["team"].posts(), 30, "the warning alert's notification")
            return names(hooks["team"]), names(hooks["oncall"])


def test_a_maintenance_window_mutes_its_route_while_it_lasts(tmp_path: Path) -> None:
    team, oncall = _muting_run(tmp_path / "now", "daily", muted=True)
    assert team == [] and oncall == ["HTTPServerHighErrorRate"]
    later = (datetime.now(timezone.utc).hour + 2) % 24  # a window that does not include the present hour
    team, oncall = _muting_run(tmp_path / "later", f"daily {later:02d}:00-{later:02d}:59 UTC", muted=False)
    assert team == ["HTTPServerHighLatency"] and oncall == ["HTTPServerHighErrorRate"]
