"""Bucket operations through boto3 against a real coordinator."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest
import requests
from botocore.exceptions import ClientError
from conftest import referenced_and_queued, start_coordinator


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_created_bucket_is_listed_and_head_answers_with_region(s3) -> None:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"


def test_recreating_own_bucket_in_us_east_1_succeeds_and_changes_nothing(s3, bucket) -> None:
    """AWS's legacy answer in us-east-1 (the default region here): 200, the bucket untouched."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"


def test_recreating_own_bucket_elsewhere_is_bucket_already_owned_by_you(tmp_path) -> None:
    c = start_coordinator(tmp_path, "region: eu-mesh-1\n")
    try:
        s3 = c.client(region_name="eu-mesh-1")
        conf = {"LocationConstraint": "eu-mesh-1"}
        s3.create_bucket(Bucket="mine", CreateBucketConfiguration=conf)
        with pytest.raises(ClientError) as e:
            s3.create_bucket(Bucket="mine", CreateBucketConfiguration=conf)
        assert code(e) == "BucketAlreadyOwnedByYou"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    finally:
        c.stop()


def test_recreating_another_peers_bucket_is_bucket_already_exists(coordinator, s3, bucket) -> None:
    peer = json.loads(coordinator.cli("peer", "add", "other", "--json").stdout)
    other = boto3.client(
        "s3",
        endpoint_url=coordinator.endpoint,
        aws_access_key_id=peer["peer_id"],
        aws_secret_access_key=peer["token"],
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as e:
        other.create_bucket(Bucket=bucket)
    assert code(e) == "BucketAlreadyExists"


def test_list_buckets_pages_with_max_buckets_and_continuation_token(coordinator, s3) -> None:
    """ListBuckets paging (AWS, 2024): max-buckets, an opaque continuation token, prefix, bucket-region."""
    stem = f"pg-{uuid.uuid4().hex[:8]}"
    names = [f"{stem}-{i}" for i in range(5)]
    for n in names:
        s3.create_bucket(Bucket=n)
    seen, pages, kw = [], 0, {}
    while True:
        page = s3.list_buckets(MaxBuckets=2, Prefix=stem, **kw)
        pages += 1
        assert page["Prefix"] == stem
        seen += [b["Name"] for b in page["Buckets"]]
        if "ContinuationToken" not in page:
            break
        kw = {"ContinuationToken": page["ContinuationToken"]}
    assert (seen, pages) == (names, 3)
    assert [
        b["Name"]
        for b in s3.get_paginator("list_buckets").paginate(Prefix=stem, MaxBuckets=1).build_full_result()["Buckets"]
    ] == names
    assert [b["Name"] for b in s3.list_buckets(Prefix=stem, BucketRegion="us-east-1")["Buckets"]] == names
    assert s3.list_buckets(Prefix=stem, BucketRegion="eu-west-1")["Buckets"] == []
    for bad in ("0", "10001", "x", "%C2%B2", "9" * 5000):
        r = requests.get(f"{coordinator.endpoint}/?max-buckets={bad}", auth=("admin", coordinator.token), timeout=30)
        assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, (bad, r.text)


@pytest.mark.parametrize("name", ["ab", "Bad_Name", "UPPER", "-lead", "trail-", "a..b", "192.168.1.1", "x" * 64])
def test_invalid_bucket_names_are_rejected(s3, name) -> None:
    client = s3
    # botocore validates some names itself; send the rest to the server
    try:
        client.create_bucket(Bucket=name)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidBucketName"
    except Exception as e:
        assert "Invalid bucket name" in str(e)
    else:
        pytest.fail(f"bucket {name!r} was created")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_location_constraint_of_own_region_is_accepted_and_reported(s3) -> None:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] in (None, "")


def test_location_constraint_of_another_region_is_refused(s3) -> None:
    with pytest.raises(ClientError) as e:
        s3.create_bucket(
            Bucket=f"b-{uuid.uuid4().hex[:12]}", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
        )
    assert code(e) == "IllegalLocationConstraintException"


def test_delete_non_empty_bucket_is_bucket_not_empty_then_succeeds_when_empty(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert code(e) == "BucketNotEmpty"
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_delete_bucket_aborts_its_pending_multipart_uploads(coordinator, s3, bucket) -> None:
    """As on AWS: an upload in progress does not keep a bucket alive (tools that empty a bucket list
    its objects, never its uploads); it is aborted with the bucket, its parts' space and files freed."""
    up = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=1, Body=b"p" * 100_000)
    before, _ = referenced_and_queued(coordinator.data_dir)
    s3.delete_bucket(Bucket=bucket)
    after, queued = referenced_and_queued(coordinator.data_dir)
    part_blobs = before - after
    assert len(part_blobs) == 1 and part_blobs <= queued
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.create_bucket(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=2, Body=b"late")
    assert code(e) == "NoSuchUpload"
    assert coordinator.cli("storage", "verify").returncode == 0


def test_missing_bucket_is_no_such_bucket(s3) -> None:
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="no-such-bucket-here")
    assert code(e) == "NoSuchBucket"
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="no-such-bucket-here")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_bucket_acl_grants_owner_full_control(s3, bucket) -> None:
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Owner"]["ID"] == "admin"
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_versioning_is_reported_as_never_enabled(s3, bucket) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


def test_unimplemented_bucket_operation_is_501(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        s3.get_bucket_website(Bucket=bucket)
    assert code(e) == "NotImplemented"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
