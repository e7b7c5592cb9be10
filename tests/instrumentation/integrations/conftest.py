"""Real PostgreSQL and Redis servers for the integration tests, started once per session on 127.0.0.1.

`make test` installs them from Debian (scripts/install-system-deps.sh); each session runs its own with a temporary
data directory on a free port and stops it at the end. Where a server is not installed the tests that need it are
skipped saying so — except in CI (CI=true), which can install them, where that is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


def _missing(what: str) -> None:
    message = f"{what} is not installed (Debian: apt-get install {what.split()[0]}; make test installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " — CI must run these tests")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes] | None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass(frozen=True)
class Postgres:
    host: str
    port: int
    user: str
    database: str

    @property
    def dsn(self) -> str:
        """libpq/psycopg form."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"

    def url(self, driver: str) -> str:
        """SQLAlchemy form, e.g. url("psycopg") or url("asyncpg")."""
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{self.database}"


@dataclass(frozen=True)
class Redis:
    host: str
    port: int


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; Debian's package creates the `postgres` user.
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL server of Debian's on 127.0.0.1 (trust auth, user and database `obsbox`), for the session."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins:
        _missing("postgresql server")
    bindir = os.path.dirname(bins[-1])
    root = tempfile.mkdtemp(prefix="obsbox-pg-")
    data = os.path.join(root, "data")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    port = _free_port()
    log = os.path.join(root, "server.log")
    subprocess.run(_as_postgres_user([f"{bindir}/initdb", "-D", data, "-U", "obsbox", "--auth=trust",
                                      "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres_user([
        f"{bindir}/pg_ctl", "-D", data, "-l", log, "-w", "-t", "60",
        "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off", "start"]),
        check=True, capture_output=True)
    try:
        _wait_for_port(port, None)
        subprocess.run(_as_postgres_user([f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "obsbox",
                                          "obsbox"]), check=True, capture_output=True)
        yield Postgres("127.0.0.1", port, "obsbox", "obsbox")
    finally:
        subprocess.run(_as_postgres_user([f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    """A redis-server of Debian's on 127.0.0.1 (no persistence), for the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server")
    root = tempfile.mkdtemp(prefix="obsbox-redis-")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", root,
         "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield Redis("127.0.0.1", port)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(root, ignore_errors=True)

