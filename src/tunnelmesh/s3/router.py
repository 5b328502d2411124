"""(method, level, query markers, copy-source header) -> operation. One line per operation.

S3 routes on query strings (`?uploads`, `?list-type=2`, `?delete`, `?uploadId=`), so this is a
table, not a path router. A request naming an S3 sub-resource no route handles is answered
NotImplemented by construction, never a wrong success.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops import attributes, buckets, copy, listing, multipart, objects, post_object
from tunnelmesh.s3.ops.common import Handler
from tunnelmesh.s3.request import Request

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    level: str
    markers: tuple[str, ...]
    copy_source: bool | None  # None: either
    name: str
    handler: Handler
    read_only: bool
    takes_body: bool = False


R = Route
ROUTES: tuple[Route, ...] = (
    R("GET", SERVICE, (), None, "ListBuckets", buckets.list_buckets, True),
    R("GET", BUCKET, ("location",), None, "GetBucketLocation", buckets.get_bucket_location, True),
    R("GET", BUCKET, ("acl",), None, "GetBucketAcl", buckets.get_bucket_acl, True),
    R("GET", BUCKET, ("versioning",), None, "GetBucketVersioning", buckets.get_bucket_versioning, True),
    R("GET", BUCKET, ("uploads",), None, "ListMultipartUploads", multipart.list_uploads, True),
    R("GET", BUCKET, ("list-type",), None, "ListObjectsV2", listing.list_objects_v2, True),
    R("GET", BUCKET, ("versions",), None, "ListObjectVersions", listing.list_object_versions, True),
    R("GET", BUCKET, (), None, "ListObjects", listing.list_objects_v1, True),
    R("HEAD", BUCKET, (), None, "HeadBucket", buckets.head_bucket, True),
    R("PUT", BUCKET, (), None, "CreateBucket", buckets.create_bucket, False, True),
    R("DELETE", BUCKET, (), None, "DeleteBucket", buckets.delete_bucket, False),
    R("POST", BUCKET, ("delete",), None, "DeleteObjects", objects.delete_objects, False, True),
    R("POST", BUCKET, (), None, "PostObject", post_object.post_object, False, True),
    R("GET", OBJECT, ("uploadId",), None, "ListParts", multipart.list_parts, True),
    R("GET", OBJECT, ("acl",), None, "GetObjectAcl", buckets.get_object_acl, True),
    R("GET", OBJECT, ("attributes",), None, "GetObjectAttributes", attributes.get_object_attributes, True),
    R("GET", OBJECT, ("partNumber",), None, "GetObject", objects.get_object, True),
    R("GET", OBJECT, (), None, "GetObject", objects.get_object, True),
    R("HEAD", OBJECT, ("partNumber",), None, "HeadObject", objects.head_object, True),
    R("HEAD", OBJECT, (), None, "HeadObject", objects.head_object, True),
    R("PUT", OBJECT, ("partNumber", "uploadId"), True, "UploadPartCopy", multipart.upload_part_copy, False),
    R("PUT", OBJECT, ("partNumber", "uploadId"), False, "UploadPart", multipart.upload_part, False, True),
    R("PUT", OBJECT, (), True, "CopyObject", copy.copy_object, False),
    R("PUT", OBJECT, (), False, "PutObject", objects.put_object, False, True),
    R("DELETE", OBJECT, ("uploadId",), None, "AbortMultipartUpload", multipart.abort_upload, False),
    R("DELETE", OBJECT, (), None, "DeleteObject", objects.delete_object, False),
    R("POST", OBJECT, ("uploads",), None, "CreateMultipartUpload", multipart.create_upload, False),
    R("POST", OBJECT, ("uploadId",), None, "CompleteMultipartUpload", multipart.complete_upload, False, True),
)

# Query parameters that select an S3 sub-resource (an operation of its own).
SUBRESOURCES = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "delete",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "list-type",
        "location",
        "logging",
        "metadataConfiguration",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "partNumber",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "session",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versioning",
        "versions",
        "website",
        "renameObject",
    }
)


def route(req: Request) -> Route:
    level = OBJECT if req.key else BUCKET if req.bucket else SERVICE
    present = {name for name, _, _, _ in req.query_items}
    has_copy = "x-amz-copy-source" in req.headers
    for r in ROUTES:
        if r.method != req.method or r.level != level:
            continue
        if not all(m in present for m in r.markers):
            continue
        if r.copy_source is not None and r.copy_source != has_copy:
            continue
        if (present & SUBRESOURCES) - set(r.markers):
            break
        return r
    if req.method not in ("GET", "HEAD", "PUT", "POST", "DELETE"):
        raise S3Error(
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            Method=req.method,
            ResourceType=level.upper(),
        )
    raise S3Error(
        "NotImplemented", "A header or query you provided requests an operation this server does not implement."
    )
