"""`tunnelmesh storage migrate`: move a stopped coordinator's metadata from SQLite (its data dir) to PostgreSQL.
Blobs stay where they are.

The one place that knows both engines' tables: it reads SQLite with plain SQL and writes PostgreSQL with COPY,
row values as they are (both engines store the same shapes: store/meta_rows.py, store/pg_schema.py), so it
needs no change to the metadata protocol or to either backend.

The order, and why (docs/scale-out.md, hazard 7):
1. The data dir's lock, taken as a coordinator takes it: none runs on the data dir meanwhile.
2. Every refusal that needs no write comes first (the target unreachable, holding another store's records or
   not empty; a source PostgreSQL cannot hold), so a refused run changes nothing.
3. The fence goes into the SQLite database itself (table `moved_to`, `finished` NULL) BEFORE anything is
   copied, and is checkpointed into the main file. From then on no coordinator starts on that database, nor
   on a copy of the file: it can never acknowledge a write the copy misses, nor run an orphan sweep that
   deletes blobs only PostgreSQL names. An operator who starts the SQLite coordinator after a crash in the
   middle is refused and told to run migrate again.
4. The copy and its verification run in ONE PostgreSQL transaction: a crash or a failed check leaves
   nothing there. A failure known to have rolled back removes the fence again (the SQLite store is as it
   was); a crash, or a COMMIT whose answer was lost, leaves it, and the next run finds out which happened:
   the target then holds this data dir's node claim (it verifies the copy against SQLite, unchanged since
   the fence, and finishes) or it is empty (it copies).
5. The fence is marked finished, then the data dir's `metadata-backend` says `postgresql <the same id>`.

This data dir's node claim and every writer tag it ever claimed land under the node id the configuration
names, with the data dir's own id as the claim's owner: the node's sweeps on PostgreSQL (which take only
its own writer tags) still find its blobs, and no other node can draw those tags.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tunnelmesh.store import pg_schema
from tunnelmesh.store.backends import SQLITE, check_backend
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.meta_rows import BUCKET_COLS, OBJ_COLS, PART_COLS, UPLOAD_COLS, VERSION_COLS, usage_tuples
from tunnelmesh.store.pg_meta import redact
from tunnelmesh.store.sqlite_db import connect, init_schema
from tunnelmesh.store.sqlite_meta import FENCE_DDL, FENCE_TABLE, Fence, read_fence

# rows fetched per round trip when PostgreSQL's side of the digest is read
_FETCH = 10_000


class MigrateError(Exception):
    """The migration did not complete; the message says why and what state it left."""

    exit_code = 1


class Refused(MigrateError):
    """Nothing was done: the data dir or the target is not in a state to migrate."""

    exit_code = 2


class Mismatch(MigrateError):
    """The copy differs from SQLite; nothing was committed."""


@dataclass(frozen=True)
class Table:
    """One metadata table: its PostgreSQL columns, the SQLite expressions giving them (named parameters
    :node, :ident, :now), where SQLite reads them from, and its primary key (bytewise on both engines, so
    both sides stream the rows in one order)."""

    name: str
    cols: str
    select: str
    order: str
    source: str = ""

    @property
    def sqlite_from(self) -> str:
        return self.source or self.name


# Every table the SQLite schema has (store/migrations.py, version 10), in an order that needs no deferred
# checks. Not copied: PostgreSQL's own store_lock and schema_version, and transient state a coordinator
# rebuilds (heartbeats, leases).
TABLES: tuple[Table, ...] = (
    Table("buckets", BUCKET_COLS, BUCKET_COLS, "name"),
    Table("objects", OBJ_COLS, OBJ_COLS, "bucket, key"),
    Table("versions", VERSION_COLS, VERSION_COLS, "bucket, key, nseq"),
    # rows from before migration 3 may lack the activity time PostgreSQL requires: the initiation is it
    Table("uploads", f"{UPLOAD_COLS}, last_active", f"{UPLOAD_COLS}, COALESCE(last_active, initiated)", "upload_id"),
    Table("parts", f"upload_id, {PART_COLS}", f"upload_id, {PART_COLS}", "upload_id, part_number"),
    Table(
        "completed_uploads",
        "upload_id, bucket, key, etag, parts, mtime, checksums, version_id",
        "upload_id, bucket, key, etag, parts, mtime, checksums, version_id",
        "upload_id",
    ),
    Table("freed_blobs", "blob, freed_at", "blob, freed_at", "blob"),
    Table("lifecycle_due", "bucket, key, nseq, kind, at", "bucket, key, nseq, kind, at", "bucket, key, nseq, kind"),
    # every tag this data dir claimed, under the node it runs as (earlier starts may have had another
    # default id): the node's sweep after a crash on PostgreSQL takes exactly its own tags
    # (and whether a sweep is done with each: a clean stop retires and sweeps them all)
    Table(
        "writer_tags",
        "tag, node, claimed_at, retired_at, swept_at",
        "tag, :node, claimed_at, retired_at, swept_at",
        "tag",
    ),
    # the data dir's claims, and the node it runs as, claimed for it if no start did so yet
    Table(
        "nodes",
        "node, owner, claimed_at",
        "node, owner, claimed_at",
        "node",
        "(SELECT node, owner, claimed_at FROM nodes UNION ALL SELECT :node, :ident, :now "
        "WHERE NOT EXISTS (SELECT 1 FROM nodes WHERE node = :node))",
    ),
)

_OBJECT_USAGE = "SELECT bucket, SUM(size), COUNT(*) FROM objects GROUP BY bucket"
_VERSION_USAGE = "SELECT bucket, SUM(size), COUNT(*) FROM versions GROUP BY bucket"
_PART_USAGE = "SELECT u.bucket, SUM(p.size) FROM parts p JOIN uploads u USING (upload_id) GROUP BY u.bucket"
_COUNTERS = "SELECT name, used, objects, mpu_used, nc_used, nc_objects FROM buckets"


@dataclass
class Report:
    target: str  # redacted
    state: str  # "copied", "finished" (an interrupted run's copy verified), "already done"
    rows: dict[str, int]
    buckets: int
    bytes: int
    seconds: float
    moved_at: float
    warnings: list[str] = field(default_factory=list)


def migrate(data_dir: Path, node: str, uri: str) -> Report:
    """Move the data dir's SQLite metadata to the PostgreSQL database at `uri` (see the module docstring).
    Raises Refused (nothing changed), Mismatch or MigrateError."""
    from tunnelmesh.config import ConfigError
    from tunnelmesh.server import lock_data_dir

    files = DataDir(data_dir)
    if not files.meta_db.is_file():
        raise Refused(f"no SQLite metadata at {files.meta_db}: nothing to migrate (is s3.data_dir right?)")
    try:
        lock = lock_data_dir(data_dir)  # exactly as the supervisor takes it: refused while a coordinator runs
    except ConfigError as e:
        raise Refused(f"{e}; stop it first") from None
    try:
        return _Migration(files, node, uri).run()
    finally:
        os.close(lock)


class _Migration:
    def __init__(self, files: DataDir, node: str, uri: str) -> None:
        self.files = files
        self.node = node
        self.uri = uri
        self.target = redact(uri)
        self.now = time.time()
        self.started = time.monotonic()
        self.ident = ""  # the data dir's id (metadata-backend), once read

    # ---- the steps -----------------------------------------------------------------------------

    def run(self) -> Report:
        recorded, ident = self._backend_record()
        sq = connect(self.files.meta_db)
        try:
            fence = read_fence(sq)
            try:
                pg = psycopg.connect(self.uri, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as e:
                raise MigrateError(f"cannot reach {self.target}: {_first_line(e)}") from None
            except psycopg.Error:  # a string libpq cannot use: its message may quote it, password and all
                raise MigrateError(f"cannot use {self.target}: libpq cannot read the connection string") from None
            try:
                with pg:
                    return self._steps(sq, pg, fence, recorded, ident)
            except psycopg.Error as e:  # the server's own words (libpq's never quote the password)
                raise MigrateError(f"{self.target}: {_first_line(e)}") from None
        finally:
            sq.close()

    def _steps(
        self, sq: sqlite3.Connection, pg: psycopg.Connection[Any], fence: Fence | None, recorded: str, ident: str
    ) -> Report:
        if recorded == "postgresql":
            return self._already_done(sq, pg, fence, ident)
        if not ident:
            if fence is not None:
                raise Refused(f"{self.files.metadata_backend} lost this data dir's id in a migration")
            ident = check_backend(self.files, SQLITE)  # a data dir from before the id: give it one
        self.ident = ident
        # an older data dir is brought to this release's schema first (the lock is held: nobody writes)
        init_schema(sq)
        self._check_source(sq)
        found = pg_schema.version(pg)
        if found == 0:
            foreign = _tables_in(pg)
            if foreign:
                raise Refused(f"{self.target} is not empty (it has tables: {', '.join(foreign)})")
        elif found >= NODES_SCHEMA:
            # refused before the schema is touched: upgrading another store's database would stop its
            # older coordinators (SchemaTooNew)
            self._refuse_unless_ours_or_empty(*_classify(pg, ident))
        pg_schema.migrate(pg)  # as a coordinator creates or upgrades it
        state, detail = _classify(pg, ident)
        self._refuse_unless_ours_or_empty(state, detail)
        if state == "ours":
            if fence is None:
                raise Refused(
                    f"{self.target} holds a copy of this data dir's records, but its SQLite database was not "
                    "fenced: it may have changed since that copy was taken; use an empty database"
                )
            try:
                rows, warnings = self._verify_committed(sq, pg)
            except Mismatch as e:
                raise Mismatch(
                    f"{self.target} holds this data dir's records from an interrupted run, but they differ from "
                    f"SQLite ({e}); the SQLite database stays fenced: empty that database (or give another, empty "
                    "one) and run again"
                ) from None
            how = "finished"
        else:
            if fence is None:
                _write_fence(sq, self.target, self.now)
            rows, warnings = self._copy(sq, pg)
            how = "copied"
        moved_at = _finish_fence(sq)
        self._record_backend(ident)
        return self._report(sq, how, rows, moved_at, warnings)

    def _already_done(
        self, sq: sqlite3.Connection, pg: psycopg.Connection[Any], fence: Fence | None, ident: str
    ) -> Report:
        """The data dir says its records are in PostgreSQL: check that this target holds them, change nothing."""
        if fence is None or fence.finished is None:
            raise Refused(f"the records of {self.files.root} are in PostgreSQL already ({self.files.metadata_backend})")
        when = _when(fence.finished)
        if pg_schema.version(pg) == 0 or _classify(pg, ident)[0] != "ours":
            raise Refused(
                f"the records of {self.files.root} were moved to {fence.target} at {when}, "
                f"but {self.target} does not hold them"
            )
        rows = {t.name: _count(pg, t.name) for t in TABLES}
        return self._report(sq, "already done", rows, fence.finished, [])

    def _refuse_unless_ours_or_empty(self, state: str, detail: str) -> None:
        if state == "other":
            raise Refused(
                f"{self.target} holds another store's records (node {detail} of another data dir): "
                "migrating into it would merge two stores; use an empty database"
            )
        if state == "not empty":
            raise Refused(f"{self.target} is not empty (table {detail} has rows): use an empty database")

    def _copy(self, sq: sqlite3.Connection, pg: psycopg.Connection[Any]) -> tuple[dict[str, int], list[str]]:
        """Copy every table and verify the copy in one PostgreSQL transaction. On a failure known to have rolled
        back, the fence is removed again: SQLite is then the store, as before the run."""
        committing = ours_meanwhile = False
        try:
            with pg.transaction():
                # two migrations into one database: the second waits here, then finds the first's rows
                pg.execute("SELECT id FROM store_lock WHERE id = 1 FOR UPDATE")
                state, detail = _classify(pg, self.ident)
                self._refuse_unless_ours_or_empty(state, detail)
                if state != "empty":
                    # an earlier run's COMMIT, whose answer was lost, landed late: PostgreSQL holds the
                    # records now, so the fence must stay (a SQLite coordinator would diverge from them)
                    ours_meanwhile = True
                    raise Refused(
                        f"{self.target} received this data dir's records from another run meanwhile; run "
                        "`tunnelmesh storage migrate` again to verify them and finish"
                    )
                with _sqlite_snapshot(sq):
                    for t in TABLES:
                        self._copy_table(sq, pg, t)
                    result = self._verify(sq, pg)
                committing = True  # leaving the block sends COMMIT
        except BaseException as e:
            # only an error PostgreSQL answered (not a lost connection, not an interrupt) is a known rollback
            known = isinstance(e, psycopg.Error) and not isinstance(e, psycopg.OperationalError) and not pg.broken
            if ours_meanwhile:
                raise
            if committing and not known:
                raise MigrateError(
                    f"the connection to {self.target} failed during COMMIT: the copy may or may not have "
                    "committed; the SQLite database stays fenced, run `tunnelmesh storage migrate` again to "
                    f"find out and finish ({_first_line(e)})"
                ) from None
            _remove_fence(sq)
            if isinstance(e, psycopg.Error):
                raise MigrateError(f"the copy to {self.target} failed and was rolled back: {_first_line(e)}") from None
            raise
        return result

    def _copy_table(self, sq: sqlite3.Connection, pg: psycopg.Connection[Any], t: Table) -> None:
        rows = sq.execute(f"SELECT {t.select} FROM {t.sqlite_from}", self._params())
        with pg.cursor() as cur, cur.copy(f"COPY {t.name} ({t.cols}) FROM STDIN") as cp:
            for row in rows:  # streamed: SQLite's cursor and COPY's buffer hold a few rows at a time
                cp.write_row(row)

    def _verify_committed(
        self, sq: sqlite3.Connection, pg: psycopg.Connection[Any]
    ) -> tuple[dict[str, int], list[str]]:
        """An interrupted run's committed copy, checked against SQLite (fenced, so unchanged since)."""
        with pg.transaction():
            pg.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with _sqlite_snapshot(sq):
                return self._verify(sq, pg)

    def _verify(self, sq: sqlite3.Connection, pg: psycopg.Connection[Any]) -> tuple[dict[str, int], list[str]]:
        """Row counts and a digest of every row of every table equal on both sides, and the usage recounted
        from PostgreSQL's rows equal to SQLite's; raises Mismatch. Returns the row counts and warnings."""
        rows: dict[str, int] = {}
        for t in TABLES:
            n_sq, d_sq = _digest(
                sq.execute(f"SELECT {t.select} FROM {t.sqlite_from} ORDER BY {t.order}", self._params())
            )
            n_pg, d_pg = _digest(_pg_rows(pg, t))
            if n_sq != n_pg:
                raise Mismatch(f"table {t.name}: {n_sq} rows in SQLite, {n_pg} in PostgreSQL")
            if d_sq != d_pg:
                raise Mismatch(f"table {t.name}: the rows differ between SQLite and PostgreSQL")
            rows[t.name] = n_sq
        counted_sq, counted_pg = _usage(sq.execute), _usage(pg.execute)
        counters = {r[0]: tuple(int(v) for v in r[1:]) for r in sq.execute(_COUNTERS)}
        pg_counters = {r[0]: tuple(int(v) for v in r[1:]) for r in pg.execute(_COUNTERS)}
        if counted_pg != counted_sq or pg_counters != counters:
            raise Mismatch("the usage recounted from PostgreSQL's rows differs from SQLite's")
        none = (0, 0, 0, 0, 0)
        drift = sorted(b for b in counters if counters[b] != counted_sq.get(b, none))
        warnings = [
            f"bucket {b}: its usage counters {counters[b]} differ from its recount {counted_sq.get(b, none)} "
            "(as they did in SQLite); `tunnelmesh storage verify` shows it"
            for b in drift
        ]
        return rows, warnings

    # ---- the data dir ---------------------------------------------------------------------------

    def _backend_record(self) -> tuple[str, str]:
        """The data dir's `metadata-backend` record: (engine, id); ("", "") for a data dir from before it."""
        try:
            recorded, _, ident = self.files.metadata_backend.read_text().strip().partition(" ")
        except FileNotFoundError:
            return "", ""
        if recorded not in ("sqlite", "postgresql"):
            raise Refused(f"{self.files.metadata_backend}: unknown engine {recorded!r}")
        return recorded, ident

    def _record_backend(self, ident: str) -> None:
        """`postgresql <id>`: replaced atomically and durably (the id stays: it owns this node's claim)."""
        path = self.files.metadata_backend
        tmp = self.files.replacement(path, os.getpid())
        with tmp.open("w") as f:
            f.write(f"postgresql {ident}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.files.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _check_source(self, sq: sqlite3.Connection) -> None:
        """What PostgreSQL could not take, refused before anything is written."""
        others = sq.execute("SELECT node FROM nodes WHERE owner <> ? ORDER BY node LIMIT 3", (self.ident,)).fetchall()
        if others:
            raise Refused(
                f"{self.files.meta_db} holds node claims of another data dir ({', '.join(r[0] for r in others)}): "
                "was the database file copied here from elsewhere?"
            )
        # PostgreSQL's text cannot hold a NUL; older releases stored such keys
        for table, cols in (
            ("objects", "bucket, key"),
            ("versions", "bucket, key"),
            ("uploads", "bucket, key"),
            ("completed_uploads", "bucket, key"),
        ):
            bad = sq.execute(
                f"SELECT {cols} FROM {table} WHERE instr(CAST(key AS BLOB), x'00') > 0 "
                "OR instr(CAST(bucket AS BLOB), x'00') > 0 LIMIT 3"
            ).fetchall()
            if bad:
                names = ", ".join(repr(f"{b}/{k}") for b, k in bad)
                raise Refused(
                    f"table {table} has keys with a NUL character ({names}), which PostgreSQL cannot store: "
                    "delete them first"
                )

    def _params(self) -> dict[str, Any]:
        return {"node": self.node, "ident": self.ident, "now": self.now}

    def _report(
        self, sq: sqlite3.Connection, how: str, rows: dict[str, int], moved_at: float, warnings: list[str]
    ) -> Report:
        buckets = sq.execute("SELECT COUNT(*), COALESCE(SUM(used + mpu_used), 0) FROM buckets").fetchone()
        return Report(
            target=self.target,
            state=how,
            rows=rows,
            buckets=int(buckets[0]),
            bytes=int(buckets[1]),
            seconds=time.monotonic() - self.started,
            moved_at=moved_at,
            warnings=warnings,
        )


# ---- both engines --------------------------------------------------------------------------------


# the first PostgreSQL schema version with the nodes table that _classify reads (pg_schema.MIGRATIONS)
NODES_SCHEMA = 3


def _classify(pg: psycopg.Connection[Any], ident: str) -> tuple[str, str]:
    """What the target holds: "other" (another data dir's node claim; detail: its node), "ours" (this data
    dir's claim: an earlier run's copy), "not empty" (rows but no claim; detail: the table) or "empty"."""
    other = pg.execute("SELECT node FROM nodes WHERE owner <> %s ORDER BY node LIMIT 1", (ident,)).fetchone()
    if other is not None:
        return "other", str(other[0])
    if pg.execute("SELECT EXISTS (SELECT 1 FROM nodes WHERE owner = %s)", (ident,)).fetchone() == (True,):
        return "ours", ""
    for t in TABLES:
        if pg.execute(f"SELECT EXISTS (SELECT 1 FROM {t.name})").fetchone() == (True,):
            return "not empty", t.name
    return "empty", ""


def _tables_in(pg: psycopg.Connection[Any]) -> list[str]:
    """The tables of the schema tunnelmesh would create its own in."""
    rows = pg.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename <> 'schema_version' "
        "ORDER BY tablename LIMIT 5"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _pg_rows(pg: psycopg.Connection[Any], t: Table) -> Iterator[tuple[Any, ...]]:
    """The table's rows in key order, through a server-side cursor: memory does not grow with the table."""
    with pg.cursor(name=f"tm_migrate_{t.name}") as cur:
        cur.execute(f"SELECT {t.cols} FROM {t.name} ORDER BY {t.order}")
        while rows := cur.fetchmany(_FETCH):
            yield from rows


def _digest(rows: Iterable[tuple[Any, ...]]) -> tuple[int, str]:
    """How many rows, and a SHA-256 over them in order. repr tells the value types apart (b'1', '1', 1, 1.0)
    and prints floats exactly, so equal digests mean equal rows, value for value."""
    h = hashlib.sha256()
    n = 0
    for row in rows:
        h.update(repr(row).encode() + b"\n")  # a tuple on both engines
        n += 1
    return n, h.hexdigest()


def _usage(execute: Any) -> dict[str, tuple[int, int, int, int, int]]:
    """Each bucket's counters recounted from the rows, as MetaReads.count_usage gives them (SUM is numeric on
    PostgreSQL: usage_tuples makes ints of it)."""
    objects = {r[0]: (r[1], r[2]) for r in execute(_OBJECT_USAGE)}
    versions = {r[0]: (r[1], r[2]) for r in execute(_VERSION_USAGE)}
    parts = {r[0]: r[1] for r in execute(_PART_USAGE)}
    return usage_tuples(objects, versions, parts)


def _count(pg: psycopg.Connection[Any], table: str) -> int:
    r = pg.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(r[0]) if r else 0


class _sqlite_snapshot:
    """One read transaction over SQLite for the copy and its check (the lock is held: for consistency only)."""

    def __init__(self, sq: sqlite3.Connection) -> None:
        self.sq = sq

    def __enter__(self) -> None:
        self.sq.execute("BEGIN")

    def __exit__(self, *exc: object) -> None:
        self.sq.execute("COMMIT")


# ---- the fence (sqlite_meta.read_fence reads it) ---------------------------------------------------


def _write_fence(sq: sqlite3.Connection, target: str, now: float) -> None:
    """Fence the SQLite database before the copy starts (see the module docstring, step 3)."""
    sq.execute("BEGIN IMMEDIATE")
    try:
        sq.execute(FENCE_DDL)
        sq.execute(f"DELETE FROM {FENCE_TABLE}")
        sq.execute(f"INSERT INTO {FENCE_TABLE}(target, started, finished) VALUES (?, ?, NULL)", (target, now))
    except BaseException:
        sq.execute("ROLLBACK")
        raise
    sq.execute("COMMIT")
    # into the main file: a copy of meta.sqlite3 taken without its -wal carries the fence too
    sq.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _finish_fence(sq: sqlite3.Connection) -> float:
    """Mark the move finished (kept if an earlier run did); returns when it finished."""
    sq.execute(f"UPDATE {FENCE_TABLE} SET finished = ? WHERE finished IS NULL", (time.time(),))
    sq.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    r = sq.execute(f"SELECT finished FROM {FENCE_TABLE}").fetchone()
    return float(r[0])


def _remove_fence(sq: sqlite3.Connection) -> None:
    """After a copy known to have rolled back: PostgreSQL holds nothing of this data dir, SQLite stays the store."""
    if sq.in_transaction:
        sq.execute("ROLLBACK")
    sq.execute(f"DROP TABLE IF EXISTS {FENCE_TABLE}")
    sq.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [e.__class__.__name__])[0]


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
