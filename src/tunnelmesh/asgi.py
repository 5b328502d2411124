"""The ASGI applications a worker process serves: one per listener, over one shared Store."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from tunnelmesh.admin.api import AdminApi
from tunnelmesh.config import Settings
from tunnelmesh.console.app import Console
from tunnelmesh.console.s3call import Calls
from tunnelmesh.console.sessions import Sessions
from tunnelmesh.coordinator.peers import PeerRegistry
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.obs import endpoints as obs_endpoints
from tunnelmesh.obs import metrics
from tunnelmesh.obs.health import Readiness
from tunnelmesh.obs.scrape import PATH as METRICS_PATH
from tunnelmesh.obs.scrape import MetricsEndpoint
from tunnelmesh.s3.app import ADMIT, S3Api
from tunnelmesh.s3.auth.credentials import Identity
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.request import Principal
from tunnelmesh.server import ADMIN_ACCESS_KEY
from tunnelmesh.store import expiry, writer
from tunnelmesh.store.backends import open_meta
from tunnelmesh.store.blobs import BlobStore
from tunnelmesh.store.engine import Store
from tunnelmesh.store.sse import KeyRing

S3_PREFIX = b"/s3"
API_PREFIX = b"/api/"
CONSOLE_PREFIX = b"/console"

App = Any
log = logging.getLogger("tunnelmesh.http")


@dataclass
class Apps:
    main: App  # the S3 API under /s3 and the admin API under /api/
    root: App  # the S3 API at the root, for clients that cannot take an endpoint path
    store: Store


def build(settings: Settings, admin_token: str) -> Apps:
    store = Store(
        settings.data_dir,
        settings.max_size,
        meta=open_meta(settings.data_dir, settings.metadata),
        blobs=BlobStore(settings.data_dir, settings.files),
    )
    store.upload_refresh = expiry.refresh_interval(settings.stale_upload_expiry)
    store.node = settings.node
    # checked by the supervisor before any worker starts (server.check_sse_keys): read again here, per worker
    store.sse = KeyRing.load(settings.sse_key_file) if settings.sse_key_file is not None else None
    state = SystemState(store)
    peers = PeerRegistry(state, Identity(Principal(ADMIN_ACCESS_KEY, is_admin=True), admin_token))
    api = S3Api(
        Context(
            store,
            settings.region,
            settings.limits.max_object_size,
            node_timeout=settings.node_timeout,
            max_retention_days=settings.max_retention_days,
        ),
        peers,
    )
    api.ctx.authz.audit.node = settings.node
    limits = settings.limits
    admin = AdminApi(
        state,
        peers,
        settings.region,
        settings.metadata.describe(settings.data_dir),
        settings.node,
        settings.node_timeout,
        api.ctx.authz,  # one authorizer (and view cache) per worker, for both APIs
    )
    # the bound on S3 work in flight: the HTTP server's own bound counts open connections, idle ones
    # too, so it is set high and this one, shared by both listeners, keeps a greedy client from piling
    # up work. The admin API takes no slot, so no S3 traffic can keep the admin from revoking a peer:
    # every request there is refused before it reads a body or waits on anything (so it cannot hold on)
    # unless it is an admin's (trusted) or an authenticated peer's on its own bucket's grants or its own
    # keys (a JSON body of at most 1 MiB, under the client guard's deadlines); open connections stay
    # bounded by max_connections.
    in_flight = asyncio.Semaphore(limits.max_requests)
    console = Console(
        peers,
        Sessions(state),
        Calls(api, admin),
        settings.region,
        on_refused_sign_in=lambda: metrics.auth_failure("console_signin"),
    )
    # A browser form upload is authenticated only once its fields (up to 20 KiB of body) have
    # arrived, so anyone may start one: until then it waits in this small pool of its own, and only
    # a form whose signature held moves to a slot of `in_flight` (`admit`). Clients that never send
    # their fields can fill this pool, never the one every other S3 request needs.
    forms_unauthenticated = asyncio.Semaphore(max(2, limits.max_requests // 16))
    # The console likewise: anyone may load its sign-in page or send a sign-in form (a refused one waits out
    # its delay), so a console request that no session holds for waits in a small pool of its own; a signed-in
    # one takes a slot of `in_flight`. Which one is decided from the headers (the session cookie), before any
    # body is read: idle or failing sign-ins fill their pool, never S3's, nor the signed-in users'.
    console_unauthenticated = asyncio.Semaphore(max(2, limits.max_requests // 16))
    writer.observe_group = metrics.commit_batch
    scrape = MetricsEndpoint(
        store,
        peers,
        settings.region,
        settings.metrics_token,
        settings.metrics_public,
        settings.metrics_max_bucket_series,
    )
    tally = metrics.TALLY

    async def serve(scope: dict[str, Any], receive: Any, send: Any, prefix: str) -> None:
        guard = _ClientGuard(receive, send, limits.body_timeout, limits.min_body_rate)
        started = time.perf_counter()
        tally.begin()
        try:
            done = await api.handle(scope, guard.receive, guard.send, prefix)
        except ClientTimeout:
            tally.cut_off()
            _log_cut_off(scope)
            return
        except BaseException:  # cancelled (the server stopping): no longer in flight either
            tally.cut_off()
            raise
        finally:
            guard.close()
        tally.end(done.operation, done.status, time.perf_counter() - started, done.received, done.sent)
        if done.auth_failure is not None:
            metrics.auth_failure(done.auth_failure)

    async def s3(scope: dict[str, Any], receive: Any, send: Any, prefix: str) -> None:
        if not _may_be_form_upload(scope):
            async with in_flight:
                await serve(scope, receive, send, prefix)
            return
        held = [forms_unauthenticated]
        await forms_unauthenticated.acquire()

        async def admit() -> None:
            await in_flight.acquire()
            held.append(in_flight)
            held.remove(forms_unauthenticated)
            forms_unauthenticated.release()

        try:
            await serve({**scope, ADMIT: admit}, receive, send, prefix)
        finally:
            for slot in held:
                slot.release()

    async def admin_api(scope: dict[str, Any], receive: Any, send: Any) -> None:
        guard = _ClientGuard(receive, send, limits.body_timeout, limits.min_body_rate)
        try:
            done = await admin.handle(scope, guard.receive, guard.send)
        except ClientTimeout:
            _log_cut_off(scope)
            return
        finally:
            guard.close()
        # the handler's name: a route is refused as "-" until it is found and authorized
        metrics.admin_request(done.operation, done.status)
        if done.auth_failure is not None:
            metrics.auth_failure(done.auth_failure)

    readiness = Readiness(store)

    async def console_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        held: list[asyncio.Semaphore] = []

        async def admit(signed_in: bool) -> None:
            slot = in_flight if signed_in else console_unauthenticated
            await slot.acquire()
            held.append(slot)

        guard = _ClientGuard(receive, send, limits.body_timeout, limits.min_body_rate)
        try:
            await console.handle(scope, guard.receive, guard.send, admit)
        except ClientTimeout:
            _log_cut_off(scope)
        finally:
            guard.close()
            for slot in held:
                slot.release()

    head_limit = limits.max_header_size

    async def main(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if _head_size(scope) > head_limit:
            await _head_too_large(send)
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        if raw == S3_PREFIX or raw.startswith(S3_PREFIX + b"/"):
            await s3(scope, receive, send, S3_PREFIX.decode())
        elif raw.startswith(API_PREFIX):
            await admin_api(scope, receive, send)
        # main listener only (on s3.listen these are bucket names), unauthenticated, no S3 slot
        elif raw == obs_endpoints.HEALTHZ:
            await obs_endpoints.healthz(scope, send)
        elif raw == obs_endpoints.READYZ:
            await obs_endpoints.readyz(scope, send, readiness)
        elif raw == CONSOLE_PREFIX or raw.startswith(CONSOLE_PREFIX + b"/"):
            # one slot for the page (console.handle takes it); its in-process S3 and admin calls take none
            await console_app(scope, receive, send)
        elif raw == METRICS_PATH:  # the main listener only: on s3.listen it is a bucket's name
            await scrape(scope, receive, send)
        else:
            async with in_flight:
                await _not_found(send)

    async def root(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if _head_size(scope) > head_limit:
            await _head_too_large(send)
            return
        await s3(scope, receive, send, "")

    return Apps(main, root, store)


def _head_size(scope: dict[str, Any]) -> int:
    """The request head's size as sent (near enough): its target and each header line. The HTTP server's read
    buffer is larger than limits.max_header_size (worker.py: it also caps body chunks), so the limit is here."""
    # the request line: method, target, version, spaces and CRLF
    size = len(scope["method"]) + len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 12
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


async def _head_too_large(send: Any) -> None:
    """What the HTTP server answers a head over its buffer: 431, and the connection ends (its body is unread)."""
    headers = [(b"content-length", b"0"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 431, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


class ClientTimeout(Exception):
    """The client stopped taking the response: it is cut off (the connection closes) and its slot freed."""


def _log_cut_off(scope: dict[str, Any]) -> None:
    client = scope.get("client") or ("-", 0)
    log.info(
        "%s %s from %s: the client stopped reading the response; cut off", scope["method"], scope["path"], client[0]
    )


class _ClientGuard:
    """The request's `receive` and `send`, ending a request whose client holds it up: a wait on the
    client (for the next body chunk, or for it to take the next piece of the response) may last
    `stall` seconds at most, and all the waits together at most `stall` (a head start) plus one
    second per `min_rate` bytes moved, so a client dripping a byte now and then cannot hold a
    request slot for hours. Only time spent waiting on the client counts, never the server's own work.

    One timer per request, re-armed only when it fires while a wait is still pending: a large
    upload arrives in thousands of 64 KiB chunks, and a timer per chunk (asyncio.timeout) took
    about a tenth of the event loop's time.
    """

    __slots__ = (
        "_receive",
        "_send",
        "_stall",
        "_rate",
        "_loop",
        "_task",
        "_since",
        "_waited",
        "_moved",
        "_timer",
        "_fired",
    )

    def __init__(self, receive: Any, send: Any, stall: float, min_rate: float) -> None:
        self._receive = receive
        self._send = send
        self._stall = stall
        self._rate = min_rate
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since: float | None = None  # when the pending wait began
        self._waited = 0.0  # seconds spent in the waits already over
        self._moved = 0  # body bytes received and sent
        self._timer: asyncio.TimerHandle | None = None
        self._fired = False

    def _due(self, since: float) -> float:
        """When the wait that began at `since` runs out (the budget can only grow from one wait to the
        next, so a timer armed for an earlier wait is never late for a later one)."""
        return since + self._stall + min(0.0, self._moved / self._rate - self._waited)

    def _begin(self) -> None:
        self._since = now = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._due(now), self._check)

    def _end(self) -> None:
        if self._since is not None:
            self._waited += self._loop.time() - self._since
            self._since = None

    def _timed_out(self) -> bool:
        """Whether the cancellation being handled is this guard's own (any other one goes on)."""
        if self._fired and self._task is not None and self._task.uncancel() == 0:
            self._fired = False
            # a fresh budget for what follows (the error response to a body that timed out)
            self._since, self._waited, self._moved = None, 0.0, 0
            return True
        return False

    async def receive(self) -> Any:
        self._begin()
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if self._timed_out():
                raise S3Error("RequestTimeout") from None
            raise
        finally:
            self._end()
        n = len(message.get("body", b""))
        self._moved += n
        return message

    async def send(self, message: dict[str, Any]) -> None:
        self._begin()
        try:
            await self._send(message)
        except asyncio.CancelledError:
            if self._timed_out():
                raise ClientTimeout from None
            raise
        finally:
            self._end()
        self._moved += len(message.get("body", b""))

    def _check(self) -> None:
        self._timer = None
        if self._since is None or self._task is None:
            return
        due = self._due(self._since)
        if self._loop.time() >= due:
            self._fired = True
            self._task.cancel()  # lands in the wait above, the only place the task waits now
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
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
                (b"content-security-policy", b"sandbox"),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _may_be_form_upload(scope: dict[str, Any]) -> bool:
    """A POST with a multipart/form-data body and no query: what s3/auth takes for a form upload
    (it also asks for a bucket-level path; anything else here is refused as usual, in the form pool)."""
    if scope["method"] != "POST" or scope.get("query_string"):
        return False
    ctype = next((v for k, v in scope["headers"] if k.lower() == b"content-type"), b"")
    return ctype.split(b";", 1)[0].strip().lower() == b"multipart/form-data"
