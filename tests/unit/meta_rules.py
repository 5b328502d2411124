"""The write rules (store/commits.py) over a metadata backend, called synchronously, as tests drive them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from tunnelmesh.store import commits, listing
from tunnelmesh.store.metadata import MetaBackend, MetaTx
from tunnelmesh.store.records import Listing, ObjectRecord, Part, Upload, WriteConditions, WriteResult, seq_at

T = TypeVar("T")


class Rules:
    """The rules over one backend, called synchronously: a write answers the blobs it freed."""

    def __init__(self, backend: MetaBackend) -> None:
        self.backend = backend
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.backend.close()
        self.loop.close()

    def write(self, fn: Callable[[MetaTx], WriteResult[T]]) -> WriteResult[T]:
        return self.loop.run_until_complete(self.backend.write(fn))

    def read(self, fn: Callable[[Any], T]) -> T:
        return self.loop.run_until_complete(self.backend.read(fn))

    def freed(self, fn: Callable[[MetaTx], WriteResult[Any]]) -> list[str]:
        return self.write(fn).freed

    # writes, as the Store runs them
    def create_bucket(self, name: str, owner: str, region: str, now: float) -> None:
        self.write(lambda tx: commits.create_bucket(tx, name, owner, region, now))

    def set_quota(self, name: str, quota: int | None) -> None:
        self.write(lambda tx: commits.set_quota(tx, name, quota))

    def create_upload(self, up: Upload) -> None:
        self.write(lambda tx: commits.create_upload(tx, up))

    def put_part(self, bucket: str, key: str, upload_id: str, part: Part, max_size: int) -> list[str]:
        return self.freed(lambda tx: commits.put_part(tx, bucket, key, upload_id, part, max_size))

    def complete_upload(
        self, upload_id: str, rec: ObjectRecord, used: list[int], sig: str, cond: WriteConditions, max_size: int
    ) -> list[str]:
        return self.freed(lambda tx: commits.complete_upload(tx, upload_id, rec, used, sig, cond, max_size))

    def expire_upload(self, upload_id: str, cutoff: float) -> tuple[list[str], int] | None:
        r = self.write(lambda tx: commits.expire_upload(tx, upload_id, cutoff))
        return None if r.value is None else (r.freed, r.value)

    def put_object(self, rec: ObjectRecord, cond: WriteConditions, max_size: int) -> list[str]:
        return self.freed(lambda tx: commits.put_object(tx, rec, cond, max_size))

    def delete_object_version(self, bucket: str, key: str, mtime: float, blobs: list[str]) -> list[str]:
        return self.freed(lambda tx: commits.delete_object_version(tx, bucket, key, seq_at(mtime), blobs))

    # reads
    def bucket(self, name: str) -> Any:
        return self.read(lambda r: r.bucket(name))

    def get_object(self, bucket: str, key: str) -> Any:
        return self.read(lambda r: r.get_object(bucket, key))

    def room(self, bucket: Any, max_size: int) -> int:
        return commits.room(bucket, self.read(lambda r: r.store_used()), max_size)

    def referenced_blobs(self) -> set[str]:
        return self.read(lambda r: r.referenced_blobs())

    def referenced_blobs_tagged(self, tags: Collection[str]) -> set[str]:
        return self.read(lambda r: r.referenced_blobs(tags))

    def stale_uploads(self, cutoff: float, limit: int) -> list[Upload]:
        return self.read(lambda r: r.stale_uploads(cutoff, limit))

    def list_uploads(self, bucket: str, prefix: str, key_marker: str, id_marker: str, limit: int) -> list[Upload]:
        return self.read(lambda r: r.list_uploads(bucket, prefix, key_marker, id_marker, limit))

    def pending_uploads(self) -> dict[str, int]:
        return self.read(lambda r: r.pending_uploads())

    def list_objects(
        self, bucket: str, prefix: str, delimiter: str, after: str | None, after_is_prefix: bool, max_keys: int
    ) -> Listing:
        return self.read(lambda r: listing.list_objects(r, bucket, prefix, delimiter, after, after_is_prefix, max_keys))
