"""The MinIO Python SDK against the root S3 listener of a real coordinator."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from minio import Minio
from minio.commonconfig import REPLACE, ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

MiB = 1024 * 1024


def new_bucket_name() -> str:
    return f"minio-{uuid.uuid4().hex[:16]}"


class NonSeekableStream:
    """A stream of unknown length: only read(), like a pipe, handed out in odd-sized pieces."""

    def __init__(self, data: bytes) -> None:
        self._buf = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self._buf.read()
        return self._buf.read(min(size, 777_777))


def multipart_etag(data: bytes, part_size: int) -> str:
    digests = b"".join(hashlib.md5(data[i : i + part_size]).digest() for i in range(0, len(data), part_size))
    count = (len(data) + part_size - 1) // part_size
    return f"{hashlib.md5(digests).hexdigest()}-{count}"


@pytest.fixture(scope="module")
def mc(coordinator) -> Minio:
    return Minio(
        f"127.0.0.1:{coordinator.s3_port}",
        access_key="admin",
        secret_key=coordinator.token,
        secure=False,
        region="us-east-1",
    )


@pytest.fixture
def mbucket(mc: Minio) -> str:
    name = new_bucket_name()
    mc.make_bucket(name)
    return name


def read_object(mc: Minio, bucket: str, key: str, **kwargs: int) -> bytes:
    resp = mc.get_object(bucket, key, **kwargs)
    try:
        return resp.read()
    finally:
        resp.close()
        resp.release_conn()


def all_keys(mc: Minio, bucket: str) -> list[str]:
    return [o.object_name for o in mc.list_objects(bucket, recursive=True)]


def test_make_bucket_then_bucket_exists_and_list_buckets_show_it(mc: Minio) -> None:
    name = new_bucket_name()
    assert mc.bucket_exists(name) is False
    mc.make_bucket(name)
    assert mc.bucket_exists(name) is True
    assert name in [b.name for b in mc.list_buckets()]

    mc.remove_bucket(name)
    assert mc.bucket_exists(name) is False
    assert name not in [b.name for b in mc.list_buckets()]


def test_make_bucket_twice_succeeds_in_us_east_1_and_keeps_the_bucket(mc: Minio, mbucket: str) -> None:
    """AWS's legacy answer in us-east-1: creating a bucket you own again is a 200 that changes nothing."""
    mc.put_object(mbucket, "kept", io.BytesIO(b"kept"), 4)
    mc.make_bucket(mbucket)
    assert read_object(mc, mbucket, "kept") == b"kept"


def test_put_object_with_known_length_round_trips(mc: Minio, mbucket: str) -> None:
    data = os.urandom(123_456)
    result = mc.put_object(mbucket, "known.bin", io.BytesIO(data), len(data), content_type="application/x-known")
    assert result.etag == hashlib.md5(data).hexdigest()

    assert read_object(mc, mbucket, "known.bin") == data
    stat = mc.stat_object(mbucket, "known.bin")
    assert stat.size == len(data)
    assert stat.etag == hashlib.md5(data).hexdigest()
    assert stat.content_type == "application/x-known"


def test_put_object_with_unknown_length_smaller_than_part_size_is_a_single_upload(mc: Minio, mbucket: str) -> None:
    data = os.urandom(3 * MiB + 17)
    result = mc.put_object(mbucket, "stream-small.bin", NonSeekableStream(data), length=-1, part_size=5 * MiB)
    assert result.etag == hashlib.md5(data).hexdigest()
    assert read_object(mc, mbucket, "stream-small.bin") == data


def test_put_object_with_unknown_length_streams_as_multipart(mc: Minio, mbucket: str) -> None:
    data = os.urandom(12 * MiB + 5)
    result = mc.put_object(mbucket, "stream-big.bin", NonSeekableStream(data), length=-1, part_size=5 * MiB)
    assert result.etag == multipart_etag(data, 5 * MiB)
    assert result.etag.endswith("-3")

    stat = mc.stat_object(mbucket, "stream-big.bin")
    assert stat.size == len(data)
    assert stat.etag == result.etag
    assert read_object(mc, mbucket, "stream-big.bin") == data


def test_put_object_with_known_length_and_part_size_uploads_multipart(mc: Minio, mbucket: str) -> None:
    data = os.urandom(11 * MiB)
    result = mc.put_object(mbucket, "parts.bin", io.BytesIO(data), len(data), part_size=5 * MiB)
    assert result.etag == multipart_etag(data, 5 * MiB)
    assert read_object(mc, mbucket, "parts.bin") == data


def test_fput_and_fget_object_round_trip_file_bytes(mc: Minio, mbucket: str, tmp_path: Path) -> None:
    src = tmp_path / "up.bin"
    data = os.urandom(7 * MiB + 3)
    src.write_bytes(data)

    mc.fput_object(mbucket, "dir/file.bin", str(src), content_type="application/x-file")
    dst = tmp_path / "down" / "file.bin"
    stat = mc.fget_object(mbucket, "dir/file.bin", str(dst))
    assert stat.size == len(data)
    assert dst.read_bytes() == data


def test_get_object_with_offset_and_length_returns_that_range(mc: Minio, mbucket: str) -> None:
    data = bytes(range(256)) * 100
    mc.put_object(mbucket, "ranged.bin", io.BytesIO(data), len(data))
    assert read_object(mc, mbucket, "ranged.bin", offset=1000, length=500) == data[1000:1500]
    assert read_object(mc, mbucket, "ranged.bin", offset=25_000) == data[25_000:]


def test_get_object_of_missing_key_raises_no_such_key(mc: Minio, mbucket: str) -> None:
    with pytest.raises(S3Error) as exc:
        mc.get_object(mbucket, "missing")
    assert exc.value.code == "NoSuchKey"
    with pytest.raises(S3Error) as exc:
        mc.stat_object(mbucket, "missing")
    assert exc.value.code in ("NoSuchKey", "ResourceNotFound")


def test_list_objects_recursive_and_delimited(mc: Minio, mbucket: str) -> None:
    keys = ["a.txt", "dir/b.txt", "dir/sub/c.txt", "dir/with space+plus.txt", "dir/ünï.txt", "z/d.txt"]
    for key in keys:
        body = key.encode()
        mc.put_object(mbucket, key, io.BytesIO(body), len(body))

    recursive = list(mc.list_objects(mbucket, recursive=True))
    assert [o.object_name for o in recursive] == sorted(keys, key=lambda k: k.encode())
    assert all(not o.is_dir for o in recursive)
    assert {o.object_name: o.size for o in recursive} == {k: len(k.encode()) for k in keys}
    assert {o.object_name: o.etag for o in recursive} == {k: hashlib.md5(k.encode()).hexdigest() for k in keys}

    top = list(mc.list_objects(mbucket))
    assert sorted((o.object_name, o.is_dir) for o in top) == [("a.txt", False), ("dir/", True), ("z/", True)]

    # minio-py yields a page's Contents before its CommonPrefixes, so compare without order here.
    in_dir = list(mc.list_objects(mbucket, prefix="dir/"))
    assert sorted((o.object_name, o.is_dir) for o in in_dir) == [
        ("dir/b.txt", False),
        ("dir/sub/", True),
        ("dir/with space+plus.txt", False),
        ("dir/ünï.txt", False),
    ]

    after = [o.object_name for o in mc.list_objects(mbucket, recursive=True, start_after="dir/sub/c.txt")]
    assert after == ["dir/with space+plus.txt", "dir/ünï.txt", "z/d.txt"]

    v1 = [o.object_name for o in mc.list_objects(mbucket, recursive=True, use_api_v1=True)]
    assert v1 == sorted(keys, key=lambda k: k.encode())


@pytest.mark.parametrize("use_api_v1", [False, True], ids=["ListObjectsV2", "ListObjectsV1"])
def test_list_objects_pages_through_more_than_one_thousand_keys_and_prefixes(
    mc: Minio, mbucket: str, use_api_v1: bool
) -> None:
    prefixes = [f"p{i:04d}/" for i in range(1003)]
    plain = ["a-first", "p0500", "zz last"]  # "p0500" sorts just before the prefix "p0500/"
    keys = [p + "x" for p in prefixes] + plain
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: mc.put_object(mbucket, k, io.BytesIO(b""), 0), keys))

    recursive = [o.object_name for o in mc.list_objects(mbucket, recursive=True, use_api_v1=use_api_v1)]
    assert recursive == sorted(keys)

    top = list(mc.list_objects(mbucket, use_api_v1=use_api_v1))
    assert sorted(o.object_name for o in top if o.is_dir) == prefixes
    assert sorted(o.object_name for o in top if not o.is_dir) == sorted(plain)
    assert len(top) == len(prefixes) + len(plain)


def test_stat_object_returns_user_metadata_and_content_type(mc: Minio, mbucket: str) -> None:
    data = b"with metadata"
    mc.put_object(
        mbucket,
        "meta.txt",
        io.BytesIO(data),
        len(data),
        content_type="text/x-meta",
        metadata={"Color": "blue", "x-amz-meta-shape": "round"},
    )
    stat = mc.stat_object(mbucket, "meta.txt")
    assert stat.size == len(data)
    assert stat.content_type == "text/x-meta"
    assert stat.etag == hashlib.md5(data).hexdigest()
    assert stat.last_modified is not None
    assert stat.metadata["x-amz-meta-color"] == "blue"
    assert stat.metadata["x-amz-meta-shape"] == "round"


def test_copy_object_copies_bytes_and_metadata_or_replaces_metadata(mc: Minio, mbucket: str) -> None:
    other = new_bucket_name()
    mc.make_bucket(other)
    data = os.urandom(40_000)
    mc.put_object(mbucket, "src key.bin", io.BytesIO(data), len(data), metadata={"origin": "first"})

    copied = mc.copy_object(other, "copied.bin", CopySource(mbucket, "src key.bin"))
    assert copied.etag == hashlib.md5(data).hexdigest()
    assert read_object(mc, other, "copied.bin") == data
    assert mc.stat_object(other, "copied.bin").metadata["x-amz-meta-origin"] == "first"

    replaced = mc.copy_object(
        mbucket,
        "replaced.bin",
        CopySource(mbucket, "src key.bin"),
        metadata={"origin": "second"},
        metadata_directive=REPLACE,
    )
    assert replaced.etag == hashlib.md5(data).hexdigest()
    stat = mc.stat_object(mbucket, "replaced.bin")
    assert stat.metadata["x-amz-meta-origin"] == "second"
    assert read_object(mc, mbucket, "replaced.bin") == data
    # The source is untouched.
    assert mc.stat_object(mbucket, "src key.bin").metadata["x-amz-meta-origin"] == "first"


def test_copy_object_with_source_range_copies_only_that_range(mc: Minio, mbucket: str) -> None:
    data = os.urandom(10_000)
    mc.put_object(mbucket, "whole.bin", io.BytesIO(data), len(data))
    mc.copy_object(mbucket, "slice.bin", CopySource(mbucket, "whole.bin", offset=1234, length=500))
    assert read_object(mc, mbucket, "slice.bin") == data[1234:1734]
    assert mc.stat_object(mbucket, "slice.bin").size == 500


def test_compose_object_concatenates_sources_server_side(mc: Minio, mbucket: str) -> None:
    first = os.urandom(6 * MiB)
    second = os.urandom(1000)
    mc.put_object(mbucket, "part one", io.BytesIO(first), len(first))
    mc.put_object(mbucket, "part+two", io.BytesIO(second), len(second))

    result = mc.compose_object(
        mbucket, "joined.bin", [ComposeSource(mbucket, "part one"), ComposeSource(mbucket, "part+two")]
    )
    assert result.etag.endswith("-2")
    assert read_object(mc, mbucket, "joined.bin") == first + second
    assert mc.stat_object(mbucket, "joined.bin").size == len(first) + len(second)


def test_remove_object_deletes_one_key(mc: Minio, mbucket: str) -> None:
    mc.put_object(mbucket, "gone.txt", io.BytesIO(b"x"), 1)
    mc.put_object(mbucket, "stays.txt", io.BytesIO(b"y"), 1)
    mc.remove_object(mbucket, "gone.txt")
    assert all_keys(mc, mbucket) == ["stays.txt"]
    # Deleting a missing key is not an error in S3.
    mc.remove_object(mbucket, "gone.txt")
    assert all_keys(mc, mbucket) == ["stays.txt"]


def test_remove_objects_bulk_deletes_keys_and_reports_no_errors(mc: Minio, mbucket: str) -> None:
    keys = [f"bulk/{i}" for i in range(25)] + ["bulk/with space+plus", "bulk/ünï"]
    for key in keys:
        mc.put_object(mbucket, key, io.BytesIO(key.encode()), len(key.encode()))
    mc.put_object(mbucket, "keep", io.BytesIO(b"k"), 1)

    to_delete = [DeleteObject(k) for k in keys] + [DeleteObject("bulk/never-existed")]
    errors = list(mc.remove_objects(mbucket, to_delete))
    assert errors == []
    assert all_keys(mc, mbucket) == ["keep"]


def test_remove_bucket_refuses_non_empty_bucket_then_succeeds_when_empty(mc: Minio) -> None:
    name = new_bucket_name()
    mc.make_bucket(name)
    mc.put_object(name, "x", io.BytesIO(b"x"), 1)
    with pytest.raises(S3Error) as exc:
        mc.remove_bucket(name)
    assert exc.value.code == "BucketNotEmpty"
    assert mc.bucket_exists(name)

    mc.remove_object(name, "x")
    mc.remove_bucket(name)
    assert mc.bucket_exists(name) is False


def test_presigned_get_object_url_serves_bytes_to_requests(mc: Minio, mbucket: str) -> None:
    data = os.urandom(5000)
    mc.put_object(mbucket, "pre signed+key.bin", io.BytesIO(data), len(data))
    url = mc.presigned_get_object(mbucket, "pre signed+key.bin", expires=timedelta(minutes=10))
    assert "X-Amz-Signature=" in url
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == data


def test_presigned_put_object_url_accepts_upload_from_requests(mc: Minio, mbucket: str) -> None:
    data = os.urandom(3000)
    url = mc.presigned_put_object(mbucket, "uploaded via url+1.bin", expires=timedelta(minutes=10))
    resp = requests.put(url, data=data, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert read_object(mc, mbucket, "uploaded via url+1.bin") == data


def test_client_without_region_discovers_it_and_works(coordinator, mbucket: str) -> None:
    regionless = Minio(
        f"127.0.0.1:{coordinator.s3_port}", access_key="admin", secret_key=coordinator.token, secure=False
    )
    lookups_before = coordinator.log().count("op=GetBucketLocation status=200")
    data = b"region discovered"
    regionless.put_object(mbucket, "r.txt", io.BytesIO(data), len(data))
    assert read_object(regionless, mbucket, "r.txt") == data
    assert [o.object_name for o in regionless.list_objects(mbucket)] == ["r.txt"]
    assert coordinator.log().count("op=GetBucketLocation status=200") > lookups_before


def test_wrong_secret_is_rejected(coordinator, mbucket: str) -> None:
    bad = Minio(
        f"127.0.0.1:{coordinator.s3_port}",
        access_key="admin",
        secret_key="not-the-secret",
        secure=False,
        region="us-east-1",
    )
    with pytest.raises(S3Error) as exc:
        list(bad.list_objects(mbucket))
    assert exc.value.code == "SignatureDoesNotMatch"
