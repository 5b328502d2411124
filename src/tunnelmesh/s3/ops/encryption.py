"""SSE-S3 at the edge: which writes are encrypted, the header reads answer, and Put/Get/DeleteBucketEncryption.

A write is encrypted when it asks (`x-amz-server-side-encryption: AES256`) or its bucket has default
encryption; the store does the rest (store/sse.py), and answers plaintext to every read. SSE-KMS and
SSE-C stay refused (s3/ops/unsupported.py). Without a key file (s3.sse_key_file) an encrypted write is
refused, never stored in plaintext (store/errors.py EncryptionUnavailable).
"""

from __future__ import annotations

from tunnelmesh.s3 import xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops import tags as tagsets
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.request import Request, read_small_body
from tunnelmesh.s3.response import Response, xml_response
from tunnelmesh.store.errors import EncryptionUnavailable
from tunnelmesh.store.sse import ALGORITHM

HEADER = "x-amz-server-side-encryption"
# SSE-KMS's algorithms: a real S3 feature this server does not offer (501), not a malformed request
_KMS = frozenset({"aws:kms", "aws:kms:dsse"})


def asked(req: Request) -> bool:
    """Whether the request itself asks for SSE-S3. Any other algorithm was refused by unsupported.py."""
    return HEADER in req.headers


async def wanted(ctx: Context, call: Call, req: Request) -> bool:
    """Whether this write is to be encrypted: asked for, or the bucket's default. Without a key file no bucket
    can have a default (PutBucketEncryption is refused, and a coordinator whose buckets have one refuses
    to start without it), so the bucket is read only where encryption is offered at all."""
    if asked(req):
        return True
    return ctx.store.sse is not None and (await call.bucket()).sse_default is not None


async def data_key(ctx: Context, req: Request, encrypt: bool) -> tuple[bytes, str] | tuple[None, None]:
    """A new version of `req`'s key: its data key and their wrapped form when `encrypt`, after the
    rolling-upgrade gate (a node of an older release would serve or move the row as plaintext); (None, None)
    otherwise."""
    if not encrypt:
        return None, None
    if ctx.store.sse is None:
        raise EncryptionUnavailable()
    await tagsets.require_current_nodes(ctx, HEADER)
    return ctx.store.new_data_key(req.bucket, req.key)


def response_headers(sealed: str | None) -> list[tuple[str, str]]:
    """What a write or read of an encrypted version answers (none for a plaintext one)."""
    return [(HEADER, ALGORITHM)] if sealed is not None else []


# ---- bucket default encryption ---------------------------------------------------------------


def _configuration(body: bytes) -> str:
    """The algorithm a ServerSideEncryptionConfiguration names: AES256 only."""
    doc = xml.parse(body, "ServerSideEncryptionConfiguration")
    rules = doc.findall("Rule")
    if len(rules) != 1:
        raise S3Error("MalformedXML", "A ServerSideEncryptionConfiguration holds exactly one Rule.")
    default = rules[0].find("ApplyServerSideEncryptionByDefault")
    if default is None:
        raise S3Error("MalformedXML", "The Rule needs ApplyServerSideEncryptionByDefault.")
    algorithm = (xml.text(default, "SSEAlgorithm") or "").strip()
    if algorithm in _KMS:
        raise S3Error("NotImplemented", f"SSEAlgorithm {algorithm} (SSE-KMS) is not implemented; use AES256.")
    if algorithm != ALGORITHM:
        raise S3Error("MalformedXML", "SSEAlgorithm must be AES256.")
    if default.find("KMSMasterKeyID") is not None:
        raise S3Error("InvalidArgument", "A KMSMasterKeyID is allowed only with SSEAlgorithm aws:kms.")
    return algorithm


async def put_bucket_encryption(ctx: Context, call: Call) -> Response:
    req = call.req
    algorithm = _configuration(await read_small_body(req, 64 * 1024))
    if ctx.store.sse is None:
        raise EncryptionUnavailable()
    await tagsets.require_current_nodes(ctx, "PutBucketEncryption")
    await ctx.store.set_bucket_encryption(req.bucket, algorithm)
    return Response(200)


async def get_bucket_encryption(ctx: Context, call: Call) -> Response:
    bucket = await call.bucket()
    if bucket.sse_default is None:
        raise S3Error("ServerSideEncryptionConfigurationNotFoundError", BucketName=bucket.name)
    rule = (
        "<Rule><ApplyServerSideEncryptionByDefault>"
        f"{xml.element('SSEAlgorithm', bucket.sse_default)}"
        "</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>false</BucketKeyEnabled></Rule>"
    )
    return xml_response(xml.document("ServerSideEncryptionConfiguration", [rule]))


async def delete_bucket_encryption(ctx: Context, call: Call) -> Response:
    await ctx.store.set_bucket_encryption(call.req.bucket, None)
    return Response(204)
