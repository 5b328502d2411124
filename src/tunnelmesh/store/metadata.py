"""The metadata-backend protocol: what the engine needs from a place that keeps buckets, objects,
uploads and the freed-blob queue, and nothing of how it keeps them.

Three implementations sit behind it: SQLite (store/sqlite_meta.py, the embedded default), in memory
(store/memory_meta.py, for component tests), and PostgreSQL (store/pg_meta.py, several coordinators
on one store). All of them pass the same contract tests (tests/unit/test_meta_contract.py), and the
rules, listing and component tests run on each (tests/meta_backends.py).

The protocol is primitive on purpose: rows in, rows out. Every rule (preconditions, quota admission,
usage counters, which blobs a write frees) lives once, in store/commits.py, as a function over a
`MetaTx`, so every backend enforces the same rules the same way.

A transaction is a function, not an `async with` block: `await meta.write(fn)` runs `fn(tx)` in
one transaction. Two reasons. SQLite's group commit runs many writers' functions in one transaction
(one fsync for N writes), which a block that awaits in the middle could not join. And a networked
engine must re-run a transaction that lost a race (a deadlock, CockroachDB's serialisation
failures), which only a function allows. So `fn` must be deterministic over what it reads from `tx`
and touch nothing else (no I/O; a clock only where a later value is harmless, see Store._commit).

Inside a write, a rule decides on what it reads, so what it reads must not change before it commits:
every point read of a MetaTx (a bucket, an object, an upload, its last activity, a completed upload)
locks the row it reads until the transaction ends. SQLite gets that from its one writer at a time;
PostgreSQL reads with FOR UPDATE under READ COMMITTED (SERIALIZABLE would turn every contended write
into a retry). `lock_bucket` and `lock_store` are the locks a rule takes before it reads counters.

Reads go through `await meta.read(fn)`: a backend whose reads take microseconds (SQLite, memory) runs
`fn` inline on the event loop, with no thread hop; a networked one runs it on a pooled connection.
Each MetaReads call is consistent on its own; `read(fn, snapshot=True)` puts all of fn's calls in one
snapshot, for the few readers that compare several answers (a usage recount, an orphan sweep). A
snapshot is asked for, not given to every read, because it costs: on SQLite a BEGIN and a COMMIT
around the statement, which measured +10 us (14% of the S3 app's CPU) on a 4 KiB GET.

Versions (docs/data-protection.md, sections 1 and 2.2). The `objects` rows stay the current version of each
key, so every read and write above keeps its cost; a second table, `versions`, holds the noncurrent versions
and every delete marker, ordered within a key newest first by `seq` (a version's place in its key's history;
records.seq_at for a bucket never versioned). A version is a point lookup by (bucket, key, seq). The moves
between the two (`retire_current`, `promote_version`) copy a row inside the database without decoding it.
The primitives keep rows only: which version a write keeps, retires or frees is the rules' (store/commits.py).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from tunnelmesh.store.records import (
    Bucket,
    CompletedUpload,
    Hint,
    Listed,
    NodeState,
    ObjectRecord,
    ObjectRef,
    Part,
    SealedRow,
    Upload,
    VersionEntry,
)

T = TypeVar("T")


class Keep(enum.Enum):
    """`set_version_attrs`' "leave this one as it is" (None is a value there: no tags, no lock)."""

    KEEP = 0


KEEP = Keep.KEEP

# the bucket columns `set_bucket_attr` may set: its configuration, never its counters
BUCKET_ATTRS = frozenset({"versioning", "object_lock", "lock_default", "tags", "lifecycle", "sse_default"})

# `settle(ok, value)`: called once a write's outcome is known (value: the result, or the exception)
Settle = Callable[[bool, Any], None]


class MetaReads(Protocol):
    """Reads: each call consistent on its own; several in one snapshot inside a write's transaction
    or a `read(fn, snapshot=True)`."""

    def bucket(self, name: str) -> Bucket | None: ...

    def buckets(self) -> list[Bucket]:
        """Every bucket, by name."""
        ...

    def freshness(self, keys: Sequence[str], bucket: str | None) -> tuple[dict[str, str], Bucket | None]:
        """The ETag of the current object of each of `keys` in SYSTEM_BUCKET (a key with none is left out), and
        `bucket`'s row (None when `bucket` is None or there is no such bucket). Every S3 request asks it once:
        the access records' ETags and the bucket's owner and creation time, in one read (one round trip on a
        networked backend), so that each worker's authorizer cache is checked against the shared records on
        every request, with no TTL (docs/access-control.md section 3). Read-only, and it locks nothing, also
        inside a write: no rule decides a write on it."""
        ...

    def store_used(self) -> int:
        """The bytes that count against max_size: objects and parts of every bucket but SYSTEM_BUCKET."""
        ...

    def get_object(self, bucket: str, key: str) -> ObjectRecord | None: ...

    def object_ref(self, bucket: str, key: str) -> ObjectRef | None:
        """What a write needs of the current object (size, ETag, mtime, blobs), without the rest."""
        ...

    def scan_objects(self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int) -> Iterator[Listed]:
        """Objects with start < key (<= if inclusive) and key < end, in key order (by UTF-8 bytes, which
        is code-point order), at most `limit`; lazily, so a caller may stop early. The records carry
        what a listing shows (size, etag, mtime, owner): no headers, checksums, segments, data or version
        columns (ListObjects shows none; a version listing has scan_versions)."""
        ...

    def upload(self, upload_id: str) -> Upload | None: ...

    def upload_last_active(self, upload_id: str) -> float | None:
        """When the upload last received a part (else when it was initiated); None if it is gone."""
        ...

    def parts(self, upload_id: str, after: int, limit: int) -> list[Part]:
        """The upload's parts numbered above `after`, in order, at most `limit`."""
        ...

    def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[Upload]:
        """Uploads of `bucket` whose key starts with `prefix`, after (key_marker, upload_id_marker), in
        (key, upload id) order, at most `limit`."""
        ...

    def pending_uploads(self) -> dict[str, int]:
        """How many uploads each bucket has in progress (buckets with none left out)."""
        ...

    def sse_kids(self) -> dict[str, int]:
        """How many rows (versions, current or not, and uploads) each master key id wraps the data key of
        (SSE-S3, store/sse.py); plaintext rows are never read (partial indexes)."""
        ...

    def stale_uploads(self, cutoff: float, limit: int) -> list[Upload]:
        """Uploads last active before `cutoff`, least recently active first, at most `limit`."""
        ...

    def sealed_rows(self, kid: str, limit: int) -> list[SealedRow]:
        """Up to `limit` rows (of objects, versions, uploads) whose data key master key `kid` wraps (the
        partial indexes: no plaintext row is read)."""
        ...

    def completed_upload(self, bucket: str, key: str, upload_id: str) -> CompletedUpload | None: ...

    def freed_before(self, t: float, limit: int | None) -> list[str]:
        """Queued freed blobs freed before `t`, oldest first; all of them when `limit` is None."""
        ...

    def clock(self) -> float:
        """Now, by the clock that stamps `queue_freed(..., None)`: the database's where several nodes share
        it, so that one node's reaper measures the grace of a blob another node freed on one clock."""
        ...

    def count_usage(self) -> dict[str, tuple[int, int, int, int, int]]:
        """Each bucket's counters as its records give them, for the buckets that have any: (bytes of every
        version, current and noncurrent; current objects; multipart bytes; bytes of noncurrent versions;
        noncurrent versions and delete markers): Bucket's used, objects, mpu_used, nc_used, nc_objects."""
        ...

    def referenced_blobs(self, tags: Collection[str] | None = None) -> set[str]:
        """Every blob a version (current or not) or a part names; with `tags`, only those whose id ends with
        one of them (writer tags, all of one length; see store/blobs.py). An orphan sweep deletes what this
        leaves out: a noncurrent version's blobs must be here."""
        ...

    # ---- versions (the `versions` table: noncurrent versions and delete markers) ----------------

    def version(self, bucket: str, key: str, seq: int) -> ObjectRecord | None:
        """The noncurrent version or delete marker of `key` with that seq (`marker` set on a marker); None if
        there is none (the current version is `get_object`'s)."""
        ...

    def version_since(self, bucket: str, key: str, seq: int) -> float | None:
        """When that noncurrent version stopped being current (a marker: when it was made); None if absent."""
        ...

    def null_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        """The key's noncurrent null version (version_id None) or null delete marker, if any: at most one (a
        unique index keeps it so). The current row may be the null version too: `object_ref` tells."""
        ...

    def newest_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        """The key's newest row in `versions` (highest seq), marker or not; None if it has none."""
        ...

    def scan_versions(
        self, bucket: str, start_key: str, start_nseq: int, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        """Rows of `versions` after (start_key, start_nseq) (at it too if inclusive) and with key < end, in
        (key, nseq) order: by key as scan_objects, then newest first (nseq = -seq); at most `limit`, lazily.
        Pass start_nseq = -2**63 to start before every version of start_key."""
        ...

    def scan_current(
        self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        """The current versions (the `objects` rows) as a version listing shows them: scan_objects' rows, bounds,
        order and laziness, each with its version id and seq (never a marker). A version listing merges them
        with scan_versions; scan_objects stays as it is, so ListObjects reads no version column."""
        ...

    # ---- the lifecycle time index (docs/data-protection.md section 4) ----------------------------

    def due_hints(self, before: float, limit: int) -> list[Hint]:
        """Hints with `at` < `before`, earliest first, at most `limit`: what a lifecycle pass reads (an index
        on `at`, so its cost follows what is due, not the size of the store)."""
        ...

    def writer_tags(self, node: str) -> list[str]:
        """The writer tags `node` was given (claim_writer_tag) whose blobs no sweep has finished with yet
        (`tags_swept`), in no particular order."""
        ...

    def nodes(self) -> list[NodeState]:
        """Every node id ever claimed, with its latest heartbeat (`beat`), ordered by node id."""
        ...

    def silent_writer_tags(self, silent_for: float) -> dict[str, list[str]]:
        """node -> its unswept writer tags, for every node with such tags whose latest sign of life (a
        heartbeat, or a tag claim: a node starting again claims before its first beat) is older, by the
        backend's clock, than `silent_for` seconds and than three of the node's own heartbeat intervals
        (the nodes may be configured apart: one that beats slowly is not silent between its beats). A node
        that never beat is never silent: it runs a release from before heartbeats (a rolling upgrade),
        which does not hold its tags either, so retiring them would not stop its commits (or it crashed
        before its first beat, and its own restart sweeps its tags)."""
        ...


class MetaTx(MetaReads, Protocol):
    """The writes of one transaction, beside its reads. Nothing is checked here (no preconditions,
    no quotas, no counters kept): store/commits.py does that, over these primitives."""

    def lock_bucket(self, name: str) -> Bucket | None:
        """The bucket's record, which no other transaction can change (nor its counters) until this one
        ends. Every write that changes a bucket's counters calls it first."""
        ...

    def lock_bucket_and_ref(self, name: str, key: str) -> tuple[Bucket | None, ObjectRef | None]:
        """`lock_bucket(name)` and then `object_ref(name, key)` (None when there is no such bucket): what a PUT reads
        first, in one statement where the backend can (SQLite: each statement a PUT's commit runs costs it
        a few microseconds and the event loop a hand-over of the GIL)."""
        ...

    def lock_store(self) -> int:
        """`store_used()`, and no other transaction can grow it until this one ends: quota admission
        against max_size is exact only under it."""
        ...

    def insert_bucket(self, bucket: Bucket) -> None: ...

    def delete_bucket(self, name: str) -> None: ...

    def set_quota(self, name: str, quota: int | None) -> None: ...

    def set_bucket_attr(self, name: str, column: str, value: str | int | None) -> None:
        """Set one of the bucket's configuration columns (BUCKET_ATTRS; ValueError for any other)."""
        ...

    def add_usage(
        self, name: str, used: int = 0, objects: int = 0, mpu_used: int = 0, nc_used: int = 0, nc_objects: int = 0
    ) -> None:
        """Add to the bucket's counters (Bucket's fields of those names; `used` includes `nc_used`)."""
        ...

    def put_object(self, rec: ObjectRecord) -> None:
        """Insert, or replace the object of that bucket and key."""
        ...

    def delete_object(self, bucket: str, key: str) -> ObjectRef | None:
        """Remove the object; returns what it was (None if there was none): its size, ETag, mtime and blobs,
        all a delete's rule needs (a backend may leave the version fields at their defaults: this is the
        DeleteObjects hot path, 1000 rows a request)."""
        ...

    def delete_objects_in(self, bucket: str) -> list[ObjectRef]:
        """Remove every object of the bucket; returns what they were. Its `versions` rows are left: this is
        for the coordinator's own bucket, never versioned."""
        ...

    def retire_current(self, bucket: str, key: str, since: float) -> ObjectRef | None:
        """Make the current version noncurrent: move its `objects` row, as it is, into `versions` (not a
        marker, noncurrent since `since`); returns what it was (None if the key has no current row). Its
        blobs stay named."""
        ...

    def promote_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        """Make that noncurrent version current again: move its `versions` row into `objects` (the key must
        have no current row); returns what it is, or None if there is no such version. ValueError for a delete
        marker (a marker is never an `objects` row)."""
        ...

    def put_version(self, rec: ObjectRecord, marker: bool, since: float) -> None:
        """Insert a `versions` row of `rec` (its seq and version_id): a delete marker (`marker`, size 0 and no
        segments), or a noncurrent version written as such. The key must have no version of that seq, nor
        another null version if `rec` is one."""
        ...

    def delete_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        """Remove that noncurrent version or delete marker; returns what it was (None if there was none)."""
        ...

    def delete_null_version(self, bucket: str, key: str) -> ObjectRef | None:
        """Remove the key's noncurrent null version or null delete marker; returns what it was."""
        ...

    def set_version_attrs(
        self,
        bucket: str,
        key: str,
        seq: int,
        current: bool,
        *,
        tags: dict[str, str] | None | Keep = KEEP,
        retention: tuple[str, float] | None | Keep = KEEP,
        legal_hold: bool | Keep = KEEP,
    ) -> bool:
        """Set the tags, the retention (mode, until) and/or the legal hold of one version: the current one
        (`current`: the `objects` row, if its seq is `seq`) or a `versions` row. What is KEEP is left as it
        is; None removes. False if there is no such version."""
        ...

    def put_hint(self, hint: Hint) -> None:
        """Insert the hint, or move an existing one of the same (bucket, key, nseq, kind) to its `at`."""
        ...

    def drop_hint(self, bucket: str, key: str, nseq: int, kind: str) -> None: ...

    def drop_hints(self, bucket: str, kinds: Collection[str] | None = None) -> None:
        """Drop the bucket's hints of these kinds (None: all of them)."""
        ...

    def insert_upload(self, up: Upload) -> None:
        """A new upload, last active at its initiation."""
        ...

    def touch_upload(self, upload_id: str, t: float) -> bool:
        """Make the upload last active at `t` unless it already is later; False if it is gone."""
        ...

    def put_part(self, upload_id: str, part: Part) -> None:
        """Insert, or replace the upload's part of that number (the upload exists; its last activity is
        left alone: the rule calls `touch_upload`)."""
        ...

    def delete_upload(self, upload_id: str) -> list[Part]:
        """Remove the upload and its parts; returns the parts, in no particular order, their checksums
        possibly left out (the rules need sizes and blobs only)."""
        ...

    def reseal(self, row: SealedRow, sse: str, kid: str) -> bool:
        """Replace the row's wrapped data key by `sse` (the same key wrapped under master key `kid`), only if
        it still holds `row.sse` (a row overwritten or gone meanwhile is left alone); True if it did."""
        ...

    def put_completed(self, upload_id: str, bucket: str, key: str, done: CompletedUpload, mtime: float) -> None:
        """Remember what a Complete answered (a retry answers the same)."""
        ...

    def forget_completed(self, *, bucket: str | None = None, before: float | None = None) -> None:
        """Drop remembered Completes: those of `bucket`, and those completed before `before` (with neither,
        nothing)."""
        ...

    def queue_freed(self, blob_ids: Collection[str], at: float | None) -> None:
        """Queue blobs no record names any more, freed at `at`, or now by `clock()` if None (a queued id
        queued again keeps its time)."""
        ...

    def forget_freed(self, blob_ids: Collection[str]) -> None:
        """Drop queue entries whose files are gone."""
        ...

    def claim_node(self, node: str, owner: str, at: float) -> str:
        """Make `owner` (a data dir's random id) the holder of node id `node` unless one holds it already;
        returns the holder. Two coordinators with one node id would sweep each other's blobs."""
        ...

    def claim_writer_tag(self, tag: str, node: str) -> bool:
        """Give `tag` to a writer of `node` now (by the backend's clock: a claim is a sign of life, see
        silent_writer_tags); False if any node ever had it. A tag is never given twice,
        whichever coordinator asks, so a sweep of a dead writer's blobs by tag can never meet a live
        writer's (store/blobs.py)."""
        ...

    # The backend's own clock stamps what follows: the nodes' clocks may disagree, and one node's
    # timestamps are compared with another's (is it silent? has the lease expired?).

    def beat(self, node: str, listen: str, started_at: float, interval: float) -> None:
        """`node` is alive now (it must hold its id: claim_node), serving at `listen` since `started_at`, and
        beats every `interval` seconds; stamps the schema version this code knows (NodeState.release)."""
        ...

    def hold_writer_tags(self, tags: Collection[str]) -> set[str]:
        """Which of `tags` are retired; the others cannot be retired until this transaction ends. A write
        naming new blobs holds their writer's tag, so the sweep that retires a tag first waits for every
        commit in flight under it, and no later commit can name a blob of it (see retire_writer_tags)."""
        ...

    def retire_writer_tags(self, tags: Collection[str]) -> None:
        """Retire these tags for good: once this commits, no write naming a new blob of theirs commits
        (hold_writer_tags), so an unnamed blob of theirs stays unnamed and a sweep may delete it. On a
        networked backend it waits for the writes holding them, whose COMMIT may still be on its way after
        their writer died (hazard 12 in docs/scale-out.md)."""
        ...

    def tags_swept(self, tags: Collection[str]) -> None:
        """A sweep has removed every orphan of these (retired) tags: writer_tags() leaves them out."""
        ...

    def take_lease(self, duty: str, node: str, ttl: float, every: float) -> bool:
        """Hold `duty` for the next `ttl` seconds unless another node's hold has not expired, or the duty was
        finished less than `every` seconds ago; True if `node` holds it now. Leases save duplicate work
        (one scrub per mesh, not one per node), never correctness: every duty stays safe run twice."""
        ...

    def finish_lease(self, duty: str, node: str) -> None:
        """`node` has done `duty` now and lets go of it (nothing if it does not hold it)."""
        ...


class MetaBackend(Protocol):
    # the schema version this code knows on this backend, which its beats stamp (NodeState.release): a live
    # node beating an older one runs a release that would undo what a newer feature writes
    release: int

    async def read(self, fn: Callable[[MetaReads], T], snapshot: bool = False) -> T:
        """`fn`'s reads; with `snapshot`, all of them in one snapshot (see the module docstring)."""
        ...

    async def write(self, fn: Callable[[MetaTx], T], settle: Settle | None = None) -> T:
        """`fn` in one transaction, committed (durably) before this returns; if `fn` raises, nothing it
        did is kept and the exception is raised here. `fn` may run more than once (see the module
        docstring). `settle` runs once the outcome is known, also when the caller was cancelled
        meanwhile (a queued write may still commit after its client went away)."""
        ...

    def close(self) -> None: ...
