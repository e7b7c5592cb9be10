"""backends/alertmanager/: routing by severity, inhibition, notifications switched on from the environment,
messages that link to the dashboard and the runbook — checked with Debian's real amtool and Alertmanager 0.25."""

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

from obsbox.stack.binaries import find_tool as _tool
from obsbox.stack.render import NOTIFICATION_VARIABLES, render_alertmanager_config
from obsbox.stack.tree import stack_root
from tests._processes import free_port, stop

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
}
ALERTMANAGER = _tool("alertmanager")
needs_amtool = pytest.mark.skipif(
    _tool("amtool") is None, reason="amtool missing: scripts/install-system-deps.sh installs it"
)


def write(tmp_path: Path, env: dict[str, str], name: str = "alertmanager.yml") -> Path:
    path = tmp_path / name
    path.write_text(render_alertmanager_config(SOURCE, env, templates_dir=TEMPLATES))
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", *args], capture_output=True, text=True, timeout=60)


def test_routes_by_severity_and_groups_by_alert_and_service() -> None:
    route = yaml.safe_load(SOURCE)["route"]
    assert route["receiver"] == "blackhole"
    assert route["group_by"] == ["alertname", "service_name"]
    routes = {tuple(r["matchers"]): r["receiver"] for r in route["routes"]}
    assert routes == {
        ('severity="critical"',): "page",
        ('severity="warning"',): "ticket",
        ('severity="info"',): "blackhole",
    }


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
    assert receivers == [{"name": "blackhole"}, {"name": "page"}, {"name": "ticket"}]
    assert yaml.safe_load(render_alertmanager_config(SOURCE, {}))["receivers"] == receivers


def test_environment_switches_on_every_channel_for_page_and_ticket() -> None:
    receivers = {r["name"]: r for r in yaml.safe_load(render_alertmanager_config(SOURCE, EVERY_CHANNEL))["receivers"]}
    assert receivers["blackhole"] == {"name": "blackhole"}
    for name in ("page", "ticket"):
        receiver = receivers[name]
        assert receiver["webhook_configs"] == [{"url": "http://127.0.0.1:9/hook", "send_resolved": True}]
        slack = receiver["slack_configs"][0]
        assert slack["channel"] == "#alerts" and slack["text"] == '{{ template "obsbox.text" . }}'
        email = receiver["email_configs"][0]
        assert email["to"] == "oncall@example.org" and email["smarthost"] == "smtp.example.org:587"
        assert email["html"] == '{{ template "obsbox.email.html" . }}' and email["require_tls"] is True
    only_page = yaml.safe_load(
        render_alertmanager_config(SOURCE, {**EVERY_CHANNEL, "OBSBOX_ALERT_RECEIVERS": "page"})
    )
    assert [r["name"] for r in only_page["receivers"] if len(r) > 1] == ["page"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OBSBOX_ALERT_EMAIL_TO": "a@b.org"}, "OBSBOX_ALERT_EMAIL_FROM and OBSBOX_ALERT_SMTP_SMARTHOST"),
        ({"OBSBOX_ALERT_WEBHOOK_URL": "hooks.example.org/x"}, "OBSBOX_ALERT_WEBHOOK_URL must be an http"),
        ({**EVERY_CHANNEL, "OBSBOX_ALERT_SMTP_SMARTHOST": "smtp"}, "host:port"),
        ({**EVERY_CHANNEL, "OBSBOX_ALERT_SMTP_REQUIRE_TLS": "yes"}, "true or false"),
        ({"OBSBOX_ALERT_RECEIVERS": "pager"}, "pager"),
        ({"OBSBOX_ALERT_RECEIVERS": ","}, "empty"),
    ],
)
def test_incomplete_or_malformed_settings_say_which_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_alertmanager_config(SOURCE, env)


def test_every_variable_read_is_documented() -> None:
    docs = (ROOT / "docs/stack.md").read_text()
    for name in NOTIFICATION_VARIABLES:
        assert f"`{name}`" in docs, name
    assert set(EVERY_CHANNEL) | {"OBSBOX_ALERT_RECEIVERS", "OBSBOX_ALERT_SMTP_REQUIRE_TLS"} == set(NOTIFICATION_VARIABLES)


@needs_amtool
@pytest.mark.parametrize("env", [{}, EVERY_CHANNEL], ids=["shipped", "every-channel"])
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
        (["severity=critical", "alertname=HTTPServerHighErrorRate", "service_name=orders"], "page"),
        (["severity=warning", "alertname=HTTPServerHighLatency", "service_name=orders"], "ticket"),
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
        "receiver": "page",
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
    """Alertmanager 0.25 with the rendered config: a critical alert reaches the page receiver's webhook with its
    dashboard and runbook links; its warning twin is inhibited; an info alert notifies nobody."""
    url, received = webhook
    config = yaml.safe_load(render_alertmanager_config(SOURCE, {"OBSBOX_ALERT_WEBHOOK_URL": url}, templates_dir=TEMPLATES))
    config["route"]["group_wait"] = "1s"  # only the waiting is shortened; routes and receivers are the real ones
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
        while not received and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # room for a wrongly routed warning or info notification to arrive too
        assert [n["receiver"] for n in received] == ["page"]
        notified = received[0]["alerts"]
        assert [a["labels"]["severity"] for a in notified] == ["critical"]
        assert notified[0]["annotations"] == annotations
    finally:
        stop(process)
