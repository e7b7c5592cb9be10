"""The commands' arguments and errors through click's CliRunner: every failure is one message, a hint and a
non-zero exit code. Nothing here starts a stack; where a running one is needed its record is written by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from click.testing import CliRunner, Result

from obsbox.cli import cli
from obsbox.stack.model import STATUS_JSON_SCHEMA
from obsbox.stack.ports import free_port
from obsbox.stack.state import write_json

COMMANDS = ("up", "down", "status", "logs", "open", "demo", "chaos", "top", "run", "check")


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("OBSBOX_PROMETHEUS_PORT", "OBSBOX_ALERTMANAGER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OBSBOX_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def record_native(state: Path, components: dict[str, str]) -> None:
    """What `obsbox up` leaves behind, pointing at the given URLs."""
    write_json(state / "runtime.json", {"runtime": "native"})
    write_json(state / "native" / "record.json", {
        "components": {name: {"url": url, "port": int(url.rsplit(":", 1)[1]), "kind": "sample"}
                       for name, url in components.items()},
        "unavailable": {},
    })


def test_help_lists_every_command_with_its_docstring() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output
        sub = invoke(name, "--help")
        doc = cli.commands[name].help or ""  # type: ignore[attr-defined]
        assert sub.exit_code == 0 and doc and " ".join(doc.split()[:4]) in " ".join(sub.output.split())
    assert "error-rate" in invoke("chaos", "--help").output


@pytest.mark.parametrize(("args", "message"), [
    (["chaos", "payments", "--error-rate", "1.5"], "error_rate must be between 0 and 1"),
    (["chaos", "payments", "--error-rate", "-0.1"], "error_rate must be between 0 and 1"),
    (["chaos", "payments", "--latency-ms", "-5"], "latency_ms must be zero or more"),
    (["chaos", "billing", "--outage"], "unknown sample service 'billing'"),
    (["chaos", "payments"], "say which fault to inject"),
    (["chaos", "payments", "--reset", "--outage"], "--reset clears every fault; give it alone"),
])
def test_bad_chaos_input_is_refused_before_anything_is_sent(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert f"obsbox: {message}" in result.output
    assert "hint:" in result.output


def test_chaos_needs_a_running_shop(state: Path) -> None:
    record_native(state, {"payments": f"http://127.0.0.1:{free_port()}"})
    result = invoke("chaos", "payments", "--error-rate", "0.3")
    assert result.exit_code == 8
    assert "no sample service answers" in result.output and "obsbox up --samples" in result.output


@pytest.fixture
def payments() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "obsbox.samples", "serve", "payments", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/admin/faults", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_chaos_sets_layers_and_resets_faults_of_the_running_service(state: Path, payments: str) -> None:
    record_native(state, {"payments": payments})
    assert invoke("chaos", "payments", "--error-rate", "0.5").exit_code == 0
    result = invoke("chaos", "payments", "--latency-ms", "20")
    assert result.exit_code == 0 and "error_rate=0.5" in result.output and "latency_ms=20" in result.output
    assert httpx.get(payments + "/admin/faults").json()["error_rate"] == 0.5
    result = invoke("chaos", "payments", "--reset")
    assert result.exit_code == 0 and "no faults" in result.output
    assert httpx.get(payments + "/admin/faults").json()["error_rate"] == 0.0


def test_status_when_nothing_runs() -> None:
    assert "not running" in invoke("status").output
    report = json.loads(invoke("status", "--json").output)
    jsonschema.validate(report, STATUS_JSON_SCHEMA)
    assert report["runtime"] is None and report["running"] is False and report["components"] == []


@pytest.mark.parametrize("args", [["open", "prometheus"], ["logs"], ["top", "--once"]])
def test_commands_that_need_a_running_stack_say_so(args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 8, result.output
    assert "obsbox: " in result.output and "hint:" in result.output and "obsbox up" in result.output


def test_open_prints_the_url_and_opens_it(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    record_native(state, {"prometheus": "http://127.0.0.1:19090"})
    result = invoke("open", "prometheus")
    assert result.exit_code == 0 and result.output.strip() == "http://127.0.0.1:19090"
    assert opened == ["http://127.0.0.1:19090"]
    assert invoke("open", "kibana").exit_code == 2  # not a choice


@pytest.mark.parametrize("component", ["grafana", "pyroscope"])
def test_an_agpl_component_without_docker_says_what_it_needs(state: Path, component: str) -> None:
    record_native(state, {"prometheus": "http://127.0.0.1:19090"})
    result = invoke("open", component)
    assert result.exit_code == 8 and f"{component} is not running" in result.output and "Docker" in result.output


def test_a_buildable_component_that_is_not_running_is_not_sent_to_docker(state: Path) -> None:
    # `obsbox build` makes Jaeger natively: the hint is `obsbox up`, not Docker.
    record_native(state, {"prometheus": "http://127.0.0.1:19090"})
    result = invoke("open", "jaeger")
    assert result.exit_code == 8 and "jaeger is not running" in result.output and "obsbox up" in result.output
    assert "Docker" not in result.output


def test_logs_prints_the_last_lines_of_a_component(state: Path) -> None:
    record_native(state, {"prometheus": "http://127.0.0.1:19090"})
    log = state / "native" / "prometheus" / "prometheus.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    result = invoke("logs", "prometheus", "-n", "3")
    assert result.exit_code == 0 and result.output.splitlines() == ["line 97", "line 98", "line 99"]
    missing = invoke("logs", "loki")
    assert missing.exit_code == 8 and "no log for 'loki'" in missing.output


def test_logs_of_an_unknown_component_is_bad_input_as_documented(state: Path) -> None:
    assert invoke("logs", "nosuch").exit_code == 2  # nothing runs: the name is still checked first
    record_native(state, {"prometheus": "http://127.0.0.1:19090"})
    result = invoke("logs", "nosuch")
    assert result.exit_code == 2, result.output
    assert "unknown component 'nosuch'" in result.output and "prometheus" in result.output
    assert "| 2 | bad input (unknown service, error rate outside 0..1, a fault and `--reset` together, unknown " \
           "component)" in (Path(__file__).parents[2] / "docs" / "cli.md").read_text()


def test_a_bad_port_setting_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSBOX_PROMETHEUS_PORT", "ninety")
    result = invoke("up", "--runtime", "native")
    assert result.exit_code == 2 and "OBSBOX_PROMETHEUS_PORT='ninety' is not a port number" in result.output


def test_down_when_nothing_runs() -> None:
    result = invoke("down")
    assert result.exit_code == 0 and "was not running" in result.output


def test_run_needs_a_command() -> None:
    assert invoke("run").exit_code == 2


def test_every_exit_code_is_documented() -> None:
    from obsbox.stack import errors

    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.StackError)}
    assert codes == {1, 2, 3, 4, 5, 6, 7, 8, 9}
    for code in codes:
        assert f"\n| {code} |" in docs, f"exit code {code} is not in docs/cli.md"
