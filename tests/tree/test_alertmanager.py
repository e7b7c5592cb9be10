"""backends/alertmanager/: routing by severity, inhibition, notifications switched on from the environment,
messages that link to the dashboard and the runbook — checked with the real amtool and Alertmanager (the box's pinned build when cached, else Debian's)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import yaml

from obsbox.stack.render import NOTIFICATION_VARIABLES, render_alertmanager_config
from obsbox.stack.tree import stack_root
from tests._processes import free_port, stop
from tests.alerting._real import ALERTMANAGER, AMTOOL, needs_amtool

ROOT = stack_root()
SOURCE = (ROOT / "backends/alertmanager/alertmanager.yml").read_text()
TEMPLATES = ROOT / "backends/alertmanager/templates"
EVERY_CHANNEL = {
    "OBSBOX_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
    "OBSBOX_ALERT_SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/x",
    "OBSBOX_ALERT_SLACK_CHANNEL": "#alerts",
    "OBSBOX_ALERT_EMAIL_TO": "oncall@example.org",
    "OBSBOX_ALERT_EMAIL_FROM": "obsbox@example.org",
    "OBSBOX_ALERT_SMTP_SMARTHOST": "smtp.example.org:587",
    "OBSBOX_ALERT_SMTP_USERNAME": "obsbox",
    "OBSBOX_ALERT_SMTP_PASSWORD": "secret",
    "OBSBOX_ALERT_WECHAT_CORP_ID": "ww0123",
    "OBSBOX_ALERT_WECHAT_API_SECRET": "wecom-secret",
    "OBSBOX_ALERT_WECHAT_AGENT_ID": "1000002",
    "OBSBOX_ALERT_WECHAT_TO_PARTY": "2",
}
# The graded set-up docs/stack.md describes: one channel per receiver.
GRADED = {
    "OBSBOX_ALERT_TEAM_SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/team",
    "OBSBOX_ALERT_TEAM_SLACK_CHANNEL": "#team",
    "OBSBOX_ALERT_ONCALL_WEBHOOK_URL": "http://127.0.0.1:9/oncall",
    "OBSBOX_ALERT_ONCALL_EMAIL_TO": "oncall@example.org",
    "OBSBOX_ALERT_ONCALL_EMAIL_FROM": "obsbox@example.org",
    "OBSBOX_ALERT_ONCALL_SMTP_SMARTHOST": "smtp.example.org:587",
    "OBSBOX_ALERT_INCIDENT_WECHAT_CORP_ID": "ww0123",
    "OBSBOX_ALERT_INCIDENT_WECHAT_API_SECRET": "wecom-secret",
    "OBSBOX_ALERT_INCIDENT_WECHAT_AGENT_ID": "1000002",
    "OBSBOX_ALERT_INCIDENT_WECHAT_TO_PARTY": "2",
    "OBSBOX_ALERT_ESCALATION_WEBHOOK_URL": "http://127.0.0.1:9/escalation",
}


def write(tmp_path: Path, env: dict[str, str], name: str = "alertmanager.yml") -> Path:
    path = tmp_path / name
    path.write_text(render_alertmanager_config(SOURCE, env, templates_dir=TEMPLATES))
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AMTOOL), *args], capture_output=True, text=True, timeout=60)


def test_routes_by_severity_and_groups_by_alert_and_service() -> None:
    route = yaml.safe_load(SOURCE)["route"]
    assert route["receiver"] == "blackhole"
    assert route["group_by"] == ["alertname", "service_name"]
    routes = [(tuple(r["matchers"]), r["receiver"], r.get("continue", False)) for r in route["routes"]]
    assert routes == [
        (('alertname="CriticalAlertEscalated"',), "escalation", False),
        (('severity="critical"',), "oncall", True),   # continue: the incident channel hears it too
        (('severity="critical"',), "incident", False),
        (('severity="warning"',), "team", False),
        (('severity="info"',), "blackhole", False),
    ]


def test_critical_inhibits_warning_for_the_same_alert_and_service() -> None:
    assert yaml.safe_load(SOURCE)["inhibit_rules"] == [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["alertname", "service_name"],
        }
    ]


def test_shipped_receivers_notify_nobody() -> None:
    """The harmless default: no integration, no secret, nothing leaves the machine until switched on."""
    receivers = yaml.safe_load(SOURCE)["receivers"]
    assert receivers == [{"name": n} for n in ("blackhole", "team", "oncall", "incident", "escalation")]
    assert yaml.safe_load(render_alertmanager_config(SOURCE, {}))["receivers"] == receivers


def test_environment_switches_on_every_channel_for_every_notifying_receiver() -> None:
    receivers = {r["name"]: r for r in yaml.safe_load(render_alertmanager_config(SOURCE, EVERY_CHANNEL))["receivers"]}
    assert receivers["blackhole"] == {"name": "blackhole"}
    for name in ("team", "oncall", "incident", "escalation"):
        receiver = receivers[name]
        assert receiver["webhook_configs"] == [{"url": "http://127.0.0.1:9/hook", "send_resolved": True}]
        slack = receiver["slack_configs"][0]
        assert slack["channel"] == "#alerts" and slack["text"] == '{{ template "obsbox.text" . }}'
        email = receiver["email_configs"][0]
        assert email["to"] == "oncall@example.org" and email["smarthost"] == "smtp.example.org:587"
        assert email["html"] == '{{ template "obsbox.email.html" . }}' and email["require_tls"] is True
        wechat = receiver["wechat_configs"][0]
        assert (wechat["corp_id"], wechat["agent_id"], wechat["to_party"]) == ("ww0123", "1000002", "2")
    only_oncall = yaml.safe_load(
        render_alertmanager_config(SOURCE, {**EVERY_CHANNEL, "OBSBOX_ALERT_RECEIVERS": "oncall"})
    )
    assert [r["name"] for r in only_oncall["receivers"] if len(r) > 1] == ["oncall"]


def test_each_receiver_gets_its_own_channel() -> None:
    """The graded set-up: the team's Slack, the on-call's e-mail, the incident group on WeCom, the escalation
    webhook — each from OBSBOX_ALERT_<RECEIVER>_* settings, none from the others."""
    config = yaml.safe_load(render_alertmanager_config(SOURCE, GRADED))
    channels = {r["name"]: sorted(k for k in r if k != "name") for r in config["receivers"]}
    assert channels == {
        "blackhole": [], "team": ["slack_configs"], "oncall": ["email_configs", "webhook_configs"],
        "incident": ["wechat_configs"], "escalation": ["webhook_configs"],
    }
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["team"]["slack_configs"][0]["channel"] == "#team"
    assert receivers["oncall"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/oncall"
    assert receivers["escalation"]["webhook_configs"][0]["url"] == "http://127.0.0.1:9/escalation"


# Keys of each integration's config as Alertmanager's source declares them (config/notifiers.go: WebhookConfig,
# SlackConfig, EmailConfig, WechatConfig yaml tags; checked against upstream for 0.25 and the 0.34 the box pins).
# Only keys both versions know are used: e.g. wechat's api_secret_file is newer than 0.25.
UPSTREAM_KEYS = {
    "webhook_configs": {"send_resolved", "http_config", "url", "url_file", "max_alerts", "timeout"},
    "slack_configs": {"send_resolved", "http_config", "api_url", "api_url_file", "channel", "username", "color",
                      "title", "title_link", "pretext", "text", "fields", "short_fields", "footer", "fallback",
                      "callback_id", "icon_emoji", "icon_url", "image_url", "thumb_url", "link_names", "mrkdwn_in",
                      "actions"},
    "email_configs": {"send_resolved", "to", "from", "hello", "smarthost", "auth_username", "auth_password",
                      "auth_password_file", "auth_secret", "auth_identity", "headers", "html", "text", "require_tls",
                      "tls_config"},
    "wechat_configs": {"send_resolved", "http_config", "api_secret", "corp_id", "message", "api_url", "to_user",
                       "to_party", "to_tag", "agent_id", "message_type"},
}


def test_rendered_integration_keys_are_alertmanagers_own() -> None:
    receivers = yaml.safe_load(render_alertmanager_config(SOURCE, {**EVERY_CHANNEL, **GRADED}))["receivers"]
    seen = set()
    for receiver in receivers:
        for kind, entries in receiver.items():
            if kind == "name":
                continue
            seen.add(kind)
            for entry in entries:
                assert set(entry) <= UPSTREAM_KEYS[kind], (kind, set(entry) - UPSTREAM_KEYS[kind])
    assert seen == set(UPSTREAM_KEYS)


def test_secrets_come_from_private_files(tmp_path: Path) -> None:
    secret = tmp_path / "slack-url"
    secret.write_text("https://hooks.slack.example/services/T0/B0/from-file\n")
    secret.chmod(0o600)
    env = {"OBSBOX_ALERT_TEAM_SLACK_WEBHOOK_URL_FILE": str(secret)}
    (team,) = [r for r in yaml.safe_load(render_alertmanager_config(SOURCE, env))["receivers"] if r["name"] == "team"]
    assert team["slack_configs"][0]["api_url"] == "https://hooks.slack.example/services/T0/B0/from-file"
    secret.chmod(0o644)
    with pytest.raises(ValueError, match="OBSBOX_ALERT_TEAM_SLACK_WEBHOOK_URL_FILE: .* readable by others.*chmod 600"):
        render_alertmanager_config(SOURCE, env)
    with pytest.raises(ValueError, match="cannot read"):
        render_alertmanager_config(SOURCE, {**{k: v for k, v in EVERY_CHANNEL.items() if "PASSWORD" not in k},
                                            "OBSBOX_ALERT_SMTP_PASSWORD_FILE": str(tmp_path / "absent")})
    both = {**env, "OBSBOX_ALERT_TEAM_SLACK_WEBHOOK_URL": "https://x.example/y"}
    secret.chmod(0o400)
    with pytest.raises(ValueError, match="both set"):
        render_alertmanager_config(SOURCE, both)


def test_no_shipped_file_holds_a_notification_secret() -> None:
    """Secrets only ever come from the environment: no shipped config names an integration or a credential."""
    for path in (ROOT / "backends" / "alertmanager").rglob("*"):
        if path.is_file():
            text = path.read_text()
            for key in ("api_url:", "api_secret:", "auth_password:", "webhook_configs", "hooks.slack.com"):
                assert key not in text, (path, key)


def test_intervals_per_grade() -> None:
    env = {"OBSBOX_ALERT_CRITICAL_GROUP_WAIT": "1s", "OBSBOX_ALERT_CRITICAL_REPEAT_INTERVAL": "15m",
           "OBSBOX_ALERT_WARNING_GROUP_INTERVAL": "10m"}
    routes = {r["receiver"]: r for r in yaml.safe_load(render_alertmanager_config(SOURCE, env))["route"]["routes"]}
    for name in ("oncall", "incident", "escalation"):
        assert (routes[name]["group_wait"], routes[name]["group_interval"], routes[name]["repeat_interval"]) == (
            "1s", "1m", "15m")
    assert (routes["team"]["group_wait"], routes["team"]["group_interval"], routes["team"]["repeat_interval"]) == (
        "30s", "10m", "4h")


def test_maintenance_windows_become_a_time_interval_that_mutes_the_notifying_routes() -> None:
    env = {"OBSBOX_ALERT_MAINTENANCE": "sat,sun 02:00-04:00 Europe/Berlin; daily 12:00-12:15; mon-fri"}
    config = yaml.safe_load(render_alertmanager_config(SOURCE, env))
    assert config["time_intervals"] == [{"name": "maintenance", "time_intervals": [
        {"weekdays": ["saturday", "sunday"], "times": [{"start_time": "02:00", "end_time": "04:00"}],
         "location": "Europe/Berlin"},
        {"times": [{"start_time": "12:00", "end_time": "12:15"}]},
        {"weekdays": ["monday:friday"]},
    ]}]
    muted = {r["receiver"]: r.get("mute_time_intervals") for r in config["route"]["routes"]}
    assert muted == {"escalation": ["maintenance"], "oncall": ["maintenance"], "incident": ["maintenance"],
                     "team": ["maintenance"], "blackhole": None}
    only_team = yaml.safe_load(render_alertmanager_config(
        SOURCE, {**env, "OBSBOX_ALERT_MAINTENANCE_RECEIVERS": "team"}))
    assert [r["receiver"] for r in only_team["route"]["routes"] if r.get("mute_time_intervals")] == ["team"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OBSBOX_ALERT_EMAIL_TO": "a@b.org"}, "OBSBOX_ALERT_EMAIL_FROM and OBSBOX_ALERT_SMTP_SMARTHOST"),
        ({"OBSBOX_ALERT_WEBHOOK_URL": "hooks.example.org/x"}, "OBSBOX_ALERT_WEBHOOK_URL must be an http"),
        ({"OBSBOX_ALERT_TEAM_WEBHOOK_URL": "hooks.example.org/x"}, "OBSBOX_ALERT_TEAM_WEBHOOK_URL must be an http"),
        ({**EVERY_CHANNEL, "OBSBOX_ALERT_SMTP_SMARTHOST": "smtp"}, "host:port"),
        ({**EVERY_CHANNEL, "OBSBOX_ALERT_SMTP_REQUIRE_TLS": "yes"}, "true or false"),
        ({"OBSBOX_ALERT_WECHAT_CORP_ID": "ww1"}, "OBSBOX_ALERT_WECHAT_API_SECRET and OBSBOX_ALERT_WECHAT_AGENT_ID"),
        ({"OBSBOX_ALERT_INCIDENT_WECHAT_CORP_ID": "ww1", "OBSBOX_ALERT_INCIDENT_WECHAT_API_SECRET": "s",
          "OBSBOX_ALERT_INCIDENT_WECHAT_AGENT_ID": "1"}, "says who hears it"),
        ({"OBSBOX_ALERT_RECEIVERS": "pager"}, "pager"),
        ({"OBSBOX_ALERT_RECEIVERS": ","}, "empty"),
        ({"OBSBOX_ALERT_SLAK_WEBHOOK_URL": "https://x.example/y"}, "OBSBOX_ALERT_SLAK_WEBHOOK_URL: no such"),
        ({"OBSBOX_ALERT_PAGER_WEBHOOK_URL": "https://x.example/y"}, "OBSBOX_ALERT_PAGER_WEBHOOK_URL: no such"),
        ({"OBSBOX_ALERT_CRITICAL_GROUP_WAIT": "soon"}, "OBSBOX_ALERT_CRITICAL_GROUP_WAIT must be a duration"),
        ({"OBSBOX_ALERT_MAINTENANCE": "sat 04:00-02:00"}, "not a time range"),
        ({"OBSBOX_ALERT_MAINTENANCE": "someday 01:00-02:00"}, "'someday' .* is not a weekday"),
        ({"OBSBOX_ALERT_MAINTENANCE": "Europe/Berlin"}, "names no days and no times"),
        ({"OBSBOX_ALERT_MAINTENANCE": "daily", "OBSBOX_ALERT_MAINTENANCE_RECEIVERS": "blackhole"}, "blackhole"),
    ],
)
def test_incomplete_or_malformed_settings_say_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_alertmanager_config(SOURCE, env)


def test_every_variable_read_is_documented() -> None:
    docs = (ROOT / "docs/stack.md").read_text()
    for name in NOTIFICATION_VARIABLES:
        assert f"`{name}`" in docs, name


@needs_amtool
@pytest.mark.parametrize(
    "env",
    [{}, EVERY_CHANNEL, GRADED,
     {**GRADED, "OBSBOX_ALERT_CRITICAL_GROUP_WAIT": "1s", "OBSBOX_ALERT_WARNING_REPEAT_INTERVAL": "30m",
      "OBSBOX_ALERT_MAINTENANCE": "sat,sun 02:00-04:00 Europe/Berlin; daily 12:00-12:15; mon-fri 23:00-24:00"}],
    ids=["shipped", "every-channel", "graded", "graded-intervals-maintenance"],
)
def test_amtool_check_config(tmp_path: Path, env: dict[str, str]) -> None:
    result = amtool("check-config", str(write(tmp_path, env)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert " - 1 templates" in result.stdout and "SUCCESS" in result.stdout


@needs_amtool
def test_amtool_check_config_also_takes_the_file_as_shipped() -> None:
    """What the container loads (template path /etc/alertmanager/templates, absent here) is valid too."""
    result = amtool("check-config", str(ROOT / "backends/alertmanager/alertmanager.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_amtool
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=HTTPServerHighErrorRate", "service_name=orders"], "oncall,incident"),
        (["severity=warning", "alertname=HTTPServerHighLatency", "service_name=orders"], "team"),
        (["severity=critical", "alertname=CriticalAlertEscalated", "escalates=HTTPServerHighErrorRate"], "escalation"),
        (["severity=info", "alertname=Watchdog"], "blackhole"),
        (["alertname=Unlabelled"], "blackhole"),
    ],
)
def test_amtool_routes(tmp_path: Path, labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={write(tmp_path, EVERY_CHANNEL)}", *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


@needs_amtool
def test_messages_link_to_dashboard_and_runbook(tmp_path: Path) -> None:
    alert = {
        "status": "firing",
        "labels": {"alertname": "HTTPServerHighErrorRate", "service_name": "orders", "severity": "critical"},
        "annotations": {
            "summary": "orders answers too many requests with errors.",
            "description": "12% of requests failed over 5m.",
            "dashboard_url": "http://127.0.0.1:3000/d/obsbox-service?var-service_name=orders",
            "runbook_url": "https://example.org/runbooks/http-error-rate.md",
        },
        "startsAt": "2026-01-01T00:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": "0",
    }
    data = {
        "receiver": "oncall",
        "status": "firing",
        "alerts": [alert],
        "groupLabels": {"alertname": "HTTPServerHighErrorRate", "service_name": "orders"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://127.0.0.1:9093",
    }
    (tmp_path / "data.json").write_text(json.dumps(data))
    outputs = {}
    for template, kind in (("obsbox.title", "text"), ("obsbox.text", "text"), ("obsbox.email.html", "html")):
        result = amtool(
            "template",
            "render",
            f"--template.glob={TEMPLATES}/*.tmpl",
            f"--template.text={{{{ template \"{template}\" . }}}}",
            f"--template.type={kind}",
            f"--template.data={tmp_path / 'data.json'}",
        )
        assert result.returncode == 0, result.stderr
        outputs[template] = result.stdout
    assert outputs["obsbox.title"].strip() == "[FIRING:1] HTTPServerHighErrorRate — orders (critical)"
    for template in ("obsbox.text", "obsbox.email.html"):
        assert "var-service_name=orders" in outputs[template]
        assert "runbooks/http-error-rate.md" in outputs[template]
        assert "12% of requests failed" in outputs[template]
    assert '<a href="http://127.0.0.1:3000/d/obsbox-service?var-service_name=orders">Dashboard</a>' in outputs[
        "obsbox.email.html"
    ]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.stack
@pytest.mark.skipif(ALERTMANAGER is None, reason="alertmanager missing: scripts/install-system-deps.sh installs it")
def test_real_alertmanager_pages_inhibits_and_drops_info(
    tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    """A real Alertmanager with the rendered config: a critical alert reaches the oncall and incident receivers'
    webhook with its dashboard and runbook links; its warning twin is inhibited; an info alert notifies nobody."""
    url, received = webhook
    config = yaml.safe_load(render_alertmanager_config(SOURCE, {"OBSBOX_ALERT_WEBHOOK_URL": url}, templates_dir=TEMPLATES))
    for route in [config["route"], *config["route"]["routes"]]:  # only the waiting is shortened
        route["group_wait"] = "1s"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    assert ALERTMANAGER is not None
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={path}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    annotations = {"dashboard_url": "http://127.0.0.1:3000/d/x", "runbook_url": "https://example.org/rb.md"}
    alerts = [
        {"labels": {"alertname": "HTTPServerHighErrorRate", "service_name": "orders", "severity": sev},
         "annotations": annotations}
        for sev in ("critical", "warning")
    ] + [{"labels": {"alertname": "Watchdog", "severity": "info"}, "annotations": {}}]
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                request = urllib.request.Request(
                    f"{base}/api/v2/alerts",
                    data=json.dumps(alerts).encode(),
                    headers={"Content-Type": "application/json"},
                    method="POST",
                )
                urllib.request.urlopen(request, timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "alertmanager did not start"
                time.sleep(0.3)
        deadline = time.monotonic() + 20
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # room for a wrongly routed warning or info notification to arrive too
        assert sorted(n["receiver"] for n in received) == ["incident", "oncall"]
        for notification in received:
            (notified,) = notification["alerts"]
            assert notified["labels"]["severity"] == "critical" and notified["annotations"] == annotations
    finally:
        stop(process)
