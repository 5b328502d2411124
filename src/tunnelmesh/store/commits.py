"""What every write does, once, for every metadata backend: each function runs inside one transaction
(`MetaTx`, store/metadata.py) and decides there, where nothing can change under it, whether the write
may happen (existence, preconditions, quota admission) and what follows from it (usage counters, the
blobs that nothing names any more).

A write returns a WriteResult: its answer, and the blobs it freed, which the engine queues in the same
transaction (store/engine.py). The functions are deterministic over what they read from the
transaction and take the time as an argument, so a backend may run one again (store/metadata.py).
"""

from __future__ import annotations

import dataclasses

from tunnelmesh.store.errors import (
    BucketDeleteDenied,
    BucketExists,
    BucketNotEmpty,
    InvalidPart,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    PreconditionFailed,
    QuotaExceeded,
    ReservedBucket,
)
from tunnelmesh.store.metadata import MetaReads, MetaTx
from tunnelmesh.store.records import (
    SYSTEM_BUCKET,
    Bucket,
    CompletedUpload,
    ObjectRecord,
    Part,
    Segment,
    Upload,
    WriteConditions,
    WriteResult,
)

# how long a Complete is remembered, so that a retry of it answers the same
COMPLETED_KEPT_SECONDS = 3600.0

# ---- quota admission: a pure rule over explicit inputs ---------------------------------------


def admit(bucket: Bucket, delta: int, store_used: int, max_size: int) -> None:
    """Refuse a write that adds `delta` bytes past the bucket quota or the store limit (`store_used`:
    what counts against max_size now). The coordinator's own bucket is never refused (records.SYSTEM_BUCKET)."""
    if delta <= 0 or bucket.name == SYSTEM_BUCKET:
        return
    b_used = bucket.used + bucket.mpu_used
    if bucket.quota is not None and b_used + delta > bucket.quota:
        raise QuotaExceeded("bucket", bucket.name, bucket.quota, b_used, delta)
    if store_used + delta > max_size:
        raise QuotaExceeded("store", bucket.name, max_size, store_used, delta)


def room(bucket: Bucket, store_used: int, max_size: int) -> int:
    """How many more bytes the bucket may take now, under its quota and the store limit."""
    if bucket.name == SYSTEM_BUCKET:
        return max_size  # never refused for space; its records are far smaller anyway
    left = max_size - store_used
    if bucket.quota is not None:
        left = min(left, bucket.quota - bucket.used - bucket.mpu_used)
    return max(left, 0)


def _admit_locked(tx: MetaTx, bucket: Bucket, delta: int, max_size: int) -> None:
    """`admit` under the transaction's locks: taken only when the write grows the store (a shrinking or
    same-size write, and the coordinator's own bucket, never wait for the store lock)."""
    if delta > 0 and bucket.name != SYSTEM_BUCKET:
        admit(bucket, delta, tx.lock_store(), max_size)


def _locked_bucket(tx: MetaTx, name: str) -> Bucket:
    b = tx.lock_bucket(name)
    if b is None:
        raise NoSuchBucket(name)
    return b


def require_bucket(r: MetaReads, name: str) -> Bucket:
    b = r.bucket(name)
    if b is None:
        raise NoSuchBucket(name)
    return b


def get_upload(r: MetaReads, bucket: str, key: str, upload_id: str) -> Upload | None:
    up = r.upload(upload_id)
    return up if up is not None and (up.bucket, up.key) == (bucket, key) else None


def require_upload(r: MetaReads, bucket: str, key: str, upload_id: str) -> Upload:
    up = get_upload(r, bucket, key, upload_id)
    if up is None:
        require_bucket(r, bucket)  # NoSuchBucket comes first
        raise NoSuchUpload(upload_id)
    return up


def check_write_conditions(cond: WriteConditions, bucket: str, key: str, current_etag: str | None) -> None:
    if cond.if_none_match_any and current_etag is not None:
        raise PreconditionFailed("If-None-Match")
    if cond.if_match is not None:
        if current_etag is None:
            raise NoSuchKey(bucket, key)
        if cond.if_match != "*" and cond.if_match != current_etag:
            raise PreconditionFailed("If-Match")


# ---- buckets ---------------------------------------------------------------------------------


def create_bucket(tx: MetaTx, name: str, owner: str, region: str, now: float) -> WriteResult[None]:
    old = tx.lock_bucket(name)
    if old is not None:
        raise BucketExists(name, owned_by_caller=old.owner == owner)
    tx.insert_bucket(Bucket(name, owner, now, region, None, 0, 0, 0))
    return WriteResult(None)


def delete_bucket(tx: MetaTx, name: str, peer: str | None) -> WriteResult[None]:
    """`peer`: a non-admin asking; it may delete only a bucket it created that has no quota (deleting
    and re-creating a bucket would otherwise drop the quota an admin set on it).

    Pending multipart uploads do not keep a bucket alive: they are aborted with it, as on AWS (tools
    that empty a bucket by listing its objects never see them); their part blobs are freed."""
    b = _locked_bucket(tx, name)
    if peer is not None and (b.owner != peer or b.quota is not None):
        raise BucketDeleteDenied(name)
    if next(tx.scan_objects(name, "", True, None, 1), None) is not None:
        raise BucketNotEmpty(name)
    freed: list[str] = []
    while uploads := tx.list_uploads(name, "", "", "", 1000):
        for up in uploads:
            freed += [p.blob for p in tx.delete_upload(up.upload_id)]
    tx.forget_completed(bucket=name)
    tx.delete_bucket(name)
    return WriteResult(None, freed)


def set_quota(tx: MetaTx, name: str, quota: int | None) -> WriteResult[None]:
    if name == SYSTEM_BUCKET:
        raise ReservedBucket(name)
    _locked_bucket(tx, name)
    tx.set_quota(name, quota)
    return WriteResult(None)


# ---- objects ---------------------------------------------------------------------------------


def put_object(tx: MetaTx, rec: ObjectRecord, cond: WriteConditions, max_size: int) -> WriteResult[None]:
    bucket = _locked_bucket(tx, rec.bucket)
    old = tx.object_ref(rec.bucket, rec.key)
    check_write_conditions(cond, rec.bucket, rec.key, old.etag if old else None)
    old_size = old.size if old else 0
    _admit_locked(tx, bucket, rec.size - old_size, max_size)
    tx.put_object(rec)
    tx.add_usage(rec.bucket, used=rec.size - old_size, objects=0 if old else 1)
    return WriteResult(None, old.blobs if old else [])


def set_object_tags(tx: MetaTx, bucket: str, key: str, tags: dict[str, str] | None) -> WriteResult[None]:
    """Replace (None: remove) the tag set of the key's current version. Under the bucket lock, as every write
    of the key, so it cannot land on a version an overwrite is replacing; no counter changes."""
    _locked_bucket(tx, bucket)
    ref = tx.object_ref(bucket, key)
    if ref is None or not tx.set_version_attrs(bucket, key, ref.seq, True, tags=tags):
        raise NoSuchKey(bucket, key)
    return WriteResult(None)


def set_bucket_tags(tx: MetaTx, name: str, tags: str | None) -> WriteResult[None]:
    """Replace (None: remove) the bucket's tag set, JSON text."""
    _locked_bucket(tx, name)
    tx.set_bucket_attr(name, "tags", tags)
    return WriteResult(None)


def delete_objects(
    tx: MetaTx, bucket: str, keys: list[str], if_match: dict[str, str] | None = None
) -> WriteResult[dict[str, NoSuchKey | PreconditionFailed]]:
    """Delete the keys that exist (absent keys are fine). A key in `if_match` is deleted only if its
    current ETag is that one (`*`: if it exists); otherwise it is left alone, and the answer says why
    (PreconditionFailed, or NoSuchKey when it does not exist)."""
    _locked_bucket(tx, bucket)
    refused: dict[str, NoSuchKey | PreconditionFailed] = {}
    freed: list[str] = []
    size = count = 0
    for key in keys:
        if if_match is not None and key in if_match:
            cur = tx.object_ref(bucket, key)
            if cur is None or if_match[key] not in ("*", cur.etag):
                refused[key] = NoSuchKey(bucket, key) if cur is None else PreconditionFailed("If-Match")
                continue
        gone = tx.delete_object(bucket, key)
        if gone is not None:
            size += gone.size
            count += 1
            freed += gone.blobs
    if count:
        tx.add_usage(bucket, used=-size, objects=-count)
    return WriteResult(refused, freed)


def delete_object_version(tx: MetaTx, bucket: str, key: str, mtime: float, blobs: list[str]) -> WriteResult[None]:
    """Delete the object only if it is still the version written at `mtime` on `blobs` (what a scrub
    found rotten): an overwrite since then is a new, acknowledged object and stays. An ETag would not
    do: re-uploading the same bytes gives the same ETag."""
    cur = tx.object_ref(bucket, key)
    if cur is None or cur.mtime != mtime or cur.blobs != blobs:
        return WriteResult(None)
    return WriteResult(None, delete_objects(tx, bucket, [key]).freed)


def replace_bucket(tx: MetaTx, bucket: str, records: list[ObjectRecord]) -> WriteResult[None]:
    """Make `bucket` hold exactly `records` (a restore is all or nothing, even across a crash). No space
    check, so only for the coordinator's own bucket."""
    if bucket != SYSTEM_BUCKET:
        raise ValueError(f"replace_bucket is for {SYSTEM_BUCKET} only")
    b = _locked_bucket(tx, bucket)
    old = tx.delete_objects_in(bucket)
    final = list({rec.key: rec for rec in records}.values())  # one object per key, the last given
    for rec in final:
        tx.put_object(rec)
    # counted from what the bucket now holds, not added to the old counters: a restore also repairs them
    tx.add_usage(bucket, used=sum(r.size for r in final) - b.used, objects=len(final) - b.objects)
    kept = {seg.blob for rec in final for seg in rec.segments}
    return WriteResult(None, sorted({b for ref in old for b in ref.blobs} - kept))


# ---- multipart -------------------------------------------------------------------------------


def create_upload(tx: MetaTx, up: Upload) -> WriteResult[None]:
    _locked_bucket(tx, up.bucket)
    tx.insert_upload(up)
    return WriteResult(None)


def put_part(tx: MetaTx, bucket: str, key: str, upload_id: str, part: Part, max_size: int) -> WriteResult[None]:
    require_upload(tx, bucket, key, upload_id)
    b = _locked_bucket(tx, bucket)
    old = next((p for p in tx.parts(upload_id, part.part_number - 1, 1) if p.part_number == part.part_number), None)
    old_size = old.size if old else 0
    _admit_locked(tx, b, part.size - old_size, max_size)
    tx.put_part(upload_id, part)
    tx.add_usage(bucket, mpu_used=part.size - old_size)
    tx.touch_upload(upload_id, part.mtime)
    return WriteResult(None, [old.blob] if old else [])


def touch_upload(tx: MetaTx, upload_id: str, now: float) -> WriteResult[bool]:
    """Restart an upload's stale-expiry clock (a part is streaming to it); False if it is gone."""
    return WriteResult(tx.touch_upload(upload_id, now))


def _drop_upload(tx: MetaTx, up: Upload) -> tuple[list[str], int]:
    _locked_bucket(tx, up.bucket)
    parts = tx.delete_upload(up.upload_id)
    size = sum(p.size for p in parts)
    tx.add_usage(up.bucket, mpu_used=-size)
    return [p.blob for p in parts], size


def abort_upload(tx: MetaTx, bucket: str, key: str, upload_id: str) -> WriteResult[None]:
    up = require_upload(tx, bucket, key, upload_id)
    return WriteResult(None, _drop_upload(tx, up)[0])


def expire_upload(tx: MetaTx, upload_id: str, cutoff: float) -> WriteResult[int | None]:
    """Abort an upload if it is still idle since `cutoff`: the bytes freed, or None if it was kept.

    The staleness is decided again here, so a part that arrived after the upload was found keeps it
    alive, and an upload already gone (completed, aborted, expired by another worker) is left alone:
    expiring twice is harmless."""
    up = tx.upload(upload_id)
    last = tx.upload_last_active(upload_id)
    if up is None or last is None or last >= cutoff:
        return WriteResult(None)
    blobs, size = _drop_upload(tx, up)
    return WriteResult(size, blobs)


def complete_upload(
    tx: MetaTx,
    upload_id: str,
    rec: ObjectRecord,
    used_parts: list[int],
    parts_sig: str,
    cond: WriteConditions,
    max_size: int,
) -> WriteResult[None]:
    """Turn the chosen parts into the object.

    The caller built `rec` from parts it read before this transaction, and any of them may have been
    re-uploaded since. So the object's segments are decided here, from the parts this transaction
    sees: segment i names part used_parts[i] as it is now, provided it still has the size and ETag
    (rec.segments[i].md5, the ETag the client listed) the caller built from, else InvalidPart. Every
    part blob the object does not name is freed: no blob is ever both named and freed, or neither.
    """
    if get_upload(tx, rec.bucket, rec.key, upload_id) is None:
        done = tx.completed_upload(rec.bucket, rec.key, upload_id)
        if done is not None and done.parts_sig == parts_sig:
            return WriteResult(None)  # an identical Complete committed first; its object is the one asked for
        require_upload(tx, rec.bucket, rec.key, upload_id)  # raises NoSuchUpload (or NoSuchBucket)
    bucket = _locked_bucket(tx, rec.bucket)
    old = tx.object_ref(rec.bucket, rec.key)
    check_write_conditions(cond, rec.bucket, rec.key, old.etag if old else None)
    # each part's checksums of the object's algorithm go with it: a part read and GetObjectAttributes
    # report them after the part records are gone
    current = {
        p.part_number: Segment(p.blob, p.size, p.etag, {a: v for a, v in p.checksums.items() if a in rec.checksums})
        for p in tx.parts(upload_id, 0, 10001)
    }
    segments: list[Segment] = []
    for number, built in zip(used_parts, rec.segments, strict=True):
        now = current.get(number)
        if now is None or (now.size, now.md5) != (built.size, built.md5):
            raise InvalidPart(number, built.md5)
        segments.append(now)
    rec = dataclasses.replace(rec, segments=segments)
    named = {s.blob for s in segments}
    mpu_bytes = sum(p.size for p in current.values())
    unused = [p.blob for p in current.values() if p.blob not in named]
    old_size = old.size if old else 0
    # parts move from "in progress" to the object; only a growth of the total needs admission
    _admit_locked(tx, bucket, rec.size - old_size - mpu_bytes, max_size)
    tx.put_object(rec)
    tx.delete_upload(upload_id)
    tx.put_completed(upload_id, rec.bucket, rec.key, CompletedUpload(rec.etag, parts_sig, rec.checksums), rec.mtime)
    # keep the retry record small: only recent completions are remembered
    tx.forget_completed(before=rec.mtime - COMPLETED_KEPT_SECONDS)
    tx.add_usage(rec.bucket, used=rec.size - old_size, objects=0 if old else 1, mpu_used=-mpu_bytes)
    return WriteResult(None, unused + (old.blobs if old else []))
