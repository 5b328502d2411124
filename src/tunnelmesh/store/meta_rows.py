"""Metadata rows as SQL backends store them (store/sqlite_meta.py, store/pg_meta.py): the column lists and
the JSON encodings of the record fields kept as TEXT, shared so that both backends read and write the same
shape (and `storage migrate` can copy rows as they are)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, partial
from typing import Any

from tunnelmesh.store.metadata import Keep
from tunnelmesh.store.records import (
    Bucket,
    Listed,
    Lock,
    ObjectRecord,
    ObjectRef,
    Part,
    Segment,
    Upload,
    VersionEntry,
    seq_at,
)
from tunnelmesh.store.sse import kid_of

# what an Upload record holds; the table's last column, last_active (the latest part's arrival, else
# the initiation), is read only by stale-upload expiry
BUCKET_COLS = (
    "name, owner, created, region, quota, used, objects, mpu_used, versioning, object_lock, lock_default, "
    "nc_used, nc_objects, tags, lifecycle, sse_default"
)
UPLOAD_COLS = "upload_id, bucket, key, initiated, owner, headers, checksum_algorithm, checksum_type, sse, sse_kid"
# the columns of a version, current (`objects`) or not (`versions`), that travel with it when it moves
# between the two tables; an `objects` row keeps its `seq`, a `versions` row `nseq` = -seq (one ascending
# index, newest first, on both engines), plus `marker` and `since`
_BODY_COLS = "size, etag, mtime, headers, checksums, segments, owner, data, version_id"
# sse: the wrapped data key of an encrypted version (store/sse.py), sse_kid the master key id inside it (its
# own column, for the partial index that finds the rows of a key id without reading plaintext rows)
_ATTR_COLS = "tags, lock_mode, lock_until, legal_hold, sse, sse_kid"
OBJ_COLS = f"bucket, key, {_BODY_COLS}, seq, {_ATTR_COLS}"
VERSION_COLS = f"bucket, key, nseq, marker, since, {_BODY_COLS}, {_ATTR_COLS}"
# a version's seq, also for a row written before seqs were kept (NULL: its mtime's microseconds, seq_at):
# SQLite's CAST truncates as Python's int() does; PostgreSQL's needs trunc() (its cast rounds)
SQLITE_SEQ = "COALESCE(seq, CAST(mtime * 1000000 AS INTEGER))"
PG_SEQ = "COALESCE(seq, trunc(mtime * 1000000)::bigint)"
# what a listing needs; no JSON to parse and no inline bytes to copy (nor a version's columns: ListObjects
# shows none, and two more columns cost a page of 1000 keys 13% more CPU, measured with bench/compare.py; nor
# the bucket, which the caller named)
LIST_COLS = "key, size, etag, mtime, owner"
VLIST_COLS = "key, version_id, -nseq, marker, size, etag, mtime, owner"
# scan_current's: an `objects` row in VLIST_COLS' shape (never a marker), its seq as each engine reads it
SQLITE_CLIST_COLS = f"key, version_id, {SQLITE_SEQ}, 0, size, etag, mtime, owner"
PG_CLIST_COLS = f"key, version_id, {PG_SEQ}, 0, size, etag, mtime, owner"
PART_COLS = "part_number, size, etag, mtime, blob, checksums"
REF_COLS = "size, etag, mtime, segments, version_id, seq, lock_mode, lock_until, legal_hold"
# what deleting a current row returns: what the rules need to count and free it, no more (DeleteObjects
# of 1000 keys took 18% more CPU returning REF_COLS)
GONE_COLS = "size, etag, mtime, segments"
VREF_COLS = "size, etag, mtime, segments, version_id, -nseq, lock_mode, lock_until, legal_hold, marker"


def segments_to_json(segments: list[Segment]) -> str:
    if not segments:
        return "[]"  # an inline object's (most are): json.dumps costs a microsecond even for nothing
    # [blob, size, md5] plus the part checksums only when there are some: rows of other objects keep
    # their size, and rows written before checksums were kept (three fields) read back alike
    return json.dumps(
        [[s.blob, s.size, s.md5, s.checksums] if s.checksums else [s.blob, s.size, s.md5] for s in segments]
    )


# a database row as the driver hands it over: its columns are checked by the code that reads them
Row = tuple[Any, ...]


def row_to_bucket(r: Row) -> Bucket:
    """A row of BUCKET_COLS."""
    return Bucket(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], bool(r[9]), r[10], r[11], r[12], r[13], r[14], r[15]
    )


def _lock(mode: str | None, until: float | None, hold: int | None) -> Lock | None:
    return Lock(mode, until, bool(hold)) if mode is not None or until is not None or hold else None


@lru_cache(maxsize=256)
def _parsed_map(text: str) -> dict[str, str]:
    return dict(json.loads(text))


def _str_map(text: str) -> dict[str, str]:
    """A headers or checksums column: objects share a few shapes (one content-type, no checksums), and json.loads
    cost about 2 us a column on every GET/HEAD; each read gets its own copy (the values are strings)."""
    return {} if text == "{}" else dict(_parsed_map(text))


def _segments(text: str) -> list[Segment]:
    return [Segment(*seg) for seg in json.loads(text)] if text != "[]" else []  # inline objects have none


def _record(bucket: str, key: str, seq: int | None, marker: bool, body: Row, attrs: Row) -> ObjectRecord:
    """A record from _BODY_COLS and _ATTR_COLS."""
    return ObjectRecord(
        bucket=bucket,
        key=key,
        size=body[0],
        etag=body[1],
        mtime=body[2],
        headers=_str_map(body[3]),
        checksums=_str_map(body[4]),
        segments=_segments(body[5]),
        owner=body[6],
        data=body[7],
        version_id=body[8],
        seq=seq or 0,  # NULL in rows from before seqs: the mtime's (ObjectRecord's own default)
        tags=json.loads(attrs[0]) if attrs[0] is not None else None,
        lock=_lock(attrs[1], attrs[2], attrs[3]),
        marker=marker,
        sse=attrs[4],
    )


def row_to_object(r: Row) -> ObjectRecord:
    """A row of OBJ_COLS."""
    return _record(r[0], r[1], r[11], False, r[2:11], r[12:18])


def row_to_version(r: Row) -> ObjectRecord:
    """A row of VERSION_COLS."""
    return _record(r[0], r[1], -r[2], bool(r[3]), r[5:14], r[14:20])


def _blobs(segments: str) -> list[str]:
    # most objects are inline (no segments): skip the JSON decoder for them
    return [seg[0] for seg in json.loads(segments)] if segments != "[]" else []


def row_to_ref(r: Row) -> ObjectRef:
    """A row of REF_COLS, of VREF_COLS (one more column: marker) or of GONE_COLS (the first four)."""
    if len(r) == 4:
        return ObjectRef(r[0], r[1], r[2], _blobs(r[3]), None, seq_at(r[2]))
    marker = len(r) > 9 and bool(r[9])
    return ObjectRef(r[0], r[1], r[2], _blobs(r[3]), r[4], r[5] or seq_at(r[2]), r[6], r[7], bool(r[8]), marker)


# a row of LIST_COLS as a Listed, made in C (tuple.__new__ copies the row; no Python frame per row)
_as_listed: Callable[[Row], Listed] = partial(tuple.__new__, Listed)


def listed_rows(rows: Iterable[Row]) -> Iterator[Listed]:
    """Rows of LIST_COLS as Listed, lazily."""
    return map(_as_listed, rows)


def row_to_version_entry(r: Row) -> VersionEntry:
    """A row of VLIST_COLS, or of SQLITE_CLIST_COLS or PG_CLIST_COLS."""
    return VersionEntry(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7])


def row_to_upload(r: Row) -> Upload:
    ctype = (r[7] or "COMPOSITE") if r[6] else None
    return Upload(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], ctype, r[8])


def row_to_part(r: Row) -> Part:
    return Part(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))


# the other way: a record as the row values the column lists above name, in their order


def bucket_row(b: Bucket) -> Row:
    """The values of BUCKET_COLS."""
    return (
        b.name,
        b.owner,
        b.created,
        b.region,
        b.quota,
        b.used,
        b.objects,
        b.mpu_used,
        b.versioning,
        int(b.object_lock),
        b.lock_default,
        b.nc_used,
        b.nc_objects,
        b.tags,
        b.lifecycle,
        b.sse_default,
    )


def _map_to_json(m: dict[str, str]) -> str:
    # most objects have no checksums, and many no headers: json.dumps costs a microsecond even for nothing
    return json.dumps(m) if m else "{}"


def _body(rec: ObjectRecord) -> Row:
    return (
        rec.size,
        rec.etag,
        rec.mtime,
        _map_to_json(rec.headers),
        _map_to_json(rec.checksums),
        segments_to_json(rec.segments),
        rec.owner,
        rec.data,
        rec.version_id,
    )


def tags_to_json(tags: dict[str, str] | None) -> str | None:
    return json.dumps(tags) if tags is not None else None


def lock_values(lock: Lock | None) -> Row:
    """The values of lock_mode, lock_until, legal_hold."""
    return (lock.mode, lock.until, int(lock.legal_hold)) if lock is not None else (None, None, None)


def sse_kid(sealed: str | None) -> str | None:
    """The master key id of a wrapped data key (None: plaintext)."""
    return kid_of(sealed) if sealed is not None else None


def _attrs(rec: ObjectRecord) -> Row:
    return (tags_to_json(rec.tags), *lock_values(rec.lock), rec.sse, sse_kid(rec.sse))


def object_row(rec: ObjectRecord) -> Row:
    """The values of OBJ_COLS."""
    return (rec.bucket, rec.key, *_body(rec), rec.seq, *_attrs(rec))


def version_row(rec: ObjectRecord, marker: bool, since: float) -> Row:
    """The values of VERSION_COLS."""
    return (rec.bucket, rec.key, -rec.seq, int(marker), since, *_body(rec), *_attrs(rec))


# moving a version between the tables without decoding it: the columns each side gives the other
# (objects -> versions takes `since` as a parameter, `param`; seq_sql is SQLITE_SEQ or PG_SEQ); versions ->
# objects selects PROMOTE_SELECT into OBJ_COLS
def retire_select(seq_sql: str, param: str) -> str:
    return f"bucket, key, -{seq_sql}, 0, {param}, {_BODY_COLS}, {_ATTR_COLS}"


PROMOTE_SELECT = f"bucket, key, {_BODY_COLS}, -nseq, {_ATTR_COLS}"


def upload_row(up: Upload) -> Row:
    """The values of UPLOAD_COLS, then last_active (a new upload is last active at its initiation)."""
    return (
        up.upload_id,
        up.bucket,
        up.key,
        up.initiated,
        up.owner,
        json.dumps(up.headers),
        up.checksum_algorithm,
        up.checksum_type,
        up.sse,
        sse_kid(up.sse),
        up.initiated,
    )


def attr_values(
    tags: dict[str, str] | None | Keep, retention: tuple[str, float] | None | Keep, legal_hold: bool | Keep
) -> list[tuple[str, Any]]:
    """set_version_attrs' changes as (column, value) pairs, what is KEEP left out."""
    out: list[tuple[str, Any]] = []
    if not isinstance(tags, Keep):
        out.append(("tags", tags_to_json(tags)))
    if not isinstance(retention, Keep):
        out += [("lock_mode", retention[0] if retention else None), ("lock_until", retention[1] if retention else None)]
    if not isinstance(legal_hold, Keep):
        out.append(("legal_hold", int(legal_hold)))
    return out


def attrs_update(
    bucket: str, key: str, seq: int, current: bool, changes: list[tuple[str, Any]], seq_sql: str, mark: str
) -> tuple[str, list[Any]]:
    """set_version_attrs' UPDATE of the current row (`objects`, by its seq as `seq_sql` reads it) or of a
    noncurrent one (`versions`, by nseq), with `mark` the driver's placeholder (`?` or `%s`)."""
    # nothing to set: the statement still tells whether the version is there
    sets = ", ".join(f"{col} = {mark}" for col, _ in changes) or "bucket = bucket"
    values = [v for _, v in changes]
    if current:
        sql = f"UPDATE objects SET {sets} WHERE bucket = {mark} AND key = {mark} AND {seq_sql} = {mark}"
        return sql, [*values, bucket, key, seq]
    sql = f"UPDATE versions SET {sets} WHERE bucket = {mark} AND key = {mark} AND nseq = {mark}"
    return sql, [*values, bucket, key, -seq]


def marks(cols: str, mark: str = "?") -> str:
    """One placeholder per column of a column list: `?` (SQLite) or `%s` (PostgreSQL)."""
    return ", ".join([mark] * (cols.count(",") + 1))


Usage = dict[str, tuple[int, int, int, int, int]]


def usage_tuples(
    objects: dict[str, tuple[int, int]], versions: dict[str, tuple[int, int]], parts: dict[str, int]
) -> Usage:
    """count_usage's answer from per-bucket (bytes, rows) of objects and of versions, and part bytes."""
    out: Usage = {}
    for b in objects.keys() | versions.keys() | parts.keys():
        o, v = objects.get(b, (0, 0)), versions.get(b, (0, 0))
        out[b] = (int(o[0]) + int(v[0]), int(o[1]), int(parts.get(b, 0)), int(v[0]), int(v[1]))
    return out
