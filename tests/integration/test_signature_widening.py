"""A signature authorises only what it covers: an x-amz-* header it does not sign is refused, for every
signing scheme, so a presigned URL or a replayed request cannot be widened into another operation.

The attacks are real requests against a real coordinator: URLs and headers are signed by botocore as
the admin, then sent by `requests` with headers the signer never saw. The positive controls show what
stays allowed: unsigned `Range` and `Content-MD5` (AWS does not require them signed; `curl -C -` on a
presigned URL adds `Range`), and x-amz-* parameters in a presigned URL's query, which are signed and
count as the headers they stand for.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable
from urllib.parse import quote

import pytest
import requests
from botocore.auth import HmacV1Auth, HmacV1QueryAuth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REGION = "us-east-1"
SYSTEM = "_tunnelmesh"


# ---- signing helpers ----------------------------------------------------------------------------


def creds(coordinator) -> Credentials:
    return Credentials("admin", coordinator.token)


def sigv4_header(coordinator, method: str, url: str, body: bytes = b"", headers: dict | None = None) -> dict:
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(creds(coordinator), "s3", REGION).add_auth(req)
    return dict(req.headers.items())


def sigv2_header(coordinator, method: str, url: str, body: bytes = b"", headers: dict | None = None) -> dict:
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    HmacV1Auth(creds(coordinator)).add_auth(req)
    return dict(req.headers.items())


def presign_v4(coordinator, method: str, url: str, headers: dict | None = None, expires: int = 300) -> str:
    """A SigV4 presigned URL; `headers` are signed (listed in X-Amz-SignedHeaders) and must be sent."""
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    S3SigV4QueryAuth(creds(coordinator), "s3", REGION, expires=expires).add_auth(req)
    return req.url


def presign_v2(coordinator, method: str, url: str, expires: int = 300) -> str:
    req = AWSRequest(method=method, url=url)
    HmacV1QueryAuth(creds(coordinator), expires=expires).add_auth(req)
    return req.url


Signer = Callable[..., tuple[str, dict]]


def _v4_header(c, method: str, url: str, body: bytes) -> tuple[str, dict]:
    return url, sigv4_header(c, method, url, body)


def _v4_presigned(c, method: str, url: str, body: bytes) -> tuple[str, dict]:
    return presign_v4(c, method, url), {}


def _v2_header(c, method: str, url: str, body: bytes) -> tuple[str, dict]:
    return url, sigv2_header(c, method, url, body)


def _v2_presigned(c, method: str, url: str, body: bytes) -> tuple[str, dict]:
    return presign_v2(c, method, url), {}


# scheme -> (signer, the refusal an added unsigned x-amz-* header gets)
SCHEMES: dict[str, tuple[Signer, str]] = {
    "sigv4-header": (_v4_header, "AccessDenied"),
    "sigv4-presigned": (_v4_presigned, "AccessDenied"),
    # SigV2 signs every x-amz-* header present, so an added one breaks the signature
    "sigv2-header": (_v2_header, "SignatureDoesNotMatch"),
    "sigv2-presigned": (_v2_presigned, "SignatureDoesNotMatch"),
}

# headers that change what a PUT does (or what it stores) if honoured unsigned
WIDENING_HEADERS = [
    ("x-amz-copy-source", "/_tunnelmesh/peers/{peer_id}.json"),
    ("x-amz-copy-source-range", "bytes=0-9"),
    ("x-amz-metadata-directive", "REPLACE"),
    ("x-amz-meta-x", "evil"),
    ("X-Amz-Meta-Mixed-Case", "evil"),
    ("x-amz-tagging", "owner=attacker"),
    ("x-amz-server-side-encryption", "AES256"),
    ("x-amz-acl", "public-read"),
    ("x-amz-grant-full-control", 'id="attacker"'),
    ("x-amz-storage-class", "GLACIER"),
    ("x-amz-website-redirect-location", "/elsewhere"),
    ("x-amz-checksum-crc32", "AAAAAA=="),
    ("x-amz-object-lock-mode", "GOVERNANCE"),
]


# ---- assertions ---------------------------------------------------------------------------------


def s3_error(resp: requests.Response, status: int, code: str) -> ET.Element:
    assert resp.status_code == status, (resp.status_code, resp.text)
    root = ET.fromstring(resp.content)
    assert root.findtext("Code") == code, resp.text
    return root


def assert_headers_not_signed(resp: requests.Response, header: str) -> None:
    """AWS's answer: 403 AccessDenied naming the unsigned header(s) in HeadersNotSigned."""
    root = s3_error(resp, 403, "AccessDenied")
    assert root.findtext("Message") == "There were headers present in the request which were not signed"
    assert root.findtext("HeadersNotSigned") == header.lower()


def absent(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return True
    return False


def new_key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def victim(coordinator) -> dict[str, str]:
    """An ordinary peer whose record (and token) lives in _tunnelmesh/peers/<id>.json."""
    res = coordinator.cli("peer", "add", "victim", "--json", timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    # the admin can read the record: the copy below would have worked had it not been refused
    record = coordinator.client().get_object(Bucket=SYSTEM, Key=f"peers/{doc['peer_id']}.json")["Body"].read()
    assert doc["token"].encode() in record
    return doc


# ---- the attacks --------------------------------------------------------------------------------


def test_presigned_put_plus_copy_source_does_not_copy_a_peer_record(coordinator, s3, bucket, victim) -> None:
    """The reported exploit: an admin's presigned upload URL, sent with x-amz-copy-source, copied another
    peer's record (token included) into an ordinary bucket, run as the admin."""
    key = new_key()
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300)
    url_v4 = coordinator.client(signature_version="s3v4").generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
    )
    assert "X-Amz-SignedHeaders=host&" in url_v4 or url_v4.endswith("X-Amz-SignedHeaders=host")
    source = f"/{SYSTEM}/peers/{victim['peer_id']}.json"
    resp = requests.put(url_v4, headers={"x-amz-copy-source": source}, timeout=30)
    assert_headers_not_signed(resp, "x-amz-copy-source")
    assert victim["token"] not in resp.text
    # boto3's default presigner (SigV2 here) covers x-amz-* headers, so the signature breaks
    resp = requests.put(url, headers={"x-amz-copy-source": source}, timeout=30)
    s3_error(resp, 403, "SignatureDoesNotMatch")
    assert victim["token"] not in resp.text
    assert absent(s3, bucket, key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    # the URL still does what it was signed for
    assert requests.put(url_v4, data=b"upload", timeout=30).status_code == 200
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"upload"


@pytest.mark.parametrize("signature_version", ["s3v4", "s3"])
def test_presigned_upload_part_plus_copy_source_is_not_an_upload_part_copy(
    coordinator, s3, bucket, victim, signature_version
) -> None:
    key = new_key()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    signer = coordinator.client(signature_version=signature_version)
    url = signer.generate_presigned_url(
        "upload_part", Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": 1}, ExpiresIn=300
    )
    resp = requests.put(url, headers={"x-amz-copy-source": f"/{SYSTEM}/peers/{victim['peer_id']}.json"}, timeout=30)
    if signature_version == "s3v4":
        assert_headers_not_signed(resp, "x-amz-copy-source")
    else:
        s3_error(resp, 403, "SignatureDoesNotMatch")
    assert victim["token"] not in resp.text
    assert s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


@pytest.mark.parametrize(("header", "value"), WIDENING_HEADERS, ids=[h for h, _ in WIDENING_HEADERS])
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_an_unsigned_x_amz_header_added_to_a_signed_put_is_refused(
    coordinator, s3, bucket, victim, scheme: str, header: str, value: str
) -> None:
    signer, refusal = SCHEMES[scheme]
    key = new_key()
    body = b"signed body"
    url, headers = signer(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}", body)
    headers[header] = value.format(peer_id=victim["peer_id"])
    resp = requests.put(url, data=body, headers=headers, timeout=30)
    if refusal == "AccessDenied":
        assert_headers_not_signed(resp, header)
    else:
        s3_error(resp, 403, refusal)
    assert victim["token"] not in resp.text
    assert absent(s3, bucket, key)


def test_several_unsigned_headers_are_all_named(coordinator, bucket) -> None:
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{new_key()}")
    resp = requests.put(url, data=b"x", headers={"x-amz-meta-b": "1", "x-amz-acl": "private"}, timeout=30)
    root = s3_error(resp, 403, "AccessDenied")
    assert root.findtext("HeadersNotSigned") == "x-amz-acl, x-amz-meta-b"


@pytest.mark.parametrize("scheme", ["sigv4-header", "sigv2-header"])
def test_a_header_signed_put_replayed_with_extra_headers_is_refused(coordinator, s3, bucket, scheme: str) -> None:
    """Someone who saw a signed request (a log, a proxy) replays it within the skew window, adding
    headers: the object keeps what the signer sent."""
    key = new_key()
    url = f"{coordinator.endpoint}/{bucket}/{key}"
    body = b"original"
    sign = sigv4_header if scheme == "sigv4-header" else sigv2_header
    headers = sign(coordinator, "PUT", url, body, {"x-amz-meta-who": "signer"})
    assert requests.put(url, data=body, headers=headers, timeout=30).status_code == 200
    for extra in ({"x-amz-meta-x": "evil"}, {"x-amz-tagging": "a=b"}, {"x-amz-metadata-directive": "REPLACE"}):
        resp = requests.put(url, data=body, headers={**headers, **extra}, timeout=30)
        assert resp.status_code == 403, resp.text
        if scheme == "sigv4-header":
            assert_headers_not_signed(resp, next(iter(extra)))
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {"who": "signer"}
    # the signed request itself may still be replayed unchanged (AWS allows that within the window)
    assert requests.put(url, data=body, headers=headers, timeout=30).status_code == 200


def test_a_header_signed_get_with_an_unsigned_x_amz_header_is_refused(coordinator, s3, bucket) -> None:
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"data")
    url = f"{coordinator.endpoint}/{bucket}/{key}"
    headers = sigv4_header(coordinator, "GET", url)
    assert requests.get(url, headers=headers, timeout=30).content == b"data"
    resp = requests.get(url, headers={**headers, "x-amz-checksum-mode": "ENABLED"}, timeout=30)
    assert_headers_not_signed(resp, "x-amz-checksum-mode")


# ---- what stays allowed -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["sigv4-presigned", "sigv2-presigned"])
def test_presigned_get_with_an_unsigned_range_header_works(coordinator, s3, bucket, scheme: str) -> None:
    """`curl -C -` resumes a download from a presigned URL by adding Range: AWS does not demand it signed."""
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"0123456789")
    url, headers = SCHEMES[scheme][0](coordinator, "GET", f"{coordinator.endpoint}/{bucket}/{key}", b"")
    resp = requests.get(url, headers={**headers, "Range": "bytes=4-"}, timeout=30)
    assert resp.status_code == 206, resp.text
    assert resp.content == b"456789"


def test_presigned_put_with_an_unsigned_content_md5_works(coordinator, s3, bucket) -> None:
    key = new_key()
    body = b"checked by md5"
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}")
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    resp = requests.put(url, data=body, headers={"Content-MD5": md5}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body


def test_signed_x_amz_headers_of_a_presigned_url_are_honoured(coordinator, s3, bucket) -> None:
    key = new_key()
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}", {"x-amz-meta-colour": "blue"})
    assert "x-amz-meta-colour" in url  # listed in X-Amz-SignedHeaders
    assert requests.put(url, data=b"x", timeout=30).status_code == 403  # a signed header must be sent
    resp = requests.put(url, data=b"x", headers={"x-amz-meta-colour": "blue"}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert s3.head_object(Bucket=bucket, Key=key)["Metadata"] == {"colour": "blue"}


def test_x_amz_meta_in_a_presigned_query_is_stored_as_metadata(coordinator, s3, bucket) -> None:
    """The JavaScript SDK's presigner moves x-amz-meta-* headers into the (signed) query."""
    key = new_key()
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}?x-amz-meta-foo=bar")
    assert "x-amz-meta-foo=bar" in url
    resp = requests.put(url, data=b"with metadata", timeout=30)
    assert resp.status_code == 200, resp.text
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {"foo": "bar"}


def test_a_checksum_in_a_presigned_query_is_checked_like_the_header(coordinator, s3, bucket) -> None:
    body = b"checksummed"
    good = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    bad = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    key = new_key()
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}?x-amz-checksum-crc32={quote(bad)}")
    resp = requests.put(url, data=body, timeout=30)
    s3_error(resp, 400, "BadDigest")
    assert absent(s3, bucket, key)
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}?x-amz-checksum-crc32={quote(good)}")
    assert requests.put(url, data=body, timeout=30).status_code == 200
    assert s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["ChecksumCRC32"] == good


def test_a_copy_source_in_a_presigned_query_is_a_signed_copy(coordinator, s3, bucket) -> None:
    """What the signer put in the query is what it asked for: here a copy, which runs."""
    src, dst = new_key(), new_key()
    s3.put_object(Bucket=bucket, Key=src, Body=b"copy me")
    source = quote(f"/{bucket}/{src}", safe="")
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{dst}?x-amz-copy-source={source}")
    resp = requests.put(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert b"CopyObjectResult" in resp.content
    assert s3.get_object(Bucket=bucket, Key=dst)["Body"].read() == b"copy me"


def test_a_name_both_in_query_and_header_with_different_values_is_refused(coordinator, s3, bucket) -> None:
    key = new_key()
    url = presign_v4(
        coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}?x-amz-meta-foo=query", {"x-amz-meta-foo": "header"}
    )
    resp = requests.put(url, data=b"x", headers={"x-amz-meta-foo": "header"}, timeout=30)
    s3_error(resp, 400, "InvalidArgument")
    assert absent(s3, bucket, key)
    # the same value in both places is one header
    url = presign_v4(
        coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}?x-amz-meta-foo=same", {"x-amz-meta-foo": "same"}
    )
    resp = requests.put(url, data=b"x", headers={"x-amz-meta-foo": "same"}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert s3.head_object(Bucket=bucket, Key=key)["Metadata"] == {"foo": "same"}


def test_x_amz_parameters_added_to_a_sigv2_presigned_url_are_not_headers(coordinator, s3, bucket) -> None:
    """SigV2 does not sign such query parameters, so they must not act as headers."""
    key = new_key()
    url = presign_v2(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}")
    resp = requests.put(url + "&x-amz-meta-foo=bar", data=b"v2", timeout=30)
    assert resp.status_code == 200, resp.text
    assert s3.head_object(Bucket=bucket, Key=key)["Metadata"] == {}


@pytest.mark.parametrize(
    ("param", "value", "code", "status"),
    [
        ("x-amz-server-side-encryption", "AES256", "NotImplemented", 501),
        ("x-amz-server-side-encryption", "aws:kms", "NotImplemented", 501),
        # object lock is served, in a bucket created with it; this one was not
        ("x-amz-object-lock-legal-hold", "ON", "InvalidRequest", 400),
        ("x-amz-storage-class", "GLACIER", "NotImplemented", 501),
        ("x-amz-acl", "public-read", "AccessDenied", 403),  # the public access block answers first
    ],
)
def test_a_presigned_url_asking_for_a_protection_we_do_not_give_is_refused(
    coordinator,
    s3,
    bucket,
    param: str,
    value: str,
    code: str,
    status: int,
) -> None:
    """The JavaScript SDK's presigner moves such headers into the query: they must be refused there too,
    never stored as if the object had been encrypted, locked or shared."""
    key = new_key()
    url = presign_v4(coordinator, "PUT", f"{coordinator.endpoint}/{bucket}/{key}?{param}={value}")
    s3_error(requests.put(url, data=b"must not be stored", timeout=30), status, code)
    assert absent(s3, bucket, key)
