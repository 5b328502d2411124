"""Console sign-in and the identity behind a session, reloaded on every request (a revoked peer or key,
or a re-issued token, ends the session at its next request, as it ends S3 access)."""

from __future__ import annotations

import hmac

from tunnelmesh.console.sessions import Session, secret_digest
from tunnelmesh.coordinator.peers import PeerRegistry
from tunnelmesh.s3.auth.credentials import Identity


async def sign_in(peers: PeerRegistry, token: str, access_key: str, secret: str) -> Identity | None:
    """A peer token alone, or an id (a scoped key's, or a peer's) with its secret (the key's, or the token)."""
    if token:
        return await peers.by_token(token)
    if not access_key or not secret:
        return None
    ident = await peers.by_access_key(access_key)
    # compared even for an unknown id, so timing does not tell which ids exist
    expected = ident.secret if ident is not None else "\x00" * 32
    if not hmac.compare_digest(expected.encode(), secret.encode()) or ident is None:
        return None
    return ident


async def reload(peers: PeerRegistry, session: Session) -> Identity | None:
    """The session's identity as it stands now, or None when it no longer holds."""
    ident = await peers.by_access_key(session.key_id or session.peer)
    if ident is None or ident.principal.peer_id != session.peer or ident.principal.key_id != session.key_id:
        return None
    if not hmac.compare_digest(secret_digest(ident.secret), session.token_digest):
        return None
    return ident
