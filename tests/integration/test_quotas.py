"""Per-bucket quotas and the store-wide max_size: exact under concurrency, transactional, durable."""

from __future__ import annotations

import json
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator

KB100 = b"q" * 100_000
MIB = 1024 * 1024


def cli(c: Coordinator, *args: str) -> subprocess.CompletedProcess:
    return c.cli(*args, timeout=60)


def usage(c: Coordinator, bucket: str) -> dict:
    r = cli(c, "bucket", "usage", bucket, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def listed_total(s3, bucket: str) -> int:
    return sum(
        o["Size"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    )


def new_bucket(s3, c: Coordinator, quota: str | None) -> str:
    name = f"q-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    if quota:
        r = cli(c, "bucket", "quota", "set", name, quota)
        assert r.returncode == 0, r.stderr
    return name


def error_code(fn) -> str | None:
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


@pytest.fixture(scope="module")
def wide(coordinator):
    """A boto3 client with enough pooled connections for 50 concurrent uploads."""
    return coordinator.client(max_pool_connections=64)


def test_fifty_concurrent_puts_never_exceed_the_quota(coordinator, wide) -> None:
    b = new_bucket(wide, coordinator, "1MB")
    with ThreadPoolExecutor(50) as pool:
        codes = list(
            pool.map(lambda i: error_code(lambda: wide.put_object(Bucket=b, Key=f"k{i}", Body=KB100)), range(50))
        )
    accepted = codes.count(None)
    assert accepted == 10
    assert set(codes) == {None, "QuotaExceeded"}
    u = usage(coordinator, b)
    assert u["used"] == listed_total(wide, b) == 10 * 100_000
    assert u["objects"] == 10
    assert [p for p in (coordinator.data_dir / "tmp").rglob("*") if p.is_file()] == []


def test_fifty_concurrent_parts_never_exceed_the_quota(coordinator, wide) -> None:
    b = new_bucket(wide, coordinator, "1MB")

    def one(i: int) -> str | None:
        up = wide.create_multipart_upload(Bucket=b, Key=f"m{i}")["UploadId"]
        try:
            etag = wide.upload_part(Bucket=b, Key=f"m{i}", UploadId=up, PartNumber=1, Body=KB100)["ETag"]
        except ClientError as e:
            wide.abort_multipart_upload(Bucket=b, Key=f"m{i}", UploadId=up)
            return e.response["Error"]["Code"]
        wide.complete_multipart_upload(
            Bucket=b, Key=f"m{i}", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}
        )
        return None

    with ThreadPoolExecutor(50) as pool:
        codes = list(pool.map(one, range(50)))
    assert codes.count(None) <= 10
    assert set(codes) <= {None, "QuotaExceeded"}
    u = usage(coordinator, b)
    assert u["used"] == listed_total(wide, b) <= 1_000_000
    assert u["multipart_used"] == 0


def test_fifty_concurrent_puts_never_exceed_max_size(tmp_path) -> None:
    c = start_coordinator(tmp_path, extra_yaml="  max_size: 1MB\n")
    try:
        s3 = c.client(max_pool_connections=64)
        s3.create_bucket(Bucket="maxed")
        with ThreadPoolExecutor(50) as pool:
            codes = list(
                pool.map(
                    lambda i: error_code(lambda: s3.put_object(Bucket="maxed", Key=f"k{i}", Body=KB100)), range(50)
                )
            )
        assert codes.count(None) == 10
        assert set(codes) == {None, "QuotaExceeded"}
        status = json.loads(cli(c, "storage", "status", "--json").stdout)
        assert status["used"] == listed_total(s3, "maxed") == 1_000_000
        assert status["max_size"] == 1_000_000
    finally:
        c.stop()


def test_quota_error_names_bucket_limit_and_usage_and_stores_nothing(coordinator, s3) -> None:
    b = new_bucket(s3, coordinator, "150000")
    s3.put_object(Bucket=b, Key="a", Body=KB100)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=b, Key="b", Body=KB100)
    err = e.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert err["Error"]["Code"] == "QuotaExceeded"
    assert b in err["Error"]["Message"] and "150000" in err["Error"]["Message"] and "100000" in err["Error"]["Message"]
    assert usage(coordinator, b)["used"] == 100_000


def test_overwrite_counts_only_the_difference_and_delete_frees(coordinator, s3) -> None:
    b = new_bucket(s3, coordinator, "250000")
    s3.put_object(Bucket=b, Key="a", Body=KB100)
    s3.put_object(Bucket=b, Key="b", Body=KB100)
    s3.put_object(Bucket=b, Key="a", Body=b"x" * 150_000)  # +50,000: exactly at the quota
    assert usage(coordinator, b)["used"] == 250_000
    assert error_code(lambda: s3.put_object(Bucket=b, Key="c", Body=b"1")) == "QuotaExceeded"
    s3.delete_object(Bucket=b, Key="b")
    assert usage(coordinator, b)["used"] == 150_000
    s3.put_object(Bucket=b, Key="c", Body=KB100)
    assert usage(coordinator, b)["objects"] == 2


def test_pending_parts_count_and_abort_frees_them(coordinator, s3) -> None:
    b = new_bucket(s3, coordinator, "250000")
    up = s3.create_multipart_upload(Bucket=b, Key="m")["UploadId"]
    s3.upload_part(Bucket=b, Key="m", UploadId=up, PartNumber=1, Body=KB100)
    s3.upload_part(Bucket=b, Key="m", UploadId=up, PartNumber=2, Body=KB100)
    u = usage(coordinator, b)
    assert (u["used"], u["multipart_used"]) == (0, 200_000)
    assert error_code(lambda: s3.put_object(Bucket=b, Key="x", Body=KB100)) == "QuotaExceeded"
    # re-uploading a part counts only the difference
    s3.upload_part(Bucket=b, Key="m", UploadId=up, PartNumber=2, Body=b"y" * 150_000)
    assert usage(coordinator, b)["multipart_used"] == 250_000
    s3.abort_multipart_upload(Bucket=b, Key="m", UploadId=up)
    assert usage(coordinator, b)["multipart_used"] == 0
    s3.put_object(Bucket=b, Key="x", Body=KB100)


def test_complete_moves_parts_into_the_object_without_double_counting(coordinator, s3) -> None:
    b = new_bucket(s3, coordinator, "6MiB")
    up = s3.create_multipart_upload(Bucket=b, Key="m")["UploadId"]
    e1 = s3.upload_part(Bucket=b, Key="m", UploadId=up, PartNumber=1, Body=b"a" * (5 * MIB))["ETag"]
    e2 = s3.upload_part(Bucket=b, Key="m", UploadId=up, PartNumber=2, Body=b"b" * 1000)["ETag"]
    s3.upload_part(Bucket=b, Key="m", UploadId=up, PartNumber=3, Body=b"c" * 1000)  # left out of Complete
    s3.complete_multipart_upload(
        Bucket=b,
        Key="m",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    u = usage(coordinator, b)
    assert (u["used"], u["multipart_used"], u["objects"]) == (5 * MIB + 1000, 0, 1)


def test_copy_counts_against_the_destination_quota(coordinator, s3) -> None:
    src = new_bucket(s3, coordinator, None)
    dst = new_bucket(s3, coordinator, "150000")
    s3.put_object(Bucket=src, Key="a", Body=KB100)
    s3.copy_object(Bucket=dst, Key="a", CopySource={"Bucket": src, "Key": "a"})
    assert (
        error_code(lambda: s3.copy_object(Bucket=dst, Key="b", CopySource={"Bucket": src, "Key": "a"}))
        == "QuotaExceeded"
    )
    assert usage(coordinator, dst)["used"] == 100_000


def test_lowering_a_quota_below_usage_refuses_writes_until_usage_drops(coordinator, s3) -> None:
    b = new_bucket(s3, coordinator, None)
    s3.put_object(Bucket=b, Key="a", Body=KB100)
    s3.put_object(Bucket=b, Key="b", Body=KB100)
    assert cli(coordinator, "bucket", "quota", "set", b, "150KB").returncode == 0
    u = usage(coordinator, b)
    assert u["quota"] == 150_000 and u["percent"] > 100
    assert error_code(lambda: s3.put_object(Bucket=b, Key="c", Body=b"1")) == "QuotaExceeded"
    s3.delete_object(Bucket=b, Key="a")
    s3.put_object(Bucket=b, Key="c", Body=b"1")
    assert cli(coordinator, "bucket", "quota", "clear", b).returncode == 0
    assert usage(coordinator, b)["quota"] is None
    s3.put_object(Bucket=b, Key="d", Body=KB100)


@pytest.mark.parametrize(
    ("size", "expected"), [("1GB", 10**9), ("500MB", 5 * 10**8), ("1GiB", 2**30), ("1Gi", 2**30), ("12345", 12345)]
)
def test_quota_sizes_accept_decimal_binary_and_bytes(coordinator, s3, size, expected) -> None:
    b = new_bucket(s3, coordinator, size)
    assert usage(coordinator, b)["quota"] == expected


def test_bad_quota_size_is_a_one_line_error(coordinator, s3) -> None:
    b = new_bucket(s3, coordinator, None)
    r = cli(coordinator, "bucket", "quota", "set", b, "lots")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_usage_survives_a_restart_and_verify_agrees(tmp_path) -> None:
    c = start_coordinator(tmp_path)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="keep")
        assert cli(c, "bucket", "quota", "set", "keep", "1MB").returncode == 0
        for i in range(3):
            s3.put_object(Bucket="keep", Key=f"k{i}", Body=KB100)
        up = s3.create_multipart_upload(Bucket="keep", Key="m")["UploadId"]
        s3.upload_part(Bucket="keep", Key="m", UploadId=up, PartNumber=1, Body=KB100)
    finally:
        c.stop()
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        u = usage(c2, "keep")
        assert (u["used"], u["objects"], u["multipart_used"], u["quota"]) == (300_000, 3, 100_000, 1_000_000)
        r = cli(c2, "storage", "verify")
        assert r.returncode == 0 and "ok" in r.stdout and "MISMATCH" not in r.stdout
    finally:
        c2.stop()


def test_storage_status_lists_every_bucket_and_disk_space(coordinator, s3) -> None:
    b = new_bucket(s3, coordinator, "1MB")
    s3.put_object(Bucket=b, Key="a", Body=KB100)
    r = cli(coordinator, "storage", "status")
    assert r.returncode == 0 and b in r.stdout and "disk free" in r.stdout
    d = json.loads(cli(coordinator, "storage", "status", "--json").stdout)
    assert d["disk_free"] > 0
    assert any(x["name"] == b and x["used"] == 100_000 for x in d["buckets"])
