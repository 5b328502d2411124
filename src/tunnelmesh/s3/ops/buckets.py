"""ListBuckets, CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation, ACL reads."""

from __future__ import annotations

import base64
import binascii

from tunnelmesh.s3 import xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context, require_no_framing, validate_bucket_name
from tunnelmesh.s3.ops.tags import require_current_nodes
from tunnelmesh.s3.ops.unsupported import refuse_unsupported
from tunnelmesh.s3.request import read_small_body
from tunnelmesh.s3.response import Response, xml_response
from tunnelmesh.store.engine import SYSTEM_BUCKET
from tunnelmesh.store.errors import BucketExists


def _owner(peer_id: str) -> str:
    return f"<Owner><ID>{xml.e(peer_id)}</ID><DisplayName>{xml.e(peer_id)}</DisplayName></Owner>"


def _bucket_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _after_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise S3Error(
            "InvalidArgument", "The continuation token provided is incorrect", ArgumentName="continuation-token"
        ) from None


async def list_buckets(ctx: Context, call: Call) -> Response:
    """ListBuckets, with the paging AWS added in 2024: `max-buckets` (1..10000; absent: every bucket),
    `continuation-token` (opaque: the last name of the previous page), `prefix` and `bucket-region`."""
    req, principal = call.req, call.principal
    assert principal is not None
    if principal.anonymous:
        raise S3Error("AccessDenied")  # before any read: nothing may list the mesh's buckets to anonymous
    prefix = req.query.get("prefix", "")
    region = req.query.get("bucket-region")
    token = req.query.get("continuation-token")
    after = _after_token(token) if token else ""
    limit: int | None = None
    if "max-buckets" in req.query:
        raw = req.query["max-buckets"]
        limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 5 else 0
        if not 1 <= limit <= 10000:
            raise S3Error(
                "InvalidArgument",
                "Argument max-buckets must be an integer between 1 and 10000",
                ArgumentName="max-buckets",
                ArgumentValue=raw,
            )
    chosen = [
        b
        for b in await ctx.authz.visible_buckets(principal, await ctx.store.buckets())
        if b.name.startswith(prefix) and b.name > after and (region is None or (b.region or ctx.region) == region)
    ]
    more = limit is not None and len(chosen) > limit
    chosen = chosen[:limit]
    items = [
        f"<Bucket><Name>{xml.e(b.name)}</Name><CreationDate>{xml.iso8601(b.created)}</CreationDate>"
        f"<BucketRegion>{xml.e(b.region or ctx.region)}</BucketRegion></Bucket>"
        for b in chosen
    ]
    return xml_response(
        xml.document(
            "ListAllMyBucketsResult",
            [
                _owner(principal.peer_id),
                "<Buckets>",
                *items,
                "</Buckets>",
                xml.element("ContinuationToken", _bucket_token(chosen[-1].name)) if more else "",
                xml.element("Prefix", prefix) if prefix else "",
            ],
        )
    )


async def create_bucket(ctx: Context, call: Call) -> Response:
    req, principal = call.req, call.principal
    assert principal is not None
    refuse_unsupported(req)
    require_no_framing(req)
    if req.bucket == SYSTEM_BUCKET:
        raise S3Error("AccessDenied", "The bucket name is reserved for the coordinator.", BucketName=req.bucket)
    validate_bucket_name(req.bucket)
    body = await read_small_body(req)
    if body.strip():
        doc = xml.parse(body, "CreateBucketConfiguration")
        location = xml.text(doc, "LocationConstraint", "") or ""
        if location not in ("", ctx.region) and not (ctx.region == "us-east-1" and location == "US"):
            raise S3Error(
                "IllegalLocationConstraintException",
                f"The {location} location constraint is incompatible for the region specific endpoint "
                "this request was sent to.",
            )
    object_lock = _object_lock(req.headers.get("x-amz-bucket-object-lock-enabled"))
    if object_lock:
        await require_current_nodes(ctx, "Object lock")
    try:
        await ctx.store.create_bucket(req.bucket, principal.peer_id, ctx.region, object_lock)
    except BucketExists as e:
        # AWS keeps its legacy answer in us-east-1: creating a bucket you already own succeeds there
        # (and is BucketAlreadyOwnedByYou in every other region). Not when it asks for object lock the bucket
        # does not have: a backup tool's "ensure the bucket" step would believe its objects can be locked
        if not e.owned_by_caller or ctx.region != "us-east-1":
            raise
        if object_lock and not (await ctx.store.require_bucket(req.bucket)).object_lock:
            raise
    return Response(200, [("location", f"/{req.bucket}")])


def _object_lock(value: str | None) -> bool:
    """x-amz-bucket-object-lock-enabled: a header sent twice arrives joined ("true,true"), so anything but a
    plain true or false is refused rather than guessed."""
    if value is None or value.strip().lower() == "false":
        return False
    if value.strip().lower() == "true":
        return True
    raise S3Error("InvalidArgument", "x-amz-bucket-object-lock-enabled must be true or false.")


async def delete_bucket(ctx: Context, call: Call) -> Response:
    principal = call.principal
    assert principal is not None
    bucket = await call.bucket()
    await ctx.store.delete_bucket(call.req.bucket, None if principal.is_admin else principal.peer_id)
    await ctx.authz.records.forget_bucket(bucket)
    return Response(204)


async def head_bucket(ctx: Context, call: Call) -> Response:
    b = await call.bucket()
    return Response(200, [("x-amz-bucket-region", b.region or ctx.region)])


async def get_bucket_location(ctx: Context, call: Call) -> Response:
    b = await call.bucket()
    region = b.region or ctx.region
    value = "" if region == "us-east-1" else region
    return xml_response(
        (xml.HEAD + f'<LocationConstraint xmlns="{xml.NS}">{xml.e(value)}</LocationConstraint>').encode()
    )


def _acl(owner: str) -> Response:
    grant = (
        '<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
        f"<ID>{xml.e(owner)}</ID><DisplayName>{xml.e(owner)}</DisplayName></Grantee>"
        "<Permission>FULL_CONTROL</Permission></Grant>"
    )
    return xml_response(
        xml.document("AccessControlPolicy", [_owner(owner), "<AccessControlList>", grant, "</AccessControlList>"])
    )


async def get_bucket_acl(ctx: Context, call: Call) -> Response:
    b = await call.bucket()
    return _acl(b.owner)


async def get_object_acl(ctx: Context, call: Call) -> Response:
    req = call.req
    await call.bucket()
    obj = await ctx.store.get_object(req.bucket, req.key)
    # an ask left for the object's tags (s3:ExistingObjectTag/*) is decided before anything is answered
    ctx.authz.settle(req, None if obj is None else obj.tags or {})
    if obj is None:
        raise S3Error("NoSuchKey", Key=req.key)
    return _acl(obj.owner)
