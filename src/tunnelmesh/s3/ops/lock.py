"""Object lock (docs/data-protection.md section 5): Put/GetObjectLockConfiguration, Put/GetObjectRetention,
Put/GetObjectLegalHold, the lock headers of PutObject, CopyObject and CreateMultipartUpload, and the headers
reads answer.

A COMPLIANCE retention cannot be undone by anyone, admins included, so it is also a weapon: a peer that may
write a bucket could make its objects undeletable for years. So a retention or a legal hold asks actions of
their own (s3:PutObjectRetention, s3:PutObjectLegalHold: the bucket's owner, mesh admins, a bucket-admin grant;
never the write role), the lock headers of a write ask them too (s3/authz.py's EXTRA_ASKS), and
`s3.max_retention_days` caps how far ahead a retention may reach. Passing a GOVERNANCE retention
(x-amz-bypass-governance-retention) asks s3:BypassGovernanceRetention: mesh admins, or a policy that grants it.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Sequence

from tunnelmesh.s3 import xml
from tunnelmesh.s3.authz import actor, bypass_asked
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context, check_version_id, lookup_object, version_header
from tunnelmesh.s3.ops.tags import require_current_nodes
from tunnelmesh.s3.request import read_small_body
from tunnelmesh.s3.response import Response, xml_response
from tunnelmesh.store.commits import DAY, LOCK_MODES
from tunnelmesh.store.records import Lock, ObjectRecord

MODE, UNTIL, HOLD = "x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold"
# an upload's lock among its stored headers (an object's own headers never hold this name)
UPLOAD_LOCK = "x-amz-object-lock"


def _invalid(message: str, name: str = "") -> S3Error:
    e = S3Error("InvalidArgument", message)
    if name:
        e.fields["ArgumentName"] = name
    return e


def parse_until(value: str, ctx: Context, name: str = UNTIL) -> float:
    """A retain-until date (ISO 8601): in the future, and at most s3.max_retention_days ahead."""
    try:
        when = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _invalid("The retain until date must be provided in ISO 8601 format", name) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    until = when.timestamp()
    now = time.time()
    if until <= now:
        raise _invalid("The retain until date must be in the future!", name)
    if until > now + ctx.max_retention_days * DAY:
        raise _invalid(f"The retain until date must be at most {ctx.max_retention_days} days ahead", name)
    return until


def bypass(call: Call) -> bool:
    """x-amz-bypass-governance-retention: asked for, and (s3/authz.py) allowed as s3:BypassGovernanceRetention."""
    return bypass_asked(call.req)


async def audit_bypass(ctx: Context, call: Call, operation: str, versions: Sequence[tuple[str, str | None]]) -> None:
    """An honoured governance bypass goes to the audit trail (docs/access-control.md section 6): which
    operation, on which versions (key, version id)."""
    if versions:
        detail = [{"key": k, "version_id": v} for k, v in versions]
        await ctx.authz.audit.record(
            "retention.bypass", actor(call.req), call.req.bucket, operation=operation, versions=detail
        )


async def request_lock(ctx: Context, call: Call) -> Lock | None:
    """The lock a write asks for with the x-amz-object-lock-* headers, or None, checked (the edge asked
    s3:PutObjectRetention / s3:PutObjectLegalHold for these headers)."""
    h = call.req.headers
    mode, until_text, hold = h.get(MODE), h.get(UNTIL), h.get(HOLD)
    if mode is None and until_text is None and hold is None:
        return None
    if (mode is None) != (until_text is None):
        raise _invalid(f"{UNTIL} and {MODE} must both be supplied")
    if mode is not None and mode not in LOCK_MODES:
        raise _invalid("Unknown wormMode directive.", MODE)
    if hold is not None and hold not in ("ON", "OFF"):
        raise _invalid("Legal Hold must be either of 'ON' or 'OFF'", HOLD)
    until = parse_until(until_text, ctx) if until_text is not None else None
    if not (await call.bucket()).object_lock:  # the commit checks again: it may be this bucket's successor
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration", BucketName=call.req.bucket)
    await require_current_nodes(ctx, "Object lock")
    return Lock(mode, until, hold == "ON")


def keep_lock(lock: Lock | None, stored: dict[str, str]) -> None:
    """Keep a CreateMultipartUpload's checked lock among its upload's stored headers, for Complete."""
    if lock is not None:
        stored[UPLOAD_LOCK] = json.dumps([lock.mode, lock.until, lock.legal_hold])


def take_lock(stored: dict[str, str]) -> Lock | None:
    """The lock `keep_lock` kept (removed from the headers, which become the object's)."""
    kept = stored.pop(UPLOAD_LOCK, None)
    if kept is None:
        return None
    mode, until, hold = json.loads(kept)
    return Lock(mode, until, hold)


def response_headers(obj: ObjectRecord) -> list[tuple[str, str]]:
    """What a GET or HEAD says of the version's lock."""
    lock = obj.lock
    if lock is None:
        return []
    out = []
    if lock.mode is not None and lock.until is not None:
        out += [(MODE, lock.mode), (UNTIL, xml.iso8601(lock.until))]
    if lock.legal_hold:
        out.append((HOLD, "ON"))
    return out


# ---- the bucket's configuration -------------------------------------------------------------------------


async def put_object_lock_configuration(ctx: Context, call: Call) -> Response:
    req = call.req
    doc = xml.parse(await read_small_body(req), "ObjectLockConfiguration")
    if xml.text(doc, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML", "ObjectLockEnabled must be Enabled.")
    default: str | None = None
    rule = doc.find("Rule")
    if rule is not None:
        retention = rule.find("DefaultRetention")
        if retention is None:
            raise S3Error("MalformedXML", "A Rule needs a DefaultRetention.")
        mode = xml.text(retention, "Mode")
        days, years = xml.text(retention, "Days"), xml.text(retention, "Years")
        if mode not in LOCK_MODES or (days is None) == (years is None):
            raise S3Error("MalformedXML", "A DefaultRetention has a Mode and either Days or Years.")
        unit, count = ("days", days) if days is not None else ("years", years)
        assert count is not None
        if not re.fullmatch(r"-?[0-9]{1,19}", count.strip()):  # ASCII digits: int() takes other scripts' too
            raise S3Error("MalformedXML", f"{unit.title()} must be an integer.")
        n = int(count)
        if n <= 0:
            raise S3Error("InvalidRetentionPeriod", "The default retention period must be a positive integer value.")
        if n * (365 if unit == "years" else 1) > ctx.max_retention_days:
            raise S3Error(
                "InvalidRetentionPeriod",
                f"The default retention period must be at most {ctx.max_retention_days} days.",
            )
        default = json.dumps({"mode": mode, unit: n})
    await require_current_nodes(ctx, "Object lock")
    await ctx.store.set_lock_config(req.bucket, default)
    return Response(200)


async def get_object_lock_configuration(ctx: Context, call: Call) -> Response:
    bucket = await call.bucket()
    if not bucket.object_lock:
        raise S3Error("ObjectLockConfigurationNotFoundError", BucketName=bucket.name)
    body = [xml.element("ObjectLockEnabled", "Enabled")]
    if bucket.lock_default is not None:
        d = json.loads(bucket.lock_default)
        unit = "Days" if "days" in d else "Years"
        body.append(
            f"<Rule><DefaultRetention>{xml.element('Mode', d['mode'])}"
            f"{xml.element(unit, d[unit.lower()])}</DefaultRetention></Rule>"
        )
    return xml_response(xml.document("ObjectLockConfiguration", body))


# ---- a version's retention and legal hold ---------------------------------------------------------------


async def _locked_version(ctx: Context, call: Call) -> ObjectRecord:
    """The version a Get{Retention,LegalHold} names (as a read names it), in a bucket with object lock."""
    if not (await call.bucket()).object_lock:
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration", BucketName=call.req.bucket)
    return await lookup_object(ctx, call)


async def put_object_retention(ctx: Context, call: Call) -> Response:
    req = call.req
    vid = check_version_id(req)
    doc = xml.parse(await read_small_body(req), "Retention")
    mode, until_text = xml.text(doc, "Mode"), xml.text(doc, "RetainUntilDate")
    if mode is None and until_text is None:
        retention = None  # an empty Retention removes it (a GOVERNANCE one, with the bypass)
    elif mode not in LOCK_MODES or until_text is None:
        raise S3Error("MalformedXML", "A Retention has a Mode (GOVERNANCE or COMPLIANCE) and a RetainUntilDate.")
    else:
        retention = (mode, parse_until(until_text, ctx, "RetainUntilDate"))
    passes = bypass(call)
    await require_current_nodes(ctx, "Object lock")
    shown = await ctx.store.set_retention(req.bucket, req.key, vid, retention, passes)
    if passes:
        await audit_bypass(ctx, call, "PutObjectRetention", [(req.key, shown)])
    return Response(200, version_header(shown if vid is not None or shown != "null" else None))


async def get_object_retention(ctx: Context, call: Call) -> Response:
    obj = await _locked_version(ctx, call)
    if obj.lock is None or obj.lock.mode is None or obj.lock.until is None:
        raise S3Error("NoSuchObjectLockConfiguration", "The specified object does not have a ObjectLock configuration")
    body = [xml.element("Mode", obj.lock.mode), xml.element("RetainUntilDate", xml.iso8601(obj.lock.until))]
    return xml_response(xml.document("Retention", body))


async def put_object_legal_hold(ctx: Context, call: Call) -> Response:
    req = call.req
    vid = check_version_id(req)
    doc = xml.parse(await read_small_body(req), "LegalHold")
    status = xml.text(doc, "Status")
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML", "A LegalHold's Status is ON or OFF.")
    await require_current_nodes(ctx, "Object lock")
    shown = await ctx.store.set_legal_hold(req.bucket, req.key, vid, status == "ON")
    return Response(200, version_header(shown if vid is not None or shown != "null" else None))


async def get_object_legal_hold(ctx: Context, call: Call) -> Response:
    """A version never held reads as OFF: the store keeps no difference between "never" and "released"."""
    obj = await _locked_version(ctx, call)
    return xml_response(
        xml.document("LegalHold", [xml.element("Status", "ON" if obj.lock and obj.lock.legal_hold else "OFF")])
    )
