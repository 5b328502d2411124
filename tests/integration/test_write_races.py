"""Every pair of object writes racing on one key (and, where it matters, one bucket).

Two concurrent 200s cannot be ordered from outside, so either may win; but the key must then hold
exactly one acknowledged version (bytes read back whole, its ETag and its metadata, never a mix),
or be absent when an acknowledged delete may have come last. No request ever gets a 5xx, no blob
is leaked or lost, and `tunnelmesh storage verify` agrees with the counters.

Each race starts both requests from a barrier and sweeps one's start over a few milliseconds, round
after round, so that some rounds interleave inside the commits. Every round's outcome is checked,
whatever the interleaving was; which interleavings occurred is printed, never asserted.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import math
import os
import random
import re
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import Coordinator, assert_blobs_accounted_for, blob_files, md5_etag, outcome, storage_verify_ok

from tunnelmesh.store.content import INLINE_MAX
from tunnelmesh.store.sqlite_meta import SqliteTx

ROUNDS = 30
SWEEP = 25  # start offsets per sweep, walked round after round


# ---- versions: what a write stored, to recognise it when read back ---------------------------


@dataclass(frozen=True)
class Version:
    tag: str  # stored as x-amz-meta-w, so that a mix of one write's bytes and another's metadata shows
    body: bytes
    etag: str  # as S3 returns it, quoted

    def seen(self) -> tuple[bytes, str, str]:
        return self.body, self.etag, self.tag


def version(tag: str, size: int) -> Version:
    body = os.urandom(size)
    return Version(tag, body, f'"{hashlib.md5(body).hexdigest()}"')


def inline_size() -> int:
    return random.randint(1, INLINE_MAX)


def blob_size() -> int:
    return random.randint(INLINE_MAX + 1, 160 * 1024)


SIZES: dict[str, Callable[[], int]] = {"inline": inline_size, "blob": blob_size}


def sized(kind: str, i: int) -> int:
    """`kind` inline, blob, or mixed (alternating by round)."""
    if kind == "mixed":
        kind = ("inline", "blob")[i % 2]
    return SIZES[kind]()


def put(s3, bucket: str, key: str, v: Version, **kw: Any) -> Callable[[], Any]:
    return lambda: s3.put_object(Bucket=bucket, Key=key, Body=v.body, Metadata={"w": v.tag}, **kw)


def read_back(s3, bucket: str, key: str) -> tuple[bytes, str, str] | None:
    """(body, ETag, writer tag) of the key, read whole; None when it does not exist."""
    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchKey", e.response
        return None
    body = r["Body"].read()
    assert len(body) == r["ContentLength"], key
    return body, r["ETag"], r["Metadata"].get("w", "")


def assert_one_of(got: tuple[bytes, str, str] | None, allowed: list[Version | None], where: object) -> Version | None:
    """The key holds exactly one of `allowed` (None: absent); returns which."""
    for v in allowed:
        if (v is None and got is None) or (v is not None and got == v.seen()):
            return v

    def show(x: tuple[bytes, str, str] | None) -> object:
        return x and (f"{len(x[0])} bytes", x[1], f"w={x[2]}")

    raise AssertionError(f"{where}: the key holds {show(got)}, none of {[show(v and v.seen()) for v in allowed]}")


# ---- racing ---------------------------------------------------------------------------------


def offset(i: int, sweep: tuple[float, float]) -> float:
    """Round i's start offset, in seconds: `sweep` (in ms) walked in SWEEP steps. A positive offset
    starts the first request later, a negative one the second. Sweeps are centred on where the two
    requests' commits meet (a quick request starts later than a slow one)."""
    lo, hi = sweep
    return (lo + (hi - lo) * (i % SWEEP) / (SWEEP - 1)) / 1000


def race(
    pool: ThreadPoolExecutor, a: Callable[[], Any], b: Callable[[], Any], i: int, sweep: tuple[float, float] = (-3, 3)
) -> tuple[tuple, tuple]:
    """Run a and b from one barrier, one of them `offset(i, sweep)` later."""
    barrier = threading.Barrier(2)
    shift = offset(i, sweep)

    def go(fn: Callable[[], Any], delay: float) -> tuple[str, Any]:
        barrier.wait()
        time.sleep(delay)
        return outcome(fn)

    fa, fb = pool.submit(go, a, max(shift, 0.0)), pool.submit(go, b, max(-shift, 0.0))
    return fa.result(), fb.result()


def race_all(pool: ThreadPoolExecutor, fns: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    barrier = threading.Barrier(len(fns))

    def go(fn: Callable[[], Any]) -> tuple[str, Any]:
        barrier.wait()
        return outcome(fn)

    return [f.result() for f in [pool.submit(go, fn) for fn in fns]]


# ---- the coordinator, its admin API and its data dir -----------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as p:
        yield p


@pytest.fixture(scope="module")
def twin(coordinator: Coordinator):
    """A second client, so the two racing requests travel on their own connections."""
    return coordinator.client()


@pytest.fixture(scope="module")
def wide(coordinator: Coordinator):
    return coordinator.client(max_pool_connections=16)


def admin(c: Coordinator, method: str, path: str, doc: object = None) -> tuple[int, Any]:
    """One admin API call on its own connection: (status, JSON document)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
    try:
        body = None if doc is None else json.dumps(doc).encode()
        headers = {"authorization": f"Bearer {c.token}", "content-type": "application/json"}
        conn.request(method, f"/api/{path}", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        conn.close()


def new_bucket(s3, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def read_only_meta(c: Coordinator) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{c.data_dir / 'meta.sqlite3'}?mode=ro", uri=True, isolation_level=None)


def assert_store_consistent(c: Coordinator) -> None:
    """With no request in flight: every blob the metadata names is on disk, every other blob on disk
    is queued to be freed (none leaked), no row outlives its bucket, the counters recount exactly,
    and nothing was logged as crashing."""
    conn = read_only_meta(c)
    try:
        m = SqliteTx(conn)
        # references, then the queue, then the files: a reaper that unlinks and forgets a queued
        # blob meanwhile removes it from the files too, so nothing is seen as leaked that is not
        refs = m.referenced_blobs()
        queued = set(m.freed_before(math.inf, None))
        strays = conn.execute(
            "SELECT 'object', bucket, key FROM objects WHERE bucket NOT IN (SELECT name FROM buckets) "
            "UNION ALL SELECT 'upload', bucket, key FROM uploads WHERE bucket NOT IN (SELECT name FROM buckets)"
        ).fetchall()
    finally:
        conn.close()
    files = blob_files(c.data_dir)
    assert not strays, f"rows of deleted buckets: {strays[:5]}"
    # a blob is freed only once no row names it (a noncurrent version's row included)
    doomed = refs & queued
    assert not doomed, f"{len(doomed)} blobs named by the metadata are queued to be freed: {sorted(doomed)[:5]}"
    missing = refs - files
    assert not missing, f"{len(missing)} blobs named by the metadata are gone: {sorted(missing)[:5]}"
    leaked = files - refs - queued
    assert not leaked, f"{len(leaked)} blobs neither named nor queued to be freed: {sorted(leaked)[:5]}"
    storage_verify_ok(c)
    log = c.log()
    assert "Traceback" not in log, log[-3000:]


# ---- PutObject against PutObject, DeleteObject, DeleteObjects, CopyObject ---------------------


# an inline put commits well before a blob-sized one started with it: it starts later
PUT_SWEEPS = {
    ("inline", "inline"): (-3, 3),
    ("blob", "blob"): (-3, 3),
    ("inline", "blob"): (-2, 10),
    ("mixed", "mixed"): (-3, 3),
}


@pytest.mark.parametrize("kinds", list(PUT_SWEEPS))
def test_two_puts_leave_exactly_one_of_them(coordinator, s3, twin, pool, bucket, kinds) -> None:
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        old = None if i % 3 == 0 else version("old", sized("mixed", i))  # absent, inline or blob before
        if old:
            put(s3, bucket, key, old)()
        a, b = version("a", sized(kinds[0], i)), version("b", sized(kinds[1], i + 1))
        (ca, ra), (cb, rb) = race(pool, put(s3, bucket, key, a), put(twin, bucket, key, b), i, PUT_SWEEPS[kinds])
        assert (ca, cb) == ("ok", "ok"), (i, ca, cb)
        assert (ra["ETag"], rb["ETag"]) == (a.etag, b.etag), i
        seen[assert_one_of(read_back(s3, bucket, key), [a, b], i).tag] += 1
    assert_store_consistent(coordinator)
    print(f"winners: {dict(seen)}")


@pytest.mark.parametrize("batch", [False, True], ids=["DeleteObject", "DeleteObjects"])
def test_put_and_delete_leave_the_put_or_nothing(coordinator, s3, twin, pool, bucket, batch) -> None:
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        put(s3, bucket, key, version("old", sized("mixed", i + 1)))()
        others = [f"other-{i}-{n}" for n in range(3)] if batch else []
        for o in others:
            s3.put_object(Bucket=bucket, Key=o, Body=os.urandom(inline_size() if i % 2 else blob_size()))
        new = version("new", sized("mixed", i))
        if batch:
            doc = {"Objects": [{"Key": k} for k in [others[0], key, *others[1:]]]}
            delete = lambda d=doc: twin.delete_objects(Bucket=bucket, Delete=d)  # noqa: E731
        else:
            delete = lambda k=key: twin.delete_object(Bucket=bucket, Key=k)  # noqa: E731
        (cp, _), (cd, rd) = race(pool, put(s3, bucket, key, new), delete, i, (-8, 2))
        assert (cp, cd) == ("ok", "ok"), (i, cp, cd)
        if batch:
            assert "Errors" not in rd, (i, rd["Errors"])
            assert sorted(d["Key"] for d in rd["Deleted"]) == sorted([key, *others]), i
            for o in others:
                assert read_back(s3, bucket, o) is None, (i, o)
        # the old version was replaced by one acknowledged write or the other: never still there
        seen[getattr(assert_one_of(read_back(s3, bucket, key), [new, None], i), "tag", "absent")] += 1
    assert_store_consistent(coordinator)
    print(f"final states: {dict(seen)}")


def test_put_and_copy_onto_the_key_leave_exactly_one_of_them(coordinator, s3, twin, pool, bucket) -> None:
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key, src = f"k{i}", f"src-{i}"
        put(s3, bucket, key, version("old", sized("mixed", i)))()
        source = version("copied", sized("mixed", i // 2))
        put(s3, bucket, src, source)()
        new = version("new", sized("mixed", i + i // 2))
        copy = lambda k=key, sk=src: twin.copy_object(  # noqa: E731
            Bucket=bucket, Key=k, CopySource={"Bucket": bucket, "Key": sk}
        )
        (cp, _), (cc, rc) = race(pool, put(s3, bucket, key, new), copy, i)
        assert (cp, cc) == ("ok", "ok"), (i, cp, cc)
        assert rc["CopyObjectResult"]["ETag"] == source.etag, i
        seen[assert_one_of(read_back(s3, bucket, key), [new, source], i).tag] += 1
        assert_one_of(read_back(s3, bucket, src), [source], i)
    assert_store_consistent(coordinator)
    print(f"winners: {dict(seen)}")


# ---- CopyObject from the key while the key changes -------------------------------------------


@pytest.mark.parametrize("change", ["delete", "overwrite"])
def test_copy_from_a_changing_key_copies_one_whole_version(coordinator, s3, twin, pool, bucket, change) -> None:
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        src, dst = f"src-{i}", f"dst-{i}"
        old = version("old", sized("mixed", i))
        put(s3, bucket, src, old)()
        new = version("new", sized("mixed", i // 2))
        copy = lambda sk=src, dk=dst: s3.copy_object(  # noqa: E731
            Bucket=bucket, Key=dk, CopySource={"Bucket": bucket, "Key": sk}
        )
        if change == "delete":
            other = lambda sk=src: twin.delete_object(Bucket=bucket, Key=sk)  # noqa: E731
        else:
            other = put(twin, bucket, src, new)
        (cc, rc), (co, _) = race(pool, copy, other, i, (-2, 8))
        assert co == "ok", (i, co)
        if change == "delete":
            # a copy that found no source copied nothing; one that found it copied it whole
            assert cc in ("ok", "NoSuchKey"), (i, cc)
            assert read_back(s3, bucket, src) is None, i
            got = assert_one_of(read_back(s3, bucket, dst), [old] if cc == "ok" else [None], (i, cc))
        else:
            assert cc == "ok", (i, cc)
            assert_one_of(read_back(s3, bucket, src), [new], i)
            got = assert_one_of(read_back(s3, bucket, dst), [old, new], i)
        if cc == "ok":
            assert got is not None and rc["CopyObjectResult"]["ETag"] == got.etag, i
        seen[f"{cc}:{got.tag if got else 'absent'}"] += 1
    assert_store_consistent(coordinator)
    print(f"copy outcomes: {dict(seen)}")


def test_copy_onto_itself_and_a_put_leave_one_whole_version(coordinator, s3, twin, pool, bucket) -> None:
    """A self-copy replacing the metadata keeps the bytes it read with the metadata it set: the key
    ends with (old bytes, new metadata) or the put, never the old metadata or a mix."""
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        old = version("old", sized("mixed", i))
        put(s3, bucket, key, old)()
        recopied = Version("recopied", old.body, old.etag)
        new = version("new", sized("mixed", i // 2))
        copy = lambda k=key: twin.copy_object(  # noqa: E731
            Bucket=bucket,
            Key=k,
            CopySource={"Bucket": bucket, "Key": k},
            MetadataDirective="REPLACE",
            Metadata={"w": "recopied"},
        )
        (cp, _), (cc, rc) = race(pool, put(s3, bucket, key, new), copy, i)
        assert cp == "ok", (i, cp)
        # the copy reads the source before it writes: having found the put's version, it copies that
        assert cc == "ok", (i, cc)
        allowed = [new, recopied, Version("recopied", new.body, new.etag)]
        got = assert_one_of(read_back(s3, bucket, key), allowed, i)
        assert got is not None
        if got.tag == "recopied":
            assert rc["CopyObjectResult"]["ETag"] == got.etag, i
        seen[f"{got.tag}:{'old' if got.body == old.body else 'new'} bytes"] += 1
    assert_store_consistent(coordinator)
    print(f"final states: {dict(seen)}")


# ---- conditional writes ---------------------------------------------------------------------


def guard(condition: str, old: Version) -> dict[str, str]:
    """The put arguments of a write conditional on `old` being there (IfMatch) or nothing (IfNoneMatch)."""
    return {"IfMatch": old.etag} if condition == "IfMatch" else {"IfNoneMatch": "*"}


@pytest.mark.parametrize("condition", ["IfNoneMatch", "IfMatch"])
def test_two_conditional_writes_have_exactly_one_winner(coordinator, s3, twin, pool, bucket, condition) -> None:
    """Two creates with If-None-Match: *, or two compare-and-swaps with If-Match on the same ETag:
    the first to commit wins, the other finds the key changed and gets 412."""
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        old = version("old", sized("mixed", i + 1))
        if condition == "IfMatch":
            put(s3, bucket, key, old)()
        a, b = version("a", sized("mixed", i)), version("b", sized("mixed", i // 2))
        cond = guard(condition, old)
        (ca, _), (cb, _) = race(pool, put(s3, bucket, key, a, **cond), put(twin, bucket, key, b, **cond), i)
        assert sorted((ca, cb)) == ["PreconditionFailed", "ok"], (i, ca, cb)
        winner = a if ca == "ok" else b
        assert_one_of(read_back(s3, bucket, key), [winner], i)
        seen[winner.tag] += 1
    assert_store_consistent(coordinator)
    print(f"winners: {dict(seen)}")


@pytest.mark.parametrize("condition", ["IfMatch", "IfNoneMatch"])
def test_a_conditional_write_never_overwrites_a_racing_put(coordinator, s3, twin, pool, bucket, condition) -> None:
    """A conditional write holds only against the version it names (If-Match: the old ETag) or no
    version (If-None-Match: *). So if it succeeded it committed before the plain put, and the plain
    put's bytes are the last either way: the key ends holding them in every round."""
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        old = version("old", sized("mixed", i + 1))
        if condition == "IfMatch":
            put(s3, bucket, key, old)()
        guarded, plain = version("guarded", sized("mixed", i)), version("plain", sized("mixed", i // 2))
        (cg, _), (cp, _) = race(
            pool, put(s3, bucket, key, guarded, **guard(condition, old)), put(twin, bucket, key, plain), i
        )
        assert cp == "ok", (i, cp)
        assert cg in ("ok", "PreconditionFailed"), (i, cg)
        assert_one_of(read_back(s3, bucket, key), [plain], (i, cg))
        seen[cg] += 1
    assert_store_consistent(coordinator)
    print(f"conditional write outcomes: {dict(seen)}")


@pytest.mark.parametrize("condition", ["IfMatch", "IfNoneMatch"])
def test_a_conditional_write_racing_a_delete_holds_only_against_what_it_saw(
    coordinator, s3, twin, pool, bucket, condition
) -> None:
    """The key exists. If-Match on its ETag succeeds only before the delete (which then removes it)
    and fails with NoSuchKey after: the key ends absent every time. If-None-Match: * succeeds only
    after the delete, so the key ends holding the conditional write exactly when it succeeded."""
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        old = version("old", sized("mixed", i + 1))
        put(s3, bucket, key, old)()
        guarded = version("guarded", sized("mixed", i))
        delete = lambda k=key: twin.delete_object(Bucket=bucket, Key=k)  # noqa: E731
        (cg, _), (cd, _) = race(pool, put(s3, bucket, key, guarded, **guard(condition, old)), delete, i, (-6, 2))
        assert cd == "ok", (i, cd)
        got = read_back(s3, bucket, key)
        if condition == "IfMatch":
            assert cg in ("ok", "NoSuchKey"), (i, cg)
            assert_one_of(got, [None], (i, cg))
        else:
            assert cg in ("ok", "PreconditionFailed"), (i, cg)
            assert_one_of(got, [guarded] if cg == "ok" else [None], (i, cg))
        seen[cg] += 1
    assert_store_consistent(coordinator)
    print(f"conditional write outcomes: {dict(seen)}")


# ---- a multipart Complete against a put ------------------------------------------------------


def test_complete_and_put_leave_exactly_one_of_them(coordinator, s3, twin, pool, bucket) -> None:
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        if i % 2:
            put(s3, bucket, key, version("old", sized("mixed", i // 2)))()
        part = os.urandom(64 * 1024 + i)
        assembled = Version("assembled", part, md5_etag([part]))
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"w": "assembled"})["UploadId"]
        e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=part)["ETag"]
        doc = {"Parts": [{"PartNumber": 1, "ETag": e1}]}
        complete = lambda k=key, u=up, d=doc: s3.complete_multipart_upload(  # noqa: E731
            Bucket=bucket, Key=k, UploadId=u, MultipartUpload=d
        )
        new = version("new", sized("mixed", i // 2))
        (cc, rc), (cp, _) = race(pool, complete, put(twin, bucket, key, new), i)
        assert (cc, cp) == ("ok", "ok"), (i, cc, cp)
        assert rc["ETag"] == assembled.etag, i
        seen[assert_one_of(read_back(s3, bucket, key), [assembled, new], i).tag] += 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert_store_consistent(coordinator)
    print(f"winners: {dict(seen)}")


# ---- a put against deleting its bucket -------------------------------------------------------


def bucket_state(s3, name: str) -> list[str] | None:
    """The keys listed in the bucket, or None when HeadBucket and ListObjects both say it is gone."""
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        code, _ = outcome(lambda: s3.list_objects_v2(Bucket=name))
        assert code == "NoSuchBucket", (name, code)
        return None
    return [o["Key"] for o in s3.list_objects_v2(Bucket=name).get("Contents", [])]


@pytest.mark.parametrize("writer", ["PutObject", "CopyObject", "CreateMultipartUpload"])
def test_a_write_and_delete_bucket_store_it_or_refuse_it(coordinator, s3, twin, pool, bucket, writer) -> None:
    """DeleteBucket refuses a bucket holding an object, and a write into a deleted bucket fails:
    exactly one of the two succeeds, and HeadBucket, ListObjects and GetObject agree on which. An
    upload does not keep its bucket (it is aborted with it, as on AWS): either the upload is refused,
    or both succeed and the upload is gone with the bucket."""
    seen: Counter[tuple[str, str]] = Counter()
    for i in range(ROUNDS):
        name = new_bucket(s3, "del")
        v = version("v", sized("mixed", i))
        if writer == "PutObject":
            write = put(s3, name, "k", v)
        elif writer == "CopyObject":
            put(s3, bucket, f"src-{i}", v)()
            write = lambda n=name, sk=f"src-{i}": s3.copy_object(  # noqa: E731
                Bucket=n, Key="k", CopySource={"Bucket": bucket, "Key": sk}
            )
        else:
            write = lambda n=name: s3.create_multipart_upload(Bucket=n, Key="k")  # noqa: E731
        (cw, rw), (cd, _) = race(pool, write, lambda n=name: twin.delete_bucket(Bucket=n), i, (-6, 2))
        seen[(cw, cd)] += 1
        if writer == "CreateMultipartUpload":
            assert (cw, cd) in (("ok", "ok"), ("NoSuchBucket", "ok")), (i, cw, cd)
            assert bucket_state(s3, name) is None, i
            if cw == "ok":
                s3.create_bucket(Bucket=name)
                assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == [], i
                code, _ = outcome(lambda n=name, u=rw["UploadId"]: s3.list_parts(Bucket=n, Key="k", UploadId=u))
                assert code == "NoSuchUpload", (i, code)
            continue
        assert (cw, cd) in (("ok", "BucketNotEmpty"), ("NoSuchBucket", "ok")), (i, cw, cd)
        if cw == "NoSuchBucket":
            assert bucket_state(s3, name) is None, i
        else:
            assert bucket_state(s3, name) == ["k"], i
            assert_one_of(read_back(s3, name, "k"), [v], i)
    assert_store_consistent(coordinator)
    print(f"(write, delete bucket) outcomes: {dict(seen)}")


def test_put_and_forced_bucket_delete_leave_no_object_in_a_deleted_bucket(coordinator, s3, twin, pool) -> None:
    """A forced delete (admin API) empties the bucket, then deletes it. A put landing in between
    makes the delete fail with BucketNotEmpty (409) and keeps the object; otherwise the bucket is
    gone with everything in it, the acknowledged put included when the delete came after it."""
    seen: Counter[tuple[str, int]] = Counter()
    for i in range(ROUNDS):
        name = new_bucket(s3, "force")
        for n in range(3):
            s3.put_object(Bucket=name, Key=f"pre-{n}", Body=os.urandom(sized("mixed", n)))
        v = version("v", sized("mixed", i))
        (cp, _), (cd, (status, doc)) = race(
            pool, put(s3, name, "k", v), lambda n=name: admin(coordinator, "DELETE", f"buckets/{n}?force=true"), i
        )
        seen[(cp, status)] += 1
        assert cp in ("ok", "NoSuchBucket") and cd == "ok", (i, cp, cd)
        state = bucket_state(s3, name)
        if status == 200:
            assert state is None, i
        else:
            assert (status, doc["error"]) == (409, "BucketNotEmpty"), (i, status, doc)
            assert cp == "ok" and state == ["k"], (i, cp, state)
            assert_one_of(read_back(s3, name, "k"), [v], i)
    assert_store_consistent(coordinator)
    print(f"(put, forced delete status) outcomes: {dict(seen)}")


# ---- quotas under concurrent puts -----------------------------------------------------------

KIB = 1024


def quota_bucket(c: Coordinator, s3, quota: int) -> str:
    name = new_bucket(s3, "quota")
    status, doc = admin(c, "PUT", f"buckets/{name}/quota", {"quota": quota})
    assert status == 200, doc
    return name


def used(c: Coordinator, name: str) -> dict:
    status, doc = admin(c, "GET", f"buckets/{name}/usage")
    assert status == 200, doc
    return doc


def test_concurrent_puts_past_a_quota_admit_exactly_what_fits(coordinator, wide, pool) -> None:
    """Six new keys, together far past the quota. Usage only grows, so a put refused for want of
    room still does not fit in the final usage; those acknowledged fit and are counted exactly."""
    quota = 200 * KIB
    tally: Counter[int] = Counter()
    for i in range(ROUNDS // 2):
        name = quota_bucket(coordinator, wide, quota)
        sizes = [20 * KIB, INLINE_MAX, 50 * KIB, 70 * KIB, 90 * KIB, 120 * KIB]
        random.shuffle(sizes)
        vs = [version(f"p{n}", s) for n, s in enumerate(sizes)]
        results = race_all(pool, [put(wide, name, f"k{n}", v) for n, v in enumerate(vs)])
        codes = [code for code, _ in results]
        assert set(codes) <= {"ok", "QuotaExceeded"}, (i, codes)
        stored = [v for v, code in zip(vs, codes, strict=True) if code == "ok"]
        total = sum(len(v.body) for v in stored)
        doc = used(coordinator, name)
        assert (doc["used"], doc["objects"]) == (total, len(stored)), (i, doc, total)
        assert total <= quota, i
        for n, (v, code) in enumerate(zip(vs, codes, strict=True)):
            if code == "ok":
                assert_one_of(read_back(wide, name, f"k{n}"), [v], i)
            else:
                assert total + len(v.body) > quota, (i, n, len(v.body), total)
                assert read_back(wide, name, f"k{n}") is None, (i, n)
        tally[len(stored)] += 1
    assert_store_consistent(coordinator)
    print(f"puts admitted per round: {dict(tally)}")


def test_concurrent_overwrites_at_a_quota_admit_every_size_that_fits(coordinator, wide, pool) -> None:
    """One key, overwritten by four puts at once in a bucket with a quota. The bucket holds only that
    key, so whichever version is current, a put fits exactly when its own size is within the quota:
    every such put succeeds, every larger one is refused, and the usage is the final version's size."""
    quota = 100 * KIB
    for i in range(ROUNDS // 2):
        name = quota_bucket(coordinator, wide, quota)
        put(wide, name, "k", version("old", inline_size()))()
        sizes = [sized("mixed", i), 90 * KIB, quota, quota + 1 + i * KIB]
        random.shuffle(sizes)
        vs = [version(f"p{n}", s) for n, s in enumerate(sizes)]
        codes = [code for code, _ in race_all(pool, [put(wide, name, "k", v) for v in vs])]
        for v, code in zip(vs, codes, strict=True):
            assert code == ("ok" if len(v.body) <= quota else "QuotaExceeded"), (i, len(v.body), code)
        stored = [v for v, code in zip(vs, codes, strict=True) if code == "ok"]
        got = assert_one_of(read_back(wide, name, "k"), stored, i)
        assert got is not None
        doc = used(coordinator, name)
        assert (doc["used"], doc["objects"]) == (len(got.body), 1), (i, doc)
    assert_store_consistent(coordinator)


# ---- under versioning: every write keeps what it replaced --------------------------------------

MARKER = "delete marker"  # what a version read by its id is when it is a delete marker
# how a write while suspended may answer its (null) version id: AWS's PutObject sample for a suspended
# bucket has no x-amz-version-id; "null" names the same version
NULL_ANSWERS = (None, "null")
VERSION_ID = re.compile(r"[0-9a-f]{24}")


def enable(s3, bucket: str, state: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": state})


def by_id(s3, bucket: str, key: str, vid: str) -> tuple[bytes, str, str] | str | None:
    """The version `vid` read by its id: (body, ETag, writer tag), MARKER, or None when it is not there."""
    try:
        r = s3.get_object(Bucket=bucket, Key=key, VersionId=vid)
    except ClientError as e:
        status, h = e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["ResponseMetadata"]["HTTPHeaders"]
        if status == 405:
            assert (h.get("x-amz-delete-marker"), h.get("x-amz-version-id")) == ("true", vid), h
            return MARKER
        assert e.response["Error"]["Code"] == "NoSuchVersion", e.response
        return None
    assert r["VersionId"] == vid, (vid, r["VersionId"])
    body = r["Body"].read()
    assert len(body) == r["ContentLength"], (key, vid)
    return body, r["ETag"], r["Metadata"].get("w", "")


def current(s3, bucket: str, key: str) -> tuple[str | None, tuple[bytes, str, str] | str | None]:
    """What a read without a version id finds: (its version id, as by_id reads it); (marker id, MARKER)
    when the newest version is a delete marker; (None, None) when the key has no version at all."""
    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchKey", e.response
        h = e.response["ResponseMetadata"]["HTTPHeaders"]
        if h.get("x-amz-delete-marker") == "true":
            return h["x-amz-version-id"], MARKER
        return None, None
    body = r["Body"].read()
    assert len(body) == r["ContentLength"], key
    return r.get("VersionId"), (body, r["ETag"], r["Metadata"].get("w", ""))


def put_id(resp: dict) -> str:
    vid = resp["VersionId"]
    assert VERSION_ID.fullmatch(vid), vid
    return vid


def assert_usage(c: Coordinator, name: str, objects: int, current_used: int, noncurrent: list[int]) -> None:
    """The bucket's counters: `objects` current ones of `current_used` bytes, the noncurrent versions and
    delete markers of the sizes `noncurrent` (a marker: 0)."""
    doc = used(c, name)
    got = (doc["objects"], doc["current_used"], doc["noncurrent_versions"], doc["noncurrent_used"])
    assert got == (objects, current_used, len(noncurrent), sum(noncurrent)), (got, doc)
    assert doc["used"] == current_used + sum(noncurrent), doc


def test_two_puts_under_versioning_keep_both_versions(coordinator, s3, twin, pool, bucket) -> None:
    """Both racing puts make a version: both ids read back their own bytes, the newer id is the current
    version and the other is kept as noncurrent, and so is the version they both replaced."""
    enable(s3, bucket)
    seen: Counter[str] = Counter()
    noncurrent: list[int] = []
    current_used = 0
    for i in range(ROUNDS):
        key = f"k{i}"
        old = None if i % 3 == 0 else version("old", sized("mixed", i))
        old_id = put_id(put(s3, bucket, key, old)()) if old else None
        a, b = version("a", sized("mixed", i)), version("b", sized("mixed", i + 1))
        (ca, ra), (cb, rb) = race(pool, put(s3, bucket, key, a), put(twin, bucket, key, b), i)
        assert (ca, cb) == ("ok", "ok"), (i, ca, cb)
        ida, idb = put_id(ra), put_id(rb)
        assert ida != idb and old_id not in (ida, idb), (i, ida, idb, old_id)
        assert (by_id(s3, bucket, key, ida), by_id(s3, bucket, key, idb)) == (a.seen(), b.seen()), i
        if old and old_id:
            assert by_id(s3, bucket, key, old_id) == old.seen(), i
            assert old_id < min(ida, idb), (i, old_id, ida, idb)  # both replaced it: both are newer
        newer, older = (a, b) if ida > idb else (b, a)
        assert current(s3, bucket, key) == (max(ida, idb), newer.seen()), i
        current_used += len(newer.body)
        noncurrent += [len(older.body)] + ([len(old.body)] if old else [])
        seen[newer.tag] += 1
    assert_usage(coordinator, bucket, ROUNDS, current_used, noncurrent)
    assert_store_consistent(coordinator)
    print(f"current after the race: {dict(seen)}")


def test_two_puts_while_suspended_leave_one_null_version(coordinator, s3, twin, pool, bucket) -> None:
    """While versioning is suspended both puts write the null version: one replaces the other (its
    blobs freed), the null version they replaced is gone, and a version with an id is kept."""
    seen: Counter[str] = Counter()
    noncurrent: list[int] = []
    current_used = 0
    for i in range(ROUNDS):
        key = f"k{i}"
        # before: nothing, a version with an id (written while Enabled), or a null version
        enable(s3, bucket, "Enabled" if i % 3 == 1 else "Suspended")
        old = None if i % 3 == 0 else version("old", sized("mixed", i))
        old_id = None
        if old:
            answer = put(s3, bucket, key, old)()
            old_id = put_id(answer) if i % 3 == 1 else "null"
        enable(s3, bucket, "Suspended")
        a, b = version("a", sized("mixed", i)), version("b", sized("mixed", i + 1))
        (ca, ra), (cb, rb) = race(pool, put(s3, bucket, key, a), put(twin, bucket, key, b), i)
        assert (ca, cb) == ("ok", "ok"), (i, ca, cb)
        assert ra.get("VersionId") in NULL_ANSWERS and rb.get("VersionId") in NULL_ANSWERS, (i, ra, rb)
        vid, got = current(s3, bucket, key)
        assert vid in NULL_ANSWERS, (i, vid)
        assert not isinstance(got, str), (i, got)
        winner = assert_one_of(got, [a, b], i)
        assert winner is not None and by_id(s3, bucket, key, "null") == winner.seen(), i
        if old and old_id != "null":
            assert by_id(s3, bucket, key, old_id) == old.seen(), i
            noncurrent.append(len(old.body))
        current_used += len(winner.body)
        seen[winner.tag] += 1
    assert_usage(coordinator, bucket, ROUNDS, current_used, noncurrent)
    assert_store_consistent(coordinator)
    print(f"null version after the race: {dict(seen)}")


@pytest.mark.parametrize("batch", [False, True], ids=["DeleteObject", "DeleteObjects"])
def test_put_and_delete_under_versioning_keep_the_version_and_the_marker(
    coordinator, s3, twin, pool, bucket, batch
) -> None:
    """A put racing a delete: the version and the delete marker both exist, readable by their ids, and
    the key reads as whichever has the newer id (the one that committed last)."""
    enable(s3, bucket)
    seen: Counter[str] = Counter()
    noncurrent: list[int] = []
    current_used, objects = 0, 0
    for i in range(ROUNDS):
        key = f"k{i}"
        old = version("old", sized("mixed", i + 1))
        old_id = put_id(put(s3, bucket, key, old)())
        new = version("new", sized("mixed", i))
        if batch:
            delete = lambda k=key: twin.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k}]})  # noqa: E731
        else:
            delete = lambda k=key: twin.delete_object(Bucket=bucket, Key=k)  # noqa: E731
        (cp, rp), (cd, rd) = race(pool, put(s3, bucket, key, new), delete, i, (-8, 2))
        assert (cp, cd) == ("ok", "ok"), (i, cp, cd)
        if batch:
            assert "Errors" not in rd, (i, rd["Errors"])
            [d] = rd["Deleted"]
            assert d["DeleteMarker"] is True, (i, d)
            marker = d["DeleteMarkerVersionId"]
        else:
            assert rd["DeleteMarker"] is True, (i, rd)
            marker = rd["VersionId"]
        put_vid = put_id(rp)
        assert VERSION_ID.fullmatch(marker) and old_id < min(put_vid, marker), (i, old_id, put_vid, marker)
        assert by_id(s3, bucket, key, put_vid) == new.seen(), i
        assert by_id(s3, bucket, key, marker) == MARKER, i
        assert by_id(s3, bucket, key, old_id) == old.seen(), i
        if put_vid > marker:
            assert current(s3, bucket, key) == (put_vid, new.seen()), i
            current_used, objects = current_used + len(new.body), objects + 1
            noncurrent += [len(old.body), 0]
        else:
            assert current(s3, bucket, key) == (marker, MARKER), i
            assert read_back(s3, bucket, key) is None, i
            noncurrent += [len(old.body), len(new.body), 0]
        seen["put last" if put_vid > marker else "delete last"] += 1
    assert_usage(coordinator, bucket, objects, current_used, noncurrent)
    assert_store_consistent(coordinator)
    print(f"final states: {dict(seen)}")


def test_complete_and_put_under_versioning_keep_both_versions(coordinator, s3, twin, pool, bucket) -> None:
    """A multipart Complete racing a put: both make a version, both read back by their ids, and the one
    with the newer id is the current version."""
    enable(s3, bucket)
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        part = os.urandom(64 * 1024 + i)
        assembled = Version("assembled", part, md5_etag([part]))
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata={"w": "assembled"})["UploadId"]
        e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=part)["ETag"]
        doc = {"Parts": [{"PartNumber": 1, "ETag": e1}]}
        complete = lambda k=key, u=up, d=doc: s3.complete_multipart_upload(  # noqa: E731
            Bucket=bucket, Key=k, UploadId=u, MultipartUpload=d
        )
        new = version("new", sized("mixed", i // 2))
        (cc, rc), (cp, rp) = race(pool, complete, put(twin, bucket, key, new), i)
        assert (cc, cp) == ("ok", "ok"), (i, cc, cp)
        idc, idp = put_id(rc), put_id(rp)
        assert by_id(s3, bucket, key, idc) == assembled.seen() and by_id(s3, bucket, key, idp) == new.seen(), i
        newer = assembled if idc > idp else new
        assert current(s3, bucket, key) == (max(idc, idp), newer.seen()), i
        seen[newer.tag] += 1
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert_store_consistent(coordinator)
    print(f"current after the race: {dict(seen)}")


def test_put_and_delete_while_suspended_leave_one_null_version(coordinator, s3, twin, pool, bucket) -> None:
    """While suspended a put and a delete both write the null version (an object, or a delete marker):
    whichever commits last replaces the other, and the version with an id under them is kept."""
    seen: Counter[str] = Counter()
    noncurrent: list[int] = []
    current_used, objects = 0, 0
    for i in range(ROUNDS):
        key = f"k{i}"
        enable(s3, bucket)
        old = version("old", sized("mixed", i + 1))
        old_id = put_id(put(s3, bucket, key, old)())
        enable(s3, bucket, "Suspended")
        new = version("new", sized("mixed", i))
        delete = lambda k=key: twin.delete_object(Bucket=bucket, Key=k)  # noqa: E731
        (cp, rp), (cd, rd) = race(pool, put(s3, bucket, key, new), delete, i, (-8, 2))
        assert (cp, cd) == ("ok", "ok"), (i, cp, cd)
        assert rp.get("VersionId") in NULL_ANSWERS and rd.get("VersionId") in NULL_ANSWERS, (i, rp, rd)
        assert rd["DeleteMarker"] is True, (i, rd)
        assert by_id(s3, bucket, key, old_id) == old.seen(), i
        null = by_id(s3, bucket, key, "null")
        vid, got = current(s3, bucket, key)
        if null == MARKER:
            assert (vid, got) == ("null", MARKER), i
            noncurrent += [len(old.body), 0]
        else:
            assert null == new.seen() and vid in NULL_ANSWERS and got == new.seen(), (i, vid)
            current_used, objects = current_used + len(new.body), objects + 1
            noncurrent.append(len(old.body))
        seen["delete last" if null == MARKER else "put last"] += 1
    assert_usage(coordinator, bucket, objects, current_used, noncurrent)
    assert_store_consistent(coordinator)
    print(f"final states: {dict(seen)}")


@pytest.mark.parametrize("second", ["DeleteObject", "DeleteObjects"])
def test_two_deletes_of_the_current_version_promote_the_previous_one_once(
    coordinator, s3, twin, pool, bucket, second
) -> None:
    """Two deletes of the current version by its id: both succeed (a version already gone is deleted),
    the version is gone, and the previous one is current, promoted once: the one before it is still
    noncurrent and the counters count each version once."""
    enable(s3, bucket)
    sizes: list[int] = []
    current_used = 0
    for i in range(ROUNDS):
        key = f"k{i}"
        vs = [version(f"v{n}", sized("mixed", i + n)) for n in range(3)]
        ids = [put_id(put(s3, bucket, key, v)()) for v in vs]
        first = lambda k=key, v=ids[2]: s3.delete_object(Bucket=bucket, Key=k, VersionId=v)  # noqa: E731
        if second == "DeleteObject":
            other = lambda k=key, v=ids[2]: twin.delete_object(Bucket=bucket, Key=k, VersionId=v)  # noqa: E731
        else:
            other = lambda k=key, v=ids[2]: twin.delete_objects(  # noqa: E731
                Bucket=bucket, Delete={"Objects": [{"Key": k, "VersionId": v}]}
            )
        (c1, r1), (c2, r2) = race(pool, first, other, i)
        assert (c1, c2) == ("ok", "ok"), (i, c1, c2)
        assert r1["ResponseMetadata"]["HTTPStatusCode"] == 204 and r1["VersionId"] == ids[2], (i, r1)
        if second == "DeleteObject":
            assert r2["ResponseMetadata"]["HTTPStatusCode"] == 204 and r2["VersionId"] == ids[2], (i, r2)
        else:
            assert "Errors" not in r2 and [d["VersionId"] for d in r2["Deleted"]] == [ids[2]], (i, r2)
        assert by_id(s3, bucket, key, ids[2]) is None, i
        assert current(s3, bucket, key) == (ids[1], vs[1].seen()), i
        assert by_id(s3, bucket, key, ids[0]) == vs[0].seen(), i
        current_used += len(vs[1].body)
        sizes.append(len(vs[0].body))
    assert_usage(coordinator, bucket, ROUNDS, current_used, sizes)
    assert_store_consistent(coordinator)


@pytest.mark.parametrize("other", ["previous version", "delete marker"])
def test_deleting_the_current_version_by_id_while_another_delete_lands(
    coordinator, s3, twin, pool, bucket, other
) -> None:
    """v1, v2, v3 (current). v3 deleted by its id while v2 is deleted by its id too: in either order v1 ends
    current (v2, promoted first, goes as the current version; or goes first as a noncurrent one). Or while
    a plain delete makes a marker: in either order the marker ends current over v2 and v1 (v2 promoted
    then retired; or v3 goes as a noncurrent version and nothing is promoted over the marker)."""
    enable(s3, bucket)
    noncurrent: list[int] = []
    current_used, objects = 0, 0
    for i in range(ROUNDS):
        key = f"k{i}"
        vs = [version(f"v{n}", sized("mixed", i + n)) for n in range(3)]
        ids = [put_id(put(s3, bucket, key, v)()) for v in vs]
        first = lambda k=key, v=ids[2]: s3.delete_object(Bucket=bucket, Key=k, VersionId=v)  # noqa: E731
        if other == "previous version":
            second = lambda k=key, v=ids[1]: twin.delete_object(Bucket=bucket, Key=k, VersionId=v)  # noqa: E731
        else:
            second = lambda k=key: twin.delete_object(Bucket=bucket, Key=k)  # noqa: E731
        (c1, r1), (c2, r2) = race(pool, first, second, i)
        assert (c1, c2) == ("ok", "ok"), (i, c1, c2)
        assert r1["VersionId"] == ids[2] and by_id(s3, bucket, key, ids[2]) is None, (i, r1)
        assert by_id(s3, bucket, key, ids[0]) == vs[0].seen(), i
        if other == "previous version":
            assert r2["VersionId"] == ids[1] and by_id(s3, bucket, key, ids[1]) is None, (i, r2)
            assert current(s3, bucket, key) == (ids[0], vs[0].seen()), i
            current_used, objects = current_used + len(vs[0].body), objects + 1
        else:
            marker = r2["VersionId"]
            assert r2["DeleteMarker"] is True and marker > ids[1], (i, r2)
            assert by_id(s3, bucket, key, marker) == MARKER and by_id(s3, bucket, key, ids[1]) == vs[1].seen(), i
            assert current(s3, bucket, key) == (marker, MARKER), i
            noncurrent += [len(vs[0].body), len(vs[1].body), 0]
    assert_usage(coordinator, bucket, objects, current_used, noncurrent)
    assert_store_consistent(coordinator)


def test_deleting_the_current_version_by_id_while_a_put_lands_loses_no_other_version(
    coordinator, s3, twin, pool, bucket
) -> None:
    """The current version deleted by its id while a put makes a new one: in either order the put's version
    ends current (the delete promotes the previous version, which the put then retires; or the put retires
    the deleted version, which then goes as a noncurrent one), and the previous version is kept."""
    enable(s3, bucket)
    noncurrent: list[int] = []
    current_used = 0
    for i in range(ROUNDS):
        key = f"k{i}"
        v1, v2 = version("v1", sized("mixed", i)), version("v2", sized("mixed", i + 1))
        id1, id2 = put_id(put(s3, bucket, key, v1)()), put_id(put(s3, bucket, key, v2)())
        v3 = version("v3", sized("mixed", i // 2))
        delete = lambda k=key, v=id2: twin.delete_object(Bucket=bucket, Key=k, VersionId=v)  # noqa: E731
        (cp, rp), (cd, rd) = race(pool, put(s3, bucket, key, v3), delete, i, (-6, 4))
        assert (cp, cd) == ("ok", "ok"), (i, cp, cd)
        assert rd["VersionId"] == id2 and "DeleteMarker" not in rd, (i, rd)
        id3 = put_id(rp)
        assert id3 > id1, (i, id1, id3)
        assert by_id(s3, bucket, key, id2) is None, i
        assert by_id(s3, bucket, key, id1) == v1.seen(), i
        assert by_id(s3, bucket, key, id3) == v3.seen(), i
        assert current(s3, bucket, key) == (id3, v3.seen()), i
        current_used += len(v3.body)
        noncurrent.append(len(v1.body))
    assert_usage(coordinator, bucket, ROUNDS, current_used, noncurrent)
    assert_store_consistent(coordinator)


def test_restoring_a_version_by_copy_while_it_is_deleted_copies_it_whole_or_not_at_all(
    coordinator, s3, twin, pool, bucket
) -> None:
    """v1 is restored by copying it onto its own key (how S3 restores an old version) while it is deleted by
    its id: the copy either found it and made a new current version of its bytes, or answers NoSuchVersion
    and changes nothing; v1 is gone either way, and v2 is kept."""
    enable(s3, bucket)
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        v1, v2 = version("v1", sized("mixed", i)), version("v2", sized("mixed", i + 1))
        id1, id2 = put_id(put(s3, bucket, key, v1)()), put_id(put(s3, bucket, key, v2)())
        copy = lambda k=key, v=id1: s3.copy_object(  # noqa: E731
            Bucket=bucket, Key=k, CopySource={"Bucket": bucket, "Key": k, "VersionId": v}
        )
        delete = lambda k=key, v=id1: twin.delete_object(Bucket=bucket, Key=k, VersionId=v)  # noqa: E731
        (cc, rc), (cd, _) = race(pool, copy, delete, i, (-6, 4))
        assert cd == "ok" and cc in ("ok", "NoSuchVersion"), (i, cc, cd)
        assert by_id(s3, bucket, key, id1) is None and by_id(s3, bucket, key, id2) == v2.seen(), i
        if cc == "ok":
            restored = put_id(rc)
            assert rc["CopySourceVersionId"] == id1 and restored > id2, (i, rc)
            assert current(s3, bucket, key) == (restored, v1.seen()), i
        else:
            assert current(s3, bucket, key) == (id2, v2.seen()), i
        seen[cc] += 1
    assert_store_consistent(coordinator)
    print(f"copy outcomes: {dict(seen)}")


def test_a_put_while_versioning_is_suspended_is_either_version_it_says(coordinator, s3, twin, pool, bucket) -> None:
    """A put racing PutBucketVersioning (Enabled to Suspended) is written under the state it committed in:
    a new version with an id over the old one, or the null version beside it; it reads back by what it
    answered, and the old version is kept in both cases."""
    seen: Counter[str] = Counter()
    for i in range(ROUNDS):
        key = f"k{i}"
        enable(s3, bucket)
        old = version("old", sized("mixed", i + 1))
        old_id = put_id(put(s3, bucket, key, old)())
        new = version("new", sized("mixed", i))
        suspend = lambda: twin.put_bucket_versioning(  # noqa: E731
            Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}
        )
        (cp, rp), (cs, _) = race(pool, put(s3, bucket, key, new), suspend, i, (-4, 4))
        assert (cp, cs) == ("ok", "ok"), (i, cp, cs)
        vid = rp.get("VersionId")
        if vid in NULL_ANSWERS:
            vid = "null"
        else:
            assert VERSION_ID.fullmatch(vid) and vid > old_id, (i, vid, old_id)
        assert by_id(s3, bucket, key, vid) == new.seen() and by_id(s3, bucket, key, old_id) == old.seen(), i
        got_vid, got = current(s3, bucket, key)
        assert got == new.seen() and (got_vid or "null") == vid, (i, got_vid, vid)
        seen["null version" if vid == "null" else "version with an id"] += 1
    assert_store_consistent(coordinator)
    print(f"the put wrote: {dict(seen)}")


def test_concurrent_overwrites_in_a_versioned_bucket_admit_exactly_what_fits(coordinator, wide, pool) -> None:
    """Six overwrites of one key at once in a versioned bucket with a quota, holding two versions of
    it already. An overwrite frees nothing there (the old version is kept and counted), so together they
    admit at most the room left: usage only grows, a refused put does not fit in the final usage, and
    every admitted version and both old ones read back by their ids."""
    quota = 200 * KIB
    tally: Counter[int] = Counter()
    for i in range(ROUNDS // 2):
        name = quota_bucket(coordinator, wide, quota)
        enable(wide, name)
        olds = [version("old1", 60 * KIB), version("old2", 40 * KIB)]
        old_ids = [put_id(put(wide, name, "k", v)()) for v in olds]
        sizes = [20 * KIB, INLINE_MAX, 50 * KIB, 70 * KIB, 90 * KIB, 120 * KIB]
        random.shuffle(sizes)
        vs = [version(f"p{n}", s) for n, s in enumerate(sizes)]
        results = race_all(pool, [put(wide, name, "k", v) for v in vs])
        codes = [code for code, _ in results]
        assert set(codes) <= {"ok", "QuotaExceeded"}, (i, codes)
        stored = {put_id(r): v for v, (code, r) in zip(vs, results, strict=True) if code == "ok"}
        total = 100 * KIB + sum(len(v.body) for v in stored.values())
        assert total <= quota, (i, total)
        for v, code in zip(vs, codes, strict=True):
            if code != "ok":
                assert total + len(v.body) > quota, (i, len(v.body), total)
        every = dict(zip(old_ids, olds, strict=True)) | stored
        for vid, v in every.items():
            assert by_id(wide, name, "k", vid) == v.seen(), (i, vid)
        newest = max(every)
        assert current(wide, name, "k") == (newest, every[newest].seen()), i
        doc = used(coordinator, name)
        assert (doc["used"], doc["objects"], doc["noncurrent_versions"]) == (total, 1, 1 + len(stored)), (i, doc)
        tally[len(stored)] += 1
    assert_store_consistent(coordinator)
    print(f"overwrites admitted per round: {dict(tally)}")


def test_concurrent_suspended_puts_at_a_quota_admit_every_size_that_fits(coordinator, wide, pool) -> None:
    """While versioning is suspended a put replaces the key's null version (its bytes freed) and keeps a
    version with an id. The key holds a 10 KiB version with an id (current) over an 80 KiB null version,
    in a bucket with a 100 KiB quota: whatever order they commit in, a put fits exactly when the 10 KiB
    version and its own bytes do. First one such put alone (the null version it replaces is noncurrent),
    then six at once."""
    quota, kept = 100 * KIB, 10 * KIB
    for i in range(ROUNDS // 3):
        name = quota_bucket(coordinator, wide, quota)
        enable(wide, name, "Suspended")
        null = version("null", 80 * KIB)
        put(wide, name, "k", null)()
        enable(wide, name)
        with_id = version("with-id", kept)
        kept_id = put_id(put(wide, name, "k", with_id)())
        enable(wide, name, "Suspended")
        sizes = [sized("mixed", i), 30 * KIB, 80 * KIB, quota - kept, quota - kept + 1, quota]
        random.shuffle(sizes)
        vs = [version(f"p{n}", s) for n, s in enumerate(sizes)]
        if i == 0:
            probe = version("probe", 80 * KIB)
            assert outcome(put(wide, name, "k", probe))[0] == "ok", "a put that frees the 80 KiB null version"
            vs = [probe, *vs]
        else:
            codes = [code for code, _ in race_all(pool, [put(wide, name, "k", v) for v in vs])]
            for v, code in zip(vs, codes, strict=True):
                assert code == ("ok" if kept + len(v.body) <= quota else "QuotaExceeded"), (i, len(v.body), code)
        vid, got = current(wide, name, "k")
        assert vid in NULL_ANSWERS and not isinstance(got, str), (i, vid)
        winner = assert_one_of(got, [v for v in vs if kept + len(v.body) <= quota], i)
        assert winner is not None and by_id(wide, name, "k", kept_id) == with_id.seen(), i
        assert_usage(coordinator, name, 1, len(winner.body), [kept])
    assert_store_consistent(coordinator)


# ---- last: once the grace is over, the disk holds exactly the named blobs ----------------------


def test_after_the_races_and_the_grace_the_disk_holds_exactly_the_named_blobs(coordinator, s3, twin, pool) -> None:
    """Runs after the races above (and a few blob-sized ones of its own): every blob that no commit
    names is deleted once the unlink grace has passed, and every named one is still there."""
    name = new_bucket(s3, "grace")
    for i in range(10):
        a, b = version("a", blob_size()), version("b", blob_size())
        (ca, _), (cb, _) = race(pool, put(s3, name, "k", a), put(twin, name, "k", b), i)
        assert (ca, cb) == ("ok", "ok"), i
    assert_blobs_accounted_for(coordinator)
    assert_store_consistent(coordinator)
