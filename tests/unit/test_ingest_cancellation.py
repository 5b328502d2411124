"""A request cancelled while its blob is being sealed leaves neither a temporary nor a blob behind.

The seal (fsync + rename) runs on a thread that a cancelled request cannot stop: the blob it puts
in place must still go, and the temporary's descriptor must not be closed under the thread. The seal
here is the real one, held by a gate after its rename so the cancellation lands at a known point.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tunnelmesh.store import blobs as blobs_mod
from tunnelmesh.store.engine import Store, prepare_data_dir
from tunnelmesh.store.errors import DiskFull


async def _body() -> AsyncIterator[bytes]:
    yield b"x" * 100_000


def _files(root: Path) -> list[str]:
    return sorted(p.name for d in ("tmp", "blobs") for p in (root / d).rglob("*") if p.is_file())


def _wait_for_the_threads(root: Path) -> None:
    """Until no file (and no descriptor to a temporary) is left, or 30 s: a thread the request could not stop
    finishes on its own, then drops what it wrote."""
    deadline = time.monotonic() + 30
    while (_files(root) or _open_temporaries(root)) and time.monotonic() < deadline:
        time.sleep(0.02)


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
        _wait_for_the_threads(tmp_path)
        assert _files(tmp_path) == []
        assert entered.is_set() == seal_started
    finally:
        release.set()
        store.close()


async def _batches(n: int) -> AsyncIterator[bytes]:
    for i in range(n):
        yield bytes([i]) * (1024 * 1024)  # a whole batch: written on a lane's thread


def _open_temporaries(root: Path) -> list[str]:
    """What this process's descriptors under the data dir's tmp/ point to (a removed file's too)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed meanwhile
            continue
        if target.startswith(str(root / "tmp") + "/"):
            out.append(target)
    return out


def test_a_request_cancelled_while_a_thread_writes_a_batch_leaves_no_file_and_no_descriptor(
    tmp_path: Path, monkeypatch
) -> None:
    """The file is closed and removed once the thread's write is over, never under it."""
    prepare_data_dir(tmp_path)
    store = Store(tmp_path, 10**9)
    entered, release = threading.Event(), threading.Event()
    real_write = blobs_mod.BlobWriter.write
    open_while_writing: list[bool] = []
    on_the_loop: list[bool] = []

    def gated_write(self: blobs_mod.BlobWriter, data: bytes) -> None:
        if not entered.is_set():
            on_the_loop.append(threading.current_thread() is threading.main_thread())
            entered.set()
            release.wait(30)
            open_while_writing.append(bool(_open_temporaries(tmp_path)))  # the file is still open under the write
        real_write(self, data)

    monkeypatch.setattr(blobs_mod.BlobWriter, "write", gated_write)

    async def scenario() -> None:
        task = asyncio.create_task(store.ingest(_batches(4), 10**9))
        while not entered.is_set():  # the loop is free while the thread writes
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()

    try:
        asyncio.run(scenario())
        _wait_for_the_threads(tmp_path)
        assert on_the_loop == [False]  # a batch is written on a thread: the loop goes on receiving
        assert open_while_writing == [True]
        assert _files(tmp_path) == []
        assert _open_temporaries(tmp_path) == []
    finally:
        release.set()
        store.close()


def test_a_write_failing_on_a_thread_raises_and_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    prepare_data_dir(tmp_path)
    store = Store(tmp_path, 10**9)
    real_write = blobs_mod.BlobWriter.write
    calls: list[int] = []

    def failing_write(self: blobs_mod.BlobWriter, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 2:
            raise DiskFull()
        real_write(self, data)

    monkeypatch.setattr(blobs_mod.BlobWriter, "write", failing_write)
    try:
        with pytest.raises(DiskFull):
            asyncio.run(store.ingest(_batches(4), 10**9))
        _wait_for_the_threads(tmp_path)
        assert _files(tmp_path) == []
        assert len(calls) == 2  # the body stopped at the failed batch
    finally:
        store.close()
