"""(method, level, query markers, copy-source header) -> operation. One line per operation.

S3 routes on query strings (`?uploads`, `?list-type=2`, `?delete`, `?uploadId=`), so this is a
table, not a path router. A request naming an S3 sub-resource no route handles is answered
NotImplemented by construction, never a wrong success.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops import (
    attributes,
    buckets,
    copy,
    encryption,
    lifecycle,
    listing,
    lock,
    multipart,
    objects,
    post_object,
    tagging,
    versioning,
)
from tunnelmesh.s3.ops.common import Handler
from tunnelmesh.s3.policy import Access
from tunnelmesh.s3.request import Request

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    level: str
    name: str
    handler: Handler
    access: Access
    markers: tuple[str, ...] = ()  # query parameters that must be present
    copy_source: bool | None = None  # whether x-amz-copy-source must be present; None: either
    takes_body: bool = False  # a body sent to any other route is read, verified and dropped


R = Route
READ, WRITE, OWNER = Access.READ, Access.WRITE, Access.OWNER
# The first row that matches wins: a row with markers comes before the bare row of the same method
ROUTES: tuple[Route, ...] = (
    R("GET", SERVICE, "ListBuckets", buckets.list_buckets, READ),
    R("GET", BUCKET, "GetBucketLocation", buckets.get_bucket_location, READ, markers=("location",)),
    R("GET", BUCKET, "GetBucketAcl", buckets.get_bucket_acl, READ, markers=("acl",)),
    R("GET", BUCKET, "GetBucketVersioning", versioning.get_bucket_versioning, READ, markers=("versioning",)),
    R(
        "PUT",
        BUCKET,
        "PutBucketVersioning",
        versioning.put_bucket_versioning,
        OWNER,
        markers=("versioning",),
        takes_body=True,
    ),
    R("GET", BUCKET, "GetBucketTagging", tagging.get_bucket_tagging, READ, markers=("tagging",)),
    R("GET", BUCKET, "GetBucketLifecycleConfiguration", lifecycle.get_bucket_lifecycle, READ, markers=("lifecycle",)),
    R(
        "PUT",
        BUCKET,
        "PutBucketLifecycleConfiguration",
        lifecycle.put_bucket_lifecycle,
        OWNER,
        markers=("lifecycle",),
        takes_body=True,
    ),
    R("DELETE", BUCKET, "DeleteBucketLifecycle", lifecycle.delete_bucket_lifecycle, OWNER, markers=("lifecycle",)),
    R("GET", BUCKET, "GetBucketEncryption", encryption.get_bucket_encryption, READ, markers=("encryption",)),
    R("GET", BUCKET, "GetObjectLockConfiguration", lock.get_object_lock_configuration, READ, markers=("object-lock",)),
    R(
        "PUT",
        BUCKET,
        "PutObjectLockConfiguration",
        lock.put_object_lock_configuration,
        OWNER,
        markers=("object-lock",),
        takes_body=True,
    ),
    R("PUT", BUCKET, "PutBucketTagging", tagging.put_bucket_tagging, OWNER, markers=("tagging",), takes_body=True),
    R("DELETE", BUCKET, "DeleteBucketTagging", tagging.delete_bucket_tagging, OWNER, markers=("tagging",)),
    R(
        "PUT",
        BUCKET,
        "PutBucketEncryption",
        encryption.put_bucket_encryption,
        OWNER,
        markers=("encryption",),
        takes_body=True,
    ),
    R("DELETE", BUCKET, "DeleteBucketEncryption", encryption.delete_bucket_encryption, OWNER, markers=("encryption",)),
    R("GET", BUCKET, "ListMultipartUploads", multipart.list_uploads, READ, markers=("uploads",)),
    R("GET", BUCKET, "ListObjectsV2", listing.list_objects_v2, READ, markers=("list-type",)),
    R("GET", BUCKET, "ListObjectVersions", listing.list_object_versions, READ, markers=("versions",)),
    R("GET", BUCKET, "ListObjects", listing.list_objects_v1, READ),
    R("HEAD", BUCKET, "HeadBucket", buckets.head_bucket, READ),
    R("PUT", BUCKET, "CreateBucket", buckets.create_bucket, OWNER, takes_body=True),
    R("DELETE", BUCKET, "DeleteBucket", buckets.delete_bucket, OWNER),
    R("POST", BUCKET, "DeleteObjects", objects.delete_objects, WRITE, markers=("delete",), takes_body=True),
    R("POST", BUCKET, "PostObject", post_object.post_object, WRITE, takes_body=True),
    R("GET", OBJECT, "ListParts", multipart.list_parts, READ, markers=("uploadId",)),
    R("GET", OBJECT, "GetObjectAcl", buckets.get_object_acl, READ, markers=("acl",)),
    R("GET", OBJECT, "GetObjectAttributes", attributes.get_object_attributes, READ, markers=("attributes",)),
    R("GET", OBJECT, "GetObjectTagging", tagging.get_object_tagging, READ, markers=("tagging",)),
    R("PUT", OBJECT, "PutObjectTagging", tagging.put_object_tagging, WRITE, markers=("tagging",), takes_body=True),
    R("DELETE", OBJECT, "DeleteObjectTagging", tagging.delete_object_tagging, WRITE, markers=("tagging",)),
    R("GET", OBJECT, "GetObjectRetention", lock.get_object_retention, READ, markers=("retention",)),
    R("PUT", OBJECT, "PutObjectRetention", lock.put_object_retention, OWNER, markers=("retention",), takes_body=True),
    R("GET", OBJECT, "GetObjectLegalHold", lock.get_object_legal_hold, READ, markers=("legal-hold",)),
    R("PUT", OBJECT, "PutObjectLegalHold", lock.put_object_legal_hold, OWNER, markers=("legal-hold",), takes_body=True),
    R("GET", OBJECT, "GetObject", objects.get_object, READ, markers=("partNumber",)),
    R("GET", OBJECT, "GetObject", objects.get_object, READ),
    R("HEAD", OBJECT, "HeadObject", objects.head_object, READ, markers=("partNumber",)),
    R("HEAD", OBJECT, "HeadObject", objects.head_object, READ),
    R(
        "PUT",
        OBJECT,
        "UploadPartCopy",
        multipart.upload_part_copy,
        WRITE,
        markers=("partNumber", "uploadId"),
        copy_source=True,
    ),
    R(
        "PUT",
        OBJECT,
        "UploadPart",
        multipart.upload_part,
        WRITE,
        markers=("partNumber", "uploadId"),
        copy_source=False,
        takes_body=True,
    ),
    R("PUT", OBJECT, "CopyObject", copy.copy_object, WRITE, copy_source=True),
    R("PUT", OBJECT, "PutObject", objects.put_object, WRITE, copy_source=False, takes_body=True),
    R("DELETE", OBJECT, "AbortMultipartUpload", multipart.abort_upload, WRITE, markers=("uploadId",)),
    R("DELETE", OBJECT, "DeleteObject", objects.delete_object, WRITE),
    R("POST", OBJECT, "CreateMultipartUpload", multipart.create_upload, WRITE, markers=("uploads",)),
    R(
        "POST",
        OBJECT,
        "CompleteMultipartUpload",
        multipart.complete_upload,
        WRITE,
        markers=("uploadId",),
        takes_body=True,
    ),
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
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType=level.upper())
    raise S3Error(
        "NotImplemented", "A header or query you provided requests an operation this server does not implement."
    )
