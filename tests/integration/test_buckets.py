"""Bucket operations through boto3 against a real coordinator."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import referenced_and_queued


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_created_bucket_is_listed_and_head_answers_with_region(s3) -> None:
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    head = s3.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"


def test_recreating_own_bucket_is_bucket_already_owned_by_you(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=bucket)
    assert code(e) == "BucketAlreadyOwnedByYou"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


@pytest.mark.parametrize("name", ["ab", "Bad_Name", "UPPER", "-lead", "trail-", "a..b", "192.168.1.1", "x" * 64])
def test_invalid_bucket_names_are_rejected(s3, name) -> None:
    client = s3
    # botocore validates some names itself; send the rest to the server
    try:
        client.create_bucket(Bucket=name)
    except ClientError as e:
        assert e.response["Error"]["Code"] == "InvalidBucketName"
    except Exception as e:  # noqa: BLE001 - botocore's own client-side validation
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
        s3.get_bucket_policy(Bucket=bucket)
    assert code(e) == "NotImplemented"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
