"""Abandoned multipart uploads: abort those that no part has reached for `s3.stale_upload_expiry`.

A client that crashes mid-upload never aborts, and its parts would hold space forever. The clock
starts again at every part (at the initiation while there is none), and while a part streams it is
restarted when the part begins and then every `refresh_interval` (in the database, so whichever
worker runs the expiry sees it): a slow upload that keeps sending is never cut off, and a part
cannot stream for ever, since the request limits (body_timeout, min_body_rate) end a stalled one.

Every worker runs the loop, but only the one holding an flock on a file in the data dir does the
passes (if it dies, the lock is released and another worker takes over at its next check), and with
several coordinators on one metadata store, only the node holding the mesh's lease. The lock and the
lease save duplicate work, not correctness: each abort re-checks staleness in its own commit, so
two passes at once could never abort an upload twice or one that a part has just reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import NoSuchUpload, Unavailable

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


def try_lock(path: Path) -> int | None:
    """An flock on `path`, held by this process (its fd), or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


# the lease of the expiry duty on metadata several coordinators share (MetaTx.take_lease)
LEASE = "upload-expiry"


async def run(store: Store, expiry: float, stopping: asyncio.Event, node: str | None = None) -> None:
    """Expire stale uploads until `stopping` is set. The worker sets it and awaits this at shutdown
    rather than cancelling it: a cancelled commit would be acknowledged to nobody, and the blobs it
    freed would never be deleted. `node`: this node's id where several coordinators share the metadata;
    then one pass per interval runs in the whole mesh, on whichever node takes the lease (like the flock,
    that saves work, not correctness)."""
    interval = check_interval(expiry)
    lock: int | None = None
    try:
        while not stopping.is_set():
            if lock is None:
                lock = try_lock(store.dir.expiry_lock)
            if lock is not None:
                try:
                    # `every` a little under the interval: the nodes' loops drift, and a pass must not be
                    # skipped for a lease finished a moment too recently
                    if node is not None and not await store.take_lease(LEASE, node, interval, interval * 0.9):
                        count, size = 0, 0
                    else:
                        count, size = await expire_stale_uploads(store, expiry, stopping)
                        if node is not None:
                            await store.finish_lease(LEASE, node)
                except Unavailable:
                    # tried again at the next interval; no traceback for an outage the requests report too
                    log.warning("stale multipart upload expiry: the metadata database is unavailable")
                except Exception:
                    log.exception("stale multipart upload expiry failed")
                else:
                    if count:
                        log.info("expired %d stale multipart uploads (%d bytes)", count, size)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
    finally:
        if lock is not None:
            os.close(lock)
