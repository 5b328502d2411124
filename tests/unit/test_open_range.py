"""Store.open_range and the inline-or-blob decision, on a real Store in a temp dir."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelmesh.store.content import INLINE_MAX, ByteRange, once
from tunnelmesh.store.engine import Store, prepare_data_dir
from tunnelmesh.store.errors import DamagedObject
from tunnelmesh.store.records import ObjectRecord, Segment, WriteConditions

# a multipart-like object: segment sizes with an empty one in the middle (an empty part)
SEGMENT_SIZES = [5, 7, 0, 3, 11]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    prepare_data_dir(tmp_path)
    s = Store(tmp_path, 1 << 30)
    asyncio.run(s.create_bucket("b", "p", "r"))
    try:
        yield s
    finally:
        s.close()


def _put(store: Store, key: str, data: bytes | None, segments: list[Segment], size: int) -> ObjectRecord:
    rec = ObjectRecord("b", key, size, "e", 1.0, {}, {}, segments, "p", data)
    asyncio.run(store.put_object(rec, WriteConditions()))
    got = asyncio.run(store.get_object("b", key))
    assert got is not None
    return got


def _blob_object(store: Store, key: str, pieces: list[bytes]) -> ObjectRecord:
    async def ingest() -> list[Segment]:
        out = []
        for p in pieces:
            w = await store.ingest(once(p), 1 << 20)
            out.append(Segment(w.blob_id, len(p), hashlib.md5(p).hexdigest()))
        return out

    return _put(store, key, None, asyncio.run(ingest()), sum(len(p) for p in pieces))


def _read(r: ByteRange) -> bytes:
    async def collect() -> bytes:
        return b"".join([c async for c in r.chunks()])

    try:
        return asyncio.run(collect())
    finally:
        r.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_the_store_alone_decides_inline_or_blob(store: Store) -> None:
    assert store.keeps_inline(0) and store.keeps_inline(INLINE_MAX)
    assert not store.keeps_inline(INLINE_MAX + 1)
    small, big = os.urandom(INLINE_MAX), os.urandom(INLINE_MAX + 1)
    assert asyncio.run(store.write_bytes(small)) == (small, [])
    data, segments = asyncio.run(store.write_bytes(big))
    assert data is None and len(segments) == 1
    assert segments[0].size == len(big) and segments[0].md5 == hashlib.md5(big).hexdigest()
    assert Path(store.blobs.path(segments[0].blob)).read_bytes() == big


def test_an_inline_object_is_read_from_its_row(store: Store) -> None:
    body = bytes(range(200))
    rec = _put(store, "small", body, [], len(body))
    for first, length in [(0, 200), (0, 1), (10, 50), (199, 1), (150, 50)]:
        r = store.open_range(rec, first, length)
        assert r.slices == []
        assert _read(r) == body[first : first + length]


def test_an_empty_object_opens_nothing(store: Store) -> None:
    rec = _put(store, "empty", b"", [], 0)
    r = store.open_range(rec, 0, 0)
    assert r.slices == [] and _read(r) == b""
    blobbed = _blob_object(store, "empty-part", [b""])
    r = store.open_range(blobbed, 0, 0)
    assert r.slices == [] and _read(r) == b""


def test_a_single_blob_object_reads_any_range(store: Store) -> None:
    body = os.urandom(1000)
    rec = _blob_object(store, "one", [body])
    whole = store.open_range(rec, 0, 1000)
    assert [(s.offset, s.length, s.whole) for s in whole.slices] == [(0, 1000, True)]
    assert whole.slices[0].path == os.fspath(store.blobs.path(rec.segments[0].blob))
    assert _read(whole) == body
    for first, length in [(0, 1), (1, 999), (500, 250), (999, 1)]:
        r = store.open_range(rec, first, length)
        assert [(s.offset, s.length, s.whole) for s in r.slices] == [(first, length, False)]
        assert _read(r) == body[first : first + length]


def test_every_range_of_a_multi_segment_object_crosses_segments_exactly(store: Store) -> None:
    pieces = [os.urandom(n) for n in SEGMENT_SIZES]
    body = b"".join(pieces)
    rec = _blob_object(store, "multi", pieces)
    starts = [sum(SEGMENT_SIZES[:i]) for i in range(len(SEGMENT_SIZES))]
    before = _open_fds()
    for first in range(len(body)):
        for length in range(1, len(body) - first + 1):
            r = store.open_range(rec, first, length)
            # one slice per segment holding bytes of the range: none for one it only borders, nor an empty one
            touched = [
                s for s, n in zip(starts, SEGMENT_SIZES, strict=True) if n and s < first + length and s + n > first
            ]
            assert len(r.slices) == len(touched), (first, length)
            assert sum(s.length for s in r.slices) == length
            assert _read(r) == body[first : first + length], (first, length)
    assert _open_fds() == before


def test_every_blob_is_open_before_the_first_byte_is_read(store: Store) -> None:
    pieces = [os.urandom(n) for n in (70_000, 100, 200_000)]
    body = b"".join(pieces)
    rec = _blob_object(store, "held", pieces)
    r = store.open_range(rec, 69_990, 70_200)
    assert len(r.slices) == 3
    # an overwrite's freed blobs are unlinked after their grace: here at once, before any read
    store.discard([s.blob for s in rec.segments])
    assert not any(store.blobs.path(s.blob).exists() for s in rec.segments)
    assert _read(r) == body[69_990 : 69_990 + 70_200]


def test_a_missing_or_truncated_blob_is_refused_before_reading_and_leaks_no_fd(store: Store) -> None:
    pieces = [os.urandom(n) for n in (100, 100, 100)]
    rec = _blob_object(store, "damaged", pieces)
    before = _open_fds()
    os.truncate(store.blobs.path(rec.segments[1].blob), 50)
    with pytest.raises(DamagedObject, match="is 50 bytes, its record says 100"):
        store.open_range(rec, 0, 300)
    assert _open_fds() == before
    # a range that does not reach the damaged blob is still served
    assert _read(store.open_range(rec, 0, 100)) == pieces[0]
    os.unlink(store.blobs.path(rec.segments[2].blob))
    with pytest.raises(DamagedObject, match="is missing") as e:
        store.open_range(rec, 200, 100)
    assert (e.value.bucket, e.value.key) == ("b", "damaged")
    assert _open_fds() == before
