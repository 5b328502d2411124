"""Grants and groups (docs/access-control.md sections 2.3 and 3): the changes `bucket grant`, `bucket ungrant`
and `group ...` make to the access records, with the refusals of section 2.3.

Every change goes through `AccessRecords` (a compare-and-swap), so it is committed before the call returns
and the authorizer of every worker and coordinator applies it at its next request.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from tunnelmesh.access.grants import BadGrant, Grant
from tunnelmesh.access.policy import BUILTIN_GROUPS
from tunnelmesh.coordinator.access_records import AccessRecords
from tunnelmesh.coordinator.errors import (
    GroupExists,
    InvalidInput,
    NoSuchGrant,
    NoSuchGroup,
    NoSuchPeer,
    NotAMember,
    PublicAccessBlocked,
)
from tunnelmesh.coordinator.network import KEY as NETWORK_KEY
from tunnelmesh.coordinator.network import access_defaults
from tunnelmesh.coordinator.peers import PREFIX as PEER_PREFIX
from tunnelmesh.store.records import Bucket

# like a bucket name, lower case: a group name is a principal in policies (`tunnelmesh:group/NAME`)
GROUP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
PEER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True, slots=True)
class Target:
    """Whom a grant is to: exactly one of a peer, a group, or anyone."""

    peer: str | None = None
    group: str | None = None
    anyone: bool = False

    def doc(self) -> dict[str, Any]:
        if self.peer is not None:
            return {"peer": self.peer}
        if self.group is not None:
            return {"group": self.group}
        return {"anyone": True}


def public_grant(grant: dict[str, Any]) -> dict[str, Any]:
    """A grant as audit records and listings show it."""
    return {k: grant.get(k) for k in ("id", "to", "role", "prefix")}


def _blocks_public(record: dict[str, Any], pab_default: bool) -> bool:
    if "public_access_block" not in record:
        return pab_default  # never set on the bucket: the mesh default
    raw = record["public_access_block"]
    return isinstance(raw, dict) and bool(raw.get("BlockPublicPolicy", False))


# grants per bucket: each is a statement every decision on the bucket may look at, and the access report's
# work grows with them; a group or a bucket policy says more with fewer
MAX_GRANTS = 100


class Grants:
    def __init__(self, records: AccessRecords) -> None:
        self.records = records
        self.state = records.state

    async def _check_target(self, to: Target) -> str | None:
        """Refuse a target that does not exist; returns a group's incarnation (None for a peer, anyone, `peers`)."""
        if to.peer is not None and not await self._peer_exists(to.peer):
            raise NoSuchPeer(to.peer)
        if to.group is None or to.group in BUILTIN_GROUPS:
            return None
        group = (await self.records.groups()).get(to.group)
        if not isinstance(group, dict):
            raise NoSuchGroup(to.group)
        return str(group.get("incarnation", ""))

    async def _peer_exists(self, peer_id: str) -> bool:
        return bool(PEER_ID.fullmatch(peer_id)) and await self.state.etag(f"{PEER_PREFIX}{peer_id}.json") is not None

    async def add(self, bucket: Bucket, to: Target, role: str, prefix: str, by: str) -> tuple[dict[str, Any], bool]:
        """Grant `role` on `prefix` of the bucket; returns (the grant, whether it is new). Idempotent: the same
        target, role and prefix again returns the existing grant and writes nothing new."""
        gid = f"g-{secrets.token_hex(3)}"
        try:
            Grant(gid, role, prefix, to.peer, to.group, to.anyone)
        except BadGrant as e:
            raise InvalidInput("grant", str(e)) from None
        incarnation = await self._check_target(to)
        pab_default = access_defaults(await self.state.get(NETWORK_KEY))[1] if to.anyone else False
        target = to.doc()
        found: list[tuple[dict[str, Any], bool]] = []

        def change(rec: dict[str, Any]) -> None:
            found.clear()  # a retried compare-and-swap starts over
            grants = [g for g in rec.get("grants", []) if isinstance(g, dict)]
            for g in grants:
                same = g.get("to") == target and g.get("role") == role and g.get("prefix", "") == prefix
                if same and g.get("group_incarnation") == incarnation:
                    found.append((g, False))
                    return
            if len(grants) >= MAX_GRANTS:
                raise InvalidInput("grant", f"A bucket holds at most {MAX_GRANTS} grants: a group says more with one.")
            # checked inside the swap: a block put meanwhile is never bypassed
            if to.anyone and _blocks_public(rec, pab_default):
                raise PublicAccessBlocked(bucket.name)
            grant = {"id": gid, "to": target, "role": role, "prefix": prefix, "by": by, "at": now_iso()}
            if incarnation is not None:
                # a group deleted and re-created under the same name is another group: this grant is not its
                grant["group_incarnation"] = incarnation
            rec["grants"] = [*grants, grant]
            found.append((grant, True))

        await self.records.update_bucket(bucket, change)
        return found[0]

    async def remove(self, bucket: Bucket, to: Target, role: str | None, prefix: str | None) -> list[dict[str, Any]]:
        """Remove the grants to `to` (of that role and prefix when given); NoSuchGrant if none matched."""
        target = to.doc()
        removed: list[dict[str, Any]] = []

        def change(rec: dict[str, Any]) -> None:
            removed.clear()
            kept: list[Any] = []
            for g in rec.get("grants", []):
                hit = (
                    isinstance(g, dict)
                    and g.get("to") == target
                    and (role is None or g.get("role") == role)
                    and (prefix is None or g.get("prefix", "") == prefix)
                )
                (removed if hit else kept).append(g)
            if not removed:
                raise NoSuchGrant(bucket.name)
            rec["grants"] = kept

        await self.records.update_bucket(bucket, change)
        return removed

    async def list(self, bucket: Bucket) -> list[dict[str, Any]]:
        rec = await self.records.bucket(bucket)
        return [g for g in rec.get("grants", []) if isinstance(g, dict)]


def check_group_name(name: str) -> None:
    if not GROUP_NAME.fullmatch(name):
        raise InvalidInput("name", "A group name is 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit.")
    if name in BUILTIN_GROUPS:
        raise InvalidInput("name", f"'{name}' is the built-in group of every peer; it cannot be changed.")


class Groups:
    def __init__(self, records: AccessRecords) -> None:
        self.records = records
        self.state = records.state

    async def list(self) -> dict[str, Any]:
        return await self.records.groups()

    async def create(self, name: str, by: str) -> dict[str, Any]:
        check_group_name(name)
        made: dict[str, Any] = {"members": [], "created": now_iso(), "by": by, "incarnation": secrets.token_hex(8)}

        def change(groups: dict[str, Any]) -> None:
            if name in groups:
                raise GroupExists(name)
            groups[name] = made

        await self.records.update_groups(change)
        return made

    async def delete(self, name: str) -> dict[str, Any]:
        """Delete a group; grants naming it stay but match nobody (section 2.3). Returns the group deleted."""
        check_group_name(name)
        gone: list[dict[str, Any]] = []

        def change(groups: dict[str, Any]) -> None:
            gone.clear()
            if name not in groups:
                raise NoSuchGroup(name)
            gone.append(groups.pop(name))

        await self.records.update_groups(change)
        return gone[0]

    async def add(self, name: str, peer_id: str) -> dict[str, Any]:
        check_group_name(name)
        if not PEER_ID.fullmatch(peer_id) or await self.state.etag(f"{PEER_PREFIX}{peer_id}.json") is None:
            raise NoSuchPeer(peer_id)
        return await self._members(name, lambda members: members if peer_id in members else [*members, peer_id])

    async def remove(self, name: str, peer_id: str) -> dict[str, Any]:
        check_group_name(name)

        def drop(members: list[str]) -> list[str]:
            if peer_id not in members:
                raise NotAMember(name, peer_id)
            return [m for m in members if m != peer_id]

        return await self._members(name, drop)

    async def _members(self, name: str, edit: Any) -> dict[str, Any]:
        out: list[dict[str, Any]] = []

        def change(groups: dict[str, Any]) -> None:
            out.clear()
            group = groups.get(name)
            if not isinstance(group, dict):
                raise NoSuchGroup(name)
            members = [m for m in group.get("members", []) if isinstance(m, str)]
            groups[name] = {**group, "members": edit(members)}
            out.append(groups[name])

        await self.records.update_groups(change)
        return out[0]
