"""SQL statements reduced to what may leave the process: sanitized text, operation, table, summary.

>>> q = analyse("SELECT * FROM users WHERE email = 'a@b.c' AND password = 's3cret' LIMIT 10")
>>> (q.text, q.operation, q.collection, q.summary)
('SELECT * FROM users WHERE email = ? AND password = ? LIMIT ?', 'SELECT', 'users', 'SELECT users')

Literals (quoted and dollar-quoted strings, numbers, hex and bit strings) become `?` and comments are dropped, so
what a statement carries inline never reaches a span; placeholders (`%s`, `%(name)s`, `$1`, `:name`, `?`) stay
as they are — their values are never read. `db.query.summary` follows the semantic conventions: each operation
keyword and the tables it names, in order (`INSERT orders SELECT carts`), at most 255 characters, cut between
words. `db.collection.name` is set only when the statement names exactly one table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from obsbox.instrumentation._interned import Interned

__all__ = ["QueryInfo", "analyse"]

SUMMARY_LIMIT = 255

_TOKEN = re.compile(
    r"""
      (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<string>[eEbBxXnN]?'(?:[^'\\]|''|\\.)*(?:'|\Z)|\$(?P<tag>[A-Za-z_]\w*)?\$.*?(?:\$(?P=tag)?\$|\Z))
    | (?P<ident>"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\])
    | (?P<param>%\([^)]*\)s|%s|\$\d+|(?<!:):[A-Za-z_]\w*|\?)
    | (?P<number>(?<![\w.])(?:0[xX][0-9A-Fa-f]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w]))
    | (?P<word>[A-Za-z_][\w$]*(?:\.(?:[A-Za-z_][\w$]*|"(?:[^"]|"")*"))*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

# Operations that may appear anywhere in a statement (subqueries, CTEs, INSERT ... SELECT).
_DML = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"})
# Operations recognised as a statement's first word.
_OPERATIONS = _DML | frozenset({
    "UPSERT", "REPLACE", "WITH", "CREATE", "ALTER", "DROP",
    "TRUNCATE", "COPY", "CALL", "EXEC", "EXECUTE", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET",
    "SHOW", "EXPLAIN", "ANALYZE", "VACUUM", "GRANT", "REVOKE", "LOCK", "PRAGMA", "LISTEN", "NOTIFY", "PREPARE",
    "DEALLOCATE", "DECLARE", "FETCH", "CLOSE", "VALUES",
})
# Keywords after which a table name follows.
_TABLE_BEFORE = frozenset({"FROM", "INTO", "JOIN", "UPDATE", "TABLE", "TRUNCATE"})
# Words that may sit between such a keyword and the table.
_SKIP = frozenset({"ONLY", "IF", "NOT", "EXISTS", "LATERAL", "TEMP", "TEMPORARY", "UNLOGGED"})
# Operations whose keyword is not worth a place in the summary (they only introduce another).
_NOT_IN_SUMMARY = frozenset({"WITH"})


@dataclass(frozen=True)
class QueryInfo:
    """What a statement may tell about itself outside the process."""

    text: str  # sanitized: literals replaced by ?, comments dropped
    operation: str | None
    collection: str | None
    summary: str | None


def _summary(parts: list[str]) -> str | None:
    out: list[str] = []
    length = 0
    for part in parts:
        if out and out[-1] == part:
            continue
        extra = len(part) + (1 if out else 0)
        if length + extra > SUMMARY_LIMIT:
            break
        out.append(part)
        length += extra
    return " ".join(out) or None


def _unquote(name: str) -> str:
    if name[:1] in "\"`[":
        return name[1:-1].replace('""', '"')
    return name


def _analyse(statement: str) -> QueryInfo:
    text: list[str] = []
    parts: list[str] = []
    tables: list[str] = []
    operation: str | None = None
    expect_table = False
    previous_space = False
    first = True
    for match in _TOKEN.finditer(statement):
        kind = match.lastgroup
        token = match.group()
        if kind == "tag":  # the named group inside a dollar-quoted string
            kind = "string"
        if kind in ("comment", "space"):
            if not previous_space and text:
                text.append(" ")
            previous_space = True
            continue
        previous_space = False
        if kind in ("string", "number"):
            text.append("?")
            expect_table = False
            continue
        text.append(token)
        if kind == "word":
            upper = token.upper()
            if expect_table and upper in _SKIP:
                continue
            if expect_table and upper not in _OPERATIONS:
                tables.append(token)
                parts.append(token)
                expect_table = False
                continue
            expect_table = upper in _TABLE_BEFORE
            if upper in _DML or (first and upper in _OPERATIONS):
                if operation is None and upper not in _NOT_IN_SUMMARY:
                    operation = upper
                if upper not in _NOT_IN_SUMMARY:
                    parts.append(upper)
            first = False
        elif first:
            first = token == "("  # a statement may open with a parenthesis: (SELECT ...) UNION (SELECT ...)
            expect_table = False
        elif kind == "ident" and expect_table:
            name = _unquote(token)
            tables.append(name)
            parts.append(name)
            expect_table = False
        elif token != "(":
            expect_table = False
    collection = tables[0] if tables and all(t == tables[0] for t in tables) else None
    return QueryInfo("".join(text).strip(), operation, collection, _summary(parts))


# Statements repeat (an application has a fixed set of them): each is analysed once. Statements with literals
# inlined may not repeat, so the table is bounded and long statements are not kept.
_analysed: Interned[str, QueryInfo] = Interned(_analyse, limit=2048, size=lambda q: len(q.text), max_size=4096)


def analyse(statement: str) -> QueryInfo:
    """The sanitized text, operation, single table and summary of a SQL statement (cached)."""
    return _analysed[statement]
