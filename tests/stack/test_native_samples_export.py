"""Native runtime without a collector: the sample services do not push OTLP to a port where nothing listens, so
they drop nothing and TelemetryExportDropping has nothing to fire on; with an endpoint of the user's they do push.
Observed on the running services' own /metrics and logs (real Prometheus, Alertmanager and sample processes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from obsbox.samples import load
from obsbox.stack.native import SAMPLES_OTLP_OFF_NOTE, sample_export_off
from obsbox.stack.ports import free_port
from tests.stack._harness import (
    component,
    native_session,
    needs_native_binaries,
    obsbox,
    status,
)

SHOP = ("gateway", "orders", "payments", "inventory")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with native_session(tmp_path) as env:
        for var in [v for v in env if v.startswith("OTEL_")]:  # the runtime decides, not the outer environment
            del env[var]
        yield env


def _shop_after_load(env: dict[str, str]) -> tuple[str, dict[str, str], str]:
    """`up --samples`, a little load, time for the exporters to try; (up output, /metrics per service, logs)."""
    out = obsbox(env, "up", "--samples").stdout
    urls = {name: component(status(env), name)["url"] for name in SHOP}
    summary = load.run(urls["gateway"], rps=10, duration=2.0, progress=None)
    assert summary is not None
    time.sleep(3.0)  # spans and logs leave after at most 1 s (schedule delay): any push has been tried by now
    pages = {name: httpx.get(url + "/metrics", timeout=5).text for name, url in urls.items()}
    logs = obsbox(env, "logs", "-n", "400").stdout
    return out, pages, logs


@pytest.mark.stack
@needs_native_binaries
def test_without_a_collector_the_shop_exports_nothing_and_drops_nothing(env: dict[str, str]) -> None:
    out, pages, logs = _shop_after_load(env)
    assert out.count(SAMPLES_OTLP_OFF_NOTE) == 1
    assert "http_server_request_duration_seconds_count" in pages["gateway"]  # the load did reach the services
    for name, page in pages.items():
        assert "obsbox_export_items_total" not in page, f"{name} tried to export:\n{page}"
    assert "cannot export" not in logs


@pytest.mark.stack
@needs_native_binaries
def test_an_endpoint_of_the_users_keeps_otlp_on(env: dict[str, str]) -> None:
    """The contrast: the same shop pushing to a port where nothing listens drops and says so."""
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    out, pages, logs = _shop_after_load(env)
    assert SAMPLES_OTLP_OFF_NOTE not in out
    assert 'export_outcome="dropped"' in pages["gateway"]
    assert "cannot export" in logs


def test_the_choice_of_environment() -> None:
    env: dict[str, str] = {}
    assert sample_export_off(env, collector=False)
    assert env == {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    env = {}
    assert not sample_export_off(env, collector=True) and env == {}
    env = {"OBSBOX_ENDPOINT": "http://collector.example:4318"}
    assert not sample_export_off(env, collector=False) and "OTEL_TRACES_EXPORTER" not in env
    env = {"OTEL_TRACES_EXPORTER": "otlp"}  # a user's explicit choice stands
    assert sample_export_off(env, collector=False) and env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_LOGS_EXPORTER"] == "none"
