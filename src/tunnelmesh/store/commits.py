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
import functools
import json
import secrets
import time
from contextvars import ContextVar

from tunnelmesh.store import lifecycle_rules as lc
from tunnelmesh.store.errors import (
    BucketDeleteDenied,
    BucketExists,
    BucketNotEmpty,
    InvalidBucketState,
    InvalidPart,
    IsDeleteMarker,
    LockNotEnabled,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    ObjectLocked,
    PreconditionFailed,
    QuotaExceeded,
    ReservedBucket,
)
from tunnelmesh.store.metadata import MetaReads, MetaTx
from tunnelmesh.store.records import (
    SYSTEM_BUCKET,
    Bucket,
    CompletedUpload,
    Deleted,
    Hint,
    Lock,
    ObjectRecord,
    ObjectRef,
    Part,
    Segment,
    Upload,
    VersionEntry,
    WriteConditions,
    WriteResult,
    new_version_id,
    seq_at,
    version_seq,
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


def put_frees(r: MetaReads, bucket: Bucket, key: str) -> int:
    """The bytes a put of `key` frees, which count as room: the current object in a bucket never versioned;
    nothing while Enabled (every version is kept); while Suspended, the null version it replaces, current
    or not (docs/data-protection.md 2.3)."""
    if bucket.versioning == "Enabled":
        return 0
    cur = r.object_ref(bucket.name, key)
    if bucket.versioning is None or (cur is not None and cur.version_id is None):
        return cur.size if cur else 0
    null = r.null_version_ref(bucket.name, key)
    return null.size if null else 0


def _admit_locked(tx: MetaTx, bucket: Bucket, delta: int, max_size: int) -> None:
    """`admit` under the transaction's locks: taken only when the write grows the store (a shrinking or
    same-size write, and the coordinator's own bucket, never wait for the store lock)."""
    if delta > 0 and bucket.name != SYSTEM_BUCKET:
        admit(bucket, delta, tx.lock_store(), max_size)


# The bucket incarnation the running request was authorized against, (name, created) (s3/authz.py, bound by
# Store.bind_bucket). A commit that locks that bucket by name and finds another incarnation (deleted and
# re-created meanwhile, maybe by another peer) refuses it as NoSuchBucket: the access check was made for the
# bucket that is gone, and a slow request must not land in its successor. Store._commit carries the value
# into the thread that runs the transaction.
EXPECTED_BUCKET: ContextVar[tuple[str, float] | None] = ContextVar("expected_bucket", default=None)


def _locked_bucket(tx: MetaTx, name: str) -> Bucket:
    return _expected(tx.lock_bucket(name), name)


def _expected(b: Bucket | None, name: str) -> Bucket:
    """The bucket a write locked, if it is the one the request was authorized against (EXPECTED_BUCKET)."""
    if b is None:
        raise NoSuchBucket(name)
    expected = EXPECTED_BUCKET.get()
    if expected is not None and expected[0] == name and expected[1] != b.created:
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


def create_bucket(
    tx: MetaTx, name: str, owner: str, region: str, now: float, object_lock: bool = False
) -> WriteResult[None]:
    """A new bucket; with `object_lock`, versioned from the start (S3: object lock needs versioning, which
    can then never be suspended)."""
    old = tx.lock_bucket(name)
    if old is not None:
        raise BucketExists(name, owned_by_caller=old.owner == owner)
    versioning = "Enabled" if object_lock else None
    tx.insert_bucket(Bucket(name, owner, now, region, None, 0, 0, 0, versioning, object_lock))
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
    if b.versioning is not None and next(tx.scan_versions(name, "", -(2**63), True, None, 1), None) is not None:
        raise BucketNotEmpty(name)  # noncurrent versions and delete markers are the bucket's too
    freed: list[str] = []
    while uploads := tx.list_uploads(name, "", "", "", 1000):
        for up in uploads:
            freed += [p.blob for p in tx.delete_upload(up.upload_id)]
    tx.forget_completed(bucket=name)
    tx.drop_hints(name)
    tx.delete_bucket(name)
    return WriteResult(None, freed)


VERSIONING_STATES = ("Enabled", "Suspended")


def set_versioning(tx: MetaTx, name: str, state: str) -> WriteResult[None]:
    """Enable or suspend versioning (S3 has no way back to "never versioned"). The coordinator's own bucket
    is never versioned: its records are backed up and restored as a whole, one version each."""
    if state not in VERSIONING_STATES:
        raise ValueError(state)
    if name == SYSTEM_BUCKET:
        raise ReservedBucket(name, "versioning")
    b = _locked_bucket(tx, name)
    if state == "Suspended" and b.object_lock:
        raise InvalidBucketState(name, "Versioning cannot be suspended on a bucket with object lock")
    if b.versioning != state:
        tx.set_bucket_attr(name, "versioning", state)
    return WriteResult(None)


def set_quota(tx: MetaTx, name: str, quota: int | None) -> WriteResult[None]:
    if name == SYSTEM_BUCKET:
        raise ReservedBucket(name)
    _locked_bucket(tx, name)
    tx.set_quota(name, quota)
    return WriteResult(None)


# ---- objects ---------------------------------------------------------------------------------


def put_object(
    tx: MetaTx, rec: ObjectRecord, cond: WriteConditions, max_size: int, rand: int | None = 0
) -> WriteResult[str | None]:
    """Make `rec` the key's current version; answers its version id (None for a null version: in a bucket
    never versioned or suspended, where S3 answers none). `rand`: the random part of a new version id
    (docs/data-protection.md 1.2); None: drawn here, only when a version id is made."""
    b, old = tx.lock_bucket_and_ref(rec.bucket, rec.key)
    bucket = _expected(b, rec.bucket)
    check_write_conditions(cond, rec.bucket, rec.key, old.etag if old else None)
    if bucket.versioning is not None:
        return _put_version(tx, bucket, rec, old, rand, max_size)
    if rec.lock is not None:
        raise LockNotEnabled(rec.bucket)
    old_size = old.size if old else 0
    _admit_locked(tx, bucket, rec.size - old_size, max_size)
    tx.put_object(rec)
    tx.add_usage(rec.bucket, used=rec.size - old_size, objects=0 if old else 1)
    if bucket.lifecycle is not None:
        hint_current(tx, bucket, rec)
    return WriteResult(None, old.blobs if old else [])


# ---- versions --------------------------------------------------------------------------------

NULL = "null"  # how S3 names the null version (version_id None)


def shown(version_id: str | None) -> str:
    return NULL if version_id is None else version_id


def _next_seq(tx: MetaTx, bucket: str, key: str, current: ObjectRef | None, now: float) -> int:
    """The seq of a new version of the key: its time, but always above every version the key has
    (invariant 1 of docs/data-protection.md), whatever the clock of the node that wrote those did."""
    if current is not None:
        prev = current.seq
    else:
        newest = tx.newest_version_ref(bucket, key)
        prev = newest.seq if newest is not None else 0
    return max(seq_at(now), prev + 1)


@dataclasses.dataclass(slots=True)
class _Usage:
    """Counter changes and freed blobs, summed over a write's versions and applied once."""

    used: int = 0
    objects: int = 0
    nc_used: int = 0
    nc_objects: int = 0
    freed: list[str] = dataclasses.field(default_factory=list)

    def retired(self, ref: ObjectRef) -> None:
        """The current version became noncurrent: its bytes stay, counted as noncurrent."""
        self.objects -= 1
        self.nc_used += ref.size
        self.nc_objects += 1

    def dropped(self, ref: ObjectRef, current: bool) -> None:
        """A version (current or not) is gone for good: its bytes are freed."""
        self.used -= ref.size
        self.freed += ref.blobs
        if current:
            self.objects -= 1
        else:
            self.nc_used -= ref.size
            self.nc_objects -= 1

    def apply(self, tx: MetaTx, bucket: str, mpu_used: int = 0) -> None:
        if self.used or self.objects or self.nc_used or self.nc_objects or mpu_used:
            tx.add_usage(bucket, self.used, self.objects, mpu_used, self.nc_used, self.nc_objects)


def _put_version(
    tx: MetaTx,
    bucket: Bucket,
    rec: ObjectRecord,
    old: ObjectRef | None,
    rand: int | None,
    max_size: int,
    mpu_bytes: int = 0,
) -> WriteResult[str | None]:
    """`rec` becomes the current version in a versioned bucket: under Enabled a new version, the current one
    kept as noncurrent; under Suspended the null version, which replaces the key's null version wherever it
    is (its bytes freed) and keeps a non-null current one as noncurrent. `mpu_bytes`: the upload's part
    bytes a Complete turns into this version (they were counted already)."""
    seq = _next_seq(tx, rec.bucket, rec.key, old, rec.mtime)
    if bucket.versioning == "Enabled":
        vid: str | None = new_version_id(seq, rand if rand is not None else secrets.randbits(32))
    else:
        vid = None
    rec = dataclasses.replace(rec, seq=seq, version_id=vid, lock=_new_lock(bucket, rec))
    u = _Usage(used=rec.size, objects=1)
    if old is not None and old.version_id is None and vid is None:
        u.dropped(old, current=True)  # replaced in place by the put below
    elif old is not None:
        tx.retire_current(rec.bucket, rec.key, rec.mtime)
        u.retired(old)
        if bucket.lifecycle is not None:
            hint_noncurrent(tx, bucket, rec.key, old, rec.mtime)
    if vid is None and (gone := tx.delete_null_version(rec.bucket, rec.key)) is not None:
        u.dropped(gone, current=False)
    _admit_locked(tx, bucket, u.used - mpu_bytes, max_size)
    tx.put_object(rec)
    u.apply(tx, rec.bucket, -mpu_bytes)
    if bucket.lifecycle is not None:
        hint_current(tx, bucket, rec)
    # a suspended bucket's write answers no version id, as S3's (its null version is the only one it touches)
    return WriteResult(vid, u.freed)


# ---- object lock (docs/data-protection.md section 5) -----------------------------------------

GOVERNANCE, COMPLIANCE = "GOVERNANCE", "COMPLIANCE"
LOCK_MODES = (GOVERNANCE, COMPLIANCE)
DAY = 86400.0


def default_until(default: str, mtime: float) -> tuple[str, float]:
    """A bucket's default retention (JSON {"mode", "days" | "years"}) for a version written at `mtime`: a
    year is 365 days, as S3 counts it."""
    d = json.loads(default)
    days = d["days"] if "days" in d else 365 * d["years"]
    return d["mode"], mtime + days * DAY


def _new_lock(bucket: Bucket, rec: ObjectRecord) -> Lock | None:
    """The lock a new version gets: what its request asked, and the bucket's default retention when it asked
    for none. A request for a lock in a bucket without object lock is refused, never ignored."""
    if not bucket.object_lock:
        if rec.lock is not None:
            raise LockNotEnabled(rec.bucket)
        return None
    if bucket.lock_default is None or (rec.lock is not None and rec.lock.mode is not None):
        return rec.lock
    mode, until = default_until(bucket.lock_default, rec.mtime)
    return Lock(mode, until, rec.lock.legal_hold if rec.lock is not None else False)


def check_removable(bucket: str, key: str, ref: ObjectRef, bypass: bool, now: float) -> None:
    """Raise ObjectLocked unless the version may go now: no legal hold, and no retention in force, except a
    GOVERNANCE one that `bypass` (an admin's x-amz-bypass-governance-retention) passes. `now` is the metadata
    backend's clock (one clock for every node: a node whose clock runs fast cannot end a retention early)."""
    shown_id = shown(ref.version_id)
    if ref.legal_hold:
        raise ObjectLocked(bucket, key, shown_id, "it is under a legal hold")
    if ref.lock_until is not None and ref.lock_until > now and (ref.lock_mode == COMPLIANCE or not bypass):
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ref.lock_until))
        raise ObjectLocked(bucket, key, shown_id, f"it is retained in {ref.lock_mode} mode until {when}")


def _version_ref(tx: MetaTx, bucket: str, key: str, version_id: str | None) -> tuple[ObjectRef, bool]:
    """The version a request names (None: the current one) and whether it is the current one; NoSuchKey,
    NoSuchVersion, or IsDeleteMarker (a marker has no attributes to read or set)."""
    cur = tx.object_ref(bucket, key)
    if version_id is None or (cur is not None and cur.version_id == (None if version_id == NULL else version_id)):
        if cur is None:
            raise NoSuchKey(bucket, key)
        return cur, True
    ref = _noncurrent_ref(tx, bucket, key, version_id)
    if ref is None:
        raise NoSuchVersion(bucket, key, version_id)
    if ref.marker:
        raise IsDeleteMarker(bucket, key, version_id)
    return ref, False


def set_lock_config(tx: MetaTx, name: str, default: str | None) -> WriteResult[None]:
    """Turn object lock on (it never goes off) with this default retention (JSON, None: none). On an existing
    bucket only while versioning is Enabled, as S3."""
    b = _locked_bucket(tx, name)
    if not b.object_lock:
        if b.versioning != "Enabled":
            raise InvalidBucketState(
                name, "Versioning must be 'Enabled' on the bucket to apply an Object Lock configuration"
            )
        tx.set_bucket_attr(name, "object_lock", 1)
    tx.set_bucket_attr(name, "lock_default", default)
    return WriteResult(None)


def set_retention(
    tx: MetaTx, bucket: str, key: str, version_id: str | None, retention: tuple[str, float] | None, bypass: bool
) -> WriteResult[str]:
    """Set (None: remove) a version's retention. A COMPLIANCE retention in force can only be extended, by
    anyone; a GOVERNANCE one can be shortened, removed or changed to another mode only with `bypass`."""
    b = _locked_bucket(tx, bucket)
    if not b.object_lock:
        raise LockNotEnabled(bucket)
    ref, current = _version_ref(tx, bucket, key, version_id)
    now = tx.clock()
    if ref.lock_until is not None and ref.lock_until > now:
        mode, until = retention if retention is not None else (None, None)
        weaker = mode != ref.lock_mode or until is None or until < ref.lock_until
        if weaker and (ref.lock_mode == COMPLIANCE or not bypass):
            check_removable(bucket, key, dataclasses.replace(ref, legal_hold=False), False, now)
    tx.set_version_attrs(bucket, key, ref.seq, current, retention=retention)
    return WriteResult(shown(ref.version_id))


def set_legal_hold(tx: MetaTx, bucket: str, key: str, version_id: str | None, on: bool) -> WriteResult[str]:
    b = _locked_bucket(tx, bucket)
    if not b.object_lock:
        raise LockNotEnabled(bucket)
    ref, current = _version_ref(tx, bucket, key, version_id)
    tx.set_version_attrs(bucket, key, ref.seq, current, legal_hold=on)
    return WriteResult(shown(ref.version_id))


def _promote_newest(tx: MetaTx, bucket: str, key: str, u: _Usage) -> None:
    """The key has no current row: its newest version becomes current, unless it is a delete marker (then
    the key stays deleted; invariant 2)."""
    newest = tx.newest_version_ref(bucket, key)
    if newest is not None and not newest.marker:
        tx.promote_version(bucket, key, newest.seq)
        u.objects += 1
        u.nc_used -= newest.size
        u.nc_objects -= 1


def _delete_marked(tx: MetaTx, bucket: Bucket, key: str, owner: str, now: float, rand: int, u: _Usage) -> Deleted:
    """A delete without a version id in a versioned bucket: a delete marker becomes the current version (S3
    stacks them: a marker over a marker is a new one). Under Enabled the current version is kept as
    noncurrent; under Suspended the marker is the null version, replacing the key's null version."""
    cur = tx.object_ref(bucket.name, key)
    seq = _next_seq(tx, bucket.name, key, cur, now)
    vid = new_version_id(seq, rand) if bucket.versioning == "Enabled" else None
    if cur is not None and cur.version_id is None and vid is None:
        tx.delete_object(bucket.name, key)
        u.dropped(cur, current=True)
    elif cur is not None:
        tx.retire_current(bucket.name, key, now)
        u.retired(cur)
        if bucket.lifecycle is not None:
            hint_noncurrent(tx, bucket, key, cur, now)
    if vid is None and (gone := tx.delete_null_version(bucket.name, key)) is not None:
        u.dropped(gone, current=False)
    marker = ObjectRecord(bucket.name, key, 0, "", now, {}, {}, [], owner, version_id=vid, seq=seq, marker=True)
    tx.put_version(marker, True, now)
    u.nc_objects += 1
    if (rules := lc.rules_of(bucket.lifecycle)) is not None and rules.expires_markers(key):
        tx.put_hint(Hint(bucket.name, key, -seq, lc.MARKER, now))
    return Deleted(shown(vid), True)


def _delete_version(
    tx: MetaTx, bucket: str, key: str, vid: str, if_match: str | None, bypass: bool, u: _Usage
) -> Deleted:
    """Remove one version for good (`vid`: an id or "null"), unless locked (check_removable); a version that
    is not there is already gone (S3 answers success). When it was the current one, the newest remaining
    version becomes current."""
    cur = tx.object_ref(bucket, key)
    if cur is not None and cur.version_id == (None if vid == NULL else vid):
        _check_version_etag(if_match, cur.etag)
        check_removable(bucket, key, cur, bypass, tx.clock())
        tx.delete_object(bucket, key)
        u.dropped(cur, current=True)
        _promote_newest(tx, bucket, key, u)
        return Deleted(vid, False)
    ref = _noncurrent_ref(tx, bucket, key, vid)
    if ref is None:
        return Deleted(vid, False)
    _check_version_etag(if_match, ref.etag)
    check_removable(bucket, key, ref, bypass, tx.clock())
    tx.delete_version(bucket, key, ref.seq)
    u.dropped(ref, current=False)
    if cur is None:
        _promote_newest(tx, bucket, key, u)
    return Deleted(vid, ref.marker)


def _noncurrent_ref(r: MetaReads, bucket: str, key: str, vid: str) -> ObjectRef | None:
    """The noncurrent version (or delete marker) `vid` ("null" or an id) of the key, if it has it."""
    if vid == NULL:
        return r.null_version_ref(bucket, key)
    seq = version_seq(vid)
    v = r.version(bucket, key, seq) if seq is not None else None
    if v is None or v.version_id != vid:
        return None
    lock = v.lock or Lock()
    blobs = [s.blob for s in v.segments]
    return ObjectRef(
        v.size, v.etag, v.mtime, blobs, v.version_id, v.seq, lock.mode, lock.until, lock.legal_hold, v.marker
    )


def _check_version_etag(if_match: str | None, etag: str) -> None:
    if if_match is not None and if_match not in ("*", etag):
        raise PreconditionFailed("If-Match")


def version_record(r: MetaReads, bucket: str, key: str, vid: str) -> ObjectRecord:
    """The version `vid` of the key (an id, or "null"), current or not, a delete marker included (its
    `marker` set); NoSuchVersion if the key has no such version."""
    want = None if vid == NULL else vid
    seq = None if vid == NULL else version_seq(vid)
    rec = r.get_object(bucket, key)
    if rec is None or rec.version_id != want:
        if vid == NULL:
            ref = r.null_version_ref(bucket, key)
            seq = ref.seq if ref is not None else None
        rec = r.version(bucket, key, seq) if seq is not None else None
    if rec is None or rec.version_id != (None if vid == NULL else vid):
        require_bucket(r, bucket)  # NoSuchBucket comes first
        raise NoSuchVersion(bucket, key, vid)
    return rec


def set_object_tags(
    tx: MetaTx, bucket: str, key: str, version_id: str | None, tags: dict[str, str] | None
) -> WriteResult[str | None]:
    """Replace (None: remove) the tag set of a version of the key (`version_id`; None: the current one);
    answers the version's id as S3 shows it (None in a bucket never versioned). Under the bucket lock, as
    every write of the key, so it cannot land on a version an overwrite is replacing; no counter changes."""
    b = _locked_bucket(tx, bucket)
    ref, current = _version_ref(tx, bucket, key, version_id)
    tx.set_version_attrs(bucket, key, ref.seq, current, tags=tags)
    if b.lifecycle is not None and current:  # a tag filter may take it now
        tx.put_hint(Hint(bucket, key, -ref.seq, lc.CURRENT, 0.0))
    return WriteResult(shown(ref.version_id) if b.versioning is not None or version_id else None)


def set_bucket_tags(tx: MetaTx, name: str, tags: str | None) -> WriteResult[None]:
    """Replace (None: remove) the bucket's tag set, JSON text."""
    _locked_bucket(tx, name)
    tx.set_bucket_attr(name, "tags", tags)
    return WriteResult(None)


def set_bucket_encryption(tx: MetaTx, name: str, algorithm: str | None) -> WriteResult[None]:
    """Set (None: remove) the bucket's default encryption (SSE-S3: "AES256"); it applies to later writes."""
    _locked_bucket(tx, name)
    tx.set_bucket_attr(name, "sse_default", algorithm)
    return WriteResult(None)


# a DeleteObjects entry: key, version id (None: the current version; "null": the null version), If-Match ETag
DeleteEntry = tuple[str, str | None, str | None]
# what became of one: done, or left alone and why
DeleteOutcome = Deleted | NoSuchKey | PreconditionFailed | ObjectLocked
_GONE = Deleted()  # every answer of a plain delete in a bucket never versioned: one shared instance


def delete_objects(
    tx: MetaTx,
    bucket: str,
    entries: list[DeleteEntry],
    owner: str = "",
    now: float = 0.0,
    rand: int = 0,
    bypass: bool = False,
) -> WriteResult[list[DeleteOutcome]]:
    """Delete each entry (absent keys and versions are fine), in order, under one bucket lock; answers, per
    entry, what was done, or why it was left alone (an If-Match ETag that did not hold: PreconditionFailed,
    or NoSuchKey when there is no current version to compare). In a versioned bucket a delete without a
    version id makes a delete marker (`owner`'s, made at `now`; `rand` seeds the random part of new ids). A
    locked version is left alone (ObjectLocked); `bypass` passes GOVERNANCE retentions."""
    b = _locked_bucket(tx, bucket)
    out: list[DeleteOutcome] = []
    u = _Usage()
    for i, (key, vid, if_match) in enumerate(entries):
        if if_match is not None and vid is None:
            cur = tx.object_ref(bucket, key)
            if cur is None or if_match not in ("*", cur.etag):
                out.append(NoSuchKey(bucket, key) if cur is None else PreconditionFailed("If-Match"))
                continue
        if vid is not None:
            try:
                out.append(_delete_version(tx, bucket, key, vid, if_match, bypass, u))
            except (PreconditionFailed, ObjectLocked) as e:
                out.append(e)
        elif b.versioning is not None:
            # distinct ids for markers made by one request (each key's seq differs too, but not across keys)
            out.append(_delete_marked(tx, b, key, owner, now, (rand + i * 0x9E3779B1) & 0xFFFFFFFF, u))
        else:
            gone = tx.delete_object(bucket, key)
            if gone is not None:
                u.used -= gone.size
                u.objects -= 1
                u.freed += gone.blobs
            out.append(_GONE)
    u.apply(tx, bucket)
    return WriteResult(out, u.freed)


def delete_object_version(tx: MetaTx, bucket: str, key: str, seq: int, blobs: list[str]) -> WriteResult[str]:
    """Delete the version of `seq` (current or not) only if it still names `blobs` (what a scrub found
    rotten): an overwrite since then is a new, acknowledged version and stays (an ETag would not do:
    re-uploading the same bytes gives the same ETag). A locked version stays too: its row keeps naming the
    quarantined blob, and a read of it answers InternalError. Answers "repaired", "locked" or "gone"."""
    _locked_bucket(tx, bucket)
    cur = tx.object_ref(bucket, key)
    if cur is not None and cur.seq == seq:
        ref: ObjectRef | None = cur
    else:
        v = tx.version(bucket, key, seq)
        ref = _noncurrent_ref(tx, bucket, key, shown(v.version_id)) if v is not None and not v.marker else None
    if ref is None or ref.blobs != blobs:
        return WriteResult("gone")
    done = delete_objects(tx, bucket, [(key, shown(ref.version_id), None)])
    return WriteResult("locked" if isinstance(done.value[0], ObjectLocked) else "repaired", done.freed)


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


# ---- lifecycle (docs/data-protection.md section 4) -------------------------------------------


def hint_current(tx: MetaTx, bucket: Bucket, rec: ObjectRecord) -> None:
    """Index when the new current version may expire (a lifecycle bucket's writes only)."""
    rules = lc.rules_of(bucket.lifecycle)
    if rules is not None and (due := rules.current_due(rec.key, rec.mtime, rec.size, rec.tags)) is not None:
        tx.put_hint(Hint(bucket.name, rec.key, -rec.seq, lc.CURRENT, due))


def hint_noncurrent(tx: MetaTx, bucket: Bucket, key: str, ref: ObjectRef, since: float) -> None:
    """Index when a version just made noncurrent may expire; and, under NewerNoncurrentVersions, the older
    version this one pushed past the number kept (it may be due now)."""
    rules = lc.rules_of(bucket.lifecycle)
    if rules is None:
        return
    due = rules.noncurrent_due(key, since, ref.size, None)  # tags unknown here: the scanner checks them
    if due is not None:
        tx.put_hint(Hint(bucket.name, key, -ref.seq, lc.NONCURRENT, due))
    keep = rules.keeps_newer
    if keep is not None:
        # the (keep + 1)-th newest noncurrent version: delete markers between versions are skipped, not counted
        kept = 0
        for v in tx.scan_versions(bucket.name, key, -(2**63), True, None, 10_000):
            if v.key != key:
                break
            if not v.marker:
                if kept == keep:
                    tx.put_hint(Hint(bucket.name, key, v.nseq, lc.NONCURRENT, 0.0))
                    break
                kept += 1


def _key_versions(r: MetaReads, bucket: str, key: str, limit: int) -> list[VersionEntry]:
    """The key's newest `limit` rows of `versions` (no end bound: PostgreSQL's text cannot hold the NUL that
    would make the next key's, so the next keys' rows are read and left)."""
    return [e for e in r.scan_versions(bucket, key, -(2**63), True, None, limit) if e.key == key]


def apply_hint(tx: MetaTx, hint: Hint, now: float, rand: int = 0) -> WriteResult[str]:
    """One lifecycle step: re-read what the hint names, decide under the bucket's current rules, and act
    (expire, abort), move the hint to the exact due time, or drop it. Answers what was done. Never removes a
    locked version: its hint moves to when the lock ends (a legal hold: a day later, to look again)."""
    b = tx.lock_bucket(hint.bucket)
    rules = lc.rules_of(b.lifecycle) if b is not None else None
    if b is None or rules is None:
        tx.drop_hint(hint.bucket, hint.key, hint.nseq, hint.kind)
        return WriteResult("dropped")
    later = functools.partial(_rehint, tx, hint)
    u = _Usage()
    if hint.kind == lc.CURRENT:
        cur = tx.get_object(b.name, hint.key)
        if cur is None or cur.seq != -hint.nseq:
            return _drop(tx, hint)
        due = rules.current_due(cur.key, cur.mtime, cur.size, cur.tags or {})
        if due is None:
            return _drop(tx, hint)
        if due > now:
            return later(due)
        tx.drop_hint(hint.bucket, hint.key, hint.nseq, hint.kind)
        if b.versioning is None:
            gone = tx.delete_object(b.name, hint.key)
            assert gone is not None
            u.dropped(gone, current=True)
        else:
            _delete_marked(tx, b, hint.key, b.owner, now, rand, u)
    elif hint.kind == lc.NONCURRENT:
        v = tx.version(b.name, hint.key, -hint.nseq)
        if v is None or v.marker:
            return _drop(tx, hint)
        since = tx.version_since(b.name, v.key, v.seq)
        assert since is not None
        due = rules.noncurrent_due(v.key, since, v.size, v.tags or {})
        if due is None or not _past_newer(tx, rules, v):
            return _drop(tx, hint)  # a newer version's retirement hints it again
        if due > now:
            return later(due)
        ref = _noncurrent_ref(tx, b.name, v.key, shown(v.version_id))
        assert ref is not None
        if ref.legal_hold or (ref.lock_until is not None and ref.lock_until > tx.clock()):
            # never due again within this pass: the lock is judged on the database's clock, the pass on its own
            until = ref.lock_until if not ref.legal_hold and ref.lock_until else now + lc.DAY
            return later(max(until, now + 1.0))
        tx.drop_hint(hint.bucket, hint.key, hint.nseq, hint.kind)
        tx.delete_version(b.name, v.key, v.seq)
        u.dropped(ref, current=False)
        newest = tx.newest_version_ref(b.name, v.key)
        if newest is not None and newest.marker and rules.expires_markers(v.key):
            tx.put_hint(Hint(b.name, v.key, -newest.seq, lc.MARKER, now))
    elif hint.kind == lc.MARKER:
        rows = _key_versions(tx, b.name, hint.key, 2)
        lone = len(rows) == 1 and rows[0].marker and rows[0].nseq == hint.nseq
        if not lone or not rules.expires_markers(hint.key) or tx.object_ref(b.name, hint.key) is not None:
            return _drop(tx, hint)
        tx.drop_hint(hint.bucket, hint.key, hint.nseq, hint.kind)
        gone_marker = tx.delete_version(b.name, hint.key, -hint.nseq)
        assert gone_marker is not None
        u.dropped(gone_marker, current=False)
    elif hint.kind == lc.UPLOAD:
        up = tx.upload(hint.key)
        due = rules.abort_due(up.key, up.initiated) if up is not None else None
        if up is None or due is None:
            return _drop(tx, hint)
        if due > now:
            return later(due)
        tx.drop_hint(hint.bucket, hint.key, hint.nseq, hint.kind)
        return WriteResult("expired", _drop_upload(tx, up)[0])
    else:
        return _drop(tx, hint)
    u.apply(tx, b.name)
    return WriteResult("expired", u.freed)


def _drop(tx: MetaTx, hint: Hint) -> WriteResult[str]:
    tx.drop_hint(hint.bucket, hint.key, hint.nseq, hint.kind)
    return WriteResult("dropped")


def _rehint(tx: MetaTx, hint: Hint, at: float) -> WriteResult[str]:
    tx.put_hint(dataclasses.replace(hint, at=at))
    return WriteResult("later")


def _past_newer(r: MetaReads, rules: lc.Rules, v: ObjectRecord) -> bool:
    """Whether NewerNoncurrentVersions lets the version go: more newer noncurrent versions than it keeps."""
    keep = max((rule.nc_newer or 0 for rule in rules.noncurrent_rules(v.key, v.size, v.tags or {})), default=0)
    if keep == 0:
        return True
    newer = 0
    for e in r.scan_versions(v.bucket, v.key, -(2**63), True, None, 10_000):
        if e.key != v.key or e.nseq >= -v.seq:
            break
        newer += not e.marker
        if newer >= keep:
            return True
    return False


def set_lifecycle(tx: MetaTx, name: str, doc: str | None, now: float) -> WriteResult[None]:
    """Replace (None: remove) the bucket's lifecycle rules. A new set walks the bucket once (a backfill
    cursor the scanner advances in batches), so versions written before it are hinted too."""
    _locked_bucket(tx, name)
    tx.set_bucket_attr(name, "lifecycle", doc)
    tx.drop_hints(name)
    if doc is not None:
        tx.put_hint(Hint(name, "", 0, lc.BACKFILL, now))
    return WriteResult(None)


def backfill(tx: MetaTx, hint: Hint, batch: int) -> WriteResult[int]:
    """Hint up to `batch` current versions (phase BACKFILL), then noncurrent ones and markers (phase
    BACKFILL_VERSIONS), then the uploads, from the cursor the hint is; the cursor moves on, or goes at the
    end. Answers how many rows were looked at. Hints made here are due at once: the scanner decides."""
    b = tx.lock_bucket(hint.bucket)
    rules = lc.rules_of(b.lifecycle) if b is not None else None
    tx.drop_hint(hint.bucket, hint.key, hint.nseq, hint.kind)
    if b is None or rules is None:
        return WriteResult(0)
    if hint.kind == lc.BACKFILL:
        current = list(tx.scan_current(b.name, hint.key, False, None, batch))
        for e in current:
            due = rules.current_due(e.key, e.mtime, e.size, None)
            if due is not None:
                tx.put_hint(Hint(b.name, e.key, -e.seq, lc.CURRENT, due))
        if len(current) == batch:
            tx.put_hint(Hint(b.name, current[-1].key, 0, lc.BACKFILL, 0.0))
        else:
            tx.put_hint(Hint(b.name, "", -(2**63), lc.BACKFILL_VERSIONS, 0.0))
        return WriteResult(len(current))
    rows = list(tx.scan_versions(b.name, hint.key, hint.nseq, False, None, batch))
    for e in rows:
        if e.marker and rules.expires_markers(e.key):
            tx.put_hint(Hint(b.name, e.key, e.nseq, lc.MARKER, 0.0))
        elif not e.marker and rules.noncurrent_rules(e.key, e.size, None):
            tx.put_hint(Hint(b.name, e.key, e.nseq, lc.NONCURRENT, 0.0))
    if len(rows) == batch:
        tx.put_hint(Hint(b.name, rows[-1].key, rows[-1].nseq, lc.BACKFILL_VERSIONS, 0.0))
    elif rules.aborts_uploads:
        after = ""
        while uploads := tx.list_uploads(b.name, "", after, "", 1000):
            for up in uploads:
                due = rules.abort_due(up.key, up.initiated)
                if due is not None:
                    tx.put_hint(Hint(b.name, up.upload_id, 0, lc.UPLOAD, due))
            if len(uploads) < 1000:
                break
            after = uploads[-1].key  # key-marker paging: every upload of the last key was in this page or before
    return WriteResult(len(rows))


# ---- multipart -------------------------------------------------------------------------------


def create_upload(tx: MetaTx, up: Upload) -> WriteResult[None]:
    b = _locked_bucket(tx, up.bucket)
    tx.insert_upload(up)
    if (rules := lc.rules_of(b.lifecycle)) is not None and (due := rules.abort_due(up.key, up.initiated)) is not None:
        tx.put_hint(Hint(up.bucket, up.upload_id, 0, lc.UPLOAD, due))
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
    b = tx.bucket(up.bucket)
    rules = lc.rules_of(b.lifecycle) if b is not None else None
    if rules is not None and rules.abort_due(up.key, up.initiated) is not None:
        return WriteResult(None)  # the bucket's AbortIncompleteMultipartUpload rule decides for it
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
    rand: int = 0,
) -> WriteResult[str | None]:
    """Turn the chosen parts into the object; answers its version id as put_object does.

    The caller built `rec` from parts it read before this transaction, and any of them may have been
    re-uploaded since. So the object's segments are decided here, from the parts this transaction
    sees: segment i names part used_parts[i] as it is now, provided it still has the size and ETag
    (rec.segments[i].md5, the ETag the client listed) the caller built from, else InvalidPart. Every
    part blob the object does not name is freed: no blob is ever both named and freed, or neither.
    """
    if get_upload(tx, rec.bucket, rec.key, upload_id) is None:
        done = tx.completed_upload(rec.bucket, rec.key, upload_id)
        if done is not None and done.parts_sig == parts_sig:
            # an identical Complete committed first; its object is the one asked for
            return WriteResult(done.version_id)
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
    if bucket.versioning is not None:
        written = _put_version(tx, bucket, rec, old, rand, max_size, mpu_bytes)
        vid, freed = written.value, unused + written.freed
    else:
        old_size = old.size if old else 0
        # parts move from "in progress" to the object; only a growth of the total needs admission
        _admit_locked(tx, bucket, rec.size - old_size - mpu_bytes, max_size)
        tx.put_object(rec)
        tx.add_usage(rec.bucket, used=rec.size - old_size, objects=0 if old else 1, mpu_used=-mpu_bytes)
        vid, freed = None, unused + (old.blobs if old else [])
    tx.delete_upload(upload_id)
    done = CompletedUpload(rec.etag, parts_sig, rec.checksums, vid)
    tx.put_completed(upload_id, rec.bucket, rec.key, done, rec.mtime)
    # keep the retry record small: only recent completions are remembered
    tx.forget_completed(before=rec.mtime - COMPLETED_KEPT_SECONDS)
    return WriteResult(vid, freed)
