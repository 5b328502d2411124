"""The metadata-backend contract (store/metadata.py): every backend passes these same tests.

They check the protocol's primitives only, through the protocol only (no backend's internals), so
that a test written here runs unchanged against each backend in tests/meta_backends.py. The rules over the
primitives (preconditions, quotas, counters) are store/commits.py's and are tested there.

Each test is one coroutine on one event loop (`run`), bounded by a deadline: a backend whose writer
thread died fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import math
import sqlite3
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from meta_backends import BACKENDS

from tunnelmesh.store.errors import WriteFailed
from tunnelmesh.store.memory_meta import MemoryMeta
from tunnelmesh.store.metadata import MetaBackend, MetaReads, MetaTx
from tunnelmesh.store.records import (
    SYSTEM_BUCKET,
    Bucket,
    CompletedUpload,
    Hint,
    Listed,
    Lock,
    ObjectRecord,
    ObjectRef,
    Part,
    Segment,
    Upload,
    VersionEntry,
)

T = TypeVar("T")

# ---- the backends under test ------------------------------------------------------------------------
# every backend in tests/meta_backends.py
FACTORIES = [pytest.param(factory, id=name) for name, factory in sorted(BACKENDS.items())]

DEADLINE = 30.0


@pytest.fixture(params=FACTORIES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetaBackend]:
    meta: MetaBackend = request.param(tmp_path)
    yield meta
    meta.close()


def run(scenario: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario, DEADLINE)

    return asyncio.run(bounded())


class Boom(Exception):
    """What a failing write function raises."""


# ---- records ----------------------------------------------------------------------------------------


def bkt(name: str, **kw: Any) -> Bucket:
    fields: dict[str, Any] = dict(owner="p", created=1.0, region="r", quota=None, used=0, objects=0, mpu_used=0)
    fields.update(kw)
    return Bucket(name, **fields)


def obj(bucket: str, key: str, size: int = 1, blobs: tuple[str, ...] = (), **kw: Any) -> ObjectRecord:
    """An object with every field set, so that a backend that drops or mixes up one shows it."""
    segs = [Segment(b, size // max(len(blobs), 1), f"md5-{b}", {"crc32": f"c-{b}"}) for b in blobs]
    fields: dict[str, Any] = dict(
        size=size,
        etag=f"etag-{key}",
        mtime=100.5,
        headers={"content-type": "text/plain", "x-amz-meta-k": key},
        checksums={"crc32": "AAAAAA=="},
        segments=segs,
        owner="peer-1",
        data=None if blobs else b"inline-" + key.encode(),
    )
    fields.update(kw)
    return ObjectRecord(bucket, key, **fields)


def upl(upload_id: str, bucket: str = "b", key: str = "k", initiated: float = 10.0) -> Upload:
    return Upload(upload_id, bucket, key, initiated, "peer-1", {"content-type": "a/b"}, "CRC32", "COMPOSITE")


def prt(number: int, blob: str, size: int = 5, mtime: float = 20.0, etag: str = "") -> Part:
    return Part(number, size, etag or f"etag-{number}", mtime, blob, {"crc32": f"c-{number}"})


def listed(r: ObjectRecord) -> Listed:
    """What scan_objects carries of a record: what ListObjects shows."""
    return Listed(r.key, r.size, r.etag, r.mtime, r.owner)


def was(r: ObjectRecord, marker: bool = False) -> ObjectRef:
    """What delete_object, delete_objects_in and object_ref (and the version primitives) return of a record."""
    lock = r.lock or Lock()
    blobs = [s.blob for s in r.segments]
    return ObjectRef(
        r.size, r.etag, r.mtime, blobs, r.version_id, r.seq, lock.mode, lock.until, lock.legal_hold, marker
    )


def marker_of(bucket: str, key: str, seq: int, version_id: str | None = "marker") -> ObjectRecord:
    """A delete marker: no bytes, no blobs."""
    return ObjectRecord(
        bucket, key, 0, "", 200.25, {}, {}, [], "peer-2", None, version_id=version_id, seq=seq, marker=True
    )


def entry(r: ObjectRecord) -> VersionEntry:
    """What scan_versions carries of a version."""
    return VersionEntry(r.key, r.version_id, r.seq, r.marker, r.size, r.etag, r.mtime, r.owner)


MIN_NSEQ = -(2**63)
# what each engine raises for a row its keys refuse (PostgreSQL's unique violation is retried, then given up)
REFUSED_ROW = (ValueError, sqlite3.IntegrityError, WriteFailed)


async def write(meta: MetaBackend, fn: Callable[[MetaTx], T]) -> T:
    return await meta.write(fn)


async def read(meta: MetaBackend, fn: Callable[[MetaReads], T]) -> T:
    return await meta.read(fn)


async def setup(meta: MetaBackend, *buckets: str, objects: tuple[ObjectRecord, ...] = ()) -> None:
    def fn(tx: MetaTx) -> None:
        for b in buckets:
            tx.insert_bucket(bkt(b))
        for o in objects:
            tx.put_object(o)

    await meta.write(fn)


def keys_of(meta_reads: MetaReads, bucket: str, start: str = "", inclusive: bool = False) -> list[str]:
    return [r.key for r in meta_reads.scan_objects(bucket, start, inclusive, None, 10**6)]


# ---- buckets and counters ---------------------------------------------------------------------------


def test_buckets_are_kept_listed_by_name_and_deleted(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "m", "a", "z")
        a = bkt("a", owner="peer-9", created=7.5, region="eu-west-1", quota=500, used=3, objects=2, mpu_used=1)

        def fn(tx: MetaTx) -> None:
            tx.delete_bucket("a")
            tx.insert_bucket(a)
            tx.delete_bucket("z")

        await write(backend, fn)
        assert await read(backend, lambda r: r.bucket("a")) == a
        assert await read(backend, lambda r: r.bucket("z")) is None
        assert await read(backend, lambda r: [b.name for b in r.buckets()]) == ["a", "m"]

    run(scenario())


def test_quota_and_usage_counters(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b", "c")

        def fn(tx: MetaTx) -> None:
            tx.set_quota("b", 1000)
            tx.add_usage("b", used=100, objects=2)
            tx.add_usage("b", mpu_used=30)
            tx.add_usage("b", used=-40, objects=-1, mpu_used=-10)

        await write(backend, fn)
        assert await read(backend, lambda r: r.bucket("b")) == bkt("b", quota=1000, used=60, objects=1, mpu_used=20)
        assert await read(backend, lambda r: r.bucket("c")) == bkt("c")  # the other bucket is untouched
        await write(backend, lambda tx: tx.set_quota("b", None))
        b = await read(backend, lambda r: r.bucket("b"))
        assert b is not None and b.quota is None and b.used == 60

    run(scenario())


def test_store_used_counts_every_bucket_but_the_system_one(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b", "c", SYSTEM_BUCKET)

        def fn(tx: MetaTx) -> tuple[int, int, Bucket | None, Bucket | None]:
            tx.add_usage("b", used=100, mpu_used=7)
            tx.add_usage("c", used=20)
            tx.add_usage(SYSTEM_BUCKET, used=5000, mpu_used=300)
            return tx.store_used(), tx.lock_store(), tx.lock_bucket("b"), tx.lock_bucket("gone")

        used, locked, b, gone = await write(backend, fn)
        assert used == locked == 127
        assert b == bkt("b", used=100, mpu_used=7)
        assert gone is None
        assert await read(backend, lambda r: r.store_used()) == 127

    run(scenario())


def test_lock_bucket_and_ref_reads_the_bucket_and_the_keys_current_row_at_once(backend: MetaBackend) -> None:
    async def scenario() -> None:
        big = obj("b", "k", size=10, blobs=("blob-1",), version_id="v1", seq=7, lock=Lock("GOVERNANCE", 9.5, True))
        await setup(backend, "b", "c", objects=(big, obj("b", "s", size=3), obj("c", "n")))

        def fn(tx: MetaTx) -> list[tuple[Bucket | None, ObjectRef | None]]:
            tx.add_usage("b", used=13, objects=2)
            return [
                tx.lock_bucket_and_ref("b", "k"),
                tx.lock_bucket_and_ref("b", "s"),
                tx.lock_bucket_and_ref("b", "n"),  # a key of another bucket only
                tx.lock_bucket_and_ref("gone", "k"),
            ]

        got = await write(backend, fn)
        b = bkt("b", used=13, objects=2)
        assert got[0] == (b, was(big))
        assert got[1] == (b, was(obj("b", "s", size=3)))
        assert got[2] == (b, None)
        assert got[3] == (None, None)

    run(scenario())


# ---- freshness: the one read of every S3 request (docs/access-control.md section 3) -------------------

GROUPS, CONFIG, RECORD = "access/groups.json", "network/config.json", "access/buckets/b.json"


def test_freshness_gives_the_current_etags_of_system_records_and_the_bucket_row(backend: MetaBackend) -> None:
    async def scenario() -> None:
        b = bkt("b", owner="peer-7", created=1764500000.123456, region="eu", quota=9, used=5, objects=1, mpu_used=2)
        system = (obj(SYSTEM_BUCKET, GROUPS, etag="e-groups"), obj(SYSTEM_BUCKET, CONFIG, etag="e-config"))
        # the same key in another bucket is not a system record
        await setup(backend, SYSTEM_BUCKET, "other", objects=(*system, obj("other", RECORD, etag="e-elsewhere")))
        await write(backend, lambda tx: tx.insert_bucket(b))
        await write(backend, lambda tx: tx.set_bucket_attr("b", "versioning", "Enabled"))
        asked = [GROUPS, CONFIG, RECORD, "missing.json"]
        etags, row = await read(backend, lambda r: r.freshness(asked, "b"))
        assert etags == {GROUPS: "e-groups", CONFIG: "e-config"}  # keys with no current object are absent
        assert row == await read(backend, lambda r: r.bucket("b"))
        assert row == dataclasses.replace(b, versioning="Enabled")

        # a record rewritten, one written, one deleted: the next read says so
        await write(backend, lambda tx: tx.put_object(obj(SYSTEM_BUCKET, GROUPS, etag="e-groups-2")))
        await write(backend, lambda tx: tx.put_object(obj(SYSTEM_BUCKET, RECORD, etag="e-record")))
        await write(backend, lambda tx: tx.delete_object(SYSTEM_BUCKET, CONFIG))
        etags, _ = await read(backend, lambda r: r.freshness(asked, "b"))
        assert etags == {GROUPS: "e-groups-2", RECORD: "e-record"}

        # the same key asked twice is answered once; a key not asked is not answered
        assert await read(backend, lambda r: r.freshness([GROUPS, GROUPS], None)) == ({GROUPS: "e-groups-2"}, None)
        # no bucket asked, no keys asked, neither, a bucket that does not exist (or not any more)
        assert await read(backend, lambda r: r.freshness([RECORD], None)) == ({RECORD: "e-record"}, None)
        assert await read(backend, lambda r: r.freshness([], "b")) == ({}, row)
        assert await read(backend, lambda r: r.freshness([], None)) == ({}, None)
        assert await read(backend, lambda r: r.freshness([GROUPS], "nope")) == ({GROUPS: "e-groups-2"}, None)
        await write(backend, lambda tx: tx.delete_bucket("b"))
        assert await read(backend, lambda r: r.freshness([], "b")) == ({}, None)
        # the system bucket's own row is a bucket like any other
        assert await read(backend, lambda r: r.freshness([], SYSTEM_BUCKET)) == ({}, bkt(SYSTEM_BUCKET))

    run(scenario())


def test_freshness_inside_a_write_answers_the_same_and_locks_nothing(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, SYSTEM_BUCKET, "b", objects=(obj(SYSTEM_BUCKET, GROUPS, etag="e-1"),))

        def fn(tx: MetaTx) -> tuple[tuple[dict[str, str], Bucket | None], tuple[dict[str, str], Bucket | None]]:
            before = tx.freshness([GROUPS, CONFIG], "b")
            tx.put_object(obj(SYSTEM_BUCKET, CONFIG, etag="e-2"))
            return before, tx.freshness([GROUPS, CONFIG], "b")  # the transaction's own write is seen

        before, after = await write(backend, fn)
        assert before == ({GROUPS: "e-1"}, bkt("b"))
        assert after == ({GROUPS: "e-1", CONFIG: "e-2"}, bkt("b"))
        # nothing held after the write: a read and another write go through (a lock left behind would hang)
        assert await read(backend, lambda r: r.freshness([CONFIG], "b")) == ({CONFIG: "e-2"}, bkt("b"))
        await write(backend, lambda tx: tx.add_usage("b", used=1))

    run(scenario())


# quotes, SQL's and LIKE's wildcards, a comma, a statement's end, a backslash, non-ASCII, an astral character
ODD_KEYS = ['it\'s "quoted".json', "100%_done.json", "a,b.json", "'); DROP TABLE objects; --", "back\\slash", "ünï/😀"]


def test_freshness_takes_keys_and_bucket_names_of_any_characters(backend: MetaBackend) -> None:
    async def scenario() -> None:
        odd_bucket = "b'%_ü"
        await setup(backend, SYSTEM_BUCKET, odd_bucket)

        def fn(tx: MetaTx) -> None:
            for i, k in enumerate(ODD_KEYS):
                tx.put_object(obj(SYSTEM_BUCKET, k, etag=f"e-{i}"))

        await write(backend, fn)
        # the wildcards match only themselves: "100x_done.json" is not "100%_done.json"
        asked = [*ODD_KEYS, "100x_done.json", "ünï/", "no\x00such"]
        etags, row = await read(backend, lambda r: r.freshness(asked, odd_bucket))
        assert etags == {k: f"e-{i}" for i, k in enumerate(ODD_KEYS)}
        assert row == bkt(odd_bucket)
        assert await read(backend, lambda r: r.freshness(ODD_KEYS[:1], "b'%")) == ({ODD_KEYS[0]: "e-0"}, None)
        # a NUL no row can hold (PostgreSQL's text cannot): nothing found, no error
        assert await read(backend, lambda r: r.freshness(["a\x00"], "b\x00")) == ({}, None)

    run(scenario())


# ---- objects ----------------------------------------------------------------------------------------


def test_objects_are_kept_whole_replaced_and_deleted(backend: MetaBackend) -> None:
    async def scenario() -> None:
        big = obj("b", "k", size=10, blobs=("blob-1", "blob-2"))
        small = obj("b", "s", size=3)
        await setup(backend, "b", "c", objects=(big, small))
        assert await read(backend, lambda r: r.get_object("b", "k")) == big
        assert await read(backend, lambda r: r.get_object("b", "s")) == small  # inline data kept
        assert await read(backend, lambda r: r.get_object("c", "k")) is None  # keys are per bucket
        assert await read(backend, lambda r: r.get_object("b", "K")) is None
        assert await read(backend, lambda r: r.object_ref("b", "k")) == was(big)
        assert await read(backend, lambda r: r.object_ref("b", "s")) == was(small)  # inline: no blobs
        assert await read(backend, lambda r: r.object_ref("c", "k")) is None

        newer = obj("b", "k", size=4, etag="etag-2", mtime=200.0)
        await write(backend, lambda tx: tx.put_object(newer))
        assert await read(backend, lambda r: r.get_object("b", "k")) == newer
        assert await read(backend, lambda r: keys_of(r, "b")) == ["k", "s"]  # replaced, not added

        assert await write(backend, lambda tx: tx.delete_object("b", "k")) == was(newer)
        assert await write(backend, lambda tx: tx.delete_object("b", "k")) is None
        assert await read(backend, lambda r: r.get_object("b", "k")) is None
        assert await read(backend, lambda r: keys_of(r, "b")) == ["s"]

    run(scenario())


def test_delete_objects_in_empties_one_bucket(backend: MetaBackend) -> None:
    async def scenario() -> None:
        mine = [obj("b", k, size=i + 1, blobs=(f"blob-{k}",)) for i, k in enumerate(["y", "x", "z/1"])]
        other = obj("b2", "x")
        await setup(backend, "b", "b2", objects=(*mine, other))
        gone = await write(backend, lambda tx: tx.delete_objects_in("b"))
        assert sorted(gone, key=lambda r: r.size) == [was(r) for r in mine]
        assert await read(backend, lambda r: keys_of(r, "b")) == []
        assert await read(backend, lambda r: r.get_object("b", "x")) is None
        assert await read(backend, lambda r: r.get_object("b2", "x")) == other
        assert await write(backend, lambda tx: tx.delete_objects_in("b")) == []
        # the bucket takes objects again
        await write(backend, lambda tx: tx.put_object(obj("b", "a")))
        assert await read(backend, lambda r: keys_of(r, "b")) == ["a"]

    run(scenario())


# S3 lists keys in the order of their UTF-8 bytes, which is code-point order. UTF-16 order (or any
# collation) differs: it puts an astral character (a surrogate pair, D83D...) before U+E000..U+FFFF.
KEYS = ["\uffff", "a/b", "\U0001f600", "é", "a", "A", "a0", "\ue000", "ab", "a/", "z", "~"]
KEYS_IN_ORDER = sorted(KEYS, key=lambda k: k.encode("utf-8"))


def test_utf8_order_is_code_point_order() -> None:
    # what the backends' order rests on; and the sample has the cases that tell the orders apart
    assert sorted(KEYS) == KEYS_IN_ORDER
    assert KEYS_IN_ORDER.index("\ue000") < KEYS_IN_ORDER.index("\uffff") < KEYS_IN_ORDER.index("\U0001f600")
    assert sorted(KEYS, key=lambda k: k.encode("utf-16-be")) != KEYS_IN_ORDER


def test_scan_lists_in_code_point_order_with_listing_fields_only(backend: MetaBackend) -> None:
    async def scenario() -> None:
        recs = [obj("b", k, size=len(k.encode()), blobs=(f"blob-{i}",)) for i, k in enumerate(KEYS)]
        await setup(backend, "b", "a", "c", objects=(*recs, obj("a", "zz"), obj("c", "0")))
        got = await read(backend, lambda r: list(r.scan_objects("b", "", False, None, 1000)))
        assert [r.key for r in got] == KEYS_IN_ORDER
        by_key = {r.key: r for r in recs}
        assert got == [listed(by_key[r.key]) for r in got]  # size, etag, mtime, owner; no headers etc.

    run(scenario())


@pytest.mark.parametrize(
    ("start", "inclusive", "end", "limit", "expected"),
    [
        ("", False, None, 100, KEYS_IN_ORDER),
        ("", True, None, 100, KEYS_IN_ORDER),
        ("a", False, None, 100, KEYS_IN_ORDER[KEYS_IN_ORDER.index("a") + 1 :]),
        ("a", True, None, 100, KEYS_IN_ORDER[KEYS_IN_ORDER.index("a") :]),
        ("a/a", True, None, 3, ["a/b", "a0", "ab"]),  # a start that is no key: inclusive or not, the same
        ("a/a", False, None, 3, ["a/b", "a0", "ab"]),
        ("a", True, "a0", 100, ["a", "a/", "a/b"]),  # end excluded
        ("a", False, "a/c", 100, ["a/", "a/b"]),
        ("é", True, "\U0001f600", 100, ["é", "\ue000", "\uffff"]),
        ("\uffff", False, None, 100, ["\U0001f600"]),
        ("\U0001f600", False, None, 100, []),
        ("\U0001f600", True, None, 100, ["\U0001f600"]),
        ("a", True, "a", 100, []),  # end == start
        ("z", True, "a", 100, []),  # end before start
        ("", False, None, 1, ["A"]),
        ("", False, None, 0, []),
        ("a", False, None, 2, ["a/", "a/b"]),
        ("", False, "A", 100, []),
    ],
)
def test_scan_bounds(
    backend: MetaBackend, start: str, inclusive: bool, end: str | None, limit: int, expected: list[str]
) -> None:
    async def scenario() -> list[str]:
        await setup(backend, "b", "b0", objects=(*(obj("b", k) for k in KEYS), obj("b0", "a1")))
        return await read(backend, lambda r: [x.key for x in r.scan_objects("b", start, inclusive, end, limit)])

    assert run(scenario()) == expected


def test_scan_of_an_unknown_or_empty_bucket_is_empty(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b", "c", objects=(obj("c", "k"),))
        assert await read(backend, lambda r: keys_of(r, "b")) == []
        assert await read(backend, lambda r: keys_of(r, "nope")) == []

    run(scenario())


def test_scan_is_lazy_and_pages_without_gaps(backend: MetaBackend) -> None:
    async def scenario() -> None:
        keys = [f"k{i:03d}" for i in range(60)]
        await setup(backend, "b", objects=tuple(obj("b", k) for k in keys))

        def first_three(r: MetaReads) -> list[str]:
            it = r.scan_objects("b", "", False, None, 1000)
            assert not isinstance(it, list | tuple)  # an iterator the caller may stop
            return [x.key for x in itertools.islice(it, 3)]

        assert await read(backend, first_three) == keys[:3]

        # a scan left unfinished inside a write neither blocks the commit nor later writes
        def stop_early_then_write(tx: MetaTx) -> str:
            it = tx.scan_objects("b", "", False, None, 1000)
            first = next(it).key
            tx.put_object(obj("b", "new"))
            return first

        assert await write(backend, stop_early_then_write) == "k000"
        await write(backend, lambda tx: tx.put_object(obj("b", "newer")))

        # pages from the last key, exclusive: every key once, in order
        seen: list[str] = []
        last = ""
        while True:
            page = await read(
                backend, lambda r, after=last: [x.key for x in r.scan_objects("b", after, False, None, 7)]
            )
            assert len(page) <= 7
            if not page:
                break
            seen += page
            last = page[-1]
        assert seen == [*keys, "new", "newer"]

    run(scenario())


# ---- transactions -----------------------------------------------------------------------------------


def snapshot(r: MetaReads) -> dict[str, Any]:
    """Everything the protocol can tell about the state seeded by `seed` (and what a write may add)."""
    buckets = r.buckets()
    ids = ["u1", "u2", "u3", "u-new"]
    return {
        "buckets": buckets,
        "store_used": r.store_used(),
        "objects": {
            b.name: [(x, r.get_object(b.name, x.key)) for x in r.scan_objects(b.name, "", False, None, 1000)]
            for b in buckets
        },
        "new_bucket_objects": keys_of(r, "new"),
        "uploads": {b.name: r.list_uploads(b.name, "", "", "", 1000) for b in buckets},
        "by_id": {u: (r.upload(u), r.upload_last_active(u), r.parts(u, 0, 10000)) for u in ids},
        "pending": r.pending_uploads(),
        "stale": r.stale_uploads(math.inf, 1000),
        "completed": [r.completed_upload(b, k, u) for b in ("b", "c") for k in ("k", "j") for u in ids],
        "freed": r.freed_before(math.inf, None),
        "usage": r.count_usage(),
        "refs": r.referenced_blobs(),
        "versions": {
            b.name: [
                (v, r.version(b.name, v.key, v.seq)) for v in r.scan_versions(b.name, "", MIN_NSEQ, True, None, 1000)
            ]
            for b in buckets
        },
        "version_refs": [
            (r.newest_version_ref(b, k), r.null_version_ref(b, k)) for b in ("b", "c") for k in ("k", "x")
        ],
        "nodes": r.nodes(),
    }


async def seed(meta: MetaBackend) -> None:
    def fn(tx: MetaTx) -> None:
        tx.insert_bucket(bkt("b", quota=10_000, used=13, objects=2, mpu_used=5))
        tx.insert_bucket(bkt("c", used=1, objects=1))
        tx.put_object(obj("b", "k", size=10, blobs=("blob-k",)))
        tx.put_object(obj("b", "j", size=3))
        tx.put_object(obj("c", "x", size=1))
        tx.insert_upload(upl("u1", "b", "k", initiated=10.0))
        tx.put_part("u1", prt(1, "blob-p1", size=5))
        tx.insert_upload(upl("u2", "c", "j", initiated=11.0))
        tx.put_completed("u3", "b", "j", CompletedUpload("etag-3", "sig-3", {"crc32": "c3"}), 50.0)
        tx.put_completed("u2", "c", "k", CompletedUpload("etag-2", "sig-2", {}), 40.0)
        tx.queue_freed(["blob-old1", "blob-old2"], 5.0)
        tx.put_version(obj("b", "k", size=4, blobs=("blob-v1",), seq=5, version_id="v1", tags={"t": "1"}), False, 2.0)
        tx.put_version(marker_of("b", "k", 7), True, 3.0)
        tx.put_version(obj("c", "x", size=2, seq=3), False, 2.0)  # a noncurrent null version
        tx.claim_node("node-1", "dir-1", 1.0)

    await meta.write(fn)


def changes_everything(tx: MetaTx) -> None:
    """Every kind of write, on new and on existing rows; and the transaction reads its own writes."""
    tx.lock_store()
    tx.lock_bucket("b")
    tx.insert_bucket(bkt("new"))
    tx.put_object(obj("new", "n", blobs=("blob-n",)))
    tx.set_quota("b", 1)
    tx.add_usage("b", used=5, objects=1, mpu_used=-5)
    tx.put_object(obj("b", "a-new", size=4, blobs=("blob-a",)))
    tx.put_object(obj("b", "k", size=99, blobs=("blob-k2",)))  # a replacement
    tx.delete_object("b", "j")
    tx.insert_upload(upl("u-new", "b", "zz", initiated=1.0))
    tx.put_part("u-new", prt(1, "blob-pn"))
    tx.put_part("u1", prt(1, "blob-p1b", size=50))  # a replacement
    tx.put_part("u1", prt(2, "blob-p2"))
    tx.touch_upload("u1", 99.0)
    tx.put_completed("u1", "b", "k", CompletedUpload("e", "s", {}), 60.0)
    tx.put_completed("u3", "b", "j", CompletedUpload("other", "sig-x", {}), 70.0)  # a replacement
    tx.queue_freed(["blob-k", "blob-old1"], 80.0)
    tx.forget_freed(["blob-old2"])
    assert tx.get_object("b", "k") == obj("b", "k", size=99, blobs=("blob-k2",))
    assert keys_of(tx, "b") == ["a-new", "k"]
    assert [p.blob for p in tx.parts("u1", 0, 10)] == ["blob-p1b", "blob-p2"]
    assert tx.freed_before(math.inf, None) == ["blob-old1", "blob-k"]
    # the versions: every primitive that writes
    tx.set_bucket_attr("b", "versioning", "Enabled")
    tx.add_usage("c", nc_used=3, nc_objects=1)
    a_new = tx.retire_current("b", "a-new", 90.0)
    assert a_new is not None and tx.promote_version("b", "a-new", a_new.seq) == a_new
    tx.retire_current("b", "a-new", 91.0)
    tx.delete_version("b", "k", 5)
    tx.set_version_attrs("c", "x", 3, False, tags={"n": "v"}, retention=("GOVERNANCE", 1e10), legal_hold=True)
    tx.delete_null_version("c", "x")
    tx.put_version(obj("c", "x", size=1, seq=2, blobs=("blob-v2",)), False, 95.0)
    tx.beat("node-1", "here", 1.0, 5.0)


def deletes_everything(tx: MetaTx) -> None:
    """Every kind of delete, of all there is (found through the transaction's own reads)."""
    names = [b.name for b in tx.buckets()]
    for name in names:
        tx.delete_objects_in(name)
        for up in tx.list_uploads(name, "", "", "", 1000):
            tx.delete_upload(up.upload_id)
    tx.forget_completed(bucket="b")
    tx.forget_completed(before=math.inf)
    tx.forget_freed(tx.freed_before(math.inf, None))
    for name in names:
        for v in list(tx.scan_versions(name, "", MIN_NSEQ, True, None, 1000)):
            assert tx.delete_version(name, v.key, v.seq) is not None
    for name in names:
        tx.delete_bucket(name)
    assert tx.buckets() == [] and tx.pending_uploads() == {} and tx.count_usage() == {}
    assert tx.referenced_blobs() == set() and tx.freed_before(math.inf, None) == []
    assert [list(tx.scan_versions(n, "", MIN_NSEQ, True, None, 10)) for n in ("b", "c")] == [[], []]


def changes_then_deletes(tx: MetaTx) -> None:
    changes_everything(tx)
    deletes_everything(tx)
    tx.insert_bucket(bkt("b"))  # a name deleted and taken again in one transaction
    tx.put_object(obj("b", "k"))


@pytest.mark.parametrize("fn", [changes_everything, deletes_everything, changes_then_deletes])
def test_a_write_that_raises_leaves_nothing(backend: MetaBackend, fn: Callable[[MetaTx], None]) -> None:
    async def scenario() -> None:
        await seed(backend)
        before = await read(backend, snapshot)

        def fails(tx: MetaTx) -> None:
            fn(tx)
            assert snapshot(tx) != before  # the write did change what its own transaction reads
            raise Boom

        with pytest.raises(Boom):
            await backend.write(fails)
        assert await read(backend, snapshot) == before
        # and the backend goes on: the same changes commit when nothing raises
        await backend.write(fn)
        assert await read(backend, snapshot) != before

    run(scenario())


def test_write_returns_and_settles_with_the_outcome(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        settled: list[tuple[bool, Any]] = []

        def ok(tx: MetaTx) -> str:
            tx.put_object(obj("b", "k"))
            return "done"

        assert await backend.write(ok, lambda ok, value: settled.append((ok, value))) == "done"
        assert settled == [(True, "done")]
        assert await read(backend, lambda r: keys_of(r, "b")) == ["k"]

        boom = Boom("no")

        def fails(tx: MetaTx) -> str:
            tx.put_object(obj("b", "j"))
            raise boom

        settled.clear()
        with pytest.raises(Boom) as e:
            await backend.write(fails, lambda ok, value: settled.append((ok, value)))
        assert e.value is boom
        assert settled == [(False, boom)]
        assert await read(backend, lambda r: keys_of(r, "b")) == ["k"]

    run(scenario())


# ---- no aliasing ------------------------------------------------------------------------------------


def _mutate_object(r: ObjectRecord) -> None:
    r.size = 999_999
    r.headers["content-type"] = "evil"
    r.checksums["sha256"] = "evil"
    if r.segments:
        r.segments[0].checksums["crc32"] = "evil"
    r.segments.append(Segment("evil", 1))


def spoil(r: ObjectRef) -> None:
    """Mutate what a delete returned, every part of it that can be."""
    r.blobs.append("evil")


def test_records_handed_in_or_out_are_copies(backend: MetaBackend) -> None:
    async def scenario() -> None:
        original = obj("b", "k", size=10, blobs=("blob-1",))
        up, part = upl("u1", "b", "k"), prt(1, "blob-p")
        done = CompletedUpload("etag", "sig", {"crc32": "c"})
        handed = (obj("b", "k", size=10, blobs=("blob-1",)), upl("u1", "b", "k"), prt(1, "blob-p"))
        handed_done = CompletedUpload("etag", "sig", {"crc32": "c"})

        def put(tx: MetaTx) -> None:
            tx.insert_bucket(bkt("b"))
            tx.put_object(handed[0])
            tx.insert_upload(handed[1])
            tx.put_part("u1", handed[2])
            tx.put_completed("u1", "b", "k", handed_done, 1.0)

        await write(backend, put)
        # what was handed in, mutated afterwards
        _mutate_object(handed[0])
        handed[1].headers["content-type"] = "evil"
        handed[2].checksums["crc32"] = "evil"
        handed_done.checksums["crc32"] = "evil"

        def got_all(r: MetaReads) -> tuple[Any, ...]:
            return (
                r.get_object("b", "k"),
                r.object_ref("b", "k"),
                next(r.scan_objects("b", "", False, None, 1)),
                r.upload("u1"),
                r.list_uploads("b", "", "", "", 10)[0],
                r.stale_uploads(math.inf, 10)[0],
                r.parts("u1", 0, 10)[0],
                r.completed_upload("b", "k", "u1"),
            )

        # what was handed out, mutated
        got = await read(backend, got_all)
        _mutate_object(got[0])
        spoil(got[1])
        with pytest.raises(AttributeError):  # a listed row is a tuple: nothing of it to change
            got[2].size = 999_999  # type: ignore[misc]
        for u in got[3:6]:
            u.headers["content-type"] = "evil"
        got[6].checksums["crc32"] = "evil"
        got[7].checksums["crc32"] = "evil"

        again = await read(backend, got_all)
        assert again == (original, was(original), listed(original), up, up, up, part, done)

        # what a write returns, mutated before its transaction is rolled back
        def delete_then_fail(tx: MetaTx) -> None:
            deleted = tx.delete_object("b", "k")
            assert deleted is not None
            spoil(deleted)
            for p in tx.delete_upload("u1"):
                p.checksums["crc32"] = "evil"
            for r in tx.delete_objects_in("b"):
                spoil(r)
            raise Boom

        with pytest.raises(Boom):
            await backend.write(delete_then_fail)
        assert await read(backend, got_all) == again

    run(scenario())


# ---- uploads and parts ------------------------------------------------------------------------------


def test_uploads_are_kept_and_touched(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        up = upl("u1", "b", "k/é", initiated=10.0)
        plain = Upload("u2", "b", "k", 12.0, "peer-2", {}, None, None)

        def fn(tx: MetaTx) -> None:
            tx.insert_upload(up)
            tx.insert_upload(plain)

        await write(backend, fn)
        assert await read(backend, lambda r: (r.upload("u1"), r.upload("u2"))) == (up, plain)
        assert await read(backend, lambda r: r.upload_last_active("u1")) == 10.0  # last active at initiation
        assert await write(backend, lambda tx: tx.touch_upload("u1", 30.0)) is True
        assert await read(backend, lambda r: r.upload_last_active("u1")) == 30.0
        assert await write(backend, lambda tx: tx.touch_upload("u1", 20.0)) is True  # never moves back
        assert await read(backend, lambda r: r.upload_last_active("u1")) == 30.0
        assert await read(backend, lambda r: r.upload_last_active("u2")) == 12.0  # the other is untouched
        assert await write(backend, lambda tx: tx.touch_upload("gone", 40.0)) is False
        assert await read(backend, lambda r: (r.upload("gone"), r.upload_last_active("gone"))) == (None, None)

    run(scenario())


def test_parts_in_order_from_after_up_to_limit(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        parts = {n: prt(n, f"blob-{n}", size=n) for n in (3, 1, 10000, 2, 10)}

        def fn(tx: MetaTx) -> None:
            tx.insert_upload(upl("u1"))
            tx.insert_upload(upl("u2"))
            for p in parts.values():
                tx.put_part("u1", p)
            tx.put_part("u2", prt(1, "blob-u2"))

        await write(backend, fn)
        assert await read(backend, lambda r: r.parts("u1", 0, 10001)) == [parts[n] for n in (1, 2, 3, 10, 10000)]
        assert await read(backend, lambda r: r.parts("u1", 2, 10001)) == [parts[n] for n in (3, 10, 10000)]
        assert await read(backend, lambda r: r.parts("u1", 0, 2)) == [parts[1], parts[2]]
        assert await read(backend, lambda r: r.parts("u1", 3, 1)) == [parts[10]]
        assert await read(backend, lambda r: r.parts("u1", 10000, 5)) == []
        assert await read(backend, lambda r: r.parts("nope", 0, 5)) == []

        again = prt(2, "blob-2b", size=7, mtime=30.0, etag="etag-again")
        await write(backend, lambda tx: tx.put_part("u1", again))
        assert await read(backend, lambda r: r.parts("u1", 1, 1)) == [again]

        gone = await write(backend, lambda tx: tx.delete_upload("u1"))
        # a backend may leave out the checksums (the rules use sizes and blobs only)
        fields = [(p.part_number, p.size, p.etag, p.mtime, p.blob) for p in sorted(gone, key=lambda p: p.part_number)]
        expected = [parts[1], again, parts[3], parts[10], parts[10000]]
        assert fields == [(p.part_number, p.size, p.etag, p.mtime, p.blob) for p in expected]
        assert await read(backend, lambda r: (r.upload("u1"), r.upload_last_active("u1"), r.parts("u1", 0, 5))) == (
            None,
            None,
            [],
        )
        assert await read(backend, lambda r: r.parts("u2", 0, 5)) == [prt(1, "blob-u2")]
        assert await write(backend, lambda tx: tx.delete_upload("u1")) == []

    run(scenario())


def test_put_part_leaves_last_active_to_touch_upload(backend: MetaBackend) -> None:
    # The primitive only puts the part (store/metadata.py); store/commits.py calls touch_upload for it.
    # Pinned so that every backend agrees: stale-upload expiry depends on it.
    async def scenario() -> None:
        await setup(backend, "b")

        def fn(tx: MetaTx) -> None:
            tx.insert_upload(upl("u1", initiated=10.0))
            tx.put_part("u1", prt(1, "blob-1", mtime=50.0))

        await write(backend, fn)
        assert await read(backend, lambda r: r.upload_last_active("u1")) == 10.0

    run(scenario())


def test_list_uploads_by_key_then_id_after_the_markers(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b", "c")
        ups = [
            upl("u5", "b", "a"),
            upl("u2", "b", "a"),
            upl("u9", "b", "a/b"),
            upl("u1", "b", "ab"),
            upl("u3", "b", "\U0001f600"),
            upl("u4", "b", "\uffff"),
            upl("u0", "c", "a"),  # another bucket's
        ]

        def fn(tx: MetaTx) -> None:
            for u in ups:
                tx.insert_upload(u)

        await write(backend, fn)

        async def ids(prefix: str, key_marker: str = "", id_marker: str = "", limit: int = 100) -> list[str]:
            got = await read(backend, lambda r: r.list_uploads("b", prefix, key_marker, id_marker, limit))
            assert all(u in ups for u in got)  # whole records
            return [u.upload_id for u in got]

        assert await ids("") == ["u2", "u5", "u9", "u1", "u4", "u3"]
        assert await ids("a") == ["u2", "u5", "u9", "u1"]
        assert await ids("a/") == ["u9"]
        assert await ids("\uffff") == ["u4"]
        assert await ids("b") == []
        assert await ids("", "a", "u2") == ["u5", "u9", "u1", "u4", "u3"]  # same key, later id
        assert await ids("", "a", "u5") == ["u9", "u1", "u4", "u3"]
        assert await ids("", "a", "") == ["u2", "u5", "u9", "u1", "u4", "u3"]
        assert await ids("", "a/a", "zzz") == ["u9", "u1", "u4", "u3"]  # a marker that is no key
        assert await ids("", "ab", "u1") == ["u4", "u3"]
        assert await ids("a", "a", "u2", limit=2) == ["u5", "u9"]
        assert await ids("", limit=0) == []
        assert await read(backend, lambda r: r.list_uploads("none", "", "", "", 10)) == []

    run(scenario())


def test_pending_uploads_per_bucket(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b", "c", "d")

        def fn(tx: MetaTx) -> None:
            for uid, bucket in [("u1", "b"), ("u2", "b"), ("u3", "c"), ("u4", "b")]:
                tx.insert_upload(upl(uid, bucket))

        await write(backend, fn)
        assert await read(backend, lambda r: r.pending_uploads()) == {"b": 3, "c": 1}
        await write(backend, lambda tx: tx.delete_upload("u3"))
        await write(backend, lambda tx: tx.delete_upload("u1"))
        assert await read(backend, lambda r: r.pending_uploads()) == {"b": 2}

    run(scenario())


def test_stale_uploads_least_recently_active_first(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")

        def fn(tx: MetaTx) -> None:
            tx.insert_upload(upl("u-a", initiated=30.0))
            tx.insert_upload(upl("u-b", initiated=10.0))
            tx.insert_upload(upl("u-c", initiated=20.0))
            tx.insert_upload(upl("u-d", initiated=25.0))
            tx.touch_upload("u-b", 40.0)  # initiated first, active last

        await write(backend, fn)

        async def stale(cutoff: float, limit: int = 100) -> list[str]:
            return [u.upload_id for u in await read(backend, lambda r: r.stale_uploads(cutoff, limit))]

        assert await stale(100.0) == ["u-c", "u-d", "u-a", "u-b"]
        assert await stale(30.0) == ["u-c", "u-d"]  # before the cutoff, not at it
        assert await stale(35.0, limit=2) == ["u-c", "u-d"]
        assert await stale(20.0) == []
        got = await read(backend, lambda r: r.stale_uploads(21.0, 1))
        assert got == [upl("u-c", initiated=20.0)]

    run(scenario())


def test_completed_uploads_by_bucket_key_and_id(backend: MetaBackend) -> None:
    async def scenario() -> None:
        first = CompletedUpload("etag-1", "sig-1", {"crc32": "c1"})

        def fn(tx: MetaTx) -> None:
            tx.put_completed("u1", "b", "k", first, 100.0)
            tx.put_completed("u2", "b", "j", CompletedUpload("etag-2", "sig-2", {}), 200.0)
            tx.put_completed("u3", "c", "k", CompletedUpload("etag-3", "sig-3", {}), 300.0)

        await write(backend, fn)

        async def found() -> list[str]:
            triples = [("b", "k", "u1"), ("b", "j", "u2"), ("c", "k", "u3")]
            got = await read(backend, lambda r: [r.completed_upload(*t) for t in triples])
            return [d.etag for d in got if d is not None]

        assert await read(backend, lambda r: r.completed_upload("b", "k", "u1")) == first
        assert await read(backend, lambda r: r.completed_upload("b", "j", "u1")) is None  # another key
        assert await read(backend, lambda r: r.completed_upload("c", "k", "u1")) is None  # another bucket
        assert await read(backend, lambda r: r.completed_upload("b", "k", "u9")) is None
        assert await found() == ["etag-1", "etag-2", "etag-3"]

        second = CompletedUpload("etag-1b", "sig-1b", {})
        await write(backend, lambda tx: tx.put_completed("u1", "b", "k", second, 150.0))
        assert await read(backend, lambda r: r.completed_upload("b", "k", "u1")) == second

        await write(backend, lambda tx: tx.forget_completed(before=200.0))  # before it, not at it
        assert await found() == ["etag-2", "etag-3"]
        await write(backend, lambda tx: tx.forget_completed(bucket="b"))
        assert await found() == ["etag-3"]

    run(scenario())


def test_forget_completed_drops_what_either_filter_names(backend: MetaBackend) -> None:
    async def scenario() -> list[CompletedUpload | None]:
        def fn(tx: MetaTx) -> None:
            for uid, bucket, t in [("u1", "b", 100.0), ("u2", "c", 50.0), ("u3", "c", 300.0), ("u4", "d", 10.0)]:
                tx.put_completed(uid, bucket, "k", CompletedUpload(f"etag-{uid}", "sig", {}), t)

        await write(backend, fn)
        await write(backend, lambda tx: tx.forget_completed())  # no filter: nothing named, nothing dropped
        await write(backend, lambda tx: tx.forget_completed(bucket="b", before=60.0))
        triples = [("b", "k", "u1"), ("c", "k", "u2"), ("c", "k", "u3"), ("d", "k", "u4")]
        return await read(backend, lambda r: [r.completed_upload(*t) for t in triples])

    assert [d.etag if d else None for d in run(scenario())] == [None, None, "etag-u3", None]


# ---- freed blobs and references ---------------------------------------------------------------------


def test_freed_queue_by_time_then_id_first_time_kept(backend: MetaBackend) -> None:
    async def scenario() -> None:
        def fn(tx: MetaTx) -> None:
            tx.queue_freed(["y", "x"], 10.0)
            tx.queue_freed(["z"], 5.0)
            tx.queue_freed(["x", "w"], 1.0)  # x is queued already: it keeps 10.0

        await write(backend, fn)

        async def before(t: float, limit: int | None = None) -> list[str]:
            return await read(backend, lambda r: r.freed_before(t, limit))

        assert await before(100.0) == ["w", "z", "x", "y"]
        assert await before(10.0) == ["w", "z"]  # freed before t, not at it
        assert await before(1.0) == []
        assert await before(100.0, 3) == ["w", "z", "x"]
        assert await before(100.0, 0) == []

        await write(backend, lambda tx: tx.forget_freed(["x", "never-queued"]))
        assert await before(100.0) == ["w", "z", "y"]
        await write(backend, lambda tx: tx.queue_freed(["x"], 50.0))  # forgotten, then queued anew
        assert await before(100.0) == ["w", "z", "y", "x"]

    run(scenario())


def test_freed_now_is_stamped_by_the_backend_clock(backend: MetaBackend) -> None:
    async def scenario() -> None:
        before = await read(backend, lambda r: r.clock())
        await write(backend, lambda tx: tx.queue_freed(["now"], None))
        after = await read(backend, lambda r: r.clock())
        assert before <= after and abs(after - time.time()) < 60  # the database shares this machine's clock
        assert await read(backend, lambda r: r.freed_before(before, None)) == []
        assert await read(backend, lambda r: r.freed_before(after + 0.001, None)) == ["now"]

    run(scenario())


def test_a_point_read_of_a_name_with_a_nul_finds_nothing(backend: MetaBackend) -> None:
    """No name holds a NUL (PostgreSQL's text cannot): looking one up is a miss, never an error (a
    Basic-auth peer id reaches the store unchecked by the S3 layer's key rules)."""

    async def scenario() -> None:
        await setup(backend, "b")
        assert await read(backend, lambda r: r.bucket("b\x00")) is None
        assert await read(backend, lambda r: r.get_object("b", "k\x00")) is None
        assert await read(backend, lambda r: r.object_ref("b", "k\x00")) is None
        assert await read(backend, lambda r: r.upload("u\x00")) is None
        assert await read(backend, lambda r: r.completed_upload("b", "k\x00", "u")) is None

    run(scenario())


def test_a_node_id_is_held_by_the_first_data_dir_that_claims_it(backend: MetaBackend) -> None:
    async def scenario() -> None:
        assert await write(backend, lambda tx: tx.claim_node("node-a", "dir-1", 1.0)) == "dir-1"
        assert await write(backend, lambda tx: tx.claim_node("node-a", "dir-1", 2.0)) == "dir-1"  # a restart
        assert await write(backend, lambda tx: tx.claim_node("node-a", "dir-2", 3.0)) == "dir-1"  # a second
        assert await write(backend, lambda tx: tx.claim_node("node-b", "dir-2", 4.0)) == "dir-2"

    run(scenario())


def test_a_writer_tag_is_given_once_whichever_node_asks(backend: MetaBackend) -> None:
    async def scenario() -> None:
        assert await write(backend, lambda tx: tx.claim_writer_tag("0000aaaa", "node-1")) is True
        assert await write(backend, lambda tx: tx.claim_writer_tag("0000bbbb", "node-1")) is True
        assert await write(backend, lambda tx: tx.claim_writer_tag("0000cccc", "node-2")) is True
        # taken: by another node, or by the same one again
        assert await write(backend, lambda tx: tx.claim_writer_tag("0000aaaa", "node-2")) is False
        assert await write(backend, lambda tx: tx.claim_writer_tag("0000cccc", "node-2")) is False
        assert sorted(await read(backend, lambda r: r.writer_tags("node-1"))) == ["0000aaaa", "0000bbbb"]
        assert await read(backend, lambda r: r.writer_tags("node-2")) == ["0000cccc"]
        assert await read(backend, lambda r: r.writer_tags("node-3")) == []

        def claim_then_fail(tx: MetaTx) -> None:
            assert tx.claim_writer_tag("0000dddd", "node-1")
            raise ValueError("refused")

        with pytest.raises(ValueError):
            await write(backend, claim_then_fail)
        # a claim rolled back was never made
        assert await write(backend, lambda tx: tx.claim_writer_tag("0000dddd", "node-3")) is True

    run(scenario())


def test_heartbeats_are_stamped_by_the_backend_clock_and_listed_per_node(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await write(backend, lambda tx: tx.claim_node("node-b", "dir-2", 1.0))
        await write(backend, lambda tx: tx.claim_node("node-a", "dir-1", 1.0))
        await write(backend, lambda tx: tx.beat("node-a", "10.0.0.1:9000", 5.0, 1.0))
        await write(backend, lambda tx: tx.beat("node-z", "nowhere", 5.0, 1.0))  # not claimed: no row made
        a, b = await read(backend, lambda r: r.nodes())
        assert (a.node, a.listen, a.started_at) == ("node-a", "10.0.0.1:9000", 5.0)
        # stamped now by the backend's clock, whatever the caller passed as its start
        assert a.last_seen is not None and a.last_seen > 1e9
        assert a.silent_for is not None and 0 <= a.silent_for < 60
        assert (b.node, b.started_at, b.last_seen, b.silent_for) == ("node-b", None, None, None)

    run(scenario())


def test_silent_writer_tags_are_those_of_nodes_not_heard_from_and_not_yet_swept(backend: MetaBackend) -> None:
    """Signs of life (a claim, a beat) are stamped by the backend's clock, so silence is asked of it with a
    negative `silent_for` (everything stamped is older than a moment from now) against a huge interval."""

    async def scenario() -> None:
        for node in ("slow", "quiet", "claims-only"):
            await write(backend, functools.partial(_claim_node, node))
        for tag, node in (
            ("0000aaaa", "slow"),
            ("0000bbbb", "quiet"),
            ("0000cccc", "quiet"),
            ("0000dddd", "claims-only"),
        ):
            await write(backend, lambda tx, tag=tag, node=node: tx.claim_writer_tag(tag, node))
        await write(backend, lambda tx: tx.beat("slow", "x", 1.0, 10_000.0))  # beats every 10,000 s
        await write(backend, lambda tx: tx.beat("quiet", "x", 1.0, 0.0))
        # every sign of life is fresh: nobody silent for an hour
        assert await read(backend, lambda r: r.silent_writer_tags(3600.0)) == {}
        # "silent" for any time at all: all but the node whose own interval is not over three times
        silent = await read(backend, lambda r: r.silent_writer_tags(-1.0))
        # (and never the node that never beat: an older release, which would not stop for a retired tag)
        assert {node: sorted(tags) for node, tags in silent.items()} == {"quiet": ["0000bbbb", "0000cccc"]}
        # swept tags are done with: neither silent nor the node's own any more
        await write(backend, lambda tx: tx.tags_swept(["0000bbbb", "0000dddd"]))
        assert await read(backend, lambda r: r.silent_writer_tags(-1.0)) == {"quiet": ["0000cccc"]}
        assert await read(backend, lambda r: r.writer_tags("quiet")) == ["0000cccc"]
        assert await read(backend, lambda r: r.writer_tags("claims-only")) == []

    run(scenario())


def _claim_node(node: str, tx: MetaTx) -> str:
    return tx.claim_node(node, f"dir-{node}", 1.0)


def test_a_retired_writer_tag_is_reported_by_every_later_hold(backend: MetaBackend) -> None:
    async def scenario() -> None:
        for tag in ("0000aaaa", "0000bbbb"):
            await write(backend, lambda tx, tag=tag: tx.claim_writer_tag(tag, "n"))
        assert await write(backend, lambda tx: tx.hold_writer_tags(["0000aaaa", "0000bbbb", "0000ffff"])) == set()
        await write(backend, lambda tx: tx.retire_writer_tags(["0000aaaa", "0000ffff"]))  # an unknown tag: nothing
        await write(backend, lambda tx: tx.retire_writer_tags(["0000aaaa"]))  # again: still retired
        assert await write(backend, lambda tx: tx.hold_writer_tags(["0000aaaa", "0000bbbb"])) == {"0000aaaa"}
        assert await write(backend, lambda tx: tx.hold_writer_tags([])) == set()

        def retire_then_fail(tx: MetaTx) -> None:
            tx.retire_writer_tags(["0000bbbb"])
            raise ValueError("refused")

        with pytest.raises(ValueError):
            await write(backend, retire_then_fail)
        assert await write(backend, lambda tx: tx.hold_writer_tags(["0000bbbb"])) == set()

    run(scenario())


def test_a_lease_is_held_by_one_node_until_it_expires_or_is_finished(backend: MetaBackend) -> None:
    async def scenario() -> None:
        assert await write(backend, lambda tx: tx.take_lease("scrub", "a", 60.0, 0.0)) is True
        assert await write(backend, lambda tx: tx.take_lease("scrub", "b", 60.0, 0.0)) is False
        assert await write(backend, lambda tx: tx.take_lease("scrub", "a", 60.0, 0.0)) is True  # renewed
        assert await write(backend, lambda tx: tx.take_lease("expiry", "b", 60.0, 0.0)) is True  # another duty
        await write(backend, lambda tx: tx.finish_lease("scrub", "b"))  # not b's: nothing
        assert await write(backend, lambda tx: tx.take_lease("scrub", "b", 60.0, 0.0)) is False
        await write(backend, lambda tx: tx.finish_lease("scrub", "a"))
        # done just now: not due again within `every`, for anyone
        assert await write(backend, lambda tx: tx.take_lease("scrub", "b", 60.0, 3600.0)) is False
        assert await write(backend, lambda tx: tx.take_lease("scrub", "a", 60.0, 3600.0)) is False
        assert await write(backend, lambda tx: tx.take_lease("scrub", "b", 60.0, 0.0)) is True
        # an expired hold is anyone's
        assert await write(backend, lambda tx: tx.take_lease("expiry", "b", -1.0, 0.0)) is True
        assert await write(backend, lambda tx: tx.take_lease("expiry", "a", 60.0, 0.0)) is True

    run(scenario())


TAG_A, TAG_B = "aaaa0001", "bbbb0002"


def blob(n: int, tag: str) -> str:
    return f"{n:024x}{tag}"


def test_referenced_blobs_from_objects_and_parts(backend: MetaBackend) -> None:
    async def scenario() -> None:
        # a segment whose md5 ends like a tag names no blob of that tag: only the id counts
        decoy = Segment(blob(9, TAG_B), 3, f"{0:024x}{TAG_A}")
        objs = (
            obj("b", "one", blobs=(blob(1, TAG_A), blob(2, TAG_B))),
            obj("c", "two", blobs=(blob(3, TAG_A),)),
            obj("c", "decoy", size=3, segments=[decoy]),
            obj("c", "inline", size=2),
        )
        await setup(backend, "b", "c", objects=objs)

        def fn(tx: MetaTx) -> None:
            tx.insert_upload(upl("u1", "b"))
            tx.put_part("u1", prt(1, blob(4, TAG_B)))
            tx.put_part("u1", prt(2, blob(5, TAG_A)))
            tx.queue_freed([blob(6, TAG_A)], 1.0)  # queued, not named

        await write(backend, fn)
        everything = {blob(1, TAG_A), blob(2, TAG_B), blob(3, TAG_A), blob(9, TAG_B), blob(4, TAG_B), blob(5, TAG_A)}
        assert await read(backend, lambda r: r.referenced_blobs()) == everything
        assert await read(backend, lambda r: r.referenced_blobs(None)) == everything
        assert await read(backend, lambda r: r.referenced_blobs([TAG_A])) == {
            blob(1, TAG_A),
            blob(3, TAG_A),
            blob(5, TAG_A),
        }
        assert await read(backend, lambda r: r.referenced_blobs({TAG_A, TAG_B})) == everything
        assert await read(backend, lambda r: r.referenced_blobs(["cccc0003"])) == set()
        assert await read(backend, lambda r: r.referenced_blobs([])) == set()

        await write(backend, lambda tx: tx.delete_object("b", "one"))
        await write(backend, lambda tx: tx.delete_upload("u1"))
        assert await read(backend, lambda r: r.referenced_blobs()) == {blob(3, TAG_A), blob(9, TAG_B)}

    run(scenario())


def test_count_usage_recounts_from_the_records(backend: MetaBackend) -> None:
    async def scenario() -> None:
        objs = (obj("b1", "x", size=3), obj("b1", "y", size=4, blobs=("blob-y",)), obj("b2", "x", size=10))
        await setup(backend, "b1", "b2", "b3", "b4", objects=objs)

        def fn(tx: MetaTx) -> None:
            tx.add_usage("b1", used=1000, objects=50, mpu_used=7)  # counters are not what is counted
            tx.insert_upload(upl("u1", "b2"))
            tx.put_part("u1", prt(1, "p1", size=5))
            tx.put_part("u1", prt(2, "p2", size=6))
            tx.insert_upload(upl("u2", "b2"))
            tx.put_part("u2", prt(1, "p3", size=1))
            tx.insert_upload(upl("u3", "b3"))
            tx.put_part("u3", prt(1, "p4", size=7))
            tx.put_part("u3", prt(1, "p5", size=8))  # a replacement: counted once

        await write(backend, fn)
        assert await read(backend, lambda r: r.count_usage()) == {
            "b1": (7, 2, 0, 0, 0),
            "b2": (10, 1, 12, 0, 0),
            "b3": (0, 0, 8, 0, 0),
        }
        await write(backend, lambda tx: tx.delete_object("b1", "x"))
        await write(backend, lambda tx: tx.delete_upload("u3"))
        assert await read(backend, lambda r: r.count_usage()) == {"b1": (4, 1, 0, 0, 0), "b2": (10, 1, 12, 0, 0)}
        # noncurrent versions and markers count in the bytes, not among the current objects
        await write(backend, lambda tx: tx.retire_current("b1", "y", 5.0))
        await write(backend, lambda tx: tx.put_version(marker_of("b1", "y", 10**16), True, 6.0))
        await write(backend, lambda tx: tx.put_version(obj("b4", "v", size=9, seq=7), False, 6.0))
        assert await read(backend, lambda r: r.count_usage()) == {
            "b1": (4, 0, 0, 4, 2),
            "b2": (10, 1, 12, 0, 0),
            "b4": (9, 0, 0, 9, 1),
        }

    run(scenario())


# ---- versions (docs/data-protection.md, 2.2) ----------------------------------------------------------


def test_buckets_keep_their_versioning_lock_config_and_noncurrent_counters(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        rule = '{"mode": "GOVERNANCE", "days": 3}'
        a = bkt("a", versioning="Enabled", object_lock=True, lock_default=rule, nc_used=7, nc_objects=2)
        await write(backend, lambda tx: tx.insert_bucket(a))

        def fn(tx: MetaTx) -> None:
            tx.set_bucket_attr("b", "versioning", "Suspended")
            tx.set_bucket_attr("b", "object_lock", 1)
            tx.set_bucket_attr("b", "lock_default", rule)
            tx.add_usage("b", used=10, nc_used=4, nc_objects=3)
            tx.add_usage("b", nc_used=-1, nc_objects=-1)

        await write(backend, fn)
        b = bkt("b", versioning="Suspended", object_lock=True, lock_default=rule, used=10, nc_used=3, nc_objects=2)
        assert await read(backend, lambda r: r.buckets()) == [a, b]
        assert await read(backend, lambda r: r.bucket("a")) == a
        assert await write(backend, lambda tx: tx.lock_bucket("b")) == b
        # a counter is no configuration: refused, nothing changed
        with pytest.raises(ValueError):
            await write(backend, lambda tx: tx.set_bucket_attr("b", "used", 0))
        await write(backend, lambda tx: tx.set_bucket_attr("b", "lock_default", None))
        assert await read(backend, lambda r: r.bucket("b")) == dataclasses.replace(b, lock_default=None)

    run(scenario())


def test_a_bucket_keeps_its_tag_set_set_and_removed_alone(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        tagged = bkt("a", tags='{"k": "v"}')
        await write(backend, lambda tx: tx.insert_bucket(tagged))
        assert await read(backend, lambda r: r.bucket("a")) == tagged
        await write(backend, lambda tx: tx.set_bucket_attr("b", "tags", '{"x": ""}'))
        assert await read(backend, lambda r: r.buckets()) == [tagged, bkt("b", tags='{"x": ""}')]
        await write(backend, lambda tx: tx.set_bucket_attr("a", "tags", None))
        assert await write(backend, lambda tx: tx.lock_bucket("a")) == bkt("a")

    run(scenario())


def test_an_object_keeps_its_version_id_seq_tags_and_lock(backend: MetaBackend) -> None:
    async def scenario() -> None:
        lock = Lock("COMPLIANCE", 2_000_000_000.5, True)
        rec = obj("b", "k", blobs=("blob-1",), version_id="0" * 24, seq=1234567, tags={"a": "1", "é": ""}, lock=lock)
        plain = obj("b", "p")
        await setup(backend, "b", objects=(rec, plain))
        assert await read(backend, lambda r: r.get_object("b", "k")) == rec
        assert await read(backend, lambda r: r.object_ref("b", "k")) == was(rec)
        ref = await read(backend, lambda r: r.object_ref("b", "k"))
        assert ref is not None and (ref.version_id, ref.seq, ref.lock_mode, ref.lock_until, ref.legal_hold) == (
            "0" * 24,
            1234567,
            "COMPLIANCE",
            2_000_000_000.5,
            True,
        )
        # a record given no seq has its mtime's microseconds; no id (the null version), no tags, no lock
        got = await read(backend, lambda r: r.get_object("b", "p"))
        assert got is not None and (got.seq, got.version_id, got.tags, got.lock) == (100_500_000, None, None, None)
        listing = await read(backend, lambda r: list(r.scan_objects("b", "", False, None, 10)))
        assert listing == [listed(rec), listed(plain)]

    run(scenario())


def test_retire_current_moves_the_whole_version_and_promote_brings_it_back(backend: MetaBackend) -> None:
    async def scenario() -> None:
        lock = Lock("GOVERNANCE", 3e9, False)
        rec = obj("b", "k", size=10, blobs=("blob-1", "blob-2"), version_id="v1", seq=500, tags={"t": "1"}, lock=lock)
        inline = obj("b", "i", size=3)  # inline bytes, no seq given
        await setup(backend, "b", "c", objects=(rec, inline, obj("b", "other")))
        assert await write(backend, lambda tx: tx.retire_current("b", "k", 77.0)) == was(rec)
        assert await read(backend, lambda r: (r.get_object("b", "k"), r.object_ref("b", "k"))) == (None, None)
        assert await read(backend, lambda r: keys_of(r, "b")) == ["i", "other"]
        got = await read(backend, lambda r: r.version("b", "k", 500))
        assert got == rec
        assert got is not None and got.tags is not None
        got.tags["t"] = "changed"  # a copy: the stored version is not changed through it
        got.segments.clear()
        assert await read(backend, lambda r: r.version("b", "k", 500)) == rec
        assert await read(backend, lambda r: r.version("b", "k", 501)) is None
        assert await read(backend, lambda r: r.version("c", "k", 500)) is None
        assert await read(backend, lambda r: r.newest_version_ref("b", "k")) == was(rec)
        assert await read(backend, lambda r: r.null_version_ref("b", "k")) is None  # it has an id
        # nothing current: nothing to retire
        assert await write(backend, lambda tx: tx.retire_current("b", "k", 78.0)) is None
        assert await write(backend, lambda tx: tx.retire_current("nope", "k", 78.0)) is None
        assert await write(backend, lambda tx: tx.promote_version("b", "k", 500)) == was(rec)
        assert await read(backend, lambda r: r.get_object("b", "k")) == rec
        assert await read(backend, lambda r: (r.version("b", "k", 500), r.newest_version_ref("b", "k"))) == (None, None)
        assert await write(backend, lambda tx: tx.promote_version("b", "k", 500)) is None
        # the inline one, seq from its mtime, its bytes moved with it
        assert await write(backend, lambda tx: tx.retire_current("b", "i", 79.0)) == was(inline)
        assert await read(backend, lambda r: r.version("b", "i", 100_500_000)) == inline
        assert await read(backend, lambda r: r.null_version_ref("b", "i")) == was(inline)
        assert await write(backend, lambda tx: tx.promote_version("b", "i", 100_500_000)) == was(inline)
        assert await read(backend, lambda r: r.get_object("b", "i")) == inline

    run(scenario())


def test_a_delete_marker_is_a_version_never_made_current(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        m = marker_of("b", "k", 900, "m1")
        await write(backend, lambda tx: tx.put_version(m, True, 5.0))
        assert await read(backend, lambda r: r.version("b", "k", 900)) == m
        assert await read(backend, lambda r: r.newest_version_ref("b", "k")) == was(m, marker=True)
        with pytest.raises(ValueError):
            await write(backend, lambda tx: tx.promote_version("b", "k", 900))
        assert await read(backend, lambda r: (r.version("b", "k", 900), r.get_object("b", "k"))) == (m, None)
        assert await write(backend, lambda tx: tx.delete_version("b", "k", 900)) == was(m, marker=True)

    run(scenario())


def test_a_keys_versions_newest_first_and_one_null_version(backend: MetaBackend) -> None:
    async def scenario() -> None:
        null = obj("b", "k", size=1, blobs=("blob-n",), seq=100)
        v2 = obj("b", "k", size=2, blobs=("blob-2",), version_id="v2", seq=200)
        v3 = marker_of("b", "k", 300, "v3")
        await setup(backend, "b")

        def fn(tx: MetaTx) -> None:
            tx.put_version(v2, False, 1.0)
            tx.put_version(v3, True, 2.0)
            tx.put_version(null, False, 3.0)
            tx.put_version(obj("b", "kk", seq=999, version_id="x"), False, 3.0)  # another key's newer one

        await write(backend, fn)
        assert await read(backend, lambda r: r.newest_version_ref("b", "k")) == was(v3, marker=True)
        assert await read(backend, lambda r: r.null_version_ref("b", "k")) == was(null)
        assert await read(backend, lambda r: r.newest_version_ref("b", "j")) is None
        before = await read(backend, snapshot)
        # a second null version, or a second version of one seq, is refused (the rules never ask for it)
        for dup in (obj("b", "k", seq=50), obj("b", "k", seq=200, version_id="other")):
            with pytest.raises(REFUSED_ROW):
                await write(backend, lambda tx, dup=dup: tx.put_version(dup, False, 4.0))
        assert await read(backend, snapshot) == before
        # the current row is not a version: a null current object leaves the noncurrent null alone
        await write(backend, lambda tx: tx.put_object(obj("b", "k", seq=400)))
        assert await read(backend, lambda r: r.null_version_ref("b", "k")) == was(null)
        assert await write(backend, lambda tx: tx.delete_null_version("b", "k")) == was(null)
        assert await write(backend, lambda tx: tx.delete_null_version("b", "k")) is None
        assert await read(backend, lambda r: r.null_version_ref("b", "k")) is None
        older_null = obj("b", "k", seq=50)
        await write(backend, lambda tx: tx.put_version(older_null, False, 5.0))  # a null version is free again
        assert await write(backend, lambda tx: tx.delete_version("b", "k", 200)) == was(v2)
        assert await write(backend, lambda tx: tx.delete_version("b", "k", 200)) is None
        assert await write(backend, lambda tx: tx.delete_version("b", "k", 999)) is None  # kk's seq, not k's
        got = await read(backend, lambda r: list(r.scan_versions("b", "", MIN_NSEQ, True, None, 10)))
        assert got == [entry(v3), entry(older_null), entry(obj("b", "kk", seq=999, version_id="x"))]

    run(scenario())


VERSIONS = [("a", 3), ("a", 2), ("a", 1), ("a/", 5), ("b", 10), ("b", 9), ("é", 1)]  # (key, seq), in scan order


@pytest.mark.parametrize(
    ("start", "nseq", "inclusive", "end", "limit", "expected"),
    [
        ("", MIN_NSEQ, True, None, 100, VERSIONS),
        ("", MIN_NSEQ, False, None, 100, VERSIONS),
        ("a", -2, False, None, 100, VERSIONS[2:]),  # after a's seq 2: its older ones, then the next keys
        ("a", -2, True, None, 100, VERSIONS[1:]),
        ("a", 0, False, None, 100, VERSIONS[3:]),  # after every version of a
        ("a", MIN_NSEQ, True, "b", 100, VERSIONS[:4]),  # end excluded
        ("a", MIN_NSEQ, True, "a/", 2, VERSIONS[:2]),
        ("b", -10, False, None, 1, [("b", 9)]),
        ("b", -10, True, None, 0, []),
        ("é", -1, False, None, 100, []),
        ("a0", MIN_NSEQ, True, None, 100, VERSIONS[4:]),  # a start that is no key
    ],
)
def test_scan_versions_by_key_then_newest_first(
    backend: MetaBackend,
    start: str,
    nseq: int,
    inclusive: bool,
    end: str | None,
    limit: int,
    expected: list[tuple[str, int]],
) -> None:
    async def scenario() -> list[VersionEntry]:
        await setup(backend, "b", "c")

        def fn(tx: MetaTx) -> None:
            for i, (key, seq) in enumerate(reversed(VERSIONS)):
                if i % 3 == 0:
                    tx.put_version(marker_of("b", key, seq, f"m{seq}"), True, 1.0)
                else:
                    tx.put_version(obj("b", key, size=seq, seq=seq, version_id=f"v{seq}"), False, 1.0)
            tx.put_version(obj("c", "a", seq=4), False, 1.0)  # another bucket's
            tx.put_object(obj("b", "a", seq=7))  # a current version: not in versions

        await write(backend, fn)
        return await read(backend, lambda r: list(r.scan_versions("b", start, nseq, inclusive, end, limit)))

    got = run(scenario())
    assert [(v.key, v.seq) for v in got] == expected
    for v in got:
        want = marker_of("b", v.key, v.seq, f"m{v.seq}") if v.marker else obj("b", v.key, size=v.seq, seq=v.seq)
        assert v == entry(dataclasses.replace(want, version_id=v.version_id))
        assert v.version_id == (f"m{v.seq}" if v.marker else f"v{v.seq}") and v.nseq == -v.seq and not v.is_latest


def test_scan_versions_is_lazy_and_pages_without_gaps(backend: MetaBackend) -> None:
    async def scenario() -> None:
        want = [(f"k{i % 7}", 100 - i) for i in range(40)]
        await setup(backend, "b")

        def fn(tx: MetaTx) -> None:
            for key, seq in want:
                tx.put_version(obj("b", key, seq=seq, version_id=f"v{seq}"), False, 1.0)

        await write(backend, fn)

        def first_two(r: MetaReads) -> list[tuple[str, int]]:
            it = r.scan_versions("b", "", MIN_NSEQ, True, None, 1000)
            assert not isinstance(it, list | tuple)
            return [(v.key, v.seq) for v in itertools.islice(it, 2)]

        assert await read(backend, first_two) == sorted(want, key=lambda v: (v[0], -v[1]))[:2]
        seen: list[tuple[str, int]] = []
        pos = ("", MIN_NSEQ)
        while page := await read(
            backend, lambda r, p=pos: [(v.key, v.seq) for v in r.scan_versions("b", p[0], p[1], False, None, 3)]
        ):
            seen += page
            pos = (page[-1][0], -page[-1][1])
        assert seen == sorted(want, key=lambda v: (v[0], -v[1]))

    run(scenario())


def test_scan_current_lists_the_current_versions_by_key_with_their_ids_and_seqs(backend: MetaBackend) -> None:
    async def scenario() -> None:
        recs = [
            obj("b", k, size=len(k.encode()), blobs=(f"blob-{i}",), version_id=f"v{i}" if i % 2 else None, seq=900 + i)
            for i, k in enumerate(KEYS)
        ]
        recs.append(obj("b", "k", tags={"t": "1"}))  # no seq given: its mtime's
        await setup(backend, "b", "a", objects=(*recs, obj("a", "k", seq=5)))

        def fn(tx: MetaTx) -> None:
            tx.retire_current("b", "z", 1.0)  # noncurrent now: scan_versions', not scan_current's
            tx.put_version(marker_of("b", "~", 2000, "m"), True, 1.0)  # a marker is never current
            tx.put_version(obj("b", "a", seq=1, version_id="old"), False, 1.0)

        await write(backend, fn)
        got = await read(backend, lambda r: list(r.scan_current("b", "", False, None, 1000)))
        by_key = {r.key: r for r in recs}
        expected = sorted((k for k in by_key if k != "z"), key=lambda k: k.encode())
        assert [v.key for v in got] == expected
        assert got == [entry(by_key[k]) for k in expected]  # id, seq, size, etag, mtime, owner; not a marker
        assert got[expected.index("k")].seq == 100_500_000
        assert not any(v.is_latest or v.marker for v in got)  # the listing decides what is latest

    run(scenario())


def test_scan_current_has_the_bounds_order_and_limit_of_scan_objects(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b", "b0", objects=(*(obj("b", k, seq=7) for k in KEYS), obj("b0", "a1")))
        starts = ["", "a", "a/a", "é", "\uffff", "\U0001f600", "z"]
        cases = itertools.product(starts, (False, True), (None, "a0", "\U0001f600", "A", "a"), (0, 1, 2, 100))

        def both(r: MetaReads) -> list[tuple[list[str], list[str]]]:
            return [
                ([x.key for x in r.scan_objects("b", *case)], [x.key for x in r.scan_current("b", *case)])
                for case in cases
            ]

        for objects, current in await read(backend, both):
            assert current == objects
        assert await read(backend, lambda r: list(r.scan_current("nope", "", False, None, 10))) == []

    run(scenario())


def test_scan_current_is_lazy_and_pages_without_gaps(backend: MetaBackend) -> None:
    async def scenario() -> None:
        keys = [f"k{i:03d}" for i in range(30)]
        await setup(backend, "b", objects=tuple(obj("b", k, seq=i + 1) for i, k in enumerate(keys)))

        def first_two(r: MetaReads) -> list[str]:
            it = r.scan_current("b", "", False, None, 1000)
            assert not isinstance(it, list | tuple)  # an iterator the caller may stop
            return [x.key for x in itertools.islice(it, 2)]

        assert await read(backend, first_two) == keys[:2]

        def stop_early_then_write(tx: MetaTx) -> str:
            first = next(tx.scan_current("b", "", False, None, 1000)).key
            tx.put_object(obj("b", "new", seq=99))
            return first

        assert await write(backend, stop_early_then_write) == "k000"
        seen: list[tuple[str, int]] = []
        last = ""
        while page := await read(
            backend, lambda r, after=last: [(x.key, x.seq) for x in r.scan_current("b", after, False, None, 4)]
        ):
            assert len(page) <= 4
            seen += page
            last = page[-1][0]
        assert seen == [*((k, i + 1) for i, k in enumerate(keys)), ("new", 99)]

    run(scenario())


def test_set_version_attrs_of_the_current_or_a_noncurrent_version(backend: MetaBackend) -> None:
    async def scenario() -> None:
        cur = obj("b", "k", seq=900, version_id="c")
        old = obj("b", "k", seq=100, version_id="o", tags={"x": "1"})
        await setup(backend, "b", objects=(cur,))
        await write(backend, lambda tx: tx.put_version(old, False, 1.0))

        async def current() -> ObjectRecord | None:
            return await read(backend, lambda r: r.get_object("b", "k"))

        assert await write(backend, lambda tx: tx.set_version_attrs("b", "k", 900, True, tags={"a": "b"}))
        assert await current() == dataclasses.replace(cur, tags={"a": "b"})
        assert await write(backend, lambda tx: tx.set_version_attrs("b", "k", 900, True, retention=("GOVERNANCE", 5e9)))
        assert await current() == dataclasses.replace(cur, tags={"a": "b"}, lock=Lock("GOVERNANCE", 5e9, False))
        assert await write(backend, lambda tx: tx.set_version_attrs("b", "k", 900, True, legal_hold=True))
        assert await current() == dataclasses.replace(cur, tags={"a": "b"}, lock=Lock("GOVERNANCE", 5e9, True))
        ref = await read(backend, lambda r: r.object_ref("b", "k"))
        assert ref is not None and (ref.lock_mode, ref.lock_until, ref.legal_hold) == ("GOVERNANCE", 5e9, True)
        assert await write(backend, lambda tx: tx.set_version_attrs("b", "k", 900, True, retention=None))
        assert await current() == dataclasses.replace(cur, tags={"a": "b"}, lock=Lock(None, None, True))
        assert await write(backend, lambda tx: tx.set_version_attrs("b", "k", 900, True, legal_hold=False, tags=None))
        assert await current() == cur
        assert await write(backend, lambda tx: tx.set_version_attrs("b", "k", 900, True))  # nothing to set: found
        # the noncurrent one, its tags kept
        assert await write(backend, lambda tx: tx.set_version_attrs("b", "k", 100, False, legal_hold=True))
        assert await read(backend, lambda r: r.version("b", "k", 100)) == dataclasses.replace(
            old, lock=Lock(None, None, True)
        )
        assert await current() == cur
        # no such version: nothing changes
        for seq, is_current in ((100, True), (900, False), (5, False)):
            assert not await write(
                backend, lambda tx, s=seq, c=is_current: tx.set_version_attrs("b", "k", s, c, tags={"no": "pe"})
            )
        assert not await write(backend, lambda tx: tx.set_version_attrs("b", "nope", 900, True, tags={}))
        assert await current() == cur

    run(scenario())


def test_a_noncurrent_versions_blobs_stay_referenced(backend: MetaBackend) -> None:
    async def scenario() -> None:
        cur = obj("b", "k", blobs=(blob(1, TAG_A),), version_id="v1", seq=10)
        await setup(backend, "b", objects=(cur,))

        def fn(tx: MetaTx) -> None:
            tx.retire_current("b", "k", 5.0)
            tx.put_object(obj("b", "k", blobs=(blob(2, TAG_B),), version_id="v2", seq=20))
            tx.put_version(obj("b", "j", blobs=(blob(3, TAG_B),), seq=3), False, 5.0)
            tx.put_version(marker_of("b", "m", 4), True, 5.0)

        await write(backend, fn)
        everything = {blob(1, TAG_A), blob(2, TAG_B), blob(3, TAG_B)}
        assert await read(backend, lambda r: r.referenced_blobs()) == everything
        assert await read(backend, lambda r: r.referenced_blobs([TAG_A])) == {blob(1, TAG_A)}
        assert await read(backend, lambda r: r.referenced_blobs([TAG_B])) == {blob(2, TAG_B), blob(3, TAG_B)}
        await write(backend, lambda tx: tx.delete_version("b", "k", 10))
        assert await read(backend, lambda r: r.referenced_blobs([TAG_A])) == set()

    run(scenario())


def test_a_completed_upload_keeps_the_version_it_made(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        done = CompletedUpload("e", "sig", {"crc32": "x"}, "0123456789abcdef01234567")

        def fn(tx: MetaTx) -> None:
            tx.put_completed("u1", "b", "k", done, 1.0)
            tx.put_completed("u2", "b", "k", CompletedUpload("e2", "sig2", {}), 1.0)

        await write(backend, fn)
        assert await read(backend, lambda r: r.completed_upload("b", "k", "u1")) == done
        got = await read(backend, lambda r: r.completed_upload("b", "k", "u2"))
        assert got is not None and got.version_id is None

    run(scenario())


def test_a_beat_stamps_the_schema_version_of_the_beating_code(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await write(backend, lambda tx: tx.claim_node("node-a", "dir-1", 1.0))
        await write(backend, lambda tx: tx.claim_node("node-b", "dir-2", 1.0))
        await write(backend, lambda tx: tx.beat("node-a", "x", 1.0, 1.0))
        a, b = await read(backend, lambda r: r.nodes())
        assert isinstance(a.release, int) and a.release >= 5
        assert b.release is None  # never beat: a release from before it was kept, as far as anyone knows

    run(scenario())


def test_the_lifecycle_index_gives_what_is_due_earliest_first_and_moves_and_drops_hints(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        await setup(backend, "c")

        def fill(tx: MetaTx) -> None:
            tx.put_hint(Hint("b", "k1", -5, "current", 30.0))
            tx.put_hint(Hint("b", "k1", -5, "noncurrent", 10.0))  # another kind of the same version: its own row
            tx.put_hint(Hint("b", "ключ", -7, "noncurrent", 20.0))
            tx.put_hint(Hint("c", "up-1", 0, "upload", 5.0))

        await write(backend, fill)
        due = await read(backend, lambda r: r.due_hints(25.0, 10))
        assert [(h.bucket, h.key, h.kind, h.at) for h in due] == [
            ("c", "up-1", "upload", 5.0),
            ("b", "k1", "noncurrent", 10.0),
            ("b", "ключ", "noncurrent", 20.0),
        ]
        assert len(await read(backend, lambda r: r.due_hints(25.0, 2))) == 2
        # the same hint again moves it (an upsert), even to a later time
        await write(backend, lambda tx: tx.put_hint(Hint("b", "k1", -5, "noncurrent", 40.0)))
        assert [h.key for h in await read(backend, lambda r: r.due_hints(25.0, 10))] == ["up-1", "ключ"]
        await write(backend, lambda tx: tx.drop_hint("b", "ключ", -7, "noncurrent"))
        await write(backend, lambda tx: tx.drop_hints("c", ["current"]))  # not its kind: kept
        assert [h.key for h in await read(backend, lambda r: r.due_hints(1e9, 10))] == ["up-1", "k1", "k1"]
        await write(backend, lambda tx: tx.drop_hints("b"))
        assert [h.key for h in await read(backend, lambda r: r.due_hints(1e9, 10))] == ["up-1"]

    run(scenario())


def test_a_noncurrent_version_tells_since_when(backend: MetaBackend) -> None:
    async def scenario() -> None:
        await setup(backend, "b")
        rec = ObjectRecord("b", "k", 1, "e", 2.0, {}, {}, [], "p", b"x", version_id="0" * 23 + "1", seq=7)
        await write(backend, lambda tx: tx.put_version(rec, False, 123.5))
        assert await read(backend, lambda r: r.version_since("b", "k", 7)) == 123.5
        assert await read(backend, lambda r: r.version_since("b", "k", 8)) is None

    run(scenario())


# ---- MemoryMeta's own guarantees (not the protocol's) -----------------------------------------------


def test_memory_snapshot_refuses_use_after_its_function() -> None:
    meta = MemoryMeta()

    async def scenario() -> None:
        await setup(meta, "b", objects=(obj("b", "k"), obj("b", "l")))
        escaped = await meta.read(lambda r: r.scan_objects("b", "", False, None, 10))
        with pytest.raises(RuntimeError):
            next(escaped)
        kept: list[MetaTx] = []
        await meta.write(kept.append)
        with pytest.raises(RuntimeError):
            kept[0].put_object(obj("b", "m"))
        assert await read(meta, lambda r: keys_of(r, "b")) == ["k", "l"]

    run(scenario())


def test_memory_replay_runs_each_write_twice_and_keeps_one() -> None:
    meta = MemoryMeta(replay_writes=True)
    calls: list[int] = []

    def fn(tx: MetaTx) -> int:
        calls.append(1)
        tx.add_usage("b", used=5)
        b = tx.bucket("b")
        assert b is not None
        return b.used

    async def scenario() -> int:
        await setup(meta, "b")
        return await meta.write(fn)

    assert run(scenario()) == 5  # the rehearsal was rolled back: the usage was added once
    assert len(calls) == 2


def _sealed(kid: str) -> str:
    """An `sse` column as store/sse.py writes it (the contract only stores it and reads its key id)."""
    return f'{{"v": 1, "kid": "{kid}", "nonce": "n", "dek": "d-{kid}"}}'


def test_an_encrypted_version_keeps_its_wrapped_key_wherever_it_moves_and_is_counted_per_key_id(
    backend: MetaBackend,
) -> None:
    async def scenario() -> None:
        rec = obj("b", "k", size=10, blobs=("blob-1",), version_id="v1", seq=500, sse=_sealed("k1"))
        inline = obj("b", "i", size=3, sse=_sealed("k2"))
        await setup(backend, "b", objects=(rec, inline, obj("b", "plain")))
        assert await read(backend, lambda r: (r.get_object("b", "k"), r.get_object("b", "i"))) == (rec, inline)
        assert (await read(backend, lambda r: r.get_object("b", "plain"))).sse is None  # type: ignore[union-attr]
        assert await read(backend, lambda r: r.sse_kids()) == {"k1": 1, "k2": 1}
        await write(backend, lambda tx: tx.retire_current("b", "k", 77.0))
        assert await read(backend, lambda r: r.version("b", "k", 500)) == rec
        await write(backend, lambda tx: tx.insert_upload(dataclasses.replace(upl("u1"), sse=_sealed("k1"))))
        await write(backend, lambda tx: tx.insert_upload(upl("u2")))
        assert await read(backend, lambda r: r.sse_kids()) == {"k1": 2, "k2": 1}
        got = await read(backend, lambda r: r.upload("u1"))
        assert got is not None and got.sse == _sealed("k1")
        assert (await read(backend, lambda r: r.upload("u2"))).sse is None  # type: ignore[union-attr]
        await write(backend, lambda tx: tx.promote_version("b", "k", 500))
        assert await read(backend, lambda r: r.get_object("b", "k")) == rec
        await write(backend, lambda tx: tx.delete_upload("u1"))
        assert await read(backend, lambda r: r.sse_kids()) == {"k1": 1, "k2": 1}
        await write(backend, lambda tx: tx.set_bucket_attr("b", "sse_default", "AES256"))
        assert (await read(backend, lambda r: r.bucket("b"))).sse_default == "AES256"  # type: ignore[union-attr]
        await write(backend, lambda tx: tx.set_bucket_attr("b", "sse_default", None))
        assert (await read(backend, lambda r: r.bucket("b"))).sse_default is None  # type: ignore[union-attr]

    run(scenario())


def test_sealed_rows_are_paged_per_key_id_and_resealed_only_if_unchanged(backend: MetaBackend) -> None:
    async def scenario() -> None:
        cur = obj("b", "k", size=10, blobs=("blob-1",), version_id="v2", seq=600, sse=_sealed("k1"))
        old = obj("b", "k", size=10, blobs=("blob-0",), version_id="v1", seq=500, sse=_sealed("k1"))
        await setup(backend, "b", objects=(old,))
        await write(backend, lambda tx: tx.retire_current("b", "k", 77.0))
        await write(backend, lambda tx: tx.put_object(cur))
        await write(backend, lambda tx: tx.put_object(obj("b", "other", sse=_sealed("k2"))))
        await write(backend, lambda tx: tx.insert_upload(dataclasses.replace(upl("u1"), sse=_sealed("k1"))))
        rows = await read(backend, lambda r: r.sealed_rows("k1", 10))
        assert sorted((x.table, x.bucket, x.key, x.ident, x.sse) for x in rows) == [
            ("objects", "b", "k", None, _sealed("k1")),
            ("uploads", "b", "k", "u1", _sealed("k1")),
            ("versions", "b", "k", -500, _sealed("k1")),
        ]
        assert len(await read(backend, lambda r: r.sealed_rows("k1", 2))) == 2
        assert await read(backend, lambda r: r.sealed_rows("k9", 10)) == []
        # a row that changed since it was read keeps what it holds now
        stale = dataclasses.replace(rows[0], sse=_sealed("k0"))
        assert not await write(backend, lambda tx: tx.reseal(stale, _sealed("k3"), "k3"))
        assert await write(backend, lambda tx: [tx.reseal(x, _sealed("k3"), "k3") for x in rows]) == [True] * 3
        assert await read(backend, lambda r: r.sse_kids()) == {"k2": 1, "k3": 3}
        got = await read(backend, lambda r: (r.get_object("b", "k"), r.version("b", "k", 500), r.upload("u1")))
        assert [x.sse if x is not None else None for x in got] == [_sealed("k3")] * 3
        assert got[0] == dataclasses.replace(cur, sse=_sealed("k3"))  # nothing else of the row changed
        assert not await write(backend, lambda tx: tx.reseal(rows[0], _sealed("k4"), "k4"))  # already done

    run(scenario())
