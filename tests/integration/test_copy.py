"""CopyObject: metadata directive, self-copy rule, preconditions, cross-bucket, awkward keys."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError


def test_copy_keeps_metadata_by_default(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", Metadata={"a": "1"}, ContentType="text/x")
    res = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert res["CopyObjectResult"]["ETag"] == s3.head_object(Bucket=bucket, Key="src")["ETag"]
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == b"data"
    assert got["Metadata"] == {"a": "1"} and got["ContentType"] == "text/x"


def test_copy_replace_takes_metadata_from_the_request(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"data", Metadata={"a": "1"})
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="text/y",
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert head["Metadata"] == {"b": "2"} and head["ContentType"] == "text/y"


def test_copy_onto_itself_needs_replace(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", Metadata={"a": "1"})
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k"})
    assert e.value.response["Error"]["Code"] == "InvalidRequest"
    s3.copy_object(
        Bucket=bucket,
        Key="k",
        CopySource={"Bucket": bucket, "Key": "k"},
        MetadataDirective="REPLACE",
        Metadata={"a": "2"},
    )
    assert s3.head_object(Bucket=bucket, Key="k")["Metadata"] == {"a": "2"}
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


def test_cross_bucket_copy_with_awkward_key(s3, bucket) -> None:
    other = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=other)
    key = "dir/a b+c%é"
    s3.put_object(Bucket=bucket, Key=key, Body=b"payload")
    s3.copy_object(Bucket=other, Key=key, CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=other, Key=key)["Body"].read() == b"payload"


def test_copy_source_preconditions(s3, bucket) -> None:
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"data")["ETag"]
    src = {"Bucket": bucket, "Key": "src"}
    s3.copy_object(Bucket=bucket, Key="ok", CopySource=src, CopySourceIfMatch=etag)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="no", CopySource=src, CopySourceIfMatch='"nope"')
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="no", CopySource=src, CopySourceIfNoneMatch=etag)
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="no")


def test_copy_of_missing_source_is_no_such_key(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "missing"})
    assert e.value.response["Error"]["Code"] == "NoSuchKey"


def test_copy_keeps_checksum_algorithm(s3, bucket) -> None:
    put = s3.put_object(Bucket=bucket, Key="src", Body=b"data", ChecksumAlgorithm="SHA256")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == put["ChecksumSHA256"]
