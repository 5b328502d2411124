"""The console's bucket and object pages: handlers that call the S3 (and admin) APIs in process as the
signed-in principal (s3call.py) and render templates. Every decision (may this peer list, delete, share?)
is the S3 API's own: a refused call becomes the same refusal here."""

from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tunnelmesh.console.s3call import S3_PREFIX, Answer
from tunnelmesh.console.web import Refused, Reply, Req, Route, redirect, route, url
from tunnelmesh.s3.auth.presign import encode_path, presign_v4
from tunnelmesh.s3.request import Principal

if TYPE_CHECKING:
    from tunnelmesh.console.app import Console

PAGE_SIZE = 200  # keys per listing page (docs/operations.md 1.5)
BACK_STACK = 20  # "previous" tokens carried in the URL
DOWNLOAD_SECONDS = 300
# a share link's lifetimes: 15 min to SigV4's 7 days
SHARE_EXPIRIES = [(900, "15 minutes"), (3600, "1 hour"), (86400, "1 day"), (604800, "7 days")]
MAX_DELETE = 1000  # DeleteObjects' own limit
BUCKET = r"/b/(?P<bucket>[A-Za-z0-9][A-Za-z0-9._-]{0,254})"
NOTICES = {
    "created": "Bucket created.",
    "bucket-deleted": "Bucket deleted.",
    "versioning": "Versioning changed.",
    "deleted": "Deleted.",
}


@dataclass
class BucketRow:
    name: str
    created: str
    used: int | None = None
    quota: int | None = None
    objects: int | None = None
    versioning: str | None = None
    percent: float | None = None


def _principal(req: Req) -> Principal:
    assert req.ident is not None
    return req.ident.principal


async def _s3(console: Console, req: Req, method: str, bucket: str = "", key: str = "", **kw: Any) -> Answer:
    """An S3 call as the session's principal; a refusal (4xx/5xx) becomes the console's own."""
    answer = await console.calls.s3(_principal(req), method, bucket, key, client=req.client, **kw)
    if not answer.ok:
        raise Refused(answer.status if answer.status < 500 else 502, answer.error())
    return answer


def _text(el: ET.Element, name: str) -> str:
    return el.findtext(name) or ""


# ---- buckets ---------------------------------------------------------------------------------------


async def buckets(console: Console, req: Req) -> Reply:
    root = (await _s3(console, req, "GET")).xml()
    rows = {_text(b, "Name"): BucketRow(_text(b, "Name"), _text(b, "CreationDate")) for b in root.iter("Bucket")}
    p = _principal(req)
    if p.is_admin and p.key_id is None:
        # usage and quotas come from the admin API, which a mesh admin's token may call
        usage = await console.calls.admin(p, "GET", "/api/buckets", client=req.client)
        if usage.ok:
            for doc in usage.json().get("buckets", []):
                row = rows.get(doc.get("name"))
                if row is not None:
                    row.used = int(doc["used"]) + int(doc.get("multipart_used") or 0)
                    row.quota, row.objects = doc.get("quota"), doc.get("objects")
                    row.versioning, row.percent = doc.get("versioning"), doc.get("percent")
    return console.templates.page(
        req, "buckets.html", buckets=sorted(rows.values(), key=lambda r: r.name), notice=NOTICES.get(req.arg("done"))
    )


async def create_bucket(console: Console, req: Req) -> Reply:
    name = req.field("name").strip()
    if not name:
        raise Refused(400, "A bucket needs a name.")
    await _s3(console, req, "PUT", name)
    return redirect(url(f"/b/{name}/", done="created"))


async def delete_bucket_confirm(console: Console, req: Req) -> Reply:
    bucket = req.params["bucket"]
    await _s3(console, req, "HEAD", bucket)
    return console.templates.page(req, "bucket_delete.html", bucket=bucket)


async def delete_bucket(console: Console, req: Req) -> Reply:
    bucket = req.params["bucket"]
    if req.field("confirm") != bucket:
        raise Refused(400, "Type the bucket's name to confirm its deletion.")
    await _s3(console, req, "DELETE", bucket)
    return redirect(url("/", done="bucket-deleted"))


async def set_versioning(console: Console, req: Req) -> Reply:
    bucket = req.params["bucket"]
    state = req.field("state")
    if state not in ("Enabled", "Suspended"):
        raise Refused(400, "Versioning is Enabled or Suspended.")
    body = (
        '<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Status>{state}</Status></VersioningConfiguration>"
    ).encode()
    await _s3(console, req, "PUT", bucket, query=[("versioning", "")], body=body)
    return redirect(url(f"/b/{bucket}/", done="versioning"))


# ---- objects ---------------------------------------------------------------------------------------


async def objects(console: Console, req: Req) -> Reply:
    """One page of the listing under `prefix`: ListObjectsV2 with a delimiter, 200 keys, the continuation
    token in the URL. No count of the whole (counting is what gets slow at a million keys)."""
    bucket = req.params["bucket"]
    prefix, page = req.arg("prefix"), req.arg("page")
    back = req.query.get("back", [])[-BACK_STACK:]
    query = [("list-type", "2"), ("delimiter", "/"), ("max-keys", str(PAGE_SIZE)), ("prefix", prefix)]
    if page:
        query.append(("continuation-token", page))
    root = (await _s3(console, req, "GET", bucket, query=query)).xml()
    folders = [_text(cp, "Prefix") for cp in root.iter("CommonPrefixes")]
    # names are shown relative to the folder the prefix is in ("k-04" filters within the bucket's top)
    folder = prefix[: prefix.rfind("/") + 1]
    items = [
        {
            "key": _text(c, "Key"),
            "name": _text(c, "Key")[len(folder) :],
            "size": int(_text(c, "Size") or 0),
            "modified": _text(c, "LastModified"),
        }
        for c in root.iter("Contents")
    ]
    token = _text(root, "NextContinuationToken") if _text(root, "IsTruncated") == "true" else ""
    pager = {
        "next": url(f"/b/{bucket}/", prefix=prefix, page=token, back=[*back, page][-BACK_STACK:]) if token else "",
        "previous": url(f"/b/{bucket}/", prefix=prefix, page=back[-1], back=back[:-1]) if back else "",
        "first": url(f"/b/{bucket}/", prefix=prefix) if page else "",
    }
    # a read-only signer may list but not read the versioning state: the page then shows no toggle
    state = await console.calls.s3(_principal(req), "GET", bucket, query=[("versioning", "")], client=req.client)
    versioning = (_text(state.xml(), "Status") or "Off") if state.ok else None
    return console.templates.page(
        req,
        "objects.html",
        bucket=bucket,
        prefix=prefix,
        folder=folder,
        crumbs=_crumbs(prefix),
        folders=folders,
        items=items,
        pager=pager,
        versioning=versioning,
        notice=NOTICES.get(req.arg("done")),
    )


def _crumbs(prefix: str) -> list[tuple[str, str]]:
    """(label, prefix) for each folder level of `prefix`."""
    out, at = [], 0
    while (cut := prefix.find("/", at)) != -1:
        out.append((prefix[at:cut], prefix[: cut + 1]))
        at = cut + 1
    return out


async def details(console: Console, req: Req) -> Reply:
    bucket, key, version = req.params["bucket"], req.arg("key"), req.arg("version")
    if not key:
        raise Refused(400, "Which object? (no key)")
    query = [("versionId", version)] if version else []
    head = await _s3(console, req, "HEAD", bucket, key, query=query, headers=[("x-amz-checksum-mode", "ENABLED")])
    meta = [(k[len("x-amz-meta-") :], v) for k, v in head.headers if k.startswith("x-amz-meta-")]
    # x-amz-checksum-type (FULL_OBJECT or COMPOSITE) says how the others were computed
    checksums = [
        ("type" if k == "x-amz-checksum-type" else k[len("x-amz-checksum-") :].upper(), v)
        for k, v in head.headers
        if k.startswith("x-amz-checksum-")
    ]
    # the versions, if the signer may list them (s3:ListBucketVersions); None: not shown
    query = [("versions", ""), ("prefix", key), ("max-keys", "100")]
    listing = await console.calls.s3(_principal(req), "GET", bucket, query=query, client=req.client)
    versions = (
        [
            {
                "id": _text(v, "VersionId"),
                "size": int(_text(v, "Size") or 0),
                "modified": _text(v, "LastModified"),
                "latest": _text(v, "IsLatest") == "true",
                "marker": v.tag == "DeleteMarker",
            }
            for v in listing.xml()
            if v.tag in ("Version", "DeleteMarker") and _text(v, "Key") == key
        ]
        if listing.ok
        else None
    )
    return console.templates.page(
        req,
        "object.html",
        bucket=bucket,
        key=key,
        version=version,
        folder=key[: key.rfind("/") + 1],
        size=int(head.header("content-length") or 0),
        content_type=head.header("content-type"),
        etag=head.header("etag"),
        modified=head.header("last-modified"),
        version_id=head.header("x-amz-version-id"),
        meta=meta,
        checksums=checksums,
        versions=versions,
        expiries=SHARE_EXPIRIES,
    )


def _presigned(console: Console, req: Req, bucket: str, key: str, query: list[tuple[str, str]], expires: int) -> str:
    """A presigned GET of the object on this listener's /s3, signed with the session's secret (which never
    leaves the server): the bytes go straight from the S3 API to the browser."""
    assert req.ident is not None
    p = req.ident.principal
    host = req.headers.get("host", "")
    path = encode_path(f"{S3_PREFIX}/{bucket}/{key}")
    qs = presign_v4("GET", host, path, query, p.key_id or p.peer_id, req.ident.secret, console.region, expires)
    return f"{path}?{qs}"


def _version_query(version: str) -> list[tuple[str, str]]:
    return [("versionId", version)] if version else []


async def download(console: Console, req: Req) -> Reply:
    bucket, key, version = req.params["bucket"], req.arg("key"), req.arg("version")
    if not key:
        raise Refused(400, "Which object? (no key)")
    name = key.rsplit("/", 1)[-1] or "download"
    disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
    query = [("response-content-disposition", disposition), *_version_query(version)]
    return redirect(_presigned(console, req, bucket, key, query, DOWNLOAD_SECONDS))


async def share(console: Console, req: Req) -> Reply:
    bucket, key, version = req.params["bucket"], req.field("key"), req.field("version")
    if not key:
        raise Refused(400, "Which object? (no key)")
    try:
        expires = int(req.field("expires"))
    except ValueError:
        expires = 0
    if expires not in dict(SHARE_EXPIRIES):
        raise Refused(400, "Choose one of the offered lifetimes.")
    lifetime = dict(SHARE_EXPIRIES)[expires]
    # a link signed with a key works only while the key does: the page says the earlier of the two ends
    assert req.ident is not None
    signer = req.ident.principal.key_id
    left = (await _key_seconds_left(console, signer)) if signer else None
    if left is not None and left < expires:
        if left < 60:
            raise Refused(400, "The access key you signed in with expires within a minute: no link would last.")
        expires, lifetime = int(left), "until the access key you signed in with expires"
    # the object must be there and readable by the signer, or the link would only ever fail
    await _s3(console, req, "HEAD", bucket, key, query=_version_query(version))
    link = req.origin + _presigned(console, req, bucket, key, _version_query(version), expires)
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + expires))
    return console.templates.page(req, "share.html", bucket=bucket, key=key, link=link, lifetime=lifetime, until=until)


async def _key_seconds_left(console: Console, key_id: str) -> float | None:
    key = await console.peers.key(key_id)
    return None if key is None else key.seconds_left(time.time())


async def delete_objects(console: Console, req: Req) -> Reply:
    """Deletes the keys ticked (one, or a selection): first a confirmation page, then DeleteObject for one
    key, DeleteObjects for several (each key is authorized as its own s3:DeleteObject)."""
    bucket = req.params["bucket"]
    keys = [k for k in req.form.get("key", []) if k]
    back = req.field("prefix")
    if not keys:
        raise Refused(400, "No object was selected.")
    if len(keys) > MAX_DELETE:
        raise Refused(400, f"At most {MAX_DELETE} objects at a time.")
    if req.field("confirm") != "yes":
        return console.templates.page(req, "delete_confirm.html", bucket=bucket, keys=keys, prefix=back)
    if len(keys) == 1:
        await _s3(console, req, "DELETE", bucket, keys[0])
    else:
        body = _delete_document(keys)
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()  # DeleteObjects requires an integrity check
        answer = await _s3(
            console, req, "POST", bucket, query=[("delete", "")], headers=[("content-md5", md5)], body=body
        )
        failed = [(_text(e, "Key"), _text(e, "Code"), _text(e, "Message")) for e in answer.xml().iter("Error")]
        if failed:
            return console.templates.page(req, "delete_failed.html", 403, bucket=bucket, failed=failed, prefix=back)
    return redirect(url(f"/b/{bucket}/", prefix=back, done="deleted"))


def _delete_document(keys: list[str]) -> bytes:
    root = ET.Element("Delete", xmlns="http://s3.amazonaws.com/doc/2006-03-01/")
    for k in keys:
        ET.SubElement(ET.SubElement(root, "Object"), "Key").text = k
    return ET.tostring(root)


ROUTES: list[Route] = [
    route("GET", "/", buckets),
    route("POST", "/buckets", create_bucket),
    route("GET", BUCKET + "/", objects),
    route("GET", BUCKET + "/delete", delete_bucket_confirm),
    route("POST", BUCKET + "/delete", delete_bucket),
    route("POST", BUCKET + "/versioning", set_versioning),
    route("GET", BUCKET + "/object", details),
    route("GET", BUCKET + "/download", download),
    route("POST", BUCKET + "/share", share),
    route("POST", BUCKET + "/delete-objects", delete_objects),
]
