"""One worker process: both listeners served by embedded granian servers on one event loop.

Every worker binds the same addresses with SO_REUSEPORT, so the kernel spreads connections over
the workers, and each worker holds one Store (one SQLite reader, one group-commit writer thread).
One process serving both listeners, instead of a server process tree per listener, is what
keeps the coordinator's memory small.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.embed import Server

from tunnelmesh.asgi import build
from tunnelmesh.config import Limits, Listen, Settings
from tunnelmesh.store import expiry

log = logging.getLogger("tunnelmesh.worker")

BIND_FAILED = 3


def _server(app: object, listen: Listen, limits: Limits) -> Server:
    return Server(
        app,
        address=listen.host,
        port=listen.port,
        interface=Interfaces.ASGINL,
        websockets=False,
        backlog=1024,
        log_level=LogLevels.error,
        # requests in flight per worker; beyond it connections wait in the backlog, so one greedy
        # client cannot make a worker take on unbounded work
        backpressure=limits.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(limits.header_timeout * 1000), max_buffer_size=limits.max_header_size
        ),
    )


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the supervisor dies, so no orphan keeps the ports."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_stop_requested = False


def _request_stop(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True


def serve(settings: Settings, admin_token: str) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code."""
    # until the event loop takes the signals over, a stop request is only remembered
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    _die_with_parent()
    apps = build(settings, admin_token)
    servers = [_server(apps.main, settings.listen, settings.limits)]
    if settings.s3_listen is not None:
        servers.append(_server(apps.root, settings.s3_listen, settings.limits))

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [s.stop() for s in servers])
        if _stop_requested:  # told to stop while still starting up
            return
        stopping = asyncio.Event()
        expiring = asyncio.create_task(expiry.run(apps.store, settings.stale_upload_expiry, stopping))
        try:
            await asyncio.gather(*(s.serve() for s in servers))
        finally:
            stopping.set()
            await expiring

    try:
        asyncio.run(run())
    except OSError as e:
        log.error("cannot listen: %s", e)
        return BIND_FAILED
    finally:
        apps.store.close()
    return 0
