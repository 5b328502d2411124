"""Hostile input, (e): every error is an S3 XML error document, whatever the request.

Fuzzed methods, buckets, keys, query parameters, headers and credentials on both listeners; and error
documents that echo characters XML 1.0 cannot hold. The property: every error the S3 layer sends is a
well-formed S3 XML error document with no traceback and no secret in it. The check itself
(`check_reply`) and the shared harness are in helpers.py.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import (
    CASES,
    HYPOTHESIS,
    assert_no_process_died,
    basic,
    check_reply,
    error_code,
    exchange,
    hostile_keys,
    http_request,
    new_bucket,
)

# the traversal keys among `hostile_keys` must find the sentinel to leak, as in test_hostile_keys.py
pytestmark = pytest.mark.usefixtures("sentinel")


# --- (e) every error is an S3 XML error document ----------------------------------------------------------

QUERY_NAMES = [
    "acl", "uploads", "uploadId", "partNumber", "delete", "list-type", "versionId", "versions", "tagging",
    "location", "max-keys", "prefix", "delimiter", "encoding-type", "continuation-token", "start-after",
    "response-content-type", "x-id", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "Signature",
    "AWSAccessKeyId", "Expires", "marker", "max-uploads", "part-number-marker", "select", "restore",
]  # fmt: skip
HEADER_NAMES = [
    "Range", "If-Match", "If-None-Match", "If-Modified-Since", "x-amz-copy-source", "x-amz-copy-source-range",
    "Content-MD5", "x-amz-checksum-crc32", "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm",
    "x-amz-trailer", "x-amz-content-sha256", "x-amz-decoded-content-length", "x-amz-date", "Date",
    "Content-Encoding", "x-amz-meta-a", "x-amz-checksum-algorithm", "x-amz-checksum-type", "Expect",
    "If-Unmodified-Since", "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since",
]  # fmt: skip
HEADER_VALUES = [
    "*", "bytes=0-1", "bytes=5-1", "bytes=-0", "bytes=99999999999999999999-", '"abc"', "0", "-1",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "UNSIGNED-PAYLOAD", "aws-chunked", "CRC32", "crc64nvme",
    "x-amz-checksum-crc32", "/other-bucket/key", "100-continue", "FULL_OBJECT", "AAAA", "====",
    "Tue, 15 Nov 1994 08:12:31 GMT", "20991231T235959Z",
    "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000, "9" * 5000,
    "Mon, 01 Jan 99999999 00:00:00 GMT", "Mon, 01 Jan 9999999999999999999999999 00:00:00 GMT",
    "Mon, 01 Jan 2020 00:00:00 +99999999999999999999", "99999999T000000Z",
]  # fmt: skip
header_values = st.one_of(
    st.sampled_from(HEADER_VALUES),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
)
huge_numbers = st.sampled_from(["9" * 5000, "9" * 4000, "9" * 30, "-" + "9" * 30])
auth_kinds = st.sampled_from(["basic", "none", "bad-basic", "bad-bearer", "bad-sigv4", "garbage"])


def auth_header(kind: str, token: str) -> list[tuple[str, bytes]]:
    if kind == "basic":
        return [basic(token)]
    if kind == "none":
        return []
    if kind == "bad-basic":
        return [("Authorization", b"Basic " + base64.b64encode(f"admin:{token[:-1]}x".encode()))]
    if kind == "bad-bearer":
        return [("Authorization", f"Bearer {token[:-2]}zz".encode())]
    if kind == "bad-sigv4":
        return [
            ("Authorization", b"AWS4-HMAC-SHA256 Credential=admin/20000101/us-east-1/s3/aws4_request, "
             b"SignedHeaders=host, Signature=" + b"0" * 64),
            ("x-amz-date", b"20000101T000000Z"),
            ("x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
        ]  # fmt: skip
    return [("Authorization", b"\x01garbage")]


def test_e_every_error_response_is_an_s3_xml_error_document_without_traceback_or_secret(
    coordinator, s3, processes: set[int]
) -> None:
    bucket = new_bucket(s3, "errs")
    s3.put_object(Bucket=bucket, Key="exists", Body=b"0123456789")
    token = coordinator.token

    @settings(HYPOTHESIS, max_examples=150)
    @given(
        method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]),
        bucket_part=st.sampled_from([bucket, "no-such-bucket-here", "Bad_Name", "", "_tunnelmesh", "a"]),
        key=st.one_of(st.just(""), st.just("exists"), hostile_keys),
        query=st.lists(
            st.tuples(st.sampled_from(QUERY_NAMES), st.one_of(st.text(max_size=12), huge_numbers)), max_size=3
        ),
        headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=3),
        auth=auth_kinds,
        body=st.binary(max_size=64),
        endpoint=st.sampled_from(["prefix", "root"]),
    )
    def run(method, bucket_part, key, query, headers, auth, body, endpoint) -> None:
        prefix, port = ("/s3", coordinator.port) if endpoint == "prefix" else ("", coordinator.s3_port)
        path = f"{prefix}/{bucket_part}" + (f"/{quote(key, safe='/')}" if key else "")
        qs = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in query)
        target = (path + (f"?{qs}" if qs else "")).encode()
        hdrs = [("Host", b"127.0.0.1")] + auth_header(auth, token) + [(n, v.encode()) for n, v in headers]
        reply = exchange(port, http_request(method, target, hdrs, body), head=method == "HEAD", timeout=20)
        CASES["error documents"] += 1
        # the Authorization value "garbage" holds a control byte HTTP refuses; everything else is valid HTTP
        check_reply(reply, token, http_layer_ok=auth == "garbage", head=method == "HEAD", not_implemented_ok=True)
        # whatever the request said, the secret's neighbours (a wrong token one byte off) are not echoed
        assert token[:-1].encode() not in reply.raw and token[:-2].encode() not in reply.raw

    run()
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize(
    ("method", "target", "extra", "code"),
    [
        ("GET", "/s3/{bucket}/missing%01key", [], "NoSuchKey"),
        ("GET", "/s3/{bucket}/missing%00key", [], "NoSuchKey"),
        ("GET", "/s3/{bucket}/missing%EF%BF%BFkey", [], "NoSuchKey"),
        ("GET", "/s3/no%01such-bucket/key", [], "NoSuchBucket"),
        ("GET", "/s3/{bucket}/exists?versionId=%01", [], "InvalidArgument"),
        ("PUT", "/s3/{bucket}/copy-dst", [("x-amz-copy-source", b"/{bucket}/missing%01source")], "NoSuchKey"),
        ("PUT", "/s3/bad%01bucket-name", [], "InvalidBucketName"),
    ],
)
def test_e_error_documents_stay_well_formed_xml_when_they_echo_characters_xml_cannot_hold(
    coordinator, s3, method: str, target: str, extra: list, code: str
) -> None:
    """Keys, bucket names and arguments may hold U+0000-U+001F or U+FFFF; XML 1.0 cannot, so an error
    document that names them must not carry them raw."""
    bucket = new_bucket(s3, "xmlchars")
    s3.put_object(Bucket=bucket, Key="exists", Body=b"x")
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token)] + [
        (n, v.replace(b"{bucket}", bucket.encode())) for n, v in extra
    ]
    reply = exchange(coordinator.port, http_request(method, target.format(bucket=bucket).encode(), hdrs))
    CASES["xml-illegal echoes"] += 1
    check_reply(reply, coordinator.token)
    assert 400 <= reply.status < 500
    assert error_code(reply) == code
