"""What the operation handlers share: the request context, name rules, stored headers."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3 import checksums
from tunnelmesh.s3.authz import Authorizer
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request
from tunnelmesh.s3.response import Response, http_date
from tunnelmesh.store.commits import NULL
from tunnelmesh.store.engine import Store
from tunnelmesh.store.records import ObjectRecord, version_seq

MAX_KEY_BYTES = 1024
MAX_USER_METADATA = 2048
MAX_OBJECT_SIZE = 5 * 1024**4
MAX_PART_SIZE = 5 * 1024**3
MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_CONTENT_TYPE = "binary/octet-stream"

# system headers an object keeps and returns on GET/HEAD
STORED_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "cache-control",
    "content-language",
    "expires",
    "x-amz-website-redirect-location",
)


@dataclass(slots=True)
class Context:
    store: Store
    region: str
    max_object_size: int = MAX_OBJECT_SIZE
    # s3.node_timeout: a node silent for longer is not live (the tagging upgrade gate, s3/ops/tagging.py)
    node_timeout: float = 60.0
    max_retention_days: int = 3650  # s3.max_retention_days (s3/ops/lock.py)
    # every request's access decisions (s3/authz.py): one per worker, over this store's records
    authz: Authorizer = field(init=False)

    def __post_init__(self) -> None:
        self.authz = Authorizer(SystemState(self.store))

    @property
    def max_part_size(self) -> int:
        return min(MAX_PART_SIZE, self.max_object_size)


Handler = Callable[[Context, Call], Awaitable[Response]]

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def validate_bucket_name(name: str) -> None:
    bad = (
        not _BUCKET_RE.match(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or name.startswith("xn--")
        or name.endswith("-s3alias")
        or _is_ip(name)
    )
    if bad:
        raise S3Error("InvalidBucketName", BucketName=name)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


NUL = "\x00"


def refuse_nul(value: str, what: str) -> None:
    """No key holds a NUL character (PutObject refuses one; XML 1.0 could not even list it, and
    PostgreSQL's text cannot store it), so a NUL in anything matched against keys is refused, the same
    way on every metadata engine, instead of reaching one that cannot take it."""
    if NUL in value:
        raise S3Error("InvalidArgument", f"{what} must not contain a NUL character.")


def validate_key(key: str) -> None:
    if not key:
        raise S3Error("InvalidArgument", "An object key must not be empty.")
    refuse_nul(key, "An object key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", MaxSizeAllowed=str(MAX_KEY_BYTES))


def object_headers_from_request(req: Request) -> dict[str, str]:
    """System headers and x-amz-meta-* to store with an object; aws-chunked is framing, not data."""
    out: dict[str, str] = {}
    for name in STORED_HEADERS:
        value = req.headers.get(name)
        if value is None:
            continue
        if name == "content-encoding":
            # stored byte for byte (`deflate, gzip` stays so) once the framing token is gone
            tokens = value.split(",")
            kept = [t for t in tokens if t.strip().lower() != "aws-chunked"]
            if len(kept) != len(tokens):
                value = ",".join(kept).strip()
            if not value.strip():
                continue
        out[name] = value
    meta_size = 0
    for name, value in req.headers.items():
        if name.startswith("x-amz-meta-"):
            out[name] = value
            meta_size += len(name) - len("x-amz-meta-") + len(value.encode())
    if meta_size > MAX_USER_METADATA:
        raise S3Error("MetadataTooLarge", MaxSizeAllowed=str(MAX_USER_METADATA))
    out.setdefault("content-type", DEFAULT_CONTENT_TYPE)
    return out


def object_response_headers(obj: ObjectRecord, with_checksums: bool) -> list[tuple[str, str]]:
    h = [
        ("etag", f'"{obj.etag}"'),
        ("last-modified", http_date(obj.mtime)),
        ("accept-ranges", "bytes"),
    ]
    h.extend(obj.headers.items())
    if with_checksums:
        for alg, value in obj.checksums.items():
            h.append((f"x-amz-checksum-{alg}", value))
            h.append(("x-amz-checksum-type", checksums.checksum_type(value)))
    return h


def require_no_framing(req: Request) -> None:
    if req.has_body_framing:
        raise S3Error(
            "InvalidRequest",
            f"x-amz-content-sha256 {req.header('x-amz-content-sha256')} is only valid for PutObject and UploadPart.",
        )


MAX_PART_NUMBER = 10000


def part_number(req: Request) -> int:
    """?partNumber=N: 1..10000, else InvalidArgument (digits only: int() would take " 1", "١" or "1_0")."""
    value = req.query.get("partNumber", "")
    n = int(value) if value.isascii() and value.isdigit() and len(value) <= 5 else 0
    if not 1 <= n <= MAX_PART_NUMBER:
        raise S3Error(
            "InvalidArgument",
            "Part number must be an integer between 1 and 10000, inclusive",
            ArgumentName="partNumber",
            ArgumentValue=value,
        )
    return n


def check_version_id(req: Request) -> str | None:
    """The request's ?versionId= ("null", or an id of ours), None without one."""
    vid = req.query.get("versionId")
    if vid is not None and vid != NULL and version_seq(vid) is None:
        raise S3Error("InvalidArgument", "Invalid version id specified", ArgumentName="versionId", ArgumentValue=vid)
    return vid


def version_header(version_id: str | None) -> list[tuple[str, str]]:
    """x-amz-version-id of a write or read: none in a bucket never versioned (version_id None)."""
    return [] if version_id is None else [("x-amz-version-id", version_id)]


def read_version_header(req: Request, obj: ObjectRecord) -> list[tuple[str, str]]:
    """x-amz-version-id of a read: the version's id; for the null version only when asked for by id (telling
    it apart from an object of a bucket never versioned would cost every read the bucket's record)."""
    if obj.version_id is not None:
        return [("x-amz-version-id", obj.version_id)]
    return [("x-amz-version-id", NULL)] if "versionId" in req.query else []


async def lookup_object(ctx: Context, call: Call) -> ObjectRecord:
    """The object a read names: the current version, or the one ?versionId= asks for. A delete marker is
    no object: NoSuchKey (the current version) or MethodNotAllowed (asked by id), with the headers S3 gives."""
    try:
        found = await _lookup(ctx, call)
    except S3Error as e:
        # an ask the edge left for the object's tags: there is no object (its flags apply below)
        ctx.authz.settle(call.req, None)
        missing = e.code == "NoSuchKey"
        if (call.req.hide_existing and not missing) or (missing and not ctx.authz.may_list_missing(call.req)):
            raise S3Error("AccessDenied") from None
        if call.req.hide_existing:
            raise S3Error("NoSuchKey", Key=call.req.key) from None  # not even a delete marker's headers
        raise
    if call.req.hide_existing:
        raise S3Error("AccessDenied")  # the caller may learn that a key is missing, never what is there
    ctx.authz.settle(call.req, found.tags or {})
    return found


async def _lookup(ctx: Context, call: Call) -> ObjectRecord:
    req = call.req
    vid = check_version_id(req)
    if vid is not None:
        version = await ctx.store.get_version(req.bucket, req.key, vid)
        if version.marker:
            e = S3Error("MethodNotAllowed", Method=req.method, ResourceType="DeleteMarker")
            raise _marker_error(e, vid, version)
        return version
    obj = await ctx.store.get_object(req.bucket, req.key)
    if obj is None:
        # only to tell NoSuchBucket from NoSuchKey, and a deleted key from one never written: a hit costs one read
        bucket = await call.bucket()
        marker = await ctx.store.current_marker(req.bucket, req.key) if bucket.versioning is not None else None
        e = S3Error("NoSuchKey", Key=req.key)
        raise _marker_error(e, marker, None) if marker is not None else e
    return obj


def _marker_error(e: S3Error, version_id: str, marker: ObjectRecord | None) -> S3Error:
    e.headers += [("x-amz-delete-marker", "true"), ("x-amz-version-id", version_id)]
    if marker is not None:
        e.headers.append(("last-modified", http_date(marker.mtime)))
    return e
