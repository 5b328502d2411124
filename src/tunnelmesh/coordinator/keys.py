"""Scoped access keys (docs/access-control.md section 4): S3 credentials apart from a peer's mesh token.

A key is a child identity of one peer (MinIO's service accounts are the model): it acts with its peer's
rights at the moment of use, narrowed to its scope, never as a mesh admin; it expires and can be revoked,
and it dies with its peer. Records live in `_tunnelmesh/keys/<id>.json`.

The secret is not stored, and cannot be hashed: SigV4, SigV2 and presigned URLs verify an HMAC made with
the secret itself, so the server must be able to produce it. It is derived from the peer's token and the
key's id and salt, so no new secret exists at rest or in backups, a leaked key secret does not reveal the
token, and every coordinator derives the same secret from the shared records. A key therefore dies with a
change of its peer's token, and the bootstrap admin (whose token is node-local) has none.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from tunnelmesh.access.grants import BadGrant, Grant, grant_statements
from tunnelmesh.access.policy import Statement
from tunnelmesh.coordinator.errors import InvalidInput

PREFIX = "keys/"
ID_PREFIX = "TMAK"  # peer ids are "peer-...": the two never collide
_ID_RE = re.compile(r"^TMAK[A-Z2-7]{16}$")
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_LABEL = b"tunnelmesh access key v1\0"
SECRET_CHARS = 40


def is_key_id(access_key: str) -> bool:
    return bool(_ID_RE.match(access_key))


def new_key_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(_B32) for _ in range(16))


def derive_secret(token: str, key_id: str, salt: str) -> str:
    mac = hmac.new(token.encode(), _LABEL + key_id.encode() + b"\0" + salt.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:SECRET_CHARS]


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _parse_iso(text: str) -> float:
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))


@dataclass(frozen=True, slots=True)
class Scope:
    bucket: str
    role: str
    prefix: str = ""


@dataclass(frozen=True, slots=True)
class AccessKey:
    id: str
    peer: str
    name: str
    salt: str
    scope: tuple[Scope, ...] | None  # None: all its peer's rights
    created: str
    created_by: str
    expires: str | None = None
    revoked: str | None = None

    def expired(self, now: float) -> bool:
        return self.expires is not None and _parse_iso(self.expires) <= now

    def seconds_left(self, now: float) -> float | None:
        """How long the key still works (None: no expiry)."""
        return None if self.expires is None else _parse_iso(self.expires) - now

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d["scope"] = None if self.scope is None else [asdict(s) for s in self.scope]
        return d

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> AccessKey:
        raw = d.get("scope")
        scope = (
            None
            if raw is None
            else tuple(Scope(str(s["bucket"]), str(s["role"]), str(s.get("prefix", ""))) for s in raw)
        )
        key = cls(
            id=str(d["id"]),
            peer=str(d["peer"]),
            name=str(d.get("name", "")),
            salt=str(d["salt"]),
            scope=scope,
            created=str(d["created"]),
            created_by=str(d.get("created_by", "")),
            expires=d.get("expires"),
            revoked=d.get("revoked"),
        )
        if not is_key_id(key.id) or len(key.salt) < 16:
            raise ValueError("bad key id or salt")
        if key.expires is not None:
            _parse_iso(key.expires)
        key.statements()  # a scope that does not compile is a damaged record
        return key

    def statements(self) -> tuple[Statement, ...] | None:
        """The scope as Allow statements: the boundary the evaluator applies to the key (section 1, step 3)."""
        if self.scope is None:
            return None
        out: list[Statement] = []
        for i, s in enumerate(self.scope):
            out.extend(grant_statements(Grant(f"{self.id}#{i}", s.role, s.prefix, peer=self.id), s.bucket))
        return tuple(out)

    @property
    def public(self) -> dict[str, Any]:
        """The record for listings: it holds no secret (the salt alone derives nothing)."""
        d = self.record()
        del d["salt"]
        return d


def new_key(peer: str, name: str, scope: list[Scope] | None, expires_in: float | None, by: str) -> AccessKey:
    now = time.time()
    for s in scope or ():
        try:
            Grant("check", s.role, s.prefix, peer=peer)
        except BadGrant as e:
            raise InvalidInput("scope", str(e)) from None
    if expires_in is not None and expires_in <= 0:
        raise InvalidInput("expires", "An expiry is a positive duration.")
    if len(name) > 128:
        raise InvalidInput("name", "A key name is at most 128 characters.")
    return AccessKey(
        id=new_key_id(),
        peer=peer,
        name=name,
        salt=secrets.token_hex(16),
        scope=None if scope is None else tuple(scope),
        created=_iso(now),
        created_by=by,
        expires=None if expires_in is None else _iso(now + expires_in),
    )
