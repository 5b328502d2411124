"""What an operation hands back to the edge: status, headers, and either bytes or blob ranges."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime


@dataclass(slots=True)
class BlobSlice:
    """`length` bytes from offset `offset` of an already opened blob file."""

    fd: int
    path: str
    offset: int
    length: int
    whole: bool  # the slice is the entire file (eligible for zero-copy pathsend)


@dataclass(slots=True)
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    slices: list[BlobSlice] | None = None

    def close(self) -> None:
        for s in self.slices or ():
            with contextlib.suppress(OSError):
                os.close(s.fd)
        self.slices = None


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(status, [("content-type", "application/xml")], body)


def http_date(t: float) -> str:
    return formatdate(t, usegmt=True)


def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch, or None for a value that is not an HTTP date (callers then ignore it)."""
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # a year of 25 digits overflows a C long
        return None


READ_CHUNK = 1024 * 1024


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
