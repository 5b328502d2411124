"""Lanes: a request body's consumers (a hash, a blob file) each fed its batches in order on a thread.

A large upload is hashed twice (SHA-256 for its signature, MD5 for its ETag) and written, by three layers.
On the event loop these would run one after another on one core, and the loop would receive nothing
meanwhile. Instead each layer feeds its own lane: a lane runs its consumer's updates one at a time, in
order, on a thread (hashlib and os.write release the GIL for large buffers), while the loop goes on to
receive the next batch. Feeding waits for the lane's previous update, so an upload holds at most about
two batches in memory, whatever the number of lanes.

Pieces come from `s3/request.py raw_body`, which passes a large HTTP server message on as it is and joins
small ones into batches of about `BATCH` bytes; a hand-off to a thread costs tens of microseconds, so a piece
under `OFFLOAD_MIN` is consumed inline (small bodies never touch a thread).

Once enough body bytes have passed since the last time (`TRIM_AFTER` when no large body is left in flight in
this process, `TRIM_ANYWAY` otherwise), glibc is asked to give back the pages the freed pieces leave in its
heaps (`body_begins` / `body_ends`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
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


# Body pieces are a few hundred KiB: above glibc's mmap threshold only until its dynamic threshold rises past
# them, after which they come from the heap, and the pages they free stay resident, scattered among live
# chunks where trimming the top of the heap cannot reach them (2-3.5 MiB per worker after two 1 GiB uploads,
# measured). malloc_trim(0) releases every whole free page of every arena.
TRIM_AFTER = 32 * 1024 * 1024
# ...and trimmed even with bodies in flight once this much has passed: overlapping uploads (or one dripping
# slowly) could otherwise keep a worker from ever trimming, under the very load that scatters its heap
TRIM_ANYWAY = 8 * TRIM_AFTER


def _find_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


class _Trimmer:
    """Large bodies in flight in this process, and the bytes they passed since the last trim."""

    def __init__(self) -> None:
        self.trim = _find_trim()
        self.reset()

    def reset(self) -> None:
        self.active = 0
        self.since = 0
        self.trims = 0

    def begins(self) -> None:
        self.active += 1

    def ends(self, size: int) -> None:
        self.active -= 1
        self.since += size
        if self.since >= (TRIM_AFTER if self.active == 0 else TRIM_ANYWAY):
            self.since = 0
            self.trims += 1
            if self.trim is not None:
                # on a lane thread: it takes each arena's lock in turn, and madvise costs a system call per range
                with contextlib.suppress(RuntimeError):  # the pool is shutting down with the process
                    _executor().submit(self.trim, 0)


_trimmer = _Trimmer()
os.register_at_fork(after_in_child=_trimmer.reset)


def body_begins() -> None:
    """A body passes pieces large enough for the lanes' threads."""
    _trimmer.begins()


def body_ends(size: int) -> None:
    """That body is over (received, failed or abandoned), after `size` bytes."""
    _trimmer.ends(size)


def trims() -> int:
    """How many times this process has asked for freed body memory to be given back (for tests)."""
    return _trimmer.trims


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
