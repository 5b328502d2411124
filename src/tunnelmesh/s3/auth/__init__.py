"""Choose the authentication scheme, verify it, and hand back a verified, de-framed body stream."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import AsyncIterable, AsyncIterator

from tunnelmesh.lanes import Lane
from tunnelmesh.s3.auth import post_policy, sigv2, sigv4
from tunnelmesh.s3.auth.chunked import ChunkedBody, ChunkSigning
from tunnelmesh.s3.auth.credentials import Credentials, require_identity
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import ANONYMOUS, Request, raw_body

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UNSIGNED = "UNSIGNED-PAYLOAD"
_SHA256_HEX = re.compile("[0-9a-f]{64}")


async def _verify_sha256(body: AsyncIterator[bytes], expected: str) -> AsyncIterator[bytes]:
    h = hashlib.sha256()
    lane = Lane(h.update)  # hashed on a thread while the next batch is received (tunnelmesh/lanes.py)
    async for chunk in body:
        await lane.feed(chunk)
        yield chunk
    await lane.drain()
    if not hmac.compare_digest(h.hexdigest(), expected):
        raise S3Error("XAmzContentSHA256Mismatch")


def _declared_length(req: Request) -> int | None:
    value = req.header("x-amz-decoded-content-length") if req.has_body_framing else req.header("content-length")
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise S3Error("InvalidArgument", "Content-Length is not a number.") from None
    if n < 0:
        raise S3Error("InvalidArgument", "Content-Length must not be negative.")
    return n


def _sigv4_body(req: Request, payload: str, key: bytes, sr: sigv4.SignedRequest) -> AsyncIterable[bytes]:
    raw = raw_body(req)
    if payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER):
        if payload == STREAMING_UNSIGNED_TRAILER:
            signing = None
        else:
            signing = ChunkSigning(key, sr.amz_date, sr.scope.text, sr.signature)
        return ChunkedBody(raw, req.content_length, signing, payload == STREAMING_SIGNED_TRAILER)
    if payload.startswith("STREAMING-"):
        raise S3Error("InvalidRequest", f"x-amz-content-sha256 value {payload} is not supported.")
    if payload == UNSIGNED:
        return raw
    return _verify_sha256(raw, payload)


async def authenticate(req: Request, creds: Credentials, region: str, anonymous: bool = False) -> None:
    """Sets req.principal and req.body, or raises an S3Error.

    `anonymous`: a request with no credentials at all (no Authorization header, no presign parameters)
    becomes the anonymous principal instead of being refused; only the S3 edge asks for that, where the
    authorizer lets it do only what a Principal "*" statement allows (never the admin API).

    A signature authorises only what it covers: SigV4 refuses any x-amz-* header it does not sign
    (SigV2 signs every x-amz-* header by construction). Basic and Bearer carry the secret itself
    and so authorise the whole request. `region` is the coordinator's; SigV4 scopes must name it
    or us-east-1. A browser form upload (POST Object) is signed in its form: `req.form_auth` then
    verifies it once the operation has read the fields, and until then there is no principal.
    """
    if req.console is not None:
        # an in-process call of the console (console/s3call.py) as the principal its session reloaded
        req.auth_type = "console"
        req.principal = req.console
        req.content_length = _declared_length(req)
        req.body = raw_body(req)
        return
    if post_policy.is_form_upload(req):
        req.auth_type = "POST"
        req.content_length = _declared_length(req)
        req.body = raw_body(req)
        req.form_auth = lambda fields: post_policy.authenticate(req, fields, creds, region)
        return
    auth = req.header("authorization")
    q = req.query
    presigned_v4 = "X-Amz-Algorithm" in q or "X-Amz-Signature" in q
    presigned_v2 = "AWSAccessKeyId" in q and "Signature" in q
    if auth and (presigned_v4 or presigned_v2):
        raise S3Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query "
            "parameter, Signature query string parameter or the Authorization header should be specified",
        )
    req.content_length = _declared_length(req)

    if auth.startswith("AWS4-HMAC-SHA256"):
        req.auth_type, req.signature_version = "REST-HEADER", sigv4.ALGORITHM
        sr = sigv4.header_request(req)
        sigv4.check_scope(sr.scope, region, presigned=False)
        sigv4.check_headers_signed(req, sr)
        payload = req.header("x-amz-content-sha256")
        if not payload:
            raise S3Error("InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
        if not (payload == UNSIGNED or payload.startswith("STREAMING-") or _SHA256_HEX.fullmatch(payload)):
            raise S3Error(
                "InvalidArgument",
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, a STREAMING- value, or a valid sha256 value.",
            )
        ident = await require_identity(creds, sr.scope.access_key)
        key = sigv4.verify(req, sr, ident.secret, payload)
        req.principal = ident.principal
        req.body = _sigv4_body(req, payload, key, sr)
    elif presigned_v4:
        req.auth_type, req.signature_version = "REST-QUERY-STRING", sigv4.ALGORITHM
        sr = sigv4.presigned_request(req)
        sigv4.check_scope(sr.scope, region, presigned=True)
        sigv4.check_headers_signed(req, sr)
        payload = q.get("X-Amz-Content-Sha256") or UNSIGNED
        ident = await require_identity(creds, sr.scope.access_key)
        key = sigv4.verify(req, sr, ident.secret, payload)
        sigv4.apply_query_headers(req)
        req.principal = ident.principal
        req.body = _sigv4_body(req, payload, key, sr)
    elif auth.startswith("AWS "):
        req.auth_type, req.signature_version = "REST-HEADER", "AWS"
        access_key, _, signature = auth[4:].strip().rpartition(":")
        date_line = sigv2.header_date(req)
        ident = await require_identity(creds, access_key)
        sigv2.verify(req, ident.secret, signature, date_line)
        req.principal = ident.principal
        req.body = raw_body(req)
    elif presigned_v2:
        req.auth_type, req.signature_version = "REST-QUERY-STRING", "AWS"
        expires = sigv2.query_expires(req)
        ident = await require_identity(creds, q["AWSAccessKeyId"])
        sigv2.verify(req, ident.secret, q["Signature"], expires)
        sigv2.check_lifetime(expires)
        req.principal = ident.principal
        req.body = raw_body(req)
    elif auth[:6].lower() == "basic ":
        req.auth_type = "REST-HEADER"
        try:
            peer, sep, token = base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise S3Error("AccessDenied", "Malformed Basic credentials.") from None
        found = await creds.by_access_key(peer)
        # compare even for an unknown peer so timing does not reveal which peers exist
        secret = found.secret if found else "\x00" * 32
        if not sep or not hmac.compare_digest(secret.encode(), token.encode()) or found is None:
            raise S3Error("AccessDenied", "Invalid peer id or token.")
        req.principal = found.principal
        req.body = raw_body(req)
    elif auth[:7].lower() == "bearer ":
        req.auth_type = "REST-HEADER"
        holder = await creds.by_token(auth[7:].strip())
        if holder is None:
            raise S3Error("AccessDenied", "Invalid token.")
        req.principal = holder.principal
        req.body = raw_body(req)
    elif auth:
        raise S3Error("AccessDenied", "Unsupported Authorization scheme.")
    elif anonymous:
        req.principal = ANONYMOUS
        req.body = raw_body(req)
    else:
        raise S3Error("AccessDenied", "Access Denied. Anonymous requests are not allowed.")


_PRESIGNED = ("X-Amz-Algorithm", "X-Amz-Signature", "X-Amz-Credential", "AWSAccessKeyId", "Signature")


def require_whole_request_signed(req: Request) -> None:
    """The admin API's rule: only a credential that covers the whole request, i.e. Bearer and Basic
    (the secret itself) or a SigV4 header signature over the body. A presigned URL or a SigV2 signature
    leaves the body (and for SigV2 the host) unsigned: a presigned S3 link for bucket `api`, sent to
    this listener with a body of the holder's choosing, would otherwise run as an admin request."""
    if any(name in req.query for name in _PRESIGNED):
        raise S3Error("AccessDenied", "The admin API does not take presigned URLs.")
    auth = req.header("authorization")
    if auth.startswith("AWS "):
        raise S3Error("AccessDenied", "The admin API takes Bearer, Basic or Signature Version 4.")
    if auth.startswith("AWS4-HMAC-SHA256") and not _SHA256_HEX.fullmatch(req.header("x-amz-content-sha256")):
        raise S3Error("AccessDenied", "The admin API takes Signature Version 4 only with a signed payload.")
