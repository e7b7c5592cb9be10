"""The statement analysis behind db.query.text, db.query.summary, db.operation.name and db.collection.name."""

from __future__ import annotations

import pytest

from obsbox.instrumentation.integrations._sql import SUMMARY_LIMIT, analyse


@pytest.mark.parametrize(("statement", "text", "operation", "collection", "summary"), [
    ("SELECT * FROM users WHERE email = 'a@b.c' AND pw = 'it''s' LIMIT 10",
     "SELECT * FROM users WHERE email = ? AND pw = ? LIMIT ?", "SELECT", "users", "SELECT users"),
    ("INSERT INTO orders (id, pw) VALUES (%s, %(pw)s)",
     "INSERT INTO orders (id, pw) VALUES (%s, %(pw)s)", "INSERT", "orders", "INSERT orders"),
    ('UPDATE "Users" SET x = $1 WHERE id = $2', 'UPDATE "Users" SET x = $1 WHERE id = $2', "UPDATE", "Users",
     "UPDATE Users"),
    ("select a.id from public.a join b on a.id = b.id where x = 1.5e3 -- pw=secret",
     "select a.id from public.a join b on a.id = b.id where x = ?", "SELECT", None, "SELECT public.a b"),
    ("WITH t AS (SELECT 1) INSERT INTO x SELECT * FROM t", "WITH t AS (SELECT ?) INSERT INTO x SELECT * FROM t",
     "SELECT", None, "SELECT INSERT x SELECT t"),
    ("SELECT $$sec'ret$$, $tag$x$tag$, E'a\\'b', x'ff', 0x1F FROM t1 /* secret */",
     "SELECT ?, ?, ?, ?, ? FROM t1", "SELECT", "t1", "SELECT t1"),
    ("DELETE FROM ONLY x WHERE y IN (1, 2, 3)", "DELETE FROM ONLY x WHERE y IN (?, ?, ?)", "DELETE", "x",
     "DELETE x"),
    ("CREATE TABLE IF NOT EXISTS items (id int)", "CREATE TABLE IF NOT EXISTS items (id int)", "CREATE", "items",
     "CREATE items"),
    ("BEGIN", "BEGIN", "BEGIN", None, "BEGIN"),
    ("select :name, ? from t", "select :name, ? from t", "SELECT", "t", "SELECT t"),
])
def test_analysis(statement: str, text: str, operation: str | None, collection: str | None,
                  summary: str | None) -> None:
    q = analyse(statement)
    assert (q.text, q.operation, q.collection, q.summary) == (text, operation, collection, summary)


def test_an_unterminated_literal_is_still_hidden() -> None:
    assert analyse("SELECT 'secret").text == "SELECT ?"
    assert analyse("SELECT $$secret").text == "SELECT ?"


def test_the_summary_is_cut_between_words() -> None:
    statement = "SELECT * FROM " + " JOIN ".join(f"table_number_{i}" for i in range(40))
    summary = analyse(statement).summary
    assert summary is not None and len(summary) <= SUMMARY_LIMIT
    assert summary.split()[-1].startswith("table_number_")
    assert all(part == "SELECT" or part.startswith("table_number_") for part in summary.split())
