"""Requests for protections this server does not give are refused, never silently accepted.

A client that asked for a locked, KMS- or customer-key-encrypted, archived or ACL-shared object must
not believe it got one. This is the one table of such request headers: which operations it applies to and the
S3 error that answers it (S3's own answers for a feature it does not offer, and for ACLs the answer
of a bucket whose object ownership is "bucket owner enforced"). It runs at the top of each write
handler, before any body byte is read. Presigned requests carry the same headers as query
parameters; the edge folds those into `req.headers`, so one check covers both forms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request

PUT, COPY, CREATE_UPLOAD = "PutObject", "CopyObject", "CreateMultipartUpload"
UPLOAD_PART, UPLOAD_PART_COPY, CREATE_BUCKET = "UploadPart", "UploadPartCopy", "CreateBucket"
DELETE = "DeleteObject"
# a browser form upload: its form fields stand for PutObject's headers (acl is x-amz-acl, ...)
POST = "PostObject"
OBJECT_WRITES = frozenset({PUT, COPY, CREATE_UPLOAD, POST})
COPIES = frozenset({COPY, UPLOAD_PART_COPY})

# what a bucket-owner-enforced bucket still accepts: both mean "the owner has full control"
ALLOWED_ACLS = frozenset({"private", "bucket-owner-full-control"})
STANDARD = "STANDARD"
# S3's storage classes: a real one we do not offer is NotImplemented, anything else is not a class at all
KNOWN_STORAGE_CLASSES = frozenset(
    {
        "STANDARD",
        "REDUCED_REDUNDANCY",
        "STANDARD_IA",
        "ONEZONE_IA",
        "INTELLIGENT_TIERING",
        "GLACIER",
        "DEEP_ARCHIVE",
        "OUTPOSTS",
        "GLACIER_IR",
        "SNOW",
        "EXPRESS_ONEZONE",
        "FSX_OPENZFS",
    }
)


def not_implemented(header: str) -> S3Error:
    return S3Error("NotImplemented", Header=header)


def acl_not_supported(header: str) -> S3Error:
    return S3Error("AccessControlListNotSupported", Header=header)


def _always(name: str, value: str, req: Request) -> S3Error | None:
    return not_implemented(name)


def _ownership(name: str, value: str, req: Request) -> S3Error | None:
    # the other two settings (ObjectWriter, BucketOwnerPreferred) exist to make ACLs take effect
    return None if value.strip() == "BucketOwnerEnforced" else not_implemented(name)


def _storage_class(name: str, value: str, req: Request) -> S3Error | None:
    cls = value.strip()
    if cls == STANDARD:
        return None
    if cls in KNOWN_STORAGE_CLASSES:
        return not_implemented(name)
    return S3Error("InvalidStorageClass", StorageClassRequested=cls)


# SSE-S3's algorithm: served on the object writes (s3/ops/encryption.py); UploadPart and UploadPartCopy take
# the upload's encryption, and S3 refuses the header there
SSE_S3 = "AES256"
_KMS_ALGORITHMS = frozenset({"aws:kms", "aws:kms:dsse"})


def _sse(name: str, value: str, req: Request) -> S3Error | None:
    algorithm = value.strip()
    if algorithm == SSE_S3 and req.operation in OBJECT_WRITES:
        return None
    if algorithm == SSE_S3 or algorithm in _KMS_ALGORITHMS:
        return not_implemented(name)
    return S3Error("InvalidArgument", "The encryption method specified is not supported", ArgumentName=name)


def _acl(name: str, value: str, req: Request) -> S3Error | None:
    return None if value.strip() in ALLOWED_ACLS else acl_not_supported(name)


def _grant(name: str, value: str, req: Request) -> S3Error | None:
    return acl_not_supported(name)


Check = Callable[[str, str, Request], "S3Error | None"]


@dataclass(frozen=True, slots=True)
class Rule:
    header: str  # a header name, or a prefix when it ends with "-"
    operations: frozenset[str]
    check: Check

    def matches(self, name: str) -> bool:
        return name.startswith(self.header) if self.header.endswith("-") else name == self.header


RULES: tuple[Rule, ...] = (
    # object lock on a form upload: its policy would have to cover the fields (not offered; PUT does it)
    Rule("x-amz-object-lock-", frozenset({POST}), _always),
    Rule("x-amz-object-ownership", frozenset({CREATE_BUCKET}), _ownership),
    # SSE-S3 is served on object writes (AES256); SSE-KMS (the algorithm, key id, context, bucket key) and
    # SSE-C (customer-algorithm, -key, -key-md5) are not
    Rule("x-amz-server-side-encryption", OBJECT_WRITES | {UPLOAD_PART, UPLOAD_PART_COPY}, _sse),
    Rule("x-amz-server-side-encryption-", OBJECT_WRITES | {UPLOAD_PART, UPLOAD_PART_COPY}, _always),
    Rule("x-amz-copy-source-server-side-encryption-", COPIES, _always),
    # conditions of S3 Express directory buckets: a delete that ignored them could delete the wrong version
    Rule("x-amz-if-match-last-modified-time", frozenset({DELETE}), _always),
    Rule("x-amz-if-match-size", frozenset({DELETE}), _always),
    # an append (S3 Express): writing at an offset must never quietly replace the whole object
    Rule("x-amz-write-offset-bytes", frozenset({PUT}), _always),
    Rule("x-amz-storage-class", OBJECT_WRITES, _storage_class),
    Rule("x-amz-acl", OBJECT_WRITES | {CREATE_BUCKET}, _acl),
    Rule("x-amz-grant-", OBJECT_WRITES | {CREATE_BUCKET}, _grant),
)


def refuse_unsupported(req: Request) -> None:
    """Raise the S3 error for the first header asking for a protection this server does not give."""
    for name, value in req.headers.items():
        if not name.startswith("x-amz-"):
            continue
        for rule in RULES:
            if req.operation in rule.operations and rule.matches(name):
                err = rule.check(name, value, req)
                if err is not None:
                    raise err
