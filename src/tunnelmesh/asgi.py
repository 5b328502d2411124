"""The ASGI application each worker process runs (granian factory target)."""

from __future__ import annotations

import os
from typing import Any

from tunnelmesh.admin.api import AdminApi
from tunnelmesh.config import Settings
from tunnelmesh.coordinator.peers import PeerRegistry
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3.app import S3Api
from tunnelmesh.s3.auth.credentials import Identity
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.request import Principal
from tunnelmesh.server import ADMIN_ACCESS_KEY, LISTENER_ENV, SETTINGS_ENV, admin_token, configure_logging
from tunnelmesh.store.engine import Store

S3_PREFIX = b"/s3"
API_PREFIX = b"/api/"


def create_app() -> Any:
    settings = Settings.from_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level)
    serves_root = os.environ.get(LISTENER_ENV) == "s3"
    store = Store(settings.data_dir, settings.max_size)
    token, _ = admin_token(settings.data_dir, create=False)
    state = SystemState(store)
    peers = PeerRegistry(state, Identity(Principal(ADMIN_ACCESS_KEY, is_admin=True), token))
    api = S3Api(Context(store, settings.region), peers)
    admin = AdminApi(state, peers, settings.region)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            if serves_root:
                await api.handle(scope, receive, send, "")
                return
            raw = scope.get("raw_path") or scope["path"].encode()
            if raw == S3_PREFIX or raw.startswith(S3_PREFIX + b"/"):
                await api.handle(scope, receive, send, S3_PREFIX.decode())
                return
            if raw.startswith(API_PREFIX):
                await admin.handle(scope, receive, send)
                return
            await _not_found(send)
        elif kind == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    store.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


async def _not_found(send: Any) -> None:
    body = b"tunnelmesh coordinator: the S3 API is under /s3\n"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
