"""The native runtime with Debian's real Prometheus and Alertmanager: idempotent up, port conflicts, crashes and
restarts seen by `status`, stale pid records, down and purge. Every port is ephemeral; every process is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest

from obsbox.stack.model import STATUS_JSON_SCHEMA
from tests.stack._harness import (
    alive,
    component,
    native_env,
    native_session,
    needs_native_binaries,
    obsbox,
    status,
    supervised_pids,
    wait_for,
)

pytestmark = [pytest.mark.stack, needs_native_binaries]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with native_session(tmp_path) as env:
        yield env


def test_up_twice_changes_nothing(env: dict[str, str], tmp_path: Path) -> None:
    first = obsbox(env, "up")
    assert "prometheus" in first.stdout and "ready in" in first.stdout
    before = status(env)
    pids = supervised_pids(tmp_path / "state")
    second = obsbox(env, "up")
    after = status(env)
    assert supervised_pids(tmp_path / "state") == pids
    assert second.stdout.count("already running") == 2
    for name in ("prometheus", "alertmanager"):
        assert component(after, name)["pid"] == component(before, name)["pid"]
        assert component(after, name)["url"] == component(before, name)["url"]
        assert component(after, name)["state"] == "healthy"


def test_status_json_follows_the_documented_schema(env: dict[str, str]) -> None:
    obsbox(env, "up")
    report = status(env)
    jsonschema.validate(report, STATUS_JSON_SCHEMA)
    prometheus = component(report, "prometheus")
    assert prometheus["runtime"] == "native" and prometheus["healthy"] is True
    assert prometheus["version"].startswith("2.") or prometheus["version"].startswith("3.")
    assert isinstance(prometheus["pid"], int) and alive(prometheus["pid"])
    grafana = component(report, "grafana")
    assert grafana["state"] == "unavailable" and "grafana" in grafana["reason"]
    # Alertmanager's Watchdog-style alerts come from the real APIs; whatever fires has a name and labels.
    assert report["alerts_error"] is None
    for alert in report["alerts"]:
        assert alert["name"] and isinstance(alert["labels"], dict)
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    for key in STATUS_JSON_SCHEMA["properties"]["components"]["items"]["required"]:
        assert f"`{key}`" in docs, f"docs/cli.md does not document {key}"


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = native_env(tmp_path, OBSBOX_PROMETHEUS_PORT=str(port))
        result = obsbox(env, "up", check=False)
    assert result.returncode == 3
    assert f"port 127.0.0.1:{port} (prometheus) is already in use by pid {os.getpid()}" in result.stderr
    assert "OBSBOX_PROMETHEUS_PORT" in result.stderr  # the hint says how to move it
    assert not [p for p in supervised_pids(tmp_path / "state") if alive(p)]


def test_a_crash_is_restarted_then_reported_by_status(tmp_path: Path) -> None:
    env = native_env(tmp_path, OBSBOX_MAX_RESTARTS="1")
    try:
        obsbox(env, "up")
        first = component(status(env), "alertmanager")
        os.kill(first["pid"], signal.SIGKILL)
        restarted = wait_for(lambda: (c := component(status(env), "alertmanager"))["state"] == "healthy"
                             and c["pid"] != first["pid"] and c)
        assert restarted["restarts"] == 1
        os.kill(restarted["pid"], signal.SIGKILL)
        crashed = wait_for(lambda: (c := component(status(env), "alertmanager"))["state"] == "exited" and c)
        assert crashed["exit_code"] == -signal.SIGKILL and crashed["pid"] is None
        text = obsbox(env, "status").stdout
        assert "exited" in text and "obsbox logs alertmanager" in text
        # `up` again starts just what is missing.
        obsbox(env, "up")
        assert component(status(env), "alertmanager")["state"] == "healthy"
    finally:
        obsbox(env, "down", check=False)
    assert not [p for p in supervised_pids(tmp_path / "state") if alive(p)]


def test_a_stale_pid_record_is_not_trusted(env: dict[str, str], tmp_path: Path) -> None:
    obsbox(env, "up")
    record = tmp_path / "state" / "native" / "prometheus" / "supervisor.json"
    data = json.loads(record.read_text())
    # A reboot: the processes vanish without a word, the records stay...
    for pid in (data["supervisor_pid"], data["pid"]):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(data["pid"]) and not alive(data["supervisor_pid"]))
    # ...and their pids now belong to strangers: here, a `sleep` this test started.
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        data.update(state="running", supervisor_pid=stranger.pid, pid=stranger.pid)
        record.write_text(json.dumps(data))
        assert component(status(env), "prometheus")["state"] == "exited"
        obsbox(env, "down")   # must not signal the stranger
        assert stranger.poll() is None
        obsbox(env, "up")     # and a fresh start works
        assert component(status(env), "prometheus")["state"] == "healthy"
    finally:
        stranger.kill()
        stranger.wait()


def test_down_keeps_data_and_purge_removes_it(env: dict[str, str], tmp_path: Path) -> None:
    obsbox(env, "up")
    data = tmp_path / "state" / "native" / "prometheus" / "data"
    wait_for(lambda: any(data.iterdir()))
    assert "data kept" in obsbox(env, "down").stdout
    assert data.exists() and any(data.iterdir())
    obsbox(env, "down", "--purge")
    assert not (tmp_path / "state" / "native").exists()


def test_demo_runs_the_shop_load_and_top_then_leaves_the_stack_up(env: dict[str, str]) -> None:
    """What `make demo` runs, bounded: the native stack, the shop, load and the live view."""
    env["OBSBOX_SCRAPE_INTERVAL"] = "2s"
    result = obsbox(env, "demo", "--duration", "12", "--rps", "3", timeout=150)
    out = result.stdout
    assert "obsbox is up (native runtime)" in out and "not available here" in out
    assert "what to try next" in out and "obsbox chaos payments --error-rate 0.5" in out
    assert "SERVICE" in out and "FIRING ALERTS" in out  # the live view was drawn
    report = status(env)
    assert component(report, "gateway")["state"] == "healthy"  # the stack keeps running after the demo
    prometheus = component(report, "prometheus")["url"]
    series = httpx.get(f"{prometheus}/api/v1/query", params={
        "query": 'http_server_request_duration_seconds_count{service_name="gateway"}'}, timeout=5).json()
    assert series["data"]["result"], "the demo's load did not reach Prometheus"


def test_samples_added_later_are_scraped(env: dict[str, str]) -> None:
    env["OBSBOX_SCRAPE_INTERVAL"] = "2s"
    obsbox(env, "up")
    obsbox(env, "up", "--samples")  # Prometheus keeps running; the shop joins it through file discovery
    report = status(env)
    prometheus = component(report, "prometheus")["url"]
    ports = {component(report, name)["url"].rsplit(":", 1)[1] for name in ("gateway", "orders", "payments",
                                                                            "inventory")}

    def scraped() -> set[str]:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return {t["labels"]["instance"].rsplit(":", 1)[1] for t in targets
                if t["labels"].get("job") == "pull" and t["health"] == "up"}

    assert wait_for(lambda: scraped() >= ports and scraped())
    obsbox(env, "down")
    obsbox(env, "up")  # after down the shop is not started again unless asked
    assert "gateway" not in {c["name"] for c in status(env)["components"] if c["state"] == "healthy"}


def test_a_taken_port_hint_offers_a_variable_only_where_one_moves_it() -> None:
    """OBSBOX_PROMETHEUS_PORT moves Prometheus; nothing moves Jaeger's fixed ports, so its hint must not offer
    OBSBOX_JAEGER_PORT (it did, and setting it changed nothing)."""
    import socket

    from obsbox.stack.errors import PortInUseError
    from obsbox.stack.ports import check_ports

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        with pytest.raises(PortInUseError) as moved:
            check_ports({"prometheus": port}, settable=["prometheus"])
        assert "OBSBOX_PROMETHEUS_PORT=<port>" in str(moved.value.hint)
        with pytest.raises(PortInUseError) as fixed:
            check_ports({"jaeger": port}, settable=["prometheus"])
        assert "OBSBOX_JAEGER_PORT" not in str(fixed.value.hint) and "OBSBOX_STACK_DIR" in str(fixed.value.hint)
