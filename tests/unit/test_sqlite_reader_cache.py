"""The SQLite backend's reader holds a bounded page cache (store/sqlite_meta.py READER_CACHE_KIB): memory per
worker, issue 17. The cache bound is SQLite's own setting on the connection; what it holds is measured by
SQLite itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tunnelmesh.store.sqlite_meta import SqliteMeta


def test_reader_page_cache_is_bounded(tmp_path: Path) -> None:
    meta = SqliteMeta.open(tmp_path)
    try:
        size = asyncio.run(meta.read(lambda r: r.c.execute("PRAGMA cache_size").fetchone()[0]))
    finally:
        meta.close()
    # negative: KiB, whatever the page size; SQLite's default is -2000
    assert -1024 <= size < 0
