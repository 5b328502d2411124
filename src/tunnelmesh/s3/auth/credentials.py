"""Who may sign requests: the one small lookup interface between auth and the peer registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Principal


@dataclass(frozen=True, slots=True)
class Identity:
    principal: Principal
    secret: str


class Credentials(Protocol):
    async def by_access_key(self, access_key: str) -> Identity | None: ...

    async def by_token(self, token: str) -> Identity | None: ...


async def require_identity(creds: Credentials, access_key: str) -> Identity:
    """The signer an access key names, or InvalidAccessKeyId."""
    ident = await creds.by_access_key(access_key)
    if ident is None:
        raise S3Error("InvalidAccessKeyId", AWSAccessKeyId=access_key)
    return ident
