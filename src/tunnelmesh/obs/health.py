"""Liveness and readiness (docs/operations.md 1.7).

`/healthz` says the worker's event loop answers, nothing more: a load balancer or systemd watchdog that
restarts on it must not restart a coordinator whose database is merely down. `/readyz` says this worker can
do work now: the metadata answers one keyed read within a second, and the data dir takes a write that
reaches the disk (create, fsync, unlink a probe file in the blob tmp dir). Its answer is cached for a second
per worker, so a probe scraped every few milliseconds, by anyone (it is unauthenticated), costs the store
at most one read and one fsync a second.

Reasons are one line and name no path, host or secret: anyone may read them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import StoreError
from tunnelmesh.store.records import SYSTEM_BUCKET

HEALTHY = "ok"
PROBE_FILE = ".readyz-probe"  # a dot name: never a blob id
CACHE_SECONDS = 1.0
METADATA_TIMEOUT = 1.0
# an fsync on a busy disk of a loaded machine can take longer than a metadata read: a second here would
# report a healthy disk unready; a disk that hangs is still reported, only later
DATA_DIR_TIMEOUT = 5.0


def probe_dir_writable(directory: Path) -> str | None:
    """Create, fsync and unlink a probe file in `directory`: None if all of it worked, else the reason."""
    path = directory / PROBE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"readyz\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
    except OSError as e:
        return f"data dir not writable: {e.strerror or type(e).__name__}"
    return None


class Readiness:
    """One worker's readiness, probed at most once per `ttl` seconds (concurrent askers share one probe)."""

    def __init__(
        self,
        store: Store,
        *,
        ttl: float = CACHE_SECONDS,
        metadata_timeout: float = METADATA_TIMEOUT,
        data_dir_timeout: float = DATA_DIR_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._metadata_timeout = metadata_timeout
        self._data_dir_timeout = data_dir_timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._checked_at: float | None = None
        self._reason: str | None = None

    async def reason(self) -> str | None:
        """None when ready, else why not (one line)."""
        async with self._lock:
            if self._checked_at is None or self._clock() - self._checked_at >= self._ttl:
                found = await asyncio.gather(self._metadata(), self._data_dir())
                self._reason = "; ".join(r for r in found if r is not None) or None
                self._checked_at = self._clock()
            return self._reason

    async def _metadata(self) -> str | None:
        try:
            # a keyed read of the one bucket every data dir has: one row by primary key on any backend
            await asyncio.wait_for(self._store.bucket(SYSTEM_BUCKET), self._metadata_timeout)
        except TimeoutError:
            return f"metadata unreachable: no answer within {self._metadata_timeout:g} s"
        except StoreError as e:
            return f"metadata unreachable: {e}"  # the typed errors' messages name no host or secret
        except Exception as e:  # whatever a backend raises, the probe answers 503, never 500
            return f"metadata unreachable: {type(e).__name__}"
        return None

    async def _data_dir(self) -> str | None:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._probe_tmp), self._data_dir_timeout)
        except TimeoutError:
            return f"data dir not writable: no fsync within {self._data_dir_timeout:g} s"

    def _probe_tmp(self) -> str | None:
        try:
            tmp = self._store.blobs.tmp_dir  # made on first use
        except OSError as e:
            return f"data dir not writable: {e.strerror or type(e).__name__}"
        return probe_dir_writable(tmp)
