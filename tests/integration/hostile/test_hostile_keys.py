"""Hostile input, (c): path-traversal and odd-Unicode keys against a real coordinator.

The property: any key either round-trips exactly or is refused cleanly, and no file appears outside
the store. The key strategy itself (`hostile_keys`), the shared harness and the error-document check
(e) are in helpers.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings

from .helpers import (
    CASES,
    HYPOTHESIS,
    SENTINEL,
    assert_no_process_died,
    basic,
    check_reply,
    exchange,
    hostile_keys,
    http_request,
    new_bucket,
    object_exists,
)

# --- (c) hostile keys ---------------------------------------------------------------------------------

ALLOWED_STORE_FILE = re.compile(
    r"^(blobs/[0-9a-f]{2}/[0-9a-f]{32}|tmp/\d+/[0-9a-f]{32}|meta\.sqlite3(-wal|-shm|-journal|\.writer-lock)?"
    r"|\.clean-shutdown|\.upload-expiry-lock|\.lifecycle-lock|\.sse-rewrap-lock|admin\.token|coordinator\.lock"
    r"|scrub-state\.json|metadata-backend|metrics/(\.lock|[a-z_]+_\d+\.db))$"
)
ALLOWED_STORE_DIR = re.compile(r"^(blobs|tmp|metrics|blobs/[0-9a-f]{2}|tmp/\d+)$")


def store_layout_problems(data_dir: Path) -> list[str]:
    bad = []
    for p in data_dir.rglob("*"):
        rel = p.relative_to(data_dir).as_posix()
        if p.is_dir() and not p.is_symlink():
            if not ALLOWED_STORE_DIR.match(rel):
                bad.append(f"unexpected directory {rel!r}")
        elif not ALLOWED_STORE_FILE.match(rel):
            bad.append(f"unexpected file {rel!r}")
    return bad


def traversal_keys(data_dir: Path, target: Path) -> list[str]:
    """Keys that reach `target` from every directory a key could be joined onto, and its absolute path."""
    rel = target.relative_to(data_dir.parent).as_posix()
    keys = [str(target)]
    for depth in range(1, 5):  # <data_dir>, <data_dir>/<bucket> or tmp, <data_dir>/blobs/xx, one more
        keys += ["../" * depth + rel, "..%2f" * depth + rel.replace("/", "%2f"), "..\\" * depth + rel]
    return keys


def assert_sentinel_untouched(path: Path) -> None:
    assert path.read_bytes() == SENTINEL, "a file outside the data dir was written"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a file appeared outside the data dir"


def test_c_hostile_keys_round_trip_exactly_or_are_refused_and_never_touch_files_outside_the_store(
    coordinator, s3, processes: set[int], sentinel: Path
) -> None:
    bucket = new_bucket(s3, "keys")
    data_dir = coordinator.data_dir
    parent_before = sorted(p.name for p in data_dir.parent.iterdir())
    assert store_layout_problems(data_dir) == []

    def run(key: str) -> None:
        body = b"body of " + key.encode("utf-8") * 2 + b"\n" + b"#" * 40000  # > 32 KiB: a blob file
        CASES["hostile keys"] += 1
        too_long = len(key.encode("utf-8")) > 1024
        try:  # nothing stored yet: the key names no object, whatever file it might spell
            s3.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 404), (key, e.response)
        else:
            raise AssertionError(f"GET {key!r} answered 200 before anything was stored under it")
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        except ClientError as e:
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            assert 400 <= status < 500, (key, e.response)
            assert e.response["Error"]["Code"] != "InternalError"
            if too_long:
                assert e.response["Error"]["Code"] == "KeyTooLongError"
            assert not object_exists(s3, bucket, key)
        else:
            assert not too_long, f"a {len(key.encode())}-byte key was accepted"
            got = s3.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == body
            assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
            listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])]
            assert listed == [key], (key, listed)
            s3.delete_object(Bucket=bucket, Key=key)
            assert not object_exists(s3, bucket, key)
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        assert store_layout_problems(data_dir) == []
        assert sorted(p.name for p in data_dir.parent.iterdir()) == parent_before
        assert_sentinel_untouched(sentinel)

    for key in traversal_keys(data_dir, sentinel):  # aimed at the sentinel, every time
        run(key)
    settings(HYPOTHESIS, max_examples=120)(given(key=hostile_keys)(run))()
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize(
    "raw_key",
    [
        b"../../etc/passwd",
        b"../../../../../../../../../../etc/passwd",
        b"..%2f..%2fetc%2fpasswd",
        b"%2e%2e/%2e%2e/etc/passwd",
        b"./../x",
        b"../etc/passwd",
        b"../../../etc/passwd",
    ],
)
def test_c_unencoded_dot_segments_in_the_path_are_key_bytes_not_file_paths(
    coordinator, s3, sentinel: Path, raw_key: bytes
) -> None:
    bucket = new_bucket(s3, "dots")
    auth = basic(coordinator.token)
    target = f"/s3/{bucket}/".encode() + raw_key
    body = b"stored as an object, not as a file"
    put = exchange(coordinator.port, http_request("PUT", target, [("Host", b"127.0.0.1"), auth], body))
    CASES["dot-segment paths"] += 1
    check_reply(put, coordinator.token)
    assert put.status in (200, 400), put.raw[:500]
    get = exchange(coordinator.port, http_request("GET", target, [("Host", b"127.0.0.1"), auth]))
    check_reply(get, coordinator.token)
    if put.status == 200:
        assert get.status == 200 and get.body == body
    else:
        assert get.status in (400, 404)
    assert store_layout_problems(coordinator.data_dir) == []
    assert_sentinel_untouched(sentinel)
    # the prefix itself cannot be climbed out of either
    up = exchange(coordinator.port, http_request("GET", b"/s3/../../etc/passwd", [("Host", b"127.0.0.1"), auth]))
    check_reply(up, coordinator.token)
    assert up.status == 404
