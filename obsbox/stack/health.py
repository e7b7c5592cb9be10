"""Small HTTP reads against the components: health checks and the Prometheus/Alertmanager JSON APIs.

>>> from obsbox.stack.health import http_ok
>>> http_ok("http://127.0.0.1:9/-/ready", timeout=0.2)
False
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from obsbox.stack.model import Alert


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when GET `url` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def get_json(url: str, params: dict[str, str] | None = None, timeout: float = 5.0) -> Any:
    """GET `url` (with query `params`) and decode JSON; raises OSError (incl. URLError) on failure."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def prometheus_query(base: str, query: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The result vector of an instant PromQL query."""
    body = get_json(f"{base}/api/v1/query", {"query": query}, timeout)
    return list(body.get("data", {}).get("result", []))


def alertmanager_alerts(base: str, timeout: float = 5.0) -> list[Alert]:
    """Active (firing, not silenced) alerts as Alertmanager holds them (/api/v2/alerts)."""
    alerts = []
    for item in get_json(f"{base}/api/v2/alerts", {"active": "true", "silenced": "false"}, timeout):
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        annotations = item.get("annotations") or {}
        alerts.append(Alert(labels.get("alertname", "?"), "firing", labels, "alertmanager",
                            item.get("startsAt"), annotations.get("summary")))
    return alerts


def prometheus_alerts(base: str, timeout: float = 5.0) -> list[Alert]:
    """Pending and firing alerts as Prometheus evaluates them (/api/v1/alerts)."""
    body = get_json(f"{base}/api/v1/alerts", None, timeout)
    alerts = []
    for item in body.get("data", {}).get("alerts", []):
        labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
        annotations = item.get("annotations") or {}
        alerts.append(Alert(labels.get("alertname", "?"), str(item.get("state")), labels, "prometheus",
                            item.get("activeAt"), annotations.get("summary")))
    return alerts


def firing_alerts(prometheus: str | None, alertmanager: str | None) -> tuple[list[Alert], str | None]:
    """Alerts that fire: from Alertmanager when it runs (what routing sees), else Prometheus; plus an error text."""
    errors = []
    if alertmanager:
        try:
            return alertmanager_alerts(alertmanager), None
        except (OSError, ValueError) as e:
            errors.append(f"alertmanager: {e}")
    if prometheus:
        try:
            return [a for a in prometheus_alerts(prometheus) if a.state == "firing"], "; ".join(errors) or None
        except (OSError, ValueError) as e:
            errors.append(f"prometheus: {e}")
    return [], "; ".join(errors) or None
