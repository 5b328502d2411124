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


def iso8601(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


# characters XML 1.0 cannot carry at all, not even as character references
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def e(value: object) -> str:
    """Escape text for XML; characters XML cannot hold become U+FFFD so the document stays
    well-formed (clients that need such keys exactly ask for encoding-type=url)."""
    return escape(_NOT_XML.sub("\ufffd", str(value)))


def element(name: str, value: object) -> str:
    return f"<{name}>{e(value)}</{name}>"


def document(root: str, parts: Iterable[str]) -> bytes:
    return (HEAD + f'<{root} xmlns="{NS}">' + "".join(parts) + f"</{root}>").encode()


def error_document(code: str, message: str, resource: str, request_id: str, fields: dict[str, str]) -> bytes:
    extra = "".join(element(k, v) for k, v in fields.items())
    return (
        HEAD
        + f"<Error><Code>{e(code)}</Code><Message>{e(message)}</Message>"
        + (element("Resource", resource) if resource else "")
        + extra
        + f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    ).encode()
