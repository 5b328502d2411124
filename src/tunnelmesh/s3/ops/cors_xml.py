"""The CORSConfiguration document of Put/GetBucketCors (docs/access-control.md, section 5, **CORS**).

Checked here against S3's rules (CORSRule: 1 to 100 rules; AllowedOrigin and AllowedMethod required; methods
GET/PUT/HEAD/POST/DELETE; ID of at most 255 characters; at most one `*` per origin and allowed header), turned
into `access.cors.CorsRule`s, which the access record keeps; GetBucketCors renders them back in AWS's order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from xml.etree.ElementTree import Element

from tunnelmesh.access.cors import METHODS, CorsRule, header_safe
from tunnelmesh.s3 import xml
from tunnelmesh.s3.errors import S3Error

MAX_RULES = 100
MAX_ID = 255
# 100 rules of a few origins and headers each fit many times over; the body reader stops at this size
MAX_DOCUMENT_BYTES = 64 * 1024
# MaxAgeSeconds is an Integer (32-bit) in S3's model
MAX_AGE = 2**31 - 1
_RULE_ELEMENTS = frozenset({"ID", "AllowedHeader", "AllowedMethod", "AllowedOrigin", "ExposeHeader", "MaxAgeSeconds"})


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedXML", message)


def _texts(rule: Element, name: str) -> tuple[str, ...]:
    out = []
    for el in rule.findall(name):
        if len(el):
            raise _malformed(f"{name} holds text only.")
        out.append((el.text or "").strip())
    return tuple(out)


def _at_most_one(rule: Element, name: str) -> str | None:
    found = _texts(rule, name)
    if len(found) > 1:
        raise _malformed(f"{name} is given more than once.")
    return found[0] if found else None


def _one_star(values: Sequence[str], name: str) -> None:
    for value in values:
        if value.count("*") > 1:
            raise _malformed(f'{name} "{value}" can not have more than one wildcard.')


def _rule(el: Element) -> CorsRule:
    unknown = sorted({child.tag for child in el} - _RULE_ELEMENTS)
    if unknown:
        raise _malformed(f"Unknown element {unknown[0]} in a CORSRule.")
    rule_id = _at_most_one(el, "ID")
    if rule_id is not None and len(rule_id) > MAX_ID:
        raise _malformed(f"The ID of a CORSRule has at most {MAX_ID} characters.")
    origins, methods = _texts(el, "AllowedOrigin"), _texts(el, "AllowedMethod")
    if not origins or not methods:
        raise _malformed("A CORSRule needs at least one AllowedOrigin and one AllowedMethod.")
    if "" in origins:
        raise _malformed("An AllowedOrigin is empty.")
    for method in methods:
        if method not in METHODS:
            raise S3Error(
                "InvalidRequest", f"Found unsupported HTTP method in CORS config. Unsupported method is {method}"
            )
    headers, expose = _texts(el, "AllowedHeader"), _texts(el, "ExposeHeader")
    for name, values in (("AllowedOrigin", origins), ("AllowedHeader", headers), ("ExposeHeader", expose)):
        if not all(map(header_safe, values)):
            raise _malformed(f"An {name} holds a character a response header cannot carry.")
    _one_star(origins, "AllowedOrigin")
    _one_star(headers, "AllowedHeader")
    max_age: int | None = None
    if (text := _at_most_one(el, "MaxAgeSeconds")) is not None:
        # ASCII digits only: int() also takes a sign, other scripts' digits and underscores
        if not re.fullmatch(r"[0-9]{1,10}", text) or int(text) > MAX_AGE:
            raise _malformed(f"MaxAgeSeconds must be an integer from 0 to {MAX_AGE}.")
        max_age = int(text)
    return CorsRule(rule_id, origins, methods, headers, expose, max_age)


def parse_cors_configuration(body: bytes) -> tuple[CorsRule, ...]:
    if len(body) > MAX_DOCUMENT_BYTES:
        raise _malformed("The CORSConfiguration document is too large.")
    doc = xml.parse(body, "CORSConfiguration")
    if any(child.tag != "CORSRule" for child in doc):
        raise _malformed("A CORSConfiguration holds CORSRule elements only.")
    rules = doc.findall("CORSRule")
    if not 1 <= len(rules) <= MAX_RULES:
        raise _malformed(f"A CORS configuration has between 1 and {MAX_RULES} rules.")
    return tuple(_rule(r) for r in rules)


def cors_configuration_xml(rules: Sequence[CorsRule]) -> bytes:
    """The GetBucketCors document: each rule's elements in the order AWS writes them."""
    parts = []
    for r in rules:
        inner = [xml.element("ID", r.id)] if r.id is not None else []
        inner += [xml.element("AllowedHeader", h) for h in r.allowed_headers]
        inner += [xml.element("AllowedMethod", m) for m in r.allowed_methods]
        inner += [xml.element("AllowedOrigin", o) for o in r.allowed_origins]
        inner += [xml.element("ExposeHeader", h) for h in r.expose_headers]
        if r.max_age is not None:
            inner.append(xml.element("MaxAgeSeconds", r.max_age))
        parts.append(f"<CORSRule>{''.join(inner)}</CORSRule>")
    return xml.document("CORSConfiguration", parts)
