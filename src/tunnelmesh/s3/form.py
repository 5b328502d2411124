"""A multipart/form-data request body read as a browser form upload: small fields, then one streamed file.

The fields before the file are held in memory (and capped, as S3 caps them); the file's bytes are
handed on as they arrive and never held whole; whatever follows the file is read and ignored.
The parsing itself is python-multipart's: this module only turns its callbacks into that shape.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from tunnelmesh.s3.errors import S3Error

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

# S3's limit on everything before the file (field names, values and part headers)
MAX_PRE_FILE_BYTES = 20 * 1024
# what is read (and ignored) after the file before the connection is given up instead
MAX_AFTER_FILE_BYTES = 64 * 1024
FILE_FIELD = "file"


def malformed() -> S3Error:
    return S3Error("MalformedPOSTRequest")


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type, or None when it is not one."""
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data":
        return None
    boundary = params.get(b"boundary", b"")
    if not boundary:
        raise malformed()
    return boundary


@dataclass(frozen=True, slots=True)
class FilePart:
    filename: str
    content_type: str


class FormReader:
    """Reads `fields()` first, then `file_data()`; the two share one parser over one body stream."""

    def __init__(self, body: AsyncIterable[bytes], boundary: bytes) -> None:
        self._body = aiter(body)
        self._events: deque[tuple[str, bytes]] = deque()
        self._ended = False  # the closing boundary was parsed
        try:
            self._parser = MultipartParser(boundary, self._callbacks())
        except FormParserError:  # e.g. a boundary longer than RFC 2046 allows
            raise malformed() from None

    def _callbacks(self) -> MultipartCallbacks:
        events = self._events

        def data(kind: str) -> Callable[[bytes, int, int], None]:
            return lambda buf, start, end: events.append((kind, bytes(buf[start:end])))

        def mark(kind: str) -> Callable[[], None]:
            return lambda: events.append((kind, b""))

        return {
            "on_part_begin": mark("begin"),
            "on_header_field": data("hname"),
            "on_header_value": data("hvalue"),
            "on_header_end": mark("hend"),
            "on_headers_finished": mark("headers"),
            "on_part_data": data("data"),
            "on_part_end": mark("end"),
            "on_end": mark("done"),
        }

    async def _next_event(self) -> tuple[str, bytes]:
        while not self._events:
            if self._ended:
                return "eof", b""
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._ended = True
                return "eof", b""
            try:
                self._parser.write(chunk)
            except FormParserError:
                raise malformed() from None
        kind, data = self._events.popleft()
        if kind == "done":
            self._ended = True
        return kind, data

    async def fields(self) -> tuple[dict[str, str], FilePart]:
        """The fields before the file, by lower-cased name, and the file part's own description."""
        fields: dict[str, str] = {}
        size = 0
        headers: list[tuple[bytes, bytes]] = []
        name_buf, value_buf, data = bytearray(), bytearray(), bytearray()
        disposition: dict[bytes, bytes] = {}
        while True:
            kind, chunk = await self._next_event()
            size += len(chunk)
            if size > MAX_PRE_FILE_BYTES:
                raise S3Error("MaxPostPreDataLengthExceeded")
            if kind == "begin":
                headers, data = [], bytearray()
            elif kind == "hname":
                name_buf += chunk
            elif kind == "hvalue":
                value_buf += chunk
            elif kind == "hend":
                headers.append((bytes(name_buf).strip().lower(), bytes(value_buf).strip()))
                name_buf, value_buf = bytearray(), bytearray()
            elif kind == "headers":
                disposition = _disposition(headers)
                name = _text(disposition[b"name"]).lower()
                if name == FILE_FIELD:
                    ctype = next((v for n, v in headers if n == b"content-type"), b"")
                    return fields, FilePart(_text(disposition.get(b"filename", b"")), _text(ctype))
            elif kind == "data":
                data += chunk
            elif kind == "end":
                name = _text(disposition[b"name"]).lower()
                if name in fields:
                    raise S3Error(
                        "InvalidArgument", f"The form field {name} is given more than once.", ArgumentName=name
                    )
                fields[name] = _text(bytes(data))
            else:  # the form ended, or the body did, before any file
                if kind == "eof" and not self._ended:
                    raise malformed()
                raise S3Error(
                    "InvalidArgument", "POST requires exactly one file upload per request.", ArgumentName=FILE_FIELD
                )

    async def file_data(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive; then the rest of the body is read and ignored (S3 ignores
        fields after the file), up to a bound past which the connection is closed instead."""
        while True:
            kind, chunk = await self._next_event()
            if kind == "data":
                if chunk:
                    yield chunk
            elif kind == "end":
                break
            else:  # the body stopped inside the file: it is not known to be whole
                raise malformed()
        await self._skip_rest()

    async def _skip_rest(self) -> None:
        # read to the end of the body even after the closing boundary (an epilogue, the final empty
        # message): a body left unread would close the connection instead of keeping it for the next request
        self._events.clear()
        skipped = 0
        while skipped <= MAX_AFTER_FILE_BYTES:
            try:
                skipped += len(await anext(self._body))
            except StopAsyncIteration:
                return


def _disposition(headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    value = next((v for n, v in headers if n == b"content-disposition"), None)
    if value is None:
        raise malformed()
    kind, params = parse_options_header(value)
    if kind != b"form-data" or b"name" not in params:
        raise malformed()
    return params


def _text(raw: bytes) -> str:
    """Browsers send field names, values and file names as UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", "POST form fields must be UTF-8.") from None
