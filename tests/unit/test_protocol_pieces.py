"""Pure protocol pieces: SigV4 canonicalisation, ranges, XML hardening, key ordering, checksums."""

from __future__ import annotations

import asyncio
import base64

import pytest

from tunnelmesh.s3 import checksums, conditions, xml
from tunnelmesh.s3.auth import sigv4
from tunnelmesh.s3.auth.chunked import ChunkedBody
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import validate_bucket_name
from tunnelmesh.s3.request import Request, parse_query
from tunnelmesh.store.listing import prefix_successor


def make_request(method: str, raw_path: str, raw_query: str, headers: dict[str, str]) -> Request:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    req = Request(method=method, raw_path=raw_path, raw_query=raw_query, headers=headers, receive=receive, prefix="")
    req.query_items = parse_query(raw_query)
    req.query = {n: v for n, v, _, _ in req.query_items}
    return req


def test_sigv4_matches_the_aws_documentation_example() -> None:
    # "Example: GET Object" from the AWS SigV4 header-auth documentation
    req = make_request(
        "GET",
        "/test.txt",
        "",
        {
            "host": "examplebucket.s3.amazonaws.com",
            "range": "bytes=0-9",
            "x-amz-content-sha256": sigv4.EMPTY_SHA256,
            "x-amz-date": "20130524T000000Z",
        },
    )
    sr = sigv4.SignedRequest(
        sigv4.Scope("AKIAIOSFODNN7EXAMPLE", "20130524", "us-east-1", "s3"),
        ["host", "range", "x-amz-content-sha256", "x-amz-date"],
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
        "20130524T000000Z",
        False,
    )
    sigv4.verify(req, sr, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", sigv4.EMPTY_SHA256)
    sr.signature = "0" * 64
    with pytest.raises(S3Error) as e:
        sigv4.verify(req, sr, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", sigv4.EMPTY_SHA256)
    assert e.value.code == "SignatureDoesNotMatch"


def test_canonical_query_encodes_values_and_bare_names() -> None:
    req = make_request("GET", "/b", "uploads&prefix=a%20b+c&list-type=2", {})
    assert sigv4.canonical_query(req, False) == "list-type=2&prefix=a%20b%2Bc&uploads="


@pytest.mark.parametrize(
    ("value", "size", "expected"),
    [
        ("bytes=0-0", 5, (0, 0)),
        ("bytes=-2", 5, (3, 4)),
        ("bytes=3-", 5, (3, 4)),
        ("bytes=1-99", 5, (1, 4)),
        ("bytes=4-1", 5, None),
        ("items=0-1", 5, None),
        ("bytes=0-1,3-4", 5, None),
        ("bytes=-", 5, None),
        ("bytes=0-" + "9" * 5000, 5, (0, 4)),  # past int()'s digit limit: the end is clamped as any other
        ("bytes=-" + "9" * 5000, 5, (0, 4)),
        ("bytes=0000000000000000000000002-3", 5, (2, 3)),  # leading zeros are not magnitude
        ("bytes=\u0661-\u0662", 5, None),  # digits of other scripts: not an HTTP range, ignored
    ],
)
def test_ranges(value, size, expected) -> None:
    assert conditions.parse_range(value, size) == expected


@pytest.mark.parametrize(
    ("value", "size"),
    [("bytes=5-", 5), ("bytes=-0", 5), ("bytes=0-", 0), ("bytes=-1", 0), ("bytes=" + "9" * 5000 + "-", 5)],
)
def test_unsatisfiable_ranges(value, size) -> None:
    with pytest.raises(S3Error) as e:
        conditions.parse_range(value, size)
    assert e.value.code == "InvalidRange" and ("content-range", f"bytes */{size}") in e.value.headers


def test_xml_parser_refuses_entities_and_accepts_namespaces() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><Delete>&b;</Delete>'
    with pytest.raises(S3Error) as e:
        xml.parse(bomb, "Delete")
    assert e.value.code == "MalformedXML"
    doc = xml.parse(f'<Delete xmlns="{xml.NS}"><Object><Key>k&#xA;</Key></Object></Delete>'.encode(), "Delete")
    assert xml.text(doc.find("Object"), "Key") == "k\n"


def test_prefix_successor_bounds_every_key_with_the_prefix() -> None:
    for p in ["a/", "foo", "x\U0010ffff", "z"]:
        s = prefix_successor(p)
        assert s is not None
        assert s > p + "\U0010ffff" * 3
        assert not s.startswith(p)
    assert prefix_successor("\U0010ffff" * 2) is None  # no string is past every one that starts so


def test_checksum_helpers() -> None:
    h = checksums.new_hasher("crc64nvme")
    h.update(b"123456789")
    assert h.digest().hex() == "ae8b14860a799888"
    h = checksums.new_hasher("crc32c")
    h.update(b"123456789")
    assert h.digest().hex() == "e3069283"
    assert checksums.md5_of_parts(["d41d8cd98f00b204e9800998ecf8427e"]).endswith("-1")
    with pytest.raises(S3Error):
        checksums.normalise_algorithm("xxhash3")
    value = base64.b64encode(bytes(4)).decode()
    checksums.check_b64("crc32", value)
    with pytest.raises(S3Error):
        checksums.check_b64("crc32", "not-base64!")


def test_bucket_names() -> None:
    for ok in ["abc", "a-b.c", "a" * 63, "0ab"]:
        validate_bucket_name(ok)
    for bad in ["ab", "a" * 64, "Abc", "a_b", "a..b", "a.-b", "-ab", "ab-", "1.2.3.4", "xn--ab", "ab-s3alias"]:
        with pytest.raises(S3Error):
            validate_bucket_name(bad)


def _decode(framed: bytes, decoded_length: int | None) -> tuple[bytes, dict[str, str]]:
    async def raw():
        for i in range(0, len(framed), 7):  # odd split points exercise the parser's buffering
            yield framed[i : i + 7]

    async def run() -> tuple[bytes, dict[str, str]]:
        body = ChunkedBody(raw(), decoded_length, None, False)
        out = b"".join([c async for c in body])
        return out, body.trailers

    return asyncio.run(run())


def test_unsigned_aws_chunked_with_trailer_is_decoded() -> None:
    framed = b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
    data, trailers = _decode(framed, 11)
    assert data == b"hello world"
    assert trailers == {"x-amz-checksum-crc32": "DUoRhQ=="}


@pytest.mark.parametrize(
    "framed",
    [b"5\r\nhel", b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"5\r\nhello\r\n0\r\n\r\n"],
)
def test_malformed_or_short_aws_chunked_bodies_fail(framed) -> None:
    with pytest.raises(S3Error) as e:
        _decode(framed, 6)
    assert e.value.code == "IncompleteBody"


# ---- SigV4: credential scope, unsigned headers, presigned query headers --------------------------


@pytest.mark.parametrize(
    ("region", "service", "presigned", "code"),
    [
        ("eu-west-1", "s3", False, "AuthorizationHeaderMalformed"),
        ("eu-west-1", "s3", True, "AuthorizationQueryParametersError"),
        ("eu-central-1", "iam", False, "AuthorizationHeaderMalformed"),
        ("us-east-1", "sts", True, "AuthorizationQueryParametersError"),
    ],
)
def test_a_scope_for_another_region_or_service_is_refused(region, service, presigned, code) -> None:
    scope = sigv4.parse_scope(f"AKID/20260101/{region}/{service}/aws4_request")
    with pytest.raises(S3Error) as e:
        sigv4.check_scope(scope, "eu-central-1", presigned)
    assert e.value.code == code and e.value.status == 400
    if service == "s3":
        assert e.value.fields == {"Region": "eu-central-1"}


def test_a_scope_for_the_coordinator_region_or_us_east_1_is_accepted() -> None:
    for region in ("eu-central-1", "us-east-1"):
        sigv4.check_scope(sigv4.parse_scope(f"AKID/20260101/{region}/s3/aws4_request"), "eu-central-1", False)


def _signed(signed_headers: list[str]) -> sigv4.SignedRequest:
    scope = sigv4.parse_scope("AKID/20260101/us-east-1/s3/aws4_request")
    return sigv4.SignedRequest(scope, signed_headers, "0" * 64, "20260101T000000Z", True)


def test_every_x_amz_header_must_be_signed_and_only_those() -> None:
    headers = {
        "host": "h",
        "range": "bytes=0-1",
        "content-md5": "x",
        "x-amz-date": "20260101T000000Z",
        "x-amz-meta-a": "1",
        "x-amz-copy-source": "/b/k",
    }
    req = make_request("PUT", "/b/k", "", headers)
    with pytest.raises(S3Error) as e:
        sigv4.check_headers_signed(req, _signed(["host", "x-amz-date"]))
    assert e.value.code == "AccessDenied"
    assert e.value.fields == {"HeadersNotSigned": "x-amz-copy-source, x-amz-meta-a"}
    # range and content-md5 need no signature; signed x-amz-* headers pass
    sigv4.check_headers_signed(req, _signed(["host", "x-amz-copy-source", "x-amz-date", "x-amz-meta-a"]))


def test_presigned_query_x_amz_parameters_become_headers_but_auth_parameters_do_not() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a%2Fb&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=00&X-Amz-Security-Token=t&X-Amz-Content-Sha256=UNSIGNED-PAYLOAD"
        "&x-amz-meta-foo=bar&X-Amz-Meta-Two=1&X-Amz-Meta-Two=2&x-amz-checksum-crc32=AAAAAA%3D%3D&x-id=PutObject"
    )
    req = make_request("PUT", "/b/k", query, {"host": "h"})
    sigv4.apply_query_headers(req)
    assert req.headers == {
        "host": "h",
        "x-amz-meta-foo": "bar",
        "x-amz-meta-two": "1,2",
        "x-amz-checksum-crc32": "AAAAAA==",
    }


def test_a_query_header_that_contradicts_the_header_is_refused() -> None:
    req = make_request("PUT", "/b/k", "x-amz-meta-foo=query", {"host": "h", "x-amz-meta-foo": "header"})
    with pytest.raises(S3Error) as e:
        sigv4.apply_query_headers(req)
    assert e.value.code == "InvalidArgument"
    same = make_request("PUT", "/b/k", "x-amz-meta-foo=v", {"host": "h", "x-amz-meta-foo": "v"})
    sigv4.apply_query_headers(same)
    assert same.headers["x-amz-meta-foo"] == "v"
