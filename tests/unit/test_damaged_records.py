"""A coordinator record whose stored bytes are damaged is a CorruptRecord, which readers of many records
skip, never an unexpected error that stops the coordinator (found in the attacker's review of issue 12:
read_all began raising DamagedObject, which nothing above the store caught)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tunnelmesh.admin.errors import admin_error
from tunnelmesh.coordinator.errors import CorruptRecord
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.store.engine import SYSTEM_BUCKET, Store, prepare_data_dir


@pytest.fixture
def state(tmp_path: Path) -> Iterator[SystemState]:
    prepare_data_dir(tmp_path)
    store = Store(tmp_path, 1 << 30)
    yield SystemState(store)
    store.close()


def _blob_record(state: SystemState, key: str) -> Path:
    """A record big enough to live in a blob file; returns that file."""

    async def write() -> Path:
        await state.put(key, {"pad": "x" * 40_000})
        rec = await state.store.get_object(SYSTEM_BUCKET, key)
        assert rec is not None and rec.data is None and len(rec.segments) == 1
        return state.store.blobs.path(rec.segments[0].blob)

    return asyncio.run(write())


def test_a_record_whose_blob_is_cut_short_or_gone_is_a_corrupt_record(state: SystemState) -> None:
    blob = _blob_record(state, "peers/big.json")
    assert json.loads(asyncio.run(state.read_bytes("peers/big.json")) or b"")["pad"] == "x" * 40_000
    blob.write_bytes(blob.read_bytes()[:100])  # cut short
    with pytest.raises(CorruptRecord, match="peers/big.json"):
        asyncio.run(state.get("peers/big.json"))
    blob.unlink()  # gone
    with pytest.raises(CorruptRecord, match="peers/big.json"):
        asyncio.run(state.get("peers/big.json"))
    with pytest.raises(CorruptRecord, match="peers/big.json"):
        asyncio.run(state.update("peers/big.json", lambda cur: cur))


def test_the_admin_api_names_the_damaged_record(state: SystemState) -> None:
    blob = _blob_record(state, "shares/s.json")
    blob.unlink()
    with pytest.raises(CorruptRecord) as e:
        asyncio.run(state.get("shares/s.json"))
    status, code, message = admin_error(e.value)
    assert (status, code) == (500, "CorruptRecord") and "shares/s.json" in message
