"""The ASGI applications a worker process serves: one per listener, over one shared Store."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tunnelmesh.admin.api import AdminApi
from tunnelmesh.config import Settings
from tunnelmesh.coordinator.peers import PeerRegistry
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3.app import S3Api
from tunnelmesh.s3.auth.credentials import Identity
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.request import Principal
from tunnelmesh.server import ADMIN_ACCESS_KEY
from tunnelmesh.store.engine import Store

S3_PREFIX = b"/s3"
API_PREFIX = b"/api/"

App = Any


@dataclass
class Apps:
    main: App  # the S3 API under /s3 and the admin API under /api/
    root: App  # the S3 API at the root, for clients that cannot take an endpoint path
    store: Store


def build(settings: Settings, admin_token: str) -> Apps:
    store = Store(settings.data_dir, settings.max_size)
    state = SystemState(store)
    peers = PeerRegistry(state, Identity(Principal(ADMIN_ACCESS_KEY, is_admin=True), admin_token))
    api = S3Api(Context(store, settings.region, settings.limits.max_object_size), peers)
    body_timeout = settings.limits.body_timeout
    admin = AdminApi(state, peers, settings.region)

    async def main(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        receive = _with_timeout(receive, body_timeout)
        raw = scope.get("raw_path") or scope["path"].encode()
        if raw == S3_PREFIX or raw.startswith(S3_PREFIX + b"/"):
            await api.handle(scope, receive, send, S3_PREFIX.decode())
        elif raw.startswith(API_PREFIX):
            await admin.handle(scope, receive, send)
        else:
            await _not_found(send)

    async def root(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await api.handle(scope, _with_timeout(receive, body_timeout), send, "")

    return Apps(main, root, store)


def _with_timeout(receive: Any, seconds: float) -> Any:
    """A body that stalls longer than `seconds` between two chunks ends the request (and frees the
    worker's resources) instead of holding them for as long as the client likes."""

    async def timed() -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await receive()
        except TimeoutError:
            raise S3Error(
                "RequestTimeout",
                "Your socket connection to the server was not read from or written to within the timeout period.",
            ) from None

    return timed


async def _not_found(send: Any) -> None:
    body = b"tunnelmesh coordinator: the S3 API is under /s3, the admin API under /api/\n"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
