"""CopyObject, and the copy-source handling UploadPartCopy shares with it."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote_plus

from tunnelmesh.s3 import checksums, conditions, xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops import encryption
from tunnelmesh.s3.ops import lock as locks
from tunnelmesh.s3.ops import tags as tagsets
from tunnelmesh.s3.ops.common import (
    Context,
    object_headers_from_request,
    require_no_framing,
    validate_key,
    version_header,
)
from tunnelmesh.s3.ops.objects import open_range, write_conditions
from tunnelmesh.s3.ops.unsupported import refuse_unsupported
from tunnelmesh.s3.request import Request
from tunnelmesh.s3.response import Response, xml_response
from tunnelmesh.store.commits import NULL
from tunnelmesh.store.records import ObjectRecord, Segment, version_seq


@dataclass(slots=True)
class CopiedBlob:
    blob: str | None
    size: int
    md5_hex: str  # of the bytes copied (the ETag)
    checksums: dict[str, str]
    data: bytes | None = None  # as stored: encrypted when the copy is
    stored_md5: str = ""  # of the blob's stored bytes (the segment's)

    def segments(self) -> list[Segment]:
        return [Segment(self.blob, self.size, self.stored_md5 or self.md5_hex)] if self.blob else []


def parse_copy_source(raw: str) -> tuple[str, str, str]:
    """x-amz-copy-source -> (bucket, key, the part after "?").

    The value is URL-encoded (a "?" in a key arrives as %3F), so only a literal "?" of the raw
    value starts the version part, and the path is decoded after that split. S3 decodes "+" as a
    space here, as in a form: a key's "+" must arrive as %2B (botocore sends it so).
    """
    path, _, version = raw.partition("?")
    bucket, _, key = unquote_plus(path).lstrip("/").partition("/")
    return bucket, key, version


async def copy_source(ctx: Context, req: Request) -> ObjectRecord:
    raw = req.header("x-amz-copy-source")
    bucket, key, version = parse_copy_source(raw)
    if not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            ArgumentName="x-amz-copy-source",
            ArgumentValue=raw,
        )
    vid = version.removeprefix("versionId=") if version.startswith("versionId=") else None
    if version and (vid is None or (vid != NULL and version_seq(vid) is None)):
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName="x-amz-copy-source")
    await ctx.authz.require_source(req, "s3:GetObject" if vid is None else "s3:GetObjectVersion", bucket, key, vid)
    if vid is not None:
        obj = await ctx.store.get_version(bucket, key, vid)
        if obj.marker:
            raise S3Error(
                "InvalidRequest",
                "The source of a copy request may not specifically refer to a delete marker by version id.",
            )
    else:
        found = await ctx.store.get_object(bucket, key)
        if found is None:
            await ctx.store.require_bucket(bucket)
            raise S3Error("NoSuchKey", Key=key)
        obj = found
    conditions.check_read(req.headers, obj, prefix="x-amz-copy-source-")
    return obj


def source_version_header(req: Request, src: ObjectRecord) -> list[tuple[str, str]]:
    """x-amz-copy-source-version-id: the source version copied, when it has an id or was asked by one."""
    if src.version_id is not None:
        return [("x-amz-copy-source-version-id", src.version_id)]
    if "?versionId=" in req.header("x-amz-copy-source"):
        return [("x-amz-copy-source-version-id", NULL)]
    return []


async def source_bytes(ctx: Context, src: ObjectRecord, offset: int, length: int) -> AsyncIterator[bytes]:
    """A byte range of a stored object, wherever the store keeps it."""
    opened = open_range(ctx, src, offset, length)
    try:
        async for chunk in opened.chunks():
            yield chunk
    finally:
        opened.close()


async def copy_bytes(
    ctx: Context,
    src: ObjectRecord,
    offset: int,
    length: int,
    algorithms: list[str],
    inline: bool,
    dek: bytes | None = None,
) -> CopiedBlob:
    """Copy a range into a new blob (or, for a small object copy, into memory for an inline row). The source
    is read as plaintext (decrypted if it is encrypted) and, with `dek`, stored encrypted under that key."""
    md5 = hashlib.md5()
    hashers = {a: checksums.new_hasher(a) for a in algorithms}

    async def stream() -> AsyncIterator[bytes]:
        async for chunk in source_bytes(ctx, src, offset, length):
            md5.update(chunk)
            for h in hashers.values():
                h.update(chunk)
            yield chunk

    def sums() -> dict[str, str]:
        return {a: checksums.b64(h.digest()) for a, h in hashers.items()}

    if inline:
        data = b"".join([c async for c in stream()])
        return CopiedBlob(None, len(data), md5.hexdigest(), sums(), ctx.store.encrypt_inline(dek, data))
    writer = await ctx.store.ingest(stream(), length, dek=dek)
    return CopiedBlob(writer.blob_id, writer.plain_size, md5.hexdigest(), sums(), stored_md5=writer.md5)


async def copy_object(ctx: Context, call: Call) -> Response:
    req = call.req
    assert req.principal is not None
    refuse_unsupported(req)
    require_no_framing(req)
    validate_key(req.key)
    await call.bucket()
    src = await copy_source(ctx, req)
    directive = req.header("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "Unknown metadata directive.", ArgumentName="x-amz-metadata-directive")
    # copying an older version onto its own key is how S3 restores it; only a copy of the current one to
    # itself changes nothing
    to_itself = src.bucket == req.bucket and src.key == req.key and "?versionId=" not in req.header("x-amz-copy-source")
    if to_itself and directive == "COPY" and not encryption.asked(req):
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself without changing "
            "the object's metadata, storage class, website redirect location or encryption attributes.",
        )
    if src.size > ctx.max_part_size:
        raise S3Error(
            "InvalidRequest",
            "The specified copy source is larger than the maximum allowable size for a copy source: "
            f"{ctx.max_part_size}",
        )
    headers = src.headers if directive == "COPY" else object_headers_from_request(req)
    tags = _copied_tags(req, src)
    cond = write_conditions(req)
    if tags:
        await tagsets.require_current_nodes(ctx, "Tagging")
    lock = await locks.request_lock(ctx, call)  # the request's only: a copy never takes the source's lock
    # the copy's own encryption (asked, or the destination bucket's default), never the source's, as on S3
    dek, sealed = await encryption.data_key(ctx, req, await encryption.wanted(ctx, call, req))
    await ctx.store.admit_object(req.bucket, req.key, src.size)
    wanted = req.header("x-amz-checksum-algorithm").lower()
    algorithms = (
        [checksums.normalise_algorithm(wanted)] if wanted else [a for a in src.checksums if a in checksums.ALGORITHMS]
    )
    copied = await copy_bytes(ctx, src, 0, src.size, algorithms, ctx.store.keeps_inline(src.size), dek)
    rec = ObjectRecord(
        bucket=req.bucket,
        key=req.key,
        size=copied.size,
        etag=copied.md5_hex,
        mtime=time.time(),
        headers=dict(headers),
        checksums=copied.checksums,
        segments=copied.segments(),
        data=copied.data,
        owner=req.writer,
        tags=tags,
        lock=lock,
        sse=sealed,
    )
    vid = await ctx.store.put_object(rec, cond)
    body = [xml.element("LastModified", xml.iso8601(rec.mtime)), f"<ETag>&quot;{rec.etag}&quot;</ETag>"]
    body.extend(xml.element(f"Checksum{a.upper()}", v) for a, v in rec.checksums.items())
    resp = xml_response(xml.document("CopyObjectResult", body))
    resp.headers.extend(source_version_header(req, src) + version_header(vid))
    resp.headers.extend(encryption.response_headers(rec.sse))
    return resp


def _copied_tags(req: Request, src: ObjectRecord) -> tagsets.Tags | None:
    """x-amz-tagging-directive: COPY (the default) keeps the source's tags, and S3 then ignores any
    x-amz-tagging; REPLACE takes x-amz-tagging's (none without it)."""
    directive = req.header("x-amz-tagging-directive", "COPY").strip().upper()
    if directive == "COPY":
        return src.tags
    if directive == "REPLACE":
        return tagsets.header_tags(req)
    raise S3Error("InvalidArgument", "Unknown tagging directive.", ArgumentName="x-amz-tagging-directive")
