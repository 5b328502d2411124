"""The PostgreSQL metadata schema, versioned in a `schema_version` table.

MIGRATIONS[n - 1] takes a database from version n - 1 to n (append only, as store/migrations.py's for
SQLite); a new database runs them all. `migrate` runs the pending ones in one transaction (DDL is
transactional in PostgreSQL): a crash half-way leaves the database at its old version.

Two coordinators starting at once migrate one after the other: the migrating transaction first locks
the one row of `schema_version` (`SELECT ... FOR UPDATE`), and the second reads the version only once the
first has committed. A row lock rather than `LOCK TABLE` or an advisory lock, because CockroachDB and
YugabyteDB lack those but all three have `FOR UPDATE`.

The tables mirror SQLite's (store/migrations.py) column for column, so rows read back through the same
decoders (store/meta_rows.py). Keys are `TEXT COLLATE "C"`: compared by their UTF-8 bytes, S3's order,
whatever the database's default collation. Times are DOUBLE PRECISION (the float seconds the records
carry, exactly), sizes BIGINT, inline object bytes BYTEA, JSON fields TEXT in SQLite's encoding.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors

from tunnelmesh.store.migrations import SchemaTooNew

_V1_BASE = (
    """CREATE TABLE buckets(
    name TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL, created DOUBLE PRECISION NOT NULL,
    region TEXT NOT NULL, quota BIGINT, used BIGINT NOT NULL DEFAULT 0, objects BIGINT NOT NULL DEFAULT 0,
    mpu_used BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE objects(
    bucket TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, size BIGINT NOT NULL, etag TEXT NOT NULL,
    mtime DOUBLE PRECISION NOT NULL, headers TEXT NOT NULL, checksums TEXT NOT NULL, segments TEXT NOT NULL,
    owner TEXT NOT NULL, data BYTEA, PRIMARY KEY(bucket, key))""",
    """CREATE TABLE uploads(
    upload_id TEXT COLLATE "C" PRIMARY KEY, bucket TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL,
    initiated DOUBLE PRECISION NOT NULL, owner TEXT NOT NULL, headers TEXT NOT NULL, checksum_algorithm TEXT,
    checksum_type TEXT, last_active DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX uploads_by_key ON uploads(bucket, key, upload_id)",
    "CREATE INDEX uploads_by_activity ON uploads(last_active)",
    """CREATE TABLE parts(
    upload_id TEXT COLLATE "C" NOT NULL, part_number INTEGER NOT NULL, size BIGINT NOT NULL, etag TEXT NOT NULL,
    mtime DOUBLE PRECISION NOT NULL, blob TEXT NOT NULL, checksums TEXT NOT NULL,
    PRIMARY KEY(upload_id, part_number))""",
    """CREATE TABLE completed_uploads(
    upload_id TEXT COLLATE "C" PRIMARY KEY, bucket TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL,
    etag TEXT NOT NULL, parts TEXT NOT NULL, mtime DOUBLE PRECISION NOT NULL, checksums TEXT)""",
    # every Complete forgets the old ones by time, a bucket's deletion by bucket: neither scans the table
    "CREATE INDEX completed_by_mtime ON completed_uploads(mtime)",
    "CREATE INDEX completed_by_bucket ON completed_uploads(bucket)",
    'CREATE TABLE freed_blobs(blob TEXT COLLATE "C" PRIMARY KEY, freed_at DOUBLE PRECISION NOT NULL)',
    "CREATE INDEX freed_blobs_by_time ON freed_blobs(freed_at)",
    # one row that quota admission locks (MetaTx.lock_store): growing writes queue on it, so the SUM each
    # reads afterwards includes every admission before it
    "CREATE TABLE store_lock(id INTEGER PRIMARY KEY CHECK (id = 1))",
    "INSERT INTO store_lock VALUES (1)",
)

# every writer tag ever given, and by which node: never given twice (MetaTx.claim_writer_tag)
_V2_WRITER_TAGS = (
    """CREATE TABLE writer_tags(
    tag TEXT COLLATE "C" PRIMARY KEY, node TEXT COLLATE "C" NOT NULL, claimed_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX writer_tags_by_node ON writer_tags(node)",
)

# which data dir holds each node id: a second coordinator given the same one is refused (MetaTx.claim_node)
_V3_NODES = (
    """CREATE TABLE nodes(
    node TEXT COLLATE "C" PRIMARY KEY, owner TEXT NOT NULL, claimed_at DOUBLE PRECISION NOT NULL)""",
)

# heartbeats, retired writer tags and leases (MetaTx.beat, retire_writer_tags, take_lease)
_V4_HEARTBEATS = (
    "ALTER TABLE nodes ADD COLUMN listen TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE nodes ADD COLUMN started_at DOUBLE PRECISION",
    "ALTER TABLE nodes ADD COLUMN last_seen DOUBLE PRECISION",
    "ALTER TABLE nodes ADD COLUMN interval DOUBLE PRECISION",
    "ALTER TABLE writer_tags ADD COLUMN retired_at DOUBLE PRECISION",
    "ALTER TABLE writer_tags ADD COLUMN swept_at DOUBLE PRECISION",
    """CREATE TABLE leases(
    duty TEXT COLLATE "C" PRIMARY KEY, holder TEXT, expires_at DOUBLE PRECISION, done_at DOUBLE PRECISION)""",
)

# store ready for versions (SQLite's migration 10, which says why): nullable or defaulted columns (a constant
# default adds no rewrite of the table) and a new table, so a node of the previous release keeps running
_V5_VERSIONS = (
    """ALTER TABLE buckets ADD COLUMN versioning TEXT, ADD COLUMN object_lock INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN lock_default TEXT, ADD COLUMN nc_used BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN nc_objects BIGINT NOT NULL DEFAULT 0""",
    """ALTER TABLE objects ADD COLUMN version_id TEXT, ADD COLUMN seq BIGINT, ADD COLUMN tags TEXT,
    ADD COLUMN lock_mode TEXT, ADD COLUMN lock_until DOUBLE PRECISION, ADD COLUMN legal_hold INTEGER""",
    "ALTER TABLE completed_uploads ADD COLUMN version_id TEXT",
    "ALTER TABLE nodes ADD COLUMN release INTEGER",
    # PostgreSQL's primary key index cannot be declared `seq DESC`: nseq = -seq orders a key's versions
    # newest first in one ascending index, as on SQLite
    """CREATE TABLE versions(
    bucket TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, nseq BIGINT NOT NULL, marker INTEGER NOT NULL,
    since DOUBLE PRECISION NOT NULL, size BIGINT NOT NULL, etag TEXT NOT NULL, mtime DOUBLE PRECISION NOT NULL,
    headers TEXT NOT NULL, checksums TEXT NOT NULL, segments TEXT NOT NULL, owner TEXT NOT NULL, data BYTEA,
    version_id TEXT, tags TEXT, lock_mode TEXT, lock_until DOUBLE PRECISION, legal_hold INTEGER,
    PRIMARY KEY(bucket, key, nseq))""",
    "CREATE UNIQUE INDEX versions_null ON versions(bucket, key) WHERE version_id IS NULL",
)

# a bucket's tag set (SQLite's migration 11): a nullable column
_V6_BUCKET_TAGS = ("ALTER TABLE buckets ADD COLUMN tags TEXT",)

# lifecycle rules and the time index (SQLite's migration 12)
_V7_LIFECYCLE = (
    "ALTER TABLE buckets ADD COLUMN lifecycle TEXT",
    """CREATE TABLE lifecycle_due(
    bucket TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, nseq BIGINT NOT NULL, kind TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL, PRIMARY KEY(bucket, key, nseq, kind))""",
    "CREATE INDEX lifecycle_due_at ON lifecycle_due(at)",
)

# SSE-S3 (SQLite's migration 13): wrapped data keys, their master key ids (partial indexes: encrypted rows
# only), a bucket's default encryption
_V8_SSE = (
    "ALTER TABLE objects ADD COLUMN sse TEXT, ADD COLUMN sse_kid TEXT",
    "ALTER TABLE versions ADD COLUMN sse TEXT, ADD COLUMN sse_kid TEXT",
    "ALTER TABLE uploads ADD COLUMN sse TEXT, ADD COLUMN sse_kid TEXT",
    "ALTER TABLE buckets ADD COLUMN sse_default TEXT",
    "CREATE INDEX objects_sse_kid ON objects(sse_kid) WHERE sse_kid IS NOT NULL",
    "CREATE INDEX versions_sse_kid ON versions(sse_kid) WHERE sse_kid IS NOT NULL",
    "CREATE INDEX uploads_sse_kid ON uploads(sse_kid) WHERE sse_kid IS NOT NULL",
)

# no table changes: the release that enforces per-bucket access (SQLite's migration 14); its number in the
# nodes' beats is what keeps access changes waiting while a node that would ignore them is live
_V9_ACCESS_CONTROL: tuple[str, ...] = ()

# Append only: never edit or reorder a released migration (databases have already run it).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    _V1_BASE,
    _V2_WRITER_TAGS,
    _V3_NODES,
    _V4_HEARTBEATS,
    _V5_VERSIONS,
    _V6_BUCKET_TAGS,
    _V7_LIFECYCLE,
    _V8_SSE,
    _V9_ACCESS_CONTROL,
)
LATEST = len(MIGRATIONS)

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
)


def version(conn: psycopg.Connection[Any]) -> int:
    """The database's schema version (0: never migrated)."""
    r = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if r is None or not r[0]:
        return 0
    v = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
    return int(v[0]) if v else 0


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Bring the database to LATEST; returns the version it was at. Idempotent. Raises SchemaTooNew.

    `conn` must be in autocommit mode with no transaction open."""
    found = version(conn)
    if found > LATEST:
        raise SchemaTooNew(found, LATEST)
    if found == LATEST:
        return found
    _create_version_row(conn)
    with conn.transaction():
        # the second of two coordinators starting at once waits here, then finds nothing to do
        row = conn.execute("SELECT version FROM schema_version WHERE id = 1 FOR UPDATE").fetchone()
        found = int(row[0]) if row else 0
        if found > LATEST:
            raise SchemaTooNew(found, LATEST)
        for step in MIGRATIONS[found:]:
            for stmt in step:
                conn.execute(stmt)
        conn.execute("UPDATE schema_version SET version = %s WHERE id = 1", (LATEST,))
    return found


def _create_version_row(conn: psycopg.Connection[Any]) -> None:
    """The version table and its row, at version 0 if new. Two sessions racing through CREATE TABLE IF NOT
    EXISTS can still collide in the catalog (a unique violation, or the row type already made: DuplicateObject):
    the loser finds the table on its retry."""
    for attempt in range(3):
        try:
            with conn.transaction():
                conn.execute(_VERSION_TABLE)
                conn.execute("INSERT INTO schema_version(id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            return
        except (errors.UniqueViolation, errors.DuplicateTable, errors.DuplicateObject):
            if attempt == 2:
                raise
