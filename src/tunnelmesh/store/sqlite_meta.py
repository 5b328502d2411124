"""The SQLite metadata backend: the embedded default (store/metadata.py is the protocol).

Keys are TEXT compared with SQLite's BINARY collation, i.e. by their UTF-8 bytes, which is the order
S3 lists in; a listing is an index range scan. Reads run inline on the event loop over a connection of
their own (indexed lookups take microseconds; WAL gives each statement a snapshot, and a `read` of
several statements runs in one read transaction). Writes go to the group writer (store/writer.py):
one thread per process that commits the writes queued meanwhile in one BEGIN IMMEDIATE transaction,
each in a savepoint of its own. SQLite lets one writer in at a time, across every worker process:
that is what makes `lock_bucket` and `lock_store` hold, so they only read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.listing import prefix_successor
from tunnelmesh.store.meta_rows import (
    BUCKET_COLS,
    GONE_COLS,
    LIST_COLS,
    OBJ_COLS,
    PART_COLS,
    PROMOTE_SELECT,
    REF_COLS,
    SQLITE_CLIST_COLS,
    SQLITE_SEQ,
    UPLOAD_COLS,
    VERSION_COLS,
    VLIST_COLS,
    VREF_COLS,
    attr_values,
    attrs_update,
    bucket_row,
    listed_rows,
    marks,
    object_row,
    retire_select,
    row_to_bucket,
    row_to_object,
    row_to_part,
    row_to_ref,
    row_to_upload,
    row_to_version,
    row_to_version_entry,
    upload_row,
    usage_tuples,
    version_row,
)
from tunnelmesh.store.metadata import BUCKET_ATTRS, KEEP, Keep, Settle
from tunnelmesh.store.migrations import LATEST, SchemaError
from tunnelmesh.store.records import (
    SYSTEM_BUCKET,
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
from tunnelmesh.store.sqlite_db import connect, init_schema
from tunnelmesh.store.writer import GroupWriter

T = TypeVar("T")

# the tables holding wrapped data keys (SSE-S3) and what names a row beside its bucket and key
_SEALED_TABLES = (("objects", "NULL"), ("versions", "nseq"), ("uploads", "upload_id"))
_SEALED_TABLE = {t: t for t, _ in _SEALED_TABLES}  # a row's table, only ever one of these three

_INSERT_OBJECT = f"INSERT OR REPLACE INTO objects({OBJ_COLS}) VALUES ({marks(OBJ_COLS)})"
_INSERT_VERSION = f"INSERT INTO versions({VERSION_COLS}) VALUES ({marks(VERSION_COLS)})"
_INSERT_BUCKET = f"INSERT INTO buckets({BUCKET_COLS}) VALUES ({marks(BUCKET_COLS)})"

# what max_size limits: every bucket but the coordinator's own
_PEERS_USED = "SELECT COALESCE(SUM(used + mpu_used), 0) FROM buckets WHERE name != ?"

# a PUT's first read (lock_bucket_and_ref): the bucket's row, the key's current one if any, and store_used (which
# lock_store answers next, unless the counters change first), in one statement
_NB = BUCKET_COLS.count(",") + 1
_NR = REF_COLS.count(",") + 1
_BUCKET_AND_REF = (
    f"SELECT {', '.join('b.' + c.strip() for c in BUCKET_COLS.split(','))}, "
    f"{', '.join('o.' + c.strip() for c in REF_COLS.split(','))}, ({_PEERS_USED}) "
    "FROM buckets b LEFT JOIN objects o ON o.bucket = b.name AND o.key = ? WHERE b.name = ?"
)


@lru_cache(maxsize=8)
def _freshness_sql(n: int) -> str:
    """n system-bucket ETags and one bucket row in one result: an ETag row has NULL bucket columns, the bucket
    row NULL key and etag (keys are never NULL)."""
    nulls = ", ".join(["NULL"] * len(BUCKET_COLS.split(",")))
    return (
        f"SELECT key, etag, {nulls} FROM objects WHERE bucket=? AND key IN ({','.join('?' * n)}) "
        f"UNION ALL SELECT NULL, NULL, {BUCKET_COLS} FROM buckets WHERE name=?"
    )


class SqliteTx:
    """MetaReads and MetaTx over one connection: the statements, nothing else. Not shared between threads."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.c = conn
        # store_used as lock_bucket_and_ref read it, for the lock_store that follows; dropped by every change
        # of the buckets table. A write transaction's SqliteTx serves one write function (GroupWriter makes
        # one for each), so the value never outlives the write's transaction, nor a rollback of it.
        self._used: int | None = None

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One snapshot for a method of several statements (a no-op inside a transaction already)."""
        if self.c.in_transaction:
            yield
            return
        self.c.execute("BEGIN")
        try:
            yield
        finally:
            self.c.execute("COMMIT")

    # ---- reads ---------------------------------------------------------------------------

    def bucket(self, name: str) -> Bucket | None:
        r = self.c.execute(f"SELECT {BUCKET_COLS} FROM buckets WHERE name=?", (name,)).fetchone()
        return row_to_bucket(r) if r else None

    def buckets(self) -> list[Bucket]:
        return [row_to_bucket(r) for r in self.c.execute(f"SELECT {BUCKET_COLS} FROM buckets ORDER BY name")]

    def freshness(self, keys: Sequence[str], bucket: str | None) -> tuple[dict[str, str], Bucket | None]:
        # primary-key lookups run inline (microseconds each); not in an explicit snapshot, whose BEGIN/COMMIT would
        # cost more than the lookups (see MetaBackend.read)
        if keys and bucket is not None:
            # both in one statement (the usual case: every request on a bucket): each statement outside a
            # transaction takes and drops its own WAL read lock, which cost about as much as a lookup
            etags, row = {}, None
            for r in self.c.execute(_freshness_sql(len(keys)), (SYSTEM_BUCKET, *keys, bucket)):
                if r[0] is None:
                    row = row_to_bucket(r[2:])
                else:
                    etags[r[0]] = r[1]
            return etags, row
        etags = {}
        if keys:
            sql = f"SELECT key, etag FROM objects WHERE bucket=? AND key IN ({','.join('?' * len(keys))})"
            etags = dict(self.c.execute(sql, (SYSTEM_BUCKET, *keys)).fetchall())
        return etags, self.bucket(bucket) if bucket is not None else None

    def store_used(self) -> int:
        used: int = self.c.execute(_PEERS_USED, (SYSTEM_BUCKET,)).fetchone()[0]
        return used

    def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        r = self.c.execute(f"SELECT {OBJ_COLS} FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        return row_to_object(r) if r else None

    def object_ref(self, bucket: str, key: str) -> ObjectRef | None:
        r = self.c.execute(f"SELECT {REF_COLS} FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
        return row_to_ref(r) if r else None

    def scan_objects(self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int) -> Iterator[Listed]:
        sql = f"SELECT {LIST_COLS} FROM objects WHERE bucket=? AND key {'>=' if inclusive else '>'} ?"
        args: list[object] = [bucket, start]
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        # the cursor is read lazily: a listing that jumps past a common prefix never reads the rest
        return listed_rows(self.c.execute(sql, args))

    def upload(self, upload_id: str) -> Upload | None:
        r = self.c.execute(f"SELECT {UPLOAD_COLS} FROM uploads WHERE upload_id=?", (upload_id,)).fetchone()
        return row_to_upload(r) if r else None

    def upload_last_active(self, upload_id: str) -> float | None:
        r = self.c.execute("SELECT last_active FROM uploads WHERE upload_id=?", (upload_id,)).fetchone()
        return r[0] if r else None

    def parts(self, upload_id: str, after: int, limit: int) -> list[Part]:
        rows = self.c.execute(
            f"SELECT {PART_COLS} FROM parts WHERE upload_id=? AND part_number > ? ORDER BY part_number LIMIT ?",
            (upload_id, after, limit),
        )
        return [row_to_part(r) for r in rows]

    def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[Upload]:
        end = prefix_successor(prefix) if prefix else None
        rows = self.c.execute(
            f"SELECT {UPLOAD_COLS} FROM uploads WHERE bucket=? AND key >= ? AND (? IS NULL OR key < ?) "
            "AND (key > ? OR (key = ? AND upload_id > ?)) ORDER BY key, upload_id LIMIT ?",
            (bucket, prefix, end, end, key_marker, key_marker, upload_id_marker, limit),
        ).fetchall()
        return [row_to_upload(r) for r in rows]

    def pending_uploads(self) -> dict[str, int]:
        return dict(self.c.execute("SELECT bucket, COUNT(*) FROM uploads GROUP BY bucket").fetchall())

    def sealed_rows(self, kid: str, limit: int) -> list[SealedRow]:
        out: list[SealedRow] = []
        for table, ident in _SEALED_TABLES:
            if len(out) >= limit:
                break
            sql = f"SELECT bucket, key, {ident}, sse FROM {table} WHERE sse_kid = ? LIMIT ?"
            out += [
                SealedRow(table, r[0], r[1], r[2], r[3])
                for r in self.c.execute(sql, (kid, limit - len(out))).fetchall()
            ]
        return out

    def sse_kids(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for table in ("objects", "versions", "uploads"):
            sql = f"SELECT sse_kid, COUNT(*) FROM {table} WHERE sse_kid IS NOT NULL GROUP BY sse_kid"
            out.update(dict(self.c.execute(sql).fetchall()))
        return dict(out)

    def stale_uploads(self, cutoff: float, limit: int) -> list[Upload]:
        rows = self.c.execute(
            f"SELECT {UPLOAD_COLS} FROM uploads WHERE last_active < ? ORDER BY last_active LIMIT ?", (cutoff, limit)
        ).fetchall()
        return [row_to_upload(r) for r in rows]

    def completed_upload(self, bucket: str, key: str, upload_id: str) -> CompletedUpload | None:
        r = self.c.execute(
            "SELECT etag, parts, checksums, version_id FROM completed_uploads WHERE upload_id=? AND bucket=? AND key=?",
            (upload_id, bucket, key),
        ).fetchone()
        return CompletedUpload(r[0], r[1], json.loads(r[2] or "{}"), r[3]) if r else None

    def clock(self) -> float:
        return time.time()

    def freed_before(self, t: float, limit: int | None) -> list[str]:
        rows = self.c.execute(
            "SELECT blob FROM freed_blobs WHERE freed_at < ? ORDER BY freed_at, blob LIMIT ?",
            (t, -1 if limit is None else limit),
        ).fetchall()
        return [r[0] for r in rows]

    def count_usage(self) -> dict[str, tuple[int, int, int, int, int]]:
        with self._snapshot():
            return self._count_usage()

    def _count_usage(self) -> dict[str, tuple[int, int, int, int, int]]:
        objects = {
            r[0]: (r[1], r[2])
            for r in self.c.execute("SELECT bucket, SUM(size), COUNT(*) FROM objects GROUP BY bucket")
        }
        versions = {
            r[0]: (r[1], r[2])
            for r in self.c.execute("SELECT bucket, SUM(size), COUNT(*) FROM versions GROUP BY bucket")
        }
        parts = dict(
            self.c.execute(
                "SELECT u.bucket, SUM(p.size) FROM parts p JOIN uploads u USING (upload_id) GROUP BY u.bucket"
            ).fetchall()
        )
        return usage_tuples(objects, versions, parts)

    def referenced_blobs(self, tags: Collection[str] | None = None) -> set[str]:
        # a Complete moves blobs from parts to an object: both tables must be read in one snapshot
        with self._snapshot():
            return self._referenced_blobs(tags)

    def _referenced_blobs(self, tags: Collection[str] | None) -> set[str]:
        refs: set[str] = set()
        if tags is None:
            for table in ("objects", "versions"):
                for (segs,) in self.c.execute(f"SELECT segments FROM {table} WHERE segments != '[]'"):
                    refs.update(seg[0] for seg in json.loads(segs))
            refs.update(b for (b,) in self.c.execute("SELECT blob FROM parts"))
            return refs
        wanted = sorted(set(tags))
        if not wanted:
            return refs
        n = len(wanted[0])
        if any(len(t) != n for t in wanted):
            raise ValueError("writer tags of different lengths")
        # SQLite still reads every row, but only the objects whose segments contain a tag followed by
        # the quote closing an id are decoded (a superset: an md5 may end alike, filtered below)
        contains = " OR ".join(["instr(segments, ?) > 0"] * len(wanted))
        for table in ("objects", "versions"):
            rows = self.c.execute(
                f"SELECT segments FROM {table} WHERE segments != '[]' AND ({contains})", [t + '"' for t in wanted]
            )
            for (segs,) in rows:
                refs.update(seg[0] for seg in json.loads(segs) if seg[0][-n:] in wanted)
        marks = ",".join("?" * len(wanted))
        refs.update(
            b for (b,) in self.c.execute(f"SELECT blob FROM parts WHERE substr(blob, -{n}) IN ({marks})", wanted)
        )
        return refs

    def due_hints(self, before: float, limit: int) -> list[Hint]:
        rows = self.c.execute(
            "SELECT bucket, key, nseq, kind, at FROM lifecycle_due WHERE at < ? ORDER BY at LIMIT ?", (before, limit)
        )
        return [Hint(*r) for r in rows]

    def writer_tags(self, node: str) -> list[str]:
        return [r[0] for r in self.c.execute("SELECT tag FROM writer_tags WHERE node=? AND swept_at IS NULL", (node,))]

    def nodes(self) -> list[NodeState]:
        now = time.time()
        return [
            NodeState(node, listen, started, seen, None if seen is None else now - seen, release)
            for node, listen, started, seen, release in self.c.execute(
                "SELECT node, listen, started_at, last_seen, release FROM nodes ORDER BY node"
            )
        ]

    def silent_writer_tags(self, silent_for: float) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        rows = self.c.execute(
            """SELECT t.tag, t.node FROM writer_tags t JOIN nodes n ON n.node = t.node
            WHERE t.swept_at IS NULL AND n.last_seen IS NOT NULL
            AND max(n.last_seen, (SELECT max(claimed_at) FROM writer_tags u WHERE u.node = t.node))
            < ? - max(?, 3 * n.interval)""",
            (time.time(), silent_for),
        )
        for tag, node in rows:
            found.setdefault(node, []).append(tag)
        return found

    # ---- versions ---------------------------------------------------------------------------

    def version(self, bucket: str, key: str, seq: int) -> ObjectRecord | None:
        r = self.c.execute(
            f"SELECT {VERSION_COLS} FROM versions WHERE bucket=? AND key=? AND nseq=?", (bucket, key, -seq)
        ).fetchone()
        return row_to_version(r) if r else None

    def version_since(self, bucket: str, key: str, seq: int) -> float | None:
        r = self.c.execute(
            "SELECT since FROM versions WHERE bucket=? AND key=? AND nseq=?", (bucket, key, -seq)
        ).fetchone()
        return r[0] if r else None

    def null_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        r = self.c.execute(
            f"SELECT {VREF_COLS} FROM versions WHERE bucket=? AND key=? AND version_id IS NULL", (bucket, key)
        ).fetchone()
        return row_to_ref(r) if r else None

    def newest_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        r = self.c.execute(
            f"SELECT {VREF_COLS} FROM versions WHERE bucket=? AND key=? ORDER BY nseq LIMIT 1", (bucket, key)
        ).fetchone()
        return row_to_ref(r) if r else None

    def scan_versions(
        self, bucket: str, start_key: str, start_nseq: int, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        # a row-value comparison: SQLite seeks the primary key to (bucket, start_key, start_nseq)
        sql = f"SELECT {VLIST_COLS} FROM versions WHERE bucket=? AND (key, nseq) {'>=' if inclusive else '>'} (?, ?)"
        args: list[object] = [bucket, start_key, start_nseq]
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        sql += " ORDER BY key, nseq LIMIT ?"
        args.append(limit)
        return (row_to_version_entry(r) for r in self.c.execute(sql, args))

    def scan_current(
        self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        sql = f"SELECT {SQLITE_CLIST_COLS} FROM objects WHERE bucket=? AND key {'>=' if inclusive else '>'} ?"
        args: list[object] = [bucket, start]
        if end is not None:
            sql += " AND key < ?"
            args.append(end)
        sql += " ORDER BY key LIMIT ?"
        args.append(limit)
        return (row_to_version_entry(r) for r in self.c.execute(sql, args))

    # ---- writes (inside the group writer's transaction) ----------------------------------

    def lock_bucket(self, name: str) -> Bucket | None:
        return self.bucket(name)  # the transaction is BEGIN IMMEDIATE: no other writer runs

    def lock_bucket_and_ref(self, name: str, key: str) -> tuple[Bucket | None, ObjectRef | None]:
        r = self.c.execute(_BUCKET_AND_REF, (SYSTEM_BUCKET, key, name)).fetchone()
        if r is None:
            self._used = None
            return None, None
        self._used = r[_NB + _NR]
        return row_to_bucket(r[:_NB]), row_to_ref(r[_NB : _NB + _NR]) if r[_NB] is not None else None  # size NOT NULL

    def lock_store(self) -> int:
        if self._used is not None:
            used, self._used = self._used, None
            return used
        return self.store_used()

    def insert_bucket(self, bucket: Bucket) -> None:
        self._used = None
        self.c.execute(_INSERT_BUCKET, bucket_row(bucket))

    def delete_bucket(self, name: str) -> None:
        self._used = None
        self.c.execute("DELETE FROM buckets WHERE name=?", (name,))

    def set_quota(self, name: str, quota: int | None) -> None:
        self._used = None
        self.c.execute("UPDATE buckets SET quota=? WHERE name=?", (quota, name))

    def set_bucket_attr(self, name: str, column: str, value: str | int | None) -> None:
        if column not in BUCKET_ATTRS:
            raise ValueError(f"not a bucket attribute: {column!r}")
        self._used = None
        self.c.execute(f"UPDATE buckets SET {column}=? WHERE name=?", (value, name))

    def add_usage(
        self, name: str, used: int = 0, objects: int = 0, mpu_used: int = 0, nc_used: int = 0, nc_objects: int = 0
    ) -> None:
        self._used = None
        self.c.execute(
            "UPDATE buckets SET used = used + ?, objects = objects + ?, mpu_used = mpu_used + ?, "
            "nc_used = nc_used + ?, nc_objects = nc_objects + ? WHERE name=?",
            (used, objects, mpu_used, nc_used, nc_objects, name),
        )

    def put_object(self, rec: ObjectRecord) -> None:
        self.c.execute(_INSERT_OBJECT, object_row(rec))

    def delete_object(self, bucket: str, key: str) -> ObjectRef | None:
        r = self.c.execute(
            f"DELETE FROM objects WHERE bucket=? AND key=? RETURNING {GONE_COLS}", (bucket, key)
        ).fetchone()
        return row_to_ref(r) if r else None

    def delete_objects_in(self, bucket: str) -> list[ObjectRef]:
        rows = self.c.execute(f"DELETE FROM objects WHERE bucket=? RETURNING {GONE_COLS}", (bucket,)).fetchall()
        return [row_to_ref(r) for r in rows]

    def retire_current(self, bucket: str, key: str, since: float) -> ObjectRef | None:
        self.c.execute(
            f"INSERT INTO versions({VERSION_COLS}) SELECT {retire_select(SQLITE_SEQ, '?')} FROM objects "
            "WHERE bucket=? AND key=?",
            (since, bucket, key),
        )
        r = self.c.execute(
            f"DELETE FROM objects WHERE bucket=? AND key=? RETURNING {REF_COLS}", (bucket, key)
        ).fetchone()
        return row_to_ref(r) if r else None

    def promote_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        self.c.execute(
            f"INSERT INTO objects({OBJ_COLS}) SELECT {PROMOTE_SELECT} FROM versions "
            "WHERE bucket=? AND key=? AND nseq=? AND marker=0",
            (bucket, key, -seq),
        )
        ref = self.delete_version(bucket, key, seq)
        if ref is not None and ref.marker:
            raise ValueError(f"a delete marker of {bucket}/{key} cannot be made current")
        return ref

    def put_version(self, rec: ObjectRecord, marker: bool, since: float) -> None:
        self.c.execute(_INSERT_VERSION, version_row(rec, marker, since))

    def delete_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        r = self.c.execute(
            f"DELETE FROM versions WHERE bucket=? AND key=? AND nseq=? RETURNING {VREF_COLS}", (bucket, key, -seq)
        ).fetchone()
        return row_to_ref(r) if r else None

    def delete_null_version(self, bucket: str, key: str) -> ObjectRef | None:
        r = self.c.execute(
            f"DELETE FROM versions WHERE bucket=? AND key=? AND version_id IS NULL RETURNING {VREF_COLS}",
            (bucket, key),
        ).fetchone()
        return row_to_ref(r) if r else None

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
        changes = attr_values(tags, retention, legal_hold)
        sql, args = attrs_update(bucket, key, seq, current, changes, SQLITE_SEQ, "?")
        return self.c.execute(sql, args).rowcount == 1

    def put_hint(self, hint: Hint) -> None:
        self.c.execute(
            "INSERT INTO lifecycle_due(bucket, key, nseq, kind, at) VALUES (?,?,?,?,?) "
            "ON CONFLICT(bucket, key, nseq, kind) DO UPDATE SET at=excluded.at",
            (hint.bucket, hint.key, hint.nseq, hint.kind, hint.at),
        )

    def drop_hint(self, bucket: str, key: str, nseq: int, kind: str) -> None:
        self.c.execute(
            "DELETE FROM lifecycle_due WHERE bucket=? AND key=? AND nseq=? AND kind=?", (bucket, key, nseq, kind)
        )

    def drop_hints(self, bucket: str, kinds: Collection[str] | None = None) -> None:
        if kinds is None:
            self.c.execute("DELETE FROM lifecycle_due WHERE bucket=?", (bucket,))
            return
        for kind in kinds:
            self.c.execute("DELETE FROM lifecycle_due WHERE bucket=? AND kind=?", (bucket, kind))

    def insert_upload(self, up: Upload) -> None:
        self.c.execute(
            f"INSERT INTO uploads({UPLOAD_COLS}, last_active) VALUES ({marks(UPLOAD_COLS)}, ?)",
            upload_row(up),
        )

    def touch_upload(self, upload_id: str, t: float) -> bool:
        r = self.c.execute(
            "UPDATE uploads SET last_active = MAX(COALESCE(last_active, 0), ?) WHERE upload_id=?", (t, upload_id)
        )
        return r.rowcount == 1

    def put_part(self, upload_id: str, part: Part) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO parts VALUES (?,?,?,?,?,?,?)",
            (upload_id, part.part_number, part.size, part.etag, part.mtime, part.blob, json.dumps(part.checksums)),
        )

    def reseal(self, row: SealedRow, sse: str, kid: str) -> bool:
        where = "upload_id = ?" if row.table == "uploads" else "bucket = ? AND key = ?"
        pk: tuple[Any, ...] = (row.ident,) if row.table == "uploads" else (row.bucket, row.key)
        if row.table == "versions":
            where += " AND nseq = ?"
            pk += (row.ident,)
        sql = f"UPDATE {_SEALED_TABLE[row.table]} SET sse = ?, sse_kid = ? WHERE {where} AND sse = ?"
        return self.c.execute(sql, (sse, kid, *pk, row.sse)).rowcount == 1

    def delete_upload(self, upload_id: str) -> list[Part]:
        # inside the write lock, for up to 10,000 parts: only what the rules use (no checksums to decode)
        rows = self.c.execute(
            "DELETE FROM parts WHERE upload_id=? RETURNING part_number, size, etag, mtime, blob", (upload_id,)
        ).fetchall()
        self.c.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
        return [Part(*r) for r in rows]

    def put_completed(self, upload_id: str, bucket: str, key: str, done: CompletedUpload, mtime: float) -> None:
        self.c.execute(
            "INSERT OR REPLACE INTO completed_uploads(upload_id, bucket, key, etag, parts, mtime, checksums, "
            "version_id) VALUES (?,?,?,?,?,?,?,?)",
            (upload_id, bucket, key, done.etag, done.parts_sig, mtime, json.dumps(done.checksums), done.version_id),
        )

    def forget_completed(self, *, bucket: str | None = None, before: float | None = None) -> None:
        if bucket is not None:
            self.c.execute("DELETE FROM completed_uploads WHERE bucket=?", (bucket,))
        if before is not None:
            self.c.execute("DELETE FROM completed_uploads WHERE mtime < ?", (before,))

    def queue_freed(self, blob_ids: Collection[str], at: float | None) -> None:
        at = time.time() if at is None else at
        self.c.executemany(
            "INSERT OR IGNORE INTO freed_blobs(blob, freed_at) VALUES (?, ?)", ((b, at) for b in blob_ids)
        )

    def forget_freed(self, blob_ids: Collection[str]) -> None:
        self.c.executemany("DELETE FROM freed_blobs WHERE blob=?", ((b,) for b in blob_ids))

    def claim_node(self, node: str, owner: str, at: float) -> str:
        self.c.execute("INSERT OR IGNORE INTO nodes(node, owner, claimed_at) VALUES (?,?,?)", (node, owner, at))
        holder: str = self.c.execute("SELECT owner FROM nodes WHERE node=?", (node,)).fetchone()[0]
        return holder

    def claim_writer_tag(self, tag: str, node: str) -> bool:
        r = self.c.execute(
            "INSERT OR IGNORE INTO writer_tags(tag, node, claimed_at) VALUES (?,?,?)", (tag, node, time.time())
        )
        return r.rowcount == 1

    def beat(self, node: str, listen: str, started_at: float, interval: float) -> None:
        self.c.execute(
            "UPDATE nodes SET listen=?, started_at=?, last_seen=?, interval=?, release=? WHERE node=?",
            (listen, started_at, time.time(), interval, LATEST, node),
        )

    def hold_writer_tags(self, tags: Collection[str]) -> set[str]:
        # the transaction is BEGIN IMMEDIATE: no retirement can commit until it ends
        marks = ",".join("?" * len(tags))
        q = f"SELECT tag FROM writer_tags WHERE tag IN ({marks}) AND retired_at IS NOT NULL"
        return {r[0] for r in self.c.execute(q, list(tags))} if tags else set()

    def retire_writer_tags(self, tags: Collection[str]) -> None:
        self.c.executemany(
            "UPDATE writer_tags SET retired_at=? WHERE tag=? AND retired_at IS NULL", [(time.time(), t) for t in tags]
        )

    def tags_swept(self, tags: Collection[str]) -> None:
        self.c.executemany("UPDATE writer_tags SET swept_at=? WHERE tag=?", [(time.time(), t) for t in tags])

    def take_lease(self, duty: str, node: str, ttl: float, every: float) -> bool:
        now = time.time()
        row = self.c.execute("SELECT holder, expires_at, done_at FROM leases WHERE duty=?", (duty,)).fetchone()
        if row is not None:
            holder, expires_at, done_at = row
            if holder is not None and holder != node and expires_at > now:
                return False
            if done_at is not None and done_at > now - every:
                return False
        self.c.execute(
            "INSERT INTO leases(duty, holder, expires_at) VALUES (?,?,?) "
            "ON CONFLICT(duty) DO UPDATE SET holder=excluded.holder, expires_at=excluded.expires_at",
            (duty, node, now + ttl),
        )
        return True

    def finish_lease(self, duty: str, node: str) -> None:
        self.c.execute(
            "UPDATE leases SET holder=NULL, expires_at=NULL, done_at=? WHERE duty=? AND holder=?",
            (time.time(), duty, node),
        )


# The fence `tunnelmesh storage migrate` writes into the database it moves to PostgreSQL (store/migrate.py):
# a table outside the numbered migrations, so that it travels with every copy of the file and no release's
# schema version has to know about it. `finished` NULL: the move was started and has not completed (yet).
FENCE_TABLE = "moved_to"
FENCE_DDL = f"CREATE TABLE IF NOT EXISTS {FENCE_TABLE}(target TEXT NOT NULL, started REAL NOT NULL, finished REAL)"


@dataclasses.dataclass(frozen=True)
class Fence:
    target: str  # the PostgreSQL URI, password redacted
    started: float
    finished: float | None


class StoreMoved(SchemaError):
    """This SQLite database's records were moved (or are being moved) to PostgreSQL: a coordinator on it would
    serve stale records and its orphan sweep would delete blobs that only PostgreSQL names."""

    def __init__(self, db: Path, fence: Fence) -> None:
        def when(t: float) -> str:
            return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

        if fence.finished is not None:
            what = f"the metadata in {db} was moved to PostgreSQL ({fence.target}) at {when(fence.finished)} by "
            what += "`tunnelmesh storage migrate`; set s3.metadata (or $TUNNELMESH_S3_METADATA) to that database"
        else:
            what = f"a move of the metadata in {db} to PostgreSQL ({fence.target}) was started at "
            what += f"{when(fence.started)} and has not finished: run `tunnelmesh storage migrate` again to finish it"
        super().__init__(what + "; refusing to start on this SQLite database")
        self.fence = fence


def read_fence(conn: sqlite3.Connection) -> Fence | None:
    """The database's fence, if `storage migrate` wrote one."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (FENCE_TABLE,)).fetchone():
        return None
    r = conn.execute(f"SELECT target, started, finished FROM {FENCE_TABLE} ORDER BY started DESC").fetchone()
    return Fence(*r) if r else None


def check_fence(conn: sqlite3.Connection, db: Path) -> None:
    """Raise StoreMoved if the database was moved to PostgreSQL."""
    fence = read_fence(conn)
    if fence is not None:
        raise StoreMoved(db, fence)


# The reader's page cache, per worker. SQLite's default (2,000 KiB) filled up within seconds of 4 KiB GETs and
# stayed (2.3 MiB of the worker's heap, measured with sqlite3_memory_used); a random key's leaf page misses
# either cache in a large bucket, the interior pages every lookup walks fit in this one, and a page it misses
# is a read from the OS page cache: 4 KiB GET and HEAD and 1000-key listings cost no more CPU per request
# (bench/compare.py, two alternated pairs). The writer keeps the default: a group commit's dirty pages must
# fit in its cache, or they spill into the WAL before the commit.
READER_CACHE_KIB = 512


class SqliteMeta:
    """The MetaBackend on `<data dir>/meta.sqlite3`."""

    release = LATEST  # what its beat stamps (MetaBackend.release)

    def __init__(self, db: Path, lock: Path | None = None) -> None:
        reader = connect(db)
        reader.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
        self._reader = SqliteTx(reader)
        self._writer = GroupWriter(db, lock, SqliteTx)

    @classmethod
    def open(cls, data_dir: Path) -> SqliteMeta:
        """The data dir's database, created or upgraded to this code's schema."""
        files = DataDir(data_dir)
        conn = connect(files.meta_db)
        try:
            check_fence(conn, files.meta_db)  # before any migration could write to a moved database
            init_schema(conn)
        finally:
            conn.close()
        return cls(files.meta_db, files.writer_lock)

    async def read(self, fn: Callable[[SqliteTx], T], snapshot: bool = False) -> T:
        # one statement is a snapshot by itself; several share one only inside a read transaction
        c = self._reader.c
        if c.in_transaction:  # the connection belongs to the event loop's thread, one read at a time
            raise RuntimeError("SqliteMeta.read: nested, or called from another thread")
        if not snapshot:
            return fn(self._reader)
        try:
            c.execute("BEGIN")
            return fn(self._reader)
        finally:
            if c.in_transaction:
                c.execute("COMMIT")

    async def write(self, fn: Callable[[SqliteTx], T], settle: Settle | None = None) -> T:
        return await self._writer.submit(fn, settle)

    def close(self) -> None:
        self._writer.close()
        self._reader.c.close()
