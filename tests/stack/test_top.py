"""`obsbox top`'s screen: sparklines and the text drawn from a snapshot (the live data path is exercised against
a real Prometheus and Alertmanager in test_native_e2e.py)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from obsbox.stack.health import prometheus_query
from obsbox.stack.model import Alert
from obsbox.stack.top import Breaker, Pool, ServiceRow, Snapshot, _history, render, sparkline
from tests.tree.test_queries_e2e import PROMETHEUS, prometheus


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▁▁▁"
    assert sparkline([1, math.nan, 3]) == "▁ █"
    assert sparkline([]) == ""


def test_render_shows_services_breakers_pools_and_alerts() -> None:
    snap = Snapshot(
        services=[ServiceRow("gateway", 12.5, 0.0, 0.042, [1, 2, 3]), ServiceRow("payments", 3.2, 0.48, 1.7, [3, 2])],
        breakers=[Breaker("orders", "payments", "open", 1.5)],
        pools=[Pool("orders", "fulfilment", 4, 3, 7)],
        alerts=[Alert("HTTPServerHighErrorRate", "firing", {"service_name": "payments", "severity": "critical"},
                      "alertmanager"), Alert("Watchdog", "firing", {"severity": "info"}, "alertmanager")],
    )
    text = render(snap, colour=False)
    assert "\033[" not in text
    lines = text.splitlines()
    gateway = next(line for line in lines if line.startswith("gateway"))
    assert "12.50" in gateway and "0.0%" in gateway and "42ms" in gateway and "▁▄█" in gateway
    payments = next(line for line in lines if line.startswith("payments"))
    assert "48.0%" in payments and "1.70s" in payments
    assert any("payments" in line and "open" in line and "rejected 1.50/s" in line for line in lines)
    assert any("fulfilment" in line and "busy 3/4" in line and "queued 7" in line for line in lines)
    assert any("HTTPServerHighErrorRate payments critical" in line for line in lines)
    assert "FIRING ALERTS  (alert path working)" in text and "Watchdog" not in text
    coloured = render(snap, colour=True)
    assert "\033[31m" in coloured  # the error rate above 5 % and the alert are red


def test_an_empty_box_says_what_to_do() -> None:
    text = render(Snapshot(errors=["prometheus at http://127.0.0.1:1: refused"]), colour=False)
    assert "obsbox up --samples" in text and "none reported" in text and "! prometheus at" in text


@pytest.mark.stack
@pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus (scripts/install-system-deps.sh)")
def test_the_rate_history_is_drawn_whatever_the_clock_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real Prometheus scraping itself; `top` reads the history with the clock in the second half of a second (it
    sent the start rounded and looked the values up truncated, so every point missed on those refreshes)."""
    with prometheus(tmp_path, []) as url:
        query = 'sum by (service_name) (label_replace(up{job="prometheus"}, "service_name", "self", "", ""))'
        deadline = time.monotonic() + 30
        while not prometheus_query(url, query) and time.monotonic() < deadline:  # the first scrape
            time.sleep(0.5)
        time.sleep(3)  # so that the times below (at most 2 s ago) come after the first scrape
        real = time.time
        for fraction in (0.2, 0.7):
            now = math.floor(real()) - 1 + fraction  # a moment after the first scrape
            monkeypatch.setattr("obsbox.stack.top.time.time", lambda now=now: now)
            history = _history(url, query, 10)
            assert len(history["self"]) == 31
            assert history["self"][-1] == 1.0, (fraction, history)
            assert sparkline(history["self"]).strip() == "▁"
