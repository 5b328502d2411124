"""Plain records the store hands to the layers above."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")

# The coordinator's own bucket. Its records are tiny and bounded by the admin's own actions, and it must
# stay writable when peers fill the store, or a full store would lock the admin out (no revoke, no new
# peer); so it is outside max_size and can have no quota.
SYSTEM_BUCKET = "_tunnelmesh"


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    owner: str
    created: float
    region: str
    quota: int | None
    used: int  # every stored byte of the bucket: current and noncurrent versions (docs/data-protection.md)
    objects: int  # current objects only
    mpu_used: int
    # None: versioning never enabled; "Enabled" or "Suspended" (S3 never goes back to None)
    versioning: str | None = None
    object_lock: bool = False
    lock_default: str | None = None  # the default retention, as JSON text ({"mode": ..., "days"|"years": ...})
    nc_used: int = 0  # the part of `used` held by noncurrent versions
    nc_objects: int = 0  # noncurrent versions and delete markers
    tags: str | None = None  # the bucket's tag set, as JSON text ({"key": "value", ...}); None: no tag set
    lifecycle: str | None = None  # the lifecycle rules, as JSON text (store/lifecycle_rules.py); None: none
    # the bucket's default encryption (PutBucketEncryption): "AES256" (SSE-S3, store/sse.py), or None
    sse_default: str | None = None


@dataclass(frozen=True, slots=True)
class Freshness:
    """What one request reads to know whether what a worker cached is still current (Store.freshness,
    docs/access-control.md section 3): `etags` maps each asked key of SYSTEM_BUCKET that has a current object
    to its ETag (a key with none is absent), and `bucket` is the asked bucket's row (None when no bucket was
    asked or it does not exist), whose owner and creation time tell one incarnation of a name from the next."""

    etags: Mapping[str, str]
    bucket: Bucket | None


@dataclass(frozen=True, slots=True)
class Segment:
    blob: str
    size: int
    md5: str = ""  # hex MD5 of the blob's bytes, for scrubbing ("" in rows written before it was kept)
    # a multipart object's part checksums (algorithm -> base64), kept from its upload for part reads and
    # GetObjectAttributes; empty for other segments and for parts completed before they were kept
    checksums: dict[str, str] = field(default_factory=dict)


def seq_at(mtime: float) -> int:
    """The seq of a version written at `mtime` in a bucket never versioned (and of rows written before seqs
    were kept): its microseconds. Python's int() truncates, as SQLite's CAST and PostgreSQL's trunc() do."""
    return int(mtime * 1_000_000)


_VERSION_ID = re.compile(r"[0-9a-f]{24}")


def new_version_id(seq: int, rand: int) -> str:
    """A version's id: its seq (16 hex digits, so ids of a key sort as its versions do) and 32 random bits
    (`rand`), so that an id is never given twice, even to a key deleted and written again after a clock went
    back. Opaque to clients, as S3's; to us it names its row (docs/data-protection.md 1.2)."""
    return f"{seq:016x}{rand & 0xFFFFFFFF:08x}"


def version_seq(version_id: str) -> int | None:
    """The seq a version id names; None if it is not one of ours (the null version is never passed here): 24
    lowercase hex digits whose seq fits the 64-bit signed columns that keep it (a larger one would make a
    database driver raise rather than find nothing)."""
    if not _VERSION_ID.fullmatch(version_id):
        return None
    seq = int(version_id[:16], 16)
    return seq if seq < 2**63 else None


@dataclass(frozen=True, slots=True)
class Lock:
    """A version's object lock: retention `mode` (GOVERNANCE or COMPLIANCE) until `until`, and a legal hold."""

    mode: str | None = None
    until: float | None = None
    legal_hold: bool = False


@dataclass(slots=True)
class ObjectRecord:
    bucket: str
    key: str
    size: int
    etag: str  # unquoted
    mtime: float
    headers: dict[str, str]  # content-type, cache-control, ..., x-amz-meta-*
    checksums: dict[str, str]  # algorithm (lower case, e.g. "crc32") -> base64 value
    segments: list[Segment]
    owner: str
    # small objects live in the metadata row itself: no blob file, no extra fsync
    data: bytes | None = None
    version_id: str | None = None  # None: the null version (every object of a bucket never versioned)
    # orders a key's versions (docs/data-protection.md 1.2); 0 when built: taken from mtime (seq_at). A
    # dataclasses.replace of mtime keeps the old seq: give both
    seq: int = 0
    tags: dict[str, str] | None = None
    lock: Lock | None = None
    marker: bool = False  # a delete marker (only ever a row of `versions`: size 0, no segments, no data)
    # SSE-S3: the version's data key wrapped under a master key, as JSON (store/sse.py); None: stored in
    # plaintext. When set, `data` and the blobs hold ciphertext, while `size`, the ETag, the checksums and
    # each segment's `size` describe the plaintext (a segment's `md5` is of its stored bytes)
    sse: str | None = None

    def __post_init__(self) -> None:
        if self.seq == 0:
            self.seq = seq_at(self.mtime)


@dataclass(slots=True)  # not frozen: a frozen dataclass of 11 fields costs twice as much to build (DeleteObjects)
class ObjectRef:
    """What the write rules need to know of an object that is there (or was, before a delete): far
    cheaper to read than the whole record (no headers, checksums or inline bytes)."""

    size: int
    etag: str
    mtime: float
    blobs: list[str]
    version_id: str | None = None
    seq: int = 0  # 0 when built: seq_at(mtime), as ObjectRecord's
    lock_mode: str | None = None
    lock_until: float | None = None
    legal_hold: bool = False
    marker: bool = False

    def __post_init__(self) -> None:
        if self.seq == 0:
            self.seq = seq_at(self.mtime)


class VersionEntry(NamedTuple):
    """A version as a version listing shows it (MetaReads.scan_versions). `is_latest` is the listing's to
    decide (the current version may be an `objects` row); a backend scan leaves it False. A tuple: built twice
    per listed version, a frozen dataclass took a quarter of a 1000-version page's CPU."""

    key: str
    version_id: str | None
    seq: int
    marker: bool
    size: int
    etag: str
    mtime: float
    owner: str
    is_latest: bool = False

    @property
    def nseq(self) -> int:
        """The versions table's order within a key: ascending is newest first."""
        return -self.seq


@dataclass(slots=True)
class VersionListing:
    """One page of ListObjectVersions: `entries` (versions and delete markers) in (key, newest first) order,
    interleaved with nothing; `prefixes` the common prefixes. When truncated, the next page starts after
    (`next_key`, `next_version`): `next_version` None with a `next_key` means after every version of that
    key (or that common prefix)."""

    entries: list[VersionEntry]
    prefixes: list[str]
    truncated: bool
    next_key: str | None
    next_version: str | None  # a version id, "null", or None


@dataclass(slots=True)
class Upload:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    owner: str
    headers: dict[str, str]
    checksum_algorithm: str | None
    # "COMPOSITE" or "FULL_OBJECT" when there is an algorithm (uploads begun before the type was kept
    # read as COMPOSITE, the only type there was then)
    checksum_type: str | None = None
    sse: str | None = None  # SSE-S3: the upload's wrapped data key, made at CreateMultipartUpload (store/sse.py)


@dataclass(frozen=True, slots=True)
class SealedRow:
    """A row holding a wrapped data key (SSE-S3), as the re-wrap duty pages them: `table` is "objects",
    "versions" or "uploads"; `ident` the versions row's nseq or the upload's id (None for an objects row)."""

    table: str
    bucket: str
    key: str
    ident: int | str | None
    sse: str


@dataclass(frozen=True, slots=True)
class CompletedUpload:
    """What a Complete answered, kept so that a retry of it answers the same."""

    etag: str
    parts_sig: str
    checksums: dict[str, str]
    version_id: str | None = None  # the version the Complete made, as S3 shows it (None: a bucket never versioned)


@dataclass(slots=True)
class Part:
    part_number: int
    size: int
    etag: str
    mtime: float
    blob: str
    checksums: dict[str, str] = field(default_factory=dict)


class Listed(NamedTuple):
    """An object as ListObjects shows it (MetaReads.scan_objects): built per listed row, so it carries only
    what a listing answers (a whole ObjectRecord cost a 1000-key page about 0.3 ms more to build). A tuple:
    a backend makes one from its row's tuple in C (meta_rows.listed_rows), and the collector untracks it, where
    a dataclass of 1000 rows a page cost one in ten of the page's CPU to build and collect."""

    key: str
    size: int
    etag: str  # unquoted
    mtime: float
    owner: str


@dataclass(slots=True)
class Listing:
    objects: list[Listed]
    prefixes: list[str]
    truncated: bool
    # the last key or common prefix returned, and which of the two it was
    last: str | None
    last_is_prefix: bool


@dataclass(frozen=True, slots=True)
class WriteConditions:
    """Preconditions evaluated atomically with the commit (If-None-Match: *, If-Match)."""

    if_none_match_any: bool = False
    if_match: str | None = None


@dataclass(frozen=True, slots=True)
class Hint:
    """A row of the lifecycle time index (docs/data-protection.md section 4): the version (key, nseq = -seq)
    of `bucket` may be actionable from `at` under rule family `kind` (current, noncurrent, marker; upload,
    whose `key` is the upload id; or a backfill cursor, whose key and nseq are where the walk resumes). A hint,
    not a fact: the scanner re-reads the version and decides."""

    bucket: str
    key: str
    nseq: int
    kind: str
    at: float


@dataclass(frozen=True, slots=True)
class Deleted:
    """What a delete did, as S3 answers it: `version_id` is the version it removed or the delete marker it
    made ("null" for the null version; None in a bucket never versioned, which answers no version), and
    `marker` whether that version is a delete marker."""

    version_id: str | None = None
    marker: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult(Generic[T]):
    """What a write returns: its answer, and the blobs it stopped naming (queued as freed by the same
    commit; store/engine.py)."""

    value: T
    freed: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NodeState:
    """A coordinator sharing the store, as its heartbeats left it. `silent_for`: seconds since its last
    heartbeat by the metadata backend's clock (one clock for every node: theirs may disagree), None
    if it never sent one."""

    node: str
    listen: str
    started_at: float | None
    last_seen: float | None
    silent_for: float | None
    # the schema version of the code that last beat (None: a release from before it was kept); a feature
    # an older release would corrupt (versioning: it overwrites in place) waits until no live node is older
    release: int | None = None
