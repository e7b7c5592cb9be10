"""`obsbox check` on the shipped tree and on a copy a user broke."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from obsbox.cli import cli
from obsbox.stack.binaries import find_tool as _tool
from obsbox.stack.check import check_alertmanager, check_dashboards, check_rules
from obsbox.stack.compose import StackTree
from obsbox.stack.tree import stack_root

needs_tools = pytest.mark.skipif(_tool("promtool") is None or _tool("amtool") is None,
                                 reason="needs promtool and amtool (scripts/install-system-deps.sh installs them)")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    src = stack_root()
    root.mkdir()
    for name in ("stack.yml", ".env"):
        shutil.copy(src / name, root / name)
    for name in ("backends", "alerts", "dashboards", "collector"):
        if (src / name).exists():
            shutil.copytree(src / name, root / name)
    return root


@needs_tools
def test_the_shipped_tree_passes(tree: Path) -> None:
    result = CliRunner().invoke(cli, ["check", "--tree", str(tree)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("ok   prometheus config (promtool") for line in lines)
    assert any(line.startswith("ok   rules alerts/") for line in lines)
    assert any(line.startswith("ok   rule tests alerts/") for line in lines)
    assert any(line.startswith("ok   alertmanager config (amtool") for line in lines)
    assert not [line for line in lines if line.startswith("FAIL")]


@needs_tools
def test_a_broken_rule_file_fails_and_is_named(tree: Path) -> None:
    rules = sorted((tree / "alerts").rglob("*.rules.yml"))[0]
    rules.write_text(rules.read_text().replace("expr:", "expr: sum(rate(", 1))
    failed = [r for r in check_rules(StackTree.load(tree)) if r.outcome == "fail"]
    assert [r.name for r in failed] == [f"rules {rules.relative_to(tree)}"]
    assert "parse error" in failed[0].detail or "unclosed" in failed[0].detail


@needs_tools
def test_a_broken_alertmanager_config_fails(tree: Path, tmp_path: Path) -> None:
    config = tree / "backends" / "alertmanager" / "alertmanager.yml"
    config.write_text(config.read_text().replace("receiver: blackhole", "receiver: nobody", 1))
    failed = [check_alertmanager(StackTree.load(tree), tmp_path)]
    assert failed[0].outcome == "fail" and failed[0].name.startswith("alertmanager config")
    assert "nobody" in failed[0].detail


def test_dashboards_need_uid_title_and_known_datasources(tree: Path) -> None:
    board = tree / "dashboards" / "broken.json"
    board.parent.mkdir(exist_ok=True)
    board.write_text(json.dumps({"title": "x", "panels": [{"datasource": {"uid": "influx"}}]}))
    (tree / "dashboards" / "notjson.json").write_text("{")
    results = {r.name: r for r in check_dashboards(StackTree.load(tree))}
    assert results["dashboard dashboards/broken.json"].outcome == "fail"
    assert "uid and a title" in results["dashboard dashboards/broken.json"].detail
    assert "influx" in results["dashboard dashboards/broken.json"].detail
    assert "not JSON" in results["dashboard dashboards/notjson.json"].detail


def test_a_failed_check_exits_1_with_a_hint(tree: Path) -> None:
    shutil.rmtree(tree / "alerts" / "tests", ignore_errors=True)  # keep this run short: no rule unit tests
    (tree / "dashboards").mkdir(exist_ok=True)
    (tree / "dashboards" / "notjson.json").write_text("{")
    result = CliRunner().invoke(cli, ["check", "--tree", str(tree)])
    assert result.exit_code == 1
    assert "FAIL dashboard dashboards/notjson.json: not JSON" in result.output
    assert "obsbox: 1 check(s) failed" in result.output and "hint:" in result.output
