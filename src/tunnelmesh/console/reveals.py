"""Show a new secret once: a peer's token, an access key's secret (docs/operations.md step 10).

The add form's POST redirects (POST-redirect-GET, so a reload never adds a second peer) to a page that shows
the secret. What lets that page show it is a one-shot record, `_tunnelmesh/console-reveals/<sha256 of a
random nonce>`: which peer or key, for which session, until when. The first view deletes it, so a reload, the
back button, or anyone else holding the URL finds nothing. The record holds no secret: the page reads the token
from the peer's own record (which holds it already) or derives the key's secret, so no new copy of a secret
is ever at rest, in a backup archive or in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from tunnelmesh.coordinator.errors import CorruptRecord
from tunnelmesh.coordinator.state import SystemState

PREFIX = "console-reveals/"
LIFETIME = 600.0  # the redirect is followed at once; a reveal not viewed by then is void
KINDS = ("peer", "key")
_NONCE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Reveal:
    kind: str  # "peer" or "key"
    id: str  # the peer's id or the key's id


class Reveals:
    def __init__(self, state: SystemState, lifetime: float = LIFETIME) -> None:
        self.state = state
        self.lifetime = lifetime

    async def create(self, sid: str, kind: str, ident: str) -> str:
        """A nonce that lets session `sid` see the secret of peer or key `ident` once."""
        assert kind in KINDS
        await self._sweep()
        nonce = secrets.token_urlsafe(32)
        doc = {"kind": kind, "id": ident, "session": _digest(sid), "expires": time.time() + self.lifetime}
        await self.state.put(PREFIX + _digest(nonce), doc)
        return nonce

    async def take(self, sid: str, nonce: str, kind: str, ident: str) -> Reveal | None:
        """The reveal `nonce` names if it is this session's, for this peer or key, and not void; deleted
        whatever the answer (a second view finds nothing)."""
        if not _NONCE.fullmatch(nonce):
            return None
        key = PREFIX + _digest(nonce)
        try:
            doc = await self.state.get(key)
        except CorruptRecord:
            doc = None
        if doc is None:
            return None
        await self.state.delete([key])
        try:
            ok = (
                hmac.compare_digest(str(doc["session"]), _digest(sid))
                and doc["kind"] == kind
                and doc["id"] == ident
                and float(doc["expires"]) > time.time()
            )
        except (KeyError, TypeError, ValueError):
            return None
        return Reveal(kind, ident) if ok else None

    async def _sweep(self) -> None:
        """Delete the reveals never viewed (a redirect not followed): they hold no secret, but need not stay.
        There are rarely more than one or two: one is made per peer or key added."""
        now, gone = time.time(), []
        for key in await self.state.keys(PREFIX):
            try:
                doc = await self.state.get(key)
                if isinstance(doc, dict) and float(doc.get("expires", 0)) > now:
                    continue
            except (CorruptRecord, TypeError, ValueError):
                pass
            gone.append(key)
        if gone:
            await self.state.delete(gone)
