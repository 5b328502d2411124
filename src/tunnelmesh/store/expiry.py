"""Abandoned multipart uploads: abort those that no part has reached for `s3.stale_upload_expiry`.

A client that crashes mid-upload never aborts, and its parts would hold space forever. The clock
starts again at every part (at the initiation while there is none), and while a part streams it is
restarted when the part begins and then every `refresh_interval` (in the database, so whichever
worker runs the expiry sees it): a slow upload that keeps sending is never cut off, and a part
cannot stream for ever, since the request limits (body_timeout, min_body_rate) end a stalled one.

One worker of a node does the passes, and one node of a mesh (store/duty.py). That saves duplicate work,
not correctness: each abort re-checks staleness in its own commit, so two passes at once could never
abort an upload twice or one that a part has just reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from tunnelmesh.store import duty
from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import NoSuchUpload

log = logging.getLogger("tunnelmesh.store")

MAX_CHECK_INTERVAL = 3600.0
MAX_REFRESH_INTERVAL = 60.0
BATCH = 100


def check_interval(expiry: float) -> float:
    """Checks often enough that an upload outlives its expiry by at most a tenth of it (or an hour)."""
    return min(expiry / 10, MAX_CHECK_INTERVAL)


def refresh_interval(expiry: float) -> float:
    """How often a streaming part restarts its upload's clock: a small commit a minute at most, and
    often enough that the upload stays far from its expiry."""
    return min(expiry / 4, MAX_REFRESH_INTERVAL)


@contextlib.asynccontextmanager
async def part_in_flight(store: Store, upload_id: str) -> AsyncIterator[None]:
    """Keep an upload from expiring while one of its parts streams (or copies) in this block."""
    interval = store.upload_refresh
    last = await store.upload_last_active(upload_id)
    # a part that starts long after the latest one (or the initiation) restarts the clock before its
    # first byte; one that follows closely costs no commit
    if (last is None or last < time.time() - interval) and not await store.touch_upload(upload_id):
        raise NoSuchUpload(upload_id)

    async def refresh() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await store.touch_upload(upload_id)
            except Exception:
                log.warning("could not refresh multipart upload %s", upload_id, exc_info=True)

    task = asyncio.create_task(refresh())
    try:
        yield
    finally:
        task.cancel()


async def expire_stale_uploads(store: Store, expiry: float, stopping: asyncio.Event | None = None) -> tuple[int, int]:
    """One pass: abort every upload idle for longer than `expiry` seconds; (uploads, bytes) freed.
    Ends early, between two commits, once `stopping` is set."""
    cutoff = time.time() - expiry
    count = size = 0
    # every upload in a batch leaves the stale set (aborted, or no longer stale), so this ends
    while batch := await store.stale_uploads(cutoff, BATCH):
        for up in batch:
            if stopping is not None and stopping.is_set():
                return count, size
            freed = await store.expire_upload(up.upload_id, cutoff)
            if freed is not None:
                count += 1
                size += freed
    return count, size


# the lease of the expiry duty on metadata several coordinators share (MetaTx.take_lease)
LEASE = "upload-expiry"


async def run(store: Store, expiry: float, stopping: asyncio.Event, node: str | None = None) -> None:
    """Expire stale uploads until `stopping` is set (store/duty.py). `node`: this node's id where several
    coordinators share the metadata; then one pass per interval runs in the whole mesh."""
    interval = check_interval(expiry)

    async def work() -> None:
        count, size = await expire_stale_uploads(store, expiry, stopping)
        if count:
            log.info("expired %d stale multipart uploads (%d bytes)", count, size)

    lease = duty.Lease(LEASE, node, interval) if node is not None else None
    await duty.run(store, "stale multipart upload expiry", store.dir.expiry_lock, interval, stopping, work, lease)
