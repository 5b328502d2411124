"""SQLite metadata: buckets, objects, multipart uploads and parts, usage counters.

Keys are TEXT compared with SQLite's BINARY collation, i.e. by their UTF-8 bytes, which is the
order S3 lists in; listing is an index range scan. Every write runs in one BEGIN IMMEDIATE
transaction, which is the commit point for objects and the place where quotas are enforced, so
concurrent writers in any number of worker processes can never overshoot a limit.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunnelmesh.store import migrations
from tunnelmesh.store import records as records_mod
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
from tunnelmesh.store.records import (
    Bucket,
    CompletedUpload,
    Listing,
    ObjectRecord,
    Part,
    Segment,
    Upload,
    WriteConditions,
)

# The coordinator's own bucket (engine.SYSTEM_BUCKET re-exports it). Its records are tiny and bounded by
# the admin's own actions, and it must stay writable when peers fill the store, or a full store would
# lock the admin out (no revoke, no new peer); so it is outside max_size and can have no quota.
SYSTEM_BUCKET = records_mod.SYSTEM_BUCKET
# what max_size limits: every bucket but the coordinator's own
_PEERS_USED = "SELECT COALESCE(SUM(used + mpu_used), 0) FROM buckets WHERE name != ?"
# what an Upload record holds; the table's last column, last_active (the latest part's arrival, else
# the initiation), is read only by stale-upload expiry
_UPLOAD_COLS = "upload_id, bucket, key, initiated, owner, headers, checksum_algorithm, checksum_type"
_OBJ_COLS = "bucket, key, size, etag, mtime, headers, checksums, segments, owner, data"
# what a listing needs; no JSON to parse and no inline bytes to copy
_LIST_COLS = "bucket, key, size, etag, mtime, owner"


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def init_schema(conn: sqlite3.Connection) -> None:
    """Create or upgrade the schema (store/migrations.py); raises SchemaTooNew for a newer release's database."""
    migrations.migrate(conn)


def _segments_to_json(segments: list[Segment]) -> str:
    # [blob, size, md5] plus the part checksums only when there are some: rows of other objects keep
    # their size, and rows written before checksums were kept (three fields) read back alike
    return json.dumps(
        [[s.blob, s.size, s.md5, s.checksums] if s.checksums else [s.blob, s.size, s.md5] for s in segments]
    )


def _insert_object(c: sqlite3.Connection, rec: ObjectRecord) -> None:
    c.execute(
        f"INSERT OR REPLACE INTO objects({_OBJ_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            rec.bucket,
            rec.key,
            rec.size,
            rec.etag,
            rec.mtime,
            json.dumps(rec.headers),
            json.dumps(rec.checksums),
            _segments_to_json(rec.segments),
            rec.owner,
            rec.data,
        ),
    )


# a database row as sqlite3 hands it over: its columns are checked by the code that reads them
Row = tuple[Any, ...]


def _row_to_object(r: Row) -> ObjectRecord:
    return ObjectRecord(
        bucket=r[0],
        key=r[1],
        size=r[2],
        etag=r[3],
        mtime=r[4],
        headers=json.loads(r[5]),
        checksums=json.loads(r[6]),
        segments=[Segment(*seg) for seg in json.loads(r[7])],
        owner=r[8],
        data=r[9],
    )


def _row_to_listed(r: Row) -> ObjectRecord:
    return ObjectRecord(
        bucket=r[0], key=r[1], size=r[2], etag=r[3], mtime=r[4], headers={}, checksums={}, segments=[], owner=r[5]
    )


def _row_to_upload(r: Row) -> Upload:
    ctype = (r[7] or "COMPOSITE") if r[6] else None
    return Upload(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], ctype)


def _row_to_bucket(r: Row) -> Bucket:
    return Bucket(*r)


def prefix_successor(p: str) -> str | None:
    """The smallest string greater than every string that starts with p; None when there is none
    (p is all U+10FFFF: every greater string starts with it)."""
    while p:
        last = ord(p[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # skip surrogates: they are not valid in keys
                nxt = 0xE000
            return p[:-1] + chr(nxt)
        p = p[:-1]
    return None


class Meta:
    """All SQL lives here. One instance per connection; not shared between threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One write. Inside a batch (group commit) it is a savepoint: it fails alone, commits with the rest."""
        if self.c.in_transaction:
            self.c.execute("SAVEPOINT op")
            try:
                yield self.c
            except BaseException:
                self.c.execute("ROLLBACK TO op")
                self.c.execute("RELEASE op")
                raise
            else:
                self.c.execute("RELEASE op")
            return
        self.c.execute("BEGIN IMMEDIATE")
        try:
            yield self.c
        except BaseException:
            self.c.execute("ROLLBACK")
            raise
        else:
            self.c.execute("COMMIT")

    # ---- buckets -------------------------------------------------------------------------

    def bucket(self, name: str) -> Bucket | None:
        r = self.c.execute("SELECT * FROM buckets WHERE name=?", (name,)).fetchone()
        return _row_to_bucket(r) if r else None

    def require_bucket(self, name: str) -> Bucket:
        b = self.bucket(name)
        if b is None:
            raise NoSuchBucket(name)
        return b

    def buckets(self) -> list[Bucket]:
        return [_row_to_bucket(r) for r in self.c.execute("SELECT * FROM buckets ORDER BY name")]

    def create_bucket(self, name: str, owner: str, region: str, now: float) -> None:
        with self.tx() as c:
            row = c.execute("SELECT owner FROM buckets WHERE name=?", (name,)).fetchone()
            if row is not None:
                raise BucketExists(name, owned_by_caller=row[0] == owner)
            c.execute(
                "INSERT INTO buckets(name, owner, created, region) VALUES (?,?,?,?)",
                (name, owner, now, region),
            )

    def delete_bucket(self, name: str, peer: str | None = None) -> list[str]:
        """`peer`: a non-admin asking; it may delete only a bucket it created that has no quota
        (deleting and re-creating a bucket would otherwise drop the quota an admin set on it).
        Checked in the deleting transaction, so the bucket cannot change hands in between.

        Pending multipart uploads do not keep a bucket alive: they are aborted with it, as on AWS
        (tools that empty a bucket by listing its objects never see them). Returns their part blobs."""
        with self.tx() as c:
            b = self.require_bucket(name)
            if peer is not None and (b.owner != peer or b.quota is not None):
                raise BucketDeleteDenied(name)
            if c.execute("SELECT 1 FROM objects WHERE bucket=? LIMIT 1", (name,)).fetchone():
                raise BucketNotEmpty(name)
            freed: list[str] = []
            for (upload_id,) in c.execute("SELECT upload_id FROM uploads WHERE bucket=?", (name,)).fetchall():
                freed += self._drop_upload(c, name, upload_id)[0]
            c.execute("DELETE FROM completed_uploads WHERE bucket=?", (name,))
            c.execute("DELETE FROM buckets WHERE name=?", (name,))
            return freed

    def set_quota(self, name: str, quota: int | None) -> None:
        if name == SYSTEM_BUCKET:
            raise ReservedBucket(name)
        with self.tx() as c:
            self.require_bucket(name)
            c.execute("UPDATE buckets SET quota=? WHERE name=?", (quota, name))

    # ---- space accounting ----------------------------------------------------------------

    def admit(self, bucket: Bucket, delta: int, max_size: int) -> None:
        """Refuse a write that adds `delta` bytes past the bucket quota or the store limit."""
        if delta <= 0 or bucket.name == SYSTEM_BUCKET:
            return
        b_used = bucket.used + bucket.mpu_used
        if bucket.quota is not None and b_used + delta > bucket.quota:
            raise QuotaExceeded("bucket", bucket.name, bucket.quota, b_used, delta)
        total = self.store_used()
        if total + delta > max_size:
            raise QuotaExceeded("store", bucket.name, max_size, total, delta)

    def room(self, bucket: Bucket, max_size: int) -> int:
        """How many more bytes the bucket may take now, under its quota and the store limit."""
        if bucket.name == SYSTEM_BUCKET:
            return max_size  # never refused for space (see SYSTEM_BUCKET); records are far smaller anyway
        room = max_size - self.store_used()
        if bucket.quota is not None:
            room = min(room, bucket.quota - bucket.used - bucket.mpu_used)
        return max(room, 0)

    def store_used(self) -> int:
        """The bytes that count against max_size: all buckets but the coordinator's own."""
        used: int = self.c.execute(_PEERS_USED, (SYSTEM_BUCKET,)).fetchone()[0]
        return used

    # ---- objects -------------------------------------------------------------------------

    def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        r = self.c.execute(f"SELECT {_OBJ_COLS} FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        return _row_to_object(r) if r else None

    def put_object(self, rec: ObjectRecord, cond: WriteConditions, max_size: int) -> list[str]:
        """Commit an object; returns blob ids that are no longer referenced."""
        with self.tx() as c:
            bucket = self.require_bucket(rec.bucket)
            old = c.execute(
                "SELECT size, etag, segments FROM objects WHERE bucket=? AND key=?", (rec.bucket, rec.key)
            ).fetchone()
            _check_write_conditions(cond, rec.bucket, rec.key, old[1] if old else None)
            old_size = old[0] if old else 0
            self.admit(bucket, rec.size - old_size, max_size)
            _insert_object(c, rec)
            c.execute(
                "UPDATE buckets SET used = used + ?, objects = objects + ? WHERE name=?",
                (rec.size - old_size, 0 if old else 1, rec.bucket),
            )
        return [seg[0] for seg in json.loads(old[2])] if old else []

    def delete_objects(
        self,
        bucket: str,
        keys: list[str],
        if_match: dict[str, str] | None = None,
        refused: dict[str, NoSuchKey | PreconditionFailed] | None = None,
    ) -> list[str]:
        """Delete keys that exist (absent keys are fine); returns freed blob ids.

        A key in `if_match` is deleted only if its current ETag is that one (`*`: if it exists),
        decided in this transaction; otherwise it is left alone and `refused[key]` says why
        (PreconditionFailed, or NoSuchKey when it does not exist)."""
        freed: list[str] = []
        with self.tx() as c:
            self.require_bucket(bucket)
            size = count = 0
            for key in keys:
                if if_match is not None and key in if_match:
                    cur = c.execute("SELECT etag FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
                    if cur is None or if_match[key] not in ("*", cur[0]):
                        if refused is not None:
                            refused[key] = NoSuchKey(bucket, key) if cur is None else PreconditionFailed("If-Match")
                        continue
                r = c.execute(
                    "DELETE FROM objects WHERE bucket=? AND key=? RETURNING size, segments", (bucket, key)
                ).fetchone()
                if r:
                    size += r[0]
                    count += 1
                    freed.extend(seg[0] for seg in json.loads(r[1]))
            if count:
                c.execute(
                    "UPDATE buckets SET used = used - ?, objects = objects - ? WHERE name=?",
                    (size, count, bucket),
                )
        return freed

    def delete_object_version(self, bucket: str, key: str, mtime: float, blobs: list[str]) -> list[str]:
        """Delete the object only if it is still the version written at `mtime` on `blobs` (what a
        scrub found rotten): an overwrite since then is a new, acknowledged object and stays. An
        ETag would not do: re-uploading the same bytes gives the same ETag."""
        with self.tx() as c:
            r = c.execute("SELECT mtime, segments FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
            if r is None or r[0] != mtime or [seg[0] for seg in json.loads(r[1])] != blobs:
                return []
            return self.delete_objects(bucket, [key])  # a savepoint inside this transaction

    def list_objects(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        after: str | None,
        after_is_prefix: bool,
        max_keys: int,
    ) -> Listing:
        """One page. `after` excludes itself (and, if a prefix, everything under it)."""
        objects: list[ObjectRecord] = []
        prefixes: list[str] = []
        last: str | None = None
        last_is_prefix = False
        # a continuation token is the client's to send: one from another listing may point before the prefix
        past = prefix_successor(after) if after is not None and after_is_prefix else None
        if after is not None and after_is_prefix and past is None:
            return Listing([], [], False, None, False)  # nothing sorts after that prefix's keys
        if past is not None and past > prefix:
            pos, inclusive = past, True
        elif after is not None and after >= prefix:
            pos, inclusive = after, False
        else:
            pos, inclusive = prefix, True
        end = prefix_successor(prefix) if prefix else None
        taken = 0
        while True:
            want = max_keys - taken + 1
            sql = f"SELECT {_LIST_COLS} FROM objects WHERE bucket=? AND key {'>=' if inclusive else '>'} ?"
            args: list[object] = [bucket, pos]
            if end is not None:
                sql += " AND key < ?"
                args.append(end)
            sql += " ORDER BY key LIMIT ?"
            args.append(want)
            # iterate the cursor lazily: after a jump past a common prefix the rest of the batch is never read
            jumped = False
            seen = 0
            last_row_key: str | None = None
            for r in self.c.execute(sql, args):
                seen += 1
                last_row_key = r[1]
                key = r[1]
                if delimiter:
                    i = key.find(delimiter, len(prefix))
                    if i >= 0:
                        cp = key[: i + len(delimiter)]
                        if not (after is not None and cp == after):
                            if taken == max_keys:
                                return Listing(objects, prefixes, True, last, last_is_prefix)
                            prefixes.append(cp)
                            taken += 1
                            last, last_is_prefix = cp, True
                        nxt = prefix_successor(cp)
                        if nxt is None:  # no key sorts after this prefix's keys
                            return Listing(objects, prefixes, False, last, last_is_prefix)
                        pos, inclusive, jumped = nxt, True, True
                        break
                if taken == max_keys:
                    return Listing(objects, prefixes, True, last, last_is_prefix)
                objects.append(_row_to_listed(r))
                taken += 1
                last, last_is_prefix = key, False
            if not jumped:
                if seen < want:
                    return Listing(objects, prefixes, False, last, last_is_prefix)
                assert last_row_key is not None  # a full batch was read
                pos, inclusive = last_row_key, False

    # ---- multipart -----------------------------------------------------------------------

    def create_upload(self, up: Upload) -> None:
        with self.tx() as c:
            self.require_bucket(up.bucket)
            c.execute(
                f"INSERT INTO uploads({_UPLOAD_COLS}, last_active) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    up.upload_id,
                    up.bucket,
                    up.key,
                    up.initiated,
                    up.owner,
                    json.dumps(up.headers),
                    up.checksum_algorithm,
                    up.checksum_type,
                    up.initiated,
                ),
            )

    def get_upload(self, bucket: str, key: str, upload_id: str) -> Upload | None:
        r = self.c.execute(
            f"SELECT {_UPLOAD_COLS} FROM uploads WHERE upload_id=? AND bucket=? AND key=?", (upload_id, bucket, key)
        ).fetchone()
        return _row_to_upload(r) if r else None

    def require_upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        up = self.get_upload(bucket, key, upload_id)
        if up is None:
            self.require_bucket(bucket)
            raise NoSuchUpload(upload_id)
        return up

    def put_part(self, bucket: str, key: str, upload_id: str, part: Part, max_size: int) -> list[str]:
        with self.tx() as c:
            self.require_upload(bucket, key, upload_id)
            b = self.require_bucket(bucket)
            old = c.execute(
                "SELECT size, blob FROM parts WHERE upload_id=? AND part_number=?", (upload_id, part.part_number)
            ).fetchone()
            old_size = old[0] if old else 0
            self.admit(b, part.size - old_size, max_size)
            c.execute(
                "INSERT OR REPLACE INTO parts VALUES (?,?,?,?,?,?,?)",
                (upload_id, part.part_number, part.size, part.etag, part.mtime, part.blob, json.dumps(part.checksums)),
            )
            c.execute("UPDATE buckets SET mpu_used = mpu_used + ? WHERE name=?", (part.size - old_size, bucket))
            c.execute(
                "UPDATE uploads SET last_active = MAX(COALESCE(last_active, 0), ?) WHERE upload_id=?",
                (part.mtime, upload_id),
            )
        return [old[1]] if old else []

    def upload_last_active(self, upload_id: str) -> float | None:
        r = self.c.execute("SELECT last_active FROM uploads WHERE upload_id=?", (upload_id,)).fetchone()
        return r[0] if r else None

    def touch_upload(self, upload_id: str, now: float) -> bool:
        """Restart an upload's stale-expiry clock (a part is streaming to it); False if it is gone."""
        with self.tx() as c:
            r = c.execute(
                "UPDATE uploads SET last_active = MAX(COALESCE(last_active, 0), ?) WHERE upload_id=?", (now, upload_id)
            )
            return r.rowcount == 1

    def parts(self, upload_id: str, after: int = 0, limit: int = 10001) -> list[Part]:
        return [
            Part(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))
            for r in self.c.execute(
                "SELECT part_number, size, etag, mtime, blob, checksums FROM parts "
                "WHERE upload_id=? AND part_number > ? ORDER BY part_number LIMIT ?",
                (upload_id, after, limit),
            )
        ]

    def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[Upload]:
        end = prefix_successor(prefix)
        rows = self.c.execute(
            f"SELECT {_UPLOAD_COLS} FROM uploads WHERE bucket=? AND key >= ? AND (? IS NULL OR key < ?) "
            "AND (key > ? OR (key = ? AND upload_id > ?)) ORDER BY key, upload_id LIMIT ?",
            (bucket, prefix, end, end, key_marker, key_marker, upload_id_marker, limit),
        ).fetchall()
        return [_row_to_upload(r) for r in rows]

    def pending_uploads(self) -> dict[str, int]:
        """How many multipart uploads each bucket has in progress (buckets with none are left out)."""
        return dict(self.c.execute("SELECT bucket, COUNT(*) FROM uploads GROUP BY bucket").fetchall())

    def _drop_upload(self, c: sqlite3.Connection, bucket: str, upload_id: str) -> tuple[list[str], int]:
        """Delete an upload and its parts inside the caller's transaction; returns the part blobs and bytes."""
        rows = c.execute("DELETE FROM parts WHERE upload_id=? RETURNING size, blob", (upload_id,)).fetchall()
        c.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
        size = sum(r[0] for r in rows)
        c.execute("UPDATE buckets SET mpu_used = mpu_used - ? WHERE name=?", (size, bucket))
        return [r[1] for r in rows], size

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> list[str]:
        with self.tx() as c:
            self.require_upload(bucket, key, upload_id)
            return self._drop_upload(c, bucket, upload_id)[0]

    def stale_uploads(self, cutoff: float, limit: int) -> list[Upload]:
        """Uploads that have received no part (nor, without parts, been initiated) since `cutoff`, oldest first."""
        rows = self.c.execute(
            f"SELECT {_UPLOAD_COLS} FROM uploads WHERE last_active < ? ORDER BY last_active LIMIT ?", (cutoff, limit)
        ).fetchall()
        return [_row_to_upload(r) for r in rows]

    def expire_upload(self, upload_id: str, cutoff: float) -> tuple[list[str], int] | None:
        """Abort an upload if it is still stale; returns the freed part blobs and bytes, or None if kept.

        The staleness is decided again under the commit, so a part that arrived after the upload was
        found keeps it alive, and an upload already gone (completed, aborted, expired by another
        worker) is left alone: expiring twice is harmless.
        """
        with self.tx() as c:
            r = c.execute("SELECT bucket FROM uploads WHERE upload_id=? AND last_active < ?", (upload_id, cutoff))
            row = r.fetchone()
            if row is None:
                return None
            return self._drop_upload(c, row[0], upload_id)

    def completed_upload(self, bucket: str, key: str, upload_id: str) -> CompletedUpload | None:
        r = self.c.execute(
            "SELECT etag, parts, checksums FROM completed_uploads WHERE upload_id=? AND bucket=? AND key=?",
            (upload_id, bucket, key),
        ).fetchone()
        return CompletedUpload(r[0], r[1], json.loads(r[2] or "{}")) if r else None

    def complete_upload(
        self,
        upload_id: str,
        rec: ObjectRecord,
        used_parts: list[int],
        parts_sig: str,
        cond: WriteConditions,
        max_size: int,
    ) -> list[str]:
        """Turn the chosen parts into the object; returns blob ids no longer referenced.

        The caller built `rec` from parts it read before this transaction, and any of them may have
        been re-uploaded since. So the object's segments are decided here, from the parts this
        transaction sees: segment i names part used_parts[i] as it is now, provided it still has the
        size and ETag (rec.segments[i].md5, the ETag the client listed) the caller built from, else
        InvalidPart. Every part blob the object does not name is freed: no blob is ever both named
        and freed, or neither.
        """
        with self.tx() as c:
            if self.get_upload(rec.bucket, rec.key, upload_id) is None:
                done = self.completed_upload(rec.bucket, rec.key, upload_id)
                if done is not None and done.parts_sig == parts_sig:
                    return []  # an identical Complete committed first; its object is the one asked for
                self.require_upload(rec.bucket, rec.key, upload_id)  # raises NoSuchUpload
            bucket = self.require_bucket(rec.bucket)
            old = c.execute(
                "SELECT size, etag, segments FROM objects WHERE bucket=? AND key=?", (rec.bucket, rec.key)
            ).fetchone()
            _check_write_conditions(cond, rec.bucket, rec.key, old[1] if old else None)
            # each part's checksums of the object's algorithm go with it: a part read and GetObjectAttributes
            # report them after the parts rows are gone
            current = {
                r[0]: Segment(r[3], r[1], r[2], {a: v for a, v in json.loads(r[4]).items() if a in rec.checksums})
                for r in c.execute(
                    "SELECT part_number, size, etag, blob, checksums FROM parts WHERE upload_id=?", (upload_id,)
                )
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
            old_size = old[0] if old else 0
            # parts move from "in progress" to the object; only a growth of the total needs admission
            self.admit(bucket, rec.size - old_size - mpu_bytes, max_size)
            _insert_object(c, rec)
            c.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
            c.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
            c.execute(
                "INSERT OR REPLACE INTO completed_uploads(upload_id, bucket, key, etag, parts, mtime, checksums) "
                "VALUES (?,?,?,?,?,?,?)",
                (upload_id, rec.bucket, rec.key, rec.etag, parts_sig, rec.mtime, json.dumps(rec.checksums)),
            )
            # keep the retry record small: only recent completions are remembered
            c.execute("DELETE FROM completed_uploads WHERE mtime < ?", (rec.mtime - 3600,))
            c.execute(
                "UPDATE buckets SET used = used + ?, objects = objects + ?, mpu_used = mpu_used - ? WHERE name=?",
                (rec.size - old_size, 0 if old else 1, mpu_bytes, rec.bucket),
            )
        freed = unused
        if old:
            freed += [seg[0] for seg in json.loads(old[2])]
        return freed

    def replace_bucket(self, bucket: str, records: list[ObjectRecord]) -> list[str]:
        """Make `bucket` hold exactly `records`, in one transaction (a restore is all or nothing, even
        across a crash); no space check (only for the coordinator's own bucket). Returns the blobs
        that no longer have a name."""
        if bucket != SYSTEM_BUCKET:  # it skips quota and max_size, which only that bucket may
            raise ValueError(f"replace_bucket is for {SYSTEM_BUCKET} only")
        with self.tx() as c:
            self.require_bucket(bucket)
            old: set[str] = set()
            for (segs,) in c.execute("SELECT segments FROM objects WHERE bucket=? AND segments != '[]'", (bucket,)):
                old.update(seg[0] for seg in json.loads(segs))
            c.execute("DELETE FROM objects WHERE bucket=?", (bucket,))
            for rec in records:
                _insert_object(c, rec)
            c.execute(
                "UPDATE buckets SET used = (SELECT COALESCE(SUM(size), 0) FROM objects WHERE bucket=?), "
                "objects = (SELECT COUNT(*) FROM objects WHERE bucket=?) WHERE name=?",
                (bucket, bucket, bucket),
            )
        kept = {seg.blob for rec in records for seg in rec.segments}
        return sorted(old - kept)

    def verify_usage(self) -> list[dict[str, object]]:
        """Recount every bucket from the object and part rows, in one snapshot, against its counters."""
        self.c.execute("BEGIN")
        try:
            rows = self.c.execute(
                "SELECT b.name, b.used, b.objects, b.mpu_used, COALESCE(o.s, 0), COALESCE(o.c, 0), COALESCE(p.s, 0) "
                "FROM buckets b "
                "LEFT JOIN (SELECT bucket, SUM(size) s, COUNT(*) c FROM objects GROUP BY bucket) o "
                "ON o.bucket = b.name "
                "LEFT JOIN (SELECT u.bucket, SUM(p.size) s FROM parts p JOIN uploads u USING (upload_id) "
                "GROUP BY u.bucket) p ON p.bucket = b.name ORDER BY b.name"
            ).fetchall()
        finally:
            self.c.execute("COMMIT")
        return [
            {
                "bucket": r[0],
                "used": r[1],
                "objects": r[2],
                "multipart_used": r[3],
                "counted_used": r[4],
                "counted_objects": r[5],
                "counted_multipart_used": r[6],
                "ok": (r[1], r[2], r[3]) == (r[4], r[5], r[6]),
            }
            for r in rows
        ]

    # ---- freed blobs ---------------------------------------------------------------------

    def commit_freeing(self, fn: Callable[[Meta], list[str]], now: float) -> list[str]:
        """Run a write whose result is the blobs it stopped referencing, and queue those blobs in
        the same transaction: if the write commits, the queue entry commits with it."""
        with self.tx() as c:
            freed = fn(self)
            if freed:
                c.executemany(
                    "INSERT OR IGNORE INTO freed_blobs(blob, freed_at) VALUES (?, ?)", ((b, now) for b in freed)
                )
        return freed

    def freed_before(self, t: float, limit: int) -> list[str]:
        """Queued blobs freed before `t`, oldest first."""
        rows = self.c.execute(
            "SELECT blob FROM freed_blobs WHERE freed_at < ? ORDER BY freed_at LIMIT ?", (t, limit)
        ).fetchall()
        return [r[0] for r in rows]

    def forget_freed(self, blob_ids: list[str]) -> None:
        """Drop queue entries whose files are gone."""
        with self.tx() as c:
            c.executemany("DELETE FROM freed_blobs WHERE blob=?", ((b,) for b in blob_ids))

    # ---- recovery ------------------------------------------------------------------------

    def referenced_blobs(self) -> set[str]:
        """Every blob named by an object or a part, in one snapshot (a Complete moves blobs from
        parts to an object, so two separate reads could miss them)."""
        refs: set[str] = set()
        self.c.execute("BEGIN")
        try:
            for (segs,) in self.c.execute("SELECT segments FROM objects WHERE segments != '[]'"):
                refs.update(seg[0] for seg in json.loads(segs))
            refs.update(b for (b,) in self.c.execute("SELECT blob FROM parts"))
        finally:
            self.c.execute("COMMIT")
        return refs

    def referenced_blobs_tagged(self, tags: Collection[str]) -> set[str]:
        """The blobs with one of these writer tags (an id's last digits, all of one length) named
        by an object or a part, in one snapshot. SQLite still reads every row, but only the objects
        whose segments contain a tag are decoded here, so this costs a fraction of `referenced_blobs`."""
        wanted = sorted(set(tags))
        if not wanted:
            return set()
        n = len(wanted[0])
        if any(len(t) != n for t in wanted):
            raise ValueError("writer tags of different lengths")
        refs: set[str] = set()
        # a tag followed by the quote closing the id: a superset (an md5 may end alike), decoded below
        contains = " OR ".join(["instr(segments, ?) > 0"] * len(wanted))
        marks = ",".join("?" * len(wanted))
        self.c.execute("BEGIN")
        try:
            rows = self.c.execute(
                f"SELECT segments FROM objects WHERE segments != '[]' AND ({contains})", [t + '"' for t in wanted]
            )
            for (segs,) in rows:
                refs.update(seg[0] for seg in json.loads(segs) if seg[0][-n:] in wanted)
            parts = self.c.execute(f"SELECT blob FROM parts WHERE substr(blob, -{n}) IN ({marks})", wanted)
            refs.update(b for (b,) in parts)
        finally:
            self.c.execute("COMMIT")
        return refs


def _check_write_conditions(cond: WriteConditions, bucket: str, key: str, current_etag: str | None) -> None:
    if cond.if_none_match_any and current_etag is not None:
        raise PreconditionFailed("If-None-Match")
    if cond.if_match is not None:
        if current_etag is None:
            raise NoSuchKey(bucket, key)
        if cond.if_match != "*" and cond.if_match != current_etag:
            raise PreconditionFailed("If-Match")
