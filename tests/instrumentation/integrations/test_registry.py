"""configure() and the libraries it instruments: none is imported for it; each is instrumented when first imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

LIBRARIES = ("sqlalchemy", "django", "psycopg", "asyncpg", "redis", "grpc", "celery")


def test_configure_imports_no_library_and_instruments_each_on_first_import() -> None:
    script = textwrap.dedent(f"""
        import sys
        import obsbox
        from obsbox.instrumentation.integrations import instrument_libraries
        obsbox.configure(service_name="lazy", console=False, endpoint="http://127.0.0.1:9")
        assert [m for m in {LIBRARIES!r} if m in sys.modules] == [], "configure() imported a library"
        assert set(instrument_libraries().values()) == {{"instrumented on import"}}
        import redis, sqlalchemy, grpc, psycopg, asyncpg.connection, celery.signals, django
        from django.db.backends.utils import CursorWrapper
        from sqlalchemy.engine import Engine
        from obsbox.instrumentation.integrations import sqlalchemy as sa_hooks
        assert hasattr(redis.client.Redis.execute_command, "__obsbox_original__")
        assert hasattr(psycopg.Cursor.execute, "__obsbox_original__")
        assert hasattr(CursorWrapper.execute, "__obsbox_original__")
        assert hasattr(asyncpg.connection.Connection.fetch, "__obsbox_original__")
        assert hasattr(grpc.insecure_channel, "__obsbox_original__")
        assert sqlalchemy.event.contains(Engine, "before_cursor_execute", sa_hooks._before)
        assert celery.signals.task_prerun.receivers, "no Celery handler connected"
        assert set(instrument_libraries().values()) == {{"instrumented"}}
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_a_disabled_library_is_not_instrumented_on_import_either() -> None:
    script = textwrap.dedent("""
        import obsbox
        obsbox.configure(service_name="lazy", console=False, endpoint="http://127.0.0.1:9",
                         disabled_integrations="redis")
        import redis
        assert not hasattr(redis.client.Redis.execute_command, "__obsbox_original__")
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


# Per integration: what to import, and an expression that is true while it is instrumented (a wrapped method, a
# listener, a connected signal handler). Every registered integration must have one.
PROBES: dict[str, tuple[str, str]] = {
    "sqlalchemy": ("import sqlalchemy\nfrom sqlalchemy.engine import Engine\n"
                   "from obsbox.instrumentation.integrations import sqlalchemy as hooks",
                   'sqlalchemy.event.contains(Engine, "before_cursor_execute", hooks._before)'),
    "django": ("import django\nfrom django.db.backends.utils import CursorWrapper",
               'hasattr(CursorWrapper.execute, "__obsbox_original__")'),
    "psycopg": ("import psycopg", 'hasattr(psycopg.Cursor.execute, "__obsbox_original__")'),
    "asyncpg": ("import asyncpg.connection", 'hasattr(asyncpg.connection.Connection.fetch, "__obsbox_original__")'),
    "redis": ("import redis", 'hasattr(redis.client.Redis.execute_command, "__obsbox_original__")'),
    "grpc": ("import grpc, grpc.aio", 'hasattr(grpc.aio.server, "__obsbox_original__")'),
    "celery": ("import celery.signals",
               'any("obsbox" in str(key) for key, _ in celery.signals.task_prerun.receivers)'),
}


def test_every_integration_has_a_probe() -> None:
    from obsbox.instrumentation.integrations import INTEGRATIONS

    assert set(PROBES) == set(INTEGRATIONS)


def _run(script: str) -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok"), done.stdout


@pytest.mark.parametrize("name", sorted(PROBES))
def test_instrumenting_twice_adds_nothing_twice(name: str) -> None:
    """Instrumented by configure() and then again by hand: one uninstrument() removes it all, so the second time
    added no second layer (a second wrapper, listener or handler would survive it)."""
    imports, probe = PROBES[name]
    _run(f"""
        import obsbox
        from obsbox.instrumentation.integrations import instrument_libraries, {name} as module
{textwrap.indent(imports, " " * 8)}
        obsbox.configure(service_name="twice", console=False, endpoint="http://127.0.0.1:9")
        assert instrument_libraries()[{name!r}] == "instrumented"
        assert {probe}
        module.instrument()
        module.instrument()
        module.uninstrument()
        assert not ({probe}), "a second layer survived uninstrument()"
        print("ok")
    """)


@pytest.mark.parametrize("name", sorted(PROBES))
def test_an_unsupported_version_is_one_warning_and_an_absent_library_one_debug_line(name: str) -> None:
    imports, probe = PROBES[name]
    _run(f"""
        import logging
        from obsbox.instrumentation.integrations import instrument_libraries, {name} as module
{textwrap.indent(imports, " " * 8)}

        class Lines(logging.Handler):
            records: list[logging.LogRecord] = []

            def emit(self, record: logging.LogRecord) -> None:
                self.records.append(record)

        log = logging.getLogger("obsbox")
        log.addHandler(Lines())
        log.setLevel(logging.DEBUG)
        module.SUPPORTED = ("0.1", "0.2")
        assert instrument_libraries()[{name!r}].startswith("unsupported version ")
        assert instrument_libraries()[{name!r}].startswith("unsupported version ")
        warnings = [r.getMessage() for r in Lines.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        assert warnings[0].startswith(f"obsbox: {{module.DISTRIBUTION}} ") and ">=0.1,<0.2" in warnings[0], warnings
        assert not ({probe}), "instrumented although unsupported"

        Lines.records.clear()
        module.LIBRARY = "obsbox_no_such_library"
        assert instrument_libraries()[{name!r}] == "not installed"
        assert not [r for r in Lines.records if r.levelno >= logging.WARNING]
        (line,) = [r.getMessage() for r in Lines.records if r.getMessage().startswith("obsbox: libraries:")]
        assert "{name} not installed" in line, line
        assert not ({probe})
        print("ok")
    """)
