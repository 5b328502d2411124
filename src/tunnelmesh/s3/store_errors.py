"""The one place a store failure becomes an S3 error: its code, status, message and extra fields."""

from __future__ import annotations

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.store import errors as se

PRECONDITION_FAILED = "At least one of the pre-conditions you specified did not hold"
NO_SUCH_KEY = "The specified key does not exist."


def s3_error(e: se.StoreError) -> S3Error:
    match e:
        case se.NoSuchBucket():
            return S3Error("NoSuchBucket", "The specified bucket does not exist", BucketName=e.bucket)
        case se.BucketExists(owned_by_caller=True):
            return S3Error(
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own it.",
                BucketName=e.bucket,
            )
        case se.BucketExists():
            return S3Error(
                "BucketAlreadyExists",
                "The requested bucket name is not available. Please select a different name and try again.",
                BucketName=e.bucket,
            )
        case se.BucketDeleteDenied():
            return S3Error(
                "AccessDenied",
                "Only an admin, or the peer that created it when it has no quota, may delete a bucket.",
                BucketName=e.bucket,
            )
        case se.BucketNotEmpty():
            return S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty", BucketName=e.bucket)
        case se.ReservedBucket():
            return S3Error("InvalidArgument", "The coordinator's own bucket cannot have a quota.", BucketName=e.bucket)
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
            return S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
        case se.NoSuchKey():
            # no Key element: the one the store raises is a conditional write's (If-Match on no object),
            # and that answer has never carried one
            return S3Error("NoSuchKey", NO_SUCH_KEY)
        case se.NoSuchUpload():
            return S3Error(
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the upload "
                "may have been aborted or completed.",
                UploadId=e.upload_id,
            )
        case se.InvalidPart():
            return S3Error(
                "InvalidPart",
                "One or more of the specified parts could not be found. The part may not have been "
                "uploaded, or the specified entity tag may not match the part's entity tag.",
                PartNumber=str(e.part_number),
                ETag=e.etag,
            )
        case se.PreconditionFailed():
            return S3Error("PreconditionFailed", PRECONDITION_FAILED, Condition=e.condition)
        case se.DiskFull():
            return S3Error("InsufficientStorage", "The coordinator's disk is full.")
        case se.WriteFailed(what="object"):
            return S3Error("InternalError", "The object could not be stored.")
        case se.WriteFailed():
            return S3Error("InternalError", "The metadata could not be committed.")
    raise TypeError(f"no S3 error for {type(e).__name__}")
