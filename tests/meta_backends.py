"""Every metadata backend the tests run on, by name: (a fresh temp dir) -> an open, empty backend.
Add a new backend here and the contract tests, the write rules, the listing pages and the component
tier all run on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pg_server

from tunnelmesh.store.memory_meta import MemoryMeta
from tunnelmesh.store.metadata import MetaBackend
from tunnelmesh.store.pg_meta import PgMeta
from tunnelmesh.store.sqlite_meta import SqliteMeta

BACKENDS: dict[str, Callable[[Path], MetaBackend]] = {
    "memory": lambda _tmp: MemoryMeta(),
    "sqlite": SqliteMeta.open,
    # a fresh database on the suite's own PostgreSQL (tests/pg_server.py)
    "postgresql": lambda _tmp: PgMeta.open(pg_server.fresh_database()),
}
