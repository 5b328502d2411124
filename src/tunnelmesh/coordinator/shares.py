"""NFS share metadata (`_tunnelmesh/shares/<name>.json`): which bucket path is shared, with whom."""

from __future__ import annotations

import builtins
import logging
import re
from typing import Any

from tunnelmesh.coordinator.errors import CorruptRecord, InvalidInput, NoBucketToShare, NoSuchShare
from tunnelmesh.coordinator.state import SystemState

log = logging.getLogger("tunnelmesh.shares")
PREFIX = "shares/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Shares:
    def __init__(self, state: SystemState) -> None:
        self.state = state

    async def list(self) -> list[dict[str, Any]]:
        out = []
        for key in await self.state.keys(PREFIX):
            try:
                doc = await self.state.get(key)
            except CorruptRecord as e:
                log.warning("%s", e)
                continue
            if isinstance(doc, dict) and "name" in doc:
                out.append(doc)
            else:
                log.warning("share record %s is not a share", key)
        return out

    async def add(
        self, name: str, bucket: str, path: str, peers: builtins.list[str], read_only: bool
    ) -> dict[str, Any]:
        if not _NAME.match(name):
            raise InvalidInput("name", f"invalid share name {name!r}")
        if await self.state.store.bucket(bucket) is None:
            raise NoBucketToShare(bucket)
        doc = {
            "name": name,
            "bucket": bucket,
            "path": path.strip("/"),
            "peers": sorted(set(peers)),
            "read_only": read_only,
        }
        await self.state.put(f"{PREFIX}{name}.json", doc)
        return doc

    async def remove(self, name: str) -> None:
        if await self.state.etag(f"{PREFIX}{name}.json") is None:
            raise NoSuchShare(name)
        await self.state.delete([f"{PREFIX}{name}.json"])
