"""PutBucketVersioning and GetBucketVersioning (docs/data-protection.md section 2).

Enabling versioning is refused while a live coordinator of an older release shares the metadata: it would
overwrite a versioned key in place, and the version it replaced would be gone (docs/scale-out.md,
"Upgrading a mesh"). Suspending needs no such wait: an older node's overwrite of a null version is what
suspension does anyway, except that it leaves no noncurrent copy of a non-null current version.
"""

from __future__ import annotations

from tunnelmesh.s3 import xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.ops.tags import require_current_nodes
from tunnelmesh.s3.request import read_small_body
from tunnelmesh.s3.response import Response, xml_response
from tunnelmesh.store.commits import VERSIONING_STATES


async def put_bucket_versioning(ctx: Context, call: Call) -> Response:
    req = call.req
    doc = xml.parse(await read_small_body(req), "VersioningConfiguration")
    status = xml.text(doc, "Status")
    if status not in VERSIONING_STATES:
        raise S3Error("MalformedXML", "Status must be Enabled or Suspended.")
    # MFA delete needs a hardware token's code on every versioned delete: not offered, so never pretended
    if (xml.text(doc, "MfaDelete") or xml.text(doc, "MFADelete") or "Disabled").strip() != "Disabled":
        raise S3Error("NotImplemented", "MFA delete is not implemented.")
    # suspending weakens what the bucket keeps: the owner's or an admin's decision, not any writer's
    if status == "Enabled":
        await require_current_nodes(ctx, "Versioning")
    await ctx.store.set_versioning(req.bucket, status)
    return Response(200)


async def get_bucket_versioning(ctx: Context, call: Call) -> Response:
    bucket = await call.bucket()
    state = [xml.element("Status", bucket.versioning)] if bucket.versioning else []
    return xml_response(xml.document("VersioningConfiguration", state))
