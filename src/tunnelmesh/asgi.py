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
    # the bound on work in flight: the HTTP server's own bound counts open connections, idle ones too,
    # so it is set high and this one, shared by both listeners, keeps a greedy client from piling up work
    in_flight = asyncio.Semaphore(settings.limits.max_requests)

    async def main(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        async with in_flight:
            guard = _StallGuard(receive, body_timeout)
            try:
                raw = scope.get("raw_path") or scope["path"].encode()
                if raw == S3_PREFIX or raw.startswith(S3_PREFIX + b"/"):
                    await api.handle(scope, guard, send, S3_PREFIX.decode())
                elif raw.startswith(API_PREFIX):
                    await admin.handle(scope, guard, send)
                else:
                    await _not_found(send)
            finally:
                guard.close()

    async def root(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        async with in_flight:
            guard = _StallGuard(receive, body_timeout)
            try:
                await api.handle(scope, guard, send, "")
            finally:
                guard.close()

    return Apps(main, root, store)


class _StallGuard:
    """The request's `receive`, ending a request whose body stalls longer than `seconds` between
    two chunks (and so freeing the worker's resources) instead of waiting as long as the client likes.

    One timer per request, re-armed only when it fires while a receive is still waiting: a large
    upload arrives in thousands of 64 KiB chunks, and a timer per chunk (asyncio.timeout) took
    about a tenth of the event loop's time.
    """

    __slots__ = ("_receive", "_seconds", "_loop", "_task", "_since", "_timer", "_fired")

    def __init__(self, receive: Any, seconds: float) -> None:
        self._receive = receive
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since: float | None = None  # when the pending receive began
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False

    async def __call__(self) -> Any:
        self._since = now = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(now + self._seconds, self._check)
        try:
            return await self._receive()
        except asyncio.CancelledError:
            # only this guard's own cancellation becomes a timeout; any other one goes on
            if self._fired and self._task is not None and self._task.uncancel() == 0:
                raise S3Error(
                    "RequestTimeout",
                    "Your socket connection to the server was not read from or written to within the timeout period.",
                ) from None
            raise
        finally:
            self._since = None

    def _check(self) -> None:
        self._timer = None
        if self._since is None or self._task is None:
            return
        due = self._since + self._seconds
        if self._loop.time() >= due:
            self._fired = True
            self._task.cancel()  # lands in the receive above, the only place the task waits now
        else:
            self._timer = self._loop.call_at(due, self._check)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


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
