"""The PostgreSQL metadata backend (store/metadata.py is the protocol): several coordinators on one store.

The driver is psycopg 3's synchronous API on a psycopg_pool.ConnectionPool, each read or write function
run on a worker thread of our own (as many as the pool has connections). The protocol's transactions are
synchronous functions, `fn(tx)`, run again when they lose a race; asyncpg only offers `await` per
statement, so a synchronous `fn` could not run its statements inside an asyncpg transaction, and every
rule in store/commits.py would have to become a coroutine. With psycopg, `fn` runs unchanged on the
worker thread, one statement per round trip, and the event loop only waits for the outcome.

Writes run in READ COMMITTED transactions with explicit row locks, not SERIALIZABLE: writers of one
bucket queue on its row (`lock_bucket` is `SELECT ... FOR UPDATE`) instead of all but one failing and
retrying, and writers that grow the store queue on the one row of `store_lock` before they sum the usage
(`lock_store`), so quota and max_size admission is exact across coordinators. Every statement of a READ
COMMITTED transaction sees what committed before it started, so what a rule reads after taking its lock
is current. But several rules read before they lock (require_upload before the bucket lock, the
idempotent-Complete check, expiry's staleness, the scrub's "still the version found rotten"): inside a
write, every read of one row by its key (bucket, object, upload, its last activity) therefore locks that
row too, so what the rule decided on cannot change before it commits. Deadlocks this may cause between
two rules taking rows in different orders are rare (an abort racing a bucket deletion) and retried.

A write is retried whole (with jitter) when PostgreSQL reports a serialisation failure or a deadlock,
and also a unique violation: `lock_bucket` of a bucket that does not exist yet locks nothing, so two
creations of one name race to the insert; on the retry the loser sees the bucket and the rule answers
BucketExists. Those errors, and a database that cannot be reached, end a write as WriteFailed.

Reads run as single autocommit statements (each its own snapshot); `read(fn, snapshot=True)` and the
methods of several statements run in one REPEATABLE READ READ ONLY transaction.

The queries are meant to stay portable to CockroachDB and YugabyteDB (row locks, no advisory locks, no
LOCK TABLE); neither was tested here. The schema is not yet: CockroachDB refuses `COLLATE "C"` on a
column (its STRING already compares bytes, so it needs a variant of pg_schema's DDL without it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import random
import re
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from tunnelmesh.store import pg_schema
from tunnelmesh.store.errors import CommitUnknown, Unavailable, WriteFailed
from tunnelmesh.store.listing import prefix_successor
from tunnelmesh.store.meta_rows import (
    BUCKET_COLS,
    GONE_COLS,
    LIST_COLS,
    OBJ_COLS,
    PART_COLS,
    PG_CLIST_COLS,
    PG_SEQ,
    PROMOTE_SELECT,
    REF_COLS,
    UPLOAD_COLS,
    VERSION_COLS,
    VLIST_COLS,
    VREF_COLS,
    Row,
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

log = logging.getLogger("tunnelmesh.store")
T = TypeVar("T")
Conn = psycopg.Connection[Row]

# the database's clock, in the float seconds the records carry: one clock for every node (theirs may disagree)
NOW = "extract(epoch FROM clock_timestamp())::double precision"

# a write that lost a race is run again, this many times in all
WRITE_ATTEMPTS = 8
_RETRIED = (errors.SerializationFailure, errors.DeadlockDetected, errors.UniqueViolation)

_PEERS_USED = "SELECT COALESCE(SUM(used + mpu_used), 0) FROM buckets WHERE name <> %s"

# the tables holding wrapped data keys (SSE-S3) and what names a row beside its bucket and key
_SEALED_TABLES = (("objects", "NULL"), ("versions", "nseq"), ("uploads", "upload_id"))
_SEALED_TABLE = {t: t for t, _ in _SEALED_TABLES}  # a row's table, only ever one of these three

_INSERT_BUCKET = f"INSERT INTO buckets({BUCKET_COLS}) VALUES ({marks(BUCKET_COLS, '%s')})"
# an upsert sets every column but the key: a replaced version keeps nothing of the one before
_PUT_OBJECT = (
    f"INSERT INTO objects({OBJ_COLS}) VALUES ({marks(OBJ_COLS, '%s')}) ON CONFLICT (bucket, key) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in OBJ_COLS.split(", ")[2:])
)
_INSERT_VERSION = f"INSERT INTO versions({VERSION_COLS}) VALUES ({marks(VERSION_COLS, '%s')})"

# MetaReads.freshness in one statement, so one round trip per S3 request: the asked keys' (key, etag) rows and the
# bucket's row, one UNION ALL, each side padded to the other's columns (a bucket row's key is NULL: no object's
# is). Both sides are primary-key lookups. The keys are one placeholder each (`key IN (%s, ...)`), not one array
# (`key = ANY(%s)`): with an array parameter, the same read took ~90 us more a call (measured with psycopg's
# prepared statements, 3 keys); an aggregate of the ETags LEFT JOINed to the bucket row took ~10 us more
_FRESHNESS_KEYS = "SELECT key, etag, " + ", ".join(["NULL"] * len(BUCKET_COLS.split(", "))) + " FROM objects "
_FRESHNESS_BUCKET = f"SELECT NULL, NULL, {BUCKET_COLS} FROM buckets WHERE name = %s"


def redact(conninfo: str) -> str:
    """The connection string with its password replaced by `***` (URI or key=value form), for logs. The
    text is masked where it says a password; then libpq's own reading of the string is the check: if a
    password it finds still shows (a `?` or `#` in it, say, which the URI splitting reads otherwise), the
    string is shown rebuilt from libpq's parameters instead. One libpq cannot read is not shown at all."""
    try:
        params = conninfo_to_dict(conninfo)
    except Exception:  # its message may quote the string
        return "(a connection string libpq cannot read)"
    shown = _mask(conninfo)
    hidden = [str(v) for k, v in params.items() if k.lower().endswith("password") and v]
    if any(pw in shown or urllib.parse.quote(pw, safe="") in shown for pw in hidden):
        return make_conninfo("", **{k: "***" if k.lower().endswith("password") else v for k, v in params.items()})
    return shown


def _mask(conninfo: str) -> str:
    if "://" in conninfo:
        parts = urllib.parse.urlsplit(conninfo)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        # decoded first, so that a percent-encoded name (%70assword) is recognised too; every parameter
        # whose name ends in "password" (sslpassword too) is masked
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k)}={'***' if k.lower().endswith('password') else urllib.parse.quote(v)}"
            for k, v in pairs
        )
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return re.sub(r"(?i)(\b\w*password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", conninfo)


class PgTx:
    """MetaReads and MetaTx over one connection. `writing`: inside a write's transaction, where a read of
    one row by its key locks it (see the module docstring)."""

    def __init__(self, conn: Conn, writing: bool) -> None:
        self.c = conn
        self._lock = " FOR UPDATE" if writing else ""

    def _one(self, sql: str, args: tuple[Any, ...]) -> Row | None:
        if any(isinstance(a, str) and "\x00" in a for a in args):
            # PostgreSQL's text cannot hold a NUL, so no row has one: nothing to find (the S3 layer
            # refuses NULs in keys; this covers any other lookup, a Basic-auth peer id say)
            return None
        return self.c.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[Row]:
        return self.c.execute(sql, args).fetchall()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One snapshot for a method of several statements (nothing to do inside a transaction already)."""
        if self.c.info.transaction_status != TransactionStatus.IDLE:
            yield
            return
        with self.c.transaction():
            self.c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    # ---- reads ---------------------------------------------------------------------------

    def bucket(self, name: str) -> Bucket | None:
        r = self._one(f"SELECT {BUCKET_COLS} FROM buckets WHERE name = %s{self._lock}", (name,))
        return row_to_bucket(r) if r else None

    def buckets(self) -> list[Bucket]:
        return [row_to_bucket(r) for r in self._all(f"SELECT {BUCKET_COLS} FROM buckets ORDER BY name")]

    def freshness(self, keys: Sequence[str], bucket: str | None) -> tuple[dict[str, str], Bucket | None]:
        # never FOR UPDATE, not even inside a write: no rule decides a write on it. A NUL cannot be in a text, so
        # no row has one: such a key or bucket is not asked. Each key once, in the order asked (a statement's
        # text per number of keys, prepared once each by psycopg)
        wanted = list(dict.fromkeys(k for k in keys if "\x00" not in k))
        if bucket is not None and "\x00" in bucket:
            bucket = None
        parts: list[str] = []
        args: list[str] = []
        if wanted:
            parts.append(f"{_FRESHNESS_KEYS}WHERE bucket = %s AND key IN ({', '.join(['%s'] * len(wanted))})")
            args += [SYSTEM_BUCKET, *wanted]
        if bucket is not None:
            parts.append(_FRESHNESS_BUCKET)
            args.append(bucket)
        etags: dict[str, str] = {}
        row: Bucket | None = None
        if not parts:
            return etags, row
        for r in self._all(" UNION ALL ".join(parts), args):
            if r[0] is None:
                row = row_to_bucket(r[2:])
            else:
                etags[r[0]] = r[1]
        return etags, row

    def store_used(self) -> int:
        r = self._one(_PEERS_USED, (SYSTEM_BUCKET,))
        return int(r[0]) if r else 0

    def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        r = self._one(f"SELECT {OBJ_COLS} FROM objects WHERE bucket = %s AND key = %s{self._lock}", (bucket, key))
        return row_to_object(r) if r else None

    def object_ref(self, bucket: str, key: str) -> ObjectRef | None:
        r = self._one(f"SELECT {REF_COLS} FROM objects WHERE bucket = %s AND key = %s{self._lock}", (bucket, key))
        return row_to_ref(r) if r else None

    def scan_objects(self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int) -> Iterator[Listed]:
        sql = f"SELECT {LIST_COLS} FROM objects WHERE bucket = %s AND key {'>=' if inclusive else '>'} %s"
        args: list[object] = [bucket, start]
        if end is not None:
            sql += " AND key < %s"
            args.append(end)
        sql += " ORDER BY key LIMIT %s"
        args.append(limit)
        # the rows arrive at once (LIMIT bounds them); the records are built as the caller iterates
        return listed_rows(self.c.execute(sql, args))

    def upload(self, upload_id: str) -> Upload | None:
        r = self._one(f"SELECT {UPLOAD_COLS} FROM uploads WHERE upload_id = %s{self._lock}", (upload_id,))
        return row_to_upload(r) if r else None

    def upload_last_active(self, upload_id: str) -> float | None:
        r = self._one(f"SELECT last_active FROM uploads WHERE upload_id = %s{self._lock}", (upload_id,))
        return float(r[0]) if r else None

    def parts(self, upload_id: str, after: int, limit: int) -> list[Part]:
        rows = self._all(
            f"SELECT {PART_COLS} FROM parts WHERE upload_id = %s AND part_number > %s ORDER BY part_number LIMIT %s",
            (upload_id, after, limit),
        )
        return [row_to_part(r) for r in rows]

    def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[Upload]:
        end = prefix_successor(prefix) if prefix else None
        rows = self._all(
            f"SELECT {UPLOAD_COLS} FROM uploads WHERE bucket = %s AND key >= %s "
            "AND (%s::text IS NULL OR key < %s) "
            "AND (key > %s OR (key = %s AND upload_id > %s)) ORDER BY key, upload_id LIMIT %s",
            (bucket, prefix, end, end, key_marker, key_marker, upload_id_marker, limit),
        )
        return [row_to_upload(r) for r in rows]

    def pending_uploads(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self._all("SELECT bucket, COUNT(*) FROM uploads GROUP BY bucket")}

    def sealed_rows(self, kid: str, limit: int) -> list[SealedRow]:
        out: list[SealedRow] = []
        for table, ident in _SEALED_TABLES:
            if len(out) >= limit:
                break
            sql = f"SELECT bucket, key, {ident}, sse FROM {table} WHERE sse_kid = %s LIMIT %s"
            out += [SealedRow(table, r[0], r[1], r[2], r[3]) for r in self._all(sql, (kid, limit - len(out)))]
        return out

    def sse_kids(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for table in ("objects", "versions", "uploads"):
            sql = f"SELECT sse_kid, COUNT(*) FROM {table} WHERE sse_kid IS NOT NULL GROUP BY sse_kid"
            out.update({r[0]: int(r[1]) for r in self._all(sql)})
        return dict(out)

    def stale_uploads(self, cutoff: float, limit: int) -> list[Upload]:
        rows = self._all(
            f"SELECT {UPLOAD_COLS} FROM uploads WHERE last_active < %s ORDER BY last_active LIMIT %s", (cutoff, limit)
        )
        return [row_to_upload(r) for r in rows]

    def completed_upload(self, bucket: str, key: str, upload_id: str) -> CompletedUpload | None:
        r = self._one(
            "SELECT etag, parts, checksums, version_id FROM completed_uploads "
            "WHERE upload_id = %s AND bucket = %s AND key = %s",
            (upload_id, bucket, key),
        )
        return CompletedUpload(r[0], r[1], json.loads(r[2] or "{}"), r[3]) if r else None

    def clock(self) -> float:
        r = self._one(f"SELECT {NOW}", ())
        assert r is not None
        return float(r[0])

    def freed_before(self, t: float, limit: int | None) -> list[str]:
        # LIMIT NULL: no limit
        rows = self._all(
            "SELECT blob FROM freed_blobs WHERE freed_at < %s ORDER BY freed_at, blob LIMIT %s", (t, limit)
        )
        return [r[0] for r in rows]

    def count_usage(self) -> dict[str, tuple[int, int, int, int, int]]:
        with self._snapshot():
            objects = {
                r[0]: (int(r[1]), int(r[2]))
                for r in self._all("SELECT bucket, SUM(size), COUNT(*) FROM objects GROUP BY bucket")
            }
            versions = {
                r[0]: (int(r[1]), int(r[2]))
                for r in self._all("SELECT bucket, SUM(size), COUNT(*) FROM versions GROUP BY bucket")
            }
            parts = {
                r[0]: int(r[1])
                for r in self._all(
                    "SELECT u.bucket, SUM(p.size) FROM parts p JOIN uploads u USING (upload_id) GROUP BY u.bucket"
                )
            }
        return usage_tuples(objects, versions, parts)

    def referenced_blobs(self, tags: Collection[str] | None = None) -> set[str]:
        # a Complete moves blobs from parts to an object: both tables must be read in one snapshot
        with self._snapshot():
            return self._referenced_blobs(tags)

    def _referenced_blobs(self, tags: Collection[str] | None) -> set[str]:
        refs: set[str] = set()
        if tags is None:
            for table in ("objects", "versions"):
                for (segs,) in self._all(f"SELECT segments FROM {table} WHERE segments <> '[]'"):
                    refs.update(seg[0] for seg in json.loads(segs))
            refs.update(r[0] for r in self._all("SELECT blob FROM parts"))
            return refs
        wanted = sorted(set(tags))
        if not wanted:
            return refs
        n = len(wanted[0])
        if any(len(t) != n for t in wanted):
            raise ValueError("writer tags of different lengths")
        # only the objects whose segments contain a tag followed by the quote closing an id are decoded
        # (a superset: an md5 may end alike, filtered below)
        for table in ("objects", "versions"):
            rows = self._all(
                f"SELECT segments FROM {table} WHERE segments <> '[]' "
                "AND EXISTS (SELECT 1 FROM unnest(%s::text[]) AS t(s) WHERE strpos(segments, t.s) > 0)",
                ([t + '"' for t in wanted],),
            )
            for (segs,) in rows:
                refs.update(seg[0] for seg in json.loads(segs) if seg[0][-n:] in wanted)
        refs.update(r[0] for r in self._all("SELECT blob FROM parts WHERE right(blob, %s) = ANY(%s)", (n, wanted)))
        return refs

    def due_hints(self, before: float, limit: int) -> list[Hint]:
        rows = self.c.execute(
            "SELECT bucket, key, nseq, kind, at FROM lifecycle_due WHERE at < %s ORDER BY at LIMIT %s",
            (before, limit),
        ).fetchall()
        return [Hint(*r) for r in rows]

    def writer_tags(self, node: str) -> list[str]:
        return [r[0] for r in self._all("SELECT tag FROM writer_tags WHERE node = %s AND swept_at IS NULL", (node,))]

    def nodes(self) -> list[NodeState]:
        rows = self._all(
            f"SELECT node, listen, started_at, last_seen, {NOW} - last_seen, release FROM nodes ORDER BY node"
        )
        return [NodeState(*r) for r in rows]

    def silent_writer_tags(self, silent_for: float) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        rows = self._all(
            f"""SELECT t.tag, t.node FROM writer_tags t JOIN nodes n ON n.node = t.node
            WHERE t.swept_at IS NULL AND n.last_seen IS NOT NULL
            AND greatest(n.last_seen, (SELECT max(claimed_at) FROM writer_tags u WHERE u.node = t.node))
            < {NOW} - greatest(%s, 3 * n.interval)""",
            (silent_for,),
        )
        for tag, node in rows:
            found.setdefault(node, []).append(tag)
        return found

    # ---- versions ---------------------------------------------------------------------------

    def version(self, bucket: str, key: str, seq: int) -> ObjectRecord | None:
        r = self._one(
            f"SELECT {VERSION_COLS} FROM versions WHERE bucket = %s AND key = %s AND nseq = %s{self._lock}",
            (bucket, key, -seq),
        )
        return row_to_version(r) if r else None

    def version_since(self, bucket: str, key: str, seq: int) -> float | None:
        r = self.c.execute(
            "SELECT since FROM versions WHERE bucket = %s AND key = %s AND nseq = %s", (bucket, key, -seq)
        ).fetchone()
        return float(r[0]) if r else None

    def null_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        r = self._one(
            f"SELECT {VREF_COLS} FROM versions WHERE bucket = %s AND key = %s AND version_id IS NULL{self._lock}",
            (bucket, key),
        )
        return row_to_ref(r) if r else None

    def newest_version_ref(self, bucket: str, key: str) -> ObjectRef | None:
        r = self._one(
            f"SELECT {VREF_COLS} FROM versions WHERE bucket = %s AND key = %s ORDER BY nseq LIMIT 1{self._lock}",
            (bucket, key),
        )
        return row_to_ref(r) if r else None

    def scan_versions(
        self, bucket: str, start_key: str, start_nseq: int, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        # the whole primary key in the row comparison: one index range from (bucket, start_key, start_nseq)
        sql = (
            f"SELECT {VLIST_COLS} FROM versions WHERE bucket = %s "
            f"AND (bucket, key, nseq) {'>=' if inclusive else '>'} (%s, %s, %s)"
        )
        args: list[object] = [bucket, bucket, start_key, start_nseq]
        if end is not None:
            sql += " AND key < %s"
            args.append(end)
        sql += " ORDER BY key, nseq LIMIT %s"
        args.append(limit)
        return (row_to_version_entry(r) for r in self.c.execute(sql, args))

    def scan_current(
        self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int
    ) -> Iterator[VersionEntry]:
        sql = f"SELECT {PG_CLIST_COLS} FROM objects WHERE bucket = %s AND key {'>=' if inclusive else '>'} %s"
        args: list[object] = [bucket, start]
        if end is not None:
            sql += " AND key < %s"
            args.append(end)
        sql += " ORDER BY key LIMIT %s"
        args.append(limit)
        return (row_to_version_entry(r) for r in self.c.execute(sql, args))

    # ---- writes (inside a write's transaction) --------------------------------------------

    def lock_bucket(self, name: str) -> Bucket | None:
        r = self._one(f"SELECT {BUCKET_COLS} FROM buckets WHERE name = %s FOR UPDATE", (name,))
        return row_to_bucket(r) if r else None

    def lock_bucket_and_ref(self, name: str, key: str) -> tuple[Bucket | None, ObjectRef | None]:
        # two statements: the object row is locked too (FOR UPDATE), which the nullable side of a join cannot be
        b = self.lock_bucket(name)
        return b, self.object_ref(name, key) if b is not None else None

    def lock_store(self) -> int:
        self.c.execute("SELECT id FROM store_lock WHERE id = 1 FOR UPDATE")
        # a statement of its own, after the lock: READ COMMITTED shows it every admission committed before
        return self.store_used()

    def insert_bucket(self, bucket: Bucket) -> None:
        self.c.execute(_INSERT_BUCKET, bucket_row(bucket))

    def delete_bucket(self, name: str) -> None:
        self.c.execute("DELETE FROM buckets WHERE name = %s", (name,))

    def set_quota(self, name: str, quota: int | None) -> None:
        self.c.execute("UPDATE buckets SET quota = %s WHERE name = %s", (quota, name))

    def set_bucket_attr(self, name: str, column: str, value: str | int | None) -> None:
        if column not in BUCKET_ATTRS:
            raise ValueError(f"not a bucket attribute: {column!r}")
        self.c.execute(f"UPDATE buckets SET {column} = %s WHERE name = %s", (value, name))

    def add_usage(
        self, name: str, used: int = 0, objects: int = 0, mpu_used: int = 0, nc_used: int = 0, nc_objects: int = 0
    ) -> None:
        self.c.execute(
            "UPDATE buckets SET used = used + %s, objects = objects + %s, mpu_used = mpu_used + %s, "
            "nc_used = nc_used + %s, nc_objects = nc_objects + %s WHERE name = %s",
            (used, objects, mpu_used, nc_used, nc_objects, name),
        )

    def put_object(self, rec: ObjectRecord) -> None:
        self.c.execute(_PUT_OBJECT, object_row(rec))

    def delete_object(self, bucket: str, key: str) -> ObjectRef | None:
        r = self._one(f"DELETE FROM objects WHERE bucket = %s AND key = %s RETURNING {GONE_COLS}", (bucket, key))
        return row_to_ref(r) if r else None

    def delete_objects_in(self, bucket: str) -> list[ObjectRef]:
        rows = self._all(f"DELETE FROM objects WHERE bucket = %s RETURNING {GONE_COLS}", (bucket,))
        return [row_to_ref(r) for r in rows]

    def retire_current(self, bucket: str, key: str, since: float) -> ObjectRef | None:
        self.c.execute(
            f"INSERT INTO versions({VERSION_COLS}) SELECT {retire_select(PG_SEQ, '%s')} FROM objects "
            "WHERE bucket = %s AND key = %s",
            (since, bucket, key),
        )
        r = self._one(f"DELETE FROM objects WHERE bucket = %s AND key = %s RETURNING {REF_COLS}", (bucket, key))
        return row_to_ref(r) if r else None

    def promote_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        self.c.execute(
            f"INSERT INTO objects({OBJ_COLS}) SELECT {PROMOTE_SELECT} FROM versions "
            "WHERE bucket = %s AND key = %s AND nseq = %s AND marker = 0",
            (bucket, key, -seq),
        )
        ref = self.delete_version(bucket, key, seq)
        if ref is not None and ref.marker:
            raise ValueError(f"a delete marker of {bucket}/{key} cannot be made current")
        return ref

    def put_version(self, rec: ObjectRecord, marker: bool, since: float) -> None:
        self.c.execute(_INSERT_VERSION, version_row(rec, marker, since))

    def delete_version(self, bucket: str, key: str, seq: int) -> ObjectRef | None:
        r = self._one(
            f"DELETE FROM versions WHERE bucket = %s AND key = %s AND nseq = %s RETURNING {VREF_COLS}",
            (bucket, key, -seq),
        )
        return row_to_ref(r) if r else None

    def delete_null_version(self, bucket: str, key: str) -> ObjectRef | None:
        r = self._one(
            f"DELETE FROM versions WHERE bucket = %s AND key = %s AND version_id IS NULL RETURNING {VREF_COLS}",
            (bucket, key),
        )
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
        sql, args = attrs_update(bucket, key, seq, current, changes, PG_SEQ, "%s")
        return self.c.execute(sql, args).rowcount == 1

    def put_hint(self, hint: Hint) -> None:
        self.c.execute(
            "INSERT INTO lifecycle_due(bucket, key, nseq, kind, at) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (bucket, key, nseq, kind) DO UPDATE SET at = excluded.at",
            (hint.bucket, hint.key, hint.nseq, hint.kind, hint.at),
        )

    def drop_hint(self, bucket: str, key: str, nseq: int, kind: str) -> None:
        self.c.execute(
            "DELETE FROM lifecycle_due WHERE bucket = %s AND key = %s AND nseq = %s AND kind = %s",
            (bucket, key, nseq, kind),
        )

    def drop_hints(self, bucket: str, kinds: Collection[str] | None = None) -> None:
        if kinds is None:
            self.c.execute("DELETE FROM lifecycle_due WHERE bucket = %s", (bucket,))
        else:
            self.c.execute("DELETE FROM lifecycle_due WHERE bucket = %s AND kind = ANY(%s)", (bucket, list(kinds)))

    def insert_upload(self, up: Upload) -> None:
        self.c.execute(
            f"INSERT INTO uploads({UPLOAD_COLS}, last_active) VALUES ({marks(UPLOAD_COLS, '%s')}, %s)",
            upload_row(up),
        )

    def touch_upload(self, upload_id: str, t: float) -> bool:
        cur = self.c.execute(
            "UPDATE uploads SET last_active = GREATEST(last_active, %s) WHERE upload_id = %s", (t, upload_id)
        )
        return cur.rowcount == 1

    def put_part(self, upload_id: str, part: Part) -> None:
        self.c.execute(
            f"INSERT INTO parts(upload_id, {PART_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (upload_id, part_number) DO UPDATE SET size = EXCLUDED.size, etag = EXCLUDED.etag, "
            "mtime = EXCLUDED.mtime, blob = EXCLUDED.blob, checksums = EXCLUDED.checksums",
            (upload_id, part.part_number, part.size, part.etag, part.mtime, part.blob, json.dumps(part.checksums)),
        )

    def reseal(self, row: SealedRow, sse: str, kid: str) -> bool:
        where = "upload_id = %s" if row.table == "uploads" else "bucket = %s AND key = %s"
        pk: tuple[Any, ...] = (row.ident,) if row.table == "uploads" else (row.bucket, row.key)
        if row.table == "versions":
            where += " AND nseq = %s"
            pk += (row.ident,)
        sql = f"UPDATE {_SEALED_TABLE[row.table]} SET sse = %s, sse_kid = %s WHERE {where} AND sse = %s"
        return self.c.execute(sql, (sse, kid, *pk, row.sse)).rowcount == 1

    def delete_upload(self, upload_id: str) -> list[Part]:
        rows = self._all(
            "DELETE FROM parts WHERE upload_id = %s RETURNING part_number, size, etag, mtime, blob", (upload_id,)
        )
        self.c.execute("DELETE FROM uploads WHERE upload_id = %s", (upload_id,))
        return [Part(*r) for r in rows]

    def put_completed(self, upload_id: str, bucket: str, key: str, done: CompletedUpload, mtime: float) -> None:
        self.c.execute(
            "INSERT INTO completed_uploads(upload_id, bucket, key, etag, parts, mtime, checksums, version_id) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (upload_id) DO UPDATE SET bucket = EXCLUDED.bucket, "
            "key = EXCLUDED.key, etag = EXCLUDED.etag, parts = EXCLUDED.parts, mtime = EXCLUDED.mtime, "
            "checksums = EXCLUDED.checksums, version_id = EXCLUDED.version_id",
            (upload_id, bucket, key, done.etag, done.parts_sig, mtime, json.dumps(done.checksums), done.version_id),
        )

    def forget_completed(self, *, bucket: str | None = None, before: float | None = None) -> None:
        if bucket is not None:
            self.c.execute("DELETE FROM completed_uploads WHERE bucket = %s", (bucket,))
        if before is not None:
            self.c.execute("DELETE FROM completed_uploads WHERE mtime < %s", (before,))

    def queue_freed(self, blob_ids: Collection[str], at: float | None) -> None:
        if blob_ids:
            self.c.execute(
                "INSERT INTO freed_blobs(blob, freed_at) "
                f"SELECT b, coalesce(%s::double precision, {NOW}) FROM unnest(%s::text[]) AS t(b) "
                "ON CONFLICT (blob) DO NOTHING",
                (at, list(blob_ids)),
            )

    def forget_freed(self, blob_ids: Collection[str]) -> None:
        if blob_ids:
            self.c.execute("DELETE FROM freed_blobs WHERE blob = ANY(%s)", (list(blob_ids),))

    def claim_node(self, node: str, owner: str, at: float) -> str:
        self.c.execute(
            "INSERT INTO nodes(node, owner, claimed_at) VALUES (%s, %s, %s) ON CONFLICT (node) DO NOTHING",
            (node, owner, at),
        )
        row = self.c.execute("SELECT owner FROM nodes WHERE node = %s", (node,)).fetchone()
        assert row is not None  # inserted or already there, in this transaction
        return str(row[0])

    def claim_writer_tag(self, tag: str, node: str) -> bool:
        r = self.c.execute(
            f"INSERT INTO writer_tags(tag, node, claimed_at) VALUES (%s, %s, {NOW}) ON CONFLICT (tag) DO NOTHING",
            (tag, node),
        )
        return r.rowcount == 1

    def beat(self, node: str, listen: str, started_at: float, interval: float) -> None:
        self.c.execute(
            f"UPDATE nodes SET listen = %s, started_at = %s, last_seen = {NOW}, interval = %s, release = %s "
            "WHERE node = %s",
            (listen, started_at, interval, pg_schema.LATEST, node),
        )

    def hold_writer_tags(self, tags: Collection[str]) -> set[str]:
        # KEY SHARE on every row asked for, retired or not: a row lock is taken only on the rows a SELECT
        # returns, so a filter on retired_at would leave a live tag unlocked and the retirement would not
        # wait for this commit. Commits naming new blobs hold it at once without blocking each other;
        # retire_writer_tags' FOR UPDATE waits for them (a plain UPDATE of the row would not), and a hold
        # that waited for a retirement reads the retired row once it has committed (READ COMMITTED)
        rows = self._all(
            "SELECT tag, retired_at IS NOT NULL FROM writer_tags WHERE tag = ANY(%s) FOR KEY SHARE", (list(tags),)
        )
        return {tag for tag, retired in rows if retired}

    def retire_writer_tags(self, tags: Collection[str]) -> None:
        wanted = sorted(tags)  # locked in one order: two sweeps retiring overlapping sets never deadlock
        self.c.execute("SELECT tag FROM writer_tags WHERE tag = ANY(%s) ORDER BY tag FOR UPDATE", (wanted,))
        self.c.execute(
            f"UPDATE writer_tags SET retired_at = {NOW} WHERE tag = ANY(%s) AND retired_at IS NULL", (wanted,)
        )

    def tags_swept(self, tags: Collection[str]) -> None:
        self.c.execute(f"UPDATE writer_tags SET swept_at = {NOW} WHERE tag = ANY(%s)", (list(tags),))

    def take_lease(self, duty: str, node: str, ttl: float, every: float) -> bool:
        self.c.execute("INSERT INTO leases(duty) VALUES (%s) ON CONFLICT (duty) DO NOTHING", (duty,))
        row = self.c.execute(
            f"SELECT holder IS NULL OR holder = %s OR expires_at <= {NOW}, done_at IS NULL OR done_at <= {NOW} - %s "
            "FROM leases WHERE duty = %s FOR UPDATE",
            (node, every, duty),
        ).fetchone()
        assert row is not None  # inserted or already there, in this transaction
        if not (row[0] and row[1]):
            return False
        self.c.execute(f"UPDATE leases SET holder = %s, expires_at = {NOW} + %s WHERE duty = %s", (node, ttl, duty))
        return True

    def finish_lease(self, duty: str, node: str) -> None:
        self.c.execute(
            f"UPDATE leases SET holder = NULL, expires_at = NULL, done_at = {NOW} WHERE duty = %s AND holder = %s",
            (duty, node),
        )


class PgMeta:
    """The MetaBackend on a PostgreSQL database (any libpq connection string)."""

    release = pg_schema.LATEST  # what its beat stamps (MetaBackend.release)

    def __init__(self, pool: ConnectionPool[Conn], workers: int, deadline: float | None = None) -> None:
        self._pool = pool
        # one thread per pooled connection: a function never waits for a connection while holding a thread
        self._threads = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="pg-meta")
        self._deadline = deadline

    @classmethod
    def open(cls, conninfo: str, pool_size: int = 4, timeout: float = 30.0, bounded: bool = False) -> PgMeta:
        """A pool of up to `pool_size` connections to the database, created or upgraded to this code's schema
        first (raises SchemaTooNew for a newer release's database, Unavailable if it cannot be reached).

        `timeout`: how long to wait for a connection (from the pool, or connecting) before giving up with
        Unavailable. `bounded`: every operation, the server's answers included, gives up after it too (a
        server that stopped answering without closing the connection would otherwise hold a request
        forever); off for background jobs, whose reads of whole tables may take longer.

        A connection the server dropped is discarded by the pool when it is given back (psycopg_pool checks
        its state), a read that met one runs again on a fresh one, and new ones are made as requests need
        them, so service resumes by itself within about `timeout` of the database coming back.
        """
        # libpq's connect_timeout is in whole seconds (and below 2 is taken as 2)
        connect: dict[str, Any] = {"connect_timeout": max(2, math.ceil(timeout))}
        try:
            with psycopg.connect(conninfo, autocommit=True, connect_timeout=connect["connect_timeout"]) as conn:
                pg_schema.migrate(conn)
        except psycopg.OperationalError as e:
            raise Unavailable() from e
        pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True, **connect},
            timeout=timeout,
            # a connection attempt that keeps failing (the server is down) is given up after this long, and the
            # next request starts a fresh one at once: the pool's backoff would otherwise grow with the outage
            # (1 s, 2 s, 4 s ...) and hold service back that long after the server is back
            reconnect_timeout=timeout,
            open=True,
            name="tunnelmesh-meta",
        )
        return cls(pool, pool_size, timeout if bounded else None)

    async def _answer(self, fut: asyncio.Future[T]) -> T:
        """The outcome of a job on a worker thread, or (bounded) Unavailable once the deadline has passed. The
        job runs on regardless: a write may still commit, and its settle still runs."""
        if self._deadline is None:
            return await fut
        try:
            # the job's own waits (a connection, connecting) give up at `timeout` too: a little slack so that
            # their own Unavailable, which chains the cause, usually comes first
            return await asyncio.wait_for(fut, self._deadline + 1.0)
        except TimeoutError:
            raise Unavailable() from None

    async def read(self, fn: Callable[[PgTx], T], snapshot: bool = False) -> T:
        loop = asyncio.get_running_loop()
        return await self._answer(loop.run_in_executor(self._threads, self._read, fn, snapshot))

    def _read(self, fn: Callable[[PgTx], T], snapshot: bool) -> T:
        try:
            try:
                return self._read_once(fn, snapshot)
            except psycopg.OperationalError as e:
                if not _dropped(e):
                    raise
                # a pooled connection the server dropped (it restarted) fails at its first use; the pool
                # discards it, and a read is safe to run again on a fresh one
                return self._read_once(fn, snapshot)
        except psycopg.OperationalError as e:
            # the pool's timeout (PoolTimeout), a refused or dropped connection
            raise Unavailable() from e

    def _read_once(self, fn: Callable[[PgTx], T], snapshot: bool) -> T:
        with self._pool.connection() as conn:
            tx = PgTx(conn, writing=False)
            if not snapshot:
                return fn(tx)
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return fn(tx)

    async def write(self, fn: Callable[[PgTx], T], settle: Settle | None = None) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        job = self._threads.submit(self._write, fn)
        # settled on the loop even if the caller was cancelled meanwhile: the write goes on regardless
        job.add_done_callback(lambda done: loop.call_soon_threadsafe(_settle, fut, done, settle))
        return await self._answer(fut)

    def _write(self, fn: Callable[[PgTx], T]) -> T:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            committing = False
            try:
                with self._pool.connection() as conn:
                    with conn.transaction():
                        result = fn(PgTx(conn, writing=True))
                        committing = True  # leaving the block sends COMMIT
                    return result
            except _RETRIED as e:
                if attempt == WRITE_ATTEMPTS:
                    raise WriteFailed("metadata") from e
                # jittered, growing: racers that collided once do not collide again in step
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
            except psycopg.OperationalError as e:
                # the database cannot be reached or dropped the connection (SerializationFailure and
                # DeadlockDetected, OperationalErrors too, are caught above: those always roll back).
                # Lost during COMMIT, the outcome is unknown: the server may have committed.
                raise (CommitUnknown() if committing else Unavailable()) from e
            except psycopg.Error as e:
                raise WriteFailed("metadata") from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._threads.shutdown(wait=True)
        self._pool.close()


def _dropped(e: psycopg.OperationalError) -> bool:
    """Whether the error is a connection lost under a statement (not a pool timeout, not a refused connect)."""
    return not isinstance(e, PoolTimeout) and getattr(e, "sqlstate", None) in (None, "57P01", "57P02", "57P03")


def _settle(fut: asyncio.Future[T], done: concurrent.futures.Future[T], settle: Settle | None) -> None:
    err = done.exception()
    ok = err is None
    value: Any = done.result() if ok else err
    # an outcome the database never told: no cleanup may act on a failure that may be a commit
    if settle is not None and not isinstance(err, CommitUnknown):
        try:
            settle(ok, value)
        except Exception:
            log.exception("cleanup after a commit failed")
    if fut.cancelled():
        return
    if err is None:
        fut.set_result(value)
    else:
        fut.set_exception(err)
