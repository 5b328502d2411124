"""`storage migrate`'s copy, verification, fence and re-runs (store/migrate.py), on a SQLite data dir built
through the real backend and a fresh database on the suite's real PostgreSQL. The crash states are made as
a crash leaves them (the fence written, the copy committed or not), and the next run must resolve them."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pg_server
import psycopg
import pytest

from tunnelmesh.server import lock_data_dir
from tunnelmesh.store import migrate as migrate_mod
from tunnelmesh.store import pg_schema
from tunnelmesh.store.backends import SQLITE, MetaConfig, check_backend
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.metadata import MetaBackend
from tunnelmesh.store.migrate import Mismatch, Refused, migrate
from tunnelmesh.store.pg_meta import PgMeta
from tunnelmesh.store.records import Bucket, CompletedUpload, Hint, ObjectRecord, Part, Segment, Upload
from tunnelmesh.store.sqlite_meta import SqliteMeta, StoreMoved, read_fence

NODE = "n1"
TAGS = ["0000aa01", "0000aa02", "0000aa03"]


def run(meta: MetaBackend, fn: Callable[[Any], Any], write: bool = False) -> Any:
    async def main() -> Any:
        return await (meta.write(fn) if write else meta.read(fn, snapshot=True))

    return asyncio.run(main())


def obj(bucket: str, key: str, size: int, blob: str | None = None) -> ObjectRecord:
    segs = [Segment(blob, size, "d41d8cd98f00b204e9800998ecf8427e", {"crc32": "AAAAAA=="})] if blob else []
    return ObjectRecord(
        bucket,
        key,
        size,
        f"etag-{key}",
        1_700_000_000.123456789,
        {"content-type": "text/plain", "x-amz-meta-é": "ü"},
        {"crc32": "abc="},
        segs,
        "admin",
        None if blob else bytes(range(256))[:size],
    )


def populate(root: Path, node: str = NODE, tags: list[str] = TAGS, bucket: str = "b") -> str:
    """A SQLite data dir as a coordinator leaves it: its id, node claim, writer tags, two buckets (one with a
    quota), inline and blob objects, an upload with parts, a remembered Complete, a queued freed blob.
    Returns the data dir's id."""
    root.mkdir(parents=True, exist_ok=True)
    ident = check_backend(DataDir(root), SQLITE)
    meta = SqliteMeta.open(root)

    def fill(tx: Any) -> None:
        tx.claim_node(node, ident, 1.5)
        for t in tags:
            tx.claim_writer_tag(t, node)
        tx.insert_bucket(Bucket(bucket, "admin", 3.25, "us-east-1", None, 0, 0, 0))
        tx.insert_bucket(Bucket(f"{bucket}-q", "admin", 3.5, "us-east-1", 1_000_000, 0, 0, 0))
        records = [obj(bucket, "inline", 100), obj(bucket, "dir/blob", 40_000, f"ab{'0' * 22}{tags[0]}")]
        records.append(obj(f"{bucket}-q", "ключ/ü", 7))
        for rec in records:
            tx.put_object(rec)
            tx.add_usage(rec.bucket, used=rec.size, objects=1)
        tx.insert_upload(Upload("up1", bucket, "big", 10.0, "admin", {"content-type": "x"}, "crc32", "COMPOSITE"))
        for n in (1, 2):
            tx.put_part("up1", Part(n, 5 * n, f"pe{n}", 11.0 + n, f"c{n}{'0' * 22}{tags[1]}", {"crc32": "x"}))
            tx.add_usage(bucket, mpu_used=5 * n)
        tx.touch_upload("up1", 13.0)
        tx.put_completed("done1", bucket, "k", CompletedUpload("e-2", "sig", {"crc32": "y"}, "0" * 23 + "1"), 9.0)
        tx.queue_freed([f"ef{'0' * 22}{tags[2]}"], 8.0)
        # a versioned bucket's noncurrent version (its blob named only there) and a delete marker
        tx.set_bucket_attr(bucket, "versioning", "Enabled")
        old = obj(bucket, "dir/blob", 500, f"cd{'0' * 22}{tags[0]}")
        old.seq, old.version_id, old.tags = 1_600_000_000_000_001, "0" * 23 + "2", {"k": "v"}
        tx.put_version(old, False, 1_700_000_000.5)
        gone = ObjectRecord(bucket, "gone", 0, "", 2.0, {}, {}, [], "admin", None, version_id="0" * 23 + "3", seq=9)
        tx.put_version(gone, True, 2.0)
        tx.add_usage(bucket, used=500, nc_used=500, nc_objects=2)
        # a lifecycle configuration and a hint of its time index
        tx.set_bucket_attr(bucket, "lifecycle", '[{"id": "r"}]')
        tx.put_hint(Hint(bucket, "dir/blob", -old.seq, "noncurrent", 1_700_086_400.5))

    try:
        run(meta, fill, write=True)
    finally:
        meta.close()
    return ident


def dump(meta: MetaBackend) -> dict[str, Any]:
    """Everything a coordinator reads, through the protocol: what must be equal on both engines."""

    def read(r: Any) -> dict[str, Any]:
        buckets = r.buckets()
        objects = {
            b.name: [r.get_object(b.name, o.key) for o in r.scan_objects(b.name, "", True, None, 1000)] for b in buckets
        }
        return {
            "buckets": buckets,
            "objects": objects,
            "upload": r.upload("up1"),
            "upload_active": r.upload_last_active("up1"),
            "parts": r.parts("up1", 0, 100),
            "completed": r.completed_upload("b", "k", "done1"),
            "freed": r.freed_before(1e12, None),
            "usage": r.count_usage(),
            "tags": sorted(r.writer_tags(NODE)),
            "hints": r.due_hints(1e12, 10),
            "versions": {
                b.name: [
                    (v, r.version(b.name, v.key, v.seq)) for v in r.scan_versions(b.name, "", -(2**63), True, None, 99)
                ]
                for b in buckets
            },
        }

    return run(meta, read)


def pg_tables(uri: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(uri) as c:
        return {
            t.name: c.execute(f"SELECT {t.cols} FROM {t.name} ORDER BY {t.order}").fetchall()
            for t in migrate_mod.TABLES
        }


@pytest.fixture
def uri() -> str:
    return pg_server.fresh_database()


def test_the_copy_reads_back_equal_and_the_sqlite_side_is_fenced(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    sqlite = SqliteMeta.open(tmp_path)
    before = dump(sqlite)
    sqlite.close()

    report = migrate(tmp_path, NODE, uri)
    assert report.state == "copied"
    assert report.rows == {
        "buckets": 2,
        "objects": 3,
        "versions": 2,
        "uploads": 1,
        "parts": 2,
        "completed_uploads": 1,
        "freed_blobs": 1,
        "lifecycle_due": 1,
        "writer_tags": 3,
        "nodes": 1,
    }
    assert (report.buckets, report.bytes) == (2, 100 + 40_000 + 7 + 15 + 500)
    assert len(before["versions"]["b"]) == 2 and before["completed"].version_id == "0" * 23 + "1"
    pg = PgMeta.open(uri)
    try:
        assert dump(pg) == before
        assert run(pg, lambda r: r.bucket("b-q")).quota == 1_000_000
    finally:
        pg.close()
    with psycopg.connect(uri) as c:
        assert c.execute("SELECT node, owner FROM nodes").fetchall() == [(NODE, ident)]
    # fenced: in the database itself, and the data dir now says PostgreSQL under the same id
    assert (tmp_path / "metadata-backend").read_text() == f"postgresql {ident}\n"
    with pytest.raises(StoreMoved, match="was moved to PostgreSQL") as e:
        SqliteMeta.open(tmp_path)
    assert "when" not in str(e.value) and "UTC" in str(e.value)  # it says when
    with pytest.raises(StoreMoved, match="was moved to PostgreSQL"):
        check_backend(DataDir(tmp_path), SQLITE)
    # the PostgreSQL side starts: the id in metadata-backend owns the node claim that was copied
    assert check_backend(DataDir(tmp_path), MetaConfig(uri)) == ident


def test_a_copy_of_the_fenced_file_alone_is_refused_elsewhere(tmp_path: Path, uri: str) -> None:
    populate(tmp_path / "a")
    migrate(tmp_path / "a", NODE, uri)
    elsewhere = tmp_path / "b"
    elsewhere.mkdir()
    shutil.copy(tmp_path / "a" / "meta.sqlite3", elsewhere / "meta.sqlite3")  # without -wal: checkpointed
    with pytest.raises(StoreMoved):
        SqliteMeta.open(elsewhere)
    with pytest.raises(StoreMoved):
        check_backend(DataDir(elsewhere), SQLITE)


def test_writer_tags_of_an_earlier_node_id_land_under_the_node_it_runs_as(tmp_path: Path, uri: str) -> None:
    """A data dir that ran under another default node id (another port): on PostgreSQL its sweep after a
    crash takes only the tags of the node it runs as, so every tag it ever claimed must be that node's."""
    ident = populate(tmp_path, node="old-8080")
    migrate(tmp_path, NODE, uri)
    with psycopg.connect(uri) as c:
        assert {r[0] for r in c.execute("SELECT node FROM writer_tags")} == {NODE}
        assert sorted(c.execute("SELECT node, owner FROM nodes").fetchall()) == [(NODE, ident), ("old-8080", ident)]


def test_a_rerun_after_completion_says_already_done_and_changes_nothing(tmp_path: Path, uri: str) -> None:
    populate(tmp_path)
    migrate(tmp_path, NODE, uri)
    tables = pg_tables(uri)
    db = (tmp_path / "meta.sqlite3").read_bytes()
    again = migrate(tmp_path, NODE, uri)
    assert again.state == "already done"
    assert pg_tables(uri) == tables
    assert (tmp_path / "meta.sqlite3").read_bytes() == db
    # into another (empty) database, the data dir says where its records went
    with pytest.raises(Refused, match="were moved to .* does not hold them"):
        migrate(tmp_path, NODE, pg_server.fresh_database())


def unchanged(root: Path, ident: str) -> None:
    """The data dir is as before the run: no fence, still SQLite, and a coordinator would open it."""
    conn = sqlite3.connect(root / "meta.sqlite3")
    try:
        assert read_fence(conn) is None
    finally:
        conn.close()
    assert (root / "metadata-backend").read_text() == f"sqlite {ident}\n"
    SqliteMeta.open(root).close()


def test_a_target_holding_another_store_is_refused_and_nothing_changes(tmp_path: Path, uri: str) -> None:
    populate(tmp_path / "other", node="n2", tags=["0000bb01", "0000bb02", "0000bb03"], bucket="o")
    migrate(tmp_path / "other", "n2", uri)
    tables = pg_tables(uri)
    ident = populate(tmp_path / "mine")
    with pytest.raises(Refused, match="holds another store's records .node n2"):
        migrate(tmp_path / "mine", NODE, uri)
    unchanged(tmp_path / "mine", ident)
    assert pg_tables(uri) == tables


def test_a_target_holding_another_store_on_an_older_schema_is_refused_before_its_schema_is_touched(
    tmp_path: Path, uri: str
) -> None:
    """From the second review: the refusal came after the schema upgrade, so a run pointed at another store's
    database upgraded it, and that store's older coordinators then refused to start (SchemaTooNew)."""
    populate(tmp_path / "other", node="n2", tags=["0000bb01", "0000bb02", "0000bb03"], bucket="o")
    migrate(tmp_path / "other", "n2", uri)
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = 3")  # as written by an older release
    ident = populate(tmp_path / "mine")
    with pytest.raises(Refused, match="holds another store's records .node n2"):
        migrate(tmp_path / "mine", NODE, uri)
    unchanged(tmp_path / "mine", ident)
    with psycopg.connect(uri, autocommit=True) as c:
        assert pg_schema.version(c) == 3


def test_a_target_that_is_not_empty_otherwise_is_refused(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("CREATE TABLE unrelated(x int)")
    with pytest.raises(Refused, match="not empty .it has tables: unrelated"):
        migrate(tmp_path, NODE, uri)
    unchanged(tmp_path, ident)
    # a tunnelmesh schema with rows but no node claim (a store from before claims, or rows put by hand)
    other = pg_server.fresh_database()
    PgMeta.open(other).close()
    with psycopg.connect(other, autocommit=True) as c:
        c.execute("INSERT INTO freed_blobs VALUES ('x', 1)")
    with pytest.raises(Refused, match="not empty .table freed_blobs has rows"):
        migrate(tmp_path, NODE, other)
    unchanged(tmp_path, ident)


def test_a_copy_postgresql_rejects_rolls_back_and_removes_the_fence(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    conn = sqlite3.connect(tmp_path / "meta.sqlite3")
    conn.execute("INSERT INTO freed_blobs VALUES ('bad', 'not a time')")  # SQLite keeps it as text
    conn.commit()
    conn.close()
    with pytest.raises(migrate_mod.MigrateError, match="failed and was rolled back"):
        migrate(tmp_path, NODE, uri)
    unchanged(tmp_path, ident)
    assert all(not rows for rows in pg_tables(uri).values())


def crash_after_commit(root: Path, ident: str) -> None:
    """The state a crash leaves between the copy's COMMIT and the fence's completion."""
    conn = sqlite3.connect(root / "meta.sqlite3")
    conn.execute("UPDATE moved_to SET finished = NULL")
    conn.commit()
    conn.close()
    (root / "metadata-backend").write_text(f"sqlite {ident}\n")


def test_a_crash_after_the_commit_is_refused_on_sqlite_and_finished_by_a_rerun(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    migrate(tmp_path, NODE, uri)
    tables = pg_tables(uri)
    crash_after_commit(tmp_path, ident)
    for start in (lambda: SqliteMeta.open(tmp_path), lambda: check_backend(DataDir(tmp_path), SQLITE)):
        with pytest.raises(StoreMoved, match="has not finished: run `tunnelmesh storage migrate` again"):
            start()
    # nor on PostgreSQL before the move finished (the data dir still says sqlite)
    with pytest.raises(StoreMoved, match="has not finished"):
        check_backend(DataDir(tmp_path), MetaConfig(uri))
    report = migrate(tmp_path, NODE, uri)
    assert report.state == "finished"
    assert pg_tables(uri) == tables
    assert (tmp_path / "metadata-backend").read_text() == f"postgresql {ident}\n"
    with pytest.raises(StoreMoved, match="was moved to PostgreSQL"):
        SqliteMeta.open(tmp_path)


def test_a_copy_that_differs_is_caught_and_nothing_is_finished(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    migrate(tmp_path, NODE, uri)
    crash_after_commit(tmp_path, ident)
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("UPDATE objects SET mtime = mtime + 1e-6 WHERE key = 'inline'")
    with pytest.raises(Mismatch, match="table objects: the rows differ"):
        migrate(tmp_path, NODE, uri)
    assert (tmp_path / "metadata-backend").read_text() == f"sqlite {ident}\n"
    with pytest.raises(StoreMoved, match="has not finished"):
        SqliteMeta.open(tmp_path)


def test_a_crash_before_the_commit_is_refused_on_sqlite_and_copied_by_a_rerun(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    conn = sqlite3.connect(tmp_path / "meta.sqlite3", isolation_level=None)
    migrate_mod._write_fence(conn, "postgresql://u:***@h/db", 5.0)  # then the process died
    conn.close()
    with pytest.raises(StoreMoved, match="has not finished"):
        SqliteMeta.open(tmp_path)
    assert migrate(tmp_path, NODE, uri).state == "copied"
    assert (tmp_path / "metadata-backend").read_text() == f"postgresql {ident}\n"


def test_keys_postgresql_cannot_hold_are_refused_before_anything_changes(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    meta = SqliteMeta.open(tmp_path)
    run(meta, lambda tx: tx.put_object(obj("b", "nul\x00key", 1)), write=True)
    meta.close()
    with pytest.raises(Refused, match="NUL character"):
        migrate(tmp_path, NODE, uri)
    unchanged(tmp_path, ident)


def test_a_locked_data_dir_is_refused(tmp_path: Path, uri: str) -> None:
    ident = populate(tmp_path)
    fd = lock_data_dir(tmp_path)  # what a running coordinator holds
    try:
        with pytest.raises(Refused, match="in use by another coordinator"):
            migrate(tmp_path, NODE, uri)
    finally:
        import os

        os.close(fd)
    unchanged(tmp_path, ident)
