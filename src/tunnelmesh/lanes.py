"""Lanes: a request body's consumers (a hash, a blob file) each fed its batches in order on a thread.

A large upload is hashed twice (SHA-256 for its signature, MD5 for its ETag) and written, by three layers.
On the event loop these would run one after another on one core, and the loop would receive nothing
meanwhile. Instead each layer feeds its own lane: a lane runs its consumer's updates one at a time, in
order, on a thread (hashlib and os.write release the GIL for large buffers), while the loop goes on to
receive the next batch. Feeding waits for the lane's previous update, so an upload holds at most about
two batches in memory, whatever the number of lanes.

Batches come from `s3/request.py raw_body`, which coalesces the HTTP server's messages to about `BATCH`
bytes; a hand-off to a thread costs tens of microseconds, so a piece under `OFFLOAD_MIN` is consumed inline
(small bodies never touch a thread).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

# 512 KiB, not 1 MiB: the same CPU per GiB (3.4-3.6 s either way over three alternated pairs), while two
# 64 MiB uploads peaked at 86-88 MiB of the tree's PSS instead of 98-102 MiB, and a stalled upload holds half
BATCH = 512 * 1024
OFFLOAD_MIN = 256 * 1024
# enough for the three lanes of a few concurrent uploads: a thread only ever waits for a core
_THREADS = 8

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="lane")
    return _pool


def _forget_pool() -> None:
    # a forked child has none of its parent's threads: it starts a pool of its own when it needs one
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


class Lane:
    """One consumer's updates, in order, at most one at a time, off the event loop."""

    __slots__ = ("_consume", "_pending")

    def __init__(self, consume: Callable[[bytes], object]) -> None:
        self._consume = consume
        self._pending: Future[object] | None = None

    async def feed(self, data: bytes) -> None:
        """Hand over the next piece (after the previous one is consumed: its error, if any, raises here)."""
        if self._pending is not None:
            await self.drain()
        if len(data) >= OFFLOAD_MIN:
            self._pending = _executor().submit(self._consume, data)
        else:
            self._consume(data)

    async def drain(self) -> None:
        """Wait until every piece fed is consumed."""
        pending = self._pending
        if pending is None:
            return
        try:
            await asyncio.wrap_future(pending)
        finally:
            # cancelled while the thread consumes: kept, so that `when_idle` still waits for it
            if pending.done():
                self._pending = None

    def when_idle(self, then: Callable[[], object]) -> None:
        """Run `then` once no thread consumes for this lane: now, or on that thread when it is done (what
        closes a file must never run while a thread writes to it)."""
        pending = self._pending
        if pending is None or pending.done():
            then()
        else:
            pending.add_done_callback(lambda _: then())
