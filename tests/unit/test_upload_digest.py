"""Upload integrity (UploadDigest) and the checksum helpers, against hashlib, zlib and published check values."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import zlib
from collections.abc import AsyncIterator, Callable

import pytest
from awscrt import checksums as crt

from tunnelmesh.s3 import checksums
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.integrity import UploadDigest
from tunnelmesh.s3.request import Request

DATA = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes: not a multiple of any chunk size used below


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _crc(fn: Callable[[bytes], int], width: int) -> Callable[[bytes], bytes]:
    return lambda data: fn(data).to_bytes(width, "big")


# the reference digest of each algorithm, computed without tunnelmesh
REFERENCE: dict[str, Callable[[bytes], bytes]] = {
    "crc32": _crc(zlib.crc32, 4),
    "crc32c": _crc(crt.crc32c, 4),
    "crc64nvme": _crc(crt.crc64nvme, 8),
    "sha1": lambda d: hashlib.sha1(d).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
}
ALGORITHMS = sorted(REFERENCE)


@pytest.mark.parametrize(
    ("algorithm", "check"),
    [
        # the CRC catalogue's check values: the CRC of the ASCII digits "123456789"
        ("crc32", 0xCBF43926),
        ("crc32c", 0xE3069283),
        ("crc64nvme", 0xAE8B14860A799888),
    ],
)
def test_the_crc_references_are_the_published_ones(algorithm: str, check: int) -> None:
    assert int.from_bytes(REFERENCE[algorithm](b"123456789"), "big") == check


class Body:
    """A request body in chunks of `size` bytes; `trailers` as the aws-chunked decoder leaves them."""

    def __init__(self, data: bytes, size: int, trailers: dict[str, str] | None = None) -> None:
        self.chunks = [data[i : i + size] for i in range(0, len(data), size)]
        self.trailers = trailers or {}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for c in self.chunks:
            yield c


def request(headers: dict[str, str]) -> Request:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    return Request(method="PUT", raw_path="/b/k", raw_query="", headers=headers, receive=receive, prefix="")


def digest(
    headers: dict[str, str], data: bytes = DATA, size: int | None = None, declared: str | None = None, **trailers: str
) -> UploadDigest:
    """Stream `data` through a new UploadDigest as a handler does; the bytes must come out untouched."""
    d = UploadDigest(request(headers), declared)

    async def drain() -> bytes:
        return b"".join([c async for c in d.wrap(Body(data, size or max(len(data), 1), trailers))])

    assert asyncio.run(drain()) == data
    return d


def error(fn: Callable[[], object]) -> S3Error:
    with pytest.raises(S3Error) as e:
        fn()
    return e.value


def test_no_integrity_headers_gives_the_md5_and_no_checksum() -> None:
    d = digest({})
    assert (d.size, d.md5_hex, d.algorithm, d.checksums) == (len(DATA), hashlib.md5(DATA).hexdigest(), None, {})


def test_the_content_md5_is_checked() -> None:
    good = b64(hashlib.md5(DATA).digest())
    assert digest({"content-md5": good}).md5_hex == hashlib.md5(DATA).hexdigest()
    # with a checksum header too: both are checked
    sha = b64(REFERENCE["sha256"](DATA))
    assert digest({"content-md5": good, "x-amz-checksum-sha256": sha}).checksums == {"sha256": sha}
    bad_sha = b64(REFERENCE["sha256"](b""))
    assert error(lambda: digest({"content-md5": good, "x-amz-checksum-sha256": bad_sha})).code == "BadDigest"
    wrong = hashlib.md5(b"other").digest()
    e = error(lambda: digest({"content-md5": b64(wrong)}))
    assert (e.code, e.status) == ("BadDigest", 400)
    assert e.fields == {"ExpectedDigest": wrong.hex(), "CalculatedDigest": hashlib.md5(DATA).hexdigest()}


@pytest.mark.parametrize("value", ["", "not base64!", b64(b"\x00" * 15), b64(b"\x00" * 17), "AAAA", "=" * 24])
def test_a_malformed_content_md5_is_invalid_before_any_byte_is_read(value: str) -> None:
    e = error(lambda: UploadDigest(request({"content-md5": value})))
    assert (e.code, e.status) == ("InvalidDigest", 400)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_right_checksum_header_is_accepted_and_kept(algorithm: str) -> None:
    value = b64(REFERENCE[algorithm](DATA))
    d = digest({f"x-amz-checksum-{algorithm}": value})
    assert (d.algorithm, d.checksums) == (algorithm, {algorithm: value})
    assert d.md5_hex == hashlib.md5(DATA).hexdigest()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_wrong_checksum_header_is_a_bad_digest(algorithm: str) -> None:
    value = b64(REFERENCE[algorithm](DATA[:-1]))
    e = error(lambda: digest({f"x-amz-checksum-{algorithm}": value}))
    assert (e.code, e.status) == ("BadDigest", 400)
    assert algorithm.upper() in e.message


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_malformed_checksum_header_is_an_invalid_request(algorithm: str) -> None:
    right = b64(REFERENCE[algorithm](DATA))
    # empty, short, long, of the right length but not base64, and padding where data belongs
    for value in ("", right[:-4], right + "AAAA", "!" * len(right), "=" * len(right)):
        e = error(lambda v=value: UploadDigest(request({f"x-amz-checksum-{algorithm}": v})))
        assert (e.code, e.status) == ("InvalidRequest", 400), value


def test_an_unknown_checksum_algorithm_is_refused_and_mode_algorithm_type_are_not_checksums() -> None:
    e = error(lambda: UploadDigest(request({"x-amz-checksum-md5": b64(hashlib.md5(DATA).digest())})))
    assert (e.code, e.status) == ("InvalidRequest", 400)
    d = digest({"x-amz-checksum-mode": "ENABLED", "x-amz-checksum-algorithm": "CRC32", "x-amz-checksum-type": "x"})
    assert (d.algorithm, d.checksums) == (None, {})


def test_two_checksum_headers_at_once_are_an_invalid_request_even_when_both_are_right() -> None:
    headers = {f"x-amz-checksum-{a}": b64(REFERENCE[a](DATA)) for a in ("crc32", "sha256")}
    e = error(lambda: UploadDigest(request(headers)))
    assert (e.code, e.status) == ("InvalidRequest", 400)
    assert "single" in e.message


def test_the_sdk_algorithm_alone_computes_that_checksum_and_must_agree_with_the_header() -> None:
    d = digest({"x-amz-sdk-checksum-algorithm": "CRC32C"})
    assert d.checksums == {"crc32c": b64(REFERENCE["crc32c"](DATA))}
    headers = {"x-amz-sdk-checksum-algorithm": "SHA1", "x-amz-checksum-crc32": b64(REFERENCE["crc32"](DATA))}
    assert error(lambda: UploadDigest(request(headers))).code == "InvalidRequest"
    assert error(lambda: UploadDigest(request({"x-amz-sdk-checksum-algorithm": "MD5"}))).code == "InvalidRequest"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_trailing_checksum_is_checked_once_the_body_is_read(algorithm: str) -> None:
    name = f"x-amz-checksum-{algorithm}"
    headers = {"x-amz-trailer": name, "x-amz-sdk-checksum-algorithm": algorithm.upper()}
    right = b64(REFERENCE[algorithm](DATA))
    assert digest(headers, size=1000, **{name: right}).checksums == {algorithm: right}
    wrong = b64(REFERENCE[algorithm](b"other"))
    assert error(lambda: digest(headers, **{name: wrong})).code == "BadDigest"
    # declared but never sent
    e = error(lambda: digest(headers))
    assert (e.code, e.status) == ("InvalidRequest", 400)
    # a trailer of another algorithm than the declared one does not stand in for it
    other = "x-amz-checksum-crc32" if algorithm != "crc32" else "x-amz-checksum-sha1"
    assert error(lambda: digest(headers, **{other: right})).code == "InvalidRequest"


def test_a_trailer_that_is_not_a_checksum_is_an_invalid_request() -> None:
    for trailer in ("x-amz-meta-foo", "x-amz-checksum-md5"):
        assert error(lambda t=trailer: UploadDigest(request({"x-amz-trailer": t}))).code == "InvalidRequest"


def test_an_upload_parts_declared_algorithm_is_computed_and_another_is_refused() -> None:
    d = digest({}, declared="sha256")
    assert d.checksums == {"sha256": b64(REFERENCE["sha256"](DATA))}
    headers = {"x-amz-checksum-crc32": b64(REFERENCE["crc32"](DATA))}
    e = error(lambda: UploadDigest(request(headers), "sha256"))
    assert e.code == "InvalidRequest" and "mismatch" in e.message


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("data", [b"", b"x", DATA], ids=["empty", "one-byte", "10KiB"])
def test_digests_do_not_depend_on_how_the_body_is_chunked(algorithm: str, data: bytes) -> None:
    headers = {"x-amz-sdk-checksum-algorithm": algorithm}
    got = {
        size: (d.size, d.md5_hex, d.checksums)
        for size in (1, 7, len(data) or 1)
        for d in [digest(headers, data=data, size=size)]
    }
    expected = (len(data), hashlib.md5(data).hexdigest(), {algorithm: b64(REFERENCE[algorithm](data))})
    assert got == {size: expected for size in got}


# ---- multipart checksums -----------------------------------------------------------------------------------------

PARTS: list[list[bytes]] = [
    [DATA],
    [DATA[:5000], DATA[5000:]],
    [b"", DATA[:3], b"", DATA[3:], b""],  # empty parts first, between and last
    [b"a", b"b", b"c", b"d"],
    [b""],
    [b"", b""],
]


@pytest.mark.parametrize("algorithm", ["crc32", "crc32c", "crc64nvme"])
@pytest.mark.parametrize("parts", PARTS, ids=[f"parts{i}" for i in range(len(PARTS))])
def test_a_full_object_crc_from_the_parts_is_the_crc_of_the_whole(algorithm: str, parts: list[bytes]) -> None:
    ref = REFERENCE[algorithm]
    combined = checksums.full_object(algorithm, [(b64(ref(p)), len(p)) for p in parts])
    assert combined == b64(ref(b"".join(parts)))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_composite_checksum_is_the_checksum_of_the_part_checksums(algorithm: str) -> None:
    ref = REFERENCE[algorithm]
    parts = [DATA[:4000], DATA[4000:9000], DATA[9000:]]
    raw = [ref(p) for p in parts]
    assert checksums.composite(algorithm, [b64(r) for r in raw]) == f"{b64(ref(b''.join(raw)))}-3"
    assert checksums.composite(algorithm, [b64(raw[0])]) == f"{b64(ref(raw[0]))}-1"
    assert checksums.checksum_type(checksums.composite(algorithm, [b64(r) for r in raw])) == checksums.COMPOSITE


def test_the_multipart_etag_is_the_md5_of_the_part_md5s() -> None:
    parts = [DATA[:100], DATA[100:]]
    md5s = [hashlib.md5(p).digest() for p in parts]
    assert checksums.md5_of_parts([m.hex() for m in md5s]) == f"{hashlib.md5(b''.join(md5s)).hexdigest()}-2"
