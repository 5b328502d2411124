"""A real PostgreSQL for the tests: one pgserver instance (PostgreSQL 16, shipped as a wheel) per pytest
process, started in a temporary directory on first use and stopped and deleted at exit, and a fresh empty
database per call, so that every test that asks for one is isolated from the others."""

from __future__ import annotations

import itertools
import signal
import sys
import tempfile
import threading
import warnings

import psycopg
from psycopg.conninfo import make_conninfo

with warnings.catch_warnings():
    # pgserver asks platformdirs for a runtime dir, which warns where XDG_RUNTIME_DIR is unset (CI, containers)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    import pgserver
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

_lock = threading.Lock()
_server: pgserver.PostgresServer | None = None
_numbers = itertools.count()


def _admin_uri() -> str:
    global _server
    with _lock:
        if _server is None:
            # cleanup_mode "delete": pgserver stops the server and removes the directory at exit
            server = pgserver.get_server(tempfile.mkdtemp(prefix="tm-pg-"), cleanup_mode="delete")
            with psycopg.connect(server.get_uri(), autocommit=True) as conn:
                # a throw-away server: durability against power loss buys the tests nothing, and without
                # fsync a CREATE DATABASE and each commit cost a fraction of the time
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(f"ALTER SYSTEM SET {setting} = off")
                conn.execute("SELECT pg_reload_conf()")
            _server = server
            _exit_on_sigterm()
        return _server.get_uri()


def fresh_database() -> str:
    """The connection string of a new, empty database on the tests' server."""
    admin = _admin_uri()
    name = f"tm_{next(_numbers)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return make_conninfo(admin, dbname=name)


def _exit_on_sigterm() -> None:
    """pgserver stops its server from an atexit hook, which a SIGTERM (a CI timeout, `timeout`) would skip,
    leaving a postgres running: make SIGTERM exit the interpreter normally instead, where nobody else
    asked for it."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


class PrivateServer:
    """A PostgreSQL server of one test's own, which it may stop and start again (the shared one must
    stay up for every other test): same data directory, same socket, so connection strings stay valid."""

    def __init__(self) -> None:
        self.server = pgserver.get_server(tempfile.mkdtemp(prefix="tm-pg-private-"), cleanup_mode="delete")
        info = self.server.get_postmaster_info()
        assert info.socket_dir is not None, "pgserver without a unix socket"
        self.socket_dir = info.socket_dir
        self.port = info.port
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                conn.execute(f"ALTER SYSTEM SET {setting} = off")
            conn.execute("SELECT pg_reload_conf()")

    def database(self, name: str, user: str, password: str) -> str:
        """A new database owned by a new role with this password: its libpq URI, password included."""
        with psycopg.connect(self.server.get_uri(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
            conn.execute(f"CREATE DATABASE {name} OWNER {user}")
        return f"postgresql://{user}:{password}@/{name}?host={self.socket_dir}&port={self.port}"

    def stop(self) -> None:
        """Stop the server now (fast shutdown: every open connection is dropped)."""
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def start(self) -> None:
        """Start it again on the same socket (as pgserver first started it)."""
        args = ["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start"]
        pg_ctl(args, pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)

    def close(self) -> None:
        """Stop it (if running) and delete its directory. A server `start` started is stopped here:
        pgserver's cleanup only knows the process it started first."""
        if (self.server.pgdata / "postmaster.pid").exists() and self.server.get_pid() != self._current_pid():
            self.stop()
        self.server.cleanup()

    def _current_pid(self) -> int | None:
        info = PostmasterInfo.read_from_pgdata(self.server.pgdata)
        return info.pid if info is not None else None
