"""`obsbox top`'s screen: sparklines and the text drawn from a snapshot (the live data path is exercised against
a real Prometheus and Alertmanager in test_native_e2e.py)."""

from __future__ import annotations

import math

from obsbox.stack.model import Alert
from obsbox.stack.top import Breaker, Pool, ServiceRow, Snapshot, render, sparkline


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
