"""Console sessions: records in the system bucket, `_tunnelmesh/console-sessions/<sha256 of the session id>`.

Records, not memory: a request reaches any worker (SO_REUSEPORT) and any coordinator on a shared PostgreSQL,
and a logout must end the session everywhere. The cookie holds only the random id; a record holds its
digest as its name and a digest of the signer's secret, so a backup archive holds no usable credential.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass

from tunnelmesh.coordinator.errors import CorruptRecord
from tunnelmesh.coordinator.state import SystemState

log = logging.getLogger("tunnelmesh.console")

PREFIX = "console-sessions/"
LIFETIME = 12 * 3600  # absolute: a session is not extended by use
_SID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _record_key(sid: str) -> str:
    return PREFIX + hashlib.sha256(sid.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    peer: str
    key_id: str | None  # the scoped access key signed in with; None: the peer's own token
    token_digest: str  # sha256 of the signer's secret at sign-in: a re-issued token or key ends the session
    csrf: str
    created: float
    expires: float

    @classmethod
    def from_record(cls, d: dict) -> Session:
        key_id = d.get("key_id")
        return cls(
            peer=str(d["peer"]),
            key_id=None if key_id is None else str(key_id),
            token_digest=str(d["token_digest"]),
            csrf=str(d["csrf"]),
            created=float(d["created"]),
            expires=float(d["expires"]),
        )


class Sessions:
    def __init__(self, state: SystemState, lifetime: float = LIFETIME) -> None:
        self.state = state
        self.lifetime = lifetime

    async def create(self, peer: str, key_id: str | None, secret: str) -> tuple[str, Session]:
        """A new session and its id (for the cookie only: nothing else ever holds it)."""
        sid = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(peer, key_id, secret_digest(secret), secrets.token_urlsafe(32), now, now + self.lifetime)
        await self.state.put(_record_key(sid), asdict(session))
        return sid, session

    async def load(self, sid: str) -> Session | None:
        """The live session this id names; an expired one is deleted when met."""
        if not _SID.fullmatch(sid):
            return None
        key = _record_key(sid)
        try:
            doc = await self.state.get(key)
            session = None if doc is None else Session.from_record(doc)
        except (CorruptRecord, KeyError, TypeError, ValueError) as e:
            log.warning("console session record unreadable: %s", e)
            return None
        if session is not None and session.expires <= time.time():
            await self.state.delete([key])
            return None
        return session

    async def end(self, sid: str) -> None:
        if _SID.fullmatch(sid):
            await self.state.delete([_record_key(sid)])

    async def sweep(self) -> int:
        """Delete every expired (or unreadable) record; the number deleted."""
        now, gone = time.time(), []
        for key in await self.state.keys(PREFIX):
            try:
                doc = await self.state.get(key)
                if doc is None or Session.from_record(doc).expires > now:
                    continue
            except (CorruptRecord, KeyError, TypeError, ValueError):
                pass
            gone.append(key)
        if gone:
            await self.state.delete(gone)
        return len(gone)
