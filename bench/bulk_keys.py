"""Bulk-load object rows straight into a stopped coordinator's SQLite database, for listing benchmarks.

    from bulk_keys import load
    load(data_dir / "meta.sqlite3", "bench", "flat/", 1_000_000)

The bucket must exist (made through S3 before the coordinator was stopped). Rows look like those of empty
objects a PUT writes (an MD5, `{}` headers, no segments, no inline bytes), keys `<prefix><i:08d>`, or with
`fanout` F `<prefix><i // F:06d>/<i % F:06d>`: a prefix of `n // F` folders of F keys each, what a listing
with a delimiter rolls up. One transaction per million rows, in key order (appends to the primary key).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
_BATCH = 1_000_000


def keys(prefix: str, n: int, fanout: int = 0) -> Iterator[str]:
    if fanout:
        return (f"{prefix}{i // fanout:06d}/{i % fanout:06d}" for i in range(n))
    return (f"{prefix}{i:08d}" for i in range(n))


def load(db: Path, bucket: str, prefix: str, n: int, fanout: int = 0, owner: str = "admin") -> None:
    """Insert `n` rows into `bucket` and count them in its row (objects; every row is 0 bytes)."""
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a benchmark's scratch data: rebuilt, never recovered
        if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone() is None:
            raise SystemExit(f"no bucket {bucket!r} in {db}: create it through S3 first")
        now = time.time()
        seq = int(now * 1_000_000)
        it = keys(prefix, n, fanout)
        done = 0
        while done < n:
            count = min(_BATCH, n - done)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR REPLACE INTO objects(bucket, key, size, etag, mtime, headers, checksums, segments, "
                "owner, data, seq) VALUES (?, ?, 0, ?, ?, '{}', '{}', '[]', ?, x'', ?)",
                ((bucket, next(it), EMPTY_MD5, now, owner, seq) for _ in range(count)),
            )
            conn.execute("UPDATE buckets SET objects = objects + ? WHERE name = ?", (count, bucket))
            conn.execute("COMMIT")
            done += count
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
