"""configure() and the libraries it instruments: none is imported for it; each is instrumented when first imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
