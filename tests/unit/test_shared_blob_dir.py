"""The shared blob dir of several coordinators (docs/scale-out.md): its layout, that a node's recovery
removes only its own temporaries, and, on real PostgreSQL metadata, what the start-up decides to sweep."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pg_server

from tunnelmesh.store.backends import MetaConfig, open_meta
from tunnelmesh.store.blobs import BlobStore
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.engine import StartupSweep, claim_writer_tags, mark_clean_shutdown, prepare_data_dir


def test_blobs_fan_out_in_the_shared_dir_and_each_node_has_its_own_tmp(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    a = DataDir(tmp_path / "a", shared, "node-a")
    b = DataDir(tmp_path / "b", shared, "node-b")
    blob = "ab" + "0" * 30
    assert a.blob_path(blob) == b.blob_path(blob) == shared / "ab" / blob
    assert a.process_tmp(12) == shared / "tmp" / "node-a" / "12"
    assert b.process_tmp(12) == shared / "tmp" / "node-b" / "12"
    # the node-local files stay in each data dir
    assert a.meta_db.parent == a.lock_file.parent == tmp_path / "a"


def test_a_seal_lands_in_the_shared_fan_out_and_listing_skips_tmp(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    store = BlobStore(tmp_path / "a", DataDir(tmp_path / "a", shared, "node-a"))
    store.prepare()
    w = store.writer()
    assert w._tmp.parent == shared / "tmp" / "node-a" / str(os.getpid())
    w.write(b"x")
    blob = w.seal()
    assert (shared / blob[:2] / blob).read_bytes() == b"x"
    # a 32-hex-digit name in another node's tmp is no blob
    (shared / "tmp" / "node-b" / "9").mkdir(parents=True)
    (shared / "tmp" / "node-b" / "9" / ("ff" * 16)).write_bytes(b"")
    assert list(store.blob_ids_older_than(float("inf"))) == [blob]
    assert list(store.blob_ids_tagged({"ffffffff", blob[-8:]})) == [blob]


def test_start_up_removes_only_this_nodes_temporaries(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    mine, theirs = shared / "tmp" / "node-a" / "77", shared / "tmp" / "node-b" / "77"
    for d in (mine, theirs):
        d.mkdir(parents=True)
        (d / "partial").write_bytes(b"p")
    a = BlobStore(tmp_path / "a", DataDir(tmp_path / "a", shared, "node-a"))
    assert a.sweep_tmp() == 1
    assert not mine.exists() and (theirs / "partial").exists()
    (mine).mkdir()
    (mine / "partial").write_bytes(b"p")
    assert a.remove_tmp_of(77) == 1
    assert (theirs / "partial").exists()


def test_on_postgresql_a_first_start_is_clean_and_an_unclean_one_sweeps_only_this_nodes_tags(tmp_path: Path) -> None:
    meta = MetaConfig(pg_server.fresh_database())
    shared = tmp_path / "shared"
    a = DataDir(tmp_path / "a", shared, "node-a")
    b = DataDir(tmp_path / "b", shared, "node-b")
    for d in (a, b):
        d.root.mkdir()
    # no file can tell a new store here: the database does (node-a never claimed a tag)
    assert prepare_data_dir(a.root, meta, a) is None
    tags_a = claim_writer_tags(a.root, "node-a", 2, meta)
    tags_b = claim_writer_tags(b.root, "node-b", 1, meta)
    assert len(set(tags_a) | set(tags_b)) == 3
    # killed (no marker): the next start sweeps node-a's tags, never node-b's, never a full scan
    todo = prepare_data_dir(a.root, meta, a)
    assert isinstance(todo, StartupSweep) and todo.tags is not None
    assert sorted(todo.tags) == sorted(tags_a)
    mark_clean_shutdown(a.root)
    assert prepare_data_dir(a.root, meta, a) is None

    async def claimed() -> tuple[list[str], list[str]]:
        m = open_meta(a.root, meta, serving=False)
        try:
            return await m.read(lambda r: (r.writer_tags("node-a"), r.writer_tags("node-b")))
        finally:
            m.close()

    assert [sorted(t) for t in asyncio.run(claimed())] == [sorted(tags_a), tags_b]


def test_on_sqlite_an_unclean_start_is_still_the_full_scan(tmp_path: Path) -> None:
    assert prepare_data_dir(tmp_path) is None  # a new store
    todo = prepare_data_dir(tmp_path)  # no marker: killed
    assert isinstance(todo, StartupSweep) and todo.tags is None
