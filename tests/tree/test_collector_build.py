"""collector/manifest.yaml builds exactly the Collector that collector/config.yaml needs, at the release .env pins;
the built binary (scripts/build-components.sh) knows every component type the config uses."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from obsbox.stack import binaries
from obsbox.stack.components import COMPONENTS
from obsbox.stack.tree import stack_root

ROOT = stack_root()
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")
# The Go module of each component type the config may use (the module's directory name is not always the type).
MODULE_OF_TYPE = {
    "otlp": "otlpreceiver", "memory_limiter": "memorylimiterprocessor", "batch": "batchprocessor",
    "otlp_grpc": "otlpexporter", "otlp_http": "otlphttpexporter", "debug": "debugexporter",
    "span_metrics": "spanmetricsconnector", "servicegraph": "servicegraphconnector",
    "service_graph": "servicegraphconnector", "health_check": "healthcheckextension",
}


def manifest() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "collector" / "manifest.yaml").read_text())
    return data


def used_types(section: str) -> set[str]:
    config = yaml.safe_load((ROOT / "collector" / "config.yaml").read_text())
    return {name.split("/")[0] for name in config.get(section) or {}}


def test_manifest_builds_exactly_the_components_the_config_uses_plus_debug() -> None:
    for section in SECTIONS:
        modules = {entry["gomod"].split()[0].rsplit("/", 1)[1] for entry in manifest().get(section) or []}
        wanted = {MODULE_OF_TYPE[t] for t in used_types(section)}
        if section == "exporters":
            wanted.add("debugexporter")
        assert modules == wanted, (section, modules ^ wanted)


def test_every_module_is_at_the_one_release_the_box_pins() -> None:
    versions = {entry["gomod"].split()[1] for s in SECTIONS for entry in manifest().get(s) or []}
    assert versions == {"v@OTELCOL_VERSION@"}
    assert manifest()["dist"]["version"] == "@OTELCOL_VERSION@"
    assert manifest()["dist"]["name"] == COMPONENTS["collector"].binaries[0]  # what the native runtime looks for
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(COMPONENTS["collector"].version))


def _built() -> Path | None:
    comp = COMPONENTS["collector"]
    path = binaries.cache_dir() / "collector" / str(comp.version) / comp.binaries[0]
    return path if path.is_file() else None


@pytest.mark.skipif(_built() is None and not os.environ.get("CI"),
                    reason="the Collector is not built: scripts/build-components.sh builds it (make test runs it)")
def test_the_built_collector_knows_every_type_the_config_uses_under_its_current_name() -> None:
    binary = _built()
    assert binary is not None, "scripts/build-components.sh did not build the Collector"
    out = subprocess.run([str(binary), "components"], capture_output=True, text=True, timeout=60, check=True).stdout
    listed = yaml.safe_load(out)
    assert listed["buildinfo"]["version"] == COMPONENTS["collector"].version
    for section in SECTIONS:
        known = {entry["name"] for entry in listed.get(section) or []}
        assert used_types(section) <= known, (section, used_types(section) - known)
