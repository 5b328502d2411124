"""The one place an admin request's failure becomes its JSON answer: (status, "error" code, message).

Store failures keep the S3 code and message the S3 API gives them (the CLI shows both the same way);
the coordinator's own failures are mapped here; the admin edge's own refusals are S3Errors already.
"""

from __future__ import annotations

from tunnelmesh.coordinator import errors as ce
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.store_errors import s3_error
from tunnelmesh.store.errors import StoreError

AdminFailure = S3Error | StoreError | ce.CoordinatorError


def admin_error(e: AdminFailure) -> tuple[int, str, str]:
    if isinstance(e, StoreError):
        e = s3_error(e)
    if isinstance(e, S3Error):
        return e.status, e.code, e.message
    match e:
        case ce.NoSuchPeer():
            return 404, "NoSuchPeer", f"No peer {e.peer_id}."
        case ce.NoSuchAccessKey():
            return 404, "NoSuchAccessKey", f"No access key {e.key_id}."
        case ce.NoSuchShare():
            return 404, "NoSuchShare", f"no share {e.name}"
        case ce.NoBucketToShare():
            return 404, "NoSuchBucket", f"no bucket {e.bucket}"
        case ce.InvalidInput():
            return 400, "InvalidArgument", e.why
        case ce.InvalidArchive():
            return 400, "InvalidArchive", f"The backup archive was refused: {e.why}. Nothing was changed."
        case ce.CorruptRecord():  # a fault in stored data, not in the request (admins may see which)
            return 500, "CorruptRecord", f"{e} (restore it from a backup, or delete it)."
        case ce.NoSuchGrant():
            return 404, "NoSuchGrant", f"No grant of bucket {e.bucket} matched."
        case ce.NoSuchGroup():
            return 404, "NoSuchGroup", f"No group {e.name}."
        case ce.GroupExists():
            return 409, "GroupAlreadyExists", f"Group {e.name} exists already."
        case ce.NotAMember():
            return 404, "NoSuchGroupMember", f"{e.peer_id} is not a member of group {e.group}."
        case ce.PublicAccessBlocked():
            return (
                403,
                "AccessDenied",
                (
                    f"Bucket {e.bucket}'s public access block (BlockPublicPolicy) refuses grants to anyone; "
                    "lift it first (network set default_public_access_block off, or the bucket's own block)."
                ),
            )
        case ce.Conflict():
            return 409, "ConditionalRequestConflict", f"{e.key} kept changing; try again."
    raise TypeError(f"no admin answer for {type(e).__name__}")
