"""Put/Get/DeleteBucketCors (docs/access-control.md, section 5, **CORS**).

The rules live in the bucket's access record (`cors`, section 3), written by compare-and-swap, so the next
request on any worker or coordinator answers with them: the authorizer's view carries them to the edge
(s3/app.py), which answers preflights and adds the actual responses' headers. Each change is audited.
"""

from __future__ import annotations

from typing import Any

from tunnelmesh.access.cors import rules_from_json, rules_to_json
from tunnelmesh.s3.authz import actor
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.integrity import read_document
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.ops.cors_xml import MAX_DOCUMENT_BYTES, cors_configuration_xml, parse_cors_configuration
from tunnelmesh.s3.ops.tags import require_current_nodes
from tunnelmesh.s3.response import Response, xml_response


async def put_bucket_cors(ctx: Context, call: Call) -> Response:
    req = call.req
    rules = parse_cors_configuration(await read_document(req, "CORSConfiguration", MAX_DOCUMENT_BYTES, True))
    bucket = await call.bucket()
    await require_current_nodes(ctx, "PutBucketCors")
    stored = rules_to_json(rules)

    def change(rec: dict[str, Any]) -> None:
        rec["cors"] = stored

    await ctx.authz.records.update_bucket(bucket, change)
    await ctx.authz.audit.record("cors.put", actor(req), bucket.name, rules=len(rules))
    return Response(200)


async def get_bucket_cors(ctx: Context, call: Call) -> Response:
    bucket = await call.bucket()
    record = await ctx.authz.records.bucket(bucket)
    rules = rules_from_json(record.get("cors"))
    if not rules:
        raise S3Error("NoSuchCORSConfiguration", BucketName=bucket.name)
    return xml_response(cors_configuration_xml(rules))


async def delete_bucket_cors(ctx: Context, call: Call) -> Response:
    req = call.req
    bucket = await call.bucket()

    def change(rec: dict[str, Any]) -> None:
        rec.pop("cors", None)

    await ctx.authz.records.update_bucket(bucket, change)
    await ctx.authz.audit.record("cors.delete", actor(req), bucket.name)
    return Response(204)
