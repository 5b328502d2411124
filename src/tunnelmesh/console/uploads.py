"""The console's uploads (docs/operations.md 1.4): the server starts, completes and aborts the upload in
process as the signed-in principal and hands the browser presigned URLs; the bytes go straight from the
browser to `/s3` (the ordinary S3 path: slots, quotas, checksums, the client guard), never through here.

JSON in, JSON out, under `/console/api/uploads`:
- `POST /console/api/uploads` `{bucket, key, size, type}`: under 16 MiB one presigned PUT (`upload_id` null,
  `urls["1"]`); otherwise CreateMultipartUpload, `{upload_id, part_size, parts, urls}` for the first parts.
- `POST .../urls` `{bucket, key, upload_id, first}`: the URLs of the next parts (and fresh ones for a retry).
- `POST .../complete` `{bucket, key, upload_id, parts: [{part, etag}]}`: CompleteMultipartUpload.
- `POST .../abort` `{bucket, key, upload_id}`: AbortMultipartUpload.
A refusal of the S3 API is answered with its own status and code (`{error, message}`), so the console
refuses exactly what S3 refuses; the secret that signs the URLs never leaves the server.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunnelmesh.console.s3call import S3_PREFIX, Answer
from tunnelmesh.console.web import Handler, Reply, Req, Route, route
from tunnelmesh.s3.auth.presign import encode_path, presign_v4
from tunnelmesh.s3.ops.common import MAX_PART_SIZE

if TYPE_CHECKING:
    from tunnelmesh.console.app import Console

MIN_PART = 16 * 1024 * 1024  # also the size under which one PUT does (one request, nothing to clean up)
MAX_PARTS = 10_000
URL_BATCH = 32  # part URLs per answer: enough for 3 parts in flight, few enough to stay fresh
URL_SECONDS = 3600
BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


class Invalid(Exception):
    """A request this API cannot make sense of: a 400 with this message."""


@dataclass(frozen=True)
class Target:
    bucket: str
    key: str


def part_size(size: int) -> int:
    """16 MiB, or larger where 10,000 parts of 16 MiB would not hold the file."""
    return max(MIN_PART, math.ceil(size / MAX_PARTS))


def _json(status: int, doc: dict[str, Any]) -> Reply:
    return Reply(status, json.dumps(doc).encode(), "application/json")


def _doc(req: Req) -> dict[str, Any]:
    try:
        doc = json.loads(req.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise Invalid("The body is not JSON.") from None
    if not isinstance(doc, dict):
        raise Invalid("The body is not a JSON object.")
    return doc


def _target(doc: dict[str, Any]) -> Target:
    bucket, key = doc.get("bucket"), doc.get("key")
    if not isinstance(bucket, str) or not BUCKET.fullmatch(bucket):
        raise Invalid("bucket: a bucket name.")
    if not isinstance(key, str) or not key:
        raise Invalid("key: the object's key.")
    return Target(bucket, key)


def _int(doc: dict[str, Any], name: str, low: int, high: int) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(f"{name}: a whole number from {low} to {high}.")
    return value


def _upload_id(doc: dict[str, Any]) -> str:
    value = doc.get("upload_id")
    if not isinstance(value, str) or not value:
        raise Invalid("upload_id: the id the upload was started with.")
    return value


def _field(answer: Answer, name: str) -> str:
    """A field of the S3 API's XML error ("" when the body is not XML)."""
    try:
        return answer.xml().findtext(name) or ""
    except ET.ParseError:
        return ""


def _refusal(answer: Answer) -> Reply:
    """The S3 API's own refusal, status and code, as JSON (a 5xx stays a 5xx: the console did not fail)."""
    code = _field(answer, "Code") or f"HTTP{answer.status}"
    return _json(answer.status, {"error": code, "message": _field(answer, "Message")})


def _url(console: Console, req: Req, method: str, t: Target, query: list[tuple[str, str]]) -> str:
    """A presigned `method` of the object on this listener's /s3 (the host the browser addressed), signed
    with the session's secret."""
    assert req.ident is not None
    p = req.ident.principal
    path = encode_path(f"{S3_PREFIX}/{t.bucket}/{t.key}")
    host = req.headers.get("host", "")
    qs = presign_v4(method, host, path, query, p.key_id or p.peer_id, req.ident.secret, console.region, URL_SECONDS)
    return f"{path}?{qs}"


def _part_urls(console: Console, req: Req, t: Target, upload_id: str, first: int, parts: int) -> dict[str, str]:
    last = min(parts, first + URL_BATCH - 1)
    return {
        str(n): _url(console, req, "PUT", t, [("partNumber", str(n)), ("uploadId", upload_id)])
        for n in range(first, last + 1)
    }


async def _call(console: Console, req: Req, method: str, t: Target, **kw: Any) -> Answer:
    assert req.ident is not None
    return await console.calls.s3(req.ident.principal, method, t.bucket, t.key, client=req.client, **kw)


JsonHandler = Callable[["Console", Req, dict[str, Any]], Awaitable[Reply]]


def _guarded(handler: JsonHandler) -> Handler:
    """The handler of a JSON request: the body parsed, a request that makes no sense a 400 in JSON."""

    async def run(console: Console, req: Req) -> Reply:
        try:
            return await handler(console, req, _doc(req))
        except Invalid as e:
            return _json(400, {"error": "InvalidRequest", "message": str(e)})

    return run


async def start(console: Console, req: Req, doc: dict[str, Any]) -> Reply:
    t = _target(doc)
    size = _int(doc, "size", 0, MAX_PARTS * MAX_PART_SIZE)
    ctype = doc.get("type") or ""
    if not isinstance(ctype, str) or len(ctype) > 255 or not ctype.isprintable():
        raise Invalid("type: a content type.")
    if size < MIN_PART:
        # the browser sends the file's own Content-Type with the PUT (only host is signed)
        url = _url(console, req, "PUT", t, [])
        return _json(200, {"upload_id": None, "part_size": size, "parts": 1, "urls": {"1": url}})
    psize = part_size(size)
    parts = math.ceil(size / psize)
    headers = [("content-type", ctype)] if ctype else []
    answer = await _call(console, req, "POST", t, query=[("uploads", "")], headers=headers)
    if not answer.ok:
        return _refusal(answer)
    upload_id = answer.xml().findtext("UploadId") or ""
    urls = _part_urls(console, req, t, upload_id, 1, parts)
    return _json(200, {"upload_id": upload_id, "part_size": psize, "parts": parts, "urls": urls})


async def more_urls(console: Console, req: Req, doc: dict[str, Any]) -> Reply:
    t = _target(doc)
    upload_id = _upload_id(doc)
    parts = _int(doc, "parts", 1, MAX_PARTS)
    first = _int(doc, "first", 1, parts)
    return _json(200, {"urls": _part_urls(console, req, t, upload_id, first, parts)})


async def complete(console: Console, req: Req, doc: dict[str, Any]) -> Reply:
    t = _target(doc)
    upload_id = _upload_id(doc)
    listed = doc.get("parts")
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_PARTS:
        raise Invalid(f"parts: a list of 1 to {MAX_PARTS} {{part, etag}}.")
    root = ET.Element("CompleteMultipartUpload", xmlns=S3_NS)
    for item in listed:
        if not isinstance(item, dict) or not isinstance(item.get("etag"), str):
            raise Invalid("parts: each one {part, etag}.")
        el = ET.SubElement(root, "Part")
        ET.SubElement(el, "PartNumber").text = str(_int(item, "part", 1, MAX_PARTS))
        ET.SubElement(el, "ETag").text = item["etag"]
    answer = await _call(console, req, "POST", t, query=[("uploadId", upload_id)], body=ET.tostring(root))
    if not answer.ok:
        return _refusal(answer)
    done = answer.xml()
    if done.tag == "Error":  # S3 may answer 200 and report the failure in the body
        code = done.findtext("Code") or "InternalError"
        return _json(
            500 if code == "InternalError" else 400, {"error": code, "message": done.findtext("Message") or ""}
        )
    return _json(200, {"etag": done.findtext("ETag") or "", "key": t.key})


async def abort(console: Console, req: Req, doc: dict[str, Any]) -> Reply:
    t = _target(doc)
    answer = await _call(console, req, "DELETE", t, query=[("uploadId", _upload_id(doc))])
    if (
        not answer.ok and _field(answer, "Code") != "NoSuchUpload"
    ):  # already gone (completed or aborted): nothing to clean
        return _refusal(answer)
    return _json(200, {"aborted": True})


API = r"/api/uploads"
ROUTES: list[Route] = [
    route("POST", API, _guarded(start)),
    route("POST", API + "/urls", _guarded(more_urls)),
    route("POST", API + "/complete", _guarded(complete)),
    route("POST", API + "/abort", _guarded(abort)),
]
