"""Metadata rows as SQL backends store them (store/sqlite_meta.py, store/pg_meta.py): the column lists and
the JSON encodings of the record fields kept as TEXT, shared so that both backends read and write the same
shape (and `storage migrate` can copy rows as they are)."""

from __future__ import annotations

import json
from typing import Any

from tunnelmesh.store.records import Bucket, ObjectRecord, ObjectRef, Part, Segment, Upload

# what an Upload record holds; the table's last column, last_active (the latest part's arrival, else
# the initiation), is read only by stale-upload expiry
BUCKET_COLS = "name, owner, created, region, quota, used, objects, mpu_used"
UPLOAD_COLS = "upload_id, bucket, key, initiated, owner, headers, checksum_algorithm, checksum_type"
OBJ_COLS = "bucket, key, size, etag, mtime, headers, checksums, segments, owner, data"
# what a listing needs; no JSON to parse and no inline bytes to copy
LIST_COLS = "bucket, key, size, etag, mtime, owner"
PART_COLS = "part_number, size, etag, mtime, blob, checksums"
REF_COLS = "size, etag, mtime, segments"


def segments_to_json(segments: list[Segment]) -> str:
    # [blob, size, md5] plus the part checksums only when there are some: rows of other objects keep
    # their size, and rows written before checksums were kept (three fields) read back alike
    return json.dumps(
        [[s.blob, s.size, s.md5, s.checksums] if s.checksums else [s.blob, s.size, s.md5] for s in segments]
    )


# a database row as the driver hands it over: its columns are checked by the code that reads them
Row = tuple[Any, ...]


def row_to_object(r: Row) -> ObjectRecord:
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


def row_to_ref(r: Row) -> ObjectRef:
    # most objects are inline (no segments): skip the JSON decoder for them
    return ObjectRef(r[0], r[1], r[2], [seg[0] for seg in json.loads(r[3])] if r[3] != "[]" else [])


def row_to_listed(r: Row) -> ObjectRecord:
    return ObjectRecord(
        bucket=r[0], key=r[1], size=r[2], etag=r[3], mtime=r[4], headers={}, checksums={}, segments=[], owner=r[5]
    )


def row_to_upload(r: Row) -> Upload:
    ctype = (r[7] or "COMPOSITE") if r[6] else None
    return Upload(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], ctype)


def row_to_part(r: Row) -> Part:
    return Part(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))


# the other way: a record as the row values the column lists above name, in their order


def bucket_row(b: Bucket) -> Row:
    return (b.name, b.owner, b.created, b.region, b.quota, b.used, b.objects, b.mpu_used)


def object_row(rec: ObjectRecord) -> Row:
    """The values of OBJ_COLS."""
    return (
        rec.bucket,
        rec.key,
        rec.size,
        rec.etag,
        rec.mtime,
        json.dumps(rec.headers),
        json.dumps(rec.checksums),
        segments_to_json(rec.segments),
        rec.owner,
        rec.data,
    )


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
        up.initiated,
    )
