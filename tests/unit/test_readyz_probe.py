"""obs/health.py's readiness probe over a real Store on a temp dir: the data-dir write probe, the metadata read,
and the one-second cache (driven by an injected clock, never by sleeping)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelmesh.obs.health import PROBE_FILE, Readiness, probe_dir_writable
from tunnelmesh.store.engine import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path, 10**9)
    s.blobs.prepare()  # type: ignore[attr-defined]  # a BlobStore's
    try:
        yield s
    finally:
        s.close()


def test_a_writable_dir_passes_and_keeps_no_probe_file(tmp_path: Path) -> None:
    assert probe_dir_writable(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_the_probe_fails_on_an_oserror_from_the_file_system(tmp_path: Path) -> None:
    # a real OSError without chmod (root ignores modes): the probe's name is taken by a directory (EISDIR)
    (tmp_path / PROBE_FILE).mkdir()
    assert probe_dir_writable(tmp_path) == f"data dir not writable: {os.strerror(21)}"
    # and a directory that is gone (ENOENT)
    assert probe_dir_writable(tmp_path / "gone") == "data dir not writable: No such file or directory"


def test_ready_then_the_cache_holds_a_second_then_the_reason(store: Store) -> None:
    clock = Clock()

    async def scenario() -> list[str | None]:
        readiness = Readiness(store, clock=clock)
        seen = [await readiness.reason()]
        # break the data dir: the worker's blob tmp dir now has a directory where the probe file goes
        (store.blobs.tmp_dir / PROBE_FILE).mkdir()
        clock.now += 0.5
        seen.append(await readiness.reason())  # still the cached answer
        clock.now += 0.5
        seen.append(await readiness.reason())  # a second on: probed again
        (store.blobs.tmp_dir / PROBE_FILE).rmdir()
        seen.append(await readiness.reason())  # cached failure
        clock.now += 1.0
        seen.append(await readiness.reason())
        return seen

    broken = f"data dir not writable: {os.strerror(21)}"
    assert asyncio.run(scenario()) == [None, None, broken, broken, None]


def test_metadata_that_fails_to_answer_is_the_reason(store: Store) -> None:
    store.meta.close()  # every read now raises, as when the database is gone

    async def scenario() -> str | None:
        return await Readiness(store).reason()

    reason = asyncio.run(scenario())
    assert reason is not None
    assert reason.startswith("metadata unreachable: ")
    assert "\n" not in reason
