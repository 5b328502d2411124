"""Opening the SQLite metadata database: the pragmas every connection needs, and the schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tunnelmesh.store import migrations


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def init_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema (store/migrations.py); raises SchemaTooNew for a newer release's database."""
    migrations.migrate(conn)
