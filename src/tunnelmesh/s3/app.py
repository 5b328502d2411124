"""The HTTP edge of the S3 API: ASGI in, one operation, S3 XML (or bytes, or a file) out.

This is the only place that knows about status lines and the only place errors are rendered.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any, NamedTuple

from tunnelmesh.access.cors import actual, bad_preflight, parse_request_headers, preflight
from tunnelmesh.obs.auth_reasons import refused_credential
from tunnelmesh.s3 import xml
from tunnelmesh.s3.auth import authenticate
from tunnelmesh.s3.auth.credentials import Credentials
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context, refuse_nul
from tunnelmesh.s3.request import Receive, Request, from_scope, parse_target, split_path
from tunnelmesh.s3.response import Response
from tunnelmesh.s3.router import route
from tunnelmesh.s3.store_errors import s3_error
from tunnelmesh.store.content import read_slices
from tunnelmesh.store.engine import SYSTEM_BUCKET
from tunnelmesh.store.errors import StoreError

log = logging.getLogger("tunnelmesh.s3")
Send = Any

_NO_BODY_STATUS = {204, 304}
# A streamed response goes out in pieces this size: a send returns once the client has taken about
# one more piece, the only progress the request can see, so the deadline on a client that stops
# reading (limits.body_timeout) works at this grain: a download must move a piece per body_timeout
# (4.3 KiB/s at the default minute). Smaller pieces cost more: 64 KiB ones doubled the worker's CPU
# time per byte of a ranged GET, 256 KiB ones cost no more than the 1 MiB reads did.
SEND_PIECE = 256 * 1024


# On every S3 response, whatever its content type (a response-content-type=text/html override included):
# an HTML object opened in a browser runs no script and gets an opaque origin, so it cannot act as the
# console's origin (the same host and port); nosniff keeps a text/plain object from running as a script
# pulled in by some other page. Built once: this is every request's path (docs/operations.md 1.1).
SANDBOX_HEADERS = ((b"content-security-policy", b"sandbox"), (b"x-content-type-options", b"nosniff"))

# the user agent as logged, at most: enough to tell clients apart, not a way to fill the log
UA_CHARS = 512

# the scope key under which the HTTP edge hands a form upload the coroutine that moves it from the
# pool of unauthenticated forms to an ordinary request slot (see asgi.py)
ADMIT = "tunnelmesh.admit"


class Outcome(NamedTuple):
    """How a request ended, for the metrics (asgi.py). Plain values only: holding the request or the
    error past the handler would keep the server's body channel alive (obs/auth_reasons.py)."""

    operation: str
    status: int
    received: int  # request body bytes
    sent: int  # response body bytes
    auth_failure: str | None  # obs/auth_reasons.py


class S3Api:
    def __init__(self, ctx: Context, credentials: Credentials) -> None:
        self.ctx = ctx
        self.credentials = credentials

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send, prefix: str) -> Outcome:
        started = time.perf_counter()
        counted = CountedReceive(receive)
        req = from_scope(scope, counted, prefix, scope.get(ADMIT))
        refused: str | None = None
        try:
            resp = await self._dispatch(req)
        except S3Error as err:
            refused = refused_credential(req, err)
            resp = self.error_response(err, req)
        except StoreError as err:
            resp = self.error_response(s3_error(err), req)
        except Exception:
            log.error("request %s failed:\n%s", req.request_id, traceback.format_exc())
            resp = self.error_response(S3Error("InternalError"), req)
        add_cors_headers(req, resp)
        sent = await self._send(scope, send, req, resp)
        if log.isEnabledFor(logging.INFO):
            target = {"bucket": req.bucket or None, "key": req.key or None}
            log_access(log, req, "op", resp.status, target, counted.n, sent, started)
        return Outcome(req.operation, resp.status, counted.n, sent, refused)

    async def _dispatch(self, req: Request) -> Response:
        req.bucket, req.key = split_path(parse_target(req))
        # a NUL key is refused where one would be stored (validate_key), and reads simply find none
        for name, value in req.query.items():
            refuse_nul(value, f"The {name} parameter")
        if req.method == "OPTIONS":
            return await self._preflight(req)
        await authenticate(req, self.credentials, self.ctx.region, anonymous=True)
        r = route(req)
        req.operation = r.name
        row = await self.ctx.authz.authorize(req, r) if req.bucket else None
        # the check held for this incarnation of the bucket: a write that commits after it was deleted and
        # re-created (a slow body) must not land in the successor, which may be another peer's
        bound = self.ctx.store.bind_bucket(row)
        try:
            if not r.takes_body and req.has_body:
                await _drain_verified(req)
            return await r.handler(self.ctx, Call.of(req, r, self.ctx.store, row))
        finally:
            self.ctx.store.unbind_bucket(bound)

    async def _preflight(self, req: Request) -> Response:
        """A browser's CORS preflight, answered before authentication: it never carries credentials."""
        req.operation = "PreflightCors"
        origin = req.headers.get("origin")
        method = req.headers.get("access-control-request-method")
        bad = bad_preflight(origin, method)
        if bad is not None:
            raise S3Error("BadRequest", bad)
        assert origin is not None and method is not None
        # the service root and the system bucket have no CORS configuration, as a bucket without one
        rules = await self.ctx.authz.cors_rules(req.bucket) if req.bucket and req.bucket != SYSTEM_BUCKET else None
        requested = parse_request_headers(req.headers.get("access-control-request-headers"))
        answer = preflight(rules, origin, method, requested)
        if answer.refusal is not None:
            raise S3Error("AccessForbidden", answer.refusal.message)
        return Response(200, list(answer.headers))

    def error_response(self, err: S3Error, req: Request) -> Response:
        if err.status >= 500:
            log.warning("request %s: %s %s", req.request_id, err.code, err.message)
        resource = req.raw_path
        body = xml.error_document(err.code, err.message, resource, req.request_id, err.fields)
        headers = [("content-type", "application/xml"), *err.headers]
        return Response(err.status, headers, body)

    async def _send(self, scope: dict[str, Any], send: Send, req: Request, resp: Response) -> int:
        headers = [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in resp.headers]
        headers.extend(SANDBOX_HEADERS)
        headers.append((b"x-amz-request-id", req.request_id.encode()))
        headers.append((b"x-amz-id-2", req.request_id.encode()))
        if close_after(req):
            headers.append((b"connection", b"close"))
        head_only = req.method == "HEAD" or resp.status in _NO_BODY_STATUS
        if resp.slices is None and not any(k == b"content-length" for k, _ in headers):
            if not head_only:
                headers.append((b"content-length", str(len(resp.body)).encode()))
            elif resp.status >= 400:
                headers.append((b"content-length", b"0"))
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            if head_only:
                await send({"type": "http.response.body", "body": b""})
                return 0
            if resp.slices is None:
                await send({"type": "http.response.body", "body": resp.body})
                return len(resp.body)
            return await self._send_slices(scope, send, resp)
        finally:
            resp.close()

    async def _send_slices(self, scope: dict[str, Any], send: Send, resp: Response) -> int:
        slices = resp.slices or []
        total = sum(s.length for s in slices)
        extensions = scope.get("extensions") or {}
        if (
            len(slices) == 1
            and slices[0].whole
            and slices[0].length > 256 * 1024
            and "http.response.pathsend" in extensions
        ):
            # zero-copy: the server sends the file itself; the blob outlives the send (unlinks are deferred)
            await send({"type": "http.response.pathsend", "path": slices[0].path})
            return total
        if total <= 256 * 1024:
            body = b"".join([c async for c in read_slices(slices)])
            await send({"type": "http.response.body", "body": body})
            return total
        sent = 0
        async for chunk in read_slices(slices):
            for i in range(0, len(chunk), SEND_PIECE):
                piece = chunk[i : i + SEND_PIECE]  # the whole chunk itself, not a copy, when it fits
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += len(piece)
        await send({"type": "http.response.body", "body": b""})
        return sent


def add_cors_headers(req: Request, resp: Response) -> None:
    """An actual (non-preflight) response to a request with `Origin` gets the headers of the bucket's first
    matching rule, errors included: a page must be able to read a 403 or 404. The rules come from the view
    the authorizer compiled for this request (`req.cors`), so this costs no read."""
    origin = req.headers.get("origin")
    if req.cors is None or not origin or req.method == "OPTIONS":
        return
    method = req.headers.get("access-control-request-method") or req.method
    resp.headers.extend(actual(req.cors, origin, method))


def log_access(
    logger: logging.Logger,
    req: Request,
    name: str,
    status: int,
    target: dict[str, str | None],
    received: int,
    sent: int,
    started: float,
) -> None:
    """The access line of an S3 or admin request: its operation under `name` (`op`, `admin`), then its
    `target` (bucket and key, or path). Never the query (a presign's signature and credential), nor any
    header but the user agent, nor a body (tokens travel in all three)."""
    fields = {
        "id": req.request_id,
        "peer": who(req),
        name: req.operation,
        "status": status,
        "method": req.method,
        **target,
        "bytes_in": received,
        "bytes_out": sent,
        "ms": round((time.perf_counter() - started) * 1000, 1),
        "client": req.client or None,
        "ua": req.headers.get("user-agent", "")[:UA_CHARS] or None,
        "authz": req.authz,
        "auth": auth_kind(req),
    }
    logger.info("access", extra={"access": fields})


def who(req: Request) -> str:
    """The signer as the log names it: a peer id, a peer's key (`peer/key`), `anonymous`, or `-` (none yet)."""
    p = req.principal
    if p is None:
        return "-"
    if p.anonymous:
        return "anonymous"
    return p.peer_id if p.key_id is None else f"{p.peer_id}/{p.key_id}"


_AUTH_KINDS = {"REST-HEADER": "header", "REST-QUERY-STRING": "presign", "POST": "form", "console": "console"}


def auth_kind(req: Request) -> str:
    """How the request authenticated, as the log names it: header (SigV4/V2 header, Basic, Bearer),
    presign (query), form (browser POST), console (its in-process calls), anonymous, or `-` (refused before any
    credential was read)."""
    if req.principal is not None and req.principal.anonymous:
        return "anonymous"
    return _AUTH_KINDS.get(req.auth_type, "-")


class CountedReceive:
    """An ASGI `receive` that counts the body bytes it hands on: the log's bytes_in, what really arrived
    (a refused request's unread body counts nothing)."""

    __slots__ = ("_receive", "n")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.n = 0

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        self.n += len(message.get("body", b""))
        return message


def close_after(req: Request) -> bool:
    """Whether this connection must end with this response.

    - Answered before the body was read (an early error): the unread bytes would be taken for the
      next request.
    - `Expect: 100-continue` answered without a `100 Continue` (an empty body): botocore then
      misreads the next response on the same connection and stalls for its read timeout
      (boto/botocore#3755).
    """
    if req.has_body and not req.body_done:
        return True
    return req.headers.get("expect", "").lower() == "100-continue" and not req.has_body


async def _drain_verified(req: Request, cap: int = 64 * 1024) -> None:
    """An operation that takes no body still must not run with a body its signature does not cover:
    reading it through the verified stream raises XAmzContentSHA256Mismatch (or a chunk error)."""
    assert req.body is not None
    size = 0
    async for chunk in req.body:
        size += len(chunk)
        if size > cap:
            raise S3Error("InvalidRequest", f"{req.operation} does not take a request body.")
