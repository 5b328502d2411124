"""Put/Get/DeleteObjectTagging and Put/Get/DeleteBucketTagging (the tag sets themselves: s3/ops/tags.py)."""

from __future__ import annotations

import json

from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.integrity import read_document
from tunnelmesh.s3.ops import tags as tagsets
from tunnelmesh.s3.ops.common import Context, check_version_id, lookup_object, read_version_header, version_header
from tunnelmesh.s3.response import Response
from tunnelmesh.store.errors import NoSuchKey

# a Tagging document of 50 tags at their longest, with room for whitespace
MAX_DOCUMENT_BYTES = 64 * 1024


# ---- objects ---------------------------------------------------------------------------------


async def put_object_tagging(ctx: Context, call: Call) -> Response:
    req = call.req
    check_version_id(req)
    tags = tagsets.parse_document(
        await read_document(req, "Tagging", MAX_DOCUMENT_BYTES, False), tagsets.MAX_OBJECT_TAGS, "Object"
    )
    req.request_tags = tags  # s3:RequestObjectTag* of a policy's conditions
    await _settle(ctx, call)
    await tagsets.require_current_nodes(ctx, "Tagging")
    return Response(200, await _set_object_tags(ctx, call, tags or None))


async def _settle(ctx: Context, call: Call) -> None:
    """An ask the edge left for the object's tags (s3:ExistingObjectTag/*, or the body's): decided on the
    version asked for, as it is before this change, and before anything changes."""
    if call.req.deferred is not None:
        await lookup_object(ctx, call)  # decides it (Authorizer.settle), or refuses a missing version


async def get_object_tagging(ctx: Context, call: Call) -> Response:
    obj = await lookup_object(ctx, call)
    resp = tagsets.document(obj.tags)
    resp.headers.extend(read_version_header(call.req, obj))
    return resp


async def delete_object_tagging(ctx: Context, call: Call) -> Response:
    await _settle(ctx, call)
    return Response(204, await _set_object_tags(ctx, call, None))


async def _set_object_tags(ctx: Context, call: Call, tags: tagsets.Tags | None) -> list[tuple[str, str]]:
    """Set the tags of the version asked for; the response's version header."""
    req = call.req
    try:
        vid = await ctx.store.set_object_tags(req.bucket, req.key, check_version_id(req), tags)
    except NoSuchKey:
        raise S3Error("NoSuchKey", Key=req.key) from None
    return version_header(vid)


# ---- buckets ---------------------------------------------------------------------------------


async def put_bucket_tagging(ctx: Context, call: Call) -> Response:
    req = call.req
    tags = tagsets.parse_document(
        await read_document(req, "Tagging", MAX_DOCUMENT_BYTES, False), tagsets.MAX_BUCKET_TAGS, "Bucket"
    )
    await tagsets.require_current_nodes(ctx, "Tagging")
    await ctx.store.set_bucket_tags(req.bucket, json.dumps(tags) if tags else None)
    return Response(204)


async def get_bucket_tagging(ctx: Context, call: Call) -> Response:
    bucket = await call.bucket()
    if bucket.tags is None:
        raise S3Error("NoSuchTagSet", BucketName=bucket.name)
    return tagsets.document(json.loads(bucket.tags))


async def delete_bucket_tagging(ctx: Context, call: Call) -> Response:
    await ctx.store.set_bucket_tags(call.req.bucket, None)
    return Response(204)
