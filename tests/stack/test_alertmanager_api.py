"""obsbox.stack.alertmanager_api and `obsbox silence`: Alertmanager's matcher syntax checked before anything is sent,
and silences added, listed and expired on a real Alertmanager (the box's pinned build when cached, else Debian's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from obsbox.cli import cli
from obsbox.stack import engine
from obsbox.stack.alertmanager_api import (
    AlertmanagerAPI,
    AlertmanagerAPIError,
    Matcher,
    MatcherError,
    parse_duration,
    parse_matcher,
    parse_matchers,
    parse_notification_counters,
)
from tests.alerting._real import endpoints, needs_alertmanager, running_alertmanager, wait_until

# --- matchers, durations, counters (no Alertmanager needed) --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("alertname=Foo", Matcher("alertname", "=", "Foo")),
        ('alertname="Foo Bar"', Matcher("alertname", "=", "Foo Bar")),
        ("severity!=info", Matcher("severity", "!=", "info")),
        ('service_name=~"orders|payments"', Matcher("service_name", "=~", "orders|payments")),
        ("job!~node.*", Matcher("job", "!~", "node.*")),
        (' summary = "say \\"hi\\"" ', Matcher("summary", "=", 'say "hi"')),
        ("path=/a=b", Matcher("path", "=", "/a=b")),
    ],
)
def test_matchers_in_alertmanagers_syntax(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


def test_a_matcher_prints_back_in_the_syntax_it_was_read_in() -> None:
    for text in ('a="x"', 'b!="y \\"q\\""', 'c=~"o|p"', 'd!~"x.*"'):
        assert str(parse_matcher(text)) == text


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["alertname"], "is not a matcher"),
        (["alertname==Foo"], "is not a matcher"),
        (["1abc=Foo"], "is not a label name"),
        (["service_name=~orders("], "is not a regular expression"),
        (['alertname="unterminated'], "quoted whole"),
        (['alertname="a"b"'], "must be escaped"),
        (['alertname="a\\qb"'], "unknown escape"),
        ([], "at least one matcher"),
        (["severity!=info"], "match every alert"),
        (["alertname=~.*"], "match every alert"),
        (['{alertname="a, b}'], "unterminated"),
    ],
)
def test_bad_matchers_are_refused_with_the_reason(texts: list[str], message: str) -> None:
    with pytest.raises(MatcherError, match=message):
        parse_matchers(texts)


def test_a_braced_list_is_split_like_alertmanager_does() -> None:
    assert parse_matchers(['{alertname="A,B", severity=critical}']) == [
        Matcher("alertname", "=", "A,B"), Matcher("severity", "=", "critical")]


def test_matching_semantics_are_anchored_and_negations_hold() -> None:
    assert parse_matcher("a=~ord").matches("ord") and not parse_matcher("a=~ord").matches("orders")
    assert parse_matcher("a!=x").matches("") and not parse_matcher("a!=x").matches("x")
    assert parse_matcher("a!~o.*").matches("p") and not parse_matcher("a!~o.*").matches("orders")


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("1d", 86400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2", "2 hours", "h2", "0m", "-1h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_notification_counters_per_integration_and_per_receiver() -> None:
    old_style = """
# TYPE alertmanager_notifications_total counter
alertmanager_notifications_total{integration="webhook"} 3
alertmanager_notifications_failed_total{code="5xx",integration="webhook"} 1
alertmanager_notifications_failed_total{code="4xx",integration="webhook"} 1
alertmanager_notification_requests_total{integration="webhook"} 7
alertmanager_notification_requests_failed_total{integration="webhook"} 5
alertmanager_notification_latency_seconds_bucket{integration="webhook",le="1"} 7
"""
    counters = parse_notification_counters(old_style)
    assert not counters.per_receiver
    assert counters.failed == {("", "webhook"): 2.0} and counters.delivered(("", "webhook")) == 2.0
    with_receiver = 'alertmanager_notifications_total{integration="slack",receiver_name="team"} 4\n'
    counters = parse_notification_counters(with_receiver)
    assert counters.per_receiver and counters.notifications == {("team", "slack"): 4.0}


# --- a real Alertmanager -------------------------------------------------------------------------------------


def _config(url: str) -> dict[str, Any]:
    return {
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": url, "send_resolved": False}]}],
    }


@needs_alertmanager
def test_silences_are_added_listed_and_expired(tmp_path: Path) -> None:
    with running_alertmanager(_config("http://127.0.0.1:9/hook"), tmp_path) as base:
        api = AlertmanagerAPI(base)
        matchers = parse_matchers(['alertname="Deploy"', "service_name=~orders|payments"])
        silence_id = api.add_silence(matchers, seconds=3600, comment="deploying orders", created_by="ci")
        (listed,) = api.silences()
        assert listed.id == silence_id and listed.state == "active"
        assert listed.matchers == matchers and listed.comment == "deploying orders" and listed.created_by == "ci"
        api.expire_silence(silence_id)
        assert api.silences() == []
        assert [s.state for s in api.silences(states=())] == ["expired"]
        with pytest.raises(AlertmanagerAPIError, match="Alertmanager answered"):
            api.expire_silence("00000000-0000-0000-0000-000000000000")


@needs_alertmanager
def test_a_silenced_alert_is_not_notified_and_is_once_the_silence_expires(tmp_path: Path) -> None:
    with endpoints("hook") as hooks, running_alertmanager(_config(hooks["hook"].url), tmp_path) as base:
        api = AlertmanagerAPI(base)
        silence_id = api.add_silence(parse_matchers(["alertname=Deploy"]), seconds=3600, comment="quiet",
                                     created_by="ci")
        alert = {"labels": {"alertname": "Deploy", "severity": "critical"}, "annotations": {"summary": "x."}}
        api.post_alerts([alert, {"labels": {"alertname": "Other"}}])
        # The unsilenced alert is notified: proof that the pipeline ran while the silenced one stayed quiet.
        wait_until(lambda: hooks["hook"].posts(), 20, "the unsilenced alert's notification")
        wait_until(lambda: api.alerts(parse_matchers(["alertname=Deploy"]))[0]["status"]["state"] == "suppressed",
                   10, "the alert to show as suppressed")
        names = [a["labels"]["alertname"] for r in hooks["hook"].posts() for a in r.body["alerts"]]
        assert names == ["Other"]
        api.expire_silence(silence_id)
        api.post_alerts([alert])
        wait_until(lambda: any(a["labels"]["alertname"] == "Deploy" for r in hooks["hook"].posts()
                               for a in r.body["alerts"]), 20, "the notification after the silence expired")


@needs_alertmanager
def test_obsbox_silence_commands_on_a_real_alertmanager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_alertmanager(_config("http://127.0.0.1:9/hook"), tmp_path) as base:
        monkeypatch.setattr(engine, "urls", lambda: {"alertmanager": base})
        runner = CliRunner()
        added = runner.invoke(cli, ["silence", "add", "alertname=Deploy", 'service_name="orders"', "--for", "30m",
                                    "--comment", "deploy", "--author", "ci"])
        assert added.exit_code == 0, added.output
        silence_id = added.stdout.strip().splitlines()[0]
        listed = runner.invoke(cli, ["silence", "list", "--json"])
        (item,) = json.loads(listed.stdout)
        assert item["id"] == silence_id and item["matchers"] == ['alertname="Deploy"', 'service_name="orders"']
        assert item["state"] == "active" and item["created_by"] == "ci" and item["comment"] == "deploy"
        text = runner.invoke(cli, ["silence", "list"]).stdout
        assert silence_id in text and 'alertname="Deploy"' in text
        expired = runner.invoke(cli, ["silence", "expire", silence_id])
        assert expired.exit_code == 0 and f"expired {silence_id}" in expired.stdout
        assert runner.invoke(cli, ["silence", "list"]).stdout.strip() == "no active silences"


@needs_alertmanager
def test_bad_input_is_refused_before_anything_is_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with running_alertmanager(_config("http://127.0.0.1:9/hook"), tmp_path) as base:
        monkeypatch.setattr(engine, "urls", lambda: {"alertmanager": base})
        runner = CliRunner()
        for args, message in (
            (["alertname==X", "--comment", "c"], "is not a matcher"),
            (["severity!=info", "--comment", "c"], "match every alert"),
            (["alertname=X", "--for", "2 hours", "--comment", "c"], "--for"),
            (["alertname=X", "--comment", "  "], "--comment is empty"),
        ):
            result = runner.invoke(cli, ["silence", "add", *args])
            assert result.exit_code == 2 and message in result.stderr, result.output
        assert AlertmanagerAPI(base).silences(states=()) == []


def test_silence_commands_without_a_box_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "urls", lambda: {})
    result = CliRunner().invoke(cli, ["silence", "list"])
    assert result.exit_code == 8 and "alertmanager is not running" in result.stderr


@needs_alertmanager
def test_status_shows_the_active_silences(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from obsbox.stack.model import STATUS_JSON_SCHEMA, ComponentStatus, StatusReport

    with running_alertmanager(_config("http://127.0.0.1:9/hook"), tmp_path) as base:
        report = StatusReport("native", [ComponentStatus("alertmanager", "native", "healthy", url=base)])
        monkeypatch.setattr(engine, "status", lambda: report)
        api = AlertmanagerAPI(base)
        runner = CliRunner()
        assert "silences: none" in runner.invoke(cli, ["status"]).stdout
        silence_id = api.add_silence(parse_matchers(["alertname=Deploy"]), seconds=600, comment="deploy",
                                     created_by="ci")
        text = runner.invoke(cli, ["status"]).stdout
        assert f"{silence_id}  active" in text and 'alertname="Deploy"' in text and "by ci: deploy" in text
        data = json.loads(runner.invoke(cli, ["status", "--json"]).stdout)
        assert [s["id"] for s in data["silences"]] == [silence_id] and data["silences_error"] is None
        jsonschema.validate(data, STATUS_JSON_SCHEMA)


def test_an_endpoint_that_is_not_alertmanager_is_an_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever answers on Alertmanager's port (here a server answering every path with the same JSON object), `status`
    reports the silences as unknown instead of raising; the other calls raise AlertmanagerAPIError."""
    from obsbox.stack.model import ComponentStatus, StatusReport

    with endpoints("junk") as junk:
        base = junk["junk"].url.rstrip("/")
        api = AlertmanagerAPI(base)
        with pytest.raises(AlertmanagerAPIError, match="not Alertmanager's v2 API"):
            api.silences()
        with pytest.raises(AlertmanagerAPIError, match="not Alertmanager's v2 API"):
            api.config_text()
        with pytest.raises(AlertmanagerAPIError, match="not Alertmanager's v2 API"):
            api.add_silence(parse_matchers(["alertname=X"]), seconds=60, comment="c", created_by="ci")
        report = StatusReport("native", [ComponentStatus("alertmanager", "native", "healthy", url=base)])
        monkeypatch.setattr(engine, "status", lambda: report)
        result = CliRunner().invoke(cli, ["status", "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["silences"] == [] and "not Alertmanager's v2 API" in data["silences_error"]
