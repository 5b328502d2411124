"""PutBucketAcl, `private` only: buckets are bucket-owner-enforced (the owner has full control, no ACL
grants anything), so the one ACL a bucket can be given is the one it has.

Accepted: `x-amz-acl: private`, or an AccessControlPolicy granting only the bucket's owner FULL_CONTROL
(what GetBucketAcl answers, so a read-modify-write of the ACL round-trips). Anything else is
AccessControlListNotSupported, as before; a public one under BlockPublicAcls was refused earlier
(AccessDenied, s3/authz.py) for headers, and here for a body.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from tunnelmesh.s3 import xml
from tunnelmesh.s3.authz import PUBLIC_GROUPS
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.ops.unsupported import acl_not_supported
from tunnelmesh.s3.request import read_small_body
from tunnelmesh.s3.response import Response

HEADER = "x-amz-acl"


def _grants(doc: Element) -> list[tuple[str, str, str]]:
    """(grantee type, id or uri, permission) of each Grant."""
    acl = doc.find("AccessControlList")
    if acl is None:
        raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate.")
    out = []
    for grant in acl.findall("Grant"):
        grantee = grant.find("Grantee")
        if grantee is None:
            raise S3Error("MalformedACLError", "The XML you provided was not well-formed or did not validate.")
        kind = grantee.get("{http://www.w3.org/2001/XMLSchema-instance}type") or grantee.get("type") or ""
        who = (xml.text(grantee, "ID") or xml.text(grantee, "URI") or xml.text(grantee, "EmailAddress") or "").strip()
        out.append((kind, who, (xml.text(grant, "Permission") or "").strip()))
    return out


async def put_bucket_acl(ctx: Context, call: Call) -> Response:
    req = call.req
    bucket = await call.bucket()
    grant_headers = [name for name in req.headers if name.startswith("x-amz-grant-")]
    body = await read_small_body(req, 64 * 1024)
    if HEADER in req.headers or grant_headers:
        if body.strip():
            raise S3Error("UnexpectedContent", "This request does not support content")
        if grant_headers:
            raise acl_not_supported(grant_headers[0])
        if req.header(HEADER).strip() != "private":
            raise acl_not_supported(HEADER)
        return Response(200)
    if not body.strip():
        raise S3Error("MissingRequestBodyError", "Request Body is empty")
    grants = _grants(xml.parse(body, "AccessControlPolicy"))
    if any(who in PUBLIC_GROUPS for _, who, _ in grants):
        pab = (await ctx.authz.view(req.bucket)).pab
        if pab is not None and pab.block_public_acls:
            req.authz = "deny:block-public-acls"
            raise S3Error("AccessDenied")
    if grants != [("CanonicalUser", bucket.owner, "FULL_CONTROL")]:
        raise acl_not_supported("AccessControlPolicy")
    return Response(200)
