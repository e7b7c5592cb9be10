"""`obsbox check`: validate a (user-modified) stack tree with the real tools, where they are installed.

>>> from obsbox.stack.check import check_tree
>>> for result in check_tree():                  # doctest: +SKIP
...     print(result.outcome, result.name)
ok compose file
ok prometheus config (promtool 2.42.0)
...

Checks: stack.yml loaded by the real Docker Compose (`docker compose config`, with no profile and with each
profile: .env interpolation, undefined services and volumes, a profile that leaves out a dependency) and then held
to what the box promises (ports on 127.0.0.1 only, images pinned in .env and never `latest`, `service_healthy`
only on services with a health check); without a Compose CLI, the same promises on the file as written. The
Prometheus config as the local Prometheus
would load it (rendered like the native runtime does) with `promtool check config`; every rule file with
`promtool check rules`; the rule unit tests with `promtool test rules`; the Alertmanager config with
`amtool check-config`; every dashboard JSON (parses, uid and title, unique uids, datasource uids that exist).
A missing tool turns its check into a skip that says how to get it. This module is the reusable core; the
tree's own tests pin the same facts with the same tools.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from obsbox.stack.binaries import find_tool as _tool
from obsbox.stack.compose import ComposeLoadError, StackTree, compose_cli, compose_version, load_project
from obsbox.stack.native_config import dump, render_alertmanager, render_prometheus

Outcome = Literal["ok", "fail", "skip"]
DATASOURCE_UIDS = ("prometheus", "loki", "jaeger", "pyroscope", "alertmanager", "-- Grafana --", "grafana")


@dataclass
class CheckResult:
    name: str
    outcome: Outcome
    detail: str = ""

    @classmethod
    def of(cls, name: str, ok: bool, detail: str) -> CheckResult:
        """Outcome "ok" (and no detail) when `ok`, else "fail" with `detail` saying why."""
        return cls(name, "ok", "") if ok else cls(name, "fail", detail)


def _run(argv: list[str], cwd: Path | None = None) -> tuple[bool, str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    text = (out.stdout + out.stderr).strip()
    return out.returncode == 0, text


def _tool_version(tool: str) -> str | None:
    ok, text = _run([tool, "--version"])
    match = re.search(r"(\d+\.\d+\.\d+)", text)
    return match.group(1) if match else None


_NO_COMPOSE = ("no Docker Compose v2+ found, so only the file as written was checked "
               "(`obsbox build` builds the pinned one with the other components; in a checkout, "
               "scripts/build-components.sh compose builds it alone)")


def compose_promises(project: dict[str, Any], pins: dict[str, str]) -> list[str]:
    """What the box promises of a Compose project (as `docker compose config` normalises it): every published port
    on 127.0.0.1, every image either built or pinned in .env and never `latest`, and `service_healthy` only on a
    service that has a health check. One line per broken promise."""
    problems = []
    services = project.get("services") or {}
    pinned = set(pins.values())
    for name, svc in sorted(services.items()):
        for port in svc.get("ports") or []:
            if port.get("published") and port.get("host_ip") != "127.0.0.1":
                problems.append(f"{name}: port {port['published']} is published on "
                                f"{port.get('host_ip') or 'every interface'}, not 127.0.0.1")
        image = str(svc.get("image") or "")
        if "build" not in svc:
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            if image not in pinned:
                problems.append(f"{name}: image {image!r} is not one of the pins in .env")
            if tag in ("", "latest"):
                problems.append(f"{name}: image {image!r} is not pinned to a version")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if cond.get("condition") == "service_healthy" and not (services.get(dep) or {}).get("healthcheck"):
                problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no health check")
    return problems


def check_compose(tree: StackTree, env: dict[str, str] | None = None) -> list[CheckResult]:
    """stack.yml through the real Compose loader (no profile, then each profile), else the file as written."""
    cli = compose_cli()
    if cli is None:
        return [_check_compose_as_written(tree)]
    version = compose_version(cli)
    run_env = dict(os.environ if env is None else env)
    # What `obsbox up` sets: the file requires a Grafana password and interpolation must not stop there.
    run_env.setdefault("OBSBOX_GRAFANA_PASSWORD", "obsbox-check")
    pins = tree.dotenv()
    results = []
    profiles = sorted({str(p) for svc in tree.services.values() for p in svc.get("profiles") or []})
    for profile in [None, *profiles]:
        name = f"compose file{f' --profile {profile}' if profile else ''} (docker compose {version} config)"
        try:
            loaded = load_project(cli, tree.root, profiles=[profile] if profile else [], env=run_env)
        except ComposeLoadError as e:
            results.append(CheckResult(name, "fail", e.message))
            continue
        problems = [f"Compose {w}" for w in loaded.warnings] + compose_promises(loaded.project, pins)
        results.append(CheckResult.of(name, not problems, "; ".join(problems)))
    return results


def _check_compose_as_written(tree: StackTree) -> CheckResult:
    problems = []
    if not tree.services:
        problems.append("stack.yml defines no services")
    for name, svc in tree.services.items():
        if not svc.get("image") and not svc.get("build"):
            problems.append(f"{name}: no image")
        for spec in svc.get("ports") or []:
            text = tree.interpolate(str(spec)) if not isinstance(spec, dict) else str(spec.get("host_ip", ""))
            if isinstance(spec, dict) and spec.get("host_ip") != "127.0.0.1" or (
                    not isinstance(spec, dict) and not text.startswith("127.0.0.1:")):
                problems.append(f"{name}: port {spec} is not bound to 127.0.0.1")
    if problems:
        return CheckResult("compose file (as written)", "fail", "; ".join(problems))
    return CheckResult("compose file (as written)", "ok", _NO_COMPOSE)


def _promtool() -> str | None:
    found = _tool("promtool")
    return str(found) if found else None


_NO_PROMTOOL = "promtool not found (`obsbox build prometheus`, or Debian: apt-get install prometheus)"


def check_prometheus_config(tree: StackTree, tmp: Path) -> list[CheckResult]:
    """The config as the local Prometheus would load it (rendered like the native runtime does)."""
    promtool = _promtool()
    if promtool is None:
        return [CheckResult("prometheus config", "skip", _NO_PROMTOOL)]
    version = _tool_version(promtool)
    config, _ = render_prometheus(tree, ports={"prometheus": 9090, "alertmanager": 9093}, version=version,
                                  state=tmp / "prometheus")
    rendered = dump(config, tmp / "prometheus.yml")
    ok, text = _run([promtool, "check", "config", str(rendered)])
    results = [CheckResult.of(f"prometheus config (promtool {version})", ok, text)]
    patterns = [str(p) for p in config.get("rule_files") or []]
    matched = [p for p in patterns if glob.glob(p)]
    results.append(CheckResult.of("prometheus loads rule files", bool(matched or not patterns),
                                  f"no file matches {', '.join(patterns)}"))
    return results


def check_rules(tree: StackTree) -> list[CheckResult]:
    """Every alerts/**/*.rules.yml with `promtool check rules`."""
    promtool = _promtool()
    if promtool is None:
        return [CheckResult("prometheus rules", "skip", _NO_PROMTOOL)]
    results = []
    for rules in sorted((tree.root / "alerts").rglob("*.rules.yml")):
        ok, text = _run([promtool, "check", "rules", str(rules)])
        results.append(CheckResult.of(f"rules {rules.relative_to(tree.root)}", ok, text))
    return results


def check_rule_tests(tree: StackTree) -> list[CheckResult]:
    """Every rule unit-test file under alerts/ (a YAML with rule_files and tests) with `promtool test rules`."""
    promtool = _promtool()
    if promtool is None:
        return [CheckResult("rule tests", "skip", _NO_PROMTOOL)]
    results = []
    for test in sorted((tree.root / "alerts").rglob("*.y*ml")):
        data = _safe_yaml(test)
        if isinstance(data, dict) and "tests" in data and "rule_files" in data:
            ok, text = _run([promtool, "test", "rules", test.name], cwd=test.parent)
            results.append(CheckResult.of(f"rule tests {test.relative_to(tree.root)}", ok, text[-2000:]))
    return results


def check_alertmanager(tree: StackTree, tmp: Path) -> CheckResult:
    found = _tool("amtool")
    amtool = str(found) if found else None
    if amtool is None:
        return CheckResult("alertmanager config", "skip",
                           "amtool not found (`obsbox build alertmanager`, or Debian: apt-get install prometheus-alertmanager)")
    rendered = dump(render_alertmanager(tree, ports={"alertmanager": 9093}), tmp / "alertmanager.yml")
    ok, text = _run([amtool, "check-config", str(rendered)])
    return CheckResult.of(f"alertmanager config (amtool {_tool_version(amtool)})", ok, text)


def check_dashboards(tree: StackTree) -> list[CheckResult]:
    results = []
    seen: dict[str, Path] = {}
    for path in sorted((tree.root / "dashboards").rglob("*.json")):
        name = f"dashboard {path.relative_to(tree.root)}"
        try:
            board = json.loads(path.read_text())
        except ValueError as e:
            results.append(CheckResult(name, "fail", f"not JSON: {e}"))
            continue
        problems = []
        if not isinstance(board, dict):
            results.append(CheckResult(name, "fail", "not a JSON object"))
            continue
        uid = board.get("uid")
        if not uid or not board.get("title"):
            problems.append("needs a uid and a title")
        elif uid in seen:
            problems.append(f"uid {uid!r} also used by {seen[uid].name}")
        else:
            seen[str(uid)] = path
        for ds in _datasources(board):
            if ds not in DATASOURCE_UIDS and not ds.startswith("$"):
                problems.append(f"unknown datasource uid {ds!r}")
        results.append(CheckResult.of(name, not problems, "; ".join(sorted(set(problems)))))
    return results


def _datasources(node: Any) -> list[str]:
    found = []
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict) and isinstance(ds.get("uid"), str):
            found.append(ds["uid"])
        for value in node.values():
            found += _datasources(value)
    elif isinstance(node, list):
        for value in node:
            found += _datasources(value)
    return found


def _safe_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError):
        return None


def check_tree(root: Path | None = None) -> list[CheckResult]:
    """Run every check on the tree at `root` (default: the one `obsbox up` runs)."""
    tree = StackTree.load(root)
    results = check_compose(tree)
    with tempfile.TemporaryDirectory(prefix="obsbox-check-") as tmp:
        results += check_prometheus_config(tree, Path(tmp))
        results += check_rules(tree)
        results += check_rule_tests(tree)
        results.append(check_alertmanager(tree, Path(tmp)))
    results += check_dashboards(tree)
    return results
