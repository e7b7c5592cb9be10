"""A user's own service in the box without Docker: tests/apps/inventory (FastAPI under uvicorn, the README's two
lines) next to a native box.

- no collector: the service serves /metrics and `obsbox scrape add` makes the real Prometheus scrape it;
- with the native Collector (and Prometheus 3) built from Go modules: the service pushes OTLP to obsbox's default
  endpoint, 127.0.0.1:4318, and nothing is registered.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from obsbox.stack import binaries
from obsbox.stack.components import COMPONENTS
from obsbox.testing import OTLPReceiver
from tests._apps import APPS, app_env, get, serve
from tests._processes import free_port
from tests.stack._harness import component, native_env, needs_native_binaries, obsbox, status

pytestmark = [pytest.mark.stack, pytest.mark.slow]
SERIES = 'http_server_request_duration_seconds_count{service_name="inventory",http_route="/stock/{sku}"}'


def wait_until(what: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(1)


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    return list(body["data"]["result"])


def test_bad_targets_are_bad_input(tmp_path: Path) -> None:
    env = native_env(tmp_path)
    for address in ("127.0.0.1", "127.0.0.1:99999", "http://x y:80"):
        result = obsbox(env, "scrape", "add", address, check=False)
        assert result.returncode == 2 and "is not a host:port" in result.stderr, result.stderr
    assert obsbox(env, "scrape", "remove", "127.0.0.1:9464", check=False).returncode == 2
    assert "no scrape targets" in obsbox(env, "scrape", "list").stdout


@needs_native_binaries
def test_without_a_collector_obsbox_scrape_add_puts_the_service_in_the_box(tmp_path: Path) -> None:
    env = native_env(tmp_path, OBSBOX_SCRAPE_INTERVAL="1s")
    metrics_port, port = free_port(), free_port()
    try:
        up = obsbox(env, "up", "--runtime", "native")
        assert "obsbox scrape add 127.0.0.1:9464" in up.stdout  # up says how, since no collector runs
        prometheus = str(component(status(env), "prometheus")["url"])
        with OTLPReceiver() as receiver, serve(
                [sys.executable, "-m", "uvicorn", "inventory.main:app", "--port", str(port)], APPS / "inventory",
                app_env(receiver, OBSBOX_IN_APP="1", OBSBOX_METRICS_PORT=str(metrics_port)), port):
            added = obsbox(env, "scrape", "add", f"127.0.0.1:{metrics_port}")
            assert "obsbox-user-targets.json" in added.stdout
            assert get(port, "/stock/apple")[0] == 200
            wait_until(lambda: _query(prometheus, SERIES), timeout=60)
            listed = obsbox(env, "scrape", "list").stdout
            assert f"127.0.0.1:{metrics_port}" in listed and " up" in listed, listed
        # Kept across down/up; removed on request.
        obsbox(env, "down")
        assert f"127.0.0.1:{metrics_port}" in obsbox(env, "scrape", "list").stdout
        obsbox(env, "scrape", "remove", f"127.0.0.1:{metrics_port}")
        assert "no scrape targets" in obsbox(env, "scrape", "list").stdout
    finally:
        obsbox(env, "down", check=False)


def _pinned(name: str) -> bool:
    comp = COMPONENTS[name]
    return (binaries.cache_dir() / name / str(comp.version) / comp.binaries[0]).is_file()


@pytest.mark.skipif(not (_pinned("collector") and _pinned("prometheus")) and not os.environ.get("CI"),
                    reason="the Collector and Prometheus 3 are not built (scripts/build-components.sh builds them; "
                           "make test runs it)")
def test_with_the_native_collector_the_default_push_reaches_prometheus(tmp_path: Path) -> None:
    env = native_env(tmp_path, OBSBOX_SCRAPE_INTERVAL="1s")
    env.pop("OBSBOX_CACHE_DIR")  # the built binaries in the real cache
    port = free_port()
    try:
        up = obsbox(env, "up", "--runtime", "native", timeout=240)
        assert component(status(env), "collector")["state"] == "healthy", up.stdout
        assert "push OTLP to http://127.0.0.1:4318" in up.stdout
        prometheus = str(component(status(env), "prometheus")["url"])
        service_env = app_env(None, OBSBOX_IN_APP="1", OBSBOX_METRIC_EXPORT_INTERVAL="1000")
        with serve([sys.executable, "-m", "uvicorn", "inventory.main:app", "--port", str(port)], APPS / "inventory",
                   service_env, port):
            assert get(port, "/stock/apple")[0] == 200
            wait_until(lambda: _query(prometheus, SERIES), timeout=90)
        assert "no scrape targets" in obsbox(env, "scrape", "list").stdout  # nothing was registered
    finally:
        obsbox(env, "down", check=False)
