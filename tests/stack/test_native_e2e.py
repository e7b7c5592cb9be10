"""End to end on the native runtime, with Debian's real Prometheus and Alertmanager and the real sample shop.

up --samples → load → `obsbox chaos payments --error-rate 0.5` → HTTPServerHighErrorRate fires in Prometheus and
reaches Alertmanager's API → `--reset` → it resolves → `down` leaves no process behind.

Only configuration is sped up: OBSBOX_SCRAPE_INTERVAL / OBSBOX_EVALUATION_INTERVAL (3 s). The rule is the
shipped one (5-minute error ratio > 5 %, for 1m). To see it resolve without waiting five minutes for the errors to
leave its window, the load is light while payments fails (3 requests/s at the gateway, of which payments sees
about a quarter) and heavier after the reset (25/s): the ratio then falls below 5 % because healthy requests outnumber the old errors, which is exactly how the
rule is meant to read the traffic.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from obsbox.samples import load
from tests.stack._harness import (
    alive,
    component,
    native_env,
    needs_native_binaries,
    obsbox,
    status,
    supervised_pids,
    wait_for,
)

pytestmark = [pytest.mark.stack, pytest.mark.slow, needs_native_binaries, pytest.mark.timeout(420)]

ALERT = "HTTPServerHighErrorRate"


class _Load:
    """Load through the gateway at a rate that can change while it runs (bounded by `stop()` and a deadline)."""

    def __init__(self, gateway: str, rps: float, deadline: float) -> None:
        self.gateway, self.rps, self.deadline = gateway, rps, deadline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            load.run(self.gateway, rps=self.rps, duration=3.0, progress=None, timeout=3.0)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _prometheus_alert(prometheus: str, service: str) -> dict[str, Any] | None:
    body = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()
    for alert in body["data"]["alerts"]:
        labels = alert["labels"]
        if labels.get("alertname") == ALERT and labels.get("service_name") == service:
            return dict(alert)
    return None


def _alertmanager_alert(alertmanager: str, service: str) -> dict[str, Any] | None:
    for alert in httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json():
        labels = alert["labels"]
        if labels.get("alertname") == ALERT and labels.get("service_name") == service:
            return dict(alert)
    return None


def _wait(what: str, predicate: Any, timeout: float) -> Any:
    return wait_for(predicate, timeout=timeout, every=2.0, what=what)


def test_alert_fires_reaches_alertmanager_resolves_and_down_leaves_nothing(tmp_path: Path) -> None:
    env = native_env(tmp_path, OBSBOX_SCRAPE_INTERVAL="3s", OBSBOX_EVALUATION_INTERVAL="3s")
    began = time.monotonic()
    pids: set[int] = set()
    traffic: _Load | None = None
    try:
        up = obsbox(env, "up", "--samples", timeout=180)
        assert "not available here" in up.stdout and "grafana" in up.stdout  # named, with the reason
        report = status(env)
        assert report["runtime"] == "native"
        for name in ("prometheus", "alertmanager", "gateway", "orders", "payments", "inventory"):
            assert component(report, name)["state"] == "healthy", report
        prometheus = component(report, "prometheus")["url"]
        alertmanager = component(report, "alertmanager")["url"]
        gateway = component(report, "gateway")["url"]
        pids = supervised_pids(tmp_path / "state")
        assert len(pids) == 12  # six supervisors, six components

        traffic = _Load(gateway, rps=3.0, deadline=time.monotonic() + 400)
        # Prometheus scrapes the shop's pull endpoints (file discovery written by the native runtime).
        _wait("payments' request metrics in Prometheus", lambda: httpx.get(
            f"{prometheus}/api/v1/query", params={"query": 'http_server_request_duration_seconds_count{service_name="payments"}'},
            timeout=5).json()["data"]["result"], timeout=60)
        # Half a minute of healthy traffic first, so the rule's minimum-traffic condition already holds when the
        # errors start and the alert's clock is the error ratio alone.
        time.sleep(30)

        chaos = obsbox(env, "chaos", "payments", "--error-rate", "0.5")
        assert "error_rate=0.5" in chaos.stdout
        chaos_at = time.monotonic()
        firing = _wait("the alert to fire in Prometheus", lambda: (a := _prometheus_alert(prometheus, "payments"))
                       and a["state"] == "firing" and a, timeout=200)
        assert firing["labels"]["severity"] == "critical"
        fired_after = time.monotonic() - chaos_at
        routed = _wait("the alert in Alertmanager", lambda: _alertmanager_alert(alertmanager, "payments"), timeout=60)
        assert routed["status"]["state"] == "active"
        assert any(a["name"] == ALERT and a["labels"].get("service_name") == "payments" for a in status(env)["alerts"])
        # `obsbox top` reads the same APIs: the shop's traffic, payments' errors, the firing alert.
        screen = obsbox(env, "top", "--once").stdout.splitlines()
        row = next(line for line in screen if line.startswith("payments "))
        assert float(row.split()[2].rstrip("%")) > 5.0
        assert any(line.startswith("gateway ") for line in screen)
        text = obsbox(env, "status").stdout
        assert "alerting path: working (Watchdog reached alertmanager)" in text
        assert "HTTPServerHighErrorRate payments critical" in text
        assert any(ALERT in line and "payments" in line for line in screen)

        obsbox(env, "chaos", "payments", "--reset")
        reset_at = time.monotonic()
        traffic.rps = 25.0
        _wait("the alert to resolve in Prometheus and Alertmanager",
              lambda: _prometheus_alert(prometheus, "payments") is None
              and _alertmanager_alert(alertmanager, "payments") is None, timeout=180)
        traffic.stop()
        print(f"\nalert fired {fired_after:.0f}s after the chaos command, resolved "
              f"{time.monotonic() - reset_at:.0f}s after the reset; whole run {time.monotonic() - began:.0f}s")
    finally:
        if traffic is not None:
            traffic.stop()
        down = obsbox(env, "down", timeout=120, check=False)
    assert down.returncode == 0, down.stderr
    assert pids and not [p for p in pids if alive(p)], "processes left behind after down"
    assert obsbox(env, "status", "--json").stdout.count('"state": "healthy"') == 0
