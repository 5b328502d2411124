"""The framework-neutral request the S3 layer works on, built from an ASGI scope."""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from tunnelmesh import lanes
from tunnelmesh.access.policy import Statement
from tunnelmesh.lanes import BATCH, OFFLOAD_MIN
from tunnelmesh.s3.errors import S3Error

if TYPE_CHECKING:
    from tunnelmesh.access.cors import CorsRule
    from tunnelmesh.s3.auth.post_policy import Policy
    from tunnelmesh.s3.authz import Deferred
    from tunnelmesh.store.records import Bucket

Receive = Callable[[], Awaitable[dict[str, Any]]]


class _RequestIds:
    """16 hex digits: a random prefix per process and a counter. Unique across workers and
    restarts, and far cheaper than 8 fresh random bytes per request (a getrandom call each)."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._prefix = secrets.token_hex(4).upper()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFF:08X}"


new_request_id = _RequestIds()


@dataclass(slots=True)
class Principal:
    peer_id: str
    is_admin: bool
    # a scoped access key signed (coordinator/keys.py): it acts as its peer, never as an admin, and within
    # `scope` (Allow statements; None: all its peer's rights)
    key_id: str | None = None
    scope: tuple[Statement, ...] | None = None
    # a request with no credentials at all (docs/access-control.md section 5): only statements with
    # Principal "*" may allow it; its empty peer id is never a peer's, nor a bucket's owner
    anonymous: bool = False


ANONYMOUS = Principal("", is_admin=False, anonymous=True)

# the scope key under which the console's in-process calls carry their signed-in Principal: a server never
# puts client data in a scope key, so no HTTP request can carry one
CONSOLE_PRINCIPAL = "tunnelmesh.console_principal"


def parse_query(raw: str) -> list[tuple[str, str, str, str]]:
    """(name, value, raw name, raw value) for each parameter; `+` stays a plus (S3 semantics)."""
    out: list[tuple[str, str, str, str]] = []
    if not raw:
        return out
    for part in raw.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        out.append((unquote(name, errors="strict"), unquote(value, errors="strict"), name, value))
    return out


@dataclass(slots=True)
class Request:
    method: str
    raw_path: str  # percent-encoded, exactly as sent (SigV4 signs it)
    raw_query: str
    headers: dict[str, str]
    receive: Receive
    prefix: str  # the endpoint path prefix, "/s3" or ""
    bucket: str = ""
    key: str = ""
    query_items: list[tuple[str, str, str, str]] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)
    request_id: str = field(default_factory=new_request_id)
    principal: Principal | None = None
    # the verified, de-framed request body; set by authentication
    body: AsyncIterable[bytes] | None = None
    # the decoded length of the body when known (Content-Length or X-Amz-Decoded-Content-Length)
    content_length: int | None = None
    operation: str = "-"
    # the client's address (the mesh address of the peer: aws:SourceIp in a policy)
    client: str = ""
    # the listener's: "https" where it has TLS (a form upload's Location names it)
    scheme: str = "http"
    # the access decision's reason, for the request log line (never sent to the client)
    authz: str = "-"
    # how the request was authenticated, for the s3:authType and s3:signatureversion condition keys:
    # REST-HEADER | REST-QUERY-STRING | POST, and AWS4-HMAC-SHA256 | AWS ("" for Basic, Bearer, anonymous)
    auth_type: str = ""
    signature_version: str = ""
    # the owner of the request's bucket as the access check found it (s3/authz.py); "" before, or without one
    bucket_owner: str = ""
    # the bucket row an admin API check held for (its BUCKET rule): the change is made to that incarnation
    checked_bucket: Bucket | None = None
    # GetObject/HeadObject by a caller who may list the key but not read it: a missing key answers 404, a
    # present one AccessDenied (AWS); set by s3/authz.py, applied where the object is looked up
    hide_existing: bool = False
    # the bucket's CORS rules from the view the authorizer compiled for this request: the edge adds the
    # actual response's CORS headers from them (errors included) without a read of its own
    cors: tuple[CorsRule, ...] | None = None
    # GetObject/HeadObject allowed: what decides whether a missing key answers NoSuchKey (the caller may list
    # it) or AccessDenied (AWS). Kept, not decided: the second decision is paid only when the key is missing
    # (s3/authz.py `Authorizer.may_list_missing`, applied where the object is looked up)
    list_rule: Any = None
    # an ask whose conditions read the object's tags, left by s3/authz.py to the operation that looks the
    # object up (`Authorizer.settle`), which decides it before it returns or changes anything
    deferred: Deferred | None = None
    # the tags the request writes when the operation read them from its body (PutObjectTagging, a form's
    # `tagging` field): s3:RequestObjectTag* (None: x-amz-tagging's, if any)
    request_tags: dict[str, str] | None = None
    # set once the last body message has been received
    body_done: bool = False
    # a browser form upload's credentials are in its body: authentication leaves this to verify the
    # form's fields (setting `principal`) once the operation has read them
    form_auth: Callable[[Mapping[str, str]], Awaitable[Policy]] | None = None
    # a form upload awaits this once its signature held, to leave the pool of unauthenticated forms
    admit: Callable[[], Awaitable[None]] | None = None
    # the signed-in principal of an in-process console call (console/s3call.py), from its CONSOLE_PRINCIPAL
    console: Principal | None = None

    @property
    def writer(self) -> str:
        """Whom what this request writes (a version, a delete marker, an upload) belongs to: the signer; for an
        anonymous writer (let in by a Principal "*" statement) the bucket's owner, as with bucket-owner-enforced
        ownership: the empty id of nobody never owns anything."""
        assert self.principal is not None
        if not self.principal.anonymous:
            return self.principal.peer_id
        assert self.bucket_owner, "an anonymous write reached an operation without the access check's bucket"
        return self.bucket_owner

    @property
    def has_body(self) -> bool:
        return "transfer-encoding" in self.headers or self.headers.get("content-length", "0") not in ("", "0")

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def has_body_framing(self) -> bool:
        return self.header("x-amz-content-sha256").startswith("STREAMING-")


def from_scope(
    scope: dict[str, Any], receive: Receive, prefix: str, admit: Callable[[], Awaitable[None]] | None = None
) -> Request:
    """The Request of an ASGI scope, for the S3 and admin edges alike; the target is parsed later
    (`parse_target`), once the request has an id to report a malformed one with."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    return Request(
        method=scope["method"],
        raw_path=raw_path.decode("latin-1"),
        raw_query=(scope.get("query_string") or b"").decode("latin-1"),
        headers=headers_from_asgi(scope["headers"]),
        receive=receive,
        prefix=prefix,
        admit=admit,
        console=scope.get(CONSOLE_PRINCIPAL),
        client=(scope.get("client") or ("",))[0] or "",
        scheme=scope.get("scheme") or "http",
    )


def parse_target(req: Request) -> str:
    """Decode the query into `req.query_items` / `req.query`; returns the decoded path below the prefix.
    Percent-escapes that are not UTF-8 are InvalidURI."""
    try:
        path = unquote(req.raw_path[len(req.prefix) :] or "/", errors="strict")
        req.query_items = parse_query(req.raw_query)
    except UnicodeDecodeError:
        raise S3Error("InvalidURI") from None
    req.query = {name: value for name, value, _, _ in req.query_items}
    return path


def split_path(path: str) -> tuple[str, str]:
    """'/bucket/key/with/slashes' -> ('bucket', 'key/with/slashes'); the key keeps every byte."""
    if not path.startswith("/"):
        raise S3Error("InvalidURI")
    rest = path[1:]
    bucket, _, key = rest.partition("/")
    return bucket, key


async def raw_body(req: Request) -> AsyncIterator[bytes]:
    """The HTTP body (already de-chunked by the server) as a stream of pieces the layers that hash and write it
    hand to their threads (tunnelmesh/lanes.py), where a hand-off per small server message would cost more than
    it saves: a message of at least `lanes.OFFLOAD_MIN` bytes is passed on as it is (after what was held);
    smaller ones are joined into batches of about `lanes.BATCH` bytes (the last one shorter)."""
    receive = req.receive
    held: list[bytes] = []
    size = 0
    passed = 0
    large = False
    try:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise S3Error("IncompleteBody", "The client closed the connection before sending the whole body.")
            chunk = msg.get("body", b"")
            more = msg.get("more_body", False)
            if not more:
                req.body_done = True
            passed += len(chunk)
            if not large and len(chunk) + size >= OFFLOAD_MIN:
                # pieces the lanes' threads take, passed on as they are or joined: counted for the trim
                large = True
                lanes.body_begins()
            if len(chunk) >= OFFLOAD_MIN:
                # granian's messages of a large body are its read buffer's size (408 KiB): joining two of them
                # held both, their copy and the batch before it (about 2.4 MiB per upload) for no hand-offs
                # worth saving; passed on as they are, an upload holds about two messages
                if held:
                    yield b"".join(held)
                    held.clear()
                    size = 0
                yield chunk
            elif chunk:
                held.append(chunk)
                size += len(chunk)
                if size >= BATCH:
                    batch = b"".join(held)  # one piece: itself, no copy
                    held.clear()
                    size = 0
                    yield batch
            if not more:
                if held:
                    yield b"".join(held)
                return
    finally:
        if large:
            lanes.body_ends(passed)


async def read_small_body(req: Request, limit: int = 2 * 1024 * 1024) -> bytes:
    """Read a request document (XML) fully; these are small and capped."""
    assert req.body is not None
    buf = bytearray()
    async for chunk in req.body:
        buf += chunk
        if len(buf) > limit:
            raise S3Error("MaxMessageLengthExceeded", status=400)
    return bytes(buf)


def headers_from_asgi(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """Lower-case names; repeated headers joined with commas, as SigV4 canonicalises them."""
    out: dict[str, str] = {}
    for k, v in raw:
        name = k.decode("latin-1").lower()
        value = v.decode("latin-1")
        out[name] = f"{out[name]},{value}" if name in out else value
    return out
