"""The coordinator's own records: JSON objects in the `_tunnelmesh` bucket, written through the store.

Keeping state as ordinary objects means one bucket holds everything the coordinator needs to
come back after a restart or a move, and backing up that bucket backs up the coordinator.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from tunnelmesh.coordinator.errors import Conflict, CorruptRecord
from tunnelmesh.store.engine import SYSTEM_BUCKET, Store
from tunnelmesh.store.errors import DamagedObject, NoSuchKey, PreconditionFailed
from tunnelmesh.store.records import ObjectRecord, WriteConditions

COORDINATOR = "coordinator"


class SystemState:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def etag(self, key: str) -> str | None:
        # every authenticated request asks (the peer cache's check): the cheap read
        ref = await self.store.object_ref(SYSTEM_BUCKET, key)
        return ref.etag if ref else None

    async def read_bytes(self, key: str) -> bytes | None:
        rec = await self.store.get_object(SYSTEM_BUCKET, key)
        if rec is None:
            return None
        return await self.record_bytes(key, rec)

    async def record_bytes(self, key: str, rec: ObjectRecord) -> bytes:
        """A record's bytes; a damaged one (its blob gone or cut short) is a CorruptRecord like
        unreadable JSON, which callers skip (one bad record must not stop the coordinator)."""
        try:
            return await self.store.read_all(rec)
        except DamagedObject as e:
            raise CorruptRecord(f"{SYSTEM_BUCKET}/{key}: {e.problem}") from None

    async def get(self, key: str) -> Any:
        found = await self.get_versioned(key)
        return None if found is None else found[1]

    async def get_versioned(self, key: str) -> tuple[str, Any] | None:
        """A record and the ETag of that very version, from one read (an ETag read separately could
        belong to another version: a cache keyed by it would then keep the wrong content)."""
        rec = await self.store.get_object(SYSTEM_BUCKET, key)
        if rec is None:
            return None
        data = await self.record_bytes(key, rec)
        try:
            return rec.etag, json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptRecord(f"{SYSTEM_BUCKET}/{key}: not valid JSON ({e})") from None

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/json", cond: WriteConditions | None = None
    ) -> None:
        inline, segments = await self.store.write_bytes(data)
        rec = ObjectRecord(
            bucket=SYSTEM_BUCKET,
            key=key,
            size=len(data),
            etag=hashlib.md5(data).hexdigest(),
            mtime=time.time(),
            headers={"content-type": content_type},
            checksums={},
            segments=segments,
            owner=COORDINATOR,
            data=inline,
        )
        await self.store.put_object(rec, cond or WriteConditions())

    async def put(self, key: str, value: Any, cond: WriteConditions | None = None) -> None:
        await self.put_bytes(key, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode(), cond=cond)

    async def update(self, key: str, change: Callable[[Any], Any]) -> Any:
        """Read-modify-write of one record as a compare-and-swap on its ETag, retried on conflict,
        so concurrent updates from any worker process are never lost."""
        for _ in range(50):
            rec = await self.store.get_object(SYSTEM_BUCKET, key)
            current = None
            if rec is not None:
                try:
                    current = json.loads(await self.record_bytes(key, rec))
                except ValueError as e:
                    raise CorruptRecord(f"{SYSTEM_BUCKET}/{key}: not valid JSON ({e})") from None
            new = change(current)
            cond = WriteConditions(if_match=rec.etag) if rec else WriteConditions(if_none_match_any=True)
            try:
                await self.put(key, new, cond)
            except (PreconditionFailed, NoSuchKey):
                continue  # someone else wrote it first (or deleted it): read again and reapply
            return new
        raise Conflict(key)

    async def delete(self, keys: list[str]) -> None:
        await self.store.delete_objects(SYSTEM_BUCKET, [(k, None, None) for k in keys])

    async def keys(self, prefix: str = "") -> list[str]:
        out: list[str] = []
        after: str | None = None
        while True:
            page = await self.store.list_objects(SYSTEM_BUCKET, prefix, "", after, False, 1000)
            out.extend(o.key for o in page.objects)
            if not page.truncated:
                return out
            after = page.last
