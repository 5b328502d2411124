"""The one place a store failure becomes an S3 error: its code, status, message and extra fields."""

from __future__ import annotations

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.store import errors as se


def s3_error(e: se.StoreError) -> S3Error:
    match e:
        case se.NoSuchBucket():
            return S3Error("NoSuchBucket", BucketName=e.bucket)
        case se.BucketExists(owned_by_caller=True):
            return S3Error("BucketAlreadyOwnedByYou", BucketName=e.bucket)
        case se.BucketExists():
            return S3Error("BucketAlreadyExists", BucketName=e.bucket)
        case se.BucketDeleteDenied():
            return S3Error(
                "AccessDenied",
                "Only an admin, or the peer that created it when it has no quota, may delete a bucket.",
                BucketName=e.bucket,
            )
        case se.BucketNotEmpty(locked=0):
            return S3Error("BucketNotEmpty", BucketName=e.bucket)
        case se.BucketNotEmpty():
            return S3Error(
                "BucketNotEmpty",
                f"The bucket you tried to delete is not empty: object lock keeps {e.locked} of its versions.",
                BucketName=e.bucket,
            )
        case se.ReservedBucket():
            return S3Error(
                "InvalidArgument", f"The coordinator's own bucket cannot have {e.what}.", BucketName=e.bucket
            )
        case se.InvalidBucketState():
            return S3Error("InvalidBucketState", f"{e.why}.", BucketName=e.bucket)
        case se.QuotaExceeded(scope="bucket"):
            return S3Error(
                "QuotaExceeded",
                f"Bucket {e.bucket} quota exceeded: quota {e.limit} bytes, "
                f"used {e.used} bytes, this write needs {e.needed} more.",
                BucketName=e.bucket,
            )
        case se.QuotaExceeded():
            return S3Error(
                "QuotaExceeded",
                f"Store size limit exceeded: max_size {e.limit} bytes, used {e.used} bytes, "
                f"this write needs {e.needed} more (bucket {e.bucket}).",
                BucketName=e.bucket,
            )
        case se.NoRoom():
            return S3Error(
                "QuotaExceeded",
                f"Bucket {e.bucket}: this upload would exceed the bucket quota or the store size limit "
                f"(room for {e.room} bytes).",
                BucketName=e.bucket,
            )
        case se.ObjectTooLarge():
            return S3Error("EntityTooLarge")
        case se.NoSuchKey():
            # no Key element: the one the store raises is a conditional write's (If-Match on no object),
            # and that answer has never carried one
            return S3Error("NoSuchKey")
        case se.NoSuchVersion():
            return S3Error("NoSuchVersion", Key=e.key, VersionId=e.version_id)
        case se.IsDeleteMarker():
            err = S3Error("MethodNotAllowed", Method="", ResourceType="DeleteMarker")
            err.headers += [("x-amz-delete-marker", "true"), ("x-amz-version-id", e.version_id)]
            return err
        case se.ObjectLocked():
            return S3Error("AccessDenied", f"Access Denied because object protected by object lock: {e.why}.")
        case se.LockNotEnabled():
            return S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration", BucketName=e.bucket)
        case se.NoSuchUpload():
            return S3Error("NoSuchUpload", UploadId=e.upload_id)
        case se.InvalidPart():
            return S3Error("InvalidPart", PartNumber=str(e.part_number), ETag=e.etag)
        case se.PreconditionFailed():
            return S3Error("PreconditionFailed", Condition=e.condition)
        case se.DiskFull():
            return S3Error("InsufficientStorage")
        case se.EncryptionUnavailable():
            # what this server answered before it offered SSE-S3, and the reason with it
            return S3Error(
                "NotImplemented",
                "Server-side encryption is not configured on this server (s3.sse_key_file): the object was not stored.",
                Header="x-amz-server-side-encryption",
            )
        case se.UpgradePending():
            return S3Error(
                "ServiceUnavailable",
                f"{e.feature} is refused until every coordinator runs this release: node {e.node} "
                f"(schema {e.release}) is older than schema {e.known}.",
            )
        case se.Unavailable():
            return S3Error("ServiceUnavailable")
        case se.WriteFailed(what="object"):
            return S3Error("InternalError", "The object could not be stored.")
        case se.WriteFailed():
            return S3Error("InternalError", "The metadata could not be committed.")
    raise TypeError(f"no S3 error for {type(e).__name__}")
