"""`obsbox drill` end to end on the native runtime: the real Prometheus evaluates the shipped AlertDrill rule on the
drill's endpoint, the real Alertmanager routes it with the rendered config to real HTTP endpoints standing in for
the on-call webhook, the incident Slack channel and the team webhook; the drill is green while they answer and red,
naming the receiver and the error, when one is down."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from obsbox.stack.binaries import cache_dir, find_tool
from obsbox.stack.components import COMPONENTS
from tests.alerting._real import Endpoint, endpoints
from tests.stack._harness import native_env, needs_native_binaries, obsbox, status

pytestmark = [pytest.mark.stack, needs_native_binaries, pytest.mark.timeout(600)]


def _pinned_prometheus_and_alertmanager(cache: Path) -> Path:
    """A cache holding only the box's pinned Prometheus and Alertmanager, when the components build made them
    (else the box runs PATH's): the other cached components listen on fixed ports, which this test does not need."""
    for component in ("prometheus", "alertmanager"):
        pinned = find_tool(component)
        if pinned is not None and pinned.is_relative_to(cache_dir()):
            target = cache / pinned.relative_to(cache_dir())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(pinned)
    return cache


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], dict[str, Endpoint], Path]]:
    tmp = tmp_path_factory.mktemp("drill")
    with endpoints("oncall", "incident", "team") as hooks:
        env = native_env(
            tmp,
            OBSBOX_CACHE_DIR=str(_pinned_prometheus_and_alertmanager(tmp / "cache")),
            OBSBOX_SCRAPE_INTERVAL="1s", OBSBOX_EVALUATION_INTERVAL="1s",
            OBSBOX_ALERT_ONCALL_WEBHOOK_URL=hooks["oncall"].url,
            OBSBOX_ALERT_INCIDENT_SLACK_WEBHOOK_URL=hooks["incident"].url,
            OBSBOX_ALERT_INCIDENT_SLACK_CHANNEL="#incident",
            OBSBOX_ALERT_TEAM_WEBHOOK_URL=hooks["team"].url,
            OBSBOX_ALERT_CRITICAL_GROUP_WAIT="1s", OBSBOX_ALERT_CRITICAL_GROUP_INTERVAL="2s",
            OBSBOX_ALERT_WARNING_GROUP_WAIT="1s", OBSBOX_ALERT_WARNING_GROUP_INTERVAL="2s",
        )
        obsbox(env, "up", "--runtime", "native", timeout=180)
        try:
            yield env, hooks, tmp / "state"
        finally:
            obsbox(env, "down", "--purge", timeout=120, check=False)


def drill_json(env: dict[str, str], *args: str, check: bool = True) -> tuple[int, dict[str, Any], str]:
    result = obsbox(env, "drill", "--json", "--timeout", "90", *args, timeout=240, check=check)
    return result.returncode, json.loads(result.stdout), result.stderr


def heard(endpoint: Endpoint, drill_id: str) -> list[dict[str, Any]]:
    return [r.body for r in endpoint.posts() if drill_id in json.dumps(r.body)]


def drill_sd_files(state: Path) -> list[str]:
    """The drill's own file-discovery files left in the box's state (the runtime keeps others there too)."""
    return sorted(p.name for p in state.rglob("file_sd/*") if "drill" in p.name)


def test_a_critical_drill_reaches_oncall_and_incident_and_resolves(
        box: tuple[dict[str, str], dict[str, Endpoint], Path]) -> None:
    env, hooks, state = box
    versions = {c["name"]: c["version"] for c in status(env)["components"]}
    for name in ("prometheus", "alertmanager"):
        pinned = find_tool(name)
        if pinned is not None and pinned.is_relative_to(cache_dir()):
            assert versions[name] == COMPONENTS[name].version, versions  # the box's own versions ran
    code, report, _ = drill_json(env)
    assert code == 0, report
    assert report["ok"] and report["error"] is None and report["severity"] == "critical"
    assert report["receivers"] == ["incident", "oncall"]
    assert [(r["receiver"], r["integration"], r["outcome"]) for r in report["results"]] == [
        ("incident", "slack[0]", "delivered"), ("oncall", "webhook[0]", "delivered")]
    assert report["resolved_after_seconds"] is not None
    assert report["resolved_notified"] == ["incident/slack[0]", "oncall/webhook[0]"]
    # The webhook echo: the on-call endpoint really got the drill alert, labelled as a drill, with its links.
    (payload, *_) = heard(hooks["oncall"], report["drill_id"])
    (alert,) = [a for a in payload["alerts"] if a["labels"].get("drill_id") == report["drill_id"]]
    assert alert["labels"]["alertname"] == "AlertDrill" and alert["labels"]["drill"] == "true"
    assert alert["annotations"]["runbook_url"].endswith("/AlertDrill.md") and alert["annotations"]["dashboard_url"]
    assert heard(hooks["incident"], report["drill_id"]) and not heard(hooks["team"], report["drill_id"])
    assert drill_sd_files(state) == [], "the drill's discovery file is removed afterwards"


def test_a_warning_drill_reaches_the_team_only(box: tuple[dict[str, str], dict[str, Endpoint], Path]) -> None:
    """The report as a person reads it."""
    env, hooks, _ = box
    result = obsbox(env, "drill", "--severity", "warning", "--timeout", "90", timeout=240)
    text = result.stdout
    match = re.search(r"^drill (\S+) \(warning\):$", text, re.M)
    assert match, text
    drill_id = match[1]
    assert re.search(r"Alertmanager had it after [\d.]+s and routed it to team$", text, re.M), text
    assert re.search(r"^  team\s+webhook\[0\]\s+delivered$", text, re.M), text
    assert "resolved message delivered to team/webhook[0]" in text
    assert "AlertDrill fired in Prometheus" in result.stderr  # progress goes to stderr
    assert heard(hooks["team"], drill_id)
    assert not heard(hooks["oncall"], drill_id) and not heard(hooks["incident"], drill_id)


def test_bad_input_changes_nothing(box: tuple[dict[str, str], dict[str, Endpoint], Path], tmp_path: Path) -> None:
    env, _, state = box
    result = obsbox(env, "drill", "--severity", "urgent", check=False)
    assert result.returncode == 2 and "'urgent' is not one of 'warning', 'critical'" in result.stderr
    assert drill_sd_files(state) == []
    nothing = obsbox(native_env(tmp_path), "drill", check=False)
    assert nothing.returncode == 8 and "obsbox is not running" in nothing.stderr


def test_status_lists_a_silence_made_with_the_cli(box: tuple[dict[str, str], dict[str, Endpoint], Path]) -> None:
    env, _, _ = box
    silence_id = obsbox(env, "silence", "add", "alertname=Deploy", "--for", "10m", "--comment", "drill test"
                        ).stdout.strip()
    try:
        assert [s["id"] for s in status(env)["silences"]] == [silence_id]
        assert silence_id in obsbox(env, "status").stdout
    finally:
        obsbox(env, "silence", "expire", silence_id)
    assert status(env)["silences"] == []


def test_the_drill_is_red_naming_the_receiver_and_error_when_one_is_down(
        box: tuple[dict[str, str], dict[str, Endpoint], Path]) -> None:
    """Runs last in this module: it shuts the incident endpoint down for good."""
    env, hooks, _ = box
    hooks["incident"].close()
    code, report, stderr = drill_json(env, check=False)
    assert code == 1, report
    assert not report["ok"]
    outcomes = {(r["receiver"], r["integration"]): (r["outcome"], r["error"]) for r in report["results"]}
    assert outcomes[("oncall", "webhook[0]")] == ("delivered", None)
    outcome, error = outcomes[("incident", "slack[0]")]
    assert outcome == "failed" and "connection refused" in error
    assert "the drill did not reach incident" in stderr


def test_a_box_whose_receivers_notify_nobody_fails_the_drill_and_says_so(tmp_path: Path) -> None:
    """The shipped configuration: routes exist, no integration. The drill must not pass for a path that ends in
    nobody."""
    env = native_env(tmp_path, OBSBOX_SCRAPE_INTERVAL="1s", OBSBOX_EVALUATION_INTERVAL="1s",
                     OBSBOX_CACHE_DIR=str(_pinned_prometheus_and_alertmanager(tmp_path / "cache")))
    obsbox(env, "up", "--runtime", "native", timeout=180)
    try:
        result = obsbox(env, "drill", "--timeout", "60", timeout=200, check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no receiver of a critical alert has an integration (incident, oncall)" in result.stderr
        assert re.search(r"^  oncall\s+-\s+no integration", result.stdout, re.M), result.stdout
    finally:
        obsbox(env, "down", "--purge", timeout=120, check=False)
