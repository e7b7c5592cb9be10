"""Which hook Django's ORM is instrumented through: the cost per statement of the two candidates, in µs.

    .venv/bin/python benchmarks/django_hooks.py               # 15 alternating rounds, 3,000 statements each
    .venv/bin/python benchmarks/django_hooks.py --rounds 30

In one process (Django on in-memory SQLite, obsbox configured, its export going nowhere so only the hook's own
cost counts), alternating round by round between: no hook (bare); `CursorWrapper.execute` wrapped at the class
(obsbox's integration, obsbox/instrumentation/integrations/django.py); and an entry in the connection's
`execute_wrappers` doing the same work (a DbCall, the driver's hook silenced). Prints the median µs per
`cursor.execute()` and what each adds to bare. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--statements", type=int, default=3000)
    args = parser.parse_args()

    import django
    from django.conf import settings

    settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
                       INSTALLED_APPS=[])
    django.setup()
    from django.db import connection

    import obsbox
    from obsbox.instrumentation.integrations import django as hooks
    from obsbox.instrumentation.integrations._db import DbCall, Operation, outer, reset_outer

    obsbox.configure(service_name="django-hooks", console=False, endpoint="http://127.0.0.1:9")
    hooks.uninstrument()

    def wrapper(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        call = DbCall.begin(hooks._target(context["connection"]), Operation.of_sql(sql))
        if call is None:
            return execute(sql, params, many, context)
        token = outer()
        try:
            result = execute(sql, params, many, context)
        except BaseException as exc:
            reset_outer(token)
            call.finish(exc)
            raise
        reset_outer(token)
        call.finish(None)
        return result

    def use(mode: str) -> None:
        hooks.uninstrument()
        if wrapper in connection.execute_wrappers:
            connection.execute_wrappers.remove(wrapper)
        if mode == "CursorWrapper patched":
            hooks.instrument()
        elif mode == "execute_wrappers":
            connection.execute_wrappers.append(wrapper)

    cursor = connection.cursor()
    cursor.execute("CREATE TABLE t (x int)")
    cursor.execute("INSERT INTO t VALUES (1)")
    results: dict[str, list[float]] = {"bare": [], "CursorWrapper patched": [], "execute_wrappers": []}
    for _ in range(args.rounds):
        for mode, times in results.items():
            use(mode)
            for _ in range(args.statements // 10):
                cursor.execute("SELECT x FROM t WHERE x = %s", (1,))
            start = time.perf_counter()
            for _ in range(args.statements):
                cursor.execute("SELECT x FROM t WHERE x = %s", (1,))
            times.append((time.perf_counter() - start) / args.statements * 1e6)
    bare = statistics.median(results["bare"])
    for mode, times in results.items():
        us = statistics.median(times)
        print(f"{mode:<22} {us:7.2f} µs/statement  +{us - bare:5.2f}")


if __name__ == "__main__":
    main()
