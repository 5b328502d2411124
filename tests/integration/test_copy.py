"""CopyObject: metadata directive, self-copy rule, preconditions, cross-bucket, awkward keys."""

from __future__ import annotations

import base64
import http.client
import uuid

import pytest
from botocore.exceptions import ClientError
from conftest import Coordinator


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


# --- x-amz-copy-source is URL-encoded: a literal "?" starts the version, %3F is part of the key ---------------

COPY_KEYS = ["what?x", "q?versionId=abc", "100%", "%3F", "a+b", "a b", "ключ/日本語", "/lead", "end?"]


def raw_copy(c: Coordinator, bucket: str, key: str, source: str) -> tuple[int, bytes]:
    """A CopyObject whose x-amz-copy-source is sent exactly as given (boto3 would quote it)."""
    token = base64.b64encode(f"admin:{c.token}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
    try:
        conn.request(
            "PUT", f"/s3/{bucket}/{key}", headers={"Authorization": f"Basic {token}", "x-amz-copy-source": source}
        )
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@pytest.mark.parametrize("key", COPY_KEYS)
def test_copy_object_from_awkward_keys(s3, bucket, key) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == key.encode()
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource={"Bucket": bucket, "Key": key, "VersionId": "null"})
    assert s3.get_object(Bucket=bucket, Key="dst2")["Body"].read() == key.encode()


@pytest.mark.parametrize("key", COPY_KEYS)
def test_upload_part_copy_from_awkward_keys(s3, bucket, key) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    up = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    res = s3.upload_part_copy(
        Bucket=bucket, Key="dst", UploadId=up, PartNumber=1, CopySource={"Bucket": bucket, "Key": key}
    )
    parts = [{"PartNumber": 1, "ETag": res["CopyPartResult"]["ETag"]}]
    s3.complete_multipart_upload(Bucket=bucket, Key="dst", UploadId=up, MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == key.encode()


def test_copy_source_another_version_than_null_is_refused(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="a?b", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "a?b", "VersionId": "v1"})
    assert e.value.response["Error"]["Code"] == "InvalidArgument"


@pytest.mark.parametrize(
    ("source", "copied"),
    [
        ("{b}/plain", "plain"),  # no leading slash
        ("/{b}/plain", "plain"),
        ("/{b}/a%3Fb", "a?b"),
        ("{b}/a%3Fb?versionId=null", "a?b"),
        ("{b}/a+b", "a b"),  # a literal "+" is a space, as S3 decodes it
        ("{b}/a%2Bb", "a+b"),
        ("{b}/a%20b", "a b"),
        ("{b}/100%25", "100%"),
        ("{b}%2Fplain", "plain"),  # the whole value is URL-encoded, its "/" too
        ("{b}/%D0%BA%D0%BB%D1%8E%D1%87", "ключ"),
    ],
)
def test_raw_copy_source_is_split_at_a_literal_question_mark_then_decoded(
    coordinator, s3, bucket, source, copied
) -> None:
    for key in ("plain", "a?b", "a b", "a+b", "100%", "ключ"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    status, body = raw_copy(coordinator, bucket, "dst", source.format(b=bucket))
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == copied.encode()


def test_raw_copy_source_with_a_version_other_than_null_is_refused(coordinator, s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    status, body = raw_copy(coordinator, bucket, "dst", f"{bucket}/k?versionId=3HL4kqtJlcpXroDTDmJ")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
