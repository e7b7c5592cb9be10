"""The services are documentation by example: they use only what a user of obsbox can use."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import obsbox
import obsbox.resilience
from obsbox.samples import SERVICES

SAMPLES = Path(obsbox.__file__).parent / "samples"
# Public names a service may take from obsbox; the samples' own demo machinery (fault injection, env reading)
# lives in obsbox.samples._* and is not part of what they show.
ALLOWED = {
    "obsbox": set(obsbox.__all__),
    "obsbox.resilience": set(obsbox.resilience.__all__),
    "obsbox.instrumentation.pull": {"exposition"},
}


@pytest.mark.parametrize("service", [*SERVICES, "fulfilment"])  # the four services and the Celery worker
def test_service_imports_only_the_public_api(service: str) -> None:
    tree = ast.parse((SAMPLES / f"{service}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("obsbox.") or alias.name.startswith("obsbox.samples._"), alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "obsbox":
            if node.module.startswith("obsbox.samples._"):
                continue
            assert node.module in ALLOWED, f"{service} imports from {node.module}"
            names = {alias.name for alias in node.names}
            assert names <= ALLOWED[node.module], f"{service}: {names - ALLOWED[node.module]} from {node.module}"


@pytest.mark.parametrize("service", list(SERVICES))
def test_each_service_module_builds_its_app_through_create_app(service: str) -> None:
    module = importlib.import_module(SERVICES[service].module)
    assert callable(module.create_app) and module.__doc__ and "obsbox" in module.__doc__
