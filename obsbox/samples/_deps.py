"""What the sample shop keeps outside its own processes, read from the environment once per process.

    OBSBOX_SAMPLES_DATABASE_URL  inventory's stock (a SQLAlchemy URL, e.g. postgresql+psycopg://shop@127.0.0.1/shop);
                                 unset or unreachable: a SQLite file of its own
    OBSBOX_SAMPLES_REDIS_URL     orders' catalogue cache and the Celery broker of the fulfilment worker
                                 (e.g. redis://127.0.0.1:6379/0); unset or unreachable: no cache, and orders fulfils
                                 in its own worker pool

The shop runs with none of them: `note()` is the one line that says what it skips and how to turn it on.
"""

from __future__ import annotations

import os
import socket
import urllib.parse

DATABASE_URL = "OBSBOX_SAMPLES_DATABASE_URL"
REDIS_URL = "OBSBOX_SAMPLES_REDIS_URL"
EXAMPLE_REDIS_URL = "redis://127.0.0.1:6379/0"


def reachable(url: str, default_port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections where `url` points (host and port; a URL without a host: no)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port or default_port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_url() -> str | None:
    """$OBSBOX_SAMPLES_REDIS_URL when a Redis server answers there, else None."""
    url = os.environ.get(REDIS_URL, "").strip()
    return url if url and reachable(url, 6379) else None


def note() -> str | None:
    """What the shop runs without, and how to turn it on; None when it has everything."""
    url = os.environ.get(REDIS_URL, "").strip()
    if url and reachable(url, 6379):
        return None
    why = f"nothing answers at {REDIS_URL}={url}" if url else f"{REDIS_URL} is not set"
    return (f"sample shop: no Redis ({why}): orders caches nothing and fulfils orders itself instead of handing "
            f"them to a Celery worker; to have both, start redis-server and set {REDIS_URL}={EXAMPLE_REDIS_URL}")
