"""A request cancelled while its blob is being sealed leaves neither a temporary nor a blob behind.

The seal (fsync + rename) runs on a thread that a cancelled request cannot stop: the blob it puts
in place must still go, and the temporary's descriptor must not be closed under the thread. The seal
here is the real one, held by a gate after its rename so the cancellation lands at a known point.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tunnelmesh.store import blobs as blobs_mod
from tunnelmesh.store.engine import Store, prepare_data_dir


async def _body() -> AsyncIterator[bytes]:
    yield b"x" * 100_000


def _files(root: Path) -> list[str]:
    return sorted(p.name for d in ("tmp", "blobs") for p in (root / d).rglob("*") if p.is_file())


@pytest.mark.parametrize("seal_started", [True, False], ids=["while-sealing", "before-the-seal-ran"])
def test_a_request_cancelled_during_the_seal_leaves_no_file(tmp_path: Path, monkeypatch, seal_started: bool) -> None:
    prepare_data_dir(tmp_path)
    store = Store(tmp_path, 10**9)
    entered, release = threading.Event(), threading.Event()
    real_fsync_dir = blobs_mod.BlobStore.fsync_dir

    def gated_fsync_dir(self: blobs_mod.BlobStore, d: Path) -> None:
        # the blob is renamed into place: the seal's last step waits here
        entered.set()
        release.wait(30)
        real_fsync_dir(self, d)

    monkeypatch.setattr(blobs_mod.BlobStore, "fsync_dir", gated_fsync_dir)

    async def scenario() -> None:
        if not seal_started:  # every I/O thread busy: the seal is still queued when the request goes
            for _ in range(store._io._max_workers):
                store._io.submit(release.wait, 30)
        task = asyncio.create_task(store.ingest(_body(), 10**9))
        if seal_started:
            while not entered.is_set():
                await asyncio.sleep(0.01)
        else:
            await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    try:
        asyncio.run(scenario())
        deadline = time.monotonic() + 30
        while _files(tmp_path) and time.monotonic() < deadline:  # the seal's thread finishes on its own
            time.sleep(0.02)
        assert _files(tmp_path) == []
        assert entered.is_set() == seal_started
    finally:
        release.set()
        store.close()
