"""Object operations through boto3 (current release, default checksums) against a real coordinator."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

AWKWARD_KEYS = ["a b", "a+b", "100%", "&+-é\"'", "//x", "./..", "dir/", "ключ/日本語", "tab\there", "~tilde"]


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_put_get_roundtrip_keeps_bytes_metadata_and_headers(s3, bucket) -> None:
    body = os.urandom(1000)
    put = s3.put_object(
        Bucket=bucket,
        Key="obj",
        Body=body,
        Metadata={"color": "blue"},
        ContentType="image/png",
        ContentDisposition='attachment; filename="x.png"',
        CacheControl="max-age=60",
        ContentEncoding="gzip",
    )
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == body
    assert got["Metadata"] == {"color": "blue"}
    assert got["ContentType"] == "image/png"
    assert got["ContentDisposition"] == 'attachment; filename="x.png"'
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentEncoding"] == "gzip"
    assert got["ContentLength"] == 1000
    assert got["ETag"] == put["ETag"]
    assert "VersionId" not in got


def test_default_content_type_is_binary_octet_stream(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="k")["ContentType"] == "binary/octet-stream"


@pytest.mark.parametrize("key", AWKWARD_KEYS)
def test_awkward_keys_roundtrip_and_list_exactly(s3, bucket, key) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == [key]


def test_empty_object_roundtrip(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'


def test_head_returns_length_etag_and_last_modified(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"12345")
    head = s3.head_object(Bucket=bucket, Key="k")
    assert head["ContentLength"] == 5
    assert head["ETag"] == f'"{hashlib.md5(b"12345").hexdigest()}"'
    assert abs(head["LastModified"].timestamp() - time.time()) < 60
    assert head["ResponseMetadata"]["HTTPHeaders"]["accept-ranges"] == "bytes"


def test_overwrite_replaces_content(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second version")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"second version"


def test_missing_key_is_no_such_key_and_head_is_404(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert code(e) == "NoSuchKey"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="nope")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_object_is_idempotent(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_delete_objects_verbose_and_quiet(s3, bucket) -> None:
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    res = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "a"}, {"Key": "missing"}]})
    assert sorted(d["Key"] for d in res["Deleted"]) == ["a", "missing"]
    quiet = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "b"}], "Quiet": True})
    assert "Deleted" not in quiet
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["c"]


def test_delete_objects_with_control_characters_in_keys(s3, bucket) -> None:
    key = "line\nbreak\r"
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}]})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_over_1000_keys_is_malformed(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert code(e) == "MalformedXML"


@pytest.mark.parametrize(
    ("rng", "expected", "content_range"),
    [
        ("bytes=0-4", b"01234", "bytes 0-4/10"),
        ("bytes=5-", b"56789", "bytes 5-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=8-100", b"89", "bytes 8-9/10"),
        ("bytes=-100", b"0123456789", "bytes 0-9/10"),
    ],
)
def test_ranges(s3, bucket, rng, expected, content_range) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="r", Range=rng)
    assert got["Body"].read() == expected
    assert got["ContentRange"] == content_range
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert "ChecksumCRC32" not in got


@pytest.mark.parametrize("rng", ["bytes=10-", "bytes=-0", "bytes=20-30"])
def test_unsatisfiable_range_is_416_invalid_range(s3, bucket, rng) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range=rng)
    assert code(e) == "InvalidRange"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == "bytes */10"


def test_malformed_range_returns_whole_object(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="r", Body=b"0123456789")
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=0-1,4-5")
    assert got["Body"].read() == b"0123456789"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_response_overrides(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ContentType="text/plain")
    got = s3.get_object(
        Bucket=bucket,
        Key="k",
        ResponseContentType="application/json",
        ResponseContentDisposition="inline",
        ResponseCacheControl="no-cache",
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "inline"
    assert got["CacheControl"] == "no-cache"


def test_conditional_get(s3, bucket) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="k", IfMatch=etag)["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfMatch='"0000"')
    assert code(e) == "PreconditionFailed"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfNoneMatch=etag)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    future = datetime.now(UTC) + timedelta(hours=1)
    past = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfModifiedSince=future)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.get_object(Bucket=bucket, Key="k", IfModifiedSince=past)["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", IfUnmodifiedSince=past)
    assert code(e) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="k", IfUnmodifiedSince=future)["Body"].read() == b"x"


def test_if_none_match_star_creates_only_if_absent(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="lock", Body=b"owner-1", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="lock", Body=b"owner-2", IfNoneMatch="*")
    assert code(e) == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="lock")["Body"].read() == b"owner-1"


def test_if_match_on_put_is_compare_and_swap(s3, bucket) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=etag)
    assert code(e) == "PreconditionFailed"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="absent", Body=b"v", IfMatch=etag)
    assert code(e) == "NoSuchKey"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v2"


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"])
def test_additional_checksums_are_verified_stored_and_returned(s3, bucket, algorithm) -> None:
    body = os.urandom(3000)
    put = s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm=algorithm)
    value = put[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert got["Body"].read() == body
    assert got[f"Checksum{algorithm}"] == value
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == value


def test_crc32_value_matches_zlib(s3, bucket) -> None:
    body = b"hello checksum"
    s3.put_object(Bucket=bucket, Key="c", Body=body, ChecksumAlgorithm="CRC32")
    expected = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    assert s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")["ChecksumCRC32"] == expected


def test_wrong_checksum_is_bad_digest_and_stores_nothing(s3, bucket) -> None:
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c", Body=b"data", ChecksumCRC32=wrong)
    assert code(e) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="c")


def test_wrong_content_md5_is_bad_digest_and_stores_nothing(s3, bucket) -> None:
    md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="m", Body=b"data", ContentMD5=md5)
    assert code(e) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="m")


def test_right_content_md5_is_accepted(s3, bucket) -> None:
    md5 = base64.b64encode(hashlib.md5(b"data").digest()).decode()
    s3.put_object(Bucket=bucket, Key="m", Body=b"data", ContentMD5=md5)
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"data"


def test_key_over_1024_bytes_is_rejected(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code(e) == "KeyTooLongError"
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")


def test_user_metadata_over_2kb_is_rejected(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", Metadata={"big": "v" * 2100})
    assert code(e) == "MetadataTooLarge"


def test_version_id_null_is_accepted_and_other_version_ids_are_not(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ")
    assert code(e) == "InvalidArgument"


def test_object_acl_answers_owner_full_control(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    acl = s3.get_object_acl(Bucket=bucket, Key="k")
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_unimplemented_object_operation_is_501(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.restore_object(Bucket=bucket, Key="k", RestoreRequest={"Days": 1})  # there is no archive tier
    assert code(e) == "NotImplemented"


def test_when_required_client_works(coordinator, bucket) -> None:
    s3 = coordinator.client(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    s3.put_object(Bucket=bucket, Key="k", Body=b"plain")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"plain"
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_root_listener_serves_the_same_store(coordinator, s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"via prefix")
    root = coordinator.client(endpoint=coordinator.root_endpoint)
    assert root.get_object(Bucket=bucket, Key="k")["Body"].read() == b"via prefix"


def test_empty_put_with_expect_continue_does_not_break_the_next_request(coordinator, bucket) -> None:
    # botocore sends Expect: 100-continue even for an empty body; answered without a 100, it used to
    # misread the next response on the same connection (boto/botocore#3755) and stall
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=coordinator.endpoint,
        aws_access_key_id="admin",
        aws_secret_access_key=coordinator.token,
        region_name="us-east-1",
        config=Config(read_timeout=3, max_pool_connections=1, retries={"mode": "legacy", "max_attempts": 0}),
    )
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    second = s3.put_object(Bucket=bucket, Key="next", Body=b"x")
    assert second["ETag"] == f'"{hashlib.md5(b"x").hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="next")["Body"].read() == b"x"


def test_delete_with_if_match_deletes_only_the_version_it_names(s3, bucket) -> None:
    """Conditional deletes (S3, 2024): a wrong ETag must never delete, it once did (found in review)."""
    etag = s3.put_object(Bucket=bucket, Key="cond", Body=b"v1")["ETag"]
    stale = '"' + "0" * 32 + '"'

    def delete_if(value: str) -> None:
        def add(request, **_: object) -> None:
            request.headers["If-Match"] = value

        s3.meta.events.register_first("before-sign.s3.DeleteObject", add)
        try:
            s3.delete_object(Bucket=bucket, Key="cond")
        finally:
            s3.meta.events.unregister("before-sign.s3.DeleteObject", add)

    with pytest.raises(ClientError) as e:
        delete_if(stale)
    assert (e.value.response["Error"]["Code"], e.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (
        "PreconditionFailed",
        412,
    )
    assert s3.get_object(Bucket=bucket, Key="cond")["Body"].read() == b"v1"
    delete_if(etag)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="cond")
    with pytest.raises(ClientError) as e:
        delete_if(etag)
    assert e.value.response["Error"]["Code"] == "NoSuchKey"


def test_delete_objects_honours_each_objects_etag(s3, bucket) -> None:
    good = s3.put_object(Bucket=bucket, Key="a", Body=b"a")["ETag"]
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    s3.put_object(Bucket=bucket, Key="c", Body=b"c")
    res = s3.delete_objects(
        Bucket=bucket,
        Delete={
            "Objects": [{"Key": "a", "ETag": good}, {"Key": "b", "ETag": '"' + "0" * 32 + '"'}, {"Key": "c"}],
        },
    )
    assert sorted(d["Key"] for d in res["Deleted"]) == ["a", "c"]
    assert [(e["Key"], e["Code"]) for e in res["Errors"]] == [("b", "PreconditionFailed")]
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert left == ["b"]


@pytest.mark.parametrize(
    ("sent", "kept"), [("deflate, gzip", "deflate, gzip"), ("gzip,br", "gzip,br"), (" gzip ,  br", "gzip ,  br")]
)
def test_content_encoding_is_stored_byte_for_byte(s3, bucket, sent: str, kept: str) -> None:
    s3.put_object(Bucket=bucket, Key="enc", Body=b"x", ContentEncoding=sent)
    assert s3.head_object(Bucket=bucket, Key="enc")["ContentEncoding"] == kept
