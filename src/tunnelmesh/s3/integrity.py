"""Upload integrity: Content-MD5, x-amz-checksum-* headers and trailers, verified while streaming.

The body is hashed once as it flows to disk; a mismatch raises at the end of the stream, before
anything is committed, so a corrupted upload stores nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import AsyncIterable, AsyncIterator

from tunnelmesh.lanes import Lane
from tunnelmesh.s3 import checksums
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request

_NOT_ALGORITHMS = {"mode", "algorithm", "type"}


class UploadDigest:
    def __init__(self, req: Request, declared_algorithm: str | None = None) -> None:
        self._req = req
        headers = req.headers
        md5_b64 = headers.get("content-md5")
        self.expected_md5: bytes | None = None
        if md5_b64 is not None:
            try:
                self.expected_md5 = base64.b64decode(md5_b64, validate=True)
            except (binascii.Error, ValueError):
                self.expected_md5 = b""
            if len(self.expected_md5) != 16:
                raise S3Error("InvalidDigest")
        given: dict[str, str] = {}
        for name, value in headers.items():
            if name.startswith("x-amz-checksum-"):
                alg = name[len("x-amz-checksum-") :]
                if alg in _NOT_ALGORITHMS:
                    continue
                alg = checksums.normalise_algorithm(alg)
                checksums.check_b64(alg, value)
                given[alg] = value
        if len(given) > 1:
            raise S3Error(
                "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            )
        sdk_alg = headers.get("x-amz-sdk-checksum-algorithm")
        trailer = headers.get("x-amz-trailer", "").strip().lower()
        self.trailer_algorithm: str | None = None
        if trailer:
            if not trailer.startswith("x-amz-checksum-"):
                raise S3Error("InvalidRequest", f"Unsupported trailer {trailer}.")
            self.trailer_algorithm = checksums.normalise_algorithm(trailer[len("x-amz-checksum-") :])
        self.expected: dict[str, str] = given
        algorithm = next(iter(given), None) or self.trailer_algorithm
        if sdk_alg:
            sdk = checksums.normalise_algorithm(sdk_alg)
            if algorithm and algorithm != sdk:
                raise S3Error("InvalidRequest", "Value for x-amz-sdk-checksum-algorithm header is invalid.")
            algorithm = sdk
        if declared_algorithm and algorithm and algorithm != declared_algorithm:
            raise S3Error(
                "InvalidRequest",
                f"Checksum Type mismatch occurred, expected checksum Type: {declared_algorithm}, "
                f"actual checksum Type: {algorithm}",
            )
        self.algorithm = algorithm or declared_algorithm
        self._md5 = hashlib.md5()
        self._hasher = checksums.new_hasher(self.algorithm) if self.algorithm else None
        self.size = 0
        self.md5_hex = ""
        self.checksums: dict[str, str] = {}

    async def wrap(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        # each hash on its own thread while the next batch is received (tunnelmesh/lanes.py)
        md5 = Lane(self._md5.update)
        hasher = Lane(self._hasher.update) if self._hasher is not None else None
        size = 0
        async for chunk in body:
            await md5.feed(chunk)
            if hasher is not None:
                await hasher.feed(chunk)
            size += len(chunk)
            yield chunk
        await md5.drain()
        if hasher is not None:
            await hasher.drain()
        self.size = size
        self._finish(body)

    def _finish(self, body: AsyncIterable[bytes]) -> None:
        digest = self._md5.digest()
        self.md5_hex = digest.hex()
        if self.expected_md5 is not None and not hmac.compare_digest(digest, self.expected_md5):
            raise S3Error("BadDigest", ExpectedDigest=self.expected_md5.hex(), CalculatedDigest=self.md5_hex)
        if self._hasher is None or self.algorithm is None:
            return
        value = checksums.b64(self._hasher.digest())
        expected = self.expected.get(self.algorithm)
        if expected is None and self.trailer_algorithm:
            trailers = getattr(body, "trailers", {})
            expected = trailers.get(f"x-amz-checksum-{self.trailer_algorithm}")
            if expected is None:
                raise S3Error("InvalidRequest", "The declared trailing checksum was not sent.")
        if expected is not None and not hmac.compare_digest(expected, value):
            raise S3Error(
                "BadDigest",
                f"The {self.algorithm.upper()} you specified did not match the calculated checksum.",
            )
        self.checksums = {self.algorithm: value}


async def read_document(req: Request, what: str, limit: int, required: bool) -> bytes:
    """A request document (a configuration, a DeleteObjects list), at most `limit` bytes, verified against the
    Content-MD5 or x-amz-checksum-* sent with it; with `required`, S3 wants one of them sent."""
    assert req.body is not None
    digest = UploadDigest(req)
    if required and digest.expected_md5 is None and not digest.expected and not digest.trailer_algorithm:
        raise S3Error("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*")
    buf = bytearray()
    async for chunk in digest.wrap(req.body):
        buf += chunk
        if len(buf) > limit:
            raise S3Error("MalformedXML", f"The {what} document is too large.")
    return bytes(buf)
