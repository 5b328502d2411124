"""Conditional requests (RFC 7232 order) and single byte ranges, as S3 evaluates them."""

from __future__ import annotations

import re

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.response import parse_http_date
from tunnelmesh.store.records import ObjectRecord


def etags_of(header: str) -> list[str]:
    return [t.strip().removeprefix("W/").strip('"') for t in header.split(",") if t.strip()]


def etag_matches(header: str, etag: str) -> bool:
    tags = etags_of(header)
    return "*" in tags or etag in tags


def check_read(headers: dict[str, str], obj: ObjectRecord, prefix: str = "") -> bool:
    """False when If-None-Match / If-Modified-Since say the client's copy is current (a 304, which is
    an answer, not an error); PreconditionFailed (412) when If-Match / If-Unmodified-Since fail.

    With prefix "x-amz-copy-source-" the same rules apply to a copy source, where a failed
    If-None-Match / If-Modified-Since is a 412 too.
    """
    mtime = int(obj.mtime)
    if_match = headers.get(prefix + "if-match")
    if_none_match = headers.get(prefix + "if-none-match")
    if_unmod = headers.get(prefix + "if-unmodified-since")
    if_mod = headers.get(prefix + "if-modified-since")
    if if_match is not None:
        if not etag_matches(if_match, obj.etag):
            raise _failed(f"{prefix}If-Match")
    elif if_unmod is not None:
        t = parse_http_date(if_unmod)
        if t is not None and mtime > t:
            raise _failed(f"{prefix}If-Unmodified-Since")
    current: str | None = None
    if if_none_match is not None:
        if etag_matches(if_none_match, obj.etag):
            current = "If-None-Match"
    elif if_mod is not None:
        t = parse_http_date(if_mod)
        if t is not None and mtime <= t:
            current = "If-Modified-Since"
    if current is not None and prefix:
        raise _failed(prefix + current)
    return current is None


def _failed(condition: str) -> S3Error:
    return S3Error("PreconditionFailed", Condition=condition)


# ASCII digits only: `\d` alone would take other scripts' digits, which no HTTP client sends
_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$")
_COPY_RANGE = re.compile(r"^bytes=([0-9]+)-([0-9]+)$")
# past any object size (S3's limit is 5 TiB); longer digit strings stop here instead of reaching
# int(), which refuses more than 4300 digits and would turn a bad header into a 500
_HUGE = 10**19


def _offset(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return _HUGE if len(digits) > 19 else min(int(digits), _HUGE)


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """A satisfiable (first, last) byte range, None to ignore the header, or InvalidRange."""
    m = _RANGE.match(value.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # malformed, multi-range or another unit: S3 sends the whole object
    first, last = m.group(1), m.group(2)
    if not first:
        n = _offset(last)
        if n == 0 or size == 0:
            raise invalid_range(size)
        return max(0, size - n), size - 1
    start = _offset(first)
    end = _offset(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise invalid_range(size)
    return start, min(end, size - 1)


def invalid_range(size: int) -> S3Error:
    err = S3Error("InvalidRange", ActualObjectSize=str(size))
    err.headers.append(("content-range", f"bytes */{size}"))
    return err


def parse_copy_range(value: str, size: int) -> tuple[int, int]:
    """x-amz-copy-source-range takes closed ranges only."""
    m = _COPY_RANGE.match(value.strip())
    if not m:
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last.")
    first, last = _offset(m.group(1)), _offset(m.group(2))
    if last < first:
        raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of the form bytes=first-last.")
    if last >= size:
        raise S3Error("InvalidRange", ActualObjectSize=str(size))
    return first, last
