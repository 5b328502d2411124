"""PostObject: a browser form upload (`POST /<bucket>`, multipart/form-data, signed policy document).

The form's fields stand for PutObject's headers (Content-Type, x-amz-meta-*, acl as x-amz-acl, ...),
so the upload is PutObject's write with PutObject's rules: the refusal table, metadata limits,
Content-MD5 and checksums, quota admission, streamed to a blob. Authentication comes from the form
(s3/auth/post_policy.py): the fields before the file are read first, the signature and the policy
checked, and only then is a byte of the file stored.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import AsyncIterator
from urllib.parse import quote, urlsplit

from tunnelmesh.s3 import xml
from tunnelmesh.s3.auth import post_policy
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.form import FilePart, FormReader, boundary_of
from tunnelmesh.s3.integrity import UploadDigest
from tunnelmesh.s3.ops import encryption
from tunnelmesh.s3.ops import tags as tagsets
from tunnelmesh.s3.ops.common import Context, object_headers_from_request, validate_key, version_header
from tunnelmesh.s3.ops.objects import commit_put, store_body, write_conditions
from tunnelmesh.s3.ops.unsupported import POST, refuse_unsupported
from tunnelmesh.s3.request import Request
from tunnelmesh.s3.response import Response
from tunnelmesh.store.content import INLINE_MAX

# form fields that are the object's headers under their own name
_HEADER_FIELDS = frozenset(
    {"cache-control", "content-type", "content-disposition", "content-encoding", "content-language", "expires"}
    | {"content-md5"}
)
# form fields that are PutObject headers under another name
_RENAMED = {"acl": "x-amz-acl", "tagging": "x-amz-tagging"}
# x-amz-* fields that authenticate the form; they say nothing about the object
_AUTH_FIELDS = frozenset(
    {"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature", "x-amz-security-token"}
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+", re.ASCII)  # an HTTP field name (RFC 9110), lower case
_SUCCESS_STATUSES = {"200": 200, "201": 201, "204": 204}
_FILENAME = "${filename}"


def _not_a_form() -> S3Error:
    return S3Error("PreconditionFailed", Condition="Bucket POST must be of the enclosure-type multipart/form-data")


async def post_object(ctx: Context, call: Call) -> Response:
    req = call.req
    boundary = boundary_of(req.header("content-type"))
    if boundary is None or req.form_auth is None:
        # a POST to a bucket URL that is not a form (or carries a query): S3 names the form it wanted
        raise _not_a_form()
    assert req.body is not None
    # the request's own head counts as much as its fields: a protection asked for there is refused,
    # and If-None-Match / If-Match narrow the write as on a PUT
    refuse_unsupported(req)
    conditions = write_conditions(req)
    form = FormReader(req.body, boundary)
    fields, file = await form.fields()
    policy = await req.form_auth(fields)
    key = _key(fields, file)
    # the edge could not ask for an unknown signer (nor look the bucket up for one): now it knows who signed,
    # and the key; the write is bound to the incarnation this check held for (the edge unbinds it)
    tagging = fields.get("tagging", fields.get("x-amz-tagging"))  # either name writes the object's tags
    req.request_tags = _request_tags(tagging)
    row = await ctx.authz.require(req, "s3:PutObject", req.bucket, key)
    if tagging is not None:
        await ctx.authz.require(req, "s3:PutObjectTagging", req.bucket, key)
    ctx.store.bind_bucket(row)
    if req.admit is not None:
        await req.admit()
    given_bucket = fields.get("bucket")
    if given_bucket is not None and given_bucket != req.bucket:
        raise S3Error("AccessDenied", "Invalid according to Policy: the bucket field is not the bucket of the URL.")
    post_policy.check(policy, {**fields, "bucket": req.bucket, "key": key})
    view = dataclasses.replace(req, key=key, headers=_headers(fields), operation=POST)
    refuse_unsupported(view)
    validate_key(key)
    headers = object_headers_from_request(view)
    tags = _tags(view)
    digest = UploadDigest(view)
    await call.bucket()
    if tags:
        await tagsets.require_current_nodes(ctx, "tagging")
    # asked in a form field or in the request's own head (both count, as for the other protections)
    encrypt = encryption.asked(req) or await encryption.wanted(ctx, call, view)
    dek, sealed = await encryption.data_key(ctx, view, encrypt)
    stream = _within(form.file_data(), policy.min_size, policy.max_size)
    # a form declares no file length: the file's first bytes tell whether the store keeps it inline
    head = await _read_upto(stream, INLINE_MAX + 1)
    if ctx.store.keeps_inline(len(head)):
        data = ctx.store.encrypt_inline(dek, b"".join([c async for c in digest.wrap(_once(head))]))
        rec, vid = await commit_put(ctx, view, digest, headers, conditions, data=data, tags=tags, sse=sealed)
    else:
        view.body = _prepend(head, stream)
        admit = functools.partial(ctx.store.admit_object, req.bucket, key)
        blob = await store_body(ctx.store, view, digest, None, ctx.max_object_size, req.bucket, admit, dek)
        rec, vid = await commit_put(ctx, view, digest, headers, conditions, blob=blob, tags=tags, sse=sealed)
    resp = _success(req, key, rec.etag, vid, fields)
    resp.headers.extend(encryption.response_headers(rec.sse))
    return resp


def _tags(view: Request) -> tagsets.Tags | None:
    """The form's `tagging` field: a Tagging XML document (not x-amz-tagging's query form, as on S3)."""
    doc = view.headers.get("x-amz-tagging")
    if doc is None:
        return None
    # _headers kept the field as latin-1 text of its UTF-8 bytes
    return tagsets.parse_document(doc.encode("latin-1"), tagsets.MAX_OBJECT_TAGS, "Object") or None


def _request_tags(tagging: str | None) -> dict[str, str] | None:
    """The form's tags for s3:RequestObjectTag* conditions; a malformed document is the write's own 400
    later (`_tags`), so here it only leaves those keys absent."""
    if tagging is None:
        return None
    try:
        return tagsets.parse_document(tagging.encode(), tagsets.MAX_OBJECT_TAGS, "Object")
    except S3Error:
        return None


def _key(fields: dict[str, str], file: FilePart) -> str:
    key = fields.get("key")
    if key is None:
        raise S3Error(
            "InvalidArgument",
            "Bucket POST must contain a field named 'key'.  If it is specified, please check the order of the fields.",
            ArgumentName="key",
            ArgumentValue="",
        )
    return key.replace(_FILENAME, file.filename)


def _headers(fields: dict[str, str]) -> dict[str, str]:
    """The fields that stand for PutObject headers, as those headers would arrive: latin-1 text of the
    UTF-8 bytes, so they are stored and returned byte for byte as a PUT's would be."""
    out: dict[str, str] = {}
    for name, value in fields.items():
        header = _RENAMED.get(name, name)
        if header in _HEADER_FIELDS or (header.startswith("x-amz-") and header not in _AUTH_FIELDS):
            if not _TOKEN.fullmatch(header):
                # a PUT cannot carry such a name (the HTTP parser refuses it); stored, it would break
                # every response that echoes the object's headers
                raise S3Error("InvalidArgument", "A form field name is not a valid header name.", ArgumentName=name)
            if header in out:
                # `acl` and `x-amz-acl` (or `tagging` and `x-amz-tagging`) both given: the second must
                # not quietly replace a value the refusal table would have refused
                raise S3Error("InvalidArgument", f"The form gives the header {header} twice.", ArgumentName=name)
            if _CONTROL.search(value):
                # a line break would split the response head of every GET of this object
                raise S3Error(
                    "InvalidArgument", f"The form field {name} must not contain control characters.", ArgumentName=name
                )
            out[header] = value.encode().decode("latin-1")
    return out


async def _within(body: AsyncIterator[bytes], low: int, high: int | None) -> AsyncIterator[bytes]:
    """The file, refused as soon as it grows past the policy's content-length-range, or at its end
    when it fell short of it."""
    size = 0
    async for chunk in body:
        size += len(chunk)
        if high is not None and size > high:
            raise S3Error("EntityTooLarge", ProposedSize=str(size), MaxSizeAllowed=str(high))
        yield chunk
    if size < low:
        raise S3Error("EntityTooSmall", ProposedSize=str(size), MinSizeAllowed=str(low))


async def _read_upto(body: AsyncIterator[bytes], limit: int) -> bytes:
    """At least `limit` bytes of the body when it has them (then more follow), else all of it."""
    buf = bytearray()
    while len(buf) < limit:
        try:
            buf += await anext(body)
        except StopAsyncIteration:
            break
    return bytes(buf)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in rest:
        yield chunk


def _success(req: Request, key: str, etag: str, version_id: str | None, fields: dict[str, str]) -> Response:
    location = f"{req.prefix}/{quote(req.bucket)}/{quote(key, safe='/~')}"
    if req.header("host"):
        location = f"{req.scheme}://{req.header('host')}{location}"
    quoted_etag = f'"{etag}"'
    headers = [("etag", quoted_etag), *version_header(version_id)]
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and _is_url(redirect):
        params = (("bucket", req.bucket), ("key", key), ("etag", quoted_etag))
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in params)
        target = quote(redirect, safe="!#$&'()*+,/:;=?@[]~%") + ("&" if "?" in redirect else "?") + query
        return Response(303, [*headers, ("location", target)])
    headers.append(("location", location))
    status = _SUCCESS_STATUSES.get(fields.get("success_action_status", ""), 204)
    if status != 201:
        return Response(status, headers)
    body = xml.document(
        "PostResponse",
        [
            xml.element("Location", location),
            xml.element("Bucket", req.bucket),
            xml.element("Key", key),
            xml.element("ETag", quoted_etag),
        ],
    )
    return Response(201, [*headers, ("content-type", "application/xml")], body)


def _is_url(value: str) -> bool:
    # S3 ignores a redirect that is not an absolute http(s) URL and answers with the status instead
    if _CONTROL.search(value):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
