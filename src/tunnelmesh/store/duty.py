"""The loop of a background duty (stale-upload expiry, lifecycle, sse-rewrap): a pass every `interval`
seconds, by one worker of a node (an flock in the data dir: if its holder dies, the lock is released and
another worker takes it at its next look) and, where several coordinators share the metadata, by one
node of the mesh (a lease). The lock and the lease save duplicate work, never correctness: every duty
re-checks what it acts on in its own commits, so two passes at once are harmless.

The worker sets `stopping` and awaits the loop at shutdown rather than cancelling it: a cancelled commit
would be acknowledged to nobody, and the blobs it freed never deleted. A pass ends early, between two
commits, once `stopping` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import Unavailable

log = logging.getLogger("tunnelmesh.store")


@dataclass(frozen=True, slots=True)
class Lease:
    """The mesh-wide lease of a duty (MetaTx.take_lease): `duty` held by `node` for `ttl` seconds."""

    duty: str
    node: str
    ttl: float


def try_lock(path: Path) -> int | None:
    """An flock on `path`, held by this process (its fd), or None if another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


async def run(
    store: Store,
    what: str,
    lock_path: Path,
    interval: float,
    stopping: asyncio.Event,
    work: Callable[[], Awaitable[None]],
    lease: Lease | None = None,
) -> None:
    """Run `work` (one pass) every `interval` seconds until `stopping` is set, as the module docstring says.
    `what` names the duty in the log."""
    lock: int | None = None
    try:
        while not stopping.is_set():
            if lock is None:
                lock = try_lock(lock_path)
            if lock is not None:
                try:
                    # `every` a little under the interval: the nodes' loops drift, and a pass must not be
                    # skipped for a lease finished a moment too recently
                    if lease is None or await store.take_lease(lease.duty, lease.node, lease.ttl, interval * 0.9):
                        await work()
                        if lease is not None:
                            await store.finish_lease(lease.duty, lease.node)
                except Unavailable:
                    # tried again at the next interval; no traceback for an outage the requests report too
                    log.warning("%s: the metadata database is unavailable", what)
                except Exception:
                    log.exception("%s failed", what)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
    finally:
        if lock is not None:
            os.close(lock)
