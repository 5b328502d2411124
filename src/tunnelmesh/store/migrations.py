"""Schema versions of the metadata database, kept in SQLite's `PRAGMA user_version`.

MIGRATIONS[n - 1] takes a database from version n - 1 to n; a new database runs them all, so there is
one definition of the schema, not a CREATE script beside a list of changes that could drift apart.
`migrate` runs the pending ones in one transaction (DDL is transactional in SQLite): a crash half-way
leaves the database at its old version, and the next start runs them again.

Data dirs made before versioning have user_version 0 and may be at any of the shapes that the old
ad-hoc start-up code left (it added each column only if missing). So migrations 1 to 6 look before
they change: each is a no-op where the old code already made its change. Migrations from 7 on can
trust the version and be plain SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


class SchemaError(Exception):
    """The database cannot be used by this code."""


class SchemaTooNew(SchemaError):
    """The database was written by a newer tunnelmesh; this code would misread or corrupt it."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"the metadata database is at schema version {found}, but this tunnelmesh knows versions up to "
            f"{known} only: written by a newer release, run that one or newer (downgrades are not supported)"
        )
        self.found = found
        self.known = known


def _columns(c: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in c.execute(f"PRAGMA table_info({table})")}


def _add_column(c: sqlite3.Connection, table: str, column: str, decl: str) -> bool:
    """ALTER TABLE ADD COLUMN unless a pre-versioning start already added it; True if added."""
    if column in _columns(c, table):
        return False
    c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    return True


def _v1_base(c: sqlite3.Connection) -> None:
    """The schema of the first release (aabd734)."""
    for stmt in (
        """CREATE TABLE IF NOT EXISTS buckets(
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, region TEXT NOT NULL,
    quota INTEGER, used INTEGER NOT NULL DEFAULT 0, objects INTEGER NOT NULL DEFAULT 0,
    mpu_used INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE IF NOT EXISTS objects(
    bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    mtime REAL NOT NULL, headers TEXT NOT NULL, checksums TEXT NOT NULL, segments TEXT NOT NULL,
    owner TEXT NOT NULL, PRIMARY KEY(bucket, key)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, initiated REAL NOT NULL,
    owner TEXT NOT NULL, headers TEXT NOT NULL, checksum_algorithm TEXT)""",
        "CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads(bucket, key, upload_id)",
        """CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, mtime REAL NOT NULL, blob TEXT NOT NULL, checksums TEXT NOT NULL,
    PRIMARY KEY(upload_id, part_number)) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS completed_uploads(
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL,
    parts TEXT NOT NULL, mtime REAL NOT NULL)""",
    ):
        c.execute(stmt)


def _v2_inline_data(c: sqlite3.Connection) -> None:
    """Small objects stored inline in their row (a4020c9)."""
    _add_column(c, "objects", "data", "BLOB")


def _v3_upload_activity(c: sqlite3.Connection) -> None:
    """Stale uploads expire by their last activity (12fd665): the latest part's arrival, else the initiation."""
    if _add_column(c, "uploads", "last_active", "REAL"):
        c.execute(
            "UPDATE uploads SET last_active = COALESCE("
            "(SELECT MAX(mtime) FROM parts p WHERE p.upload_id = uploads.upload_id), initiated)"
        )
    c.execute("CREATE INDEX IF NOT EXISTS uploads_by_activity ON uploads(last_active)")


def _v4_freed_blobs(c: sqlite3.Connection) -> None:
    """The durable queue of blobs a commit stopped referencing, to unlink after the grace (fbee128)."""
    c.execute("CREATE TABLE IF NOT EXISTS freed_blobs(blob TEXT PRIMARY KEY, freed_at REAL NOT NULL) WITHOUT ROWID")
    c.execute("CREATE INDEX IF NOT EXISTS freed_blobs_by_time ON freed_blobs(freed_at)")


def _v5_upload_checksum_type(c: sqlite3.Connection) -> None:
    """FULL_OBJECT multipart checksums (395ccc6); NULL reads as COMPOSITE, all there was before."""
    _add_column(c, "uploads", "checksum_type", "TEXT")


def _v6_completed_checksums(c: sqlite3.Connection) -> None:
    """A retried Complete answers the first one's checksum too (395ccc6); NULL: none kept."""
    _add_column(c, "completed_uploads", "checksums", "TEXT")


def _v7_writer_tags(c: sqlite3.Connection) -> None:
    """Every writer tag ever given, and by which node (issue 13): a tag is never given twice, across
    every coordinator sharing the store, so a sweep by tag never meets another's live writer."""
    c.execute(
        "CREATE TABLE writer_tags(tag TEXT PRIMARY KEY, node TEXT NOT NULL, claimed_at REAL NOT NULL) WITHOUT ROWID"
    )
    c.execute("CREATE INDEX writer_tags_by_node ON writer_tags(node)")


def _v8_nodes(c: sqlite3.Connection) -> None:
    """Which data dir holds each node id (issue 13): two coordinators given one node id would sweep each
    other's blobs and temporaries, so the second is refused at start-up."""
    c.execute("CREATE TABLE nodes(node TEXT PRIMARY KEY, owner TEXT NOT NULL, claimed_at REAL NOT NULL) WITHOUT ROWID")


def _v9_heartbeats(c: sqlite3.Connection) -> None:
    """Heartbeats, retired writer tags and leases (issue 13): see store/metadata.py's MetaTx.beat,
    retire_writer_tags and take_lease. One node on SQLite uses them as several on PostgreSQL do."""
    for column, decl in (
        ("listen", "TEXT NOT NULL DEFAULT ''"),
        ("started_at", "REAL"),
        ("last_seen", "REAL"),
        ("interval", "REAL"),
    ):
        c.execute(f"ALTER TABLE nodes ADD COLUMN {column} {decl}")
    c.execute("ALTER TABLE writer_tags ADD COLUMN retired_at REAL")
    c.execute("ALTER TABLE writer_tags ADD COLUMN swept_at REAL")
    c.execute("CREATE TABLE leases(duty TEXT PRIMARY KEY, holder TEXT, expires_at REAL, done_at REAL) WITHOUT ROWID")


def _v10_versions(c: sqlite3.Connection) -> None:
    """Store ready for versions (issue 14, docs/data-protection.md section 1): the bucket's versioning and
    object-lock state and noncurrent counters, a version's id, seq, tags and lock on `objects`, and the
    `versions` table of noncurrent versions and delete markers. New columns are nullable or defaulted and
    `objects` stays the current version of each key, so a node of the previous release (a rolling upgrade on
    PostgreSQL, whose migration 5 is this one) keeps reading and writing the tables it knows."""
    for table, column, decl in (
        ("buckets", "versioning", "TEXT"),
        ("buckets", "object_lock", "INTEGER NOT NULL DEFAULT 0"),
        ("buckets", "lock_default", "TEXT"),
        ("buckets", "nc_used", "INTEGER NOT NULL DEFAULT 0"),
        ("buckets", "nc_objects", "INTEGER NOT NULL DEFAULT 0"),
        ("objects", "version_id", "TEXT"),
        # NULL in rows from before it: their mtime's microseconds (records.seq_at), no backfill
        ("objects", "seq", "INTEGER"),
        ("objects", "tags", "TEXT"),
        ("objects", "lock_mode", "TEXT"),
        ("objects", "lock_until", "REAL"),
        ("objects", "legal_hold", "INTEGER"),
        ("completed_uploads", "version_id", "TEXT"),
        ("nodes", "release", "INTEGER"),
    ):
        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    # nseq = -seq: the primary key's ascending order is a key's versions newest first
    c.execute(
        """CREATE TABLE versions(
    bucket TEXT NOT NULL, key TEXT NOT NULL, nseq INTEGER NOT NULL, marker INTEGER NOT NULL, since REAL NOT NULL,
    size INTEGER NOT NULL, etag TEXT NOT NULL, mtime REAL NOT NULL, headers TEXT NOT NULL, checksums TEXT NOT NULL,
    segments TEXT NOT NULL, owner TEXT NOT NULL, data BLOB, version_id TEXT,
    tags TEXT, lock_mode TEXT, lock_until REAL, legal_hold INTEGER,
    PRIMARY KEY(bucket, key, nseq)) WITHOUT ROWID"""
    )
    # at most one null version of a key among the noncurrent ones (the rules keep the current row's side)
    c.execute("CREATE UNIQUE INDEX versions_null ON versions(bucket, key) WHERE version_id IS NULL")


def _v11_bucket_tags(c: sqlite3.Connection) -> None:
    """A bucket's tag set (PutBucketTagging, docs/data-protection.md section 6), as JSON text: a nullable
    column, so a node of the previous release (PostgreSQL's migration 6 is this one) reads BUCKET_COLS of
    its own and never sees it."""
    c.execute("ALTER TABLE buckets ADD COLUMN tags TEXT")


def _v12_lifecycle(c: sqlite3.Connection) -> None:
    """Lifecycle (docs/data-protection.md section 4): a bucket's rules (JSON text, a nullable column a node
    of the previous release never reads), and the time index the scanner reads by `at` (PostgreSQL's
    migration 7 is this one)."""
    c.execute("ALTER TABLE buckets ADD COLUMN lifecycle TEXT")
    c.execute(
        """CREATE TABLE lifecycle_due(
    bucket TEXT NOT NULL, key TEXT NOT NULL, nseq INTEGER NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY(bucket, key, nseq, kind)) WITHOUT ROWID"""
    )
    c.execute("CREATE INDEX lifecycle_due_at ON lifecycle_due(at)")


def _v13_sse(c: sqlite3.Connection) -> None:
    """SSE-S3 (docs/data-protection.md section 7): a version's wrapped data key and its master key id, an
    upload's, and a bucket's default encryption. Nullable columns only; the partial indexes hold the
    encrypted rows alone, so finding the key ids in use (every start) costs nothing for plaintext rows."""
    for table, column in (
        ("objects", "sse"),
        ("objects", "sse_kid"),
        ("versions", "sse"),
        ("versions", "sse_kid"),
        ("uploads", "sse"),
        ("uploads", "sse_kid"),
        ("buckets", "sse_default"),
    ):
        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
    for table in ("objects", "versions", "uploads"):
        c.execute(f"CREATE INDEX {table}_sse_kid ON {table}(sse_kid) WHERE sse_kid IS NOT NULL")


def _v14_access_control(c: sqlite3.Connection) -> None:
    """No table changes: the release that enforces per-bucket access (docs/access-control.md). A node stamps
    its schema version in its beats, so this number tells a node that enforces grants and bucket policies from
    one that would ignore them, and access changes wait while such a node is live (section 9)."""


# Append only: never edit or reorder a released migration (data dirs have already run it).
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _v1_base,
    _v2_inline_data,
    _v3_upload_activity,
    _v4_freed_blobs,
    _v5_upload_checksum_type,
    _v6_completed_checksums,
    _v7_writer_tags,
    _v8_nodes,
    _v9_heartbeats,
    _v10_versions,
    _v11_bucket_tags,
    _v12_lifecycle,
    _v13_sse,
    _v14_access_control,
)
LATEST = len(MIGRATIONS)


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to LATEST; returns the version it was at. Idempotent. Raises SchemaTooNew.

    `conn` must be in autocommit mode (sqlite_db.connect's) with no transaction open.
    """
    # every process opens the database; only one that finds it old takes the write lock
    found = version(conn)
    if found > LATEST:
        raise SchemaTooNew(found, LATEST)
    if found == LATEST:
        return found
    # IMMEDIATE: two processes starting at once migrate one after the other, the second finds nothing to do
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = version(conn)
        if found > LATEST:
            raise SchemaTooNew(found, LATEST)
        for step in MIGRATIONS[found:]:
            step(conn)
        if found != LATEST:
            # user_version is in the database header, written in this same transaction
            conn.execute(f"PRAGMA user_version = {LATEST}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return found
