"""What an operation hands back to the edge: status, headers, and either bytes or blob ranges."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache

from tunnelmesh.store.content import BlobSlice, close_slices


@dataclass(slots=True)
class Response:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    slices: list[BlobSlice] | None = None  # opened by the store (Store.open_range)

    def close(self) -> None:
        close_slices(self.slices or [])
        self.slices = None


def xml_response(body: bytes, status: int = 200) -> Response:
    return Response(status, [("content-type", "application/xml")], body)


@lru_cache(maxsize=4096)
def http_date(t: float) -> str:
    # an object's mtime, read again at every GET/HEAD of it: formatting it took about 5 us of a 4 KiB GET
    return formatdate(t, usegmt=True)


def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch, or None for a value that is not an HTTP date (callers then ignore it)."""
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):  # a year of 25 digits overflows a C long
        return None
