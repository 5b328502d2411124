"""Incremental checksums S3 clients send: CRC32, CRC32C, CRC64NVME, SHA1, SHA256 (and MD5 for ETags)."""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Protocol

from tunnelmesh.s3.errors import S3Error


class Hasher(Protocol):
    def update(self, data: bytes) -> None: ...
    def digest(self) -> bytes: ...


class _Crc:
    __slots__ = ("_fn", "_value", "_width")

    def __init__(self, fn, width: int) -> None:  # noqa: ANN001
        self._fn = fn
        self._value = 0
        self._width = width

    def update(self, data: bytes) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._width, "big")


def _crc32(data: bytes, prev: int) -> int:
    return zlib.crc32(data, prev)


def _crt(name: str):  # noqa: ANN202
    """awscrt's CRC32C / CRC64NVME, imported on first use (it costs a worker several MB)."""
    from awscrt import checksums as crt

    return getattr(crt, name)


ALGORITHMS: dict[str, object] = {
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
        return ALGORITHMS[algorithm]()  # type: ignore[operator]
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
