"""aws-chunked request bodies built byte by byte (signed chunks, unsigned trailers), boto3 forced into
its trailer mode, and plain Transfer-Encoding: chunked uploads.

The stored object must be exactly the payload: the framing is never data.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import re
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator

import pytest
import requests
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
CHUNK = 64 * 1024


# --- helpers -------------------------------------------------------------------------------------


class FixedPayloadSigV4(S3SigV4Auth):
    def __init__(self, credentials: Credentials, payload_hash: str) -> None:
        super().__init__(credentials, "s3", REGION)
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


def sign_headers(method: str, url: str, secret: str, headers: dict[str, str], payload_hash: str) -> dict[str, str]:
    req = AWSRequest(method=method, url=url, data=b"", headers=dict(headers))
    FixedPayloadSigV4(Credentials("admin", secret), payload_hash).add_auth(req)
    return dict(req.headers.items())


def signing_key(secret: str, date: str) -> bytes:
    k = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    for part in (REGION, "s3", "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    return k


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def signed_chunked_body(
    data: bytes, key: bytes, amz_date: str, scope: str, seed: str, tamper_chunk: int | None = None
) -> bytes:
    """`hex;chunk-signature=sig\\r\\n data \\r\\n` ... `0;chunk-signature=sig\\r\\n\\r\\n`, each signature chained."""
    out = bytearray()
    prev = seed
    for i, chunk in enumerate([*pieces(data, CHUNK), b""]):
        sts = "\n".join(
            ("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256, hashlib.sha256(chunk).hexdigest())
        )
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        prev = sig
        if i == tamper_chunk:
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        out += f"{len(chunk):x};chunk-signature={sig}\r\n".encode() + chunk + b"\r\n"
    return bytes(out)


def signed_chunked_put(
    coordinator,
    url: str,
    data: bytes,
    decoded_length: int | None = None,
    tamper_chunk: int | None = None,
    extra_headers: dict[str, str] | None = None,
) -> requests.Response:
    # the framed length does not depend on the signature values, so frame once with a dummy seed to size it
    framed_len = len(signed_chunked_body(data, b"k", "d", "s", "0" * 64))
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data) if decoded_length is None else decoded_length),
        "Content-Length": str(framed_len),
        **(extra_headers or {}),
    }
    signed = sign_headers("PUT", url, coordinator.token, headers, STREAMING_SIGNED)
    assert signed["X-Amz-Content-SHA256"] == STREAMING_SIGNED
    seed = re.search(r"Signature=([0-9a-f]{64})", signed["Authorization"]).group(1)
    amz_date = signed["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    body = signed_chunked_body(data, signing_key(coordinator.token, amz_date[:8]), amz_date, scope, seed, tamper_chunk)
    assert len(body) == framed_len
    return requests.put(url, data=body, headers=signed, timeout=60)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def unsigned_trailer_body(data: bytes, checksum_b64: str) -> bytes:
    """Exactly what botocore's AwsChunkedWrapper writes."""
    out = bytearray()
    for chunk in pieces(data, CHUNK):
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    out += f"0\r\nx-amz-checksum-crc32:{checksum_b64}\r\n\r\n".encode()
    return bytes(out)


def assert_s3_error(resp: requests.Response, status: int, code: str | None = None) -> ET.Element:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert "Traceback" not in resp.text
    root = ET.fromstring(resp.content)
    assert root.tag == "Error"
    if code is not None:
        assert root.findtext("Code") == code, resp.text
    assert root.findtext("Code")
    assert root.findtext("Message")
    assert root.findtext("RequestId") == resp.headers.get("x-amz-request-id")
    return root


def admin_get(coordinator, url: str, **headers: str) -> requests.Response:
    return requests.get(url, auth=("admin", coordinator.token), headers=headers, timeout=60)


def assert_absent(coordinator, url: str) -> None:
    assert_s3_error(admin_get(coordinator, url), 404, "NoSuchKey")


def payload(n: int) -> bytes:
    # not a repeating pattern, so a misplaced chunk cannot compare equal
    seed = uuid.uuid4().bytes
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


@pytest.fixture(params=["prefix", "root"])
def endpoint(request: pytest.FixtureRequest, coordinator) -> str:
    return coordinator.endpoint if request.param == "prefix" else coordinator.root_endpoint


def new_url(endpoint: str, bucket: str) -> str:
    return f"{endpoint}/{bucket}/stream-{uuid.uuid4().hex[:12]}"


# --- STREAMING-AWS4-HMAC-SHA256-PAYLOAD ---------------------------------------------------------


def test_signed_aws_chunked_put_stores_exactly_the_decoded_bytes(coordinator, bucket, endpoint) -> None:
    url = new_url(endpoint, bucket)
    data = payload(3 * CHUNK + 1234)
    resp = signed_chunked_put(coordinator, url, data)
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'

    got = admin_get(coordinator, url)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-length"] == str(len(data))
    assert "aws-chunked" not in got.headers.get("content-encoding", "")

    head = requests.head(url, auth=("admin", coordinator.token), timeout=30)
    assert head.headers["content-length"] == str(len(data))
    assert "content-encoding" not in head.headers


def test_signed_aws_chunked_put_keeps_a_real_content_encoding_but_not_aws_chunked(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    original = payload(3 * CHUNK)
    data = gzip.compress(original)
    resp = signed_chunked_put(coordinator, url, data, extra_headers={"Content-Encoding": "gzip,aws-chunked"})
    assert resp.status_code == 200, resp.text
    got = requests.get(url, auth=("admin", coordinator.token), stream=True, timeout=30)
    assert got.headers["content-encoding"] == "gzip"
    assert got.headers["content-length"] == str(len(data))
    # the stored bytes are the gzip stream itself, not re-encoded and not framed
    assert got.raw.read(decode_content=False) == data
    assert gzip.decompress(data) == original


def test_signed_aws_chunked_put_of_a_single_short_chunk(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    data = b"tiny"
    resp = signed_chunked_put(coordinator, url, data)
    assert resp.status_code == 200, resp.text
    assert admin_get(coordinator, url).content == data


@pytest.mark.parametrize("bad_chunk", [0, 2, 4], ids=["first", "middle", "final-empty"])
def test_tampered_chunk_signature_is_signature_mismatch_and_stores_nothing(
    coordinator,
    bucket,
    endpoint,
    bad_chunk,
) -> None:
    url = new_url(endpoint, bucket)
    data = payload(3 * CHUNK + 500)  # chunks 0..3 carry data, chunk 4 is the final empty one
    resp = signed_chunked_put(coordinator, url, data, tamper_chunk=bad_chunk)
    assert_s3_error(resp, 403, "SignatureDoesNotMatch")
    assert_absent(coordinator, url)


def test_chunk_signatures_are_chained_so_reordered_chunks_are_rejected(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    first, second = payload(CHUNK), payload(CHUNK)
    data = first + second
    framed_len = len(signed_chunked_body(data, b"k", "d", "s", "0" * 64))
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(framed_len),
    }
    signed = sign_headers("PUT", url, coordinator.token, headers, STREAMING_SIGNED)
    seed = re.search(r"Signature=([0-9a-f]{64})", signed["Authorization"]).group(1)
    amz_date = signed["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    body = signed_chunked_body(data, signing_key(coordinator.token, amz_date[:8]), amz_date, scope, seed)
    # swap the two (individually validly signed) data frames; each is `40000;chunk-signature=<64>\r\n<64 KiB>\r\n`
    frame = len(f"{CHUNK:x};chunk-signature=".encode()) + 64 + 2 + CHUNK + 2
    swapped = body[frame : 2 * frame] + body[:frame] + body[2 * frame :]
    assert len(swapped) == len(body)
    assert swapped[frame:].startswith(f"{CHUNK:x};chunk-signature=".encode())
    resp = requests.put(url, data=swapped, headers=signed, timeout=60)
    assert_s3_error(resp, 403, "SignatureDoesNotMatch")
    assert_absent(coordinator, url)


@pytest.mark.parametrize("delta", [-1, +1, +CHUNK], ids=["one-less", "one-more", "a-chunk-more"])
def test_wrong_decoded_content_length_is_rejected_and_stores_nothing(
    coordinator,
    bucket,
    endpoint,
    delta,
) -> None:
    url = new_url(endpoint, bucket)
    data = payload(2 * CHUNK + 77)
    resp = signed_chunked_put(coordinator, url, data, decoded_length=len(data) + delta)
    assert_s3_error(resp, 400)
    assert_absent(coordinator, url)


def test_signed_aws_chunked_put_with_wrong_secret_stores_nothing(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    data = payload(CHUNK + 1)
    framed_len = len(signed_chunked_body(data, b"k", "d", "s", "0" * 64))
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(framed_len),
    }
    signed = sign_headers("PUT", url, "wrong-secret", headers, STREAMING_SIGNED)
    seed = re.search(r"Signature=([0-9a-f]{64})", signed["Authorization"]).group(1)
    amz_date = signed["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    body = signed_chunked_body(data, signing_key("wrong-secret", amz_date[:8]), amz_date, scope, seed)
    assert_s3_error(requests.put(url, data=body, headers=signed, timeout=60), 403, "SignatureDoesNotMatch")
    assert_absent(coordinator, url)


# --- STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER (signed chunks and a signed trailer) ---------------


def signed_trailer_put(
    coordinator,
    url: str,
    data: bytes,
    checksum_b64: str,
    tamper_trailer_signature: bool = False,
) -> requests.Response:
    def frame(seed: str, key: bytes, amz_date: str, scope: str) -> bytes:
        out = bytearray()
        prev = seed
        for chunk in [*pieces(data, CHUNK), b""]:
            sts = "\n".join(
                ("AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256, hashlib.sha256(chunk).hexdigest())
            )
            prev = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            out += f"{len(chunk):x};chunk-signature={prev}\r\n".encode() + chunk
            if chunk:
                out += b"\r\n"
        trailer = f"x-amz-checksum-crc32:{checksum_b64}\n"
        sts = "\n".join(
            ("AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev, hashlib.sha256(trailer.encode()).hexdigest())
        )
        trailer_sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if tamper_trailer_signature:
            trailer_sig = ("0" if trailer_sig[0] != "0" else "1") + trailer_sig[1:]
        out += f"x-amz-checksum-crc32:{checksum_b64}\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n".encode()
        return bytes(out)

    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(len(frame("0" * 64, b"k", "d", "s"))),
    }
    signed = sign_headers("PUT", url, coordinator.token, headers, STREAMING_SIGNED_TRAILER)
    seed = re.search(r"Signature=([0-9a-f]{64})", signed["Authorization"]).group(1)
    amz_date = signed["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    body = frame(seed, signing_key(coordinator.token, amz_date[:8]), amz_date, scope)
    assert str(len(body)) == headers["Content-Length"]
    return requests.put(url, data=body, headers=signed, timeout=60)


def test_signed_trailer_put_with_correct_checksum_and_signature_is_stored(coordinator, bucket, endpoint) -> None:
    url = new_url(endpoint, bucket)
    data = payload(2 * CHUNK + 17)
    resp = signed_trailer_put(coordinator, url, data, crc32_b64(data))
    assert resp.status_code == 200, resp.text
    got = admin_get(coordinator, url, **{"x-amz-checksum-mode": "ENABLED"})
    assert got.content == data
    assert got.headers["x-amz-checksum-crc32"] == crc32_b64(data)


def test_signed_trailer_put_with_tampered_trailer_signature_stores_nothing(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    data = payload(CHUNK + 17)
    resp = signed_trailer_put(coordinator, url, data, crc32_b64(data), tamper_trailer_signature=True)
    assert_s3_error(resp, 403, "SignatureDoesNotMatch")
    assert_absent(coordinator, url)


def test_signed_trailer_put_with_wrong_checksum_is_bad_digest(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    data = payload(CHUNK + 17)
    resp = signed_trailer_put(coordinator, url, data, crc32_b64(b"other"))
    assert_s3_error(resp, 400, "BadDigest")
    assert_absent(coordinator, url)


# --- STREAMING-UNSIGNED-PAYLOAD-TRAILER ----------------------------------------------------------


def unsigned_trailer_put(
    coordinator,
    url: str,
    data: bytes,
    checksum_b64: str,
    transport: str,
) -> requests.Response:
    body = unsigned_trailer_body(data, checksum_b64)
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-sdk-checksum-algorithm": "CRC32",
    }
    if transport == "content-length":
        headers["Content-Length"] = str(len(body))
    signed = sign_headers("PUT", url, coordinator.token, headers, STREAMING_UNSIGNED_TRAILER)
    assert signed["X-Amz-Content-SHA256"] == STREAMING_UNSIGNED_TRAILER
    if transport == "content-length":
        return requests.put(url, data=body, headers=signed, timeout=60)

    # as boto3 sends it: Transfer-Encoding: chunked underneath the aws-chunked framing, no Content-Length
    def stream() -> Iterator[bytes]:
        yield from pieces(body, 10_000)

    return requests.put(url, data=stream(), headers=signed, timeout=60)


@pytest.mark.parametrize("transport", ["transfer-encoding", "content-length"])
def test_unsigned_trailer_put_with_correct_crc32_is_stored_with_its_checksum(
    coordinator,
    bucket,
    endpoint,
    transport,
) -> None:
    url = new_url(endpoint, bucket)
    data = payload(3 * CHUNK + 999)
    resp = unsigned_trailer_put(coordinator, url, data, crc32_b64(data), transport)
    assert resp.status_code == 200, resp.text
    assert resp.headers.get("x-amz-checksum-crc32") == crc32_b64(data)

    got = admin_get(coordinator, url, **{"x-amz-checksum-mode": "ENABLED"})
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["x-amz-checksum-crc32"] == crc32_b64(data)
    assert "aws-chunked" not in got.headers.get("content-encoding", "")


@pytest.mark.parametrize("transport", ["transfer-encoding", "content-length"])
def test_unsigned_trailer_put_with_wrong_crc32_is_bad_digest_and_stores_nothing(
    coordinator,
    bucket,
    endpoint,
    transport,
) -> None:
    url = new_url(endpoint, bucket)
    data = payload(2 * CHUNK + 3)
    resp = unsigned_trailer_put(coordinator, url, data, crc32_b64(data + b"!"), transport)
    assert_s3_error(resp, 400, "BadDigest")
    assert_absent(coordinator, url)


def test_unsigned_trailer_put_without_the_announced_trailer_is_rejected(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    data = payload(1000)
    body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(len(body)),
    }
    signed = sign_headers("PUT", url, coordinator.token, headers, STREAMING_UNSIGNED_TRAILER)
    assert_s3_error(requests.put(url, data=body, headers=signed, timeout=60), 400)
    assert_absent(coordinator, url)


# --- boto3 itself in trailer mode ----------------------------------------------------------------


def test_boto3_put_object_sent_aws_chunked_with_trailer_round_trips(coordinator, bucket, endpoint) -> None:
    client = coordinator.client(endpoint)
    sent: list[dict[str, str]] = []

    def force_trailer(params, **kwargs) -> None:
        # what botocore decides over https; over http it would put the checksum in a header
        algorithm = params["context"]["checksum"]["request_algorithm"]
        algorithm["in"] = "trailer"

    def record(request, **kwargs) -> None:
        sent.append({k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()})

    client.meta.events.register("before-call.s3.PutObject", force_trailer)
    client.meta.events.register("before-send.s3.PutObject", record)

    key = f"boto-trailer-{uuid.uuid4().hex[:8]}"
    data = payload(5 * CHUNK + 321)
    out = client.put_object(Bucket=bucket, Key=key, Body=data)
    assert out["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert out["ChecksumCRC32"] == crc32_b64(data)

    (headers,) = sent
    assert headers["x-amz-content-sha256"] == STREAMING_UNSIGNED_TRAILER
    assert headers["content-encoding"] == "aws-chunked"
    assert headers["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert headers["transfer-encoding"] == "chunked"
    assert "content-length" not in headers

    got = client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == crc32_b64(data)
    assert "aws-chunked" not in got.get("ContentEncoding", "")
    assert got["ContentLength"] == len(data)


def test_boto3_trailer_mode_keeps_a_user_content_encoding(coordinator, bucket) -> None:
    client = coordinator.client()

    def force_trailer(params, **kwargs) -> None:
        params["context"]["checksum"]["request_algorithm"]["in"] = "trailer"

    client.meta.events.register("before-call.s3.PutObject", force_trailer)
    key = f"boto-trailer-enc-{uuid.uuid4().hex[:8]}"
    client.put_object(Bucket=bucket, Key=key, Body=b"pretend this is gzip", ContentEncoding="gzip")
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ContentEncoding"] == "gzip"
    assert head["ContentLength"] == len(b"pretend this is gzip")


# --- plain Transfer-Encoding: chunked ------------------------------------------------------------


def test_transfer_encoding_chunked_put_without_content_length_is_stored(coordinator, bucket, endpoint) -> None:
    url = new_url(endpoint, bucket)
    data = payload(2 * CHUNK + 5)
    signed = sign_headers("PUT", url, coordinator.token, {}, "UNSIGNED-PAYLOAD")
    assert "Content-Length" not in signed

    def stream() -> Iterator[bytes]:
        yield from pieces(data, 9_000)

    resp = requests.put(url, data=stream(), headers=signed, timeout=60)
    assert resp.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in resp.request.headers
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = admin_get(coordinator, url)
    assert got.content == data
    assert got.headers["content-length"] == str(len(data))


def test_transfer_encoding_chunked_put_with_signed_payload_hash_is_verified(coordinator, bucket) -> None:
    url = new_url(coordinator.endpoint, bucket)
    data = payload(CHUNK + 1)
    signed = sign_headers("PUT", url, coordinator.token, {}, hashlib.sha256(b"different").hexdigest())

    def stream() -> Iterator[bytes]:
        yield from pieces(data, 9_000)

    resp = requests.put(url, data=stream(), headers=signed, timeout=60)
    assert_s3_error(resp, 400, "XAmzContentSHA256Mismatch")
    assert_absent(coordinator, url)
