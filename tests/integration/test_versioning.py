"""Versioning against a real coordinator, with boto3 (docs/data-protection.md sections 1 to 3): the
bucket's state, a new version per write, reads and copies by version id, delete markers and undelete,
the null version while suspended, multipart and DeleteObjects under versioning, and usage counting every
version."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

VERSION_ID = re.compile(r"[0-9a-f]{24}")


def error(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = info.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def headers(resp: dict[str, Any]) -> dict[str, str]:
    return resp["ResponseMetadata"]["HTTPHeaders"]


def new_key() -> str:
    return f"v-{uuid.uuid4().hex[:10]}"


def body(s3, bucket: str, key: str, version: str | None = None) -> bytes:
    kw = {"VersionId": version} if version else {}
    return s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


def versioned(s3, bucket: str, state: str = "Enabled") -> str:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": state})
    return bucket


def cli(coordinator, *args: str) -> str:
    r = coordinator.cli(*args, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def usage(coordinator, bucket: str) -> dict[str, Any]:
    return json.loads(cli(coordinator, "bucket", "usage", bucket, "--json"))


def test_the_versioning_state_is_kept_and_never_goes_back_to_unversioned(s3, bucket) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    versioned(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    versioned(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    for bad in ("Disabled", "enabled", ""):
        with pytest.raises(ClientError) as info:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": bad})
        assert error(info) == (400, "MalformedXML")
    with pytest.raises(ClientError) as info:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"})
    assert error(info) == (501, "NotImplemented")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    with pytest.raises(ClientError) as info:
        s3.put_bucket_versioning(Bucket="_tunnelmesh", VersioningConfiguration={"Status": "Enabled"})
    assert error(info)[0] in (400, 403)


def test_a_bucket_never_versioned_answers_no_version_ids(s3, bucket) -> None:
    key = new_key()
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"one")
    assert "VersionId" not in put
    assert "VersionId" not in s3.get_object(Bucket=bucket, Key=key)
    assert body(s3, bucket, key, "null") == b"one"  # the one version there is is the null one
    deleted = s3.delete_object(Bucket=bucket, Key=key)
    assert "VersionId" not in deleted and "DeleteMarker" not in deleted
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key)
    assert error(info) == (404, "NoSuchKey")
    assert "x-amz-delete-marker" not in info.value.response["ResponseMetadata"]["HTTPHeaders"]


def test_every_write_makes_a_version_that_reads_back_by_its_id(s3, bucket) -> None:
    versioned(s3, bucket)
    key = new_key()
    ids = [s3.put_object(Bucket=bucket, Key=key, Body=f"content {i}".encode())["VersionId"] for i in range(3)]
    assert all(VERSION_ID.fullmatch(v) for v in ids) and len(set(ids)) == 3
    assert ids == sorted(ids)  # ids of a key order as its versions (their seq leads)
    for i, v in enumerate(ids):
        got = s3.get_object(Bucket=bucket, Key=key, VersionId=v)
        assert got["Body"].read() == f"content {i}".encode()
        assert got["VersionId"] == v
        assert s3.head_object(Bucket=bucket, Key=key, VersionId=v)["VersionId"] == v
    current = s3.get_object(Bucket=bucket, Key=key)
    assert current["VersionId"] == ids[-1] and current["Body"].read() == b"content 2"
    # an id of ours that names nothing, and one that cannot be ours
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key, VersionId="0" * 24)
    assert error(info) == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key, VersionId="not-a-version")
    assert error(info) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as info:  # 24 hex digits, but a seq past what a 64-bit column holds
        s3.delete_object(Bucket=bucket, Key=key, VersionId="f" * 16 + "0" * 8)
    assert error(info) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key, VersionId="null")
    assert error(info) == (404, "NoSuchVersion")


def test_a_delete_leaves_a_marker_and_deleting_the_marker_undeletes(s3, bucket) -> None:
    versioned(s3, bucket)
    key = new_key()
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"precious")["VersionId"]
    gone = s3.delete_object(Bucket=bucket, Key=key)
    assert gone["DeleteMarker"] is True and VERSION_ID.fullmatch(gone["VersionId"])
    marker = gone["VersionId"]
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key)
    assert error(info) == (404, "NoSuchKey")
    h = info.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert h["x-amz-delete-marker"] == "true" and h["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key=key, VersionId=marker)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert body(s3, bucket, key, v1) == b"precious"  # the old version is still there
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 0
    # a second delete stacks a second marker
    marker2 = s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
    assert marker2 != marker
    for m in (marker2, marker):
        undo = s3.delete_object(Bucket=bucket, Key=key, VersionId=m)
        assert undo["DeleteMarker"] is True and undo["VersionId"] == m
    assert body(s3, bucket, key) == b"precious"
    assert s3.get_object(Bucket=bucket, Key=key)["VersionId"] == v1


def test_deleting_the_current_version_by_id_makes_the_previous_one_current(s3, bucket) -> None:
    versioned(s3, bucket)
    key = new_key()
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"first")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key=key, Body=b"second")["VersionId"]
    r = s3.delete_object(Bucket=bucket, Key=key, VersionId=v2)
    assert r["VersionId"] == v2 and "DeleteMarker" not in r
    assert body(s3, bucket, key) == b"first"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key, VersionId=v2)
    assert error(info) == (404, "NoSuchVersion")
    # deleting a version that is gone is no error (a retried delete succeeds)
    assert s3.delete_object(Bucket=bucket, Key=key, VersionId=v2)["ResponseMetadata"]["HTTPStatusCode"] == 204
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key)
    assert error(info) == (404, "NoSuchKey")
    assert "x-amz-delete-marker" not in info.value.response["ResponseMetadata"]["HTTPHeaders"]


def test_suspended_writes_replace_the_null_version_and_keep_the_others(s3, bucket) -> None:
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"from before versioning")  # the null version
    versioned(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"enabled")["VersionId"]
    assert body(s3, bucket, key, "null") == b"from before versioning"
    versioned(s3, bucket, "Suspended")
    put = s3.put_object(Bucket=bucket, Key=key, Body=b"suspended 1")
    assert "VersionId" not in put  # as S3: a suspended bucket's write names no version
    assert body(s3, bucket, key, "null") == b"suspended 1"  # the old null version was replaced
    assert body(s3, bucket, key, v1) == b"enabled"
    s3.put_object(Bucket=bucket, Key=key, Body=b"suspended 2")
    assert body(s3, bucket, key) == b"suspended 2"
    gone = s3.delete_object(Bucket=bucket, Key=key)
    assert gone["DeleteMarker"] is True and gone["VersionId"] == "null"
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key=key, VersionId="null")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405
    assert body(s3, bucket, key, v1) == b"enabled"
    s3.delete_object(Bucket=bucket, Key=key, VersionId="null")  # the null marker goes: v1 is current again
    assert body(s3, bucket, key) == b"enabled"


def test_copies_read_a_version_and_write_a_new_one(s3, bucket) -> None:
    versioned(s3, bucket)
    key, dest = new_key(), new_key()
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"old")["VersionId"]
    s3.put_object(Bucket=bucket, Key=key, Body=b"new")
    r = s3.copy_object(Bucket=bucket, Key=dest, CopySource={"Bucket": bucket, "Key": key, "VersionId": v1})
    assert r["CopySourceVersionId"] == v1 and VERSION_ID.fullmatch(r["VersionId"])
    assert body(s3, bucket, dest) == b"old"
    # copying an older version onto its own key restores it as the newest version
    restored = s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key, "VersionId": v1})
    assert body(s3, bucket, key) == b"old"
    assert s3.get_object(Bucket=bucket, Key=key)["VersionId"] == restored["VersionId"] != v1
    marker = s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=bucket, Key=dest, CopySource={"Bucket": bucket, "Key": key, "VersionId": marker})
    assert error(info) == (400, "InvalidRequest")
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket=bucket, Key=dest, CopySource={"Bucket": bucket, "Key": key})
    assert error(info) == (404, "NoSuchKey")
    # UploadPartCopy from a version
    up = s3.create_multipart_upload(Bucket=bucket, Key=dest)["UploadId"]
    part = s3.upload_part_copy(
        Bucket=bucket, Key=dest, UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": key, "VersionId": v1}
    )
    assert part["CopySourceVersionId"] == v1
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key=dest,
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]},
    )
    assert VERSION_ID.fullmatch(done["VersionId"])
    assert body(s3, bucket, dest) == b"old"
    assert s3.get_object(Bucket=bucket, Key=dest)["VersionId"] == done["VersionId"]


def test_a_retried_complete_answers_the_same_version(s3, bucket) -> None:
    versioned(s3, bucket)
    key = new_key()
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=b"x" * 100)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    first = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload=parts)
    again = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload=parts)
    assert first["VersionId"] == again["VersionId"]
    assert VERSION_ID.fullmatch(first["VersionId"])


def test_delete_objects_makes_markers_and_deletes_versions(s3, bucket) -> None:
    versioned(s3, bucket)
    a, b = new_key(), new_key()
    va = s3.put_object(Bucket=bucket, Key=a, Body=b"a")["VersionId"]
    vb = s3.put_object(Bucket=bucket, Key=b, Body=b"b")["VersionId"]
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": a}, {"Key": b, "VersionId": vb}]})
    by_key = {d["Key"]: d for d in r["Deleted"]}
    assert by_key[a]["DeleteMarker"] is True and VERSION_ID.fullmatch(by_key[a]["DeleteMarkerVersionId"])
    assert by_key[b]["VersionId"] == vb and "DeleteMarker" not in by_key[b]
    assert body(s3, bucket, a, va) == b"a"
    marker = by_key[a]["DeleteMarkerVersionId"]
    r = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": a, "VersionId": marker}, {"Key": a, "VersionId": "bad-id"}]}
    )
    assert r["Deleted"] == [{"Key": a, "VersionId": marker, "DeleteMarker": True}]
    assert [(e["Key"], e["Code"]) for e in r["Errors"]] == [(a, "NoSuchVersion")]
    assert body(s3, bucket, a) == b"a"


def test_usage_counts_every_version_and_the_quota_holds_them(s3, bucket, coordinator) -> None:
    versioned(s3, bucket)
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 1000)
    s3.put_object(Bucket=bucket, Key=key, Body=b"y" * 300)
    u = usage(coordinator, bucket)
    assert (u["used"], u["current_used"], u["noncurrent_used"], u["objects"]) == (1300, 300, 1000, 1)
    assert (u["noncurrent_versions"], u["versioning"]) == (1, "Enabled")
    s3.delete_object(Bucket=bucket, Key=key)
    u = usage(coordinator, bucket)
    assert (u["used"], u["current_used"], u["noncurrent_used"], u["objects"]) == (1300, 0, 1300, 0)
    assert u["noncurrent_versions"] == 3  # two versions and the marker
    cli(coordinator, "bucket", "quota", "set", bucket, "2000")
    with pytest.raises(ClientError) as info:  # the old versions count: 1300 + 800 > 2000
        s3.put_object(Bucket=bucket, Key=key, Body=b"z" * 800)
    assert error(info) == (403, "QuotaExceeded")
    s3.put_object(Bucket=bucket, Key=key, Body=b"z" * 700)
    cli(coordinator, "storage", "verify")  # exits 1 if a counter differs from a recount


def test_a_bucket_with_versions_is_not_empty_until_every_version_is_gone(s3, bucket, coordinator) -> None:
    versioned(s3, bucket)
    key = new_key()
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"data")["VersionId"]
    marker = s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=bucket)
    assert error(info) == (409, "BucketNotEmpty")
    s3.delete_object(Bucket=bucket, Key=key, VersionId=v1)
    with pytest.raises(ClientError) as info:
        s3.delete_bucket(Bucket=bucket)
    assert error(info) == (409, "BucketNotEmpty")  # the marker is still a version
    s3.delete_object(Bucket=bucket, Key=key, VersionId=marker)
    s3.delete_bucket(Bucket=bucket)


def test_a_forced_bucket_delete_removes_every_version(s3, coordinator) -> None:
    name = f"force-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    versioned(s3, name)
    for i in range(3):
        s3.put_object(Bucket=name, Key="k", Body=b"x" * (i + 1))
    s3.delete_object(Bucket=name, Key="k")
    cli(coordinator, "bucket", "delete", name, "--force")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    cli(coordinator, "storage", "verify")


def test_tags_of_a_noncurrent_version_are_its_own(s3, bucket) -> None:
    versioned(s3, bucket)
    key = new_key()
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"1", Tagging="gen=one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key=key, Body=b"2")["VersionId"]
    r = s3.put_object_tagging(Bucket=bucket, Key=key, VersionId=v1, Tagging={"TagSet": [{"Key": "gen", "Value": "1"}]})
    assert r["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=v1)["TagSet"] == [{"Key": "gen", "Value": "1"}]
    assert s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"] == []
    assert s3.get_object_tagging(Bucket=bucket, Key=key)["VersionId"] == v2
    marker = s3.delete_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError) as info:
        s3.put_object_tagging(Bucket=bucket, Key=key, VersionId=marker, Tagging={"TagSet": []})
    assert error(info) == (405, "MethodNotAllowed")


# ---- undelete from the CLI (docs/data-protection.md section 8, step 3) ----------------------------------


def test_the_cli_turns_versioning_on_lists_versions_and_undeletes(s3, bucket, coordinator) -> None:
    assert cli(coordinator, "bucket", "versioning", bucket, "status").strip().endswith("never enabled")
    assert cli(coordinator, "bucket", "versioning", bucket, "enable").strip().endswith("Enabled")
    key = f"etc/{new_key()}.conf"
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=b"good config")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key=key, Body=b"bad config")["VersionId"]
    s3.delete_object(Bucket=bucket, Key=key)  # the bad `sync --delete`
    s3.delete_object(Bucket=bucket, Key=key)  # twice: two markers stacked
    listed = json.loads(cli(coordinator, "object", "versions", f"{bucket}/etc/", "--json"))["versions"]
    assert [(v["key"], v["delete_marker"], v["latest"]) for v in listed] == [
        (key, True, True),
        (key, True, False),
        (key, False, False),
        (key, False, False),
    ]
    assert [v["version_id"] for v in listed[2:]] == [v2, v1]
    out = cli(coordinator, "object", "restore", f"{bucket}/{key}")
    assert "removed 2 delete markers" in out
    assert body(s3, bucket, key) == b"bad config"
    # the overwrite was the mistake too: bring the good version back as a new current one
    out = cli(coordinator, "object", "restore", f"{bucket}/{key}", "--version", v1)
    assert body(s3, bucket, key) == b"good config"
    new = s3.head_object(Bucket=bucket, Key=key)["VersionId"]
    assert new not in (v1, v2) and new in out
    assert body(s3, bucket, key, v2) == b"bad config"  # nothing was lost on the way
    r = coordinator.cli("object", "restore", f"{bucket}/{key}", timeout=60)
    assert r.returncode != 0 and "is not deleted" in r.stderr
    r = coordinator.cli("object", "restore", f"{bucket}/never-written", timeout=60)
    assert r.returncode != 0 and "no version to bring back" in r.stderr
    assert cli(coordinator, "bucket", "versioning", bucket, "suspend").strip().endswith("Suspended")
