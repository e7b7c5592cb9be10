"""Writes obsbox's Grafana dashboards (dashboards/obsbox/*.json) from one description.

Usage:
    python dashboards/generate.py          # rewrite the JSON files
    python dashboards/generate.py --check  # exit 1 if a JSON file differs from what this script writes

The JSON files are what Grafana provisions (the sub-folder obsbox/ becomes the Grafana folder "obsbox"); this
script keeps the eight dashboards consistent: the same datasource uids, variables, units, thresholds and
cross-links everywhere. Every query keys on the semantic-convention metric names and the service_name label;
nothing names a particular service.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "obsbox"

PROM = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}
ALERTMANAGER = {"type": "alertmanager", "uid": "alertmanager"}
#: Grafana's silences page with the box's Alertmanager data source (provisioned under the name "Alertmanager").
SILENCES_URL = "/alerting/silences?alertmanager=Alertmanager"
JAEGER = {"type": "jaeger", "uid": "jaeger"}
PYROSCOPE = {"type": "grafana-pyroscope-datasource", "uid": "pyroscope"}
# Pyroscope's id of on-CPU time (name:sample type:unit:period type:unit): what a CPU profile pushed as pprof with
# sample type cpu/nanoseconds is stored as. The Jaeger datasource's traces-to-profiles link uses the same id.
CPU_PROFILE = "process_cpu:cpu:nanoseconds:cpu:nanoseconds"

UIDS = {
    "overview": "obsbox-services-overview",
    "detail": "obsbox-service-detail",
    "slos": "obsbox-slos",
    "resilience": "obsbox-resilience",
    "runtime": "obsbox-runtime",
    "logs": "obsbox-logs",
    "stack": "obsbox-stack-health",
    "dependencies": "obsbox-dependencies",
}

# The selector every service query starts from; $service_name and $environment are dashboard variables. The
# environment (deployment.environment.name) defaults to All (.*), which also matches services that set none.
SVC_ONLY = 'service_name=~"$service_name"'
ENV = 'deployment_environment_name=~"$environment"'
SVC = f"{SVC_ONLY}, {ENV}"
HTTP_DURATION = "http_server_request_duration_seconds"
CLIENT_DURATION = "http_client_request_duration_seconds"
# What a service waits on, by the stable semantic conventions (Prometheus' OTLP translation: dots become
# underscores, the unit a suffix): database and cache operations, messages sent and processed, outgoing RPCs.
DB_DURATION = "db_client_operation_duration_seconds"
SEND_DURATION = "messaging_client_operation_duration_seconds"
PROCESS_DURATION = "messaging_process_duration_seconds"
RPC_DURATION = "rpc_client_call_duration_seconds"
ERRORS_5XX = 'http_response_status_code=~"5.."'
ERROR_LEVELS = 'severity_text=~"ERROR|CRITICAL|FATAL"'
# Every OTLP log line carries its trace_id / span_id as structured metadata, and a LogQL range aggregation keeps
# each line's labels: without this stage each request would be a series of its own. (Loki pushes the grouping of
# a `sum by` down into the extraction, so the sums below were right already; dropping the ids keeps every query
# bounded whatever wraps it, an edited panel or Explore included.)
DROP_IDS = "drop trace_id, span_id"
# The search box as a case-insensitive "line contains". Left to itself Grafana's Loki datasource inserts a
# single-value textbox as typed; an explicit format replaces that: ${search:regex} escapes every regex
# metacharacter (and nothing else), and the backtick-quoted LogQL string takes the result as it is - in a
# double-quoted string the escapes (`\(`) would be invalid string escapes. A backtick in the box still ends the
# string: LogQL raw strings cannot contain one, and no Grafana format escapes it.
SEARCH_FILTER = "`(?i)${search:regex}`"
# The slow-operation lines of the database and cache integrations (integrations/_db.py) and of Celery tasks
# (integrations/celery.py) carry duration_s as a number; Loki keeps log attributes as structured metadata, and a
# numeric label filter drops every line without that field (pkg/logql/log: a missing label does not pass), so
# this selects the slow operations only.
SLOW = "duration_s >= $slow_s"

Panel = dict[str, Any]


# --- building blocks ------------------------------------------------------------------------------------------


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


GREEN = thresholds((None, "green"))
ERROR_RATIO = thresholds((None, "green"), (0.01, "yellow"), (0.05, "red"))
LATENCY_S = thresholds((None, "green"), (0.5, "yellow"), (1, "red"))
USAGE_RATIO = thresholds((None, "green"), (0.8, "yellow"), (0.9, "red"))
BURN_RATE = thresholds((None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red"))
ANY_IS_BAD = thresholds((None, "green"), (0.000001, "red"))


def prom(expr: str, legend: str = "", *, instant: bool = False, table: bool = False, exemplar: bool = False,
         heatmap: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": PROM, "expr": expr, "legendFormat": legend or "__auto",
                              "range": not instant, "instant": instant, "exemplar": exemplar}
    if table:
        target["format"] = "table"
    if heatmap:
        target["format"] = "heatmap"
    return target


def loki(expr: str, legend: str = "", *, logs: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": LOKI, "expr": expr, "queryType": "range"}
    if not logs:
        target["legendFormat"] = legend or "__auto"
    return target


def detail_link(field_ref: str) -> dict[str, Any]:
    """A data link to the service detail dashboard for the service of the clicked value."""
    return {"title": "Service detail: ${" + field_ref + "}",
            "url": f"/d/{UIDS['detail']}?var-service_name=${{{field_ref}}}&${{__url_time_range}}"}


def panel(kind: str, title: str, description: str, targets: list[dict[str, Any]], *, unit: str,
          datasource: dict[str, str] = PROM, thresholds_: dict[str, Any] | None = None,
          w: int = 12, h: int = 8, options: dict[str, Any] | None = None, custom: dict[str, Any] | None = None,
          overrides: list[dict[str, Any]] | None = None, links: list[dict[str, Any]] | None = None,
          extra: dict[str, Any] | None = None, **defaults: Any) -> Panel:
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    field_defaults: dict[str, Any] = {"unit": unit, "thresholds": thresholds_ or GREEN, **defaults}
    if thresholds_ is not None and "color" not in field_defaults:
        field_defaults["color"] = {"mode": "thresholds"}
    if custom:
        field_defaults["custom"] = custom
    if links:
        field_defaults["links"] = links
    p: Panel = {
        "type": kind, "title": title, "description": description, "datasource": datasource,
        "targets": targets, "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "options": options or {}, "gridPos": {"w": w, "h": h},
    }
    p.update(extra or {})
    return p


def timeseries(title: str, description: str, targets: list[dict[str, Any]], *, unit: str,
               stack: bool = False, bars: bool = False, **kw: Any) -> Panel:
    custom = {"drawStyle": "bars" if bars else "line", "lineWidth": 1, "fillOpacity": 60 if bars else 10,
              "showPoints": "never", "spanNulls": False,
              "stacking": {"mode": "normal" if stack else "none", "group": "A"},
              "thresholdsStyle": {"mode": "dashed" if kw.get("thresholds_") else "off"}}
    options = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "max", "lastNotNull"]},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    return panel("timeseries", title, description, targets, unit=unit, custom=custom, options=options, **kw)


def stat(title: str, description: str, targets: list[dict[str, Any]], *, unit: str, w: int = 6, h: int = 5,
         sparkline: bool = True, **kw: Any) -> Panel:
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "graphMode": "area" if sparkline else "none", "colorMode": "background",
               "textMode": "value_and_name", "orientation": "auto", "justifyMode": "auto"}
    return panel("stat", title, description, targets, unit=unit, options=options, w=w, h=h, **kw)


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def logs_panel(title: str, description: str, expr: str, *, w: int = 24, h: int = 12) -> Panel:
    options = {"showTime": True, "wrapLogMessage": True, "enableLogDetails": True, "sortOrder": "Descending",
               "dedupStrategy": "none", "prettifyLogMessage": False, "showLabels": False,
               "showCommonLabels": False}
    return panel("logs", title, description, [loki(expr, logs=True)], unit="none", datasource=LOKI,
                 options=options, w=w, h=h)


def service_variable(query: str, *, multi: bool, label: str = "Service") -> dict[str, Any]:
    var: dict[str, Any] = {
        "name": "service_name", "label": label, "type": "query", "datasource": PROM,
        # A plain-string query: what every Grafana version runs as is (the query editor's object form differs
        # between versions).
        "query": query, "definition": query, "refresh": 2, "sort": 1, "multi": multi, "includeAll": multi,
        "current": {},
    }
    if multi:
        var["allValue"] = ".+"
    return var


def environment_variable(metric: str) -> dict[str, Any]:
    """deployment.environment.name as a variable; All (.*) also matches series without the label."""
    query = f"label_values({metric}, deployment_environment_name)"
    return {"name": "environment", "label": "Environment", "type": "query", "datasource": PROM, "query": query,
            "definition": query, "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*",
            "current": {}}


def link_bar() -> list[dict[str, Any]]:
    """Every dashboard links to the others (they share the tag obsbox), keeping time range and variables."""
    return [{"title": "obsbox", "type": "dashboards", "tags": ["obsbox"], "asDropdown": False,
             "includeVars": True, "keepTime": True, "targetBlank": False, "icon": "external link"}]


def layout(panels: list[Panel]) -> list[Panel]:
    """Places panels left to right, top to bottom, on Grafana's 24-column grid, and numbers them."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        row_h = max(row_h, h)
    return panels


def dashboard(key: str, title: str, description: str, panels: list[Panel], variables: list[dict[str, Any]],
              *, tags: list[str], links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "uid": UIDS[key], "title": title, "description": description, "tags": ["obsbox", *tags],
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "timezone": "browser",
        "time": {"from": "now-1h", "to": "now"}, "refresh": "30s", "fiscalYearStartMonth": 0, "liveNow": False,
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [*(links or []), *link_bar()],
        "templating": {"list": variables},
        "panels": layout(panels),
    }


# --- 1. services overview -------------------------------------------------------------------------------------


def services_overview() -> dict[str, Any]:
    by = "sum by (service_name)"
    count = f"{HTTP_DURATION}_count{{{SVC}}}"
    rate_all = f"{by} (rate({count}[$__rate_interval]))"
    rate_err = f'{by} (rate({HTTP_DURATION}_count{{{SVC}, {ERRORS_5XX}}}[$__rate_interval]))'
    err_ratio = f"({rate_err} or 0 * {rate_all}) / {rate_all}"

    def quantile(q: str) -> str:
        return (f"histogram_quantile({q}, sum by (service_name, le) "
                f"(rate({HTTP_DURATION}_bucket{{{SVC}}}[$__rate_interval])))")

    firing = (f'count by (service_name) (ALERTS{{alertstate="firing", {SVC}}}) '
              f"or 0 * group by (service_name) ({count})")
    columns = [("A", "Requests/s", "reqps", None), ("B", "Errors (5xx)", "percentunit", ERROR_RATIO),
               ("C", "p50", "s", LATENCY_S), ("D", "p95", "s", LATENCY_S), ("E", "p99", "s", LATENCY_S),
               ("F", "Firing alerts", "none", ANY_IS_BAD)]
    overrides = [{"matcher": {"id": "byName", "options": "Service"},
                  "properties": [{"id": "links", "value": [detail_link("__value.raw")]}]}]
    for _ref, name, unit, th in columns:
        props: list[dict[str, Any]] = [{"id": "unit", "value": unit}]
        if th:
            props += [{"id": "thresholds", "value": th}, {"id": "color", "value": {"mode": "thresholds"}},
                      {"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}}]
        overrides.append({"matcher": {"id": "byName", "options": name}, "properties": props})
    table = panel(
        "table", "Services",
        "Every service that serves HTTP, over the last few minutes: request rate, share of 5xx answers, "
        "latency percentiles and firing alerts. Click a service for its detail dashboard.",
        [prom(rate_all, instant=True, table=True), prom(err_ratio, instant=True, table=True),
         prom(quantile("0.50"), instant=True, table=True), prom(quantile("0.95"), instant=True, table=True),
         prom(quantile("0.99"), instant=True, table=True), prom(firing, instant=True, table=True)],
        unit="short", w=24, h=9, overrides=overrides,
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False},
                 "sortBy": [{"displayName": "Errors (5xx)", "desc": True}]},
        extra={"transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True},
                "indexByName": {"service_name": 0, **{f"Value #{r}": i for i, (r, *_x) in enumerate(columns, 1)}},
                "renameByName": {"service_name": "Service", **{f"Value #{r}": n for r, n, *_x in columns}},
            }},
        ]},
    )
    link = [detail_link("__field.labels.service_name")]
    panels = [
        row("All services"),
        table,
        stat("Request rate", "Requests per second per service; the sparkline shows the selected time range.",
             [prom(rate_all, "{{service_name}}")], unit="reqps", w=8, h=6, links=link),
        stat("Error ratio (5xx)", "Share of requests answered with a 5xx status, per service.",
             [prom(err_ratio, "{{service_name}}")], unit="percentunit", w=8, h=6, thresholds_=ERROR_RATIO,
             links=link, decimals=2),
        stat("p99 latency", "99th percentile of the server request duration, per service.",
             [prom(quantile("0.99"), "{{service_name}}")], unit="s", w=8, h=6, thresholds_=LATENCY_S,
             links=link),
        row("Trends"),
        timeseries("Requests per second", "HTTP requests served per second, per service.",
                   [prom(rate_all, "{{service_name}}")], unit="reqps", w=8, links=link),
        timeseries("Error ratio (5xx)", "Share of requests answered with a 5xx status, per service. The "
                   "HTTPServerHighErrorRate alert fires above 5 %.",
                   [prom(err_ratio, "{{service_name}}")], unit="percentunit", w=8, thresholds_=ERROR_RATIO,
                   links=link),
        timeseries("p99 latency", "99th percentile of the server request duration, per service. The "
                   "HTTPServerHighLatency alert fires above 1 s.",
                   [prom(quantile("0.99"), "{{service_name}}")], unit="s", w=8, thresholds_=LATENCY_S,
                   links=link),
        panel("table", "Firing alerts",
              "Alerts firing now, from Prometheus' ALERTS series (alerts of the Loki ruler are in Alertmanager).",
              [prom('ALERTS{alertstate="firing"}', instant=True, table=True)], unit="none", w=24, h=7,
              extra={"transformations": [{"id": "organize", "options": {
                  "excludeByName": {"Time": True, "Value": True, "__name__": True, "alertstate": True}}}]},
              overrides=[{"matcher": {"id": "byName", "options": "service_name"},
                          "properties": [{"id": "links", "value": [detail_link("__value.raw")]}]}],
              options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}),
        row("Alerting"),
        panel("alertlist", "Alerts",
              "Firing and pending alerts of the Prometheus and Loki rules, grouped, with a link to each rule "
              "(Grafana reads them from the data sources). Silences and notification routing live in "
              "Alertmanager: the Silences panel and the dashboard link open them.",
              [], unit="none", datasource=ALERTMANAGER, w=18, h=9,
              options={"viewMode": "list", "groupMode": "default", "groupBy": [], "maxItems": 30, "sortOrder": 1,
                       "dashboardAlerts": False, "alertName": "", "alertInstanceLabelFilter": "",
                       "showInstances": True,
                       "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": False,
                                       "error": True}}),
        stat("Silences", "Active silences in Alertmanager (`obsbox silence list` shows them; `obsbox silence "
             "add` makes one). Click to manage them in Grafana's alerting UI.",
             [prom('sum(alertmanager_silences{state="active"}) or vector(0)', "active")], unit="short", w=6, h=9,
             links=[{"title": "Manage silences", "url": SILENCES_URL}]),
    ]
    return dashboard(
        "overview", "Services overview",
        "Every service instrumented with OpenTelemetry HTTP semantic conventions, side by side.",
        panels, [environment_variable(f"{HTTP_DURATION}_count"),
                 service_variable(f"label_values({HTTP_DURATION}_count{{{ENV}}}, service_name)", multi=True)],
        tags=["services"],
        links=[{"title": "Silences", "type": "link", "url": SILENCES_URL, "icon": "bell", "targetBlank": False,
                "tooltip": "Alertmanager's silences in Grafana's alerting UI"}])


# --- 2. service detail ----------------------------------------------------------------------------------------


def jaeger_explore_url() -> str:
    """An Explore link that opens a Jaeger search for the selected service."""
    panes = {"a": {"datasource": "jaeger", "queries": [
        {"refId": "A", "datasource": JAEGER, "queryType": "search", "service": "SERVICE"}],
        "range": {"from": "now-1h", "to": "now"}}}
    encoded = urllib.parse.quote(json.dumps(panes, separators=(",", ":")), safe="")
    return "/explore?schemaVersion=1&orgId=1&panes=" + encoded.replace("SERVICE", "${service_name}")


def service_detail() -> dict[str, Any]:
    sel = f'service_name="$service_name", http_route=~"$http_route", {ENV}'
    count = f"{HTTP_DURATION}_count{{{sel}}}"
    rate_all = f"sum(rate({count}[$__rate_interval]))"
    rate_err = f"sum(rate({HTTP_DURATION}_count{{{sel}, {ERRORS_5XX}}}[$__rate_interval]))"
    by_route = "sum by (http_route)"

    def q(quant: str, by: str = "le") -> str:
        return (f"histogram_quantile({quant}, sum by ({by}) "
                f"(rate({HTTP_DURATION}_bucket{{{sel}}}[$__rate_interval])))")

    client = f'service_name="$service_name", {ENV}'
    panels = [
        row("RED"),
        stat("Requests/s", "HTTP requests per second served by the selected routes.",
             [prom(rate_all, "requests/s")], unit="reqps"),
        stat("Error ratio (5xx)", "Share of the selected routes' requests answered with a 5xx status.",
             [prom(f"({rate_err} or 0 * {rate_all}) / {rate_all}", "5xx")], unit="percentunit",
             thresholds_=ERROR_RATIO, decimals=2),
        stat("p99 latency", "99th percentile of the request duration over the selected routes.",
             [prom(q("0.99"), "p99")], unit="s", thresholds_=LATENCY_S),
        stat("Active requests", "Requests being served right now (http.server.active_requests).",
             [prom(f'sum(http_server_active_requests{{service_name="$service_name", {ENV}}})', "in flight")],
             unit="short"),
        timeseries("Requests per second by route", "Request rate per route template (http.route).",
                   [prom(f"{by_route} (rate({count}[$__rate_interval]))", "{{http_route}}")], unit="reqps",
                   w=8),
        timeseries("Error ratio by route (5xx)", "Share of 5xx answers per route.",
                   [prom(f"({by_route} (rate({HTTP_DURATION}_count{{{sel}, {ERRORS_5XX}}}[$__rate_interval])) "
                         f"or 0 * {by_route} (rate({count}[$__rate_interval]))) / "
                         f"{by_route} (rate({count}[$__rate_interval]))", "{{http_route}}")],
                   unit="percentunit", w=8, thresholds_=ERROR_RATIO),
        timeseries("p99 latency by route", "99th percentile of the request duration per route. Exemplars "
                   "(dots) link to the trace of a request in Jaeger.",
                   [prom(q("0.99", "http_route, le"), "{{http_route}}", exemplar=True)], unit="s", w=8,
                   thresholds_=LATENCY_S),
        row("Latency"),
        panel("heatmap", "Request duration heatmap",
              "How many requests fell into each duration bucket over time. Exemplars (dots) carry a trace id: "
              "click one to open the trace in Jaeger.",
              [prom(f"sum by (le) (rate({HTTP_DURATION}_bucket{{{sel}}}[$__rate_interval]))", "{{le}}",
                    exemplar=True, heatmap=True)],
              unit="reqps", w=16, h=9,
              options={"calculate": False, "cellGap": 1, "yAxis": {"axisPlacement": "left", "unit": "s"},
                       "rowsFrame": {"layout": "le"},
                       "color": {"mode": "scheme", "scheme": "Oranges", "exponent": 0.5, "steps": 64,
                                 "fill": "dark-orange", "scale": "exponential", "reverse": False},
                       "filterValues": {"le": 1e-9}, "exemplars": {"color": "rgba(255,0,255,0.7)"},
                       "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
                       "legend": {"show": True}, "cellValues": {"unit": "reqps"}}),
        timeseries("Latency percentiles", "p50, p95 and p99 of the request duration over the selected routes, "
                   "with exemplars.",
                   [prom(q("0.50"), "p50", exemplar=True), prom(q("0.95"), "p95", exemplar=True),
                    prom(q("0.99"), "p99", exemplar=True)], unit="s", w=8, h=9, thresholds_=LATENCY_S),
        row("Errors"),
        timeseries("Answers by status code", "Requests per second per HTTP status code (4xx are the client's "
                   "fault, 5xx the service's).",
                   [prom(f"sum by (http_response_status_code) (rate({count}[$__rate_interval]))",
                         "{{http_response_status_code}}")], unit="reqps", w=12, stack=True),
        timeseries("Errors by error.type", "Failed requests per second by error.type: the exception class or "
                   "the status code that made the request fail.",
                   [prom(f'sum by (error_type) (rate({HTTP_DURATION}_count{{{sel}, error_type!=""}}'
                         f"[$__rate_interval]))", "{{error_type}}")], unit="reqps", w=12, stack=True),
        row("Outbound HTTP"),
        timeseries("Outbound requests by server", "HTTP requests this service makes, per server.address.",
                   [prom(f"sum by (server_address) (rate({CLIENT_DURATION}_count{{{client}}}[$__rate_interval]))",
                         "{{server_address}}")], unit="reqps", w=8),
        timeseries("Outbound error ratio by server", "Share of outbound requests that failed (5xx answer or "
                   "no answer at all: error.type set), per server.address.",
                   [prom(f'(sum by (server_address) (rate({CLIENT_DURATION}_count{{{client}, error_type!=""}}'
                         f"[$__rate_interval])) or 0 * sum by (server_address) (rate({CLIENT_DURATION}_count"
                         f"{{{client}}}[$__rate_interval]))) / sum by (server_address) "
                         f"(rate({CLIENT_DURATION}_count{{{client}}}[$__rate_interval]))", "{{server_address}}")],
                   unit="percentunit", w=8, thresholds_=ERROR_RATIO),
        timeseries("Outbound p99 latency by server", "99th percentile of outbound request durations, per "
                   "server.address.",
                   [prom(f"histogram_quantile(0.99, sum by (server_address, le) (rate({CLIENT_DURATION}_bucket"
                         f"{{{client}}}[$__rate_interval])))", "{{server_address}}", exemplar=True)],
                   unit="s", w=8, thresholds_=LATENCY_S),
        row("Traces and logs"),
        panel("table", "Recent traces", "The latest traces of this service from Jaeger; click a trace id to "
              "open it.",
              [{"datasource": JAEGER, "queryType": "search", "service": "$service_name", "limit": 20}],
              unit="none", datasource=JAEGER, w=12, h=10,
              options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}),
        timeseries("Span rate by span kind (span metrics)", "Spans per second from the collector's span metrics "
                   "connector, by kind and status: also covers spans that are not HTTP requests.",
                   [prom('sum by (span_kind, status_code) (rate(traces_span_metrics_calls_total'
                         '{service_name="$service_name"}[$__rate_interval]))', "{{span_kind}} {{status_code}}")],
                   unit="ops", w=12, h=10),
        logs_panel("Logs", "The service's log records from Loki, newest first. Records written inside a "
                   "request carry trace_id: open a record's details and follow 'View trace' to Jaeger.",
                   '{service_name="$service_name"}'),
        row("Profiles"),
        panel("flamegraph", "CPU flame graph", "Where the service spent its CPU time over the dashboard's time "
              "range, from the continuous profiles in Pyroscope (configure(profiling=...)): the wider a frame, "
              "the more samples were taken in it or below it.",
              [{"datasource": PYROSCOPE, "queryType": "profile", "profileTypeId": CPU_PROFILE,
                "labelSelector": '{service_name="$service_name"}', "groupBy": []}],
              unit="ns", datasource=PYROSCOPE, w=24, h=14),
    ]
    variables = [
        environment_variable(f"{HTTP_DURATION}_count"),
        service_variable(f"label_values({HTTP_DURATION}_count{{{ENV}}}, service_name)", multi=False),
        {"name": "http_route", "label": "Route", "type": "query", "datasource": PROM,
         "query": f'label_values({HTTP_DURATION}_count{{service_name="$service_name"}}, http_route)',
         "definition": f'label_values({HTTP_DURATION}_count{{service_name="$service_name"}}, http_route)',
         "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*", "current": {}},
    ]
    links = [
        {"title": "Traces of ${service_name} (Jaeger in Explore)", "type": "link", "url": jaeger_explore_url(),
         "icon": "info", "targetBlank": False, "keepTime": False, "includeVars": False},
        {"title": "Logs of ${service_name}", "type": "link",
         "url": f"/d/{UIDS['logs']}?var-service_name=${{service_name}}&${{__url_time_range}}", "icon": "doc",
         "targetBlank": False, "keepTime": False, "includeVars": False},
        {"title": "Dependencies of ${service_name}", "type": "link",
         "url": f"/d/{UIDS['dependencies']}?var-service_name=${{service_name}}&${{__url_time_range}}",
         "icon": "external link", "targetBlank": False, "keepTime": False, "includeVars": False},
    ]
    return dashboard("detail", "Service detail",
                     "One service: RED per route, latency heatmap with exemplars, errors, outbound calls, "
                     "traces, logs and a CPU flame graph.", panels, variables, tags=["services"], links=links)


# --- 3. SLOs --------------------------------------------------------------------------------------------------


def slos() -> dict[str, Any]:
    def sli(window: str, slo: str) -> str:
        return f'slo:sli_error:ratio_rate{window}{{slo="{slo}", {SVC}}}'

    def objective(slo: str) -> str:
        # objectives are per service_name only (slo-objectives.yml): no environment to filter on
        return f'slo:objective:ratio{{slo="{slo}", {SVC_ONLY}}}'

    def burn(window: str, slo: str) -> str:
        return f"{sli(window, slo)} / on (service_name) group_left () (1 - {objective(slo)})"

    panels: list[Panel] = []
    for slo, what in (("availability", "requests answered without a 5xx status"),
                      ("latency", "requests faster than the service's latency threshold (default 0.5 s)")):
        title = slo.capitalize()
        panels += [
            row(f"{title} SLO"),
            stat(f"{title} objective", f"The objective: the share of {what} the service promises "
                 "(alerts/prometheus/slo-objectives.yml overrides the default).",
                 [prom(objective(slo), "{{service_name}}", instant=True)], unit="percentunit", w=6,
                 sparkline=False, decimals=2),
            stat(f"{title} over the last day", f"The SLI: the share of {what} over the last 24 hours.",
                 [prom(f"1 - {sli('1d', slo)}", "{{service_name}}")], unit="percentunit", w=6, decimals=3,
                 thresholds_=thresholds((None, "red"), (0.99, "yellow"), (0.995, "green"))),
            stat(f"{title} error budget left (3 days)", "How much of the error budget the last three days "
                 "left unspent: 100 % = no errors, 0 % = spent exactly, negative = overspent.",
                 [prom(f"1 - {burn('3d', slo)}", "{{service_name}}")], unit="percentunit", w=6, decimals=1,
                 thresholds_=thresholds((None, "red"), (0, "orange"), (0.25, "yellow"), (0.5, "green"))),
            stat(f"{title} burn rate (1 hour)", "Error ratio of the last hour divided by the budget; 1 spends the "
                 "budget exactly over 30 days, 14.4 pages (with the 5-minute window).",
                 [prom(burn("1h", slo), "{{service_name}}")], unit="suffix:x", w=6, decimals=1, thresholds_=BURN_RATE),
            timeseries(f"{title} burn rate by window", "Burn rate over the windows the SLOErrorBudgetBurn tiers "
                       "read: 14.4x over 1h and 5m, 6x over 6h and 30m (critical); 3x over 1d and 2h, 1x over 3d "
                       "and 6h (warning).",
                       [prom(burn(win, slo), f"{{{{service_name}}}} {win}") for win in ("5m", "1h", "6h", "1d", "3d")],
                       unit="suffix:x", w=12, thresholds_=BURN_RATE),
            timeseries(f"{title} SLI", f"The share of {what} (5-minute and 1-hour windows) against the objective.",
                       [prom(f"1 - {sli('5m', slo)}", "{{service_name}} 5m"),
                        prom(f"1 - {sli('1h', slo)}", "{{service_name}} 1h"),
                        prom(objective(slo), "{{service_name}} objective")],
                       unit="percentunit", w=12),
        ]
    return dashboard("slos", "SLOs",
                     "Availability and latency SLOs per service: objective, SLI, error budget left and burn rates "
                     "(recording rules of alerts/prometheus/slo.rules.yml).",
                     panels, [environment_variable("slo:sli_error:ratio_rate5m"),
                             service_variable("label_values(slo:objective:ratio, service_name)", multi=True)],
                     tags=["slo"])


# --- 4. resilience --------------------------------------------------------------------------------------------


def resilience() -> dict[str, Any]:
    state = "obsbox_circuit_breaker_state"
    # 0 closed, 1 half-open, 2 open: one series per breaker for the state timeline.
    state_expr = (f'max by (service_name, breaker_name) ('
                  f'{state}{{{SVC}, breaker_state="open"}} * 2 or {state}{{{SVC}, breaker_state="half_open"}} '
                  f'or {state}{{{SVC}, breaker_state="closed"}} * 0)')
    mappings = [{"type": "value", "options": {
        "0": {"text": "closed", "color": "green", "index": 0},
        "1": {"text": "half-open", "color": "yellow", "index": 1},
        "2": {"text": "open", "color": "red", "index": 2}}}]
    retry_by = "sum by (service_name, retry_name)"
    pool_by = "sum by (service_name, pool_name)"
    task = "obsbox_pool_task_duration_seconds"
    panels = [
        row("Circuit breakers"),
        panel("state-timeline", "Breaker state", "State of every circuit breaker over time: closed (calls pass), "
              "half-open (a probe call tests the dependency), open (calls fail fast with CircuitOpenError).",
              [prom(state_expr, "{{service_name}} / {{breaker_name}}")], unit="none", w=24, h=7,
              mappings=mappings, thresholds_=thresholds((None, "green"), (1, "yellow"), (2, "red")),
              options={"mergeValues": True, "showValue": "auto", "alignValue": "left", "rowHeight": 0.9,
                       "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
                       "tooltip": {"mode": "single", "sort": "none"}}),
        timeseries("Breaker transitions", "State changes per breaker, by target state; many opens and closes "
                   "in a row mean flapping (CircuitBreakerFlapping).",
                   [prom(f"sum by (service_name, breaker_name, breaker_from_state, breaker_to_state) (increase("
                         f"obsbox_circuit_breaker_transitions_total{{{SVC}}}[$__rate_interval]))",
                         "{{service_name}} / {{breaker_name}} {{breaker_from_state}} -> {{breaker_to_state}}")],
                   unit="short", w=12, bars=True),
        timeseries("Calls through breakers", "Calls per second by outcome: success, failure, and rejected "
                   "(the breaker was open and the call never reached the dependency).",
                   [prom(f"sum by (service_name, breaker_name, breaker_outcome) (rate("
                         f"obsbox_circuit_breaker_calls_total{{{SVC}}}[$__rate_interval]))",
                         "{{service_name}} / {{breaker_name}} {{breaker_outcome}}")],
                   unit="ops", w=12, stack=True),
        row("Retries"),
        timeseries("Operations by outcome", "Retried operations per second by final outcome: success at the "
                   "first try, success after retries, exhausted (all attempts failed), non_retryable.",
                   [prom(f"sum by (service_name, retry_name, retry_outcome) (rate("
                         f"obsbox_retry_calls_total{{{SVC}}}[$__rate_interval]))",
                         "{{service_name}} / {{retry_name}} {{retry_outcome}}")], unit="ops", w=8, stack=True),
        timeseries("Retries per operation", "Attempts beyond the first, per operation. The HighRetryRate "
                   "alert fires above 0.25.",
                   [prom(f"{retry_by} (rate(obsbox_retry_retries_total{{{SVC}}}[$__rate_interval])) / "
                         f"{retry_by} (rate(obsbox_retry_calls_total{{{SVC}}}[$__rate_interval]))",
                         "{{service_name}} / {{retry_name}}")], unit="short", w=8,
                   thresholds_=thresholds((None, "green"), (0.25, "red"))),
        timeseries("Exhausted operations", "Share of operations that failed after their last attempt. The "
                   "RetriesExhausted alert fires above 5 %.",
                   [prom(f'({retry_by} (rate(obsbox_retry_calls_total{{{SVC}, retry_outcome="exhausted"}}'
                         f"[$__rate_interval])) or 0 * {retry_by} (rate(obsbox_retry_calls_total{{{SVC}}}"
                         f"[$__rate_interval]))) / {retry_by} (rate(obsbox_retry_calls_total{{{SVC}}}"
                         f"[$__rate_interval]))", "{{service_name}} / {{retry_name}}")],
                   unit="percentunit", w=8, thresholds_=ERROR_RATIO),
        timeseries("Backoff before retries (p95)", "95th percentile of the time slept before a retry.",
                   [prom(f"histogram_quantile(0.95, sum by (service_name, retry_name, le) (rate("
                         f"obsbox_retry_backoff_seconds_bucket{{{SVC}}}[$__rate_interval])))",
                         "{{service_name}} / {{retry_name}}")], unit="s", w=24, h=7),
        row("Worker pools"),
        timeseries("Pool utilisation", "Busy workers divided by workers. WorkerPoolSaturated fires at 90 % "
                   "for ten minutes.",
                   [prom(f"{pool_by} (obsbox_pool_busy{{{SVC}}}) / {pool_by} (obsbox_pool_size{{{SVC}}})",
                         "{{service_name}} / {{pool_name}}")], unit="percentunit", w=8, thresholds_=USAGE_RATIO,
                   min=0, max=1),
        timeseries("Workers: size and busy", "Workers in each pool and how many run a task now.",
                   [prom(f"{pool_by} (obsbox_pool_size{{{SVC}}})", "{{service_name}} / {{pool_name}} size"),
                    prom(f"{pool_by} (obsbox_pool_busy{{{SVC}}})", "{{service_name}} / {{pool_name}} busy")],
                   unit="short", w=8),
        timeseries("Queue depth", "Tasks waiting for a worker. WorkerPoolQueueBacklog fires when more than "
                   "twice the number of workers wait for five minutes.",
                   [prom(f"{pool_by} (obsbox_pool_queue_depth{{{SVC}}})", "{{service_name}} / {{pool_name}}")],
                   unit="short", w=8),
        timeseries("Task duration (p50, p95)", "Run time of tasks per pool.",
                   [prom(f"histogram_quantile(0.50, sum by (service_name, pool_name, le) (rate({task}_bucket"
                         f"{{{SVC}}}[$__rate_interval])))", "{{service_name}} / {{pool_name}} p50"),
                    prom(f"histogram_quantile(0.95, sum by (service_name, pool_name, le) (rate({task}_bucket"
                         f"{{{SVC}}}[$__rate_interval])))", "{{service_name}} / {{pool_name}} p95")],
                   unit="s", w=12),
        timeseries("Tasks by outcome", "Finished tasks per second, success and failure. WorkerPoolTaskFailures "
                   "fires above 10 % failures.",
                   [prom(f"sum by (service_name, pool_name, task_outcome) (rate({task}_count{{{SVC}}}"
                         f"[$__rate_interval]))", "{{service_name}} / {{pool_name}} {{task_outcome}}")],
                   unit="ops", w=12, stack=True),
    ]
    family = '{__name__=~"obsbox_(circuit_breaker|retry|pool)_.+"}'
    query = f'label_values({family[:-1]}, {ENV}}}, service_name)'
    return dashboard("resilience", "Resilience",
                     "Circuit breakers, retries and worker pools of obsbox's resilience helpers, per service.",
                     panels, [environment_variable(family), service_variable(query, multi=True)],
                     tags=["resilience"])


# --- 5. runtime -----------------------------------------------------------------------------------------------


def runtime() -> dict[str, Any]:
    sel = f'{SVC}, service_instance_id=~"$instance"'
    by = "sum by (service_name, service_instance_id)"
    legend = "{{service_name}} {{service_instance_id}}"
    fd_ratio = f"{by} (process_unix_file_descriptor_count{{{sel}}}) / {by} (obsbox_process_file_descriptor_limit{{{sel}}})"
    panels = [
        row("Per instance"),
        timeseries("CPU", "CPU time used per second of wall time (1 = one full core), user plus system.",
                   [prom(f"{by} (rate(process_cpu_time_seconds_total{{{sel}}}[$__rate_interval]))", legend)],
                   unit="percentunit", w=12),
        timeseries("CPU by mode", "CPU time per second by mode (user: Python code; system: the kernel on its "
                   "behalf, e.g. I/O).",
                   [prom(f"sum by (service_name, service_instance_id, cpu_mode) (rate(process_cpu_time_seconds_total"
                         f"{{{sel}}}[$__rate_interval]))", legend + " {{cpu_mode}}")],
                   unit="percentunit", w=12, stack=True),
        timeseries("Resident memory", "Resident set size of each process (process.memory.usage).",
                   [prom(f"{by} (process_memory_usage_bytes{{{sel}}})", legend)], unit="bytes", w=12),
        timeseries("Garbage collections", "CPython garbage collections per second by generation; a steady "
                   "rise in generation 2 means many long-lived objects.",
                   [prom(f"sum by (service_name, service_instance_id, cpython_gc_generation) (rate("
                         f"cpython_gc_collections_total{{{sel}}}[$__rate_interval]))",
                         legend + " gen {{cpython_gc_generation}}")], unit="ops", w=12),
        timeseries("Threads", "Threads of each process.", [prom(f"{by} (process_thread_count{{{sel}}})", legend)],
                   unit="short", w=8),
        timeseries("Open file descriptors", "Open file descriptors against the process's limit "
                   "(RLIMIT_NOFILE): sockets, files, pipes.",
                   [prom(f"{by} (process_unix_file_descriptor_count{{{sel}}})", legend + " open"),
                    prom(f"{by} (obsbox_process_file_descriptor_limit{{{sel}}})", legend + " limit")],
                   unit="short", w=8),
        timeseries("File descriptor usage", "Open file descriptors as a share of the limit. "
                   "ProcessFileDescriptorsNearLimit fires above 80 % for five minutes.",
                   [prom(fd_ratio, legend)], unit="percentunit", w=8, thresholds_=USAGE_RATIO, min=0, max=1),
    ]
    variables = [
        environment_variable("process_cpu_time_seconds_total"),
        service_variable(f"label_values(process_cpu_time_seconds_total{{{ENV}}}, service_name)", multi=True),
        {"name": "instance", "label": "Instance", "type": "query", "datasource": PROM,
         "query": f"label_values(process_cpu_time_seconds_total{{{SVC}}}, service_instance_id)",
         "definition": f"label_values(process_cpu_time_seconds_total{{{SVC}}}, service_instance_id)",
         "refresh": 2, "sort": 1, "multi": True, "includeAll": True, "allValue": ".*", "current": {}},
    ]
    return dashboard("runtime", "Runtime",
                     "Python processes per instance: CPU, memory, garbage collection, threads and file descriptors.",
                     panels, variables, tags=["runtime"])


# --- 6. logs --------------------------------------------------------------------------------------------------


def logs() -> dict[str, Any]:
    stream = '{service_name=~"$service_name"}'
    panels = [
        row("Volume"),
        timeseries("Log lines by service", "Log records per second per service.",
                   [loki(f"sum by (service_name) (rate({stream} | {DROP_IDS} [$__auto]))", "{{service_name}}")],
                   unit="short", datasource=LOKI, w=12, bars=True, stack=True),
        timeseries("Log lines by level", "Log records per second by severity (severity_text, structured "
                   "metadata of the OTLP log records).",
                   [loki(f"sum by (severity_text) (rate({stream} | {DROP_IDS} [$__auto]))", "{{severity_text}}")],
                   unit="short", datasource=LOKI, w=12, bars=True, stack=True),
        timeseries("Error lines by service", "ERROR, CRITICAL and FATAL records per second per service. The "
                   "ErrorLogSpike rule (Loki ruler) fires on a sudden rise.",
                   [loki(f"sum by (service_name) (rate({stream} | {ERROR_LEVELS} | {DROP_IDS} [$__auto]))",
                         "{{service_name}}")], unit="short", datasource=LOKI, w=24, h=7,
                   thresholds_=thresholds((None, "green"), (0.2, "red"))),
        row("Records"),
        logs_panel("Errors", "Error records; those written inside a request carry trace_id — open the "
                   "record and follow 'View trace' to Jaeger.", f"{stream} | {ERROR_LEVELS}", h=10),
        logs_panel("All records", "Every record of the selected services whose line contains the text of the "
                   "search box, ignoring case. The text is taken literally: ( \" \\ . * and the like match "
                   "themselves; only a backtick cannot be searched for.", f"{stream} |~ {SEARCH_FILTER}", h=14),
        row("Slow operations"),
        timeseries("Slow operations by dependency", "Database and cache operations and Celery task runs per second "
                   "that took at least the chosen duration, per service, system and operation (or task) — counted "
                   "from the one WARNING line obsbox logs for each one above slow_operation_threshold (default "
                   "1 s), filtered on its structured duration_s field.",
                   [loki(f"sum by (service_name, db_system_name, db_operation_name, db_query_summary, "
                         f"messaging_system, celery_task_name) "
                         f"(count_over_time({stream} | {SLOW} | {DROP_IDS} [$__auto]))",
                         "{{service_name}} {{db_system_name}}{{messaging_system}} {{db_operation_name}} "
                         "{{db_query_summary}}{{celery_task_name}}")],
                   unit="short", datasource=LOKI, w=24, h=7, bars=True, stack=True),
        logs_panel("Slow operations", "Each slow database or cache operation (db.system.name, db.query.summary — "
                   "never a value — and server.address) and each slow Celery task run (messaging.system, "
                   "celery.task.name), with duration_s as a structured field and the trace_id of the work it "
                   "delayed — open the record and follow 'View trace'. Only operations at least "
                   "slow_operation_threshold long log a line, so a lower duration here finds nothing more.",
                   f"{stream} | {SLOW}", h=10),
    ]
    variables = [
        {"name": "service_name", "label": "Service", "type": "query", "datasource": LOKI,
         "query": "label_values(service_name)", "definition": "label_values(service_name)", "refresh": 2, "sort": 1, "multi": True,
         "includeAll": True, "allValue": ".+", "current": {}},
        {"name": "search", "label": "Search", "type": "textbox", "query": "", "current": {"text": "", "value": ""},
         "hide": 0},
        {"name": "slow_s", "label": "Slow from (s)", "type": "custom", "query": "1,2,5,10,30",
         "options": [{"text": v, "value": v, "selected": v == "1"} for v in ("1", "2", "5", "10", "30")],
         "current": {"text": "1", "value": "1"}, "multi": False, "includeAll": False, "hide": 0},
    ]
    return dashboard("logs", "Logs", "Log volume by service and level, error records, search and slow "
                     "operations, with trace links.",
                     panels, variables, tags=["logs"])


# --- 7. stack health ------------------------------------------------------------------------------------------


def stack_health() -> dict[str, Any]:
    signals = (("spans", "traces"), ("metric_points", "metrics"), ("log_records", "logs"))

    def otel(family: str, by: str, zero_from: str | None = None) -> list[dict[str, Any]]:
        # One query per signal: rate() drops the metric name, so two signals in one selector would collide.
        # zero_from: a failure counter has no series until the first failure; "or 0 * <that family>" draws a line
        # at 0 for every component that is working, so an empty panel means no data rather than no failures.
        last = by.split(", ")[-1]

        def rate(name: str, suffix: str) -> str:
            return f'sum by ({by}) (rate({{__name__=~"otelcol_{name}_{suffix}(_total)?"}}[$__rate_interval]))'

        return [prom(rate(family, suffix) + (f" or 0 * {rate(zero_from, suffix)}" if zero_from else ""),
                     f"{{{{job}}}} {{{{{last}}}}} {signal}") for suffix, signal in signals]

    panels = [
        row("Targets"),
        panel("state-timeline", "Scrape targets up", "Whether Prometheus reaches each target it scrapes: the "
              "stack's components by job and services' pull endpoints.",
              [prom("max by (job, instance) (up)", "{{job}} {{instance}}")], unit="none", w=24, h=7,
              mappings=[{"type": "value", "options": {"0": {"text": "down", "color": "red", "index": 0},
                                                      "1": {"text": "up", "color": "green", "index": 1}}}],
              thresholds_=thresholds((None, "red"), (1, "green")),
              options={"mergeValues": True, "showValue": "never", "alignValue": "left", "rowHeight": 0.9,
                       "legend": {"showLegend": False}, "tooltip": {"mode": "single", "sort": "none"}}),
        row("OpenTelemetry Collector (and Jaeger, which is built on it)"),
        timeseries("Accepted by receivers", "Spans, metric points and log records per second the receivers "
                   "accepted, per job (collector, jaeger).",
                   otel("receiver_accepted", "job, receiver"), unit="short", w=8),
        timeseries("Refused or failed by receivers", "Items per second the receivers turned away (refused: "
                   "back-pressure from the memory limiter; failed: malformed or internal errors).",
                   otel("receiver_refused", "job, receiver") + otel("receiver_failed", "job, receiver"),
                   unit="short", w=8, thresholds_=ANY_IS_BAD),
        timeseries("Sent by exporters", "Items per second the exporters delivered to Prometheus, Loki and "
                   "Jaeger.", otel("exporter_sent", "job, exporter"), unit="short", w=8),
        timeseries("Export failures", "Items per second the exporters failed to send (send_failed) or could "
                   "not even queue (enqueue_failed: queue full, data dropped). Every exporter that sends shows a line "
                   "at 0 while nothing fails.",
                   otel("exporter_send_failed", "job, exporter", "exporter_sent")
                   + otel("exporter_enqueue_failed", "job, exporter", "exporter_sent"),
                   unit="short", w=12, thresholds_=ANY_IS_BAD),
        timeseries("Exporter queue usage", "Items in each exporter's sending queue divided by its capacity. "
                   "OTelCollectorExporterQueueFilling fires above 80 %.",
                   [prom("max by (job, exporter) (otelcol_exporter_queue_size / otelcol_exporter_queue_capacity)",
                         "{{job}} {{exporter}}")], unit="percentunit", w=12, thresholds_=USAGE_RATIO, min=0, max=1),
        row("Jaeger"),
        timeseries("Spans received by Jaeger", "Spans per second Jaeger's OTLP receiver accepted (from the "
                   "collector) and refused.",
                   [prom('sum(rate({__name__=~"otelcol_receiver_accepted_spans(_total)?", job="jaeger"}'
                         '[$__rate_interval]))', "accepted"),
                    prom('sum(rate({__name__=~"otelcol_receiver_refused_spans(_total)?", job="jaeger"}'
                         '[$__rate_interval]))', "refused")], unit="short", w=12),
        timeseries("Spans stored by Jaeger", "Spans per second Jaeger wrote to its trace storage, and the "
                   "writes that failed.",
                   [prom('sum(rate({__name__=~"otelcol_exporter_sent_spans(_total)?", job="jaeger"}'
                         '[$__rate_interval]))', "stored"),
                    prom('sum(rate({__name__=~"otelcol_exporter_send_failed_spans(_total)?", job="jaeger"}'
                         '[$__rate_interval]))', "failed")], unit="short", w=12, thresholds_=ANY_IS_BAD),
        row("Prometheus"),
        timeseries("Samples ingested", "Samples appended to Prometheus' head block per second (scrapes, OTLP "
                   "pushes and recording rules).",
                   [prom("sum by (job, instance) (rate(prometheus_tsdb_head_samples_appended_total"
                         "[$__rate_interval]))", "{{instance}}")], unit="short", w=8),
        timeseries("Active series", "Series in Prometheus' head block.",
                   [prom("sum by (job, instance) (prometheus_tsdb_head_series)", "{{instance}}")], unit="short",
                   w=8),
        timeseries("Rule evaluation failures", "Failed rule evaluations per second by group; failing rules "
                   "cannot fire alerts (PrometheusRuleEvaluationFailures).",
                   [prom("sum by (rule_group) (rate(prometheus_rule_evaluation_failures_total[$__rate_interval]))",
                         "{{rule_group}}")], unit="short", w=8, thresholds_=ANY_IS_BAD),
        timeseries("Rule group duration", "How long each rule group took in its last evaluation; above the "
                   "evaluation interval, evaluations are skipped.",
                   [prom("max by (rule_group) (prometheus_rule_group_last_duration_seconds)", "{{rule_group}}")],
                   unit="s", w=8),
        timeseries("Alerts sent to Alertmanager", "Alerts per second Prometheus sent, failed to send and "
                   "dropped.",
                   [prom("sum by (alertmanager) (rate(prometheus_notifications_sent_total[$__rate_interval]))",
                         "sent {{alertmanager}}"),
                    prom("sum by (alertmanager) (rate(prometheus_notifications_errors_total[$__rate_interval]))",
                         "errors {{alertmanager}}"),
                    prom("sum(rate(prometheus_notifications_dropped_total[$__rate_interval]))", "dropped")],
                   unit="short", w=8),
        stat("Alertmanagers discovered", "Alertmanagers Prometheus sends alerts to; 0 means alerts reach "
             "nobody (PrometheusAlertmanagerNotConnected).",
             [prom("max by (instance) (prometheus_notifications_alertmanagers_discovered)", "{{instance}}")],
             unit="short", w=8, h=8, thresholds_=thresholds((None, "red"), (1, "green"))),
        row("Loki"),
        timeseries("Loki requests by route and status", "Requests per second Loki answered, by route and status "
                   "code (pushes arrive on the OTLP route).",
                   [prom("sum by (route, status_code) (rate(loki_request_duration_seconds_count"
                         "[$__rate_interval]))", "{{route}} {{status_code}}")], unit="reqps", w=12),
        timeseries("Log lines received", "Log lines per second Loki's distributor accepted.",
                   [prom("sum(rate(loki_distributor_lines_received_total[$__rate_interval]))", "lines")],
                   unit="short", w=12),
        row("Alertmanager"),
        timeseries("Notifications", "Notifications per second Alertmanager sent and failed, per integration.",
                   [prom("sum by (integration) (rate(alertmanager_notifications_total[$__rate_interval]))",
                         "sent {{integration}}"),
                    prom("sum by (integration) (rate(alertmanager_notifications_failed_total[$__rate_interval]))",
                         "failed {{integration}}")], unit="short", w=12),
        timeseries("Alerts in Alertmanager", "Alerts Alertmanager holds, by state (active, suppressed).",
                   [prom("sum by (state) (alertmanager_alerts)", "{{state}}")], unit="short", w=12),
        row("Services' own export"),
        timeseries("Telemetry leaving services", "Spans, metric points and log records per second each "
                   "service exported or dropped (queue full, collector unreachable).",
                   [prom(f"sum by (service_name, signal, export_outcome) (rate(obsbox_export_items_total{{{SVC_ONLY}}}"
                         "[$__rate_interval]))", "{{service_name}} {{signal}} {{export_outcome}}")],
                   unit="short", w=24),
    ]
    return dashboard("stack", "Stack health",
                     "The box itself: scrape targets, the OpenTelemetry Collector and Jaeger, Prometheus, Loki, "
                     "Alertmanager, and the services' own exporters.",
                     panels, [service_variable("label_values(obsbox_export_items_total, service_name)", multi=True)],
                     tags=["stack"])


# --- 8. dependencies ------------------------------------------------------------------------------------------


def _ratio(metric: str, sel: str, by: str) -> str:
    """Share of a duration histogram's operations that failed (error_type set); 0 while none fails."""
    total = f"sum by ({by}) (rate({metric}_count{{{sel}}}[$__rate_interval]))"
    failed = f'sum by ({by}) (rate({metric}_count{{{sel}, error_type!=""}}[$__rate_interval]))'
    return f"({failed} or 0 * {total}) / {total}"


def _quantile(q: str, metric: str, sel: str, by: str) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{sel}}}[$__rate_interval])))"


def dependencies() -> dict[str, Any]:
    """What services wait on: databases and caches, queues, peer services — by the semantic conventions only, so
    any service instrumented with them shows here."""
    sel = SVC
    rate = "sum by ({by}) (rate({metric}_count{{" + sel + "}}[$__rate_interval]))"
    db = "service_name, db_system_name, server_address"
    db_legend = "{{service_name}} → {{db_system_name}} {{server_address}}"
    db_op = "db_system_name, db_operation_name, db_collection_name"
    db_op_legend = "{{db_system_name}} {{db_operation_name}} {{db_collection_name}}"
    queue = "service_name, messaging_system, messaging_destination_name"
    queue_legend = "{{service_name}} → {{messaging_system}} {{messaging_destination_name}}"
    # celery.task.name is not a convention; where it is absent the grouping just has one label fewer
    task = "messaging_system, messaging_destination_name, celery_task_name"
    task_legend = "{{messaging_destination_name}} {{celery_task_name}}"
    peer = "service_name, server_address"
    peer_legend = "{{service_name}} → {{server_address}}"
    rpc_legend = "{{service_name}} → {{server_address}} (gRPC)"
    slow_by = "service_name, db_system_name, server_address, db_operation_name, db_collection_name, db_query_summary"
    p99_slowest = f"topk(10, {_quantile('0.99', DB_DURATION, sel, slow_by)})"
    columns = [("A", "p99", "s", LATENCY_S), ("B", "Mean", "s", LATENCY_S), ("C", "Operations/s", "ops", None),
               ("D", "Errors", "percentunit", ERROR_RATIO)]
    overrides = []
    for _ref, name, unit, th in columns:
        props: list[dict[str, Any]] = [{"id": "unit", "value": unit}]
        if th:
            props += [{"id": "thresholds", "value": th}, {"id": "color", "value": {"mode": "thresholds"}},
                      {"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}}]
        overrides.append({"matcher": {"id": "byName", "options": name}, "properties": props})
    labels = slow_by.split(", ")
    slowest = panel(
        "table", "Slowest database and cache operations",
        "The ten operations with the highest p99 over the last few minutes, with their mean duration, rate and "
        "share of failures: db.query.summary names the statement (never its values). The Logs dashboard's slow "
        "operation search finds the single slow calls and their traces.",
        [prom(p99_slowest, instant=True, table=True),
         prom(f"sum by ({slow_by}) (rate({DB_DURATION}_sum{{{sel}}}[$__rate_interval])) / sum by ({slow_by}) "
              f"(rate({DB_DURATION}_count{{{sel}}}[$__rate_interval])) and {p99_slowest}", instant=True, table=True),
         prom(rate.format(by=slow_by, metric=DB_DURATION) + f" and {p99_slowest}", instant=True, table=True),
         prom(_ratio(DB_DURATION, sel, slow_by) + f" and {p99_slowest}", instant=True, table=True)],
        unit="s", w=24, h=9, overrides=overrides,
        options={"showHeader": True, "cellHeight": "sm", "footer": {"show": False},
                 "sortBy": [{"displayName": "p99", "desc": True}]},
        extra={"transformations": [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {
                "excludeByName": {"Time": True},
                "indexByName": {**{label: i for i, label in enumerate(labels)},
                                **{f"Value #{r}": len(labels) + i for i, (r, *_x) in enumerate(columns)}},
                "renameByName": {"service_name": "Service", "db_system_name": "System", "server_address": "Server",
                                 "db_operation_name": "Operation", "db_collection_name": "Collection",
                                 "db_query_summary": "Query summary",
                                 **{f"Value #{r}": n for r, n, *_x in columns}},
            }},
        ]},
    )
    panels = [
        row("Databases and caches (db.client.operation.duration)"),
        timeseries("Operations per second by dependency", "Database and cache operations per second, per "
                   "service and dependency (db.system.name at server.address; an embedded database such as "
                   "SQLite has no server).",
                   [prom(rate.format(by=db, metric=DB_DURATION), db_legend)], unit="ops", w=8),
        timeseries("Error ratio by dependency", "Share of operations that failed (error.type set), per service "
                   "and dependency. DependencyHighErrorRate fires above 5 %.",
                   [prom(_ratio(DB_DURATION, sel, db), db_legend)], unit="percentunit", w=8,
                   thresholds_=ERROR_RATIO),
        timeseries("p99 latency by dependency", "99th percentile of operation durations per service and "
                   "dependency; DependencyHighLatency fires above 0.5 s. Exemplars (dots) open the trace in "
                   "Jaeger.",
                   [prom(_quantile("0.99", DB_DURATION, sel, db), db_legend, exemplar=True)], unit="s", w=8,
                   thresholds_=LATENCY_S),
        timeseries("p50 latency by operation", "Median duration per operation (db.operation.name on "
                   "db.collection.name), with exemplars.",
                   [prom(_quantile("0.50", DB_DURATION, sel, db_op), db_op_legend, exemplar=True)], unit="s",
                   w=12, thresholds_=LATENCY_S),
        timeseries("p99 latency by operation", "99th percentile per operation, with exemplars: a dot opens the "
                   "trace of one call that landed in that bucket.",
                   [prom(_quantile("0.99", DB_DURATION, sel, db_op), db_op_legend, exemplar=True)], unit="s",
                   w=12, thresholds_=LATENCY_S),
        slowest,
        row("Queues (messaging.client.operation.duration, messaging.process.duration)"),
        timeseries("Messages sent per second", "Messages (tasks) each service sends, per messaging system and "
                   "destination.",
                   [prom(rate.format(by=queue, metric=SEND_DURATION), queue_legend)], unit="ops", w=8),
        timeseries("Messages processed per second", "Messages (tasks) each consumer processes, per system and "
                   "destination.",
                   [prom(rate.format(by=queue, metric=PROCESS_DURATION), queue_legend)], unit="ops", w=8),
        timeseries("Processing error ratio", "Share of processed messages whose handling failed (error.type "
                   "set), per consumer and destination.",
                   [prom(_ratio(PROCESS_DURATION, sel, queue), queue_legend)], unit="percentunit", w=8,
                   thresholds_=ERROR_RATIO),
        timeseries("Processing p50 and p99 by task", "How long processing takes, per destination and task, "
                   "with exemplars that open the consumer's trace (which the producer's request started).",
                   [prom(_quantile("0.50", PROCESS_DURATION, sel, task), "p50 " + task_legend, exemplar=True),
                    prom(_quantile("0.99", PROCESS_DURATION, sel, task), "p99 " + task_legend, exemplar=True)],
                   unit="s", w=12, thresholds_=LATENCY_S),
        timeseries("Send p99 latency by destination", "99th percentile of the time a send takes (the broker's "
                   "acknowledgement), per producer and destination.",
                   [prom(_quantile("0.99", SEND_DURATION, sel, queue), queue_legend, exemplar=True)], unit="s",
                   w=12, thresholds_=LATENCY_S),
        timeseries("Queue backlog", "Messages waiting in each queue, as the consuming workers read it from the "
                   "broker (obsbox.celery.queue.messages; the largest report per queue). CeleryQueueBacklog fires "
                   "above 100 for 15 minutes.",
                   [prom("max by (messaging_system, messaging_destination_name) "
                         f"(obsbox_celery_queue_messages{{{sel}}})",
                         "{{messaging_system}} {{messaging_destination_name}}")], unit="short", w=24, h=6,
                   thresholds_=thresholds((None, "green"), (100, "red"))),
        row("Peer services (http.client.request.duration, rpc.client.call.duration)"),
        timeseries("Calls per second by peer", "Outgoing HTTP requests and gRPC calls per second, per service "
                   "and server.address.",
                   [prom(rate.format(by=peer, metric=CLIENT_DURATION), peer_legend),
                    prom(rate.format(by=peer, metric=RPC_DURATION), rpc_legend)], unit="ops", w=8),
        timeseries("Error ratio by peer", "Share of outgoing calls that failed (error.type set: a 5xx, a gRPC "
                   "error status or no answer at all), per service and server.address.",
                   [prom(_ratio(CLIENT_DURATION, sel, peer), peer_legend),
                    prom(_ratio(RPC_DURATION, sel, peer), rpc_legend)], unit="percentunit", w=8,
                   thresholds_=ERROR_RATIO),
        timeseries("p99 latency by peer", "99th percentile of outgoing call durations per service and "
                   "server.address, with exemplars.",
                   [prom(_quantile("0.99", CLIENT_DURATION, sel, peer), peer_legend, exemplar=True),
                    prom(_quantile("0.99", RPC_DURATION, sel, peer), rpc_legend, exemplar=True)], unit="s", w=8,
                   thresholds_=LATENCY_S),
        timeseries("gRPC p50 and p99 by method", "Outgoing gRPC calls per method (rpc.method), p50 and p99, "
                   "with exemplars.",
                   [prom(_quantile("0.50", RPC_DURATION, sel, "rpc_method"), "p50 {{rpc_method}}", exemplar=True),
                    prom(_quantile("0.99", RPC_DURATION, sel, "rpc_method"), "p99 {{rpc_method}}", exemplar=True)],
                   unit="s", w=24, thresholds_=LATENCY_S),
    ]
    waits_on = "|".join(f"{m}_count" for m in (DB_DURATION, SEND_DURATION, PROCESS_DURATION, CLIENT_DURATION,
                                                RPC_DURATION))
    return dashboard(
        "dependencies", "Dependencies",
        "What services wait on — databases and caches, queues, peer services — by the OpenTelemetry database, "
        "messaging, RPC and HTTP client conventions: rate, errors, p50/p99 by operation, the slowest operations, "
        "exemplars to the traces.",
        panels, [environment_variable(f"{DB_DURATION}_count"),
                 service_variable(f'label_values({{__name__=~"{waits_on}", {ENV}}}, service_name)', multi=True)],
        tags=["services", "dependencies"],
        links=[{"title": "Slow operations in the logs", "type": "link",
                "url": f"/d/{UIDS['logs']}?${{service_name:queryparam}}&${{__url_time_range}}", "icon": "doc",
                "targetBlank": False, "keepTime": False, "includeVars": False}])


DASHBOARDS = {
    "services-overview.json": services_overview,
    "service-detail.json": service_detail,
    "slos.json": slos,
    "resilience.json": resilience,
    "runtime.json": runtime,
    "logs.json": logs,
    "stack-health.json": stack_health,
    "dependencies.json": dependencies,
}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    rendered = render()
    if "--check" in argv:
        stale = [n for n, text in rendered.items()
                 if not (OUT / n).exists() or (OUT / n).read_text(encoding="utf-8") != text]
        for n in stale:
            print(f"dashboards/obsbox/{n} differs from dashboards/generate.py: run python dashboards/generate.py")
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for n, text in rendered.items():
        (OUT / n).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
