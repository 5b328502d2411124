"""Where an object's bytes live, and how a byte range of them is opened for reading.

An object of at most INLINE_MAX bytes is kept in its metadata row (`ObjectRecord.data`); a larger one
in blob files, one per segment, read in segment order (a multipart object has one segment per part).
Only the store decides between the two, and only the store maps a byte range onto blob files, and, for
an encrypted object (SSE-S3, store/sse.py), a plaintext range onto the chunks that hold it: the layers
above never see ciphertext.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunnelmesh.store import sse
from tunnelmesh.store.blobs import Blobs
from tunnelmesh.store.errors import DamagedObject
from tunnelmesh.store.records import ObjectRecord

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger("tunnelmesh.store")

# objects up to this size are kept in their metadata row: one WAL write instead of a file, its
# fsync and a directory fsync; larger ones stream to blob files
INLINE_MAX = 32 * 1024

READ_CHUNK = 1024 * 1024
# an encrypted range up to this size is decrypted whole before the response starts, so a blob that fails
# authentication is answered 500 rather than cut short (the size under which the edge sends a body whole)
VERIFIED_READ = 256 * 1024
# chunks of an encrypted blob read and decrypted per step (1 MiB), off the event loop when more than one
SEALED_BATCH = 16


def keeps_inline(size: int) -> bool:
    """Whether an object of `size` bytes is kept in its metadata row rather than in a blob."""
    return size <= INLINE_MAX


async def once(data: bytes) -> AsyncIterator[bytes]:
    """A body in memory as the stream `Store.ingest` takes."""
    yield data


@dataclass(frozen=True, slots=True)
class Sealed:
    """How to read an encrypted blob: its AES key, the size of its plaintext, and the object it belongs to
    (named when its bytes fail authentication)."""

    key: bytes
    plain_size: int
    name: str


@dataclass(slots=True)
class BlobSlice:
    """`length` bytes from offset `offset` of an already opened blob file; of its plaintext when `sealed`."""

    fd: int
    path: str
    offset: int
    length: int
    whole: bool  # the slice is the entire file (eligible for zero-copy pathsend; never an encrypted one)
    sealed: Sealed | None = None


@dataclass(slots=True)
class ByteRange:
    """A byte range of an object, ready to read: the bytes themselves for an object kept in its row,
    else the blob files covering it, all opened already. The holder closes it (`close`)."""

    data: bytes = b""
    slices: list[BlobSlice] = field(default_factory=list)

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.data:
            yield self.data
        async for chunk in read_slices(self.slices):
            yield chunk

    def close(self) -> None:
        close_slices(self.slices)
        self.slices = []


def open_range(blobs: Blobs, rec: ObjectRecord, first: int, length: int, dek: bytes | None = None) -> ByteRange:
    """Bytes [first, first+length) of `rec`, with every blob file covering them opened now, before the
    caller sends a byte: an overwrite or delete committed meanwhile can then no longer pull them away
    (a freed blob is unlinked only after a grace period, and an open fd keeps its file readable).

    Each opened blob's size is checked against its record (an fstat of the fd held anyway): a missing
    or truncated blob raises DamagedObject here, before any status line, instead of a 200 cut short.
    A flipped byte keeps the size; the scheduled scrub finds those (hashing every read would halve
    its throughput). An encrypted object (`dek`, its data key) is read through its chunks: a flipped
    byte fails authentication, here for a range of up to VERIFIED_READ bytes (decrypted now), else where
    the stream reaches it (logged, and the response cut short: never a wrong byte).
    """
    if rec.data is not None:
        data = rec.data
        if dek is not None:
            try:
                data = sse.decrypt_inline(dek, data)
            except sse.Tampered as e:
                raise damaged(rec, f"its encrypted row data: {e}") from None
        return ByteRange(data=data[first : first + length])
    name, asked = f"{rec.bucket}/{rec.key}", length
    out: list[BlobSlice] = []
    try:
        pos = 0
        for seg in rec.segments:
            seg_end = pos + seg.size
            if seg_end > first and length > 0:
                start = max(first - pos, 0)
                n = min(seg.size - start, length)
                fd = blobs.open(seg.blob)
                sealed = Sealed(sse.blob_key(dek, seg.blob), seg.size, name) if dek is not None else None
                whole = start == 0 and n == seg.size and sealed is None
                out.append(BlobSlice(fd, os.fspath(blobs.path(seg.blob)), start, n, whole, sealed))
                actual = os.fstat(fd).st_size
                expected = seg.size if dek is None else sse.stored_size(seg.size)
                if actual != expected:
                    raise damaged(rec, f"blob {seg.blob} is {actual} bytes, its record says {expected}")
                first += n
                length -= n
            pos = seg_end
    except FileNotFoundError:
        close_slices(out)
        raise damaged(rec, f"blob {seg.blob} is missing") from None
    except DamagedObject:
        close_slices(out)
        raise
    if dek is not None and asked <= VERIFIED_READ:
        try:
            return ByteRange(data=b"".join(_decrypt_slice(s, s.sealed) for s in out if s.sealed is not None))
        except sse.Tampered as e:
            raise damaged(rec, str(e)) from None
        finally:
            close_slices(out)
    return ByteRange(slices=out)


def _decrypt_run(s: BlobSlice, sealed: Sealed, aes: AESGCM, i: int, j: int) -> bytes:
    """The plaintext of chunks i..j-1 of an encrypted blob. Raises sse.Tampered."""
    size, count = sealed.plain_size, sse.chunk_count(sealed.plain_size)
    want = sum(sse.stored_chunk_len(k, size) for k in range(i, j))
    stored = os.pread(s.fd, want, i * (sse.CHUNK + sse.TAG))
    if len(stored) != want:
        raise sse.Tampered(f"the blob ends early, in chunk {i}")
    out: list[bytes] = []
    pos = 0
    for k in range(i, j):
        n = sse.stored_chunk_len(k, size)
        out.append(sse.decrypt_chunk(aes, k, stored[pos : pos + n], k == count - 1))
        pos += n
    return b"".join(out)


def _trim(s: BlobSlice, i: int, plain: bytes) -> bytes:
    """The part of chunks i.. (`plain`) inside the slice's range."""
    lo = max(s.offset - i * sse.CHUNK, 0)
    hi = min(s.offset + s.length - i * sse.CHUNK, len(plain))
    return plain[lo:hi] if (lo, hi) != (0, len(plain)) else plain


def _decrypt_slice(s: BlobSlice, sealed: Sealed) -> bytes:
    span = sse.chunk_span(s.offset, s.length, sealed.plain_size)
    aes = sse.aesgcm(sealed.key)
    return _trim(s, span.first_chunk, _decrypt_run(s, sealed, aes, span.first_chunk, span.last_chunk + 1))


async def _read_sealed(s: BlobSlice, sealed: Sealed) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    span = sse.chunk_span(s.offset, s.length, sealed.plain_size)
    aes = sse.aesgcm(sealed.key)
    i = span.first_chunk
    while i <= span.last_chunk:
        j = min(i + SEALED_BATCH, span.last_chunk + 1)
        try:
            if j - i > 1:
                plain = await loop.run_in_executor(None, _decrypt_run, s, sealed, aes, i, j)
            else:
                plain = _decrypt_run(s, sealed, aes, i, j)
        except sse.Tampered as e:
            # the status line is sent: the response is cut short, so the client never takes it as whole
            log.error("DAMAGED OBJECT %r: %s; not served (run `tunnelmesh storage scrub`)", sealed.name, e)
            raise OSError(f"encrypted blob of {sealed.name!r} fails authentication") from None
        yield _trim(s, i, plain)
        i = j


def damaged(rec: ObjectRecord, problem: str) -> DamagedObject:
    name = f"{rec.bucket}/{rec.key}"
    # %r: a key is client data, and a line break in it must not forge a log line
    log.error("DAMAGED OBJECT %r: %s; not served (run `tunnelmesh storage scrub`)", name, problem)
    return DamagedObject(rec.bucket, rec.key, problem)


def close_slices(slices: list[BlobSlice]) -> None:
    for s in slices:
        with contextlib.suppress(OSError):
            os.close(s.fd)


async def read_slices(slices: list[BlobSlice], chunk: int = READ_CHUNK) -> AsyncIterator[bytes]:
    """The bytes of the slices in order; reads larger than a small chunk run off the event loop."""
    loop = asyncio.get_running_loop()
    for s in slices:
        if s.sealed is not None:
            async for piece in _read_sealed(s, s.sealed):
                yield piece
            continue
        pos, end = s.offset, s.offset + s.length
        while pos < end:
            n = min(chunk, end - pos)
            if n <= 64 * 1024:
                data = os.pread(s.fd, n, pos)
            else:
                data = await loop.run_in_executor(None, os.pread, s.fd, n, pos)
            if not data:
                raise OSError(f"blob ended early at {pos}")
            pos += len(data)
            yield data
