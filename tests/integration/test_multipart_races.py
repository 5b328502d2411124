"""Multipart uploads under races: Complete against a part re-upload or copy, twin Completes, and
stale-upload expiry. Every acknowledged object must read back whole, and every blob must end up
either named by the metadata or deleted: never both, never neither."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import (
    Coordinator,
    assert_blobs_accounted_for,
    md5_etag,
    outcome,
    start_coordinator,
    storage_verify_ok,
)

ROUNDS = 80  # about 400 requests per race test
PART = 64 * 1024


def race(
    pool: ThreadPoolExecutor, a: Callable[[], Any], b: Callable[[], Any], a_later: float = 0.0
) -> tuple[tuple, tuple]:
    """Run a and b at the same moment on two threads (a after `a_later` seconds)."""
    barrier = threading.Barrier(2)

    def go(fn: Callable[[], Any], delay: float) -> tuple[str, Any]:
        barrier.wait()
        time.sleep(delay)
        return outcome(fn)

    fa, fb = pool.submit(go, a, a_later), pool.submit(go, b, 0.0)
    return fa.result(), fb.result()


def stagger(i: int) -> float:
    """0 to 9.75 ms in steps of 0.25. A Complete is much quicker than a part upload, so starting
    both at once lets the Complete win outright almost every time; sweeping its start makes some
    rounds land while the part upload commits (measured on the old code: losses at starts between
    2.5 and 8 ms, depending on load; one round in seven lost its object). Whatever the
    interleaving, its outcome is checked."""
    return (i % 40) * 0.00025


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as p:
        yield p


@pytest.fixture(scope="module")
def twin(coordinator: Coordinator):
    """A second client, so the two racing requests travel on their own connections."""
    return coordinator.client()


@dataclass
class Fresh:
    """A coordinator of its own, so that counting its blobs sees only this test's."""

    c: Coordinator
    s3: Any
    twin: Any
    bucket: str


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Fresh]:
    c = start_coordinator(tmp_path)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="races")
        yield Fresh(c, s3, c.client(), "races")
    finally:
        c.stop()


def complete(s3, bucket: str, key: str, up: str, parts: list[tuple[int, str]]) -> Callable[[], Any]:
    doc = {"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]}
    return lambda: s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload=doc)


def run_replace_race(
    f: Fresh, pool: ThreadPoolExecutor, replace: Callable[[str, str, bytes], Callable[[], Any]]
) -> None:
    """Race Complete(part 1 as first uploaded) against `replace` re-writing part 1, ROUNDS times.

    Even rounds re-write the same bytes (same ETag: both may succeed, and the object is those
    bytes); odd rounds different bytes (then exactly one of the two wins)."""
    s3, bucket = f.s3, f.bucket
    completed: dict[str, bytes] = {}
    seen: set[tuple[str, str, bool]] = set()
    for i in range(ROUNDS):
        key = f"race-{i}"
        first = os.urandom(PART)
        again = first if i % 2 == 0 else os.urandom(PART)
        up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=first)["ETag"]
        racer = replace(key, up, again)
        (c_code, c_resp), (r_code, _) = race(pool, complete(s3, bucket, key, up, [(1, e1)]), racer, stagger(i))
        seen.add((c_code, r_code, again == first))
        assert c_code in ("ok", "InvalidPart"), (i, c_code)
        assert r_code in ("ok", "NoSuchUpload"), (i, r_code)
        if c_code == "ok":
            assert c_resp["ETag"] == md5_etag([first])
            completed[key] = first
        else:
            # the re-write with other bytes committed first: the Complete named a part that no longer exists
            assert again != first and r_code == "ok", (i, c_code, r_code)
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up)
        if again == first:
            assert c_code == "ok", i
        elif c_code == "ok":
            # a part re-written with other bytes before the Complete committed must fail it
            assert r_code == "NoSuchUpload", i
    # every round is done: wait (once) for the freed blobs' grace period, then check everything
    assert_blobs_accounted_for(f.c)
    for key, body in completed.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body, key
        assert got["ETag"] == md5_etag([body])
    storage_verify_ok(f.c)
    print(f"outcomes (complete, replace, same bytes): {sorted(seen)}")


def test_complete_racing_a_part_reupload_never_loses_or_leaks_a_blob(fresh: Fresh, pool) -> None:
    def reupload(key: str, up: str, body: bytes) -> Callable[[], Any]:
        return lambda: fresh.twin.upload_part(Bucket=fresh.bucket, Key=key, UploadId=up, PartNumber=1, Body=body)

    run_replace_race(fresh, pool, reupload)


def test_complete_racing_an_upload_part_copy_never_loses_or_leaks_a_blob(fresh: Fresh, pool) -> None:
    def copy(key: str, up: str, body: bytes) -> Callable[[], Any]:
        src = f"src-{key}"
        fresh.s3.put_object(Bucket=fresh.bucket, Key=src, Body=body)
        source = {"Bucket": fresh.bucket, "Key": src}
        return lambda: fresh.twin.upload_part_copy(
            Bucket=fresh.bucket, Key=key, UploadId=up, PartNumber=1, CopySource=source
        )

    run_replace_race(fresh, pool, copy)


def test_part_upload_racing_abort_never_leaks_a_blob(fresh: Fresh, pool) -> None:
    s3, twin, bucket = fresh.s3, fresh.twin, fresh.bucket
    for i in range(40):
        key = f"abort-{i}"
        up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=os.urandom(PART))
        body = os.urandom(PART)
        (a_code, _), (p_code, _) = race(
            pool,
            lambda k=key, u=up: s3.abort_multipart_upload(Bucket=bucket, Key=k, UploadId=u),
            lambda k=key, u=up, b=body: twin.upload_part(Bucket=bucket, Key=k, UploadId=u, PartNumber=1, Body=b),
            stagger(i),
        )
        assert a_code == "ok", (i, a_code)
        assert p_code in ("ok", "NoSuchUpload"), (i, p_code)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert_blobs_accounted_for(fresh.c)
    storage_verify_ok(fresh.c)


def test_identical_completes_at_once_both_succeed_with_the_same_etag(s3, twin, pool, bucket) -> None:
    for i in range(30):
        key = f"twin-{i}"
        body = os.urandom(PART)
        up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        e1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=body)["ETag"]
        (a_code, a), (b_code, b) = race(
            pool, complete(s3, bucket, key, up, [(1, e1)]), complete(twin, bucket, key, up, [(1, e1)]), stagger(i)
        )
        assert (a_code, b_code) == ("ok", "ok"), i
        assert a["ETag"] == b["ETag"] == md5_etag([body]), i
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_upload_part_copy_replacing_a_part_at_a_full_quota_succeeds(coordinator, s3, bucket) -> None:
    full = f"q-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=full)
    r = coordinator.cli("bucket", "quota", "set", full, str(2 * PART), timeout=60)
    assert r.returncode == 0, r.stderr
    first, second = os.urandom(PART), os.urandom(PART)
    s3.put_object(Bucket=bucket, Key="second", Body=second)  # the copy source, outside the full bucket
    up = s3.create_multipart_upload(Bucket=full, Key="k")["UploadId"]
    s3.upload_part(Bucket=full, Key="k", UploadId=up, PartNumber=1, Body=first)
    s3.put_object(Bucket=full, Key="filler", Body=os.urandom(PART))  # now used + multipart = quota
    with pytest.raises(ClientError) as e:  # the quota is really full
        s3.upload_part(Bucket=full, Key="k", UploadId=up, PartNumber=2, Body=b"x")
    assert e.value.response["Error"]["Code"] == "QuotaExceeded"
    res = s3.upload_part_copy(
        Bucket=full, Key="k", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": "second"}
    )
    etag = res["CopyPartResult"]["ETag"]
    complete(s3, full, "k", up, [(1, etag)])()
    assert s3.get_object(Bucket=full, Key="k")["Body"].read() == second


def test_storage_status_shows_what_pending_uploads_hold(coordinator, s3, bucket) -> None:
    s3.create_multipart_upload(Bucket=bucket, Key="bare")
    up = s3.create_multipart_upload(Bucket=bucket, Key="with-parts")["UploadId"]
    for n in (1, 2):
        s3.upload_part(Bucket=bucket, Key="with-parts", UploadId=up, PartNumber=n, Body=os.urandom(PART))
    status = json.loads(coordinator.cli("storage", "status", "--json", timeout=60).stdout)
    doc = next(b for b in status["buckets"] if b["name"] == bucket)
    assert (doc["pending_uploads"], doc["pending_bytes"]) == (2, 2 * PART)
    assert status["pending_uploads"] == sum(b["pending_uploads"] for b in status["buckets"])
    assert status["pending_bytes"] == sum(b["pending_bytes"] for b in status["buckets"]) >= 2 * PART
    shown = coordinator.cli("storage", "status", timeout=60).stdout
    line = next(row for row in shown.splitlines() if row.startswith(bucket))
    assert "2 / 131.1 KB" in line, shown
    assert f"pending multipart uploads: {status['pending_uploads']} holding" in shown, shown


# ---- stale upload expiry --------------------------------------------------------------------

EXPIRY = 3  # seconds; the busy upload below gets a part every second, well inside it
EXPIRED = r"expired (\d+) stale multipart uploads \((\d+) bytes\)"


@pytest.fixture(scope="module")
def expiring(tmp_path_factory: pytest.TempPathFactory):
    c = start_coordinator(tmp_path_factory.mktemp("expiry"), extra_yaml=f"  stale_upload_expiry: {EXPIRY}s\n")
    yield c
    c.stop()


def test_an_idle_upload_expires_and_one_receiving_parts_lives_on(expiring) -> None:
    s3 = expiring.client()
    name = f"x-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    idle = s3.create_multipart_upload(Bucket=name, Key="idle")["UploadId"]
    s3.upload_part(Bucket=name, Key="idle", UploadId=idle, PartNumber=1, Body=os.urandom(PART))
    busy = s3.create_multipart_upload(Bucket=name, Key="busy")["UploadId"]
    # the busy upload gets a part every second, for several expiry periods
    bodies = []
    for n in range(1, 3 * EXPIRY + 1):
        bodies.append(os.urandom(PART))
        s3.upload_part(Bucket=name, Key="busy", UploadId=busy, PartNumber=n, Body=bodies[-1])
        time.sleep(1)
    # only quick calls from here to the Complete: the busy upload is idle again meanwhile
    m = expiring.wait_for_log(EXPIRED)
    assert int(m.group(1)) == 1 and int(m.group(2)) == PART
    listed = [u["Key"] for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", [])]
    assert listed == ["busy"]
    assert len(s3.list_parts(Bucket=name, Key="busy", UploadId=busy)["Parts"]) == len(bodies)
    last = (len(bodies), f'"{hashlib.md5(bodies[-1]).hexdigest()}"')
    done = complete(s3, name, "busy", busy, [last])()
    assert done["ETag"] == md5_etag([bodies[-1]])
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=name, Key="idle", UploadId=idle)
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"
    # the busy upload's unused parts were freed by the Complete, the idle one's by the expiry
    usage = json.loads(expiring.cli("bucket", "usage", name, "--json", timeout=60).stdout)
    assert (usage["multipart_used"], usage["used"]) == (0, PART)
    assert_blobs_accounted_for(expiring)
    storage_verify_ok(expiring)
