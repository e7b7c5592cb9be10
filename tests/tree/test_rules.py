"""The rule files of alerts/: real promtool checks and unit tests, and the conventions every alert follows.

promtool is the one of the Prometheus the box pins (3.x, built by scripts/build-components.sh, which `make test`
runs), so the rules are checked with the PromQL and the lookback semantics the box really runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsbox.stack.binaries import find_tool as _tool

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
PROM_RULES = sorted((ALERTS / "prometheus").glob("*.yml"))
LOKI_RULES = sorted((ALERTS / "loki" / "fake").glob("*.yaml"))
UNIT_TESTS = sorted((ALERTS / "tests").glob("*.test.yml"))
RUNBOOKS = ALERTS / "runbooks"
DASHBOARDS = ROOT / "dashboards" / "obsbox"

RUNBOOK_BASE = "https://github.com/obsbox/obsbox/blob/main/alerts/runbooks/"
GRAFANA_BASE = "{{ with $externalLabels.grafana_url }}{{ . }}{{ else }}http://127.0.0.1:3000{{ end }}"
SAMPLE_SERVICES = ("gateway", "orders", "payments", "inventory")
SLO_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

promtool = _tool("promtool")


def _major(tool: Path | None) -> int:
    if tool is None:
        return 0
    out = subprocess.run([str(tool), "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"version (\d+)\.", out)
    return int(match.group(1)) if match else 0


# The unit tests are written for Prometheus 3 (its lookback window leaves out its start). In CI the build has
# run, so an older promtool there is a failure, not a skip.
needs_promtool = pytest.mark.skipif(
    _major(promtool) < 3 and not os.environ.get("CI"),
    reason=f"needs promtool 3.x (found {promtool}): scripts/build-components.sh builds the pinned Prometheus")


def _groups(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    groups: list[dict[str, Any]] = data["groups"]
    return groups


def _rules(paths: list[Path]) -> list[dict[str, Any]]:
    return [rule for p in paths for g in _groups(p) for rule in g["rules"]]


def _alerts(paths: list[Path]) -> list[dict[str, Any]]:
    return [r for r in _rules(paths) if "alert" in r]


ALL_ALERTS = _alerts(PROM_RULES) + _alerts(LOKI_RULES)
ALERT_NAMES = sorted({a["alert"] for a in ALL_ALERTS})
DASHBOARD_UIDS = {
    json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS.glob("*.json")
}


def _duration_seconds(text: str) -> int:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text):
        total += int(number) * units[unit]
    return int(total)


# --- promtool -------------------------------------------------------------------------------------------------


def test_the_rule_tree_is_where_prometheus_and_loki_look() -> None:
    # backends/prometheus/prometheus.yml loads alerts/prometheus/*.yml; stack.yml mounts alerts/loki/ as Loki's
    # rules directory, whose tenant "fake" reads fake/*.yaml.
    assert {p.name for p in PROM_RULES} >= {"red.rules.yml", "slo.rules.yml", "slo-objectives.yml",
                                            "services.rules.yml", "resilience.rules.yml", "stack.rules.yml"}
    assert LOKI_RULES, "no Loki ruler rules in alerts/loki/fake/"
    assert UNIT_TESTS


@needs_promtool
def test_promtool_check_rules_accepts_every_rule_file() -> None:
    fixtures = sorted((ALERTS / "tests" / "fixtures").glob("*.yml"))
    result = subprocess.run([str(promtool), "check", "rules", *map(str, PROM_RULES + fixtures)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize("test_file", UNIT_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = subprocess.run([str(promtool), "test", "rules", test_file.name], cwd=test_file.parent,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    # The unit tests compare annotations exactly: one changed word makes promtool fail.
    source = (ALERTS / "tests" / "services.test.yml").read_text(encoding="utf-8")
    broken = source.replace("answered 50% of its", "answered 40% of its", 1)
    assert broken != source
    broken = broken.replace("../prometheus/", str(ALERTS / "prometheus") + "/")
    (tmp_path / "broken.test.yml").write_text(broken, encoding="utf-8")
    result = subprocess.run([str(promtool), "test", "rules", "broken.test.yml"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "HTTPServerHighErrorRate" in result.stdout + result.stderr


# --- the Loki rule, through its PromQL twin --------------------------------------------------------------------
#
# No Loki runs here, but the Loki ruler is Prometheus' rule manager (pkg/ruler/base: rules.NewManager with a LogQL
# QueryFunc and ExternalURL = ruler.external_url): `for`, binary operators, `unless` and the annotation templates
# behave as in Prometheus. Only the log range aggregations differ, so each `rate({...} | ... [W] offset O)` becomes
# `sum_over_time(error_log_lines[W] offset O) / W` over a series holding the number of error lines logged in each
# 2-minute step, with no sample where none was logged: like LogQL's rate, the count of lines in the window per
# second, and no series at all when the window holds no line. The steps and evaluations fall on even minutes, so
# no window boundary (odd minutes) lands on a sample: Prometheus 2 (closed windows) and 3 (left-open) agree.

LOG_RANGE = re.compile(r'rate\(\{service_name=~"\.\+"\}[^\[]*\[(?P<range>\d+[mh])\](?P<offset>\s+offset\s+\d+[mh])?\)')


def _promql_twin(expr: str) -> str:
    def twin(match: re.Match[str]) -> str:
        return (f"(sum_over_time(error_log_lines[{match['range']}]{match['offset'] or ''})"
                f" / {_duration_seconds(match['range'])})")

    translated, count = LOG_RANGE.subn(twin, expr)
    assert count == 3 and "{" not in translated, translated
    return translated


def _error_log_spike_test_file(tmp_path: Path) -> Path:
    (rule,) = [r for r in _alerts(LOKI_RULES) if r["alert"] == "ErrorLogSpike"]
    twin = {**rule, "expr": _promql_twin(rule["expr"])}
    (tmp_path / "twin.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "twin", "rules": [twin]}]}))

    def firing(service: str, per_second: str) -> dict[str, Any]:
        return {"exp_labels": {"severity": "warning", "service_name": service}, "exp_annotations": {
            "summary": rule["annotations"]["summary"],
            "description": f"{service} logs {per_second} error lines per second over the last 5 minutes: more than "
                           "three times its rate of the hour before, or it logged no error line in that hour.",
            "runbook_url": rule["annotations"]["runbook_url"],
            "dashboard_url": f"http://127.0.0.1:3000/d/obsbox-logs?var-service_name={service}"}}

    tests = {
        "rule_files": ["twin.rules.yml"], "evaluation_interval": "2m",
        "tests": [{
            "interval": "2m", "external_url": "http://127.0.0.1:3000",
            "input_series": [
                # new: silent for an hour, then 100 error lines every 2 minutes - no hour before to compare with
                {"series": 'error_log_lines{service_name="new"}', "values": "_x30 100x20"},
                # steady: 40 lines every 2 minutes (0.4/s, above 0.2) for two hours, then ten times as many
                {"series": 'error_log_lines{service_name="steady"}', "values": "40x60 400x10"},
                # trickle: new, but 10 lines every 2 minutes (0.1/s): under the floor
                {"series": 'error_log_lines{service_name="trickle"}', "values": "_x30 10x20"},
            ],
            "alert_rule_test": [
                {"eval_time": "60m", "alertname": "ErrorLogSpike", "exp_alerts": []},  # new: pending
                {"eval_time": "62m", "alertname": "ErrorLogSpike", "exp_alerts": [firing("new", "0.67")]},
                {"eval_time": "64m", "alertname": "ErrorLogSpike", "exp_alerts": [firing("new", "1.00")]},
                {"eval_time": "120m", "alertname": "ErrorLogSpike", "exp_alerts": []},  # steady: as before
                {"eval_time": "122m", "alertname": "ErrorLogSpike", "exp_alerts": []},  # steady: pending
                {"eval_time": "124m", "alertname": "ErrorLogSpike", "exp_alerts": [firing("steady", "2.80")]},
            ],
        }],
    }
    path = tmp_path / "twin.test.yml"
    path.write_text(yaml.safe_dump(tests, sort_keys=False))
    return path


@needs_promtool
def test_error_log_spike_fires_without_a_baseline_or_on_three_times_it_and_says_so(tmp_path: Path) -> None:
    """A service's first errors fire it (no hour before: the text says so), a steady error rate does not, ten
    times the steady rate does, 0.1/s never does; `for: 2m` holds it one evaluation; the value reads 0.67, not
    "666.7m"; the dashboard link starts with the ruler's external_url."""
    test_file = _error_log_spike_test_file(tmp_path)
    result = subprocess.run([str(promtool), "test", "rules", test_file.name], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_twin_test_would_catch_humanize_and_a_missing_external_url(tmp_path: Path) -> None:
    test_file = _error_log_spike_test_file(tmp_path)
    rules = tmp_path / "twin.rules.yml"
    good = rules.read_text()
    for broken in (good.replace('printf \"%.2f\" $value', "$value | humanize"),
                   good.replace("{{ $externalURL }}", "")):
        assert broken != good
        rules.write_text(broken)
        result = subprocess.run([str(promtool), "test", "rules", test_file.name], cwd=tmp_path,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode != 0, broken


# --- the shape of the unit tests ------------------------------------------------------------------------------


def _alert_cases() -> dict[str, list[tuple[str, int, bool, int]]]:
    """alertname -> [(test name, eval time in s, fires?, evaluation interval in s)] over every unit test file."""
    cases: dict[str, list[tuple[str, int, bool, int]]] = {}
    for path in UNIT_TESTS:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        interval = _duration_seconds(data.get("evaluation_interval", "1m"))
        for test in data["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.setdefault(case["alertname"], []).append(
                    (f"{path.name}: {test.get('name', '?')}", _duration_seconds(case["eval_time"]),
                     bool(case.get("exp_alerts")), interval))
    return cases


CASES = _alert_cases()


@pytest.mark.parametrize("name", [n for n in ALERT_NAMES if n != "ErrorLogSpike"])
def test_every_prometheus_alert_fires_at_its_for_and_not_one_evaluation_earlier(name: str) -> None:
    cases = CASES.get(name)
    assert cases, f"{name} has no unit test in alerts/tests/"
    rules = [r for r in ALL_ALERTS if r["alert"] == name]
    shortest_for = min(_duration_seconds(r.get("for", "0s")) for r in rules)
    fired = [(test, t, iv) for test, t, fires, iv in cases if fires]
    assert fired, f"{name}: no test shows it firing"
    if shortest_for == 0:
        return  # Watchdog: no condition, no `for`, nothing to be early for
    before = {(test, t) for test, t, fires, _ in cases if not fires}
    assert any((test, t - iv) in before for test, t, iv in fired), (
        f"{name}: no test checks that it does not fire one evaluation before it fires")
    assert all(t >= shortest_for for _, t, _ in fired), f"{name} fires before its `for` ({shortest_for}s) passed"


@pytest.mark.parametrize("name", [n for n in ALERT_NAMES if n not in ("ErrorLogSpike", "Watchdog")])
def test_every_prometheus_alert_has_a_quiet_test_without_traffic(name: str) -> None:
    quiet_tests = {test for test, _, fires, _ in CASES.get(name, []) if not fires}
    firing_tests = {test for test, _, fires, _ in CASES.get(name, []) if fires}
    assert quiet_tests - firing_tests, f"{name}: no test where it stays quiet throughout (no traffic / healthy)"


# --- conventions of every alert -------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ALL_ALERTS, ids=lambda r: f"{r['alert']}-{r['labels'].get('long_window', '')}")
def test_every_alert_carries_severity_summary_description_runbook_and_dashboard(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    notes = rule["annotations"]
    assert set(notes) == {"summary", "description", "runbook_url", "dashboard_url"}
    assert "{{" not in notes["summary"] and notes["summary"].endswith("."), "summary: one static sentence"
    assert "{{" in notes["description"], "description: templated with the alert's labels or value"
    assert notes["runbook_url"] == f"{RUNBOOK_BASE}{name}.md"
    assert (RUNBOOKS / f"{name}.md").is_file(), f"alerts/runbooks/{name}.md missing"
    match = re.fullmatch(r"(?P<base>.+)/d/(?P<uid>[a-z0-9-]+)(?P<query>\?.*)?", notes["dashboard_url"])
    assert match, notes["dashboard_url"]
    assert match["uid"] in DASHBOARD_UIDS
    if rule in _alerts(PROM_RULES):
        assert match["base"] == GRAFANA_BASE, "Prometheus alerts take Grafana's address from grafana_url"
    else:
        assert match["base"] == "{{ $externalURL }}", "Loki alerts take Grafana's address from ruler.external_url"
    expr = rule["expr"]
    keyed_on_service = "service_name" in expr and name != "Watchdog" and " by (job" not in expr
    if keyed_on_service:
        assert match["query"] == "?var-service_name={{ $labels.service_name }}", (
            f"{name}: the dashboard link must select the alert's service")


def test_the_error_rate_alert_the_end_to_end_test_waits_for() -> None:
    (rule,) = [r for r in ALL_ALERTS if r["alert"] == "HTTPServerHighErrorRate"]
    assert _duration_seconds(rule["for"]) <= 120
    assert rule["labels"] == {"severity": "critical"}
    # labels of the firing alert come from the expression: service_name (+ namespace/environment when set)
    assert "service_name:http_server_request_errors:ratio_rate5m" in rule["expr"]


def test_alert_names_are_unique_per_meaning() -> None:
    # one name may cover several tiers (SLOErrorBudgetBurn) or severities (AlertDrill, one rule per severity a
    # drill can ask for); every other alert name is defined once
    names = [r["alert"] for r in ALL_ALERTS if r["alert"] not in ("SLOErrorBudgetBurn", "AlertDrill")]
    assert len(names) == len(set(names))
    drills = sorted(r["labels"]["severity"] for r in ALL_ALERTS if r["alert"] == "AlertDrill")
    assert drills == ["critical", "warning"]
    tiers = {(r["labels"]["slo"], r["labels"]["long_window"], r["labels"]["short_window"], r["labels"]["severity"])
             for r in ALL_ALERTS if r["alert"] == "SLOErrorBudgetBurn"}
    expected = {("1h", "5m", "critical"), ("6h", "30m", "critical"), ("1d", "2h", "warning"), ("3d", "6h", "warning")}
    assert tiers == {(slo, *t) for slo in ("availability", "latency") for t in expected}


# --- recording rules ------------------------------------------------------------------------------------------


def test_recording_rules_are_named_level_metric_operations() -> None:
    records = [r["record"] for r in _rules(PROM_RULES) if "record" in r]
    assert records
    for name in records:
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_slo_error_ratios_cover_every_window_for_both_slos() -> None:
    records = {(r["record"], r.get("labels", {}).get("slo")) for r in _rules(PROM_RULES) if "record" in r}
    for window in SLO_WINDOWS:
        for slo in ("availability", "latency"):
            assert (f"slo:sli_error:ratio_rate{window}", slo) in records


def test_red_rules_cover_service_and_route() -> None:
    records = {r["record"] for r in _rules(PROM_RULES) if "record" in r}
    for level in ("service_name", "service_name_http_route"):
        assert f"{level}:http_server_requests:rate5m" in records
        assert f"{level}:http_server_request_errors:ratio_rate5m" in records
    assert "service_name:http_server_request_duration_seconds:p99_rate5m" in records


def test_objectives_are_overridable_in_one_file_without_copies_of_alerts() -> None:
    overrides = ALERTS / "prometheus" / "slo-objectives.yml"
    assert [g["name"] for g in _groups(overrides)] == ["obsbox-slo-overrides"]
    text = overrides.read_text(encoding="utf-8")
    assert "slo:objective_override:ratio" in text and "slo:latency_threshold_override:seconds" in text
    assert not _alerts([overrides])


# --- nothing names a sample service ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PROM_RULES + LOKI_RULES + UNIT_TESTS, ids=lambda p: p.name)
def test_rules_name_no_sample_service(path: Path) -> None:
    text = path.read_text(encoding="utf-8").lower()
    for name in SAMPLE_SERVICES:
        assert not re.search(rf"\b{name}\b", text), f"{path.name} names the sample service {name}"


# --- runbooks -------------------------------------------------------------------------------------------------


def test_every_runbook_belongs_to_an_alert() -> None:
    assert {p.stem for p in RUNBOOKS.glob("*.md")} == set(ALERT_NAMES)


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_runbooks_say_what_it_means_impact_how_to_investigate_and_fix(name: str) -> None:
    text = (RUNBOOKS / f"{name}.md").read_text(encoding="utf-8")
    assert text.startswith(f"# {name}\n")
    for heading in ("## What it means", "## Impact", "## How to investigate", "## How to fix"):
        assert heading in text, f"{name}.md lacks '{heading}'"
    titles = {json.loads(p.read_text(encoding="utf-8"))["title"] for p in DASHBOARDS.glob("*.json")}
    assert any(f"**{title}**" in text for title in titles), f"{name}.md names no dashboard"
    for sample in SAMPLE_SERVICES:
        assert not re.search(rf"\b{sample}\b", text)


def test_dashboard_links_set_variables_the_target_dashboard_has() -> None:
    variables = {}
    for path in DASHBOARDS.glob("*.json"):
        board = json.loads(path.read_text(encoding="utf-8"))
        variables[board["uid"]] = {v["name"] for v in board["templating"]["list"]}
    for rule in ALL_ALERTS:
        url = rule["annotations"]["dashboard_url"]
        uid = re.search(r"/d/([a-z0-9-]+)", url)[1]  # type: ignore[index]
        for name in re.findall(r"var-(\w+)=", url):
            assert name in variables[uid], f"{rule['alert']}: {uid} has no variable {name}"
