"""PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable

from tunnelmesh.s3 import checksums, conditions, xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.integrity import UploadDigest, read_document
from tunnelmesh.s3.ops import encryption
from tunnelmesh.s3.ops import lock as locks
from tunnelmesh.s3.ops import tags as tagsets
from tunnelmesh.s3.ops.common import (
    Context,
    check_version_id,
    lookup_object,
    object_headers_from_request,
    object_response_headers,
    part_number,
    read_version_header,
    require_no_framing,
    validate_key,
    version_header,
)
from tunnelmesh.s3.ops.unsupported import refuse_unsupported
from tunnelmesh.s3.request import Request
from tunnelmesh.s3.response import Response, http_date, xml_response
from tunnelmesh.s3.store_errors import s3_error
from tunnelmesh.store.commits import NULL, DeleteEntry
from tunnelmesh.store.content import ByteRange
from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import DamagedObject, NoSuchKey
from tunnelmesh.store.records import Deleted, Lock, ObjectRecord, Segment, WriteConditions, version_seq

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


def write_conditions(req: Request) -> WriteConditions:
    inm = req.headers.get("if-none-match")
    if inm is not None and inm.strip() != "*":
        raise S3Error("NotImplemented", "If-None-Match on writes supports only '*'.", Header="If-None-Match")
    im = req.headers.get("if-match")
    return WriteConditions(
        if_none_match_any=inm is not None,
        if_match=None if im is None else (im.strip() if im.strip() == "*" else im.strip().strip('"')),
    )


def upload_length(req: Request, limit: int) -> int | None:
    """The declared body length; plain bodies without one are refused, as S3 does."""
    n = req.content_length
    if n is None and "transfer-encoding" not in req.headers and not req.has_body_framing:
        raise S3Error("MissingContentLength")
    if n is not None and n > limit:
        raise S3Error("EntityTooLarge", ProposedSize=str(n), MaxSizeAllowed=str(limit))
    return n


# a store's early quota check of one write (Store.admit_object, admit_part, their first arguments
# bound): the declared length, or None, in; the room the write may take, out
Admit = Callable[[int | None], Awaitable[int]]


async def store_body(
    store: Store,
    req: Request,
    digest: UploadDigest,
    declared: int | None,
    limit: int,
    bucket: str,
    admit: Admit,
    dek: bytes | None = None,
) -> tuple[str, str]:
    """Stream the verified body into a sealed blob, encrypted under `dek` if given (SSE-S3); returns its id
    and the MD5 of its stored bytes (the segment's: of the ciphertext when encrypted).

    `admit` is the store's early quota check for this write (Store.admit_object or admit_part): a
    declared length is checked before any byte is read, an undeclared one while streaming.
    """
    assert req.body is not None
    room = await admit(declared)
    if declared is not None:
        writer = await store.ingest(digest.wrap(req.body), declared, dek=dek)
    else:
        writer = await store.ingest(digest.wrap(req.body), limit, room, bucket, dek=dek)
    if declared is not None and writer.plain_size != declared:
        store.discard([writer.blob_id])
        raise _incomplete()
    return writer.blob_id, writer.md5 or digest.md5_hex


def _incomplete() -> S3Error:
    return S3Error("IncompleteBody")


async def read_inline(req: Request, digest: UploadDigest, declared: int) -> bytes:
    """A small body, whole: it will be stored in the metadata row."""
    assert req.body is not None
    buf = bytearray()
    async for chunk in digest.wrap(req.body):
        buf += chunk
        if len(buf) > declared:
            break
    if len(buf) != declared:
        raise _incomplete()
    return bytes(buf)


async def commit_put(
    ctx: Context,
    req: Request,
    digest: UploadDigest,
    headers: dict[str, str],
    cond: WriteConditions,
    data: bytes | None = None,
    blob: tuple[str, str] | None = None,
    tags: tagsets.Tags | None = None,
    lock: Lock | None = None,
    sse: str | None = None,
) -> tuple[ObjectRecord, str | None]:
    """Commit the object a PUT (or a form upload) has read: kept in its row (`data`) or in `blob` (its id and
    the MD5 of its stored bytes); an overwrite without `tags` leaves the key untagged, as on S3. `sse`: the
    wrapped data key the bytes are encrypted under. Returns it and its version id, as S3 shows it (None in a
    bucket never versioned)."""
    assert req.principal is not None
    rec = ObjectRecord(
        bucket=req.bucket,
        key=req.key,
        size=digest.size,
        etag=digest.md5_hex,
        mtime=time.time(),
        headers=headers,
        checksums=digest.checksums,
        segments=[Segment(blob[0], digest.size, blob[1])] if blob is not None else [],
        owner=req.writer,
        data=data,
        tags=tags,
        lock=lock,
        sse=sse,
    )
    return rec, await ctx.store.put_object(rec, cond)


async def put_object(ctx: Context, call: Call) -> Response:
    req = call.req
    assert req.principal is not None
    refuse_unsupported(req)
    validate_key(req.key)
    headers = object_headers_from_request(req)
    cond = write_conditions(req)
    tags = tagsets.header_tags(req)
    declared = upload_length(req, ctx.max_object_size)
    if tags:
        await tagsets.require_current_nodes(ctx, "x-amz-tagging")
    lock = await locks.request_lock(ctx, call)
    dek, sealed = await encryption.data_key(ctx, req, await encryption.wanted(ctx, call, req))
    digest = UploadDigest(req)
    if declared is not None and ctx.store.keeps_inline(declared):
        # No lookups before a small body: reading it costs less than the bucket and quota reads
        # would, and the commit checks the bucket, the conditions and the quota exactly anyway.
        data = ctx.store.encrypt_inline(dek, await read_inline(req, digest, declared))
        rec, vid = await commit_put(ctx, req, digest, headers, cond, data=data, tags=tags, lock=lock, sse=sealed)
    else:
        admit = functools.partial(ctx.store.admit_object, req.bucket, req.key)
        blob = await store_body(ctx.store, req, digest, declared, ctx.max_object_size, req.bucket, admit, dek)
        rec, vid = await commit_put(ctx, req, digest, headers, cond, blob=blob, tags=tags, lock=lock, sse=sealed)
    out = [("etag", f'"{rec.etag}"')]
    out.extend((f"x-amz-checksum-{alg}", v) for alg, v in rec.checksums.items())
    out.extend(version_header(vid))
    out.extend(encryption.response_headers(rec.sse))
    return Response(200, out)


def part_number_param(req: Request) -> int | None:
    """?partNumber=N of a GET or HEAD: None when absent."""
    if "partNumber" not in req.query:
        return None
    n = part_number(req)
    if "range" in req.headers:
        raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query parameter")
    return n


def parts_count(obj: ObjectRecord) -> int | None:
    """How many parts a multipart-completed object has (None for any other object).

    Complete makes one segment per part, in part order, and gives the object the "<md5>-<count>"
    ETag; nothing else writes such an ETag. So segment i is part i+1, and its size is the part's.
    """
    _, dash, count = obj.etag.rpartition("-")
    if not dash or not count.isdigit() or int(count) != len(obj.segments):
        return None
    return int(count)


def part_range(obj: ObjectRecord, number: int) -> tuple[int, int, int | None]:
    """(first byte, length, parts count) of part `number`; an object not uploaded in parts is one part."""
    count = parts_count(obj)
    actual = count if count is not None else 1
    if number > actual:
        raise S3Error("InvalidPartNumber", status=416, PartNumberRequested=str(number), ActualPartCount=str(actual))
    if count is None:
        return 0, obj.size, None
    first = sum(seg.size for seg in obj.segments[: number - 1])
    return first, obj.segments[number - 1].size, count


def part_checksum_headers(obj: ObjectRecord, number: int, count: int) -> list[tuple[str, str]]:
    """The checksum headers of part `number` of a multipart object, as S3 answers a part read.

    A COMPOSITE object is made of its parts' checksums, so each part has its own (kept from the part's
    upload; none for parts completed before they were kept). A FULL_OBJECT object has no per-part
    value to give, except when its one part is the whole object.
    """
    out: list[tuple[str, str]] = []
    for alg, value in obj.checksums.items():
        if checksums.checksum_type(value) == checksums.COMPOSITE:
            own = obj.segments[number - 1].checksums.get(alg)
            if own is not None:
                out += [(f"x-amz-checksum-{alg}", own), ("x-amz-checksum-type", checksums.COMPOSITE)]
        elif count == 1:
            out += [(f"x-amz-checksum-{alg}", value), ("x-amz-checksum-type", checksums.FULL_OBJECT)]
    return out


def not_modified(req: Request, obj: ObjectRecord) -> Response | None:
    """The 304 a read's If-None-Match / If-Modified-Since asks for; PreconditionFailed is raised."""
    if conditions.check_read(req.headers, obj):
        return None
    return Response(304, [("etag", f'"{obj.etag}"'), ("last-modified", http_date(obj.mtime))])


async def _read_response(ctx: Context, call: Call, with_body: bool) -> Response:
    req = call.req
    if encryption.HEADER in req.headers:
        # SSE-S3 is decrypted for every reader; S3 refuses the header on reads
        raise S3Error(
            "InvalidArgument", "x-amz-server-side-encryption is valid only on writes.", ArgumentName=encryption.HEADER
        )
    part = part_number_param(req)
    obj = await lookup_object(ctx, call)
    if (unchanged := not_modified(req, obj)) is not None:
        return unchanged
    count: int | None = None
    if part is not None:
        first, length, count = part_range(obj, part)
        # a part request is a ranged one: 206 even when the part is the whole object, as S3 answers
        # (an empty part has no byte range to name: a plain 200 with no body)
        rng = (first, first + length - 1) if length else None
    else:
        rng = conditions.parse_range(req.headers["range"], obj.size) if "range" in req.headers else None
        first, last = (0, obj.size - 1) if rng is None else rng
        length = last - first + 1 if obj.size else 0
    # the object's checksums describe all of it, which is also the one part of an object not uploaded
    # in parts; a part of a multipart object has checksums of its own
    with_checksums = req.header("x-amz-checksum-mode").upper() == "ENABLED"
    whole = count is None and (part is not None or rng is None)
    headers = object_response_headers(obj, with_checksums=with_checksums and whole)
    if with_checksums and part is not None and count is not None:
        headers.extend(part_checksum_headers(obj, part, count))
    for param, header in _RESPONSE_OVERRIDES.items():
        value = req.query.get(param)
        if value is not None:
            if _CONTROL.search(value):
                # a line break would split the response head; the HTTP server refuses to send it at all
                raise S3Error("InvalidArgument", f"{param} must not contain control characters.", ArgumentName=param)
            headers = [(n, v) for n, v in headers if n != header]
            headers.append((header, value))
    headers.append(("content-length", str(length)))
    if obj.tags:
        headers.append(("x-amz-tagging-count", str(len(obj.tags))))
    headers.extend(read_version_header(req, obj))
    headers.extend(locks.response_headers(obj))
    headers.extend(encryption.response_headers(obj.sse))
    if count is not None:
        headers.append(("x-amz-mp-parts-count", str(count)))
    status = 200
    if rng is not None:
        status = 206
        headers.append(("content-range", f"bytes {rng[0]}-{rng[1]}/{obj.size}"))
    resp = Response(status, headers)
    if with_body and length:
        opened = open_range(ctx, obj, first, length)
        resp.body, resp.slices = opened.data, opened.slices or None
    return resp


def open_range(ctx: Context, obj: ObjectRecord, first: int, length: int) -> ByteRange:
    """The store's open range of `obj` (every blob file opened before the first byte is sent, so a
    concurrent overwrite cannot pull them away); damaged stored data is refused here, before any
    status line, instead of a 200 cut short (the store has logged it)."""
    try:
        return ctx.store.open_range(obj, first, length)
    except DamagedObject:
        raise S3Error(
            "InternalError", "The stored data of this object is damaged; it cannot be served. Run a scrub."
        ) from None


async def get_object(ctx: Context, call: Call) -> Response:
    return await _read_response(ctx, call, with_body=True)


async def head_object(ctx: Context, call: Call) -> Response:
    return await _read_response(ctx, call, with_body=False)


def _etag(value: str) -> str:
    return value.strip().removeprefix('"').removesuffix('"')


async def delete_object(ctx: Context, call: Call) -> Response:
    req = call.req
    assert req.principal is not None
    require_no_framing(req)
    refuse_unsupported(req)
    vid = check_version_id(req)
    if_match = _etag(req.headers["if-match"]) if "if-match" in req.headers else None
    entry = (req.key, vid, if_match)
    bypass = locks.bypass(call)
    (done,) = await ctx.store.delete_objects(req.bucket, [entry], req.writer, bypass)
    if isinstance(done, NoSuchKey):
        raise S3Error("NoSuchKey", Key=req.key)
    if not isinstance(done, Deleted):
        raise done
    if bypass and vid is not None:
        await locks.audit_bypass(ctx, call, "DeleteObject", [(req.key, vid)])
    headers = version_header(done.version_id)
    if done.marker:
        headers.append(("x-amz-delete-marker", "true"))
    return Response(204, headers)


async def delete_objects(ctx: Context, call: Call) -> Response:
    req = call.req
    assert req.principal is not None
    require_no_framing(req)
    assert req.body is not None
    await call.bucket()
    body = await read_document(req, "DeleteObjects", 2 * 1024 * 1024, True)
    doc = xml.parse(body, "Delete")
    quiet = (xml.text(doc, "Quiet", "false") or "").strip().lower() == "true"
    objs = doc.findall("Object")
    if not objs or len(objs) > 1000:
        raise S3Error("MalformedXML", "A DeleteObjects request names between 1 and 1000 keys.")
    entries: list[DeleteEntry] = []
    errors: list[str] = []
    bypass = locks.bypass(call)
    for o in objs:
        key = xml.text(o, "Key")
        if key is None:
            raise S3Error("MalformedXML", "Every Object needs a Key.")
        for condition in ("LastModifiedTime", "Size"):  # directory buckets' conditions: not offered here
            if o.find(condition) is not None:
                raise S3Error("NotImplemented", f"A conditional delete on {condition} is not implemented.")
        etag = xml.text(o, "ETag")
        vid = xml.text(o, "VersionId") or None
        if vid is not None and vid != NULL and version_seq(vid) is None:
            errors.append(
                f"<Error>{xml.element('Key', key)}{xml.element('VersionId', vid)}"
                "<Code>NoSuchVersion</Code><Message>The specified version does not exist.</Message></Error>"
            )
            continue
        entries.append((key, vid, None if etag is None else _etag(etag)))
    # each key is its own ask (AWS): a refused one is an error entry, and the others go ahead
    extra = ["s3:BypassGovernanceRetention"] if bypass else []
    asks = [
        (["s3:DeleteObjectVersion" if vid is not None else "s3:DeleteObject", *extra], key) for key, vid, _ in entries
    ]
    allowed = await ctx.authz.allowed_keys(req, asks)
    for key, vid, _ in (e for e, ok in zip(entries, allowed, strict=True) if not ok):
        v = xml.element("VersionId", vid) if vid is not None else ""
        errors.append(
            f"<Error>{xml.element('Key', key)}{v}<Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
        )
    entries = [e for e, ok in zip(entries, allowed, strict=True) if ok]
    results = await ctx.store.delete_objects(req.bucket, entries, req.writer, bypass) if entries else []
    if bypass:
        gone = [(key, vid) for (key, vid, _), d in zip(entries, results, strict=True) if vid and isinstance(d, Deleted)]
        await locks.audit_bypass(ctx, call, "DeleteObjects", gone)
    deleted: list[str] = []
    for (key, asked, _), done in zip(entries, results, strict=True):
        k = xml.element("Key", key)
        if not isinstance(done, Deleted):
            e = s3_error(done)
            v = xml.element("VersionId", asked) if asked is not None else ""
            errors.append(f"<Error>{k}{v}<Code>{e.code}</Code><Message>{xml.e(e.message)}</Message></Error>")
        elif not quiet:
            deleted.append(f"<Deleted>{k}{_deleted_fields(asked, done)}</Deleted>")
    return xml_response(xml.document("DeleteResult", deleted + errors))


def _deleted_fields(asked: str | None, done: Deleted) -> str:
    """What a <Deleted> entry says beside its key: the version asked for, and the delete marker removed or
    made (S3 names a new marker's id as DeleteMarkerVersionId)."""
    if asked is not None:
        return xml.element("VersionId", asked) + ("<DeleteMarker>true</DeleteMarker>" if done.marker else "")
    if done.marker and done.version_id is not None:
        return "<DeleteMarker>true</DeleteMarker>" + xml.element("DeleteMarkerVersionId", done.version_id)
    return ""
