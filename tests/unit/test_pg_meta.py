"""What only a networked metadata engine makes meaningful: two coordinators (two PgMeta instances, each
with its own pool and threads) writing to one PostgreSQL database at the same time, and the retries a
transaction that lost a race needs. The protocol's single-backend behaviour is tested for PostgreSQL by
the contract tests (tests/unit/test_meta_contract.py), like every backend's.

Races are forced, not hoped for: the first writer's function does its work, then waits inside its
transaction until the second writer is queued on a lock in PostgreSQL (seen in pg_stat_activity) or has
finished (a backend that takes no lock), and only then commits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pg_server
import psycopg
import pytest
from psycopg import errors

from tunnelmesh.store import commits, pg_schema
from tunnelmesh.store.errors import BucketExists, CommitUnknown, QuotaExceeded, WriteFailed
from tunnelmesh.store.metadata import MetaTx
from tunnelmesh.store.migrations import SchemaTooNew
from tunnelmesh.store.pg_meta import WRITE_ATTEMPTS, PgMeta, redact
from tunnelmesh.store.records import ObjectRecord, Part, Segment, Upload, WriteConditions

DEADLINE = 30.0
Outcome = tuple[bool, Any]  # (committed, the result or the exception)


@pytest.fixture
def uri() -> str:
    return pg_server.fresh_database()


@pytest.fixture
def two(uri: str) -> Iterator[tuple[PgMeta, PgMeta]]:
    """Two coordinators' backends on one database."""
    a, b = PgMeta.open(uri), PgMeta.open(uri)
    yield a, b
    a.close()
    b.close()


def write(meta: PgMeta, fn: Callable[[MetaTx], Any]) -> Any:
    """A write from a thread of its own, on an event loop of its own, as a coordinator's worker runs it."""
    return asyncio.run(asyncio.wait_for(meta.write(fn), DEADLINE))


def outcome(meta: PgMeta, fn: Callable[[MetaTx], Any], done: threading.Event) -> Outcome:
    try:
        return True, write(meta, fn)
    except Exception as e:
        return False, e
    finally:
        done.set()


def wait_until_blocked_or_done(uri: str, done: threading.Event) -> None:
    """Until some session of the database waits for a lock, or `done` is set."""
    end = time.monotonic() + DEADLINE
    with psycopg.connect(uri, autocommit=True) as c:
        while time.monotonic() < end:
            if done.is_set():
                return
            row = c.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.005)
    raise AssertionError("the second writer neither queued on a lock nor finished")


class HoldBefore:
    """The transaction, but `hold()` runs once before the first call of `method`: a race forced in the
    middle of a rule."""

    def __init__(self, tx: MetaTx, method: str, hold: Callable[[], None]) -> None:
        self._tx, self._method, self._hold = tx, method, hold

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tx, name)
        if name != self._method:
            return attr

        def held(*args: Any, **kw: Any) -> Any:
            self._hold()
            return attr(*args, **kw)

        return held


def race(
    uri: str,
    a: PgMeta,
    first: Callable[[MetaTx], Any],
    b: PgMeta,
    second: Callable[[MetaTx], Any],
    hold_before: str | None = None,
) -> tuple[Outcome, Outcome]:
    """`first` on `a` runs and holds its transaction open (at its end, or before it first calls the
    MetaTx method `hold_before`) until `second` on `b` has queued behind it (or finished), then goes on
    and commits; the outcomes of both."""
    inside, a_done, b_done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        inside.set()
        wait_until_blocked_or_done(uri, b_done)

    def held(tx: MetaTx) -> Any:
        if hold_before is not None:
            return first(HoldBefore(tx, hold_before, hold))  # type: ignore[arg-type]
        result = first(tx)
        hold()
        return result

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        fa = pool.submit(outcome, a, held, a_done)
        assert inside.wait(DEADLINE)
        fb = pool.submit(outcome, b, second, b_done)
        return fa.result(DEADLINE), fb.result(DEADLINE)


def obj(bucket: str, key: str, size: int) -> ObjectRecord:
    return ObjectRecord(bucket, key, size, f"etag-{key}", 100.0, {}, {}, [Segment(f"blob-{key}", size, "m")], "p")


def put(rec: ObjectRecord, max_size: int) -> Callable[[MetaTx], Any]:
    return lambda tx: commits.put_object(tx, rec, WriteConditions(), max_size)


def counters(meta: PgMeta, bucket: str) -> tuple[int, int, int]:
    b = asyncio.run(meta.read(lambda r: r.bucket(bucket)))
    assert b is not None
    return b.used, b.objects, b.mpu_used


# ---- the writer-tag fence (hazard 12 in docs/scale-out.md) --------------------------------------------


def test_a_retirement_waits_for_a_commit_holding_the_tag_and_then_sees_what_it_wrote(
    uri: str, two: tuple[PgMeta, PgMeta]
) -> None:
    """A commit naming a new blob of a live tag is in flight (its writer may be dead, the server still
    finishing it) when a sweep retires the tag: the retirement must wait for it, so that the sweep's
    snapshot, taken after, shows the blob named and the sweep leaves it alone."""
    a, b = two
    write(a, lambda tx: commits.create_bucket(tx, "f", "p", "r", 1.0))
    write(a, lambda tx: tx.claim_writer_tag("0000aaaa", "n"))

    def commit(tx: MetaTx) -> None:
        assert tx.hold_writer_tags(["0000aaaa"]) == set()
        put(obj("f", "k", 10), 10**9)(tx)

    def retire(tx: MetaTx) -> bool:
        tx.retire_writer_tags(["0000aaaa"])
        return tx.object_ref("f", "k") is not None  # READ COMMITTED: what committed before the retirement

    first, second = race(uri, a, commit, b, retire)
    assert first == (True, None)
    assert second == (True, True), second
    assert write(a, lambda tx: tx.hold_writer_tags(["0000aaaa"])) == {"0000aaaa"}


def test_a_commit_holding_a_tag_while_it_is_being_retired_waits_and_is_told_it_is_retired(
    uri: str, two: tuple[PgMeta, PgMeta]
) -> None:
    a, b = two
    write(a, lambda tx: tx.claim_writer_tag("0000bbbb", "n"))
    first, second = race(
        uri, a, lambda tx: tx.retire_writer_tags(["0000bbbb"]), b, lambda tx: tx.hold_writer_tags(["0000bbbb"])
    )
    assert first == (True, None)
    assert second == (True, {"0000bbbb"}), second


# ---- quota admission across coordinators ------------------------------------------------------------


def test_two_coordinators_racing_for_a_bucket_quota_admit_exactly_one(uri: str, two: tuple[PgMeta, PgMeta]) -> None:
    a, b = two
    write(a, lambda tx: commits.create_bucket(tx, "q", "p", "r", 1.0))
    write(a, lambda tx: commits.set_quota(tx, "q", 1000))
    first, second = race(uri, a, put(obj("q", "one", 600), 10**9), b, put(obj("q", "two", 600), 10**9))
    assert first[0], first[1]
    assert not second[0] and isinstance(second[1], QuotaExceeded) and second[1].scope == "bucket"
    for meta in (a, b):
        assert counters(meta, "q") == (600, 1, 0)
        assert [o.key for o in asyncio.run(meta.read(lambda r: list(r.scan_objects("q", "", True, None, 10))))] == [
            "one"
        ]


def test_two_coordinators_racing_for_the_store_limit_in_two_buckets_admit_exactly_one(
    uri: str, two: tuple[PgMeta, PgMeta]
) -> None:
    # different buckets: no bucket lock orders them, only the store lock does
    a, b = two
    write(a, lambda tx: commits.create_bucket(tx, "x", "p", "r", 1.0))
    write(b, lambda tx: commits.create_bucket(tx, "y", "p", "r", 1.0))
    first, second = race(uri, a, put(obj("x", "k", 700), 1000), b, put(obj("y", "k", 700), 1000))
    assert first[0], first[1]
    assert not second[0] and isinstance(second[1], QuotaExceeded) and second[1].scope == "store"
    assert counters(b, "x") == (700, 1, 0)
    assert counters(a, "y") == (0, 0, 0)
    assert asyncio.run(b.read(lambda r: r.store_used())) == 700


def test_a_storm_of_writes_from_two_coordinators_fills_the_quota_exactly(uri: str, two: tuple[PgMeta, PgMeta]) -> None:
    a, b = two
    write(a, lambda tx: commits.create_bucket(tx, "s", "p", "r", 1.0))
    write(a, lambda tx: commits.set_quota(tx, "s", 2500))

    def writer(meta: PgMeta, name: str) -> list[bool]:
        async def many() -> list[bool]:
            async def one(i: int) -> bool:
                try:
                    await meta.write(put(obj("s", f"{name}-{i}", 100), 10**9))
                    return True
                except QuotaExceeded:
                    return False

            return list(await asyncio.gather(*(one(i) for i in range(20))))

        return asyncio.run(asyncio.wait_for(many(), DEADLINE))

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = [f.result(DEADLINE) for f in [pool.submit(writer, a, "a"), pool.submit(writer, b, "b")]]
    assert sum(ok for r in results for ok in r) == 25  # 40 writes of 100 bytes, room for 25
    assert counters(a, "s") == (2500, 25, 0)
    counted = asyncio.run(b.read(lambda r: r.count_usage(), snapshot=True))
    assert counted["s"] == (2500, 25, 0, 0, 0)


# ---- races a row lock or a retry settles -----------------------------------------------------------


def test_two_coordinators_creating_one_bucket_one_creates_it_the_other_is_told_it_exists(
    uri: str, two: tuple[PgMeta, PgMeta]
) -> None:
    # lock_bucket of a bucket not there yet locks nothing: the second insert meets the first's key
    a, b = two
    first, second = race(
        uri,
        a,
        lambda tx: commits.create_bucket(tx, "new", "peer-a", "r", 1.0),
        b,
        lambda tx: commits.create_bucket(tx, "new", "peer-b", "r", 2.0),
    )
    assert first[0], first[1]
    assert not second[0] and isinstance(second[1], BucketExists) and not second[1].owned_by_caller
    bucket = asyncio.run(b.read(lambda r: r.bucket("new")))
    assert bucket is not None and bucket.owner == "peer-a"


def test_two_coordinators_completing_one_upload_both_answer_the_same_object(
    uri: str, two: tuple[PgMeta, PgMeta]
) -> None:
    # the second Complete read the upload before the first committed: it must answer from the
    # remembered Complete, not fail on the parts the first one consumed
    a, b = two
    write(a, lambda tx: commits.create_bucket(tx, "m", "p", "r", 1.0))
    write(a, lambda tx: commits.create_upload(tx, Upload("u1", "m", "k", 10.0, "p", {}, None)))
    for n in (1, 2):
        part = Part(n, 100, f"e{n}", 20.0, f"blob-{n}")
        write(a, lambda tx, part=part: commits.put_part(tx, "m", "k", "u1", part, 10**9))
    rec = ObjectRecord("m", "k", 200, "etag-mpu", 30.0, {}, {}, [Segment("", 100, "e1"), Segment("", 100, "e2")], "p")

    def complete(tx: MetaTx) -> Any:
        return commits.complete_upload(tx, "u1", rec, [1, 2], "sig", WriteConditions(), 10**9)

    first, second = race(uri, a, complete, b, complete)
    assert first[0], first[1]
    assert second[0], second[1]
    assert counters(b, "m") == (200, 1, 0)
    got = asyncio.run(b.read(lambda r: r.get_object("m", "k")))
    assert got is not None and [s.blob for s in got.segments] == ["blob-1", "blob-2"]


def test_expiry_racing_a_part_that_restarts_the_clock_is_one_or_the_other(uri: str, two: tuple[PgMeta, PgMeta]) -> None:
    # expiry found the upload idle and is about to drop it when another coordinator's part touches it:
    # either the touch waits and finds the upload gone, or expiry sees the touch; never a touch that
    # succeeds on an upload expiry then drops
    a, b = two
    write(a, lambda tx: commits.create_bucket(tx, "e", "p", "r", 1.0))
    write(a, lambda tx: commits.create_upload(tx, Upload("u2", "e", "k", 10.0, "p", {}, None)))
    first, second = race(
        uri,
        b,
        lambda tx: commits.expire_upload(tx, "u2", 50.0),
        a,
        lambda tx: commits.touch_upload(tx, "u2", 60.0),
        hold_before="lock_bucket",
    )
    assert first[0] and second[0], (first, second)
    still_there = asyncio.run(a.read(lambda r: r.upload("u2"))) is not None
    assert second[1].value == still_there  # the touch succeeded exactly when the upload was kept
    assert (first[1].value is None) == still_there


# ---- retries ----------------------------------------------------------------------------------------


def _conflict(uri: str, tx: MetaTx, bucket: str) -> None:
    """Make this transaction lose a race for real: take a REPEATABLE READ snapshot, let another session
    change the bucket's row and commit, then write that row (a serialisation failure)."""
    conn: psycopg.Connection[Any] = tx.c  # type: ignore[attr-defined]
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    # the snapshot, taken by a plain read (the backend's own reads inside a write lock the row)
    conn.execute("SELECT used FROM buckets WHERE name = %s", (bucket,))
    with psycopg.connect(uri, autocommit=True) as other:
        other.execute("UPDATE buckets SET quota = 5000 WHERE name = %s", (bucket,))


def test_a_write_that_loses_a_serialisation_race_is_run_again_and_commits_once(uri: str) -> None:
    meta = PgMeta.open(uri)
    try:
        write(meta, lambda tx: commits.create_bucket(tx, "r", "p", "r", 1.0))
        attempts = 0

        def fn(tx: MetaTx) -> int:
            nonlocal attempts
            attempts += 1
            if attempts == 1:
                _conflict(uri, tx, "r")
            tx.add_usage("r", used=10, objects=1)
            return attempts

        assert write(meta, fn) == 2
        assert counters(meta, "r") == (10, 1, 0)  # the first attempt left nothing behind
        b = asyncio.run(meta.read(lambda r: r.bucket("r")))
        assert b is not None and b.quota == 5000
    finally:
        meta.close()


def test_a_write_that_always_loses_gives_up_as_write_failed_and_keeps_nothing(uri: str) -> None:
    meta = PgMeta.open(uri)
    try:
        write(meta, lambda tx: commits.create_bucket(tx, "r", "p", "r", 1.0))
        attempts = 0

        def fn(tx: MetaTx) -> None:
            nonlocal attempts
            attempts += 1
            _conflict(uri, tx, "r")
            tx.add_usage("r", used=10, objects=1)

        with pytest.raises(WriteFailed) as e:
            write(meta, fn)
        assert isinstance(e.value.__cause__, errors.SerializationFailure)
        assert attempts == WRITE_ATTEMPTS
        assert counters(meta, "r") == (0, 0, 0)
    finally:
        meta.close()


def test_settle_runs_on_the_loop_with_the_outcome(uri: str) -> None:
    meta = PgMeta.open(uri)
    seen: list[tuple[bool, Any, bool]] = []

    async def main() -> None:
        loop_thread = threading.get_ident()

        def settle(ok: bool, value: Any) -> None:
            seen.append((ok, value, threading.get_ident() == loop_thread))

        await meta.write(lambda tx: commits.create_bucket(tx, "s", "p", "r", 1.0), settle)
        with pytest.raises(BucketExists):
            await meta.write(lambda tx: commits.create_bucket(tx, "s", "p", "r", 1.0), settle)

    try:
        asyncio.run(main())
    finally:
        meta.close()
    assert [(ok, on_loop) for ok, _, on_loop in seen] == [(True, True), (False, True)]
    assert isinstance(seen[1][1], BucketExists)


# ---- schema and connection strings ------------------------------------------------------------------


def test_two_coordinators_opening_a_new_database_at_once_both_find_it_migrated(uri: str) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        metas = [f.result(DEADLINE) for f in [pool.submit(PgMeta.open, uri), pool.submit(PgMeta.open, uri)]]
    for m in metas:
        m.close()
    with psycopg.connect(uri, autocommit=True) as c:
        assert pg_schema.version(c) == pg_schema.LATEST
        assert c.execute("SELECT count(*) FROM store_lock").fetchone() == (1,)


def test_a_database_of_a_newer_schema_is_refused(uri: str) -> None:
    PgMeta.open(uri).close()
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = %s", (pg_schema.LATEST + 1,))
    with pytest.raises(SchemaTooNew):
        PgMeta.open(uri)


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        ("postgresql://tm:s3cr%40t@db:5432/tunnelmesh", "postgresql://tm:***@db:5432/tunnelmesh"),
        (
            "postgresql://tm@db/tunnelmesh?password=s3cret&sslmode=require",
            "postgresql://tm@db/tunnelmesh?password=***&sslmode=require",
        ),
        ("postgres://db/tunnelmesh?host=/run/pg", "postgres://db/tunnelmesh?host=/run/pg"),
        ("host=db user=tm password=s3cret dbname=tunnelmesh", "host=db user=tm password=*** dbname=tunnelmesh"),
        ("host=db password = 'a b\\' c' dbname=x", "host=db password = *** dbname=x"),
        # from the data-safety review: any parameter ending in "password", and a percent-encoded name
        (
            "postgresql://tm@db/tm?sslpassword=k3y&%70assword=s3cret",
            "postgresql://tm@db/tm?sslpassword=***&password=***",
        ),
        ("host=db sslpassword=k3y dbname=x", "host=db sslpassword=*** dbname=x"),
        # from the second review: a password with a `?` in it, which libpq takes whole and the URI
        # splitting reads as the start of a query; and a string libpq cannot read, never echoed
        ("postgresql://u:p?ss@h/db", "user=u password=*** dbname=db host=h"),
        ("postgresql://u:pa%zzword@h/db", "(a connection string libpq cannot read)"),
    ],
)
def test_redact_hides_the_password_and_nothing_else(conninfo: str, shown: str) -> None:
    assert redact(conninfo) == shown


def test_a_connection_lost_during_commit_is_an_unknown_outcome_and_no_cleanup_runs(uri: str) -> None:
    """Found in the data-safety review: a COMMIT whose answer is lost may have committed, so the write's
    new blobs must not be discarded (a record might name them). The session is terminated from another
    one after the function has returned, so the loss falls on the COMMIT itself."""
    meta = PgMeta.open(uri)
    settled: list[tuple[bool, Any]] = []
    try:

        def fn(tx: MetaTx) -> None:
            commits.create_bucket(tx, "lost-ack", "p", "r", 1.0)
            pid = tx.c.info.backend_pid
            with psycopg.connect(uri, autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
                while killer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                    time.sleep(0.01)

        async def attempt() -> None:
            await meta.write(fn, lambda ok, value: settled.append((ok, value)))

        with pytest.raises(CommitUnknown):
            asyncio.run(attempt())
        assert settled == []  # no cleanup acted on a failure that might have been a commit
    finally:
        meta.close()


# ---- schema 5 (versions) and a rolling upgrade from 4 --------------------------------------------------

# statements of the release before schema 5, as its pg_meta.py sends them (a node of it runs on during a
# rolling upgrade: docs/scale-out.md "Upgrading a mesh")
_V4_INSERT_BUCKET = (
    "INSERT INTO buckets(name, owner, created, region, quota, used, objects, mpu_used) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
_V4_PUT_OBJECT = (
    "INSERT INTO objects(bucket, key, size, etag, mtime, headers, checksums, segments, owner, data) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (bucket, key) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag, "
    "mtime = EXCLUDED.mtime, headers = EXCLUDED.headers, checksums = EXCLUDED.checksums, "
    "segments = EXCLUDED.segments, owner = EXCLUDED.owner, data = EXCLUDED.data"
)


def _at_version_4(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(pg_schema, "MIGRATIONS", pg_schema.MIGRATIONS[:4])
        m.setattr(pg_schema, "LATEST", 4)
        with psycopg.connect(uri, autocommit=True) as c:
            pg_schema.migrate(c)
            assert pg_schema.version(c) == 4


def test_rows_of_schema_4_read_with_the_new_fields_and_retire_by_their_mtime(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No backfill: a row without seq reads as its mtime's microseconds, truncated (PostgreSQL's cast to
    bigint would round: 1000001.7 must give 1000001, as Python's int() and SQLite's CAST do)."""
    _at_version_4(uri, monkeypatch)
    with psycopg.connect(uri, autocommit=True) as c:
        c.execute(_V4_INSERT_BUCKET, ("b", "p", 1.0, "r", None, 3, 1, 0))
        c.execute(_V4_PUT_OBJECT, ("b", "k", 3, "e", 1.0000017, "{}", "{}", "[]", "p", b"abc"))
    meta = PgMeta.open(uri)
    try:

        async def main() -> None:
            b = await meta.read(lambda r: r.bucket("b"))
            assert b is not None and (b.versioning, b.object_lock, b.nc_used, b.nc_objects) == (None, False, 0, 0)
            rec = await meta.read(lambda r: r.get_object("b", "k"))
            assert rec is not None and (rec.seq, rec.version_id, rec.lock, rec.data) == (1000001, None, None, b"abc")
            listed = await meta.read(lambda r: list(r.scan_current("b", "", False, None, 10)))
            assert [(x.key, x.version_id, x.seq) for x in listed] == [("k", None, 1000001)]
            ref = await meta.write(lambda tx: tx.retire_current("b", "k", 2.0))
            assert ref is not None and ref.seq == 1000001
            assert await meta.read(lambda r: r.version("b", "k", 1000001)) == rec
            assert await meta.write(lambda tx: tx.promote_version("b", "k", 1000001)) == ref
            assert await meta.write(lambda tx: tx.set_version_attrs("b", "k", 1000001, True, tags={"a": "b"}))

        asyncio.run(main())
    finally:
        meta.close()
    with psycopg.connect(uri, autocommit=True) as c:
        assert pg_schema.version(c) == pg_schema.LATEST == 9


def test_a_node_of_schema_4_keeps_working_beside_one_of_schema_5(uri: str) -> None:
    """Migration 5 adds only nullable or defaulted columns and a new table: the previous release's inserts,
    upserts and selects still run, and the new code reads what they wrote."""
    meta = PgMeta.open(uri)
    try:
        rec = ObjectRecord("b", "k", 5, "e1", 7.5, {}, {}, [], "p", b"hello", version_id="v" * 24, tags={"t": "1"})
        asyncio.run(meta.write(lambda tx: tx.put_object(rec)))
        with psycopg.connect(uri, autocommit=True) as c:
            c.execute(_V4_INSERT_BUCKET, ("b", "p", 1.0, "r", 100, 0, 0, 0))
            c.execute("UPDATE buckets SET used = used + %s, objects = objects + %s WHERE name = %s", (5, 1, "b"))
            assert c.execute(
                "SELECT name, owner, created, region, quota, used, objects, mpu_used FROM buckets"
            ).fetchall() == [("b", "p", 1.0, "r", 100, 5, 1, 0)]
            assert c.execute("SELECT size, etag, mtime, segments FROM objects").fetchall() == [(5, "e1", 7.5, "[]")]
            c.execute(_V4_PUT_OBJECT, ("b", "j", 2, "e2", 8.5, "{}", "{}", "[]", "p", b"hi"))
            c.execute(
                "INSERT INTO completed_uploads(upload_id, bucket, key, etag, parts, mtime, checksums) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                ("u", "b", "j", "e2", "sig", 8.5, "{}"),
            )
        b = asyncio.run(meta.read(lambda r: r.bucket("b")))
        assert b is not None and (b.quota, b.used, b.objects, b.versioning, b.object_lock) == (100, 5, 1, None, False)
        j = asyncio.run(meta.read(lambda r: r.get_object("b", "j")))
        assert j is not None and (j.data, j.seq, j.version_id) == (b"hi", 8_500_000, None)
        assert asyncio.run(meta.read(lambda r: r.get_object("b", "k"))) == rec
        done = asyncio.run(meta.read(lambda r: r.completed_upload("b", "j", "u")))
        assert done is not None and done.version_id is None
    finally:
        meta.close()


# ---- schema 6 (bucket tags) beside a node of schema 5 ----------------------------------------------------

# the bucket statements of the release before schema 6: BUCKET_COLS without `tags`
_V5_BUCKET_COLS = (
    "name, owner, created, region, quota, used, objects, mpu_used, versioning, object_lock, lock_default, "
    "nc_used, nc_objects"
)


def test_a_node_of_schema_5_keeps_working_beside_one_of_schema_6(uri: str) -> None:
    """Migration 6 adds one nullable column: the previous release's bucket insert, select and lock still
    run, and never see (nor clear) a tag set the new code wrote."""
    meta = PgMeta.open(uri)
    try:
        with psycopg.connect(uri, autocommit=True) as c:
            c.execute(
                f"INSERT INTO buckets({_V5_BUCKET_COLS}) VALUES ({', '.join(['%s'] * 13)})",
                ("b", "p", 1.0, "r", None, 0, 0, 0, None, 0, None, 0, 0),
            )
        asyncio.run(meta.write(lambda tx: tx.set_bucket_attr("b", "tags", '{"k": "v"}')))
        with psycopg.connect(uri, autocommit=True) as c:
            row = c.execute(f"SELECT {_V5_BUCKET_COLS} FROM buckets WHERE name = %s FOR UPDATE", ("b",)).fetchone()
            assert row == ("b", "p", 1.0, "r", None, 0, 0, 0, None, 0, None, 0, 0)
            c.execute("UPDATE buckets SET used = used + %s, objects = objects + %s WHERE name = %s", (5, 1, "b"))
        b = asyncio.run(meta.read(lambda r: r.bucket("b")))
        assert b is not None and (b.used, b.objects, b.tags) == (5, 1, '{"k": "v"}')
    finally:
        meta.close()
