"""aws-chunked bodies: `hex-size[;chunk-signature=sig]\\r\\n data \\r\\n ... 0...\\r\\n [trailers] \\r\\n`.

The framing is stripped before anything is hashed or stored. Signed chunks are verified as a chain
seeded by the request signature; a bad chunk fails the request before the object is committed.
Data is passed on as it arrives, so memory does not grow with the chunk size.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tunnelmesh.s3.errors import S3Error

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MAX_LINE = 4096


@dataclass(slots=True)
class ChunkSigning:
    key: bytes
    amz_date: str
    scope: str
    seed_signature: str


def _malformed(what: str) -> S3Error:
    return S3Error("IncompleteBody", f"The aws-chunked request body is malformed: {what}.")


class ChunkedBody:
    """Async iterator over the decoded payload; `trailers` is filled once it is exhausted."""

    def __init__(
        self,
        raw: AsyncIterator[bytes],
        decoded_length: int | None,
        signing: ChunkSigning | None,
        signed_trailer: bool,
    ) -> None:
        self._raw = raw
        self._decoded_length = decoded_length
        self._signing = signing
        self._signed_trailer = signed_trailer
        self._buf = bytearray()
        self.trailers: dict[str, str] = {}

    async def _fill(self) -> None:
        try:
            chunk = await anext(self._raw)
        except StopAsyncIteration:
            raise S3Error("IncompleteBody", "The request body ended before the aws-chunked framing did.") from None
        self._buf += chunk

    async def _line(self, eof_ok: bool = False) -> bytes | None:
        while (i := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > _MAX_LINE:
                raise _malformed("line too long")
            try:
                await self._fill()
            except S3Error:
                if eof_ok and not self._buf:
                    return None
                raise
        line = bytes(self._buf[:i])
        del self._buf[: i + 2]
        return line

    def _check_chunk_signature(self, prev: str, sig: str | None, digest: str) -> str:
        assert self._signing is not None
        if sig is None:
            raise S3Error("SignatureDoesNotMatch", "A chunk signature is missing.")
        s = self._signing
        sts = f"AWS4-HMAC-SHA256-PAYLOAD\n{s.amz_date}\n{s.scope}\n{prev}\n{EMPTY_SHA256}\n{digest}"
        expected = hmac.new(s.key, sts.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, sig.lower()):
            raise S3Error("SignatureDoesNotMatch", "The chunk signature does not match.")
        return expected

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._decode()

    async def _decode(self) -> AsyncIterator[bytes]:
        prev = self._signing.seed_signature if self._signing else ""
        total = 0
        while True:
            header = await self._line()
            assert header is not None
            size_text, _, ext = header.partition(b";")
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _malformed("bad chunk size") from None
            if size < 0:
                raise _malformed("bad chunk size")
            sig = None
            if ext:
                name, _, value = ext.partition(b"=")
                if name.strip() == b"chunk-signature":
                    sig = value.strip().decode("ascii", "replace")
            total += size
            if self._decoded_length is not None and total > self._decoded_length:
                raise S3Error("IncompleteBody", "The body is longer than X-Amz-Decoded-Content-Length.")
            h = hashlib.sha256() if self._signing else None
            remaining = size
            while remaining:
                if not self._buf:
                    await self._fill()
                take = min(remaining, len(self._buf))
                # one copy, not a slice's and then a bytes'; the view is released before the buffer shrinks
                with memoryview(self._buf) as view:
                    piece = bytes(view[:take])
                del self._buf[:take]
                remaining -= take
                if h is not None:
                    h.update(piece)
                yield piece
            if self._signing:
                prev = self._check_chunk_signature(prev, sig, h.hexdigest() if h else EMPTY_SHA256)
            if size == 0:
                break
            if await self._line() != b"":
                raise _malformed("chunk data is not followed by CRLF")
        await self._read_trailers(prev)
        if self._decoded_length is not None and total != self._decoded_length:
            raise S3Error(
                "IncompleteBody",
                "You did not provide the number of bytes specified by X-Amz-Decoded-Content-Length.",
            )

    async def _read_trailers(self, prev: str) -> None:
        lines: list[tuple[str, str]] = []
        while True:
            line = await self._line(eof_ok=True)
            if not line:  # the closing empty line, or a client that just stopped after the last chunk
                break
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _malformed("bad trailer line")
            lines.append((name.strip().lower(), value.strip()))
        sig = None
        for name, value in lines:
            if name == "x-amz-trailer-signature":
                sig = value
            else:
                self.trailers[name] = value
        if self._signed_trailer and self._signing:
            if sig is None:
                raise S3Error("SignatureDoesNotMatch", "The trailer signature is missing.")
            text = "".join(f"{n}:{v}\n" for n, v in lines if n != "x-amz-trailer-signature")
            s = self._signing
            sts = (
                f"AWS4-HMAC-SHA256-TRAILER\n{s.amz_date}\n{s.scope}\n{prev}\n"
                f"{hashlib.sha256(text.encode()).hexdigest()}"
            )
            expected = hmac.new(s.key, sts.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, sig.lower()):
                raise S3Error("SignatureDoesNotMatch", "The trailer signature does not match.")
