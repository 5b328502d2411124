"""HTTP-level edges: Expect: 100-continue, keep-alive after errors, HEAD without a body, truncated
bodies, digests, hostile XML, name limits, unimplemented sub-resources, and the error document shape.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

# --- helpers -------------------------------------------------------------------------------------


def basic(token: str, user: str = "admin") -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def check_error_body(status: int, body: bytes, request_id_header: str | None, code: str) -> ET.Element:
    text = body.decode("utf-8", "replace")
    assert "Traceback" not in text
    root = ET.fromstring(body)
    assert root.tag == "Error", text
    assert root.findtext("Code") == code, (status, text)
    assert root.findtext("Message")
    assert root.findtext("RequestId")
    assert root.findtext("RequestId") == request_id_header
    return root


def assert_s3_error(resp: requests.Response, status: int, code: str) -> ET.Element:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers.get("content-type", "").startswith("application/xml")
    return check_error_body(resp.status_code, resp.content, resp.headers.get("x-amz-request-id"), code)


def admin(coordinator) -> tuple[str, str]:
    return ("admin", coordinator.token)


def assert_absent(coordinator, bucket: str, key: str) -> None:
    """A fresh connection's GET says NoSuchKey."""
    resp = requests.get(f"{coordinator.endpoint}/{bucket}/{quote(key)}", auth=admin(coordinator), timeout=30)
    assert_s3_error(resp, 404, "NoSuchKey")


def wait_for_empty_tmp(data_dir: Path, timeout: float = 10.0) -> list[str]:
    """The names left in <data_dir>/tmp once the server has had time to clean up (empty when it did)."""
    tmp = data_dir / "tmp"
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(p.name for p in tmp.rglob("*") if p.is_file())  # each process has its tmp/<pid>/
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def new_key() -> str:
    return f"edge-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["prefix", "root"])
def endpoint(request: pytest.FixtureRequest, coordinator) -> str:
    return coordinator.endpoint if request.param == "prefix" else coordinator.root_endpoint


def host_port_prefix(endpoint: str) -> tuple[str, int, str]:
    u = urlsplit(endpoint)
    return u.hostname or "127.0.0.1", u.port or 80, u.path.rstrip("/")


# --- Expect: 100-continue and keep-alive ---------------------------------------------------------


# a server that gets keep-alive wrong usually fails this on some attempts only; repeat to make it show
ROUNDS = 10


@pytest.mark.parametrize("case", ["wrong-secret", "missing-bucket", "anonymous"])
def test_expect_100_continue_put_rejected_early_gets_final_status_and_connection_stays_usable(
    coordinator,
    bucket,
    endpoint,
    case,
) -> None:
    s3 = coordinator.client()
    s3.put_object(Bucket=bucket, Key="present", Body=b"still here")
    host, port, prefix = host_port_prefix(endpoint)
    target_bucket = f"missing-{uuid.uuid4().hex[:10]}" if case == "missing-bucket" else bucket
    expected = {
        "wrong-secret": (403, "AccessDenied"),
        "missing-bucket": (404, "NoSuchBucket"),
        "anonymous": (403, "AccessDenied"),
    }[case]
    keys = []

    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        for _ in range(ROUNDS):
            key = new_key()
            keys.append(key)
            conn.putrequest("PUT", f"{prefix}/{target_bucket}/{key}")
            if case == "wrong-secret":
                conn.putheader("Authorization", basic("not-the-token"))
            elif case == "missing-bucket":
                conn.putheader("Authorization", basic(coordinator.token))
            conn.putheader("Content-Length", str(1024 * 1024))
            conn.putheader("Expect", "100-continue")
            conn.endheaders()  # headers only: the body is never sent
            # http.client skips a "100 Continue"; had the server sent one it would now wait for a body -> timeout
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == expected[0], body
            check_error_body(resp.status, body, resp.getheader("x-amz-request-id"), expected[1])

            # the next request on the same HTTPConnection must work. A server may close the connection
            # after an early answer, but then it must say so (Connection: close) so the client reconnects
            # instead of writing into a dead socket.
            conn.request("GET", f"{prefix}/{bucket}/present", headers={"Authorization": basic(coordinator.token)})
            nxt = conn.getresponse()
            assert nxt.status == 200
            assert nxt.read() == b"still here"
    finally:
        conn.close()
    for key in keys:
        assert_absent(coordinator, bucket, key)


def test_expect_100_continue_put_that_is_accepted_gets_100_then_stores_the_body(coordinator, bucket) -> None:
    host, port, prefix = host_port_prefix(coordinator.endpoint)
    key = new_key()
    body = b"continued body " * 1000
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            (
                f"PUT {prefix}/{bucket}/{key} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: {basic(coordinator.token)}\r\nContent-Length: {len(body)}\r\n"
                "Expect: 100-continue\r\n\r\n"
            ).encode()
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            chunk = sock.recv(4096)
            assert chunk, interim
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        final = b""
        while b"\r\n\r\n" not in final:
            chunk = sock.recv(4096)
            assert chunk, final
            final += chunk
        assert final.split(b"\r\n", 1)[0].startswith(b"HTTP/1.1 200"), final
    got = requests.get(f"{coordinator.endpoint}/{bucket}/{key}", auth=admin(coordinator), timeout=30)
    assert got.content == body


def test_connection_is_reusable_after_an_error_response_to_a_put_whose_body_was_sent(
    coordinator,
    bucket,
    endpoint,
) -> None:
    """An early error (here: unknown bucket) before the body is read must not break the next request."""
    coordinator.client().put_object(Bucket=bucket, Key="present", Body=b"still here")
    host, port, prefix = host_port_prefix(endpoint)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        for _ in range(ROUNDS):
            conn.request(
                "PUT",
                f"{prefix}/missing-{uuid.uuid4().hex[:10]}/k",
                body=b"z" * (128 * 1024),
                headers={"Authorization": basic(coordinator.token)},
            )
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 404
            check_error_body(resp.status, body, resp.getheader("x-amz-request-id"), "NoSuchBucket")

            conn.request("GET", f"{prefix}/{bucket}/present", headers={"Authorization": basic(coordinator.token)})
            nxt = conn.getresponse()
            assert nxt.status == 200
            assert nxt.read() == b"still here"
    finally:
        conn.close()


def test_connection_is_reusable_after_a_small_rejected_put(coordinator, bucket, endpoint) -> None:
    coordinator.client().put_object(Bucket=bucket, Key="present", Body=b"still here")
    host, port, prefix = host_port_prefix(endpoint)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        for _ in range(ROUNDS):
            conn.request("PUT", f"{prefix}/{bucket}/{new_key()}", body=b"tiny", headers={"Authorization": basic("bad")})
            resp = conn.getresponse()
            check_error_body(resp.status, resp.read(), resp.getheader("x-amz-request-id"), "AccessDenied")
            assert resp.status == 403
        conn.request("GET", f"{prefix}/{bucket}/present", headers={"Authorization": basic(coordinator.token)})
        nxt = conn.getresponse()
        assert nxt.status == 200
        assert nxt.read() == b"still here"
    finally:
        conn.close()


# --- HEAD ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("what", ["missing-key", "missing-bucket"])
def test_head_of_missing_object_is_404_without_a_body(coordinator, bucket, endpoint, what) -> None:
    host, port, prefix = host_port_prefix(endpoint)
    coordinator.client().put_object(Bucket=bucket, Key="present", Body=b"after head")
    path = f"{prefix}/{bucket}/{new_key()}" if what == "missing-key" else f"{prefix}/nobucket-{uuid.uuid4().hex[:8]}/k"
    auth = basic(coordinator.token)
    # raw bytes: HEAD then GET pipelined on one socket; any body bytes after the HEAD would corrupt the GET
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n\r\n".encode()
            + f"GET {prefix}/{bucket}/present HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {auth}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    head_lines = head.split(b"\r\n")
    assert head_lines[0].startswith(b"HTTP/1.1 404"), raw
    head_headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in head_lines[1:])}
    assert head_headers.get(b"x-amz-request-id")
    # the very next bytes are the GET's status line: no body was written for the HEAD
    assert rest.startswith(b"HTTP/1.1 200"), raw
    assert rest.endswith(b"after head")


def test_head_of_missing_key_via_requests_has_empty_body_and_request_id(coordinator, bucket, endpoint) -> None:
    resp = requests.head(f"{endpoint}/{bucket}/{new_key()}", auth=admin(coordinator), timeout=30)
    assert resp.status_code == 404
    assert resp.content == b""
    assert resp.headers.get("x-amz-request-id")


# --- truncated bodies ----------------------------------------------------------------------------


def test_body_shorter_than_content_length_stores_nothing_and_leaves_no_temp_file(
    coordinator,
    bucket,
    endpoint,
) -> None:
    host, port, prefix = host_port_prefix(endpoint)
    key = new_key()
    total = 512 * 1024
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            (
                f"PUT {prefix}/{bucket}/{key} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: {basic(coordinator.token)}\r\nContent-Length: {total}\r\n\r\n"
            ).encode()
        )
        sock.sendall(b"h" * (total // 2))
        time.sleep(0.3)  # let the server start writing the upload before the client vanishes
    left = wait_for_empty_tmp(coordinator.data_dir)
    assert left == []
    assert_absent(coordinator, bucket, key)


def test_truncated_body_does_not_replace_an_existing_object(coordinator, bucket) -> None:
    host, port, prefix = host_port_prefix(coordinator.endpoint)
    key = new_key()
    coordinator.client().put_object(Bucket=bucket, Key=key, Body=b"original")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(
            (
                f"PUT {prefix}/{bucket}/{key} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: {basic(coordinator.token)}\r\nContent-Length: 100000\r\n\r\n"
            ).encode()
            + b"r" * 50000
        )
        time.sleep(0.3)
    assert wait_for_empty_tmp(coordinator.data_dir) == []
    got = requests.get(f"{coordinator.endpoint}/{bucket}/{key}", auth=admin(coordinator), timeout=30)
    assert got.status_code == 200
    assert got.content == b"original"


# --- Content-MD5 ---------------------------------------------------------------------------------


def test_wrong_content_md5_is_bad_digest_and_stores_nothing(coordinator, bucket, endpoint) -> None:
    key = new_key()
    body = b"the real body"
    resp = requests.put(
        f"{endpoint}/{bucket}/{key}",
        data=body,
        headers={"Content-MD5": md5_b64(b"a different body")},
        auth=admin(coordinator),
        timeout=30,
    )
    err = assert_s3_error(resp, 400, "BadDigest")
    assert err.findtext("CalculatedDigest") == hashlib.md5(body).hexdigest()
    assert err.findtext("ExpectedDigest") == hashlib.md5(b"a different body").hexdigest()
    assert_absent(coordinator, bucket, key)


def test_correct_content_md5_is_accepted(coordinator, bucket) -> None:
    key = new_key()
    body = b"checked body"
    resp = requests.put(
        f"{coordinator.endpoint}/{bucket}/{key}",
        data=body,
        headers={"Content-MD5": md5_b64(body)},
        auth=admin(coordinator),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'


@pytest.mark.parametrize(
    "value",
    [
        "not base64 at all!",
        hashlib.md5(b"x").hexdigest(),  # hex instead of base64
        base64.b64encode(b"12345678").decode(),  # base64 of 8 bytes, not 16
        "",
    ],
    ids=["garbage", "hex", "short", "empty"],
)
def test_malformed_content_md5_is_invalid_digest_and_stores_nothing(coordinator, bucket, value) -> None:
    key = new_key()
    resp = requests.put(
        f"{coordinator.endpoint}/{bucket}/{key}",
        data=b"body",
        headers={"Content-MD5": value},
        auth=admin(coordinator),
        timeout=30,
    )
    assert_s3_error(resp, 400, "InvalidDigest")
    assert_absent(coordinator, bucket, key)


# --- hostile / broken XML ------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
"""


def _hostile(prolog: bytes, entity: str) -> Callable[[str], bytes]:
    def build(root: str) -> bytes:
        inner = f"<Object><Key>&{entity};</Key></Object><Part><PartNumber>1</PartNumber><ETag>&{entity};</ETag></Part>"
        return prolog + f"<{root}>{inner}</{root}>".encode()

    return build


BAD_DOCUMENTS = {
    "truncated": lambda root: f"<{root}><Object><Key>a</Key>".encode(),
    "not-xml": lambda root: b"this is not xml",
    "wrong-root": lambda root: b"<Something><Object><Key>a</Key></Object></Something>",
    "empty": lambda root: b"",
    "billion-laughs": _hostile(BILLION_LAUGHS, "lol9"),
    "external-entity": _hostile(XXE, "xxe"),
}


@pytest.mark.parametrize("kind", list(BAD_DOCUMENTS))
def test_malformed_delete_objects_document_is_malformed_xml(coordinator, bucket, endpoint, kind) -> None:
    coordinator.client().put_object(Bucket=bucket, Key="a", Body=b"keep me")
    doc = BAD_DOCUMENTS[kind]("Delete")
    resp = requests.post(
        f"{endpoint}/{bucket}?delete",
        data=doc,
        headers={"Content-MD5": md5_b64(doc), "Content-Type": "application/xml"},
        auth=admin(coordinator),
        timeout=30,
    )
    assert_s3_error(resp, 400, "MalformedXML")
    assert "root:" not in resp.text  # no /etc/passwd content
    got = requests.get(f"{endpoint}/{bucket}/a", auth=admin(coordinator), timeout=30)
    assert got.content == b"keep me"


@pytest.mark.parametrize("kind", list(BAD_DOCUMENTS))
def test_malformed_complete_multipart_document_is_malformed_xml(coordinator, bucket, endpoint, kind) -> None:
    s3 = coordinator.client()
    key = new_key()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"part one")
    doc = BAD_DOCUMENTS[kind]("CompleteMultipartUpload")
    resp = requests.post(
        f"{endpoint}/{bucket}/{key}?uploadId={quote(upload_id, safe='')}",
        data=doc,
        headers={"Content-Type": "application/xml"},
        auth=admin(coordinator),
        timeout=30,
    )
    assert_s3_error(resp, 400, "MalformedXML")
    assert "root:" not in resp.text
    assert_absent(coordinator, bucket, key)
    # the upload is still there to be completed properly
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]


def test_well_formed_delete_objects_without_namespace_works(coordinator, bucket) -> None:
    coordinator.client().put_object(Bucket=bucket, Key="gone", Body=b"x")
    doc = b"<Delete><Object><Key>gone</Key></Object></Delete>"
    resp = requests.post(
        f"{coordinator.endpoint}/{bucket}?delete",
        data=doc,
        headers={"Content-MD5": md5_b64(doc)},
        auth=admin(coordinator),
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert "<Deleted><Key>gone</Key></Deleted>" in resp.text
    assert_absent(coordinator, bucket, "gone")


# --- names ---------------------------------------------------------------------------------------


def test_key_of_1025_bytes_is_key_too_long(coordinator, bucket, endpoint) -> None:
    key = "k" * 1025
    resp = requests.put(f"{endpoint}/{bucket}/{key}", data=b"x", auth=admin(coordinator), timeout=30)
    assert_s3_error(resp, 400, "KeyTooLongError")
    listed = coordinator.client().list_objects_v2(Bucket=bucket)
    assert listed["KeyCount"] == 0


def test_key_of_1025_utf8_bytes_but_fewer_characters_is_key_too_long(coordinator, bucket) -> None:
    key = "é" * 512 + "k"  # 513 characters, 1025 bytes
    assert len(key.encode()) == 1025
    resp = requests.put(f"{coordinator.endpoint}/{bucket}/{quote(key)}", data=b"x", auth=admin(coordinator), timeout=30)
    assert_s3_error(resp, 400, "KeyTooLongError")


def test_key_of_exactly_1024_bytes_is_accepted(coordinator, bucket) -> None:
    key = "k" * 1024
    resp = requests.put(f"{coordinator.endpoint}/{bucket}/{key}", data=b"long key", auth=admin(coordinator), timeout=30)
    assert resp.status_code == 200, resp.text
    got = requests.get(f"{coordinator.endpoint}/{bucket}/{key}", auth=admin(coordinator), timeout=30)
    assert got.content == b"long key"


@pytest.mark.parametrize(
    "name", ["Bad_Name", "ab", "UPPER", "-leading-dash", "trailing-dash-", "a..b", "192.168.1.1", "x" * 64]
)
def test_create_bucket_with_invalid_name_is_invalid_bucket_name(coordinator, endpoint, name) -> None:
    resp = requests.put(f"{endpoint}/{name}", auth=admin(coordinator), timeout=30)
    err = assert_s3_error(resp, 400, "InvalidBucketName")
    assert err.findtext("BucketName") == name
    names = [b["Name"] for b in coordinator.client().list_buckets()["Buckets"]]
    assert name not in names


@pytest.mark.parametrize("path", ["", "/some-key"], ids=["list", "get-object"])
def test_get_on_missing_bucket_is_no_such_bucket(coordinator, endpoint, path) -> None:
    name = f"no-such-{uuid.uuid4().hex[:12]}"
    resp = requests.get(f"{endpoint}/{name}{path}", auth=admin(coordinator), timeout=30)
    err = assert_s3_error(resp, 404, "NoSuchBucket")
    assert err.findtext("BucketName") == name


# --- unimplemented sub-resources -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("GET", "?website"),
        ("PUT", "?requestPayment"),
        ("GET", "?accelerate"),
        ("PUT", "?replication"),
        ("DELETE", "?website"),
        ("GET", "?logging"),
        ("PUT", "?notification"),
        ("GET", "/obj?torrent"),
    ],
)
def test_unimplemented_subresource_is_not_implemented(coordinator, bucket, endpoint, method, suffix) -> None:
    coordinator.client().put_object(Bucket=bucket, Key="obj", Body=b"untouched")
    body = b"<CORSConfiguration/>" if method == "PUT" else None
    resp = requests.request(method, f"{endpoint}/{bucket}{suffix}", data=body, auth=admin(coordinator), timeout=30)
    assert_s3_error(resp, 501, "NotImplemented")
    # nothing was done instead: the bucket and object are unchanged
    got = requests.get(f"{endpoint}/{bucket}/obj", auth=admin(coordinator), timeout=30)
    assert got.status_code == 200
    assert got.content == b"untouched"


# --- the error document itself -------------------------------------------------------------------


def test_error_document_shape_and_headers(coordinator, bucket, endpoint) -> None:
    key = new_key()
    resp = requests.get(f"{endpoint}/{bucket}/{key}", auth=admin(coordinator), timeout=30)
    err = assert_s3_error(resp, 404, "NoSuchKey")
    assert resp.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert err.findtext("Key") == key
    assert err.findtext("HostId")
    assert resp.headers.get("x-amz-id-2")
    assert resp.headers["content-length"] == str(len(resp.content))
    # a fresh id per request
    again = requests.get(f"{endpoint}/{bucket}/{key}", auth=admin(coordinator), timeout=30)
    assert again.headers["x-amz-request-id"] != resp.headers["x-amz-request-id"]


def test_unsupported_method_is_an_s3_error(coordinator, bucket) -> None:
    resp = requests.request("PATCH", f"{coordinator.endpoint}/{bucket}/k", auth=admin(coordinator), timeout=30)
    assert_s3_error(resp, 405, "MethodNotAllowed")


def test_undecodable_percent_encoding_in_path_is_invalid_uri(coordinator, bucket) -> None:
    host, port, prefix = host_port_prefix(coordinator.endpoint)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", f"{prefix}/{bucket}/bad%FFkey", headers={"Authorization": basic(coordinator.token)})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 400
    check_error_body(resp.status, body, resp.getheader("x-amz-request-id"), "InvalidURI")
