"""Who may sign requests: the one small lookup interface between auth and the peer registry."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from tunnelmesh.s3.request import Principal


@dataclass(frozen=True, slots=True)
class Identity:
    principal: Principal
    secret: str


class Credentials(Protocol):
    def by_access_key(self, access_key: str) -> Identity | None: ...

    def by_token(self, token: str) -> Identity | None: ...


class StaticCredentials:
    """The bootstrap admin only; the peer registry replaces this."""

    def __init__(self, identities: list[Identity]) -> None:
        self._by_key = {i.principal.peer_id: i for i in identities}

    def by_access_key(self, access_key: str) -> Identity | None:
        return self._by_key.get(access_key)

    def by_token(self, token: str) -> Identity | None:
        found = None
        # compare against every secret, in constant time, so timing reveals nothing
        for ident in self._by_key.values():
            if hmac.compare_digest(ident.secret.encode(), token.encode()):
                found = ident
        return found
