"""Pure protocol pieces: SigV4 canonicalisation, ranges, XML hardening, key ordering, checksums."""

from __future__ import annotations

import asyncio
import base64

import pytest

from tunnelmesh.s3 import checksums, conditions, xml
from tunnelmesh.s3.auth import sigv4
from tunnelmesh.s3.auth.chunked import ChunkedBody
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import check_system_bucket_access, validate_bucket_name
from tunnelmesh.s3.request import Principal, Request, parse_query
from tunnelmesh.store.meta import prefix_successor


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
        assert s > p + "\U0010ffff" * 3
        assert not s.startswith(p)


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


def test_peers_may_not_touch_the_system_bucket_and_admins_may_only_read() -> None:
    req = make_request("GET", "/_tunnelmesh", "", {})
    req.principal = Principal("peer-1", is_admin=False)
    for read_only in (True, False):
        with pytest.raises(S3Error) as e:
            check_system_bucket_access(req, "_tunnelmesh", read_only)
        assert e.value.code == "AccessDenied"
    req.principal = Principal("admin", is_admin=True)
    check_system_bucket_access(req, "_tunnelmesh", True)
    with pytest.raises(S3Error):
        check_system_bucket_access(req, "_tunnelmesh", False)
    req.principal = Principal("peer-1", is_admin=False)
    check_system_bucket_access(req, "ordinary", False)


def _decode(framed: bytes, decoded_length: int | None) -> tuple[bytes, dict[str, str]]:
    async def raw():  # noqa: ANN202
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
