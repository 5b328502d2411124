"""The orphan sweeps never free a blob that only a noncurrent version names (docs/data-protection.md: a
version's blobs are freed only when its row is deleted, never when it is retired). Run against real blob
files and each engine the sweeps run on; the memory backend's referenced_blobs is held to the same by the
contract tests (test_meta_contract.py::test_a_noncurrent_versions_blobs_stay_referenced)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pg_server
import pytest

from tunnelmesh.store.backends import SQLITE, MetaConfig, open_meta
from tunnelmesh.store.blobs import BlobStore, writer_tag
from tunnelmesh.store.engine import prepare_data_dir, sweep_orphans, sweep_tags
from tunnelmesh.store.metadata import MetaTx
from tunnelmesh.store.records import Bucket, ObjectRecord, Segment


def _seal(store: BlobStore, data: bytes) -> str:
    w = store.writer()
    w.write(data)
    return w.seal()


def _rec(key: str, blob: str, seq: int) -> ObjectRecord:
    return ObjectRecord("b", key, 1, "e", 5.0, {}, {}, [Segment(blob, 1, "")], "p", version_id=f"{seq:024x}", seq=seq)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_sweep_never_frees_a_blob_only_a_noncurrent_version_names(tmp_path: Path, engine: str) -> None:
    meta = SQLITE if engine == "sqlite" else MetaConfig(pg_server.fresh_database())
    root = tmp_path / "data"
    root.mkdir()
    prepare_data_dir(root, meta)
    store = BlobStore(root)
    current, retired, put_noncurrent, orphan = (_seal(store, bytes([i])) for i in range(4))

    def fill(tx: MetaTx) -> None:
        tx.insert_bucket(Bucket("b", "p", 1.0, "r", None, 0, 0, 0))
        tx.put_object(_rec("k", retired, 1))
        tx.retire_current("b", "k", 6.0)  # now named by a versions row only
        tx.put_object(_rec("k", current, 2))
        tx.put_version(_rec("j", put_noncurrent, 1), False, 6.0)

    async def main() -> None:
        m = open_meta(root, meta, serving=False)
        try:
            await m.write(fill)
        finally:
            m.close()

    asyncio.run(main())
    later = time.time() + 60  # every blob sealed before it
    assert sweep_orphans(root, later, meta) == 1
    assert not store.path(orphan).exists()
    assert [store.path(b).read_bytes() for b in (current, retired, put_noncurrent)] == [b"\x00", b"\x01", b"\x02"]
    # the sweep by writer tag (a dead worker's, a silent node's) keeps them too
    another = _seal(store, b"x")
    assert sweep_tags(root, [writer_tag()], meta) == 1
    assert not store.path(another).exists()
    assert all(store.path(b).exists() for b in (current, retired, put_noncurrent))
