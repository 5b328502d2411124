"""The access records in `_tunnelmesh` (docs/access-control.md section 3): one per bucket (its grants,
policy, public access block and CORS rules) and one for the mesh's groups.

A bucket's record carries the creation time of the bucket it belongs to: a record of another incarnation
(the bucket was deleted and re-created, maybe by another peer) is stale and counts as absent, so no grant
or policy outlives its bucket, even across a crash between the bucket's delete and its record's.
Every change is a compare-and-swap (`SystemState.update`), so concurrent changes from any worker or
coordinator are never lost; the authorizer sees a committed change at its next request (s3/authz.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.store.engine import SYSTEM_BUCKET
from tunnelmesh.store.errors import NoSuchBucket
from tunnelmesh.store.records import Bucket

GROUPS_KEY = "access/groups.json"


def bucket_key(bucket: str) -> str:
    return f"access/buckets/{bucket}.json"


def current(doc: Any, bucket: Bucket) -> dict[str, Any]:
    """The record as it applies to this incarnation of the bucket: a stale or malformed one is empty."""
    if isinstance(doc, dict) and doc.get("created") == bucket.created and doc.get("bucket") == bucket.name:
        return dict(doc)
    return {"bucket": bucket.name, "created": bucket.created}


class AccessRecords:
    def __init__(self, state: SystemState) -> None:
        self.state = state

    async def bucket(self, bucket: Bucket) -> dict[str, Any]:
        """The bucket's record (its current incarnation's, else an empty one)."""
        return current(await self.state.get(bucket_key(bucket.name)), bucket)

    async def update_bucket(self, bucket: Bucket, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply `change` (which edits the record in place, or raises to refuse) to the bucket's record, as a
        compare-and-swap retried on conflict; returns the record written."""

        def apply(doc: Any) -> dict[str, Any]:
            if isinstance(doc, dict) and isinstance(doc.get("created"), float) and doc["created"] > bucket.created:
                # the record is a newer incarnation's: the bucket was deleted and re-created since the caller
                # read it, and the change was meant for the one that is gone
                raise NoSuchBucket(bucket.name)
            rec = current(doc, bucket)
            change(rec)
            return rec

        result: dict[str, Any] = await self.state.update(bucket_key(bucket.name), apply)
        return result

    async def forget_bucket(self, bucket: Bucket) -> None:
        """Drop the record of a bucket just deleted, if it is still that incarnation's: a bucket re-created
        meanwhile keeps its own (best effort: a stale record is ignored anyway)."""
        key = bucket_key(bucket.name)
        found = await self.state.get_versioned(key)
        if found is not None and found[1] == current(found[1], bucket):
            await self.state.store.delete_objects(SYSTEM_BUCKET, [(key, None, found[0])])

    async def groups(self) -> dict[str, Any]:
        doc = await self.state.get(GROUPS_KEY)
        raw = doc.get("groups") if isinstance(doc, dict) else None
        return dict(raw) if isinstance(raw, dict) else {}

    async def update_groups(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        def apply(doc: Any) -> dict[str, Any]:
            raw = doc.get("groups") if isinstance(doc, dict) else None
            groups = dict(raw) if isinstance(raw, dict) else {}
            change(groups)
            return {"groups": groups}

        result: dict[str, Any] = await self.state.update(GROUPS_KEY, apply)
        return result
