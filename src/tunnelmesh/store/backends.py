"""The one place that opens the configured metadata backend: SQLite in the data dir (the default), or
PostgreSQL at `s3.metadata` (store/pg_meta.py). Every process that touches metadata opens it here: each
worker's Store, the supervisor's start-up and recovery, the sweepers, the scrubber, the CLI."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.metadata import MetaBackend
from tunnelmesh.store.migrations import SchemaError

T = TypeVar("T")


@dataclass(frozen=True)
class MetaConfig:
    """Which metadata backend, and how to reach it: `uri` None is SQLite in the data dir."""

    uri: str | None = field(default=None, repr=False)  # may hold the password
    pool: int = 4  # PostgreSQL connections per process
    timeout: float = 5.0  # seconds a request's metadata operation may wait (see PgMeta.open)

    def describe(self, data_dir: Path) -> str:
        """`sqlite <path>` or the PostgreSQL URI with its password redacted: safe for logs and output."""
        if self.uri is None:
            from tunnelmesh.store.datadir import DataDir

            return f"sqlite {DataDir(data_dir).meta_db.resolve()}"
        from tunnelmesh.store.pg_meta import redact

        return f"postgresql {redact(self.uri)}"


SQLITE = MetaConfig()


class BackendMismatch(SchemaError):
    """The configuration names another metadata engine than the one this data dir's records are in."""


def check_backend(files: DataDir, config: MetaConfig) -> str:
    """Refuse to start on another engine than the data dir's, record the engine at the first start, and
    return the data dir's own random id (recorded beside it; it proves which data dir holds a node id,
    see MetaTx.claim_node).

    The dangerous slip is losing `$TUNNELMESH_S3_METADATA` on a restart: the coordinator would start on a
    new, empty SQLite beside blobs that only PostgreSQL names, and its first orphan sweep after a crash
    would delete them all. Moving the other way would hide the SQLite records. Both wait for
    `tunnelmesh storage migrate` (issue 13); until then, each is refused with the reason."""
    kind = "sqlite" if config.uri is None else "postgresql"
    path = files.metadata_backend
    try:
        recorded, _, ident = path.read_text().strip().partition(" ")
    except FileNotFoundError:
        # a data dir from before the record: its SQLite database says which engine it had
        recorded, ident = ("sqlite" if files.meta_db.exists() else ""), ""
    if files.meta_db.exists() and (kind == "sqlite" or recorded != "postgresql"):
        _check_not_moved(files, finished=recorded == "postgresql")
    if recorded and recorded != kind:
        raise BackendMismatch(
            f"the records of {files.root} are in {recorded}, but the configuration says {kind}"
            + (" (is s3.metadata or $TUNNELMESH_S3_METADATA missing?)" if kind == "sqlite" else "")
            + "; refusing to start rather than serve, and sweep, against the wrong metadata"
        )
    if not ident:
        ident = uuid.uuid4().hex
        tmp = files.replacement(path, os.getpid())
        tmp.write_text(f"{kind} {ident}\n")
        os.replace(tmp, path)
    return ident


def _check_not_moved(files: DataDir, finished: bool) -> None:
    """Refuse a data dir whose SQLite database `storage migrate` fenced (store/migrate.py): on SQLite it was
    moved; on PostgreSQL, until `metadata-backend` says so, the move has not finished (so the message says
    to run it again)."""
    from tunnelmesh.store.sqlite_db import connect
    from tunnelmesh.store.sqlite_meta import Fence, StoreMoved, read_fence

    conn = connect(files.meta_db)
    try:
        fence = read_fence(conn)
    finally:
        conn.close()
    if fence is not None:
        raise StoreMoved(files.meta_db, fence if finished else Fence(fence.target, fence.started, None))


class NodeIdTaken(SchemaError):
    """Another coordinator's data dir holds this node id."""


def open_meta(data_dir: Path, config: MetaConfig = SQLITE, *, serving: bool = True) -> MetaBackend:
    """The configured backend, its schema created or upgraded. `serving`: for a process answering requests,
    whose every metadata operation gives up after `timeout` (Unavailable); background jobs (sweeps, the
    scrub, start-up) read whole tables and wait as long as that takes."""
    if config.uri is None:
        from tunnelmesh.store.sqlite_meta import SqliteMeta

        return SqliteMeta.open(data_dir)
    from tunnelmesh.store.pg_meta import PgMeta

    return PgMeta.open(config.uri, config.pool, config.timeout, bounded=serving)


def run_on(data_dir: Path, fn: Callable[[MetaBackend], Awaitable[T]], config: MetaConfig = SQLITE) -> T:
    """Run `fn` over the configured metadata from a process with no event loop of its own (the supervisor
    before it forks the workers, a sweeper, the scrubber); the backend is closed after."""
    meta = open_meta(data_dir, config, serving=False)

    async def main() -> T:
        return await fn(meta)

    try:
        return asyncio.run(main())
    finally:
        meta.close()
