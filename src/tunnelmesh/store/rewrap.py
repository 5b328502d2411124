"""The sse-rewrap duty (SSE-S3, docs/data-protection.md section 7): after `tunnelmesh sse rotate`, the data keys
an older master key wraps are wrapped again under the active one, page by page (metadata only, through the
partial indexes on sse_kid), so that the old key can leave the key file once `sse status` shows it unused.

Safe anywhere, any number of times, and across a kill: each row is re-wrapped in a commit that changes it only
if it still holds what was read (store/metadata.py `reseal`), and the data key, hence every blob, stays as it
is. One worker of the mesh at a time does it (a lease); it runs every s3.sse_rewrap_interval seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import Unavailable

log = logging.getLogger("tunnelmesh.store")

LEASE = "sse-rewrap"
BATCH = 500


async def rewrap_all(store: Store, stopping: asyncio.Event | None = None) -> dict[str, int]:
    """One pass: every row of every master key but the active one, re-wrapped; rows done per old key id."""
    ring = store.sse
    if ring is None:
        return {}
    done: dict[str, int] = {}
    for kid in sorted(await store.sse_kids()):
        if kid == ring.active or kid not in ring.keys:
            continue
        while stopping is None or not stopping.is_set():
            found, moved = await store.rewrap(kid, BATCH)
            done[kid] = done.get(kid, 0) + moved
            if found < BATCH or not moved:  # the last page, or one whose rows all stay (logged by the store)
                break
    return done


async def run(store: Store, interval: float, stopping: asyncio.Event, holder: str) -> None:
    """Re-wrap every `interval` seconds until `stopping` is set (awaited at shutdown, not cancelled: a cancelled
    commit would be acknowledged to nobody, harmless here but noisy). `holder`: this worker's name in the lease."""
    while not stopping.is_set():
        try:
            if store.sse is not None and await store.take_lease(LEASE, holder, max(interval, 60.0), interval * 0.9):
                done = await rewrap_all(store, stopping)
                await store.finish_lease(LEASE, holder)
                for kid, n in sorted(done.items()):
                    if n:
                        log.info(
                            "sse-rewrap: re-wrapped %d data keys of master key %s under %s", n, kid, store.sse.active
                        )
        except Unavailable:
            log.warning("sse-rewrap: the metadata database is unavailable")
        except Exception:
            log.exception("sse-rewrap failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
