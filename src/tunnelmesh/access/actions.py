"""The action catalogue, wildcard expansion (once, at compile time) and the role sets of section 2.3."""

from __future__ import annotations

from enum import Enum

from tunnelmesh.access.glob import match


class Kind(Enum):
    SERVICE = "service"  # no bucket: ListAllMyBuckets
    BUCKET = "bucket"  # resource arn:aws:s3:::B
    OBJECT = "object"  # resource arn:aws:s3:::B/K


class UnknownAction(ValueError):
    """An action (or wildcard) naming nothing in the catalogue."""


_OBJECT = (
    "GetObject GetObjectVersion GetObjectAttributes GetObjectVersionAttributes GetObjectTagging "
    "GetObjectVersionTagging GetObjectAcl GetObjectVersionAcl GetObjectRetention GetObjectLegalHold "
    "PutObject PutObjectAcl PutObjectVersionAcl DeleteObject DeleteObjectVersion AbortMultipartUpload "
    "ListMultipartUploadParts PutObjectTagging PutObjectVersionTagging DeleteObjectTagging "
    "DeleteObjectVersionTagging PutObjectRetention PutObjectLegalHold BypassGovernanceRetention"
)
_BUCKET = (
    "CreateBucket DeleteBucket ListBucket ListBucketVersions ListBucketMultipartUploads GetBucketLocation "
    "GetBucketAcl PutBucketAcl GetBucketVersioning PutBucketVersioning GetBucketTagging PutBucketTagging "
    "GetLifecycleConfiguration PutLifecycleConfiguration GetEncryptionConfiguration PutEncryptionConfiguration "
    "GetBucketObjectLockConfiguration PutBucketObjectLockConfiguration GetBucketCORS PutBucketCORS "
    "GetBucketPolicy PutBucketPolicy DeleteBucketPolicy GetBucketPolicyStatus GetBucketPublicAccessBlock "
    "PutBucketPublicAccessBlock"
)

ACTIONS: dict[str, Kind] = {
    "s3:ListAllMyBuckets": Kind.SERVICE,
    **{f"s3:{a}": Kind.BUCKET for a in _BUCKET.split()},
    **{f"s3:{a}": Kind.OBJECT for a in _OBJECT.split()},
}
# IAM action names are case-insensitive; statements keep the catalogue's spelling
_BY_LOWER: dict[str, str] = {a.lower(): a for a in ACTIONS}


def expand(pattern: str) -> frozenset[str]:
    """The catalogue actions `pattern` names (`*`, `s3:*`, `s3:Get*`, `s3:GetObject`); never empty."""
    low = pattern.lower()
    if low == "*":
        return frozenset(ACTIONS)
    if not low.startswith("s3:"):
        raise UnknownAction(pattern)
    if "*" not in low and "?" not in low:
        if low not in _BY_LOWER:
            raise UnknownAction(pattern)
        return frozenset({_BY_LOWER[low]})
    found = frozenset(name for lower, name in _BY_LOWER.items() if match(low, lower))
    if not found:
        raise UnknownAction(pattern)
    return found


def _names(text: str) -> frozenset[str]:
    return frozenset(f"s3:{a}" for a in text.split())


_READ = _names(
    "GetObject GetObjectVersion GetObjectAttributes GetObjectVersionAttributes GetObjectTagging "
    "GetObjectVersionTagging GetObjectAcl GetObjectVersionAcl GetObjectRetention GetObjectLegalHold ListBucket "
    "ListBucketVersions ListBucketMultipartUploads ListMultipartUploadParts GetBucketLocation GetBucketAcl "
    "GetBucketVersioning GetBucketTagging GetLifecycleConfiguration GetEncryptionConfiguration "
    "GetBucketObjectLockConfiguration GetBucketCORS"
)
# no DeleteObjectVersion: a write grant adds delete markers but never destroys history (issue 14)
_WRITE = _READ | _names(
    "PutObject DeleteObject AbortMultipartUpload PutObjectTagging PutObjectVersionTagging DeleteObjectTagging "
    "DeleteObjectVersionTagging"
)
_ADMIN = _WRITE | _names(
    "DeleteObjectVersion PutObjectRetention PutObjectLegalHold PutBucketVersioning PutBucketTagging "
    "PutLifecycleConfiguration PutEncryptionConfiguration PutBucketObjectLockConfiguration PutBucketCORS "
    "GetBucketPolicy PutBucketPolicy DeleteBucketPolicy GetBucketPolicyStatus GetBucketPublicAccessBlock "
    "PutBucketPublicAccessBlock"
)
ROLES: dict[str, frozenset[str]] = {"read": _READ, "write": _WRITE, "admin": _ADMIN}

# what the owner and mesh admins keep even under a Deny, so nobody locks a bucket for good (section 1, step 2)
POLICY_ACTIONS: frozenset[str] = _names("GetBucketPolicy PutBucketPolicy DeleteBucketPolicy")
BYPASS = "s3:BypassGovernanceRetention"

assert all(a in ACTIONS for role in ROLES.values() for a in role), "a role names an action the catalogue lacks"
