"""CORS end to end (docs/access-control.md, section 5): Put/Get/DeleteBucketCors, preflights answered before
authentication, and the headers of actual responses, errors included.

The request/answer tables are s3-tests' (`test_cors_origin_response`, `test_cors_origin_wildcard`,
`test_cors_header_option`). Those set up with `create_bucket(ACL='public-read')`, which we refuse (bucket owner
enforced); here the same requests are presigned by a peer that may read but not write (the mesh default
`read`), which gives the same statuses: lists 200, a missing key 404, a PUT 403. Raw `http.client`, so every
header is seen as sent.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.client import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.conftest import Coordinator, start_coordinator

REGION = "us-east-1"


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("cors"))
    try:
        r = c.cli("network", "set", "default_bucket_access", "read", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def admin(coord: Coordinator) -> Any:
    return coord.client()


@pytest.fixture(scope="module")
def reader(coord: Coordinator) -> Any:
    """A peer that may read every bucket (the mesh default `read`) and write none of ours."""
    r = coord.cli("peer", "add", "reader", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    return boto3.client(
        "s3",
        endpoint_url=coord.endpoint,
        aws_access_key_id=doc["peer_id"],
        aws_secret_access_key=doc["token"],
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def bucket(admin: Any) -> str:
    name = f"c-{uuid.uuid4().hex[:16]}"
    admin.create_bucket(Bucket=name)
    return name


def send(url: str, method: str, headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, Any, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def code_of(body: bytes) -> str | None:
    m = re.search(rb"<Code>(.*?)</Code>", body)
    return m.group(1).decode() if m else None


def message_of(body: bytes) -> str | None:
    m = re.search(rb"<Message>(.*?)</Message>", body)
    return m.group(1).decode() if m else None


class Urls:
    """Presigned URLs of the reader's, as s3-tests' anonymous URLs of a public-read bucket."""

    def __init__(self, reader: Any, endpoint: str, bucket: str) -> None:
        self.list = reader.generate_presigned_url("list_objects", Params={"Bucket": bucket})
        self.get = reader.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "bar"})
        self.put = reader.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "bar"})
        # a preflight carries no credentials at all
        self.bucket = f"{endpoint}/{bucket}"
        self.obj = f"{endpoint}/{bucket}/bar"


def check(url: str, method: str, headers: dict[str, str] | None, status: int, origin: str | None, methods: str | None):
    got_status, got, body = send(url, method, headers)
    where = (method, url.split("?")[0], headers)
    assert got_status == status, (where, got_status, body)
    assert got.get("access-control-allow-origin") == origin, (where, dict(got))
    assert got.get("access-control-allow-methods") == methods, (where, dict(got))
    return got, body


# ---- configuration ------------------------------------------------------------------------------------


def test_put_get_delete_round_trip(admin: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        admin.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    rules = [
        {
            "ID": "uploads",
            "AllowedHeaders": ["*"],
            "AllowedMethods": ["PUT", "POST"],
            "AllowedOrigins": ["https://app.mesh"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 3000,
        },
        {"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["*"]},
    ]
    put = admin.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert admin.get_bucket_cors(Bucket=bucket)["CORSRules"] == rules
    deleted = admin.delete_bucket_cors(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        admin.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    # both changes are audited, in the system bucket
    listed = admin.list_objects_v2(Bucket="_tunnelmesh", Prefix="audit/")
    events = [
        json.loads(admin.get_object(Bucket="_tunnelmesh", Key=o["Key"])["Body"].read()) for o in listed["Contents"]
    ]
    ours = [(ev["event"], ev["actor"], ev["via"]) for ev in events if ev["bucket"] == bucket]
    assert sorted(ours) == [("cors.delete", "admin", "s3"), ("cors.put", "admin", "s3")], ours


def test_a_reader_may_get_but_not_put(admin: Any, reader: Any, bucket: str) -> None:
    admin.put_bucket_cors(
        Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
    )
    assert reader.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == ["*"]
    for call in (
        lambda: reader.put_bucket_cors(
            Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]}]}
        ),
        lambda: reader.delete_bucket_cors(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    assert admin.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedMethods"] == ["GET"]


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def put_cors_raw(coord: Coordinator, bucket: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """PutBucketCors signed by the admin with only the headers given (boto3 always adds a checksum)."""
    url = f"{coord.endpoint}/{bucket}?cors"
    signed = {**headers, "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    request = AWSRequest(method="PUT", url=url, data=body, headers=signed)
    SigV4Auth(Credentials("admin", coord.token), "s3", REGION).add_auth(request)
    status, _, answer = send(url, "PUT", dict(request.headers.items()), body)
    return status, answer


RULE = b"<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule>"


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"<CORSConfiguration><CORSRule>", "MalformedXML", None),
        (b"<CORSConfiguration></CORSConfiguration>", "MalformedXML", None),
        (
            b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>",
            "MalformedXML",
            None,
        ),
        (
            b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>"
            b"<AllowedOrigin>*.a.*</AllowedOrigin></CORSRule></CORSConfiguration>",
            "MalformedXML",
            None,
        ),
        (b"<CORSConfiguration>" + RULE * 101 + b"</CORSConfiguration>", "MalformedXML", None),
        (
            b"<CORSConfiguration><CORSRule><AllowedMethod>PATCH</AllowedMethod>"
            b"<AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>",
            "InvalidRequest",
            "Found unsupported HTTP method in CORS config. Unsupported method is PATCH",
        ),
    ],
    ids=["truncated", "no-rules", "no-origin", "two-wildcards", "101-rules", "patch"],
)
def test_put_refuses_a_bad_document(
    coord: Coordinator, admin: Any, bucket: str, body: bytes, code: str, message: str | None
) -> None:
    status, answer = put_cors_raw(coord, bucket, body, {"Content-MD5": _md5(body)})
    assert (status, code_of(answer)) == (400, code), answer
    if message is not None:
        assert message_of(answer) == message
    with pytest.raises(ClientError) as e:
        admin.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"


def test_put_needs_an_integrity_header(coord: Coordinator, admin: Any, bucket: str) -> None:
    body = b"<CORSConfiguration>" + RULE + b"</CORSConfiguration>"
    status, answer = put_cors_raw(coord, bucket, body, {})
    assert (status, code_of(answer)) == (400, "InvalidRequest"), answer
    assert message_of(answer) == "Missing required header for this request: Content-MD5 or x-amz-checksum-*"
    status, answer = put_cors_raw(coord, bucket, body, {"Content-MD5": _md5(b"other")})
    assert (status, code_of(answer)) == (400, "BadDigest"), answer
    with pytest.raises(ClientError):
        admin.get_bucket_cors(Bucket=bucket)
    status, answer = put_cors_raw(coord, bucket, body, {"Content-MD5": _md5(body)})
    assert status == 200, answer
    assert admin.get_bucket_cors(Bucket=bucket)["CORSRules"] == [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]


def test_a_recreated_bucket_has_no_cors(coord: Coordinator, admin: Any, bucket: str) -> None:
    admin.put_bucket_cors(
        Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
    )
    pre = {"Origin": "https://x", "Access-Control-Request-Method": "GET"}
    check(f"{coord.endpoint}/{bucket}", "OPTIONS", pre, 200, "*", "GET")
    admin.delete_bucket(Bucket=bucket)
    status, _, body = send(f"{coord.endpoint}/{bucket}", "OPTIONS", pre)
    assert (status, code_of(body)) == (404, "NoSuchBucket"), body
    admin.create_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        admin.get_bucket_cors(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "NoSuchCORSConfiguration"
    _, body = check(f"{coord.endpoint}/{bucket}", "OPTIONS", pre, 403, None, None)
    assert code_of(body) == "AccessForbidden"
    assert message_of(body) == "CORSResponse: CORS is not enabled for this bucket."


# ---- s3-tests' tables ---------------------------------------------------------------------------------


def test_cors_origin_response(coord: Coordinator, admin: Any, reader: Any, bucket: str) -> None:
    rules = [
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*suffix"]},
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["start*end"]},
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["prefix*"]},
        {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*.put"]},
    ]
    with pytest.raises(ClientError) as e:
        admin.get_bucket_cors(Bucket=bucket)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    admin.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    u = Urls(reader, coord.endpoint, bucket)

    check(u.list, "GET", None, 200, None, None)
    check(u.list, "GET", {"Origin": "foo.suffix"}, 200, "foo.suffix", "GET")
    check(u.list, "GET", {"Origin": "foo.bar"}, 200, None, None)
    check(u.list, "GET", {"Origin": "foo.suffix.get"}, 200, None, None)
    check(u.list, "GET", {"Origin": "startend"}, 200, "startend", "GET")
    check(u.list, "GET", {"Origin": "start1end"}, 200, "start1end", "GET")
    check(u.list, "GET", {"Origin": "start12end"}, 200, "start12end", "GET")
    check(u.list, "GET", {"Origin": "0start12end"}, 200, None, None)
    check(u.list, "GET", {"Origin": "prefix"}, 200, "prefix", "GET")
    check(u.list, "GET", {"Origin": "prefix.suffix"}, 200, "prefix.suffix", "GET")
    check(u.list, "GET", {"Origin": "bla.prefix"}, 200, None, None)

    # errors carry the headers: a page must be able to read them
    got, body = check(u.get, "GET", {"Origin": "foo.suffix"}, 404, "foo.suffix", "GET")
    assert code_of(body) == "NoSuchKey"
    pre_get = {"Origin": "foo.suffix", "Access-Control-Request-Method": "GET", "Content-Length": "0"}
    got, body = check(u.put, "PUT", pre_get, 403, "foo.suffix", "GET")
    assert code_of(body) == "AccessDenied"
    assert got.get("vary") == "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
    check(u.put, "PUT", {**pre_get, "Access-Control-Request-Method": "PUT"}, 403, None, None)
    check(u.put, "PUT", {**pre_get, "Access-Control-Request-Method": "DELETE"}, 403, None, None)
    check(u.put, "PUT", {"Origin": "foo.suffix", "Content-Length": "0"}, 403, None, None)
    check(u.put, "PUT", {"Origin": "foo.put", "Content-Length": "0"}, 403, "foo.put", "PUT")
    check(u.get, "GET", {"Origin": "foo.suffix"}, 404, "foo.suffix", "GET")

    # preflights: no credentials at all
    check(u.bucket, "OPTIONS", None, 400, None, None)
    check(u.bucket, "OPTIONS", {"Origin": "foo.suffix"}, 400, None, None)
    check(u.bucket, "OPTIONS", {"Origin": "bla"}, 400, None, None)
    check(u.obj, "OPTIONS", pre_get, 200, "foo.suffix", "GET")
    for origin, status, allowed in (
        ("foo.bar", 403, None),
        ("foo.suffix.get", 403, None),
        ("startend", 200, "startend"),
        ("start1end", 200, "start1end"),
        ("start12end", 200, "start12end"),
        ("0start12end", 403, None),
        ("prefix", 200, "prefix"),
        ("prefix.suffix", 200, "prefix.suffix"),
        ("bla.prefix", 403, None),
        ("foo.put", 403, None),
    ):
        check(
            u.bucket,
            "OPTIONS",
            {"Origin": origin, "Access-Control-Request-Method": "GET"},
            status,
            allowed,
            allowed and "GET",
        )
    check(u.bucket, "OPTIONS", {"Origin": "foo.put", "Access-Control-Request-Method": "PUT"}, 200, "foo.put", "PUT")


def test_cors_origin_wildcard(coord: Coordinator, admin: Any, reader: Any, bucket: str) -> None:
    admin.put_bucket_cors(
        Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}
    )
    u = Urls(reader, coord.endpoint, bucket)
    check(u.list, "GET", None, 200, None, None)
    got, _ = check(u.list, "GET", {"Origin": "example.origin"}, 200, "*", "GET")
    # a `*` answer is for any page: never with credentials
    assert got.get("access-control-allow-credentials") is None


def test_cors_header_option(coord: Coordinator, admin: Any, reader: Any, bucket: str) -> None:
    rules = [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "ExposeHeaders": ["x-amz-meta-header1"]}]
    admin.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    u = Urls(reader, coord.endpoint, bucket)
    pre = {"Origin": "example.origin", "Access-Control-Request-Headers": "x-amz-meta-header2"}
    _, body = check(u.obj, "OPTIONS", {**pre, "Access-Control-Request-Method": "GET"}, 403, None, None)
    assert (code_of(body), message_of(body)) == ("AccessForbidden", "CORSResponse: This CORS request is not allowed.")


# ---- preflights and actual responses, beyond s3-tests ---------------------------------------------------


def test_preflight_headers_and_header_matching(coord: Coordinator, admin: Any, bucket: str) -> None:
    rules = [
        {
            "AllowedMethods": ["PUT", "POST"],
            "AllowedOrigins": ["https://*.mesh"],
            "AllowedHeaders": ["Content-Type", "x-amz-meta-*"],
            "ExposeHeaders": ["ETag", "x-amz-version-id"],
            "MaxAgeSeconds": 600,
        },
        {"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "AllowedHeaders": ["*"]},
    ]
    admin.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    url = f"{coord.endpoint}/{bucket}/some/key"
    asked = {
        "Origin": "https://app.mesh",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type, X-Amz-Meta-Owner",
    }
    got, _ = check(url, "OPTIONS", asked, 200, "https://app.mesh", "PUT, POST")
    assert got.get("access-control-allow-headers") == "content-type, x-amz-meta-owner"
    assert got.get("access-control-expose-headers") == "ETag, x-amz-version-id"
    assert got.get("access-control-max-age") == "600"
    assert got.get("access-control-allow-credentials") == "true"
    assert got.get("vary") == "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
    # one header no pattern allows refuses the whole preflight; the origin match is case-sensitive
    check(url, "OPTIONS", {**asked, "Access-Control-Request-Headers": "content-type, x-other"}, 403, None, None)
    check(url, "OPTIONS", {**asked, "Origin": "https://APP.MESH.evil"}, 403, None, None)
    check(url, "OPTIONS", {**asked, "Origin": "http://app.mesh"}, 403, None, None)
    # the first rule that matches wins; `*` allows any header
    got, _ = check(url, "OPTIONS", {**asked, "Access-Control-Request-Method": "GET"}, 200, "*", "GET")
    assert got.get("access-control-allow-headers") == "content-type, x-amz-meta-owner"
    assert got.get("access-control-max-age") is None


def test_preflight_refusals(coord: Coordinator, admin: Any, bucket: str) -> None:
    pre = {"Origin": "https://x", "Access-Control-Request-Method": "GET"}
    for url, headers, status, code, message in (
        (
            f"{coord.endpoint}/{bucket}",
            {},
            400,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
        ),
        (
            f"{coord.endpoint}/{bucket}",
            {"Origin": "https://x"},
            400,
            "BadRequest",
            "Invalid Access-Control-Request-Method: null",
        ),
        (f"{coord.endpoint}/{bucket}", {**pre, "Access-Control-Request-Method": "PATCH"}, 400, "BadRequest", None),
        (f"{coord.endpoint}/{bucket}-none/k", pre, 404, "NoSuchBucket", None),
        (
            f"{coord.endpoint}/{bucket}",
            pre,
            403,
            "AccessForbidden",
            "CORSResponse: CORS is not enabled for this bucket.",
        ),
        (f"{coord.endpoint}/", pre, 403, "AccessForbidden", "CORSResponse: CORS is not enabled for this bucket."),
        (f"{coord.endpoint}/_tunnelmesh/x", pre, 403, "AccessForbidden", None),
        (f"{coord.root_endpoint}/{bucket}", pre, 403, "AccessForbidden", None),
        (f"{coord.root_endpoint}/", {}, 400, "BadRequest", None),
    ):
        got, _, body = send(url, "OPTIONS", headers)
        assert (got, code_of(body)) == (status, code), (url, headers, body)
        if message is not None:
            assert message_of(body) == message


def test_actual_responses_without_a_match_or_origin(coord: Coordinator, admin: Any, reader: Any, bucket: str) -> None:
    admin.put_object(Bucket=bucket, Key="k", Body=b"hello")
    u = Urls(reader, coord.endpoint, bucket)
    get = reader.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    # no configuration: nothing CORS, whatever the origin
    got, body = check(get, "GET", {"Origin": "https://a.mesh"}, 200, None, None)
    assert body == b"hello" and got.get("vary") is None
    admin.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["https://a.mesh"], "ExposeHeaders": ["ETag"]}
            ]
        },
    )
    got, body = check(get, "GET", {"Origin": "https://a.mesh"}, 200, "https://a.mesh", "GET, HEAD")
    assert body == b"hello"
    assert got.get("access-control-expose-headers") == "ETag"
    assert got.get("access-control-allow-credentials") == "true"
    head = reader.generate_presigned_url("head_object", Params={"Bucket": bucket, "Key": "k"})
    check(head, "HEAD", {"Origin": "https://a.mesh"}, 200, "https://a.mesh", "GET, HEAD")
    # an origin no rule matches: no CORS headers, but the answer varies by origin
    got, _ = check(get, "GET", {"Origin": "https://b.mesh"}, 200, None, None)
    assert got.get("vary") == "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
    # no Origin: not a CORS request at all
    got, _ = check(u.list, "GET", None, 200, None, None)
    assert got.get("vary") is None
