"""SSE-S3's format (store/sse.py) and its reads through Store.open_range (store/content.py), on a real Store in a
temp dir: round trips, every range across chunk borders, and altered, cut or reordered blobs refused."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelmesh.store import content, sse
from tunnelmesh.store.content import ByteRange, once
from tunnelmesh.store.engine import Store, prepare_data_dir
from tunnelmesh.store.errors import DamagedObject
from tunnelmesh.store.records import ObjectRecord, Segment, WriteConditions

C = sse.CHUNK
SIZES = [0, 1, C - 1, C, C + 1, 2 * C, 3 * C + 5]


def _body(n: int) -> bytes:
    return bytes((i * 7 + i // 251) & 0xFF for i in range(n))


@pytest.mark.parametrize("size", SIZES)
def test_a_blob_round_trips_and_takes_one_tag_per_chunk(size: int) -> None:
    dek = sse.new_dek()
    data = _body(size)
    stored = sse.encrypt_blob(dek, "blob-1", data)
    assert len(stored) == sse.stored_size(size) == size + 16 * max(1, -(-size // C))
    assert sse.decrypt_blob(dek, "blob-1", stored, size) == data
    if size >= 16:
        assert data[:16] not in stored
    # the key is per blob: the same DEK and bytes under another blob id give other bytes, which do not open
    other = sse.encrypt_blob(dek, "blob-2", data)
    assert other != stored
    with pytest.raises(sse.Tampered):
        sse.decrypt_blob(dek, "blob-1", other, size)


def test_an_empty_body_is_one_empty_final_chunk_its_tag_alone() -> None:
    dek = sse.new_dek()
    stored = sse.encrypt_blob(dek, "b", b"")
    assert len(stored) == 16
    with pytest.raises(sse.Tampered):
        sse.decrypt_blob(dek, "b", b"", 0)  # an empty body cannot be cut to nothing unnoticed


def test_the_stream_encryptor_gives_the_same_bytes_whatever_the_pieces() -> None:
    dek, data = sse.new_dek(), _body(3 * C + 5)
    for step in (1000, C, C + 1, len(data)):
        enc = sse.Encryptor(sse.blob_key(dek, "b"))
        out: list[bytes] = []
        for i in range(0, len(data), step):
            out += enc.update(data[i : i + step])
        out.append(enc.finish())
        assert b"".join(out) == sse.encrypt_blob(dek, "b", data), step


def test_a_flipped_byte_a_cut_and_a_reorder_fail_authentication() -> None:
    dek, size = sse.new_dek(), 3 * C + 5
    stored = sse.encrypt_blob(dek, "b", _body(size))
    flipped = bytearray(stored)
    flipped[C + 100] ^= 1
    chunks = list(sse.iter_chunks(stored, size))
    swapped = b"".join([chunks[1], chunks[0], *chunks[2:]])
    # cut at a chunk border: the chunk before it was not sealed as the last one
    full = b"".join(chunks[:3])
    for bad, n in ((bytes(flipped), size), (swapped, size), (full, 3 * C)):
        with pytest.raises(sse.Tampered):
            sse.decrypt_blob(dek, "b", bad, n)


def test_an_inline_object_is_one_chunk_under_a_key_of_its_own() -> None:
    dek = sse.new_dek()
    data = _body(content.INLINE_MAX)
    stored = sse.encrypt_inline(dek, data)
    assert len(stored) == len(data) + 16 and sse.decrypt_inline(dek, stored) == data
    with pytest.raises(sse.Tampered):
        sse.decrypt_inline(dek, stored[:-1])


def test_a_wrapped_key_opens_only_for_its_bucket_and_key_and_its_master_key(tmp_path: Path) -> None:
    ring = sse.new_ring()
    dek, sealed = ring.new_object_key("b", "k")
    doc = json.loads(sealed)
    assert set(doc) == {"v", "kid", "nonce", "dek"} and (doc["v"], doc["kid"]) == (1, "k1")
    assert ring.unwrap(sealed, "b", "k") == dek
    with pytest.raises(sse.Tampered):
        ring.unwrap(sealed, "b", "k2")  # a row copied onto another key does not open
    rotated = sse.KeyRing("k2", {**ring.keys, "k2": sse.new_dek()})
    assert rotated.unwrap(sealed, "b", "k") == dek  # older keys still unwrap
    assert sse.kid_of(rotated.rewrap(sealed, "b", "k")) == "k2"
    with pytest.raises(sse.UnknownKey) as e:
        sse.KeyRing("k3", {"k3": sse.new_dek()}).unwrap(sealed, "b", "k")
    assert e.value.kid == "k1"


def test_the_key_file_must_be_its_owners_alone_and_well_formed(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = sse.new_ring()
    sse.write_key_file(path, ring, replace=False)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert sse.KeyRing.load(path) == ring
    with pytest.raises(FileExistsError):
        sse.write_key_file(path, sse.new_ring(), replace=False)  # init never overwrites keys
    os.chmod(path, 0o640)
    with pytest.raises(sse.KeyFileError, match="0640"):
        sse.KeyRing.load(path)
    for bad in ("[]", '{"active": "k9", "keys": {"k1": "AAAA"}}', '{"active": "k1", "keys": {"k1": "AAAA"}}'):
        with pytest.raises(sse.KeyFileError):
            sse.KeyRing.parse(bad)
    with pytest.raises(sse.KeyFileError, match="no such file"):
        sse.KeyRing.load(tmp_path / "none.json")


# ---- reads through the store -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    prepare_data_dir(tmp_path)
    s = Store(tmp_path, 1 << 30)
    s.sse = sse.new_ring()
    asyncio.run(s.create_bucket("b", "p", "r"))
    try:
        yield s
    finally:
        s.close()


def _encrypted(store: Store, key: str, pieces: list[bytes]) -> ObjectRecord:
    dek, sealed = store.new_data_key("b", key)

    async def ingest() -> list[Segment]:
        out = []
        for p in pieces:
            w = await store.ingest(once(p), 1 << 24, dek=dek)
            assert (w.plain_size, w.size) == (len(p), sse.stored_size(len(p)))
            out.append(Segment(w.blob_id, len(p), w.md5))
        return out

    segments = asyncio.run(ingest())
    rec = ObjectRecord("b", key, sum(map(len, pieces)), "e", 1.0, {}, {}, segments, "p", sse=sealed)
    asyncio.run(store.put_object(rec, WriteConditions()))
    got = asyncio.run(store.get_object("b", key))
    assert got is not None and got.sse == sealed
    return got


def _read(r: ByteRange) -> bytes:
    async def collect() -> bytes:
        return b"".join([c async for c in r.chunks()])

    try:
        return asyncio.run(collect())
    finally:
        r.close()


def _borders(size: int) -> list[int]:
    """Offsets around every chunk border of an object, and its ends."""
    out = {0, size}
    for b in range(0, size + 1, C):
        out |= {b - 1, b, b + 1}
    return sorted(x for x in out if 0 <= x <= size)


@pytest.mark.parametrize("verified", [True, False], ids=["decrypted-before-sending", "streamed"])
def test_every_range_across_chunk_borders_reads_the_plaintext(store: Store, monkeypatch, verified: bool) -> None:
    # every range decrypted before the response starts, or every one through the streaming path
    monkeypatch.setattr(content, "VERIFIED_READ", 1 << 30 if verified else 0)
    # a multipart-like object: a blob of three chunks and a bit, an empty one, one of exactly one chunk
    pieces = [_body(3 * C + 5), b"", _body(C)[::-1]]
    whole = b"".join(pieces)
    rec = _encrypted(store, "k", pieces)
    for first in _borders(len(whole)):
        for last in _borders(len(whole)):
            if last <= first:
                continue
            r = store.open_range(rec, first, last - first)
            assert (r.slices == []) == verified
            assert all(not s.whole for s in r.slices)  # never pathsend: the file is ciphertext
            assert _read(r) == whole[first:last], (first, last)


def test_the_blob_on_disk_holds_no_plaintext(store: Store) -> None:
    data = b"the secret plan, " * 10_000
    rec = _encrypted(store, "k", [data])
    stored = store.blobs.path(rec.segments[0].blob).read_bytes()
    assert len(stored) == sse.stored_size(len(data)) and b"secret plan" not in stored
    assert _read(store.open_range(rec, 0, len(data))) == data


def _damage(store: Store, rec: ObjectRecord, how: str) -> None:
    path = store.blobs.path(rec.segments[0].blob)
    stored = bytearray(path.read_bytes())
    if how == "flip":
        stored[2 * (C + 16) + 7] ^= 0x40
    elif how == "truncate":
        del stored[-1]
    else:  # swap the first two chunks
        a, b = stored[: C + 16], stored[C + 16 : 2 * (C + 16)]
        stored[: 2 * (C + 16)] = b + a
    os.chmod(path, 0o600)
    path.write_bytes(bytes(stored))


@pytest.mark.parametrize("how", ["flip", "truncate", "reorder"])
def test_a_damaged_blob_is_refused_before_sending_and_logged(store: Store, caplog, how: str) -> None:
    data = _body(3 * C + 5)
    rec = _encrypted(store, "k", [data])
    _damage(store, rec, how)
    with caplog.at_level(logging.ERROR, "tunnelmesh.store"), pytest.raises(DamagedObject):
        store.open_range(rec, 0, len(data))
    assert "DAMAGED OBJECT 'b/k'" in caplog.text


def test_a_flipped_byte_met_while_streaming_cuts_the_read_short_and_is_logged(store: Store, caplog) -> None:
    data = _body(content.VERIFIED_READ + 5)
    rec = _encrypted(store, "k", [data])
    _damage(store, rec, "flip")
    r = store.open_range(rec, 0, len(data))  # too large to decrypt before sending
    assert r.slices
    with caplog.at_level(logging.ERROR, "tunnelmesh.store"), pytest.raises(OSError):
        _read(r)
    assert "DAMAGED OBJECT 'b/k'" in caplog.text


def test_an_encrypted_object_without_its_master_key_is_damaged_not_served(store: Store) -> None:
    rec = _encrypted(store, "k", [_body(100_000)])
    store.sse = sse.new_ring()  # another key file: k1 is another key
    with pytest.raises(DamagedObject, match="cannot be unwrapped"):
        store.open_range(rec, 0, 10)
    store.sse = None
    with pytest.raises(DamagedObject, match="no key file"):
        store.open_range(rec, 0, 10)
