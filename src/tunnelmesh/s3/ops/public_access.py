"""Put/Get/DeletePublicAccessBlock (`?publicAccessBlock`): the bucket's block, kept in its access record.

Field `public_access_block` of `_tunnelmesh/access/buckets/<b>.json`: absent = the mesh default
(`default_public_access_block`, on: all four true, as AWS gives a new bucket), an object = this block,
null = deleted (Get answers NoSuchPublicAccessBlockConfiguration and nothing is blocked). What each flag
does is docs/access-control.md section 5; s3/authz.py and s3/ops/bucket_policy.py apply them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunnelmesh.access.view import PublicAccessBlock
from tunnelmesh.s3 import xml
from tunnelmesh.s3.authz import actor
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.ops.tags import require_current_nodes
from tunnelmesh.s3.request import read_small_body
from tunnelmesh.s3.response import Response, xml_response

FIELD = "public_access_block"
FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
ROOT = "PublicAccessBlockConfiguration"


def block_of(record: Mapping[str, Any], pab_default: bool) -> PublicAccessBlock | None:
    """The block a record puts in force (the same reading as access/view.py's compile)."""
    if FIELD not in record:
        return PublicAccessBlock() if pab_default else None
    raw = record[FIELD]
    if not isinstance(raw, Mapping):
        return None
    return PublicAccessBlock(*(bool(raw.get(flag, False)) for flag in FLAGS))


def parse_configuration(body: bytes) -> dict[str, bool]:
    """The four flags of a PublicAccessBlockConfiguration; an absent one is false (AWS)."""
    doc = xml.parse(body, ROOT)
    out = dict.fromkeys(FLAGS, False)
    seen: set[str] = set()
    for child in doc:
        name = child.tag
        if name not in FLAGS or name in seen or len(child):
            raise S3Error("MalformedXML")
        seen.add(name)
        value = (child.text or "").strip().lower()
        if value not in ("true", "false"):
            raise S3Error("MalformedXML")
        out[name] = value == "true"
    return out


async def put_public_access_block(ctx: Context, call: Call) -> Response:
    req = call.req
    config = parse_configuration(await read_small_body(req, 64 * 1024))
    bucket = await call.bucket()
    await require_current_nodes(ctx, "PutPublicAccessBlock")

    def change(rec: dict[str, Any]) -> None:
        rec[FIELD] = config

    await ctx.authz.records.update_bucket(bucket, change)
    await ctx.authz.audit.record("pab.put", actor(req), req.bucket, configuration=config)
    return Response(200)


async def get_public_access_block(ctx: Context, call: Call) -> Response:
    pab = (await ctx.authz.view(call.req.bucket)).pab
    if pab is None:
        raise S3Error("NoSuchPublicAccessBlockConfiguration", BucketName=call.req.bucket)
    values = (pab.block_public_acls, pab.ignore_public_acls, pab.block_public_policy, pab.restrict_public_buckets)
    parts = [xml.element(flag, "true" if on else "false") for flag, on in zip(FLAGS, values, strict=True)]
    return xml_response(xml.document(ROOT, parts))


async def delete_public_access_block(ctx: Context, call: Call) -> Response:
    req = call.req
    bucket = await call.bucket()
    await require_current_nodes(ctx, "DeletePublicAccessBlock")

    def change(rec: dict[str, Any]) -> None:
        rec[FIELD] = None  # null, not absent: absent would bring the mesh default back

    await ctx.authz.records.update_bucket(bucket, change)
    await ctx.authz.audit.record("pab.delete", actor(req), req.bucket)
    return Response(204)
