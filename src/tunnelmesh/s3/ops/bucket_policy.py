"""Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus (`?policy`, `?policyStatus`).

The document is kept byte for byte in the bucket's access record (`_tunnelmesh/access/buckets/<b>.json`,
field `policy`) and compiled into the bucket's view by s3/authz.py at the next request anywhere. A put is
parsed with the peers and groups that exist now, so a principal naming nobody is refused (MalformedPolicy)
rather than stored inert; BlockPublicPolicy refuses a public one. The owner and mesh admins may always
manage the policy, whatever it denies (the evaluator's escape hatch), so nobody locks a bucket for good.
"""

from __future__ import annotations

import hashlib
from typing import Any

from tunnelmesh.access.policy import MalformedPolicy, PolicyDoc, is_public, parse_policy
from tunnelmesh.access.view import PublicAccessBlock
from tunnelmesh.s3 import xml
from tunnelmesh.s3.authz import actor
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.ops.public_access import block_of
from tunnelmesh.s3.ops.tags import require_current_nodes
from tunnelmesh.s3.request import read_small_body
from tunnelmesh.s3.response import Response, xml_response

# a policy is at most 20,480 bytes once compacted (access/policy.py); a body this size with whitespace
# to spare is read whole, anything larger is refused unread
# the text is kept byte for byte (GetBucketPolicy returns it): AWS counts 20 KiB without whitespace, and this
# leaves room for indentation but not for padding a record in `_tunnelmesh` with a quarter MiB of newlines
MAX_BODY = 64 * 1024
FIELD = "policy"


def _parse(body: bytes, bucket: str, known: Any) -> tuple[str, PolicyDoc]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise S3Error("MalformedPolicy", "This policy contains invalid Json") from None
    try:
        return text, parse_policy(text, bucket, known)
    except MalformedPolicy as e:
        raise S3Error("MalformedPolicy", str(e)) from None


def _refuse_if_blocked(pab: PublicAccessBlock | None, doc: PolicyDoc) -> None:
    if pab is not None and pab.block_public_policy and is_public(doc):
        raise S3Error("AccessDenied")


async def put_bucket_policy(ctx: Context, call: Call) -> Response:
    req = call.req
    body = await read_small_body(req, MAX_BODY)
    text, doc = _parse(body, req.bucket, await ctx.authz.known())
    bucket = await call.bucket()
    # a public policy must not slip in beside a PutPublicAccessBlock committed meanwhile: checked again
    # inside the compare-and-swap, against the record it replaces
    view = await ctx.authz.view(req.bucket)
    _refuse_if_blocked(view.pab, doc)
    await require_current_nodes(ctx, "PutBucketPolicy")
    pab_default = await ctx.authz.pab_default()

    def change(rec: dict[str, Any]) -> None:
        _refuse_if_blocked(block_of(rec, pab_default), doc)
        rec[FIELD] = text

    await ctx.authz.records.update_bucket(bucket, change)
    await ctx.authz.audit.record(
        "policy.put",
        actor(req),
        req.bucket,
        sha256=hashlib.sha256(body).hexdigest(),
        bytes=len(body),
        statements=len(doc.statements),
    )
    return Response(204)


async def get_bucket_policy(ctx: Context, call: Call) -> Response:
    view = await ctx.authz.view(call.req.bucket)
    if view.policy_text is None:
        raise S3Error("NoSuchBucketPolicy", BucketName=call.req.bucket)
    return Response(200, [("content-type", "application/json")], view.policy_text.encode("utf-8"))


async def delete_bucket_policy(ctx: Context, call: Call) -> Response:
    req = call.req
    bucket = await call.bucket()
    await require_current_nodes(ctx, "DeleteBucketPolicy")
    removed: list[str] = []

    def change(rec: dict[str, Any]) -> None:
        removed[:] = [rec.pop(FIELD)] if FIELD in rec else []

    await ctx.authz.records.update_bucket(bucket, change)
    if removed:
        await ctx.authz.audit.record(
            "policy.delete", actor(req), req.bucket, sha256=hashlib.sha256(removed[0].encode()).hexdigest()
        )
    return Response(204)  # AWS answers 204 whether or not there was a policy


async def get_bucket_policy_status(ctx: Context, call: Call) -> Response:
    view = await ctx.authz.view(call.req.bucket)
    public = "true" if view.public else "false"
    return xml_response(xml.document("PolicyStatus", [xml.element("IsPublic", public)]))
