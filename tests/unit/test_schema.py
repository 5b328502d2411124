"""Schema versions (store/migrations.py) on real database files: every shape a data dir can be in migrates
to the schema of a new database, in one transaction, once; a newer database is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tunnelmesh.store import commits, migrations
from tunnelmesh.store.records import CompletedUpload, Upload
from tunnelmesh.store.sqlite_db import connect, init_schema
from tunnelmesh.store.sqlite_meta import SqliteTx


def _db(path: Path) -> sqlite3.Connection:
    return connect(path)


def _shape(conn: sqlite3.Connection) -> tuple[int, list[tuple], dict[str, list[tuple]]]:
    """user_version, every table and index with its SQL (whitespace folded), and every table's columns."""
    objects = sorted(
        (t, n, " ".join(sql.split()) if sql else None)
        for t, n, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
    )
    cols = {n: conn.execute(f"PRAGMA table_info({n})").fetchall() for t, n, _ in objects if t == "table"}
    return conn.execute("PRAGMA user_version").fetchone()[0], objects, cols


@pytest.fixture
def fresh(tmp_path) -> tuple[int, list[tuple], dict[str, list[tuple]]]:
    conn = _db(tmp_path / "fresh.sqlite3")
    init_schema(conn)
    return _shape(conn)


# The CREATE scripts that released code ran at start-up before schema versions (user_version 0), each
# column as that code declared it inline; start-ups of later code then ALTERed the missing ones in.
def _old_script(data: bool, last_active: bool, freed: bool, checksum_type: bool, done_checksums: bool) -> str:
    uploads_extra = (", last_active REAL" if last_active else "") + (", checksum_type TEXT" if checksum_type else "")
    script = f"""
CREATE TABLE IF NOT EXISTS buckets(
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, region TEXT NOT NULL,
    quota INTEGER, used INTEGER NOT NULL DEFAULT 0, objects INTEGER NOT NULL DEFAULT 0,
    mpu_used INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS objects(
    bucket TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL, etag TEXT NOT NULL,
    mtime REAL NOT NULL, headers TEXT NOT NULL, checksums TEXT NOT NULL, segments TEXT NOT NULL,
    owner TEXT NOT NULL, {"data BLOB, " if data else ""}PRIMARY KEY(bucket, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, initiated REAL NOT NULL,
    owner TEXT NOT NULL, headers TEXT NOT NULL, checksum_algorithm TEXT{uploads_extra});
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads(bucket, key, upload_id);
CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, mtime REAL NOT NULL, blob TEXT NOT NULL, checksums TEXT NOT NULL,
    PRIMARY KEY(upload_id, part_number)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS completed_uploads(
    upload_id TEXT PRIMARY KEY, bucket TEXT NOT NULL, key TEXT NOT NULL, etag TEXT NOT NULL,
    parts TEXT NOT NULL, mtime REAL NOT NULL{", checksums TEXT" if done_checksums else ""});
"""
    if last_active:
        script += "CREATE INDEX IF NOT EXISTS uploads_by_activity ON uploads(last_active);\n"
    if freed:
        script += (
            "CREATE TABLE IF NOT EXISTS freed_blobs(blob TEXT PRIMARY KEY, freed_at REAL NOT NULL) WITHOUT ROWID;\n"
            "CREATE INDEX IF NOT EXISTS freed_blobs_by_time ON freed_blobs(freed_at);\n"
        )
    return script


# every shape released code left: (inline data, last_active, freed_blobs, checksum_type, completed checksums)
PRE_VERSIONING = {
    "first release (aabd734)": (False, False, False, False, False),
    "inline data (a4020c9)": (True, False, False, False, False),
    "upload expiry (12fd665)": (True, True, False, False, False),
    "freed blobs, no expiry (fbee128)": (True, False, True, False, False),
    "both (9a6dffe)": (True, True, True, False, False),
    "multipart checksums (a93e696)": (True, True, True, True, True),
}


def test_a_new_database_lands_at_the_latest_version_with_every_table(fresh) -> None:
    version, objects, cols = fresh
    assert version == migrations.LATEST == len(migrations.MIGRATIONS) == 14
    tables = {"buckets", "objects", "uploads", "parts", "completed_uploads", "freed_blobs", "writer_tags", "nodes"}
    tables |= {"leases", "versions", "lifecycle_due"}
    assert set(cols) == tables
    assert [c[1] for c in cols["uploads"]][-4:] == ["last_active", "checksum_type", "sse", "sse_kid"]
    indexes = {"uploads_by_activity", "freed_blobs_by_time", "writer_tags_by_node", "versions_null", "lifecycle_due_at"}
    indexes |= {"objects_sse_kid", "versions_sse_kid", "uploads_sse_kid"}
    assert {n for t, n, _ in objects if t == "index"} >= indexes
    # every column migrations 10 to 12 add to a table a previous release uses is nullable or has a default
    # (that release's INSERTs do not name it); the versions table's key is (bucket, key, nseq)
    added = {
        "buckets": [
            "versioning",
            "object_lock",
            "lock_default",
            "nc_used",
            "nc_objects",
            "tags",
            "lifecycle",
            "sse_default",
        ],
        "objects": ["version_id", "seq", "tags", "lock_mode", "lock_until", "legal_hold", "sse", "sse_kid"],
        "versions": ["sse", "sse_kid"],
        "completed_uploads": ["version_id"],
        "nodes": ["release"],
    }
    for table, names in added.items():
        info = {c[1]: c for c in cols[table]}
        assert [c[1] for c in cols[table]][-len(names) :] == names
        assert all(not info[n][3] or info[n][4] is not None for n in names), table
    assert [c[1] for c in sorted(cols["versions"], key=lambda c: c[5]) if c[5]] == ["bucket", "key", "nseq"]


@pytest.mark.parametrize("shape", list(PRE_VERSIONING), ids=list(PRE_VERSIONING))
def test_every_pre_versioning_shape_migrates_to_the_schema_of_a_new_database(tmp_path, fresh, shape) -> None:
    conn = _db(tmp_path / "old.sqlite3")
    conn.executescript(_old_script(*PRE_VERSIONING[shape]))
    assert _shape(conn)[0] == 0
    assert migrations.migrate(conn) == 0
    assert _shape(conn) == fresh


@pytest.mark.parametrize("start", range(migrations.LATEST))
def test_a_database_at_any_version_migrates_to_the_schema_of_a_new_database(tmp_path, fresh, start) -> None:
    conn = _db(tmp_path / "old.sqlite3")
    for step in migrations.MIGRATIONS[:start]:
        step(conn)
    conn.execute(f"PRAGMA user_version = {start}")
    assert migrations.migrate(conn) == start
    assert _shape(conn) == fresh


def test_migrating_twice_changes_nothing(tmp_path) -> None:
    conn = _db(tmp_path / "m.sqlite3")
    conn.executescript(_old_script(*PRE_VERSIONING["first release (aabd734)"]))
    init_schema(conn)
    before = _shape(conn)
    cookie = conn.execute("PRAGMA schema_version").fetchone()[0]  # bumped by any DDL
    assert migrations.migrate(conn) == migrations.LATEST
    init_schema(conn)
    assert (_shape(conn), conn.execute("PRAGMA schema_version").fetchone()[0]) == (before, cookie)


def test_a_newer_database_is_refused_naming_both_versions_and_left_untouched(tmp_path) -> None:
    conn = _db(tmp_path / "new.sqlite3")
    init_schema(conn)
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    before = _shape(conn)
    with pytest.raises(migrations.SchemaTooNew) as e:
        init_schema(conn)
    assert (e.value.found, e.value.known) == (migrations.LATEST + 1, migrations.LATEST)
    assert f"schema version {migrations.LATEST + 1}" in str(e.value)
    assert f"up to {migrations.LATEST} only" in str(e.value)
    assert not conn.in_transaction
    assert _shape(conn) == before


def test_a_failing_migration_leaves_the_database_at_its_old_version_and_shape(tmp_path, monkeypatch) -> None:
    conn = _db(tmp_path / "old.sqlite3")
    conn.executescript(_old_script(*PRE_VERSIONING["first release (aabd734)"]))
    before = _shape(conn)

    def broken(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE half_done(x)")
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(migrations, "MIGRATIONS", (*migrations.MIGRATIONS, broken))
    monkeypatch.setattr(migrations, "LATEST", len(migrations.MIGRATIONS))
    with pytest.raises(RuntimeError, match="disk full"):
        migrations.migrate(conn)
    # migrations 1-6 ran before the failure, in the same transaction: none of them stayed
    assert not conn.in_transaction
    assert _shape(conn) == before


def test_old_data_dirs_get_the_last_activity_of_their_uploads(tmp_path) -> None:
    conn = _db(tmp_path / "meta.sqlite3")
    conn.executescript(_old_script(*PRE_VERSIONING["inline data (a4020c9)"]))
    conn.execute("INSERT INTO buckets(name, owner, created, region) VALUES ('b', 'p', 1, 'r')")
    conn.execute("INSERT INTO uploads VALUES ('with-part', 'b', 'k', 10, 'p', '{}', NULL)")
    conn.execute("INSERT INTO uploads VALUES ('bare', 'b', 'k', 40, 'p', '{}', NULL)")
    conn.execute("INSERT INTO parts VALUES ('with-part', 1, 5, 'e', 60, 'blob', '{}')")
    init_schema(conn)
    m = SqliteTx(conn)
    assert [u.upload_id for u in m.stale_uploads(50.0, 10)] == ["bare"]
    assert [u.upload_id for u in m.stale_uploads(70.0, 10)] == ["bare", "with-part"]


def test_an_upload_made_with_expiry_keeps_its_last_activity(tmp_path) -> None:
    conn = _db(tmp_path / "meta.sqlite3")
    conn.executescript(_old_script(*PRE_VERSIONING["upload expiry (12fd665)"]))
    conn.execute("INSERT INTO buckets(name, owner, created, region) VALUES ('b', 'p', 1, 'r')")
    # a part streaming when it stopped had refreshed last_active past its (older) parts' mtime
    conn.execute("INSERT INTO uploads VALUES ('u', 'b', 'k', 10, 'p', '{}', NULL, 90)")
    conn.execute("INSERT INTO parts VALUES ('u', 1, 5, 'e', 20, 'blob', '{}')")
    init_schema(conn)
    assert SqliteTx(conn).upload_last_active("u") == 90


def test_old_data_dirs_read_their_uploads_as_composite_and_their_completions_without_checksum(tmp_path) -> None:
    conn = _db(tmp_path / "meta.sqlite3")
    conn.executescript(_old_script(*PRE_VERSIONING["both (9a6dffe)"]))
    conn.execute("INSERT INTO buckets(name, owner, created, region) VALUES ('b', 'p', 1, 'r')")
    conn.execute("INSERT INTO uploads VALUES ('crc', 'b', 'k', 10, 'p', '{}', 'crc32', 10)")
    conn.execute("INSERT INTO uploads VALUES ('none', 'b', 'k', 10, 'p', '{}', NULL, 10)")
    conn.execute("INSERT INTO completed_uploads VALUES ('done', 'b', 'k', 'e-1', '1:e', 20)")
    init_schema(conn)
    m = SqliteTx(conn)
    crc, none = commits.get_upload(m, "b", "k", "crc"), commits.get_upload(m, "b", "k", "none")
    assert (crc.checksum_type, none.checksum_type) == (
        "COMPOSITE",
        None,
    )
    assert m.completed_upload("b", "k", "done") == CompletedUpload("e-1", "1:e", {})
    commits.create_upload(m, Upload("full", "b", "k", 30.0, "p", {}, "crc64nvme", "FULL_OBJECT"))
    assert commits.get_upload(m, "b", "k", "full").checksum_type == "FULL_OBJECT"


def test_inline_objects_of_a_data_dir_made_before_them_read_as_blob_objects(tmp_path) -> None:
    conn = _db(tmp_path / "meta.sqlite3")
    conn.executescript(_old_script(*PRE_VERSIONING["first release (aabd734)"]))
    conn.execute("INSERT INTO buckets(name, owner, created, region) VALUES ('b', 'p', 1, 'r')")
    conn.execute("""INSERT INTO objects VALUES ('b', 'k', 3, 'e', 5, '{}', '{}', '[["blob1", 3, "e"]]', 'p')""")
    init_schema(conn)
    obj = SqliteTx(conn).get_object("b", "k")
    assert obj is not None and (obj.data, [s.blob for s in obj.segments]) == (None, ["blob1"])


def test_a_version_9_database_reads_its_rows_with_the_new_fields_and_retires_them_by_mtime(tmp_path) -> None:
    """Rows written before migration 10 have no seq (NULL, no backfill): read as their mtime's microseconds,
    truncated as Python's int() does, and a retirement keys the noncurrent row by the same seq."""
    conn = _db(tmp_path / "meta.sqlite3")
    for step in migrations.MIGRATIONS[:9]:
        step(conn)
    conn.execute("PRAGMA user_version = 9")
    conn.execute("INSERT INTO buckets(name, owner, created, region, used, objects) VALUES ('b', 'p', 1, 'r', 3, 1)")
    # 1.0000017 s is 1000001.7 us: truncated to 1000001 (a rounding cast would give 1000002)
    conn.execute("INSERT INTO objects VALUES ('b', 'k', 3, 'e', 1.0000017, '{}', '{}', '[]', 'p', x'616263')")
    assert migrations.migrate(conn) == 9
    m = SqliteTx(conn)
    b = m.bucket("b")
    assert b is not None and (b.versioning, b.object_lock, b.lock_default, b.nc_used, b.nc_objects) == (
        None,
        False,
        None,
        0,
        0,
    )
    rec = m.get_object("b", "k")
    assert rec is not None and (rec.seq, rec.version_id, rec.tags, rec.lock, rec.data) == (
        1000001,
        None,
        None,
        None,
        b"abc",
    )
    ref = m.object_ref("b", "k")
    assert ref is not None and ref.seq == 1000001
    assert [x.key for x in m.scan_objects("b", "", False, None, 10)] == ["k"]
    assert [(x.key, x.version_id, x.seq) for x in m.scan_current("b", "", False, None, 10)] == [("k", None, 1000001)]
    conn.execute("BEGIN IMMEDIATE")
    assert m.retire_current("b", "k", 2.0) == ref
    assert m.version("b", "k", 1000001) == rec
    assert m.promote_version("b", "k", 1000001) == ref
    conn.execute("COMMIT")
    assert m.get_object("b", "k") == rec
