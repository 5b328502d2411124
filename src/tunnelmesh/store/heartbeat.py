"""Each worker's heartbeat: the node is alive, at this address, since then (MetaTx.beat).

Every worker beats, not the supervisor: what matters to the other nodes is whether this node may still
commit (its workers), and a worker's event loop puts a deadline on every metadata call (the
supervisor's would block its loop during an outage). The beats are what `tunnelmesh storage status`
lists, and, on metadata several coordinators share, what tells the others that this node is alive: a
node silent for longer than `s3.node_timeout` is taken over (engine.take_over_silent_nodes), its writer
tags retired. A worker that finds its own tag retired (it was stalled, or cut off from the database,
for that long) stops at once: none of its writes could commit any more, and the supervisor starts a
new worker with a new tag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import Unavailable

log = logging.getLogger("tunnelmesh.store")

# a worker's exit code when its writer tag was retired: the supervisor starts a new one, no crash counted
RETIRED = 4


async def run(
    store: Store,
    node: str,
    listen: str,
    started_at: float,
    interval: float,
    retired: Callable[[], None],
    stopping: asyncio.Event,
) -> None:
    """Beat every `interval` seconds until `stopping` is set; call `retired` (and stop) if this worker's
    writer tag has been retired."""
    down = False
    while not stopping.is_set():
        try:
            if await store.beat(node, listen, started_at, interval):
                log.error(
                    "this worker's writer tag was retired by another coordinator (node %s was silent "
                    "past s3.node_timeout); stopping it, a new worker takes its place",
                    node,
                )
                retired()
                return
        except Unavailable:
            if not down:  # one line per outage: the requests failing meanwhile say it too
                log.warning("heartbeat: the metadata database is unavailable; retrying")
            down = True
        except Exception:
            log.exception("heartbeat failed")
        else:
            if down:
                log.info("heartbeat: the metadata database is back")
            down = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
