"""Incremental checksums S3 clients send: CRC32, CRC32C, CRC64NVME, SHA1, SHA256 (and MD5 for ETags)."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable
from typing import Protocol

from tunnelmesh.s3.errors import S3Error


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    __slots__ = ("_fn", "_value", "_width")

    def __init__(self, fn: Callable[[bytes, int], int], width: int) -> None:
        self._fn = fn
        self._value = 0
        self._width = width

    def update(self, data: bytes) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def _crc32(data: bytes, prev: int) -> int:
    return zlib.crc32(data, prev)


def _crt(name: str) -> Callable[[bytes, int], int]:
    """awscrt's CRC32C / CRC64NVME, imported on first use (it costs a worker several MB)."""
    from awscrt import checksums as crt

    fn: Callable[[bytes, int], int] = getattr(crt, name)
    return fn


ALGORITHMS: dict[str, Callable[[], Hasher]] = {
    "crc32": lambda: _Crc(_crc32, 4),
    "crc32c": lambda: _Crc(_crt("crc32c"), 4),
    "crc64nvme": lambda: _Crc(_crt("crc64nvme"), 8),
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}

# the length of each algorithm's base64 value, to reject malformed headers before hashing
_B64_LEN = {"crc32": 8, "crc32c": 8, "crc64nvme": 12, "sha1": 28, "sha256": 44}


def new_hasher(algorithm: str) -> Hasher:
    try:
        return ALGORITHMS[algorithm]()
    except KeyError:
        raise S3Error("InvalidRequest", f"Unsupported checksum algorithm: {algorithm}") from None


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def normalise_algorithm(name: str) -> str:
    alg = name.strip().lower()
    if alg not in ALGORITHMS:
        raise S3Error("InvalidRequest", f"Value for x-amz-sdk-checksum-algorithm header is invalid: {name}")
    return alg


def check_b64(algorithm: str, value: str) -> None:
    if len(value) != _B64_LEN[algorithm]:
        raise S3Error("InvalidRequest", f"Value for x-amz-checksum-{algorithm} header is invalid.")
    try:
        base64.b64decode(value, validate=True)
    except ValueError:
        raise S3Error("InvalidRequest", f"Value for x-amz-checksum-{algorithm} header is invalid.") from None


def md5_of_parts(part_md5_hex: list[str]) -> str:
    """The multipart ETag: md5 of the concatenated binary part md5s, then -N."""
    h = hashlib.md5()
    for p in part_md5_hex:
        h.update(bytes.fromhex(p))
    return f"{h.hexdigest()}-{len(part_md5_hex)}"


def composite(algorithm: str, part_values_b64: list[str]) -> str:
    """A COMPOSITE multipart checksum: checksum of the concatenated part checksums, then -N."""
    h = new_hasher(algorithm)
    for v in part_values_b64:
        h.update(base64.b64decode(v))
    return f"{b64(h.digest())}-{len(part_values_b64)}"


# ---- multipart checksum types ---------------------------------------------------------------------

COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"
# which type each algorithm allows for a multipart upload: a CRC of the whole object can be derived from
# the parts' CRCs and lengths, a hash cannot; CRC64NVME has no composite form (S3's own rules)
_TYPES: dict[str, frozenset[str]] = {
    "crc32": frozenset({COMPOSITE, FULL_OBJECT}),
    "crc32c": frozenset({COMPOSITE, FULL_OBJECT}),
    "crc64nvme": frozenset({FULL_OBJECT}),
    "sha1": frozenset({COMPOSITE}),
    "sha256": frozenset({COMPOSITE}),
}
_COMBINE = {"crc32": "combine_crc32", "crc32c": "combine_crc32c", "crc64nvme": "combine_crc64nvme"}


def checksum_type(value: str) -> str:
    """An object's checksum type, read from its stored value: only a COMPOSITE value has the "-N" suffix
    (base64 has no "-"), so the value alone tells it, for rows of every age."""
    return COMPOSITE if "-" in value else FULL_OBJECT


def upload_algorithm(name: str) -> str:
    """CreateMultipartUpload's x-amz-checksum-algorithm, in S3's words when it is none of ours."""
    alg = name.strip().lower()
    if alg not in ALGORITHMS:
        raise S3Error(
            "InvalidRequest",
            "Checksum algorithm provided is unsupported. Please try again with any of the valid types: "
            "[CRC32, CRC32C, CRC64NVME, SHA1, SHA256]",
        )
    return alg


def multipart_type(algorithm: str | None, requested: str) -> str | None:
    """The checksum type of a new multipart upload (None without an algorithm), or S3's 400 for a
    type it does not allow: without a type, COMPOSITE where the algorithm has one, else FULL_OBJECT."""
    requested = requested.strip()
    if requested and requested not in (COMPOSITE, FULL_OBJECT):
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    if algorithm is None:
        if requested:
            raise S3Error(
                "InvalidRequest",
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            )
        return None
    allowed = _TYPES[algorithm]
    if not requested:
        return COMPOSITE if COMPOSITE in allowed else FULL_OBJECT
    if requested not in allowed:
        raise S3Error(
            "InvalidRequest", f"The {requested} checksum type cannot be used with the {algorithm} checksum algorithm."
        )
    return requested


def full_object(algorithm: str, parts: list[tuple[str, int]]) -> str:
    """A FULL_OBJECT multipart checksum: the CRC of the whole object, from each part's (base64 CRC, size)
    without reading a byte of data (a CRC of A+B follows from CRC(A), CRC(B) and len(B))."""
    from awscrt import checksums as crt  # imported on first use, as in _crt

    combine = getattr(crt, _COMBINE[algorithm])
    width = 8 if algorithm == "crc64nvme" else 4
    crc = 0
    for i, (value, size) in enumerate(parts):
        part = int.from_bytes(base64.b64decode(value), "big")
        crc = part if i == 0 else combine(crc, part, size)
    return b64(crc.to_bytes(width, "big"))
