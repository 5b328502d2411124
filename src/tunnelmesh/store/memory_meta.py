"""The metadata backend in memory (the protocol of store/metadata.py), for fast component tests.

A real implementation, not a stub: it passes the same contract tests as SQLite
(tests/unit/test_meta_contract.py), so a test that runs the engine on it runs the same rules.

- Transactions. A write runs `fn` on the live state and keeps an undo journal of every change; if
  `fn` raises, the journal is played backwards, which restores the state exactly (a write costs
  what it touches, not a copy of the store).
- No lock. `read` and `write` never await while they run `fn`, so on their event loop nothing else
  runs in between: writes are serialised, and a read sees only committed states, by construction.
  An asyncio.Lock would add nothing; one becomes necessary the day `write` awaits inside (to model
  commit latency, say). Not thread-safe: one event loop per instance.
- No aliasing. Records are copied on the way in and on the way out (the dicts and lists in them
  too), so a caller that mutates what it passed or got cannot change the store; and the object
  `fn` receives refuses every call once `fn` has returned (so does a scan iterator that escaped).
- Keys are Python strings, which compare by code point: the order of their UTF-8 bytes, S3's.
  Each bucket keeps its keys in a sorted list, and a scan bisects it.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tunnelmesh.store.metadata import BUCKET_ATTRS, KEEP, Keep
from tunnelmesh.store.migrations import LATEST
from tunnelmesh.store.records import (
    SYSTEM_BUCKET,
    Bucket,
    CompletedUpload,
    Hint,
    Listed,
    Lock,
    NodeState,
    ObjectRecord,
    ObjectRef,
    Part,
    SealedRow,
    Segment,
    Upload,
    VersionEntry,
)
from tunnelmesh.store.sse import kid_of

if TYPE_CHECKING:
    from tunnelmesh.store.metadata import MetaBackend, MetaReads, MetaTx, Settle

log = logging.getLogger("tunnelmesh.store")
T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

_MISSING: Any = object()  # "the key was absent", in the undo journal


def _copy_object(r: ObjectRecord, marker: bool | None = None) -> ObjectRecord:
    return dataclasses.replace(
        r,
        headers=dict(r.headers),
        checksums=dict(r.checksums),
        # Segment is frozen, but its checksums dict is not
        segments=[Segment(s.blob, s.size, s.md5, dict(s.checksums)) for s in r.segments],
        tags=dict(r.tags) if r.tags is not None else None,
        # an all-empty lock reads back as none, as from a row whose three columns are empty
        lock=r.lock if r.lock is not None and r.lock != Lock() else None,
        marker=r.marker if marker is None else marker,
    )


def _ref(r: ObjectRecord) -> ObjectRef:
    lock = r.lock or Lock()
    blobs = [s.blob for s in r.segments]
    return ObjectRef(
        r.size, r.etag, r.mtime, blobs, r.version_id, r.seq, lock.mode, lock.until, lock.legal_hold, r.marker
    )


def _listed(r: ObjectRecord) -> Listed:
    """What a listing carries (the protocol's scan_objects)."""
    return Listed(r.key, r.size, r.etag, r.mtime, r.owner)


def _entry(r: ObjectRecord) -> VersionEntry:
    return VersionEntry(r.key, r.version_id, r.seq, r.marker, r.size, r.etag, r.mtime, r.owner)


def _copy_upload(u: Upload) -> Upload:
    return dataclasses.replace(u, headers=dict(u.headers))


def _copy_part(p: Part) -> Part:
    return dataclasses.replace(p, checksums=dict(p.checksums))


def _copy_done(d: CompletedUpload) -> CompletedUpload:
    return dataclasses.replace(d, checksums=dict(d.checksums))


@dataclasses.dataclass(frozen=True, slots=True)
class _Completed:
    bucket: str
    key: str
    done: CompletedUpload
    mtime: float


@dataclasses.dataclass(slots=True)
class _State:
    buckets: dict[str, Bucket] = dataclasses.field(default_factory=dict)
    # bucket -> key -> record, and the same keys sorted (scans bisect them)
    objects: dict[str, dict[str, ObjectRecord]] = dataclasses.field(default_factory=dict)
    keys: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    # bucket -> (key, nseq) -> (the noncurrent version or delete marker, since), and those sorted
    versions: dict[str, dict[tuple[str, int], tuple[ObjectRecord, float]]] = dataclasses.field(default_factory=dict)
    vkeys: dict[str, list[tuple[str, int]]] = dataclasses.field(default_factory=dict)
    uploads: dict[str, Upload] = dataclasses.field(default_factory=dict)
    last_active: dict[str, float] = dataclasses.field(default_factory=dict)
    parts: dict[str, dict[int, Part]] = dataclasses.field(default_factory=dict)
    completed: dict[str, _Completed] = dataclasses.field(default_factory=dict)
    freed: dict[str, float] = dataclasses.field(default_factory=dict)
    writer_tags: dict[str, str] = dataclasses.field(default_factory=dict)  # tag -> node
    nodes: dict[str, str] = dataclasses.field(default_factory=dict)  # node -> the data dir holding it
    tag_claimed: dict[str, float] = dataclasses.field(default_factory=dict)  # tag -> claimed_at
    tag_retired: dict[str, float] = dataclasses.field(default_factory=dict)
    tag_swept: dict[str, float] = dataclasses.field(default_factory=dict)
    # node -> (listen, started, seen, interval, release)
    beats: dict[str, tuple[str, float, float, float, int]] = dataclasses.field(default_factory=dict)
    leases: dict[str, tuple[str | None, float, float | None]] = dataclasses.field(default_factory=dict)
    # (bucket, key, nseq, kind) -> at: the lifecycle time index (a scan sorts it: component tests are small)
    hints: dict[tuple[str, str, int, str], float] = dataclasses.field(default_factory=dict)


class _Reads:
    """MetaReads over the live state, for as long as its `fn` runs."""

    def __init__(self, state: _State) -> None:
        self._state: _State | None = state

    def _s(self) -> _State:
        if self._state is None:
            raise RuntimeError("a metadata snapshot used after its read or write function returned")
        return self._state

    def _end(self) -> None:
        self._state = None

    def bucket(self, name: str) -> Bucket | None:
        return self._s().buckets.get(name)  # frozen, nothing mutable in it: no copy needed

    def buckets(self) -> list[Bucket]:
        s = self._s()
        return [s.buckets[n] for n in sorted(s.buckets)]

    def freshness(self, keys: Sequence[str], bucket: str | None) -> tuple[dict[str, str], Bucket | None]:
        s = self._s()
        system = s.objects.get(SYSTEM_BUCKET, {})
        etags = {k: system[k].etag for k in keys if k in system}
        return etags, s.buckets.get(bucket) if bucket is not None else None

    def store_used(self) -> int:
        return sum(b.used + b.mpu_used for b in self._s().buckets.values() if b.name != SYSTEM_BUCKET)

    def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        r = self._s().objects.get(bucket, {}).get(key)
        return _copy_object(r) if r is not None else None

    def object_ref(self, bucket: str, key: str) -> ObjectRef | None:
        r = self._s().objects.get(bucket, {}).get(key)
        return _ref(r) if r is not None else None

    def scan_objects(self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int) -> Iterator[Listed]:
        self._s()
        return self._scan(bucket, start, inclusive, end, limit, _listed)

    def _scan(
        self, bucket: str, pos: str, inclusive: bool, end: str | None, limit: int, shown: Callable[[ObjectRecord], R]
    ) -> Iterator[R]:
        # Bisect again from the last key at every step (O(log n)): a write transaction may change the
        # bucket between two steps, and an index kept across them would then skip or repeat keys.
        for _ in range(limit):
            s = self._s()
            keys = s.keys.get(bucket, [])
            i = bisect_left(keys, pos) if inclusive else bisect_right(keys, pos)
            if i == len(keys) or (end is not None and keys[i] >= end):
                return
            pos, inclusive = keys[i], False
            yield shown(s.objects[bucket][pos])

    def upload(self, upload_id: str) -> Upload | None:
        u = self._s().uploads.get(upload_id)
        return _copy_upload(u) if u is not None else None

    def upload_last_active(self, upload_id: str) -> float | None:
        return self._s().last_active.get(upload_id)

    def parts(self, upload_id: str, after: int, limit: int) -> list[Part]:
        have = self._s().parts.get(upload_id, {})
        numbers = heapq.nsmallest(limit, (n for n in have if n > after))
        return [_copy_part(have[n]) for n in numbers]

    def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[Upload]:
        marker = (key_marker, upload_id_marker)
        found = (
            (u.key, u.upload_id, u)
            for u in self._s().uploads.values()
            if u.bucket == bucket and u.key.startswith(prefix) and (u.key, u.upload_id) > marker
        )
        return [_copy_upload(u) for _, _, u in heapq.nsmallest(limit, found, key=lambda f: (f[0], f[1]))]

    def pending_uploads(self) -> dict[str, int]:
        return dict(Counter(u.bucket for u in self._s().uploads.values()))

    def sealed_rows(self, kid: str, limit: int) -> list[SealedRow]:
        s = self._s()
        out = [
            SealedRow("objects", r.bucket, r.key, None, r.sse)
            for keys in s.objects.values()
            for r in keys.values()
            if r.sse
        ]
        out += [
            SealedRow("versions", r.bucket, r.key, nseq, r.sse)
            for keys in s.versions.values()
            for (_, nseq), (r, _) in keys.items()
            if r.sse
        ]
        out += [SealedRow("uploads", u.bucket, u.key, u.upload_id, u.sse) for u in s.uploads.values() if u.sse]
        return [r for r in out if kid_of(r.sse) == kid][:limit]

    def sse_kids(self) -> dict[str, int]:
        s = self._s()
        rows = [r.sse for keys in s.objects.values() for r in keys.values()]
        rows += [r.sse for keys in s.versions.values() for r, _ in keys.values()]
        rows += [u.sse for u in s.uploads.values()]
        return dict(Counter(kid_of(x) for x in rows if x is not None))

    def stale_uploads(self, cutoff: float, limit: int) -> list[Upload]:
        s = self._s()
        # ties broken by id: an order that does not depend on insertion
        stale = ((t, uid) for uid, t in s.last_active.items() if t < cutoff)
        return [_copy_upload(s.uploads[uid]) for _, uid in heapq.nsmallest(limit, stale)]

    def completed_upload(self, bucket: str, key: str, upload_id: str) -> CompletedUpload | None:
        c = self._s().completed.get(upload_id)
        if c is None or (c.bucket, c.key) != (bucket, key):
            return None
        return _copy_done(c.done)

    def clock(self) -> float:
        return time.time()

    def freed_before(self, t: float, limit: int | None) -> list[str]:
        queued = ((at, blob) for blob, at in self._s().freed.items() if at < t)
        chosen = sorted(queued) if limit is None else heapq.nsmallest(limit, queued)
        return [blob for _, blob in chosen]

    def count_usage(self) -> dict[str, tuple[int, int, int, int, int]]:
        s = self._s()
        counts: dict[str, list[int]] = {}
        for bucket, recs in s.objects.items():
            if recs:
                counts[bucket] = [sum(r.size for r in recs.values()), len(recs), 0, 0, 0]
        for bucket, vers in s.versions.items():
            if vers:
                c = counts.setdefault(bucket, [0, 0, 0, 0, 0])
                size = sum(r.size for r, _ in vers.values())
                c[0] += size
                c[3] += size
                c[4] += len(vers)
        for upload_id, parts in s.parts.items():
            if parts:
                c = counts.setdefault(s.uploads[upload_id].bucket, [0, 0, 0, 0, 0])
                c[2] += sum(p.size for p in parts.values())
        return {b: (c[0], c[1], c[2], c[3], c[4]) for b, c in counts.items()}

    def referenced_blobs(self, tags: Collection[str] | None = None) -> set[str]:
        s = self._s()
        refs = {seg.blob for recs in s.objects.values() for r in recs.values() for seg in r.segments}
        refs.update(seg.blob for vers in s.versions.values() for r, _ in vers.values() for seg in r.segments)
        refs.update(p.blob for parts in s.parts.values() for p in parts.values())
        if tags is None:
            return refs
        suffixes = tuple(tags)
        return {b for b in refs if b.endswith(suffixes)}

    def version(self, bucket: str, key: str, seq: int) -> ObjectRecord | None:
        v = self._s().versions.get(bucket, {}).get((key, -seq))
        return _copy_object(v[0]) if v is not None else None

    def version_since(self, bucket: str, key: str, seq: int) -> float | None:
        v = self._s().versions.get(bucket, {}).get((key, -seq))
        return v[1] if v is not None else None

    def null_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        found = self._null_version(bucket, key)
        return _ref(found[1]) if found is not None else None

    def _null_version(self, bucket: str, key: str) -> tuple[int, ObjectRecord] | None:
        """(nseq, record) of the key's noncurrent null version; its versions are few: a walk is fine."""
        s = self._s()
        vkeys = s.vkeys.get(bucket, [])
        i = bisect_left(vkeys, (key, -(2**63)))
        while i < len(vkeys) and vkeys[i][0] == key:
            rec = s.versions[bucket][vkeys[i]][0]
            if rec.version_id is None:
                return vkeys[i][1], rec
            i += 1
        return None

    def newest_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        s = self._s()
        vkeys = s.vkeys.get(bucket, [])
        i = bisect_left(vkeys, (key, -(2**63)))
        if i == len(vkeys) or vkeys[i][0] != key:
            return None
        return _ref(s.versions[bucket][vkeys[i]][0])

    def scan_versions(
        self, bucket: str, start_key: str, start_nseq: int, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        self._s()
        return self._scan_versions(bucket, (start_key, start_nseq), inclusive, end, limit)

    def _scan_versions(
        self, bucket: str, pos: tuple[str, int], inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        # as _scan: bisected again at every step
        for _ in range(limit):
            s = self._s()
            vkeys = s.vkeys.get(bucket, [])
            i = bisect_left(vkeys, pos) if inclusive else bisect_right(vkeys, pos)
            if i == len(vkeys) or (end is not None and vkeys[i][0] >= end):
                return
            pos, inclusive = vkeys[i], False
            yield _entry(s.versions[bucket][pos][0])

    def scan_current(
        self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        self._s()
        return self._scan(bucket, start, inclusive, end, limit, _entry)

    def due_hints(self, before: float, limit: int) -> list[Hint]:
        due = sorted((at, k) for k, at in self._s().hints.items() if at < before)
        return [Hint(*k, at) for at, k in due[:limit]]

    def writer_tags(self, node: str) -> list[str]:
        s = self._s()
        return [tag for tag, owner in s.writer_tags.items() if owner == node and tag not in s.tag_swept]

    def nodes(self) -> list[NodeState]:
        s, now = self._s(), time.time()
        out = []
        for node in sorted(s.nodes):
            listen, started, seen, _, release = s.beats.get(node, ("", None, None, 0.0, None))
            out.append(NodeState(node, listen, started, seen, None if seen is None else now - seen, release))
        return out

    def silent_writer_tags(self, silent_for: float) -> dict[str, list[str]]:
        s = self._s()
        last: dict[str, float] = {}
        for tag, node in s.writer_tags.items():
            last[node] = max(last.get(node, 0.0), s.tag_claimed[tag])
        for node, beat in s.beats.items():
            last[node] = max(last.get(node, 0.0), beat[2])
        now = time.time()
        found: dict[str, list[str]] = {}
        for tag, node in s.writer_tags.items():
            if node not in s.beats:  # never beat: see MetaReads.silent_writer_tags
                continue
            if tag not in s.tag_swept and last[node] < now - max(silent_for, 3 * s.beats[node][3]):
                found.setdefault(node, []).append(tag)
        return found


class _Tx(_Reads):
    """MetaTx: every change goes through `_set` / `_pop`, which journal how to undo it."""

    def __init__(self, state: _State) -> None:
        super().__init__(state)
        self._undo: list[Callable[[], None]] = []

    def _rollback(self) -> None:
        # backwards, so each undo finds the state exactly as its change left it
        while self._undo:
            self._undo.pop()()

    def _set(self, d: dict[K, V], k: K, v: V) -> None:
        old = d.get(k, _MISSING)
        d[k] = v
        self._undo.append(lambda: _restore(d, k, old))

    def _pop(self, d: dict[K, V], k: K) -> V | None:
        old = d.pop(k, _MISSING)
        if old is _MISSING:
            return None
        self._undo.append(lambda: d.__setitem__(k, old))
        return old  # type: ignore[no-any-return]  # _MISSING is Any; here it is a V

    # ---- locks: writes are serialised (see the module docstring), so these are plain reads --------

    def lock_bucket(self, name: str) -> Bucket | None:
        return self.bucket(name)

    def lock_bucket_and_ref(self, name: str, key: str) -> tuple[Bucket | None, ObjectRef | None]:
        b = self.lock_bucket(name)
        return b, self.object_ref(name, key) if b is not None else None

    def lock_store(self) -> int:
        return self.store_used()

    # ---- buckets ----------------------------------------------------------------------------------

    def insert_bucket(self, bucket: Bucket) -> None:
        s = self._s()
        if bucket.name in s.buckets:  # SQLite's primary key refuses it too; the rules check first
            raise ValueError(f"bucket {bucket.name!r} exists")
        self._set(s.buckets, bucket.name, bucket)

    def delete_bucket(self, name: str) -> None:
        self._pop(self._s().buckets, name)

    def set_quota(self, name: str, quota: int | None) -> None:
        s = self._s()
        b = s.buckets.get(name)
        if b is not None:
            self._set(s.buckets, name, dataclasses.replace(b, quota=quota))

    def set_bucket_attr(self, name: str, column: str, value: str | int | None) -> None:
        if column not in BUCKET_ATTRS:
            raise ValueError(f"not a bucket attribute: {column!r}")
        s = self._s()
        b = s.buckets.get(name)
        if b is not None:
            # as a SQL row stores it: object_lock an integer read back as a bool
            stored: Any = bool(value) if column == "object_lock" else value
            self._set(s.buckets, name, dataclasses.replace(b, **{column: stored}))

    def add_usage(
        self, name: str, used: int = 0, objects: int = 0, mpu_used: int = 0, nc_used: int = 0, nc_objects: int = 0
    ) -> None:
        s = self._s()
        b = s.buckets.get(name)
        if b is not None:
            new = dataclasses.replace(
                b,
                used=b.used + used,
                objects=b.objects + objects,
                mpu_used=b.mpu_used + mpu_used,
                nc_used=b.nc_used + nc_used,
                nc_objects=b.nc_objects + nc_objects,
            )
            self._set(s.buckets, name, new)

    # ---- objects ----------------------------------------------------------------------------------

    def _sorted_add(self, items: list[Any], item: Any) -> None:
        """Insert `item` into the sorted list `items` (the keys a scan bisects), journalled for undo."""
        i = bisect_left(items, item)
        items.insert(i, item)
        self._undo.append(lambda: items.__delitem__(i))

    def _sorted_remove(self, items: list[Any], item: Any) -> None:
        i = bisect_left(items, item)
        del items[i]
        self._undo.append(lambda: items.insert(i, item))

    def put_object(self, rec: ObjectRecord) -> None:
        s = self._s()
        recs = s.objects.get(rec.bucket)
        if recs is None:
            recs = {}
            self._set(s.objects, rec.bucket, recs)
            self._set(s.keys, rec.bucket, [])
        if rec.key not in recs:
            self._sorted_add(s.keys[rec.bucket], rec.key)
        self._set(recs, rec.key, _copy_object(rec))

    def delete_object(self, bucket: str, key: str) -> ObjectRef | None:
        s = self._s()
        recs = s.objects.get(bucket)
        old = self._pop(recs, key) if recs is not None else None
        if old is None:
            return None
        self._sorted_remove(s.keys[bucket], key)
        return _ref(old)

    def delete_objects_in(self, bucket: str) -> list[ObjectRef]:
        s = self._s()
        recs = self._pop(s.objects, bucket)
        keys = self._pop(s.keys, bucket)
        if not recs or keys is None:
            return []
        return [_ref(recs[k]) for k in keys]

    # ---- versions ---------------------------------------------------------------------------------

    def _insert_version(self, rec: ObjectRecord, marker: bool, since: float) -> None:
        s = self._s()
        pos = (rec.key, -rec.seq)
        vers = s.versions.get(rec.bucket)
        if vers is None:
            vers = {}
            self._set(s.versions, rec.bucket, vers)
            self._set(s.vkeys, rec.bucket, [])
        # what SQL's primary key and the versions_null unique index refuse
        if pos in vers:
            raise ValueError(f"{rec.bucket}/{rec.key} has a version of seq {rec.seq} already")
        if rec.version_id is None and self._null_version(rec.bucket, rec.key) is not None:
            raise ValueError(f"{rec.bucket}/{rec.key} has a noncurrent null version already")
        self._sorted_add(s.vkeys[rec.bucket], pos)
        self._set(vers, pos, (_copy_object(rec, marker), since))

    def _remove_version(self, bucket: str, pos: tuple[str, int]) -> ObjectRecord | None:
        s = self._s()
        vers = s.versions.get(bucket)
        old = self._pop(vers, pos) if vers is not None else None
        if old is None:
            return None
        self._sorted_remove(s.vkeys[bucket], pos)
        return old[0]

    def retire_current(self, bucket: str, key: str, since: float) -> ObjectRef | None:
        cur = self._s().objects.get(bucket, {}).get(key)
        if cur is None:
            return None
        self._insert_version(cur, False, since)
        return self.delete_object(bucket, key)

    def promote_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        v = self._s().versions.get(bucket, {}).get((key, -seq))
        if v is None:
            return None
        if v[0].marker:
            raise ValueError(f"a delete marker of {bucket}/{key} cannot be made current")
        if key in self._s().objects.get(bucket, {}):  # SQL's primary key refuses it
            raise ValueError(f"{bucket}/{key} has a current version")
        self._remove_version(bucket, (key, -seq))
        self.put_object(v[0])
        return _ref(v[0])

    def put_version(self, rec: ObjectRecord, marker: bool, since: float) -> None:
        self._insert_version(rec, marker, since)

    def delete_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        old = self._remove_version(bucket, (key, -seq))
        return _ref(old) if old is not None else None

    def delete_null_version(self, bucket: str, key: str) -> ObjectRef | None:
        found = self._null_version(bucket, key)
        return self.delete_version(bucket, key, -found[0]) if found is not None else None

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
        s = self._s()
        since = 0.0
        if current:
            rec = s.objects.get(bucket, {}).get(key)
            if rec is None or rec.seq != seq:
                return False
        else:
            v = s.versions.get(bucket, {}).get((key, -seq))
            if v is None:
                return False
            rec, since = v
        lock = rec.lock or Lock()
        if not isinstance(retention, Keep):
            lock = (
                dataclasses.replace(lock, mode=retention[0], until=retention[1])
                if retention
                else Lock(legal_hold=lock.legal_hold)
            )
        if not isinstance(legal_hold, Keep):
            lock = dataclasses.replace(lock, legal_hold=legal_hold)
        new = _copy_object(
            dataclasses.replace(rec, tags=rec.tags if isinstance(tags, Keep) else tags, lock=lock), rec.marker
        )
        if current:
            self._set(s.objects[bucket], key, new)
        else:
            self._set(s.versions[bucket], (key, -seq), (new, since))
        return True

    # ---- uploads ----------------------------------------------------------------------------------

    def put_hint(self, hint: Hint) -> None:
        self._set(self._s().hints, (hint.bucket, hint.key, hint.nseq, hint.kind), hint.at)

    def drop_hint(self, bucket: str, key: str, nseq: int, kind: str) -> None:
        self._pop(self._s().hints, (bucket, key, nseq, kind))

    def drop_hints(self, bucket: str, kinds: Collection[str] | None = None) -> None:
        hints = self._s().hints
        for k in [k for k in hints if k[0] == bucket and (kinds is None or k[3] in kinds)]:
            self._pop(hints, k)

    def insert_upload(self, up: Upload) -> None:
        s = self._s()
        if up.upload_id in s.uploads:
            raise ValueError(f"upload {up.upload_id!r} exists")
        self._set(s.uploads, up.upload_id, _copy_upload(up))
        self._set(s.last_active, up.upload_id, up.initiated)
        self._set(s.parts, up.upload_id, {})

    def touch_upload(self, upload_id: str, t: float) -> bool:
        s = self._s()
        was = s.last_active.get(upload_id)
        if was is None:
            return False
        if t > was:
            self._set(s.last_active, upload_id, t)
        return True

    def put_part(self, upload_id: str, part: Part) -> None:
        # Only the part: the upload's last activity is touch_upload's (store/commits.py calls both).
        parts = self._s().parts.get(upload_id)
        if parts is None:  # a part of no upload would be counted nowhere and never expire
            raise ValueError(f"no upload {upload_id!r}")
        self._set(parts, part.part_number, _copy_part(part))

    def reseal(self, row: SealedRow, sse: str, kid: str) -> bool:
        s = self._s()
        if row.table == "uploads":
            up = s.uploads.get(str(row.ident))
            if up is None or up.sse != row.sse:
                return False
            self._set(s.uploads, up.upload_id, dataclasses.replace(up, sse=sse))
            return True
        if row.table == "objects":
            recs = s.objects.get(row.bucket, {})
            rec = recs.get(row.key)
            if rec is None or rec.sse != row.sse:
                return False
            self._set(recs, row.key, dataclasses.replace(rec, sse=sse))
            return True
        versions = s.versions.get(row.bucket, {})
        vkey = (row.key, int(row.ident or 0))
        found = versions.get(vkey)
        if found is None or found[0].sse != row.sse:
            return False
        self._set(versions, vkey, (dataclasses.replace(found[0], sse=sse), found[1]))
        return True

    def delete_upload(self, upload_id: str) -> list[Part]:
        s = self._s()
        self._pop(s.uploads, upload_id)
        self._pop(s.last_active, upload_id)
        parts = self._pop(s.parts, upload_id) or {}
        return [_copy_part(parts[n]) for n in sorted(parts)]

    def put_completed(self, upload_id: str, bucket: str, key: str, done: CompletedUpload, mtime: float) -> None:
        self._set(self._s().completed, upload_id, _Completed(bucket, key, _copy_done(done), mtime))

    def forget_completed(self, *, bucket: str | None = None, before: float | None = None) -> None:
        # each filter given drops what it names, as SQLite's two DELETEs do; neither drops nothing
        s = self._s()
        gone = [
            uid
            for uid, c in s.completed.items()
            if (bucket is not None and c.bucket == bucket) or (before is not None and c.mtime < before)
        ]
        for uid in gone:
            self._pop(s.completed, uid)

    # ---- the freed-blob queue ---------------------------------------------------------------------

    def queue_freed(self, blob_ids: Collection[str], at: float | None) -> None:
        at = time.time() if at is None else at
        freed = self._s().freed
        for blob in blob_ids:
            if blob not in freed:  # queued earlier: its first time stands (it has waited since then)
                self._set(freed, blob, at)

    def forget_freed(self, blob_ids: Collection[str]) -> None:
        freed = self._s().freed
        for blob in blob_ids:
            self._pop(freed, blob)

    def claim_node(self, node: str, owner: str, at: float) -> str:
        nodes = self._s().nodes
        if node not in nodes:
            self._set(nodes, node, owner)
        return nodes[node]

    def claim_writer_tag(self, tag: str, node: str) -> bool:
        tags = self._s().writer_tags
        if tag in tags:
            return False
        self._set(tags, tag, node)
        self._set(self._s().tag_claimed, tag, time.time())
        return True

    def beat(self, node: str, listen: str, started_at: float, interval: float) -> None:
        if node in self._s().nodes:
            self._set(self._s().beats, node, (listen, started_at, time.time(), interval, LATEST))

    def hold_writer_tags(self, tags: Collection[str]) -> set[str]:
        return {t for t in tags if t in self._s().tag_retired}  # one writer at a time: nothing to lock

    def retire_writer_tags(self, tags: Collection[str]) -> None:
        s = self._s()
        for t in tags:
            if t in s.writer_tags and t not in s.tag_retired:
                self._set(s.tag_retired, t, time.time())

    def tags_swept(self, tags: Collection[str]) -> None:
        s = self._s()
        for t in tags:
            if t in s.writer_tags:
                self._set(s.tag_swept, t, time.time())

    def take_lease(self, duty: str, node: str, ttl: float, every: float) -> bool:
        leases, now = self._s().leases, time.time()
        holder, expires_at, done_at = leases.get(duty, (None, 0.0, None))
        if holder is not None and holder != node and expires_at > now:
            return False
        if done_at is not None and done_at > now - every:
            return False
        self._set(leases, duty, (node, now + ttl, done_at))
        return True

    def finish_lease(self, duty: str, node: str) -> None:
        leases = self._s().leases
        if duty in leases and leases[duty][0] == node:
            self._set(leases, duty, (None, 0.0, time.time()))


def _restore(d: dict[K, V], k: K, old: V) -> None:
    if old is _MISSING:
        d.pop(k, None)
    else:
        d[k] = old


def _settle(settle: Settle, ok: bool, value: object) -> None:
    # as the SQLite writer does: a failing cleanup is logged, and the write's outcome stands
    try:
        settle(ok, value)
    except Exception:
        log.exception("cleanup after a commit failed")


class MemoryMeta:
    """The in-memory MetaBackend. `replay_writes=True` runs every write function twice, the first
    run rolled back, as a backend with optimistic isolation may (store/metadata.py): a function that
    is not deterministic over its transaction, or touches anything else, shows it in tests."""

    release = LATEST  # what its beat stamps (MetaBackend.release)

    def __init__(self, *, replay_writes: bool = False) -> None:
        self._state: _State | None = _State()
        self._replay = replay_writes

    def _live(self) -> _State:
        if self._state is None:
            raise RuntimeError("metadata backend closed")
        return self._state

    async def read(self, fn: Callable[[MetaReads], T], snapshot: bool = False) -> T:
        # always one snapshot: nothing else runs while fn does
        view = _Reads(self._live())
        try:
            return fn(view)
        finally:
            view._end()

    async def write(self, fn: Callable[[MetaTx], T], settle: Settle | None = None) -> T:
        state = self._live()
        if self._replay:
            rehearsal = _Tx(state)
            try:
                fn(rehearsal)
            except Exception:
                pass  # a deterministic function raises again below, where it counts
            finally:
                rehearsal._rollback()
                rehearsal._end()
        tx = _Tx(state)
        try:
            value = fn(tx)
        except BaseException as e:
            tx._rollback()
            tx._end()
            if settle is not None:
                _settle(settle, False, e)
            raise
        tx._end()
        if settle is not None:
            _settle(settle, True, value)
        return value

    def close(self) -> None:
        self._state = None


if TYPE_CHECKING:
    # mypy checks here that the classes implement the protocols, method by method
    def _conforms(m: MemoryMeta, r: _Reads, t: _Tx) -> tuple[MetaBackend, MetaReads, MetaTx]:
        return m, r, t
