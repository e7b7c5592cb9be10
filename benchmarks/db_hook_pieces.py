"""Where the time of obsbox's SQLAlchemy hook goes, per statement, in µs (the breakdown in docs/benchmarks.md).

    .venv/bin/python benchmarks/db_hook_pieces.py              # 15 alternating rounds of 3,000 statements

In one process, obsbox configured with its export going nowhere (so only the hook's own cost counts):

- a SQLAlchemy Core SELECT on in-memory SQLite, alternating round by round between no listener (bare), three
  empty `before_cursor_execute`/`after_cursor_execute`/`handle_error` listeners (SQLAlchemy's event path alone)
  and obsbox's listeners — medians, and what each adds to bare;
- timed alone with `timeit` (minimum of 7 repeats): a `DbCall` begun and finished, the statement's analysis as
  later calls get it (`Operation.of_sql` on a known statement), and marking and unmarking the context for a
  driver's hook.
Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
import timeit
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--statements", type=int, default=3000)
    args = parser.parse_args()

    import sqlalchemy as sa
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    import obsbox
    from obsbox.instrumentation.integrations import sqlalchemy as hooks
    from obsbox.instrumentation.integrations._db import DbCall, Operation, Target, outer, reset_outer

    obsbox.configure(service_name="db-hook-pieces", console=False, endpoint="http://127.0.0.1:9")
    hooks.uninstrument()
    engine = sa.create_engine("sqlite://")
    conn = engine.connect()
    conn.execute(sa.text("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)"))
    conn.execute(sa.text("INSERT INTO items VALUES (1, 'widget')"))
    query = sa.text("SELECT name FROM items WHERE id = :id")

    def select() -> None:
        conn.execute(query, {"id": 1}).scalar()

    def nothing(*_: Any) -> None:
        pass

    def before(*_: Any) -> None:
        pass

    def after(*_: Any) -> None:
        pass

    empty = (("before_cursor_execute", before), ("after_cursor_execute", after), ("handle_error", nothing))

    def use(mode: str) -> None:
        hooks.uninstrument()
        for name, fn in empty:
            if event.contains(Engine, name, fn):
                event.remove(Engine, name, fn)
        if mode == "empty listeners":
            for name, fn in empty:
                event.listen(Engine, name, fn)
        elif mode == "obsbox":
            hooks.instrument()

    results: dict[str, list[float]] = {"bare": [], "empty listeners": [], "obsbox": []}
    for _ in range(args.rounds):
        for mode, times in results.items():
            use(mode)
            for _ in range(args.statements // 10):
                select()
            start = time.perf_counter()
            for _ in range(args.statements):
                select()
            times.append((time.perf_counter() - start) / args.statements * 1e6)
    bare = statistics.median(results["bare"])
    for mode, times in results.items():
        us = statistics.median(times)
        print(f"{mode:<16} {us:7.2f} µs/statement  +{us - bare:5.2f}")

    target = Target("sqlite")
    operation = Operation.of_sql("SELECT name FROM items WHERE id = ?")

    def span_and_measurement() -> None:
        call = DbCall.begin(target, operation)
        if call is not None:
            call.finish(None)

    def known_statement() -> None:
        Operation.of_sql("SELECT name FROM items WHERE id = ?")

    def mark() -> None:
        reset_outer(outer())

    for name, fn in (("DbCall begin+finish", span_and_measurement), ("analysis (known)", known_statement),
                     ("mark+unmark", mark)):
        best = min(timeit.repeat(fn, number=20000, repeat=7)) / 20000 * 1e6
        print(f"{name:<20} {best:6.2f} µs")


if __name__ == "__main__":
    main()
