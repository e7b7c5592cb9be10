"""Every query of the dashboards and rules parses: PromQL with promql-parser, LogQL (and PromQL a second time) with
the lezer grammars Grafana's own query editors use (@grafana/lezer-logql, @prometheus-io/lezer-promql, in tests/js).

Grafana variables are substituted first, the way Grafana does before it sends a query. This module also holds the
query extraction that test_dashboards.py, test_catalogue.py and test_queries_e2e.py share.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = ROOT / "dashboards" / "obsbox"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
PROM_RULE_FILES = sorted((ROOT / "alerts" / "prometheus").glob("*.yml"))
LOKI_RULE_FILES = sorted((ROOT / "alerts" / "loki" / "fake").glob("*.yaml"))
JS_DIR = ROOT / "tests" / "js"

# Grafana's interval variables get durations nobody would write by hand, so a test can tell them apart.
RATE_INTERVAL = "97s"
INTERVALS = {"__rate_interval": RATE_INTERVAL, "__interval": "41s", "__auto": "43s", "__range": "1h1m"}
# Values for the dashboards' own variables when only parsing matters.
PARSE_VALUES = {"service_name": "checkout", "environment": ".*", "http_route": ".*", "instance": ".*", "search": "",
                "slow_s": "1"}


@dataclass(frozen=True)
class Query:
    """One query of a dashboard panel (or a variable), as Grafana stores it."""

    dashboard: str
    panel: str
    ref: str
    lang: str  # promql | logql
    expr: str

    @property
    def id(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def dashboard_queries() -> list[Query]:
    queries = []
    for path in DASHBOARD_FILES:
        board = load(path)
        for p in panels(board):
            for t in p.get("targets", []):
                uid = (t.get("datasource") or p.get("datasource") or {}).get("uid")
                lang = {"prometheus": "promql", "loki": "logql"}.get(uid or "")
                if lang and t.get("expr"):
                    queries.append(Query(path.name, p["title"], t["refId"], lang, t["expr"]))
        for var in board["templating"]["list"]:
            query = var.get("query")
            text = query if isinstance(query, str) else None
            if var.get("datasource", {}).get("uid") == "prometheus" and text:
                queries.append(Query(path.name, f"variable {var['name']}", "query", "promql", label_values_selector(text)))
    return queries


def label_values_selector(text: str) -> str:
    """label_values(SELECTOR, label) -> SELECTOR: the PromQL part of Grafana's variable query."""
    match = re.fullmatch(r"label_values\((?P<selector>.+),\s*(?P<label>\w+)\)", text.strip())
    assert match, f"unexpected variable query {text!r}"
    return match["selector"]


def rule_queries() -> list[Query]:
    queries = []
    for path, lang in [(p, "promql") for p in PROM_RULE_FILES] + [(p, "logql") for p in LOKI_RULE_FILES]:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                queries.append(Query(path.name, f"{group['name']}/{name}", rule.get("labels", {}).get("slo", ""),
                                     lang, rule["expr"]))
    return queries


def grafana_escape_regex(value: str) -> str:
    r"""Grafana's `${var:regex}` for a single value: @grafana/scenes formatRegistry (VariableFormatID.Regex) calls
    escapeRegex of packages/grafana-data/src/text/string.ts, `value.replace(/[\\^$*+?.()|[\]{}\/]/g, '\\$&')`."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m[0], value)


# The formats the dashboards use; a format not listed here fails the substitution (so its escaping gets pinned).
FORMATS = {"": lambda value: value, "raw": lambda value: value, "regex": grafana_escape_regex}


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """Replaces $var, ${var} and ${var:format} as Grafana would; fails on a variable it does not know."""
    known = {**INTERVALS, **PARSE_VALUES, **(values or {})}

    def replace(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        if name not in known:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return FORMATS[match["format"] or ""](known[name])

    return re.sub(r"\$\{(?P<braced>\w+)(?::(?P<format>\w+))?\}|\$(?P<bare>\w+)", replace, expr)


def parse_promql(expr: str) -> Any:
    return promql_parser.parse(expr)


def walk(expr: str) -> Iterator[Any]:
    nodes: list[Any] = []
    promql_parser.walk(parse_promql(expr), lambda node: nodes.append(node))
    yield from nodes


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects: plain names and __name__ matchers (regexes kept as written)."""
    names = set()
    for node in walk(expr):
        if type(node).__name__ == "VectorSelector":
            if node.name:
                names.add(node.name)
            for m in node.matchers.matchers:
                if m.name == "__name__":
                    names.add(m.value)
    return names


def range_functions(expr: str) -> Iterator[tuple[str, timedelta]]:
    """(function, range) for every range-vector function over a plain selector: rate(x[5m]) -> (rate, 5m)."""
    for node in walk(expr):
        if type(node).__name__ == "Call":
            for arg in node.args:
                if type(arg).__name__ == "MatrixSelector":
                    yield node.func.name, arg.range


def lezer_errors(items: list[Query]) -> dict[str, list[dict[str, Any]]]:
    """Parses with the lezer grammars under Node; returns the queries that have error nodes."""
    payload = json.dumps([{"id": q.id, "lang": q.lang, "expr": q.expr} for q in items])
    result = subprocess.run(["node", "parse-queries.mjs"], input=payload, cwd=JS_DIR, capture_output=True,
                            text=True, timeout=60, check=True)
    return {r["id"]: r["errors"] for r in json.loads(result.stdout) if not r["ok"]}


needs_grammars = pytest.mark.skipif(
    shutil.which("node") is None or not (JS_DIR / "node_modules" / "@grafana" / "lezer-logql").is_dir(),
    reason="node or tests/js/node_modules missing: `make node-deps` (scripts/install-node-deps.sh) installs them")


def _substituted(queries: list[Query]) -> list[Query]:
    return [Query(q.dashboard, q.panel, q.ref, q.lang, substitute(q.expr)) for q in queries]


# --- tests ----------------------------------------------------------------------------------------------------


def test_there_are_queries_of_both_languages() -> None:
    langs = [q.lang for q in dashboard_queries()]
    assert langs.count("promql") > 60 and langs.count("logql") >= 5


def test_substitution_knows_every_variable_and_leaves_none_behind() -> None:
    for q in dashboard_queries():
        assert "$" not in substitute(q.expr), q.id
    with pytest.raises(KeyError):
        substitute('up{job="$nope"}')
    assert substitute("rate(x[$__rate_interval]) ${service_name:regex}") == "rate(x[97s]) checkout"


@pytest.mark.parametrize("query", [q for q in dashboard_queries() if q.lang == "promql"], ids=lambda q: q.id)
def test_dashboard_promql_parses(query: Query) -> None:
    parse_promql(substitute(query.expr))


@pytest.mark.parametrize("query", [q for q in rule_queries() if q.lang == "promql"], ids=lambda q: q.id)
def test_rule_promql_parses(query: Query) -> None:
    parse_promql(query.expr)


def test_promql_parser_rejects_broken_queries() -> None:
    # the parse tests above would be worthless if the parser accepted anything
    for broken in ("sum(rate(x[5m]) by (a)", "rate(x)", 'x{a="1"'):
        with pytest.raises(ValueError):
            parse_promql(broken)


@needs_grammars
def test_every_query_parses_with_grafanas_grammars() -> None:
    queries = _substituted(dashboard_queries()) + rule_queries()
    assert sum(q.lang == "logql" for q in queries) >= 6
    errors = lezer_errors(queries)
    assert not errors, json.dumps(errors, indent=1)


@needs_grammars
def test_the_grammars_find_errors() -> None:
    broken = [Query("x", "p", "A", "logql", '{service_name="a"} | severity_text=~"ERROR" |= ('),
              Query("x", "p", "B", "logql", 'sum by (service_name) (rate({service_name="a"}))'),
              Query("x", "p", "C", "promql", "sum(rate(x[5m]) by (a)")]
    assert set(lezer_errors(broken)) == {q.id for q in broken}


def test_loki_rules_filter_otlp_severity_metadata_per_service() -> None:
    # Loki's OTLP ingest keeps severity_text as structured metadata and service_name as a stream label.
    for q in rule_queries():
        if q.lang == "logql":
            assert '{service_name=~".+"}' in q.expr
            assert 'severity_text=~"ERROR|CRITICAL|FATAL"' in q.expr
            assert "sum by (service_name)" in q.expr


LOG_RANGE_AGGREGATION = re.compile(r"(?P<selector>\{[^}]*\})(?P<pipeline>[^\[]*)\[[^\]]+\]")


def test_log_metric_queries_drop_the_per_line_ids_before_aggregating() -> None:
    """OTLP lines carry trace_id / span_id as structured metadata, which a LogQL range aggregation keeps as labels
    (one series per request) unless a `drop` stage removes them first (pkg/logql/log/drop_labels.go: Del() removes
    a name from every label category, structured metadata included)."""
    metric_queries = [q for q in dashboard_queries() + rule_queries()
                      if q.lang == "logql" and LOG_RANGE_AGGREGATION.search(substitute(q.expr))]
    assert len(metric_queries) >= 4
    for q in metric_queries:
        for match in LOG_RANGE_AGGREGATION.finditer(substitute(q.expr)):
            stages = [stage.strip() for stage in match["pipeline"].split("|")]
            assert "drop trace_id, span_id" in stages, f"{q.id}: {match[0]}"
    # a log query (no range) is left alone: its lines should show their trace ids
    assert LOG_RANGE_AGGREGATION.search('{service_name=~".+"} | trace_id="x"') is None


SEARCHES = ['a(b', 'say "hi"', "C:\\temp\\new", "x[1]{2}", "$^.*+?|/", "it's", "naïve ÜNICODE", "50%", ""]


def _search_query() -> Query:
    (query,) = [q for q in dashboard_queries() if q.lang == "logql" and q.panel == "All records"]
    return query


def _searched(search: str) -> str:
    return substitute(_search_query().expr, {"search": search})


@pytest.mark.parametrize("search", SEARCHES)
def test_the_search_box_is_a_case_insensitive_line_contains_for_any_text(search: str) -> None:
    """The regex Loki gets (the backtick string is raw: its content as it is) matches exactly the lines that
    contain the text, whatever its case. Python's re stands in for Go's RE2: for escaped literals and (?i) they
    agree."""
    expr = _searched(search)
    pattern = re.search(r"\|~ `(?P<regex>[^`]*)`", expr)
    assert pattern is not None, expr
    regex = re.compile(pattern["regex"])
    assert regex.search(f"before {search.upper()} after") and regex.search(f"x{search.lower()}")
    if search:  # taken literally: ".*" or "|" as a pattern would match this line too
        assert not regex.search("an unrelated line"), pattern["regex"]


@needs_grammars
def test_every_search_text_gives_a_query_lokis_grammar_accepts() -> None:
    queries = [Query("logs.json", "All records", str(i), "logql", _searched(s)) for i, s in enumerate(SEARCHES)]
    assert not lezer_errors(queries), json.dumps(lezer_errors(queries), indent=1)
    # what the raw form `|~ "(?i)$search"` did (Loki answered HTTP 400): a `"` broke the query's syntax, a `(` its
    # regular expression
    assert lezer_errors([Query("logs.json", "raw", "A", "logql", '{service_name=~".+"} |~ "(?i)say "hi""')])
    with pytest.raises(re.error):
        re.compile("(?i)a(b")
    # the one character no format escapes: a backtick still ends the string (docs/dashboards.md says so)
    assert lezer_errors([Query("logs.json", "backtick", "A", "logql", _searched("a`b"))])
