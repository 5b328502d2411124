"""The sse-rewrap duty (SSE-S3, docs/data-protection.md section 7): after `tunnelmesh sse rotate`, the data keys
an older master key wraps are wrapped again under the active one, page by page (metadata only, through the
partial indexes on sse_kid), so that the old key can leave the key file (`tunnelmesh sse retire`) once
`sse status` shows it unused.

Safe anywhere, any number of times, and across a kill: each page is one commit, which changes a row only if it
still holds what was read (store/metadata.py `reseal`); the data key, hence every blob, stays as it is. One
worker per node (a flock) and one node of a mesh at a time (a lease) does it, every s3.sse_rewrap_interval
seconds.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from tunnelmesh.store import duty
from tunnelmesh.store.engine import Store

log = logging.getLogger("tunnelmesh.store")

LEASE = "sse-rewrap"
BATCH = 500
# tests only: a directory; while it holds no file named "release", the duty re-wraps pages of two rows and,
# after each page's commit, writes page-<n> there and waits, so a test can kill the coordinator between pages
HOLD_ENV = "TUNNELMESH_TEST_REWRAP_HOLD"


async def rewrap_all(store: Store, stopping: asyncio.Event | None = None) -> dict[str, int]:
    """One pass: every row of every master key but the active one, re-wrapped; rows done per old key id."""
    ring = store.sse
    if ring is None:
        return {}
    hold = os.environ.get(HOLD_ENV)
    batch = 2 if hold else BATCH
    done: dict[str, int] = {}
    pages = 0
    for kid in sorted(await store.sse_kids()):
        if kid == ring.active or kid not in ring.keys:
            continue
        while stopping is None or not stopping.is_set():
            found, moved = await store.rewrap(kid, batch)
            done[kid] = done.get(kid, 0) + moved
            if hold:
                pages += 1
                await _hold(Path(hold), pages)
            if found < batch or not moved:  # the last page, or one whose rows all stay (logged by the store)
                break
    return done


async def _hold(hold: Path, page: int) -> None:
    if (hold / "release").exists():
        return
    (hold / f"page-{page}").write_bytes(b"")
    while not (hold / "release").exists():
        await asyncio.sleep(0.05)


async def run(store: Store, interval: float, stopping: asyncio.Event, node: str) -> None:
    """Re-wrap every `interval` seconds until `stopping` is set (store/duty.py)."""

    async def work() -> None:
        ring = store.sse
        if ring is None:
            return
        done = await rewrap_all(store, stopping)
        for kid, n in sorted(done.items()):
            if n:
                log.info("sse-rewrap: re-wrapped %d data keys of master key %s under %s", n, kid, ring.active)

    await duty.run(store, "sse-rewrap", store.dir.rewrap_lock, interval, stopping, work, duty.Lease(LEASE, node, 600.0))
