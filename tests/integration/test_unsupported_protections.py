"""A request for a protection the server does not give (encryption, storage classes, ACLs; object lock in
a bucket created without it) is refused with S3's error for it, and nothing is stored: a client must never
believe it got a locked, encrypted or shared object. `private` and `bucket-owner-full-control` (what a bucket with
enforced bucket-owner ownership accepts) and STANDARD still work.

Every case runs through boto3 against a real coordinator, so the headers are the ones real clients send.
"""

from __future__ import annotations

import base64
import http.client
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import bucket_exists

SSE_C_KEY = "k" * 32  # boto3 base64-encodes it and adds the key MD5
NOT_IMPL = ("NotImplemented", 501)
NO_ACLS = ("AccessControlListNotSupported", 400)
# a public ACL meets the bucket's public access block first (on for every new bucket, as on AWS): refused all the
# same, 403 before the 400 it would get once the block is lifted (tests/integration/test_public_access.py)
BLOCKED = ("AccessDenied", 403)


@pytest.fixture(scope="module")
def src_bucket(s3) -> str:
    name = f"prot-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="source", Body=b"source bytes")
    return name


def _put(s3, b: str, key: str, params: dict[str, Any]) -> Any:
    return s3.put_object(Bucket=b, Key=key, Body=b"payload that must not be stored", **params)


def _copy(s3, b: str, key: str, params: dict[str, Any]) -> Any:
    return s3.copy_object(Bucket=b, Key=key, CopySource={"Bucket": b, "Key": "source"}, **params)


def _create_upload(s3, b: str, key: str, params: dict[str, Any]) -> Any:
    return s3.create_multipart_upload(Bucket=b, Key=key, **params)


def _upload(s3, b: str, key: str) -> str:
    return s3.create_multipart_upload(Bucket=b, Key=key)["UploadId"]


def _upload_part(s3, b: str, key: str, params: dict[str, Any]) -> Any:
    up = _upload(s3, b, key)
    return s3.upload_part(Bucket=b, Key=key, UploadId=up, PartNumber=1, Body=b"part bytes", **params)


def _upload_part_copy(s3, b: str, key: str, params: dict[str, Any]) -> Any:
    up = _upload(s3, b, key)
    return s3.upload_part_copy(
        Bucket=b, Key=key, UploadId=up, PartNumber=1, CopySource={"Bucket": b, "Key": "source"}, **params
    )


OPS: dict[str, Callable[..., Any]] = {
    "PutObject": _put,
    "CopyObject": _copy,
    "CreateMultipartUpload": _create_upload,
    "UploadPart": _upload_part,
    "UploadPartCopy": _upload_part_copy,
}
OBJECT_WRITES = ("PutObject", "CopyObject", "CreateMultipartUpload")

# (what, boto3 parameters, operations, expected (code, status))
REFUSED: list[tuple[str, dict[str, Any], tuple[str, ...], tuple[str, int]]] = [
    ("sse-s3", {"ServerSideEncryption": "AES256"}, OBJECT_WRITES, NOT_IMPL),
    ("sse-kms", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "some-key"}, OBJECT_WRITES, NOT_IMPL),
    (
        "sse-kms-context",
        {"ServerSideEncryption": "aws:kms", "SSEKMSEncryptionContext": base64.b64encode(b'{"a":"b"}').decode()},
        ("PutObject",),
        NOT_IMPL,
    ),
    ("sse-bucket-key", {"BucketKeyEnabled": True}, OBJECT_WRITES, NOT_IMPL),
    (
        "sse-c",
        {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": SSE_C_KEY},
        (*OBJECT_WRITES, "UploadPart", "UploadPartCopy"),
        NOT_IMPL,
    ),
    (
        "copy-source-sse-c",
        {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": SSE_C_KEY},
        ("CopyObject", "UploadPartCopy"),
        NOT_IMPL,
    ),
    # object lock is served (tests/integration/test_object_lock.py): asked for in a bucket without it, refused
    ("legal-hold", {"ObjectLockLegalHoldStatus": "ON"}, OBJECT_WRITES, ("InvalidRequest", 400)),
    ("storage-class-glacier", {"StorageClass": "GLACIER"}, OBJECT_WRITES, NOT_IMPL),
    ("storage-class-ia", {"StorageClass": "STANDARD_IA"}, OBJECT_WRITES, NOT_IMPL),
    ("storage-class-unknown", {"StorageClass": "NOT_A_CLASS"}, ("PutObject",), ("InvalidStorageClass", 400)),
    ("acl-public-read", {"ACL": "public-read"}, OBJECT_WRITES, BLOCKED),
    ("acl-authenticated-read", {"ACL": "authenticated-read"}, ("PutObject",), BLOCKED),
    ("grant-read", {"GrantRead": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'}, OBJECT_WRITES, BLOCKED),
    ("grant-full-control", {"GrantFullControl": "id=someone"}, OBJECT_WRITES, NO_ACLS),
]
REFUSED_CASES = [(what, op, params, expected) for what, params, ops, expected in REFUSED for op in ops]


def nothing_stored(s3, b: str, key: str) -> None:
    try:
        s3.head_object(Bucket=b, Key=key)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    else:
        raise AssertionError(f"{key} was stored")
    uploads = s3.list_multipart_uploads(Bucket=b, Prefix=key).get("Uploads", [])
    for u in uploads:  # UploadPart/UploadPartCopy cases make an upload themselves: it must hold no part
        assert s3.list_parts(Bucket=b, Key=key, UploadId=u["UploadId"]).get("Parts", []) == []
        s3.abort_multipart_upload(Bucket=b, Key=key, UploadId=u["UploadId"])


@pytest.mark.parametrize(
    ("what", "op", "params", "expected"), REFUSED_CASES, ids=[f"{op}-{what}" for what, op, _, _ in REFUSED_CASES]
)
def test_a_request_for_an_unsupported_protection_is_refused_and_stores_nothing(
    s3,
    src_bucket: str,
    what: str,
    op: str,
    params: dict[str, Any],
    expected: tuple[str, int],
) -> None:
    key = f"{op}-{what}-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as info:
        OPS[op](s3, src_bucket, key, params)
    code, status = expected
    assert info.value.response["Error"]["Code"] == code, info.value.response
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    if op == "CreateMultipartUpload":
        assert s3.list_multipart_uploads(Bucket=src_bucket, Prefix=key).get("Uploads", []) == []
    nothing_stored(s3, src_bucket, key)
    s3.head_object(Bucket=src_bucket, Key="source")  # the server still serves (and the source is intact)


ACCEPTED = [
    ("acl-private", {"ACL": "private"}),
    ("acl-bucket-owner-full-control", {"ACL": "bucket-owner-full-control"}),
    ("storage-class-standard", {"StorageClass": "STANDARD"}),
    ("tagging", {"Tagging": "a=b"}),  # tags are kept (tests/integration/test_tagging.py)
]


@pytest.mark.parametrize(("what", "params"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
@pytest.mark.parametrize("op", ["PutObject", "CopyObject"])
def test_the_protections_the_server_does_give_are_accepted(
    s3, src_bucket: str, op: str, what: str, params: dict[str, Any]
) -> None:
    key = f"ok-{op}-{what}-{uuid.uuid4().hex[:8]}"
    OPS[op](s3, src_bucket, key, params)
    head = s3.head_object(Bucket=src_bucket, Key=key)
    assert head["ContentLength"] > 0


def test_a_copy_keeping_the_source_tags_ignores_x_amz_tagging_as_s3_does(s3, src_bucket: str) -> None:
    _copy(s3, src_bucket, "copy-tagging-copy", {"Tagging": "a=b"})
    assert s3.get_object(Bucket=src_bucket, Key="copy-tagging-copy")["Body"].read() == b"source bytes"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"ACL": "public-read"}, BLOCKED),
        ({"ACL": "public-read-write"}, BLOCKED),
        ({"GrantWrite": "id=someone"}, NO_ACLS),
        ({"ObjectOwnership": "ObjectWriter"}, NOT_IMPL),
        ({"ObjectOwnership": "BucketOwnerPreferred"}, NOT_IMPL),
    ],
    ids=[
        "acl-public-read",
        "acl-public-read-write",
        "grant-write",
        "ownership-writer",
        "ownership-pref",
    ],
)
def test_create_bucket_asking_for_acls_is_refused_and_creates_nothing(
    s3, params: dict[str, Any], expected: tuple[str, int]
) -> None:
    name = f"prot-b-{uuid.uuid4().hex[:12]}"
    with pytest.raises(ClientError) as info:
        s3.create_bucket(Bucket=name, **params)
    assert info.value.response["Error"]["Code"] == expected[0], info.value.response
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == expected[1]
    assert not bucket_exists(s3, name)


@pytest.mark.parametrize(
    "params",
    [{"ACL": "private"}, {"ObjectLockEnabledForBucket": False}, {"ObjectOwnership": "BucketOwnerEnforced"}],
    ids=["acl-private", "lock-false", "ownership-enforced"],
)
def test_create_bucket_with_what_the_server_gives_succeeds(s3, params: dict[str, Any]) -> None:
    name = f"prot-ok-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, **params)
    assert bucket_exists(s3, name)


def _raw(coordinator, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"") -> tuple[int, bytes]:
    """A request with repeated headers, which boto3 cannot send (Basic: the secret covers it all)."""
    conn = http.client.HTTPConnection("127.0.0.1", coordinator.port, timeout=30)
    try:
        conn.putrequest(method, f"/s3{path}")
        token = base64.b64encode(f"admin:{coordinator.token}".encode()).decode()
        for name, value in [("Authorization", f"Basic {token}"), ("Content-Length", str(len(body))), *headers]:
            conn.putheader(name, value)
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_a_protection_header_sent_twice_is_still_refused(coordinator, s3, src_bucket: str) -> None:
    """Repeated headers arrive joined with commas ("true,true"): a check for one exact value let them by."""
    name = f"prot-dup-{uuid.uuid4().hex[:12]}"
    lock = [("x-amz-bucket-object-lock-enabled", "true")] * 2
    status, body = _raw(coordinator, "PUT", f"/{name}", lock)
    assert (status, b"<Code>InvalidArgument</Code>" in body) == (400, True), body  # neither true nor false
    assert not bucket_exists(s3, name)

    key = f"dup-{uuid.uuid4().hex[:8]}"
    copy = [
        ("x-amz-copy-source", f"/{src_bucket}/source"),
        ("x-amz-tagging", "a=b"),
        ("x-amz-tagging-directive", "REPLACE"),
        ("x-amz-tagging-directive", "REPLACE"),
    ]
    status, body = _raw(coordinator, "PUT", f"/{src_bucket}/{key}", copy)
    # "REPLACE,REPLACE" is no directive at all
    assert (status, b"<Code>InvalidArgument</Code>" in body) == (400, True), body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=src_bucket, Key=key)


def test_an_append_at_an_offset_is_refused_and_never_replaces_the_object(s3, src_bucket: str) -> None:
    key = f"append-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=src_bucket, Key=key, Body=b"hello")

    def add_offset(request, **_: Any) -> None:
        request.headers["x-amz-write-offset-bytes"] = "5"

    s3.meta.events.register_first("before-sign.s3.PutObject", add_offset)
    try:
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket=src_bucket, Key=key, Body=b" world")
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObject", add_offset)
    assert info.value.response["Error"]["Code"] == "NotImplemented"
    assert s3.get_object(Bucket=src_bucket, Key=key)["Body"].read() == b"hello"
