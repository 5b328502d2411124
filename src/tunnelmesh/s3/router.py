"""(method, level, query markers, copy-source header) -> operation. One line per operation.

S3 routes on query strings (`?uploads`, `?list-type=2`, `?delete`, `?uploadId=`), so this is a
table, not a path router. A request naming an S3 sub-resource no route handles is answered
NotImplemented by construction, never a wrong success.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops import (
    acl,
    attributes,
    bucket_policy,
    buckets,
    copy,
    cors,
    encryption,
    lifecycle,
    listing,
    lock,
    multipart,
    objects,
    post_object,
    public_access,
    tagging,
    versioning,
)
from tunnelmesh.s3.ops.common import Handler
from tunnelmesh.s3.request import Request

SERVICE, BUCKET, OBJECT = "service", "bucket", "object"


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    level: str
    name: str
    handler: Handler
    # the AWS action the request asks (s3/authz.py), on the bucket or on the object by level; None: the
    # operation asks itself (DeleteObjects per key, PostObject once its form is authenticated)
    action: str | None
    markers: tuple[str, ...] = ()  # query parameters that must be present
    copy_source: bool | None = None  # whether x-amz-copy-source must be present; None: either
    takes_body: bool = False  # a body sent to any other route is read, verified and dropped
    version_action: str | None = None  # the action asked instead when ?versionId= names a version


R = Route
# The first row that matches wins: a row with markers comes before the bare row of the same method
ROUTES: tuple[Route, ...] = (
    R("GET", SERVICE, "ListBuckets", buckets.list_buckets, "s3:ListAllMyBuckets"),
    R("GET", BUCKET, "GetBucketLocation", buckets.get_bucket_location, "s3:GetBucketLocation", markers=("location",)),
    R("GET", BUCKET, "GetBucketAcl", buckets.get_bucket_acl, "s3:GetBucketAcl", markers=("acl",)),
    R(
        "GET",
        BUCKET,
        "GetBucketVersioning",
        versioning.get_bucket_versioning,
        "s3:GetBucketVersioning",
        markers=("versioning",),
    ),
    R(
        "PUT",
        BUCKET,
        "PutBucketVersioning",
        versioning.put_bucket_versioning,
        "s3:PutBucketVersioning",
        markers=("versioning",),
        takes_body=True,
    ),
    R("GET", BUCKET, "GetBucketTagging", tagging.get_bucket_tagging, "s3:GetBucketTagging", markers=("tagging",)),
    R(
        "GET",
        BUCKET,
        "GetBucketLifecycleConfiguration",
        lifecycle.get_bucket_lifecycle,
        "s3:GetLifecycleConfiguration",
        markers=("lifecycle",),
    ),
    R(
        "PUT",
        BUCKET,
        "PutBucketLifecycleConfiguration",
        lifecycle.put_bucket_lifecycle,
        "s3:PutLifecycleConfiguration",
        markers=("lifecycle",),
        takes_body=True,
    ),
    R(
        "DELETE",
        BUCKET,
        "DeleteBucketLifecycle",
        lifecycle.delete_bucket_lifecycle,
        "s3:PutLifecycleConfiguration",
        markers=("lifecycle",),
    ),
    R("GET", BUCKET, "GetBucketCors", cors.get_bucket_cors, "s3:GetBucketCORS", markers=("cors",)),
    R("PUT", BUCKET, "PutBucketCors", cors.put_bucket_cors, "s3:PutBucketCORS", markers=("cors",), takes_body=True),
    R("DELETE", BUCKET, "DeleteBucketCors", cors.delete_bucket_cors, "s3:PutBucketCORS", markers=("cors",)),
    R(
        "GET",
        BUCKET,
        "GetBucketEncryption",
        encryption.get_bucket_encryption,
        "s3:GetEncryptionConfiguration",
        markers=("encryption",),
    ),
    R(
        "GET",
        BUCKET,
        "GetObjectLockConfiguration",
        lock.get_object_lock_configuration,
        "s3:GetBucketObjectLockConfiguration",
        markers=("object-lock",),
    ),
    R(
        "PUT",
        BUCKET,
        "PutObjectLockConfiguration",
        lock.put_object_lock_configuration,
        "s3:PutBucketObjectLockConfiguration",
        markers=("object-lock",),
        takes_body=True,
    ),
    R(
        "PUT",
        BUCKET,
        "PutBucketTagging",
        tagging.put_bucket_tagging,
        "s3:PutBucketTagging",
        markers=("tagging",),
        takes_body=True,
    ),
    R(
        "DELETE",
        BUCKET,
        "DeleteBucketTagging",
        tagging.delete_bucket_tagging,
        "s3:PutBucketTagging",
        markers=("tagging",),
    ),
    R(
        "PUT",
        BUCKET,
        "PutBucketEncryption",
        encryption.put_bucket_encryption,
        "s3:PutEncryptionConfiguration",
        markers=("encryption",),
        takes_body=True,
    ),
    R(
        "DELETE",
        BUCKET,
        "DeleteBucketEncryption",
        encryption.delete_bucket_encryption,
        "s3:PutEncryptionConfiguration",
        markers=("encryption",),
    ),
    R("PUT", BUCKET, "PutBucketAcl", acl.put_bucket_acl, "s3:PutBucketAcl", markers=("acl",), takes_body=True),
    R("GET", BUCKET, "GetBucketPolicy", bucket_policy.get_bucket_policy, "s3:GetBucketPolicy", markers=("policy",)),
    R(
        "PUT",
        BUCKET,
        "PutBucketPolicy",
        bucket_policy.put_bucket_policy,
        "s3:PutBucketPolicy",
        markers=("policy",),
        takes_body=True,
    ),
    R(
        "DELETE",
        BUCKET,
        "DeleteBucketPolicy",
        bucket_policy.delete_bucket_policy,
        "s3:DeleteBucketPolicy",
        markers=("policy",),
    ),
    R(
        "GET",
        BUCKET,
        "GetBucketPolicyStatus",
        bucket_policy.get_bucket_policy_status,
        "s3:GetBucketPolicyStatus",
        markers=("policyStatus",),
    ),
    R(
        "GET",
        BUCKET,
        "GetPublicAccessBlock",
        public_access.get_public_access_block,
        "s3:GetBucketPublicAccessBlock",
        markers=("publicAccessBlock",),
    ),
    R(
        "PUT",
        BUCKET,
        "PutPublicAccessBlock",
        public_access.put_public_access_block,
        "s3:PutBucketPublicAccessBlock",
        markers=("publicAccessBlock",),
        takes_body=True,
    ),
    R(
        "DELETE",
        BUCKET,
        "DeletePublicAccessBlock",
        public_access.delete_public_access_block,
        "s3:PutBucketPublicAccessBlock",
        markers=("publicAccessBlock",),
    ),
    R(
        "GET",
        BUCKET,
        "ListMultipartUploads",
        multipart.list_uploads,
        "s3:ListBucketMultipartUploads",
        markers=("uploads",),
    ),
    R("GET", BUCKET, "ListObjectsV2", listing.list_objects_v2, "s3:ListBucket", markers=("list-type",)),
    R(
        "GET",
        BUCKET,
        "ListObjectVersions",
        listing.list_object_versions,
        "s3:ListBucketVersions",
        markers=("versions",),
    ),
    R("GET", BUCKET, "ListObjects", listing.list_objects_v1, "s3:ListBucket"),
    R("HEAD", BUCKET, "HeadBucket", buckets.head_bucket, "s3:ListBucket"),
    R("PUT", BUCKET, "CreateBucket", buckets.create_bucket, "s3:CreateBucket", takes_body=True),
    R("DELETE", BUCKET, "DeleteBucket", buckets.delete_bucket, "s3:DeleteBucket"),
    R("POST", BUCKET, "DeleteObjects", objects.delete_objects, None, markers=("delete",), takes_body=True),
    R("POST", BUCKET, "PostObject", post_object.post_object, None, takes_body=True),
    R("GET", OBJECT, "ListParts", multipart.list_parts, "s3:ListMultipartUploadParts", markers=("uploadId",)),
    R(
        "GET",
        OBJECT,
        "GetObjectAcl",
        buckets.get_object_acl,
        "s3:GetObjectAcl",
        version_action="s3:GetObjectVersionAcl",
        markers=("acl",),
    ),
    R(
        "GET",
        OBJECT,
        "GetObjectAttributes",
        attributes.get_object_attributes,
        "s3:GetObjectAttributes",
        version_action="s3:GetObjectVersionAttributes",
        markers=("attributes",),
    ),
    R(
        "GET",
        OBJECT,
        "GetObjectTagging",
        tagging.get_object_tagging,
        "s3:GetObjectTagging",
        version_action="s3:GetObjectVersionTagging",
        markers=("tagging",),
    ),
    R(
        "PUT",
        OBJECT,
        "PutObjectTagging",
        tagging.put_object_tagging,
        "s3:PutObjectTagging",
        version_action="s3:PutObjectVersionTagging",
        markers=("tagging",),
        takes_body=True,
    ),
    R(
        "DELETE",
        OBJECT,
        "DeleteObjectTagging",
        tagging.delete_object_tagging,
        "s3:DeleteObjectTagging",
        version_action="s3:DeleteObjectVersionTagging",
        markers=("tagging",),
    ),
    R("GET", OBJECT, "GetObjectRetention", lock.get_object_retention, "s3:GetObjectRetention", markers=("retention",)),
    R(
        "PUT",
        OBJECT,
        "PutObjectRetention",
        lock.put_object_retention,
        "s3:PutObjectRetention",
        markers=("retention",),
        takes_body=True,
    ),
    R(
        "GET",
        OBJECT,
        "GetObjectLegalHold",
        lock.get_object_legal_hold,
        "s3:GetObjectLegalHold",
        markers=("legal-hold",),
    ),
    R(
        "PUT",
        OBJECT,
        "PutObjectLegalHold",
        lock.put_object_legal_hold,
        "s3:PutObjectLegalHold",
        markers=("legal-hold",),
        takes_body=True,
    ),
    R(
        "GET",
        OBJECT,
        "GetObject",
        objects.get_object,
        "s3:GetObject",
        version_action="s3:GetObjectVersion",
        markers=("partNumber",),
    ),
    R("GET", OBJECT, "GetObject", objects.get_object, "s3:GetObject", version_action="s3:GetObjectVersion"),
    R(
        "HEAD",
        OBJECT,
        "HeadObject",
        objects.head_object,
        "s3:GetObject",
        version_action="s3:GetObjectVersion",
        markers=("partNumber",),
    ),
    R("HEAD", OBJECT, "HeadObject", objects.head_object, "s3:GetObject", version_action="s3:GetObjectVersion"),
    R(
        "PUT",
        OBJECT,
        "UploadPartCopy",
        multipart.upload_part_copy,
        "s3:PutObject",
        markers=("partNumber", "uploadId"),
        copy_source=True,
    ),
    R(
        "PUT",
        OBJECT,
        "UploadPart",
        multipart.upload_part,
        "s3:PutObject",
        markers=("partNumber", "uploadId"),
        copy_source=False,
        takes_body=True,
    ),
    R("PUT", OBJECT, "CopyObject", copy.copy_object, "s3:PutObject", copy_source=True),
    R("PUT", OBJECT, "PutObject", objects.put_object, "s3:PutObject", copy_source=False, takes_body=True),
    R(
        "DELETE",
        OBJECT,
        "AbortMultipartUpload",
        multipart.abort_upload,
        "s3:AbortMultipartUpload",
        markers=("uploadId",),
    ),
    R(
        "DELETE",
        OBJECT,
        "DeleteObject",
        objects.delete_object,
        "s3:DeleteObject",
        version_action="s3:DeleteObjectVersion",
    ),
    R("POST", OBJECT, "CreateMultipartUpload", multipart.create_upload, "s3:PutObject", markers=("uploads",)),
    R(
        "POST",
        OBJECT,
        "CompleteMultipartUpload",
        multipart.complete_upload,
        "s3:PutObject",
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


# S3's operations this server does not serve, by (method, level, query markers) like ROUTES, first match wins:
# what a 501 names in the request log (docs/operations.md 1.10); anything else S3 has no name for either.
# A row with an `id` marker comes before the bare one: with an id S3 reads one configuration, without it lists.
UNSERVED: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("GET", BUCKET, ("accelerate",), "GetBucketAccelerateConfiguration"),
    ("PUT", BUCKET, ("accelerate",), "PutBucketAccelerateConfiguration"),
    ("GET", BUCKET, ("analytics", "id"), "GetBucketAnalyticsConfiguration"),
    ("GET", BUCKET, ("analytics",), "ListBucketAnalyticsConfigurations"),
    ("PUT", BUCKET, ("analytics",), "PutBucketAnalyticsConfiguration"),
    ("DELETE", BUCKET, ("analytics",), "DeleteBucketAnalyticsConfiguration"),
    ("GET", BUCKET, ("intelligent-tiering", "id"), "GetBucketIntelligentTieringConfiguration"),
    ("GET", BUCKET, ("intelligent-tiering",), "ListBucketIntelligentTieringConfigurations"),
    ("PUT", BUCKET, ("intelligent-tiering",), "PutBucketIntelligentTieringConfiguration"),
    ("DELETE", BUCKET, ("intelligent-tiering",), "DeleteBucketIntelligentTieringConfiguration"),
    ("GET", BUCKET, ("inventory", "id"), "GetBucketInventoryConfiguration"),
    ("GET", BUCKET, ("inventory",), "ListBucketInventoryConfigurations"),
    ("PUT", BUCKET, ("inventory",), "PutBucketInventoryConfiguration"),
    ("DELETE", BUCKET, ("inventory",), "DeleteBucketInventoryConfiguration"),
    ("GET", BUCKET, ("metrics", "id"), "GetBucketMetricsConfiguration"),
    ("GET", BUCKET, ("metrics",), "ListBucketMetricsConfigurations"),
    ("PUT", BUCKET, ("metrics",), "PutBucketMetricsConfiguration"),
    ("DELETE", BUCKET, ("metrics",), "DeleteBucketMetricsConfiguration"),
    ("GET", BUCKET, ("logging",), "GetBucketLogging"),
    ("PUT", BUCKET, ("logging",), "PutBucketLogging"),
    ("GET", BUCKET, ("notification",), "GetBucketNotificationConfiguration"),
    ("PUT", BUCKET, ("notification",), "PutBucketNotificationConfiguration"),
    ("GET", BUCKET, ("ownershipControls",), "GetBucketOwnershipControls"),
    ("PUT", BUCKET, ("ownershipControls",), "PutBucketOwnershipControls"),
    ("DELETE", BUCKET, ("ownershipControls",), "DeleteBucketOwnershipControls"),
    ("GET", BUCKET, ("replication",), "GetBucketReplication"),
    ("PUT", BUCKET, ("replication",), "PutBucketReplication"),
    ("DELETE", BUCKET, ("replication",), "DeleteBucketReplication"),
    ("GET", BUCKET, ("requestPayment",), "GetBucketRequestPayment"),
    ("PUT", BUCKET, ("requestPayment",), "PutBucketRequestPayment"),
    ("GET", BUCKET, ("website",), "GetBucketWebsite"),
    ("PUT", BUCKET, ("website",), "PutBucketWebsite"),
    ("DELETE", BUCKET, ("website",), "DeleteBucketWebsite"),
    ("GET", BUCKET, ("metadataConfiguration",), "GetBucketMetadataConfiguration"),
    ("POST", BUCKET, ("metadataConfiguration",), "CreateBucketMetadataConfiguration"),
    ("DELETE", BUCKET, ("metadataConfiguration",), "DeleteBucketMetadataConfiguration"),
    ("GET", BUCKET, ("session",), "CreateSession"),
    ("PUT", OBJECT, ("acl",), "PutObjectAcl"),
    ("POST", OBJECT, ("restore",), "RestoreObject"),
    ("POST", OBJECT, ("select",), "SelectObjectContent"),
    ("GET", OBJECT, ("torrent",), "GetObjectTorrent"),
    ("PUT", OBJECT, ("renameObject",), "RenameObject"),
)


def unserved(method: str, level: str, present: set[str]) -> str:
    """The S3 name of an operation we do not serve, or `unknown` when S3 has none either."""
    for m, lvl, markers, name in UNSERVED:
        if m == method and lvl == level and all(marker in present for marker in markers):
            return name
    return "unknown"


# the route of a request with no query parameters, by (method, level, copy source): most requests (a plain GET,
# HEAD or PUT of an object) are one lookup instead of a scan of ROUTES
_PLAIN: dict[tuple[str, str, bool], Route] = {}


def route(req: Request) -> Route:
    level = OBJECT if req.key else BUCKET if req.bucket else SERVICE
    has_copy = "x-amz-copy-source" in req.headers
    if not req.query_items:
        found = _PLAIN.get((req.method, level, has_copy))
        if found is not None:
            return found
    present = {name for name, _, _, _ in req.query_items}
    for r in ROUTES:
        if r.method != req.method or r.level != level:
            continue
        if not all(m in present for m in r.markers):
            continue
        if r.copy_source is not None and r.copy_source != has_copy:
            continue
        if (present & SUBRESOURCES) - set(r.markers):
            break
        if not present:
            _PLAIN[(req.method, level, has_copy)] = r  # methods here are routed ones: a bounded set
        return r
    req.operation = unserved(req.method, level, present)
    if req.method not in ("GET", "HEAD", "PUT", "POST", "DELETE"):
        raise S3Error("MethodNotAllowed", Method=req.method, ResourceType=level.upper())
    raise S3Error(
        "NotImplemented", "A header or query you provided requests an operation this server does not implement."
    )
