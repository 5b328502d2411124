"""Put/Get/DeleteBucketLifecycleConfiguration (docs/data-protection.md section 4).

The document is checked here against S3's rules and kept as store/lifecycle_rules.py's JSON, in the shape
the client wrote (a top-level Prefix stays one), so GetBucketLifecycleConfiguration gives it back. Actions
this server does not perform (transitions to other storage classes) are refused, never stored and ignored.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
from typing import Any
from xml.etree.ElementTree import Element

from tunnelmesh.s3 import xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.ops.tags import require_current_nodes
from tunnelmesh.s3.request import read_small_body
from tunnelmesh.s3.response import Response, xml_response

MAX_RULES = 1000
MAX_ID = 255
MAX_NEWER_VERSIONS = 100
# S3's day counts are 32-bit integers; a larger one would overflow the time arithmetic of every later write
MAX_DAYS = 2**31 - 1
_REFUSED = ("Transition", "NoncurrentVersionTransition")


def _malformed(message: str) -> S3Error:
    return S3Error("MalformedXML", message)


def _positive(el: Element, name: str, what: str, zero_ok: bool = False, most: int = MAX_DAYS) -> int:
    text = (xml.text(el, name) or "").strip()
    # ASCII digits only: int() also takes other scripts' digits and underscores
    if not re.fullmatch(r"[0-9]{1,19}", text):
        raise _malformed(f"{what} must be an integer.")
    n = int(text)
    if n < (0 if zero_ok else 1) or n > most:
        raise S3Error("InvalidArgument", f"{what} must be a positive integer of at most {most}.")
    return n


def _one(el: Element, name: str) -> Element | None:
    """The element `name` of `el`, refused if given twice (a second one would be silently ignored)."""
    found = el.findall(name)
    if len(found) > 1:
        raise _malformed(f"{name} is given more than once.")
    return found[0] if found else None


def _date(text: str) -> float:
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise S3Error("InvalidArgument", "Date must be in ISO 8601 format.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    if (when.hour, when.minute, when.second, when.microsecond) != (0, 0, 0, 0) or when.utcoffset():
        raise S3Error("InvalidArgument", "Date must be at midnight UTC.")
    return when.timestamp()


def _tag(el: Element) -> list[str]:
    key, value = xml.text(el, "Key"), xml.text(el, "Value")
    if key is None:
        raise _malformed("A Tag needs a Key.")
    return [key, value or ""]


def _sizes(el: Element, into: dict[str, Any]) -> None:
    for name, field in (("ObjectSizeGreaterThan", "gt"), ("ObjectSizeLessThan", "lt")):
        if el.find(name) is not None:
            into[field] = _positive(el, name, name, zero_ok=True, most=2**63 - 1)


def _filter(el: Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if (p := el.find("Prefix")) is not None:
        out["prefix"] = p.text or ""
    if (t := el.find("Tag")) is not None:
        out["tag"] = _tag(t)
    if (a := el.find("And")) is not None:
        conj: dict[str, Any] = {"tags": [_tag(t) for t in a.findall("Tag")]}
        if len({k for k, _ in conj["tags"]}) != len(conj["tags"]):
            raise S3Error("InvalidRequest", "Duplicate Tag Keys are not allowed.")
        if (p := a.find("Prefix")) is not None:
            conj["prefix"] = p.text or ""
        _sizes(a, conj)
        out["and"] = conj
    _sizes(el, out)
    if len(out) > 1:
        raise _malformed("A Filter holds one of Prefix, Tag, And, or an object size condition.")
    return out


def _rule(el: Element, ids: set[str]) -> dict[str, Any]:
    for name in _REFUSED:
        for transition in el.findall(name):
            if (d := xml.text(transition, "Date")) is not None:
                _date(d)  # a malformed document is the client's error (400) before it is our gap (501)
            raise S3Error("NotImplemented", f"{name} is not implemented: there is one storage class.")
    rule_id = xml.text(el, "ID") or secrets.token_hex(16)
    if len(rule_id) > MAX_ID:
        raise S3Error("InvalidArgument", f"ID length should not exceed allowed limit of {MAX_ID}")
    if rule_id in ids:
        raise S3Error("InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule")
    ids.add(rule_id)
    status = xml.text(el, "Status")
    if status not in ("Enabled", "Disabled"):
        raise _malformed("Status must be Enabled or Disabled.")
    rule: dict[str, Any] = {"id": rule_id, "status": status}
    prefix, filt = _one(el, "Prefix"), _one(el, "Filter")
    if prefix is not None and filt is not None:
        raise _malformed("A rule has either a Prefix or a Filter.")
    if prefix is not None:
        rule["prefix"] = prefix.text or ""
    elif filt is not None:
        rule["filter"] = _filter(filt)
    if (exp := _one(el, "Expiration")) is not None:
        parts: dict[str, Any] = {}
        if exp.find("Days") is not None:
            parts["days"] = _positive(exp, "Days", "Expiration Days")
        if (d := xml.text(exp, "Date")) is not None:
            parts["date"] = _date(d)
        if (m := xml.text(exp, "ExpiredObjectDeleteMarker")) is not None:
            if m.strip().lower() not in ("true", "false"):
                raise _malformed("ExpiredObjectDeleteMarker is true or false.")
            parts["marker"] = m.strip().lower() == "true"
        if len(parts) != 1:
            raise _malformed("An Expiration holds one of Days, Date or ExpiredObjectDeleteMarker.")
        rule["expiration"] = parts
    if (nc := _one(el, "NoncurrentVersionExpiration")) is not None:
        rule["noncurrent"] = {"days": _positive(nc, "NoncurrentDays", "NoncurrentDays")}
        if nc.find("NewerNoncurrentVersions") is not None:
            newer = _positive(nc, "NewerNoncurrentVersions", "NewerNoncurrentVersions", most=MAX_NEWER_VERSIONS)
            rule["noncurrent"]["newer"] = newer
    if (ab := _one(el, "AbortIncompleteMultipartUpload")) is not None:
        rule["abort"] = _positive(ab, "DaysAfterInitiation", "DaysAfterInitiation")
    if not {"expiration", "noncurrent", "abort"} & set(rule):
        raise _malformed("A rule needs at least one action.")
    # an upload has no tags or size yet, a delete marker neither: S3 refuses such filters with these actions
    # (applied without them, they would act on what the filter was meant to spare)
    f = rule.get("filter", {})
    conj = f.get("and", {})
    filtered = bool({"tag", "gt", "lt"} & set(f) or {"gt", "lt"} & set(conj) or conj.get("tags"))
    if filtered and ("abort" in rule or rule.get("expiration", {}).get("marker")):
        raise S3Error(
            "InvalidRequest",
            "AbortIncompleteMultipartUpload and ExpiredObjectDeleteMarker cannot be used with tag or size filters.",
        )
    return rule


def parse(body: bytes) -> list[dict[str, Any]]:
    doc = xml.parse(body, "LifecycleConfiguration")
    rules = doc.findall("Rule")
    if not rules or len(rules) > MAX_RULES:
        raise _malformed(f"A lifecycle configuration has between 1 and {MAX_RULES} rules.")
    ids: set[str] = set()
    return [_rule(r, ids) for r in rules]


def _render_filter(f: dict[str, Any]) -> str:
    out = []
    if "prefix" in f:
        out.append(xml.element("Prefix", f["prefix"]))
    if "tag" in f:
        out.append(f"<Tag>{xml.element('Key', f['tag'][0])}{xml.element('Value', f['tag'][1])}</Tag>")
    if "and" in f:
        a = f["and"]
        inner = [xml.element("Prefix", a["prefix"])] if "prefix" in a else []
        inner += [f"<Tag>{xml.element('Key', k)}{xml.element('Value', v)}</Tag>" for k, v in a["tags"]]
        inner += _render_sizes(a)
        out.append(f"<And>{''.join(inner)}</And>")
    out += _render_sizes(f)
    return f"<Filter>{''.join(out)}</Filter>"


def _render_sizes(d: dict[str, Any]) -> list[str]:
    out = [xml.element("ObjectSizeGreaterThan", d["gt"])] if "gt" in d else []
    return out + ([xml.element("ObjectSizeLessThan", d["lt"])] if "lt" in d else [])


def render(rules: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in rules:
        parts = [xml.element("ID", r["id"])]
        if "prefix" in r:
            parts.append(xml.element("Prefix", r["prefix"]))
        if "filter" in r:
            parts.append(_render_filter(r["filter"]))
        parts.append(xml.element("Status", r["status"]))
        if (e := r.get("expiration")) is not None:
            if "days" in e:
                inner = xml.element("Days", e["days"])
            elif "date" in e:
                inner = xml.element("Date", xml.iso8601(e["date"]))
            else:
                inner = xml.element("ExpiredObjectDeleteMarker", "true" if e["marker"] else "false")
            parts.append(f"<Expiration>{inner}</Expiration>")
        if (nc := r.get("noncurrent")) is not None:
            newer = xml.element("NewerNoncurrentVersions", nc["newer"]) if "newer" in nc else ""
            parts.append(
                f"<NoncurrentVersionExpiration>{xml.element('NoncurrentDays', nc['days'])}{newer}"
                "</NoncurrentVersionExpiration>"
            )
        if "abort" in r:
            parts.append(
                "<AbortIncompleteMultipartUpload>"
                f"{xml.element('DaysAfterInitiation', r['abort'])}</AbortIncompleteMultipartUpload>"
            )
        out.append(f"<Rule>{''.join(parts)}</Rule>")
    return out


async def put_bucket_lifecycle(ctx: Context, call: Call) -> Response:
    rules = parse(await read_small_body(call.req))
    await require_current_nodes(ctx, "Lifecycle")
    await ctx.store.set_lifecycle(call.req.bucket, json.dumps(rules))
    return Response(200)


async def get_bucket_lifecycle(ctx: Context, call: Call) -> Response:
    bucket = await call.bucket()
    if bucket.lifecycle is None:
        raise S3Error("NoSuchLifecycleConfiguration", BucketName=bucket.name)
    return xml_response(xml.document("LifecycleConfiguration", render(json.loads(bucket.lifecycle))))


async def delete_bucket_lifecycle(ctx: Context, call: Call) -> Response:
    await ctx.store.set_lifecycle(call.req.bucket, None)
    return Response(204)
