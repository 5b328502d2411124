"""Peers: who may use the store. Records live in `_tunnelmesh/peers/<id>.json`.

Every authentication looks the peer's record up again (one indexed SQLite read); the parsed
record is cached by its ETag, so an add or a revocation made by any worker process takes effect
at the very next request everywhere, including for presigned URLs signed earlier.

A Bearer token is found through `_tunnelmesh/peer-tokens/<sha256 of the token>`, which names the
peer: a lookup costs a fixed few reads however many peers exist, for a wrong token too (reading
every record on a miss let anyone make the coordinator do work in proportion to its peers). The
index is derived data: written before the record at `add`, and rebuilt from the records by
`reindex` at start-up and after a restore (an archive may predate it). A stale or wrong entry
is harmless: the record it names must still hold a token with the same digest.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from tunnelmesh.coordinator.errors import CorruptRecord, InvalidInput, NoSuchAccessKey, NoSuchPeer
from tunnelmesh.coordinator.keys import PREFIX as KEY_PREFIX
from tunnelmesh.coordinator.keys import AccessKey, Scope, derive_secret, is_key_id, new_key
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3.auth.credentials import Identity
from tunnelmesh.s3.request import Principal
from tunnelmesh.store.records import WriteConditions

log = logging.getLogger("tunnelmesh.peers")

PREFIX = "peers/"
# outside PREFIX, so listing the peers never meets an index entry
TOKEN_INDEX = "peer-tokens/"
ROLES = ("admin", "peer")


@dataclass(frozen=True, slots=True)
class Peer:
    id: str
    name: str
    token: str
    role: str
    created: str
    revoked: str | None = None

    @property
    def public(self) -> dict:
        """The record without its secret, for listings."""
        d = asdict(self)
        del d["token"]
        return d

    @classmethod
    def from_record(cls, d: dict) -> Peer:
        peer = cls(
            id=str(d["id"]),
            name=str(d["name"]),
            token=str(d["token"]),
            role=str(d["role"]),
            created=str(d["created"]),
            revoked=d.get("revoked"),
        )
        if peer.role not in ROLES or len(peer.token) < 16:
            raise ValueError("bad role or token")
        return peer


R = TypeVar("R")


async def _cached_record(
    state: SystemState, key: str, cache: dict[str, tuple[str, R]], name: str, parse: Callable[[dict], R]
) -> R | None:
    """A record parsed once per version: one cheap ETag read per call, the whole record only when it changed,
    so an add or a revocation by any worker applies at the very next request. An unreadable record is None
    (logged): one bad record must not stop the coordinator."""
    etag = await state.etag(key)
    if etag is None:
        cache.pop(name, None)
        return None
    cached = cache.get(name)
    if cached and cached[0] == etag:
        return cached[1]
    try:
        # the ETag cached is the one of the version parsed (another worker may write in between)
        found = await state.get_versioned(key)
        if found is None:
            cache.pop(name, None)
            return None
        etag, record = found
        parsed = parse(record)
    except (CorruptRecord, KeyError, TypeError, ValueError) as e:
        log.warning("record %s unreadable: %s", key, e)
        return None
    cache[name] = (etag, parsed)
    return parsed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _index_key(digest: bytes) -> str:
    return f"{TOKEN_INDEX}{digest.hex()}"


class PeerRegistry:
    """The Credentials the S3 and admin APIs authenticate against."""

    def __init__(self, state: SystemState, bootstrap: Identity) -> None:
        self.state = state
        self.bootstrap = bootstrap
        self._cache: dict[str, tuple[str, Peer]] = {}  # id -> (etag, peer)
        self._by_token: dict[bytes, str] = {}  # sha256(token) -> id
        self._keys: dict[str, tuple[str, AccessKey]] = {}  # key id -> (etag, key)

    # ---- Credentials ---------------------------------------------------------------------

    async def _load(self, peer_id: str) -> Peer | None:
        peer = await _cached_record(self.state, f"{PREFIX}{peer_id}.json", self._cache, peer_id, Peer.from_record)
        if peer is not None:
            self._by_token[_token_digest(peer.token)] = peer_id
        return peer

    def _identity(self, peer: Peer | None) -> Identity | None:
        if peer is None or peer.revoked:
            return None
        return Identity(Principal(peer.id, is_admin=peer.role == "admin"), peer.token)

    async def by_access_key(self, access_key: str) -> Identity | None:
        if access_key == self.bootstrap.principal.peer_id:
            return self.bootstrap
        if is_key_id(access_key):
            return await self._key_identity(access_key)
        if not access_key or "/" in access_key or len(access_key) > 64:
            return None
        return self._identity(await self._load(access_key))

    async def _key_identity(self, key_id: str) -> Identity | None:
        """A scoped key's identity: its peer, never an admin, within its scope; None (InvalidAccessKeyId, as
        an unknown id: no oracle) if the key or its peer is revoked, or the key has expired."""
        key = await self._load_key(key_id)
        if key is None or key.revoked or key.expired(time.time()):
            return None
        peer = await self._load(key.peer)
        if peer is None or peer.revoked:
            return None
        principal = Principal(peer.id, is_admin=False, key_id=key.id, scope=key.statements())
        return Identity(principal, derive_secret(peer.token, key.id, key.salt))

    async def _load_key(self, key_id: str) -> AccessKey | None:
        return await _cached_record(self.state, f"{KEY_PREFIX}{key_id}.json", self._keys, key_id, AccessKey.from_record)

    async def by_token(self, token: str) -> Identity | None:
        if hmac.compare_digest(_token_digest(token), _token_digest(self.bootstrap.secret)):
            return self.bootstrap
        digest = _token_digest(token)
        cached = self._by_token.get(digest)
        indexed = await self._indexed(digest)
        for peer_id in (cached, indexed) if cached else (indexed,):
            # a mapping cached before a restore may name a peer that no longer has this token: the
            # index, read again, names the one that has it now
            ident = self._identity(await self._load(peer_id)) if peer_id else None
            if ident is not None and hmac.compare_digest(_token_digest(ident.secret), digest):
                return ident
        return None

    async def _indexed(self, digest: bytes) -> str | None:
        """The peer id the token index names for this digest: one keyed read, hit or miss."""
        try:
            doc = await self.state.get(_index_key(digest))
        except CorruptRecord as e:
            log.warning("%s", e)
            return None
        peer_id = doc.get("id") if isinstance(doc, dict) else None
        return peer_id if isinstance(peer_id, str) and peer_id and "/" not in peer_id else None

    # ---- management ----------------------------------------------------------------------

    async def peers(self) -> list[Peer]:
        out = []
        for key in await self.state.keys(PREFIX):
            if key.endswith(".json"):
                peer = await self._load(key[len(PREFIX) : -len(".json")])
                if peer is not None:
                    out.append(peer)
        return out

    async def add(self, name: str, admin: bool) -> Peer:
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidInput("name", "A peer name is 1 to 128 characters.")
        peer = Peer(
            id=f"peer-{secrets.token_hex(6)}",
            name=name,
            token=secrets.token_urlsafe(32),
            role="admin" if admin else "peer",
            created=_now(),
        )
        # the index entry first: a record is never without one (an entry without a record finds nothing)
        await self.state.put(_index_key(_token_digest(peer.token)), {"id": peer.id})
        await self.state.put(f"{PREFIX}{peer.id}.json", asdict(peer))
        return peer

    async def reindex(self) -> int:
        """Write the token index entries the peer records call for and the index lacks (a data dir
        or a restored archive from before the index existed); returns how many were written."""
        written = 0
        for peer in await self.peers():
            digest = _token_digest(peer.token)
            if await self._indexed(digest) != peer.id:
                await self.state.put(_index_key(digest), {"id": peer.id})
                written += 1
        return written

    async def revoke(self, peer_id: str) -> Peer:
        if await self._load(peer_id) is None:
            raise NoSuchPeer(peer_id)

        def change(current: Any) -> dict:
            doc = dict(current)
            doc["revoked"] = doc.get("revoked") or _now()
            return doc

        return Peer.from_record(await self.state.update(f"{PREFIX}{peer_id}.json", change))

    # ---- scoped access keys (coordinator/keys.py) ------------------------------------------------

    async def create_key(
        self, peer_id: str, name: str, scope: list[Scope] | None, expires_in: float | None, by: str
    ) -> tuple[AccessKey, str]:
        """A new key of `peer_id` and its secret (shown once, never stored)."""
        peer = await self._load(peer_id)
        if peer is None or peer.revoked:
            raise NoSuchPeer(peer_id)
        key = new_key(peer.id, name, scope, expires_in, by)
        await self.state.put(f"{KEY_PREFIX}{key.id}.json", key.record(), WriteConditions(if_none_match_any=True))
        return key, derive_secret(peer.token, key.id, key.salt)

    async def keys(self, peer_id: str | None = None) -> list[AccessKey]:
        out = []
        for rkey in await self.state.keys(KEY_PREFIX):
            if rkey.endswith(".json"):
                key = await self._load_key(rkey[len(KEY_PREFIX) : -len(".json")])
                if key is not None and (peer_id is None or key.peer == peer_id):
                    out.append(key)
        return out

    async def key(self, key_id: str) -> AccessKey | None:
        return await self._load_key(key_id) if is_key_id(key_id) else None

    async def revoke_key(self, key_id: str) -> AccessKey:
        if await self.key(key_id) is None:
            raise NoSuchAccessKey(key_id)

        def change(current: Any) -> dict:
            doc = dict(current)
            doc["revoked"] = doc.get("revoked") or _now()
            return doc

        return AccessKey.from_record(await self.state.update(f"{KEY_PREFIX}{key_id}.json", change))
