"""S3 XML: hardened parsing of request documents and small writers for responses."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from xml.etree.ElementTree import Element
from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from tunnelmesh.s3.errors import S3Error

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def parse(body: bytes, root: str) -> Element:
    """Parse a request document with or without the S3 namespace; no DTDs, no entities."""
    if not body.strip():
        raise S3Error("MalformedXML")
    try:
        doc = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError, LookupError):  # LookupError: unknown encoding
        raise S3Error("MalformedXML") from None
    for el in doc.iter():
        if isinstance(el.tag, str) and el.tag.startswith("{"):
            el.tag = el.tag.split("}", 1)[1]
    if doc.tag != root:
        raise S3Error("MalformedXML", f"Expected a {root} document.")
    return doc


def text(el: Element, name: str, default: str | None = None) -> str | None:
    child = el.find(name)
    if child is None:
        return default
    return child.text or ""


# iso8601's pieces: strftime and gmtime took 2 us a time, most of a listing page's CPU (1000 of them)
_TIME_OF_DAY = tuple(f"T{m // 60:02d}:{m % 60:02d}:" for m in range(1440))
_SECONDS = tuple(f"{s:02d}." for s in range(60))
_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))
_DAYS: dict[int, str] = {}  # "YYYY-MM-DD" by days since the epoch: the few days a listing's objects were written in
_YEAR_10000 = 253402300800  # beyond, strftime's years grow a digit: left to it


def iso8601(t: float) -> str:
    """`t` as S3 writes times: 2006-02-03T16:45:09.123Z (milliseconds truncated, as time.gmtime truncates)."""
    if not 0 <= t < _YEAR_10000:  # before the epoch (int() would round up) or far ahead: the plain way
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
    day, sec = divmod(int(t), 86400)
    date = _DAYS.get(day)
    if date is None:
        if len(_DAYS) >= 4096:
            _DAYS.clear()
        date = _DAYS[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
    return f"{date}{_TIME_OF_DAY[sec // 60]}{_SECONDS[sec % 60]}{_MILLIS[int(t * 1000) % 1000]}"


# characters XML 1.0 cannot carry at all, not even as character references
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# ...and those that e() changes: one search over a page's keys at once tells whether any needs it
_NOT_PLAIN = re.compile("[&<>\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def e(value: object) -> str:
    """Escape text for XML; characters XML cannot hold become U+FFFD so the document stays
    well-formed (clients that need such keys exactly ask for encoding-type=url)."""
    return escape(_NOT_XML.sub("\ufffd", str(value)))


def texts(values: list[str]) -> list[str]:
    """e() of each: the list itself when none needs it (the common case: one regex pass over them all, where
    e() of each took a fifth of a 1000-key listing page's CPU), else each that does escaped."""
    if not _NOT_PLAIN.search("".join(values)):
        return values
    search = _NOT_PLAIN.search
    return [e(v) if search(v) else v for v in values]


def element(name: str, value: object) -> str:
    return f"<{name}>{e(value)}</{name}>"


def document(root: str, parts: Iterable[str]) -> bytes:
    return "".join([HEAD, f'<{root} xmlns="{NS}">', *parts, f"</{root}>"]).encode()


def error_document(code: str, message: str, resource: str, request_id: str, fields: dict[str, str]) -> bytes:
    extra = "".join(element(k, v) for k, v in fields.items())
    return (
        HEAD
        + f"<Error><Code>{e(code)}</Code><Message>{e(message)}</Message>"
        + (element("Resource", resource) if resource else "")
        + extra
        + f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    ).encode()
