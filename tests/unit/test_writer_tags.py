"""Writer tags in blob ids, and the sweep for a dead writer's orphans, on a real Store in a temp dir."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tunnelmesh.store import blobs
from tunnelmesh.store.engine import Store, prepare_data_dir, sweep_dead_writers
from tunnelmesh.store.records import ObjectRecord, Part, Segment, Upload, WriteConditions

DEAD, LIVE = "deadbeef", "0a1b2c3d"


@pytest.fixture
def tag() -> Iterator[None]:
    """Restore this process's writer tag after a test changes it."""
    before = blobs.writer_tag()
    yield
    blobs.set_writer_tag(before)


def test_a_blob_id_is_32_hex_digits_ending_with_the_writer_tag(tag) -> None:
    blobs.set_writer_tag(DEAD)
    ids = {blobs.new_blob_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{24}deadbeef", b) for b in ids)
    # the directory digits are random: one writer's blobs are not all in one directory
    assert len({b[:2] for b in ids}) > 1
    for bad in ("", "deadbee", "deadbeef0", "DEADBEEF", "deadbeeg"):
        with pytest.raises(ValueError):
            blobs.set_writer_tag(bad)
    assert blobs.writer_tag() == DEAD


def test_a_forked_child_never_writes_under_its_parents_tag(tag) -> None:
    blobs.set_writer_tag(DEAD)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, blobs.new_blob_id().encode())
        os._exit(0)
    os.close(w)
    child_id = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert re.fullmatch(r"[0-9a-f]{32}", child_id)
    assert not child_id.endswith(DEAD)
    assert blobs.writer_tag() == DEAD


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _record(key: str, blob: str, data: bytes) -> ObjectRecord:
    md5 = hashlib.md5(data).hexdigest()
    return ObjectRecord("b", key, len(data), md5, 1.0, {}, {}, [Segment(blob, len(data), md5)], "p")


def _files(data_dir: Path) -> set[str]:
    return {p.name for sub in (data_dir / "blobs").iterdir() for p in sub.iterdir()}


def test_the_sweep_removes_only_a_dead_writers_unnamed_blobs(tmp_path: Path, tag) -> None:
    prepare_data_dir(tmp_path)
    store = Store(tmp_path, 1 << 30)

    async def scenario() -> dict[str, str]:
        await store.create_bucket("b", "p", "r")
        blobs.set_writer_tag(DEAD)
        named = (await store.ingest(_once(b"named" * 100), 1 << 20)).blob_id
        await store.put_object(_record("named", named, b"named" * 100), WriteConditions())
        overwritten = (await store.ingest(_once(b"old" * 100), 1 << 20)).blob_id
        await store.put_object(_record("over", overwritten, b"old" * 100), WriteConditions())
        part = (await store.ingest(_once(b"part" * 100), 1 << 20)).blob_id
        await store.create_upload(Upload("u1", "b", "mpu", 1.0, "p", {}, None))
        await store.put_part("b", "mpu", "u1", Part(1, 400, hashlib.md5(b"part" * 100).hexdigest(), 1.0, part))
        orphan = (await store.ingest(_once(b"orphan" * 100), 1 << 20)).blob_id
        blobs.set_writer_tag(LIVE)
        newer = (await store.ingest(_once(b"new" * 100), 1 << 20)).blob_id
        # the old version is queued as freed, inside its grace: the reapers' to unlink, not the sweep's
        await store.put_object(_record("over", newer, b"new" * 100), WriteConditions())
        in_flight = (await store.ingest(_once(b"live" * 100), 1 << 20)).blob_id
        return {
            "named": named,
            "overwritten": overwritten,
            "part": part,
            "orphan": orphan,
            "newer": newer,
            "in_flight": in_flight,
        }

    try:
        ids = asyncio.run(scenario())
        assert set(ids.values()) <= _files(tmp_path)
        assert sweep_dead_writers(tmp_path, {DEAD: 1234}) == 1
        assert _files(tmp_path) == set(ids.values()) - {ids["orphan"]}
        # the orphan went through the queue (a commit of the sweep's own) and left it again
        assert asyncio.run(store.meta.read(lambda r: r.freed_before(math.inf, None))) == [ids["overwritten"]]
        # nothing of the dead writer is left to find, and a live writer's tag is never swept here
        assert sweep_dead_writers(tmp_path, {DEAD: 1234}) == 0
        assert ids["in_flight"] in _files(tmp_path)
        named_rec = asyncio.run(store.get_object("b", "named"))
        assert named_rec is not None and asyncio.run(store.read_all(named_rec)) == b"named" * 100
    finally:
        store.close()
