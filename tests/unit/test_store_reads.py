"""The Store's reads are coroutines (a networked metadata backend can sit behind them), yet SQLite's
complete without ever suspending: no thread hop, no turn of the event loop. On a real Store in a temp dir.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tunnelmesh.s3.call import Call
from tunnelmesh.s3.request import Request, parse_query
from tunnelmesh.s3.router import route
from tunnelmesh.store.content import once
from tunnelmesh.store.engine import Store, prepare_data_dir
from tunnelmesh.store.errors import DamagedObject, NoSuchBucket
from tunnelmesh.store.records import SYSTEM_BUCKET, Freshness, ObjectRecord, Segment, Upload, WriteConditions

READS = (
    "bucket",
    "require_bucket",
    "buckets",
    "freshness",
    "get_object",
    "list_objects",
    "require_upload",
    "parts",
    "list_uploads",
    "pending_uploads",
    "stale_uploads",
    "completed_upload",
    "upload_last_active",
    "admit_object",
    "admit_part",
    "store_used",
    "verify_usage",
    "read_all",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    prepare_data_dir(tmp_path)
    s = Store(tmp_path, 1 << 30)

    async def fill() -> None:
        await s.create_bucket("b", "p", "r")
        await s.put_object(_record("small", b"inline bytes", []), WriteConditions())
        await s.create_upload(Upload("u1", "b", "mpu", 1.0, "p", {}, None))

    asyncio.run(fill())
    try:
        yield s
    finally:
        s.close()


def _record(key: str, data: bytes | None, segments: list[Segment]) -> ObjectRecord:
    size = len(data) if data is not None else sum(s.size for s in segments)
    return ObjectRecord("b", key, size, "e", 1.0, {}, {}, segments, "p", data)


def test_every_metadata_read_of_the_store_is_a_coroutine() -> None:
    assert [name for name in READS if not inspect.iscoroutinefunction(getattr(Store, name))] == []


def _completes_at_once(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run `coro` one step: it must finish in it, never yielding to the event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise AssertionError(f"{coro.__qualname__} suspended")


def test_sqlite_reads_complete_inline_without_suspending(store: Store) -> None:
    async def scenario() -> None:
        await store.require_bucket("b")
        small = await store.get_object("b", "small")
        assert small is not None
        reads: list[Callable[[], Coroutine[Any, Any, Any]]] = [
            lambda: store.bucket("b"),
            lambda: store.require_bucket("b"),
            lambda: store.buckets(),
            lambda: store.freshness(["access/groups.json"], "b"),
            lambda: store.get_object("b", "small"),
            lambda: store.list_objects("b", "", "", None, False, 10),
            lambda: store.require_upload("b", "mpu", "u1"),
            lambda: store.parts("u1"),
            lambda: store.list_uploads("b", "", "", "", 10),
            lambda: store.pending_uploads(),
            lambda: store.stale_uploads(0.0, 10),
            lambda: store.completed_upload("b", "mpu", "u1"),
            lambda: store.upload_last_active("u1"),
            lambda: store.admit_object("b", "small", 1),
            lambda: store.admit_part("b", "u1", 1, None),
            lambda: store.store_used(),
            lambda: store.verify_usage(),
            lambda: store.read_all(small),
        ]
        assert len(reads) == len(READS)
        for read in reads:
            _completes_at_once(read())
        assert _completes_at_once(store.read_all(small)) == b"inline bytes"

    asyncio.run(scenario())


def test_freshness_reads_the_system_records_etags_and_the_bucket_in_one_call(store: Store) -> None:
    async def scenario() -> None:
        record = ObjectRecord(SYSTEM_BUCKET, "access/groups.json", 2, "e-groups", 1.0, {}, {}, [], "p", b"{}")
        await store.put_object(record, WriteConditions())
        asked = ["access/groups.json", "network/config.json"]
        fresh = await store.freshness(asked, "b")
        assert isinstance(fresh, Freshness)
        assert fresh == Freshness({"access/groups.json": "e-groups"}, await store.bucket("b"))
        assert fresh.bucket is not None and fresh.bucket.owner == "p"
        assert await store.freshness(asked, "nope") == Freshness({"access/groups.json": "e-groups"}, None)
        assert await store.freshness([], None) == Freshness({}, None)

    asyncio.run(scenario())


def test_read_all_reads_every_segment_and_refuses_a_missing_blob(store: Store) -> None:
    pieces = [b"first " * 50, b"second " * 70, b"", b"third" * 9]

    async def scenario() -> None:
        segments = []
        for p in pieces:
            w = await store.ingest(once(p), 1 << 20)
            segments.append(Segment(w.blob_id, len(p), hashlib.md5(p).hexdigest()))
        await store.put_object(_record("parts", None, segments), WriteConditions())
        rec = await store.get_object("b", "parts")
        assert rec is not None
        assert await store.read_all(rec) == b"".join(pieces)
        os.unlink(store.blobs.path(segments[1].blob))
        with pytest.raises(DamagedObject):
            await store.read_all(rec)

    asyncio.run(scenario())


def _call(store: Store, method: str, target: str) -> Call:
    raw_path, _, raw_query = target.partition("?")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    req = Request(method=method, raw_path=raw_path, raw_query=raw_query, headers={}, receive=receive, prefix="")
    req.query_items = parse_query(raw_query)
    req.query = {name: value for name, value, _, _ in req.query_items}
    req.bucket, _, req.key = raw_path.lstrip("/").partition("/")
    return Call.of(req, route(req), store)


def test_a_call_looks_its_bucket_up_once_and_says_when_there_is_none(store: Store) -> None:
    call = _call(store, "GET", "/b/mpu?uploadId=u1")
    assert call.route.name == "ListParts" and call.upload_id == "u1"
    first = asyncio.run(call.bucket())
    # the same record again, not a second lookup (each lookup builds a new record)
    assert first.name == "b" and asyncio.run(call.bucket()) is first
    assert asyncio.run(store.require_bucket("b")) is not first
    missing = _call(store, "HEAD", "/nope")
    assert missing.upload_id == ""
    with pytest.raises(NoSuchBucket):
        asyncio.run(missing.bucket())
