"""What only the SQLite backend has: the rows' JSON shapes, old and new."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from meta_rules import Rules
from test_commits import _object_from, _upload

from tunnelmesh.store.records import Hint, Part, Segment, WriteConditions, WriteResult
from tunnelmesh.store.sqlite_meta import SqliteMeta, SqliteTx


@pytest.fixture
def m(tmp_path: Path) -> Iterator[Rules]:
    rules = Rules(SqliteMeta.open(tmp_path))
    yield rules
    rules.close()


@pytest.fixture
def raw(tmp_path: Path, m: Rules) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(tmp_path / "meta.sqlite3", isolation_level=None)
    yield conn
    conn.close()


def test_a_complete_without_object_checksum_keeps_no_part_checksums(m: Rules, raw: sqlite3.Connection) -> None:
    m.create_bucket("b", "p", "r", 1.0)
    _upload(m)
    one = Part(1, 100, "aa", 20.0, "blob-1", {"crc32": "AAAAAQ=="})
    m.put_part("b", "k", "u1", one, 10**9)
    m.complete_upload("u1", _object_from([one]), [1], "1:aa", WriteConditions(), 10**9)
    (stored,) = raw.execute("SELECT segments FROM objects WHERE key='k'").fetchone()
    assert stored == '[["blob-1", 100, "aa"]]'
    assert m.get_object("b", "k").segments == [Segment("blob-1", 100, "aa", {})]


def test_segments_stored_before_part_checksums_were_kept_read_with_none(m: Rules, raw: sqlite3.Connection) -> None:
    m.create_bucket("b", "p", "r", 1.0)
    raw.execute(
        "INSERT INTO objects(bucket, key, size, etag, mtime, headers, checksums, segments, owner) "
        "VALUES ('b', 'old', 200, 'e-2', 1, '{}', ?, ?, 'p')",
        ('{"crc32": "AAAAAw==-2"}', '[["x-1", 100, "m1"], ["x-2", 100, "m2"]]'),
    )
    segments = m.get_object("b", "old").segments
    assert segments == [Segment("x-1", 100, "m1"), Segment("x-2", 100, "m2")]
    assert all(s.checksums == {} for s in segments)


def test_a_lifecycle_pass_reads_only_what_is_due(m: Rules, raw: sqlite3.Connection) -> None:
    """The scanner's cost follows what is due, not the store: its query seeks the time index, and a bucket
    of many versions hinted for later hands over only the due ones."""
    m.create_bucket("bkt", "p", "r", 1.0)

    def fill(tx) -> WriteResult[None]:
        for i in range(2000):
            tx.put_hint(Hint("bkt", f"k{i:05d}", -i, "current", 1e9 + i))  # far ahead
        for i in range(3):
            tx.put_hint(Hint("bkt", f"due{i}", -i, "current", 100.0 + i))
        return WriteResult(None)

    m.write(fill)
    plan = " ".join(
        str(row[-1])
        for row in raw.execute(
            "EXPLAIN QUERY PLAN SELECT bucket, key, nseq, kind, at FROM lifecycle_due WHERE at < ? ORDER BY at LIMIT ?",
            (200.0, 100),
        )
    )
    assert "INDEX lifecycle_due_at (at<?)" in plan and "SCAN" not in plan, plan
    due = m.read(lambda r: r.due_hints(200.0, 100))
    assert [h.key for h in due] == ["due0", "due1", "due2"]


def test_the_store_total_a_put_reads_with_its_bucket_is_never_answered_to_another_write(
    m: Rules, raw: sqlite3.Connection
) -> None:
    """lock_bucket_and_ref reads store_used in the same statement, for the lock_store that follows: a value kept
    from one write must not answer the next write's lock_store after another process grew the store."""
    m.create_bucket("b", "p", "r", 1.0)
    m.create_bucket("c", "p", "r", 1.0)
    write = m.loop.run_until_complete
    write(m.backend.write(lambda tx: tx.lock_bucket_and_ref("b", "k")))  # read, never used by a lock_store
    raw.execute("UPDATE buckets SET used = used + 100 WHERE name = 'c'")  # another node's write meanwhile
    assert write(m.backend.write(lambda tx: tx.lock_store())) == 100

    def same_write(tx: SqliteTx) -> tuple[int, int, int]:
        tx.lock_bucket_and_ref("b", "k")
        first = tx.lock_store()
        tx.lock_bucket_and_ref("b", "k")
        tx.add_usage("b", used=7)  # the write's own change after the read
        return first, tx.lock_store(), tx.store_used()

    assert write(m.backend.write(same_write)) == (100, 107, 107)
