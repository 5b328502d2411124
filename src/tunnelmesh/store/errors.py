"""The store's own failures: facts about buckets, objects and uploads, in no protocol's words.

Each edge maps them once (`s3/store_errors.py` for the S3 API, `admin/errors.py` for the admin
API), so the store knows nothing of status codes, error codes or message wording.
"""

from __future__ import annotations

from typing import Literal


class StoreError(Exception):
    """A request the store refuses or cannot carry out; nothing it would have changed has changed."""


class NoSuchBucket(StoreError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"no bucket {bucket}")
        self.bucket = bucket


class BucketExists(StoreError):
    """The name is taken, by the peer asking (`owned_by_caller`) or by another."""

    def __init__(self, bucket: str, owned_by_caller: bool) -> None:
        super().__init__(f"bucket {bucket} exists")
        self.bucket = bucket
        self.owned_by_caller = owned_by_caller


class BucketDeleteDenied(StoreError):
    """A non-admin peer may delete only a bucket it created that has no quota."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} may not be deleted by this peer")
        self.bucket = bucket


class BucketNotEmpty(StoreError):
    """`locked`: how many versions object lock kept (a forced delete removes every other one)."""

    def __init__(self, bucket: str, locked: int = 0) -> None:
        super().__init__(f"bucket {bucket} is not empty")
        self.bucket = bucket
        self.locked = locked


class ReservedBucket(StoreError):
    """The coordinator's own bucket does not take the change asked (`what`: a quota, versioning): its
    records are rebuilt, backed up and restored as a whole, one version each."""

    def __init__(self, bucket: str, what: str = "a quota") -> None:
        super().__init__(f"bucket {bucket} is reserved: it cannot have {what}")
        self.bucket = bucket
        self.what = what


class InvalidBucketState(StoreError):
    """The bucket's configuration forbids the change (`why`): versioning of an object-lock bucket cannot be
    suspended."""

    def __init__(self, bucket: str, why: str) -> None:
        super().__init__(f"bucket {bucket}: {why}")
        self.bucket = bucket
        self.why = why


class QuotaExceeded(StoreError):
    """A write of `needed` more bytes refused: `used` + `needed` would pass `limit`, the bucket's
    quota (`scope` "bucket") or the store's max_size (`scope` "store")."""

    def __init__(self, scope: Literal["bucket", "store"], bucket: str, limit: int, used: int, needed: int) -> None:
        super().__init__(f"{scope} limit {limit} exceeded by a write of {needed} to {bucket}")
        self.scope = scope
        self.bucket = bucket
        self.limit = limit
        self.used = used
        self.needed = needed


class NoRoom(StoreError):
    """A body of undeclared length streamed past the `room` its bucket had left (under its quota
    and the store's max_size) when it started."""

    def __init__(self, bucket: str, room: int) -> None:
        super().__init__(f"no room past {room} bytes in {bucket}")
        self.bucket = bucket
        self.room = room


class ObjectTooLarge(StoreError):
    """A body streamed past the `limit` its writer set."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body past {limit} bytes")
        self.limit = limit


class NoSuchKey(StoreError):
    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"no object {bucket}/{key}")
        self.bucket = bucket
        self.key = key


class NoSuchVersion(StoreError):
    def __init__(self, bucket: str, key: str, version_id: str) -> None:
        super().__init__(f"no version {version_id} of {bucket}/{key}")
        self.bucket = bucket
        self.key = key
        self.version_id = version_id


class IsDeleteMarker(StoreError):
    """The version asked for is a delete marker, which has no content, tags or lock to read or change."""

    def __init__(self, bucket: str, key: str, version_id: str) -> None:
        super().__init__(f"version {version_id} of {bucket}/{key} is a delete marker")
        self.bucket = bucket
        self.key = key
        self.version_id = version_id


class ObjectLocked(StoreError):
    """The version may not be removed, or its retention shortened or its mode changed, by this request: `why`
    says what holds it (a legal hold, a retention date) (docs/data-protection.md section 5)."""

    def __init__(self, bucket: str, key: str, version_id: str, why: str) -> None:
        super().__init__(f"version {version_id} of {bucket}/{key} is locked: {why}")
        self.bucket = bucket
        self.key = key
        self.version_id = version_id
        self.why = why


class LockNotEnabled(StoreError):
    """A retention or legal hold asked for in a bucket created without object lock."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} has no object lock configuration")
        self.bucket = bucket


class NoSuchUpload(StoreError):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no upload {upload_id}")
        self.upload_id = upload_id


class InvalidPart(StoreError):
    """Part `part_number` is gone, or is no longer the one (`etag`) the object was built from."""

    def __init__(self, part_number: int, etag: str) -> None:
        super().__init__(f"part {part_number} ({etag}) is not there")
        self.part_number = part_number
        self.etag = etag


class PreconditionFailed(StoreError):
    """The write's `condition` did not hold against the object as it is at the commit."""

    def __init__(self, condition: Literal["If-None-Match", "If-Match"]) -> None:
        super().__init__(f"{condition} did not hold")
        self.condition = condition


class DiskFull(StoreError):
    def __init__(self) -> None:
        super().__init__("the disk is full")


class WriteFailed(StoreError):
    """A write to the disk failed for another reason than a full disk (the cause is chained)."""

    def __init__(self, what: Literal["object", "metadata"]) -> None:
        super().__init__(f"the {what} could not be written")
        self.what = what


class Unavailable(StoreError):
    """The metadata database could not be reached, or did not answer in time (the cause is chained):
    nothing was read or changed by this request (a write cut off waiting may still commit; the
    client retries as after any failure). Service resumes by itself once the database answers."""

    def __init__(self) -> None:
        super().__init__("the metadata database is unavailable")


class CommitUnknown(Unavailable):
    """The connection was lost while the database committed: the write may or may not have taken effect.
    Its new blobs are kept (a record might name them; an orphan is swept later, a lost byte never
    comes back), and the client sees the same 503 as for any outage and retries."""


class WriterRetired(Unavailable):
    """This process's writer tag was retired (its node was silent past s3.node_timeout, and another node
    swept its blobs): no write naming a blob of it may commit, since the sweep may have deleted it. The
    process must stop and be started again with a new tag; the client retries as after any outage."""

    def __init__(self) -> None:
        StoreError.__init__(self, "this process's writer tag was retired by another coordinator")


class DamagedObject(Exception):
    """An object whose stored bytes are damaged (a blob missing or of the wrong size): a fault of the
    store's own data, not a refusal of the request, so no StoreError; the edge answers it as an
    internal error, and the store has logged it for the operator."""

    def __init__(self, bucket: str, key: str, problem: str) -> None:
        super().__init__(f"{bucket}/{key}: {problem}")
        self.bucket = bucket
        self.key = key
        self.problem = problem


class EncryptionUnavailable(StoreError):
    """An encrypted write (SSE-S3) on a coordinator with no key file (s3.sse_key_file): refused, never
    stored in plaintext."""

    def __init__(self) -> None:
        super().__init__("server-side encryption needs a key file (s3.sse_key_file)")


class UpgradePending(StoreError):
    """A write of a feature an older release would undo (its overwrite keeps columns it does not know,
    docs/scale-out.md "Upgrading a mesh"), refused while `node`, live, beats with release `release` (None:
    from before releases were stamped) older than this code's `known`."""

    def __init__(self, feature: str, node: str, release: int | None, known: int) -> None:
        super().__init__(f"{feature} waits for node {node} (schema {release}) to run schema {known}")
        self.feature = feature
        self.node = node
        self.release = release
        self.known = known
