"""The audit trail (docs/access-control.md section 6): one record per access change, in `_tunnelmesh`.

Each event is its own object, `audit/<YYYY-MM-DD>/<13-digit epoch ms>-<node>-<8 hex>.json`, never
rewritten: no compare-and-swap contention between writers, keys sort by time, and a date range is a prefix
range of a listing. Backups cover them as every other record. Written after the change committed, in the
same request: a crash between the two loses the record (a known gap, said in the design).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tunnelmesh.coordinator.state import SystemState

PREFIX = "audit/"
EVENTS = frozenset(
    {
        "grant.add",
        "grant.remove",
        "group.create",
        "group.delete",
        "group.add",
        "group.remove",
        "policy.put",
        "policy.delete",
        "pab.put",
        "pab.delete",
        "cors.put",
        "cors.delete",
        "network.set",
        "key.create",
        "key.revoke",
        "peer.add",
        "peer.revoke",
        "retention.bypass",
        "system.backup",
        "system.restore",
    }
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change, and through what."""

    peer: str
    admin: bool
    via: str  # "s3" | "admin-api" | "console"
    key: str | None = None  # the scoped access key used, if one was
    request_id: str = ""
    source_ip: str = ""


@dataclass(slots=True)
class Audit:
    state: SystemState
    node: str = "node"
    _clock: Any = field(default=time.time, repr=False)

    async def record(self, event: str, actor: Actor, bucket: str | None = None, **detail: Any) -> str:
        """Write one event; returns its key. Never carries a secret: callers pass ids, never tokens."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        now = self._clock()
        ms = int(now * 1000)
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        key = f"{PREFIX}{day}/{ms:013d}-{_safe(self.node)}-{secrets.token_hex(4)}.json"
        at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{ms % 1000:03d}Z"
        doc = {
            "at": at,
            "event": event,
            "actor": actor.peer,
            "actor_key": actor.key,
            "admin": actor.admin,
            "via": actor.via,
            "node": self.node,
            "request_id": actor.request_id,
            "source_ip": actor.source_ip,
            "bucket": bucket,
            "detail": detail,
        }
        await self.state.put(key, doc)
        return key


def _safe(node: str) -> str:
    """The node name as one path segment of a key."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in node) or "node"
