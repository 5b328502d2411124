"""Where an object's bytes live, and how a byte range of them is opened for reading.

An object of at most INLINE_MAX bytes is kept in its metadata row (`ObjectRecord.data`); a larger one
in blob files, one per segment, read in segment order (a multipart object has one segment per part).
Only the store decides between the two, and only the store maps a byte range onto blob files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from tunnelmesh.store.blobs import Blobs
from tunnelmesh.store.errors import DamagedObject
from tunnelmesh.store.records import ObjectRecord

log = logging.getLogger("tunnelmesh.store")

# objects up to this size are kept in their metadata row: one WAL write instead of a file, its
# fsync and a directory fsync; larger ones stream to blob files
INLINE_MAX = 32 * 1024

READ_CHUNK = 1024 * 1024


def keeps_inline(size: int) -> bool:
    """Whether an object of `size` bytes is kept in its metadata row rather than in a blob."""
    return size <= INLINE_MAX


async def once(data: bytes) -> AsyncIterator[bytes]:
    """A body in memory as the stream `Store.ingest` takes."""
    yield data


@dataclass(slots=True)
class BlobSlice:
    """`length` bytes from offset `offset` of an already opened blob file."""

    fd: int
    path: str
    offset: int
    length: int
    whole: bool  # the slice is the entire file (eligible for zero-copy pathsend)


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


def open_range(blobs: Blobs, rec: ObjectRecord, first: int, length: int) -> ByteRange:
    """Bytes [first, first+length) of `rec`, with every blob file covering them opened now, before the
    caller sends a byte: an overwrite or delete committed meanwhile can then no longer pull them away
    (a freed blob is unlinked only after a grace period, and an open fd keeps its file readable).

    Each opened blob's size is checked against its record (an fstat of the fd held anyway): a missing
    or truncated blob raises DamagedObject here, before any status line, instead of a 200 cut short.
    A flipped byte keeps the size; the scheduled scrub finds those (hashing every read would halve
    its throughput).
    """
    if rec.data is not None:
        return ByteRange(data=rec.data[first : first + length])
    out: list[BlobSlice] = []
    try:
        pos = 0
        for seg in rec.segments:
            seg_end = pos + seg.size
            if seg_end > first and length > 0:
                start = max(first - pos, 0)
                n = min(seg.size - start, length)
                fd = blobs.open(seg.blob)
                out.append(BlobSlice(fd, os.fspath(blobs.path(seg.blob)), start, n, start == 0 and n == seg.size))
                actual = os.fstat(fd).st_size
                if actual != seg.size:
                    raise _damaged(rec, f"blob {seg.blob} is {actual} bytes, its record says {seg.size}")
                first += n
                length -= n
            pos = seg_end
    except FileNotFoundError:
        close_slices(out)
        raise _damaged(rec, f"blob {seg.blob} is missing") from None
    except DamagedObject:
        close_slices(out)
        raise
    return ByteRange(slices=out)


def _damaged(rec: ObjectRecord, problem: str) -> DamagedObject:
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
