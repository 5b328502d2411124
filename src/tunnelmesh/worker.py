"""One worker process: both listeners served by embedded granian servers on one event loop.

Every worker binds the same addresses with SO_REUSEPORT, so the kernel spreads connections over
the workers, and each worker holds one Store (one SQLite reader, one group-commit writer thread).
One process serving both listeners, instead of a server process tree per listener, is what
keeps the coordinator's memory small.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import signal
from typing import Any

from granian.constants import HTTPModes, Interfaces, SSLProtocols
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.embed import Server

from tunnelmesh.asgi import build
from tunnelmesh.config import Limits, Listen, Settings, Tls
from tunnelmesh.store import expiry, heartbeat, lifecycle, rewrap

log = logging.getLogger("tunnelmesh.worker")

BIND_FAILED = 3
# a commit's outcome was unknown (store/errors.py CommitUnknown): the stop is not clean
UNSURE = 5


# files a worker needs besides its connections: the store's database and blobs, the log, the loop
SPARE_FILES = 256


def _tls_options(tls: Tls | None) -> dict[str, Any]:
    """granian's HTTPS options for one listener (none: plain HTTP). The supervisor has checked the pair."""
    if tls is None:
        return {}
    return {
        "ssl_cert": tls.cert,
        "ssl_key": tls.key,
        "ssl_protocol_min": SSLProtocols.tls12 if tls.min_version == "1.2" else SSLProtocols.tls13,
    }


def _server(app: object, listen: Listen, limits: Limits, max_connections: int, tls: Tls | None = None) -> Server:
    return Server(
        app,
        address=listen.host,
        port=listen.port,
        interface=Interfaces.ASGINL,
        # HTTP/1 only: in auto mode the server first waits, without any deadline, for the bytes that
        # tell HTTP/1 from HTTP/2, so a connection that never sends one is never closed. S3 clients
        # speak HTTP/1.1 here (with TLS too: no ALPN offers HTTP/2).
        http=HTTPModes.http1,
        websockets=False,
        backlog=1024,
        log_level=LogLevels.error,
        # granian's own (rare) lines go through our handler and format (log_format: json stays one object a line)
        log_dictconfig={"version": 1, "disable_existing_loggers": False, "loggers": {"_granian": {"propagate": True}}},
        # granian holds one of these permits per open connection (idle ones too), not per request;
        # requests in flight are bounded by limits.max_requests in the application
        backpressure=max_connections,
        http1_settings=HTTP1Settings(
            # one deadline from the connection's opening, or its previous response, to a complete
            # request head: it closes silent and idle keep-alive connections as well as slow heads
            header_read_timeout=max(1, round(limits.head_timeout * 1000)),
            # the read buffer caps each body message too: at 64 KiB a 64 MiB upload is a thousand awaits. The
            # head's own limit (limits.max_header_size) is applied by the application (asgi.py)
            max_buffer_size=max(limits.read_buffer_size, limits.max_header_size),
        ),
        **_tls_options(tls),
    )


def _file_budget(wanted: int) -> int:
    """Raise this process's open-file limit toward `wanted`, up to the hard limit, and return the
    limit now in force: the common soft limit of 1024 would let a few hundred held-open connections
    use up every descriptor the worker has. (Importing granian 2.8 already raises the soft limit to
    the hard one; this does not rely on that.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, e)
    return soft


def _connection_limit(limits: Limits, listeners: int) -> int:
    """limits.max_connections per listener, or fewer if the open-file limit cannot take that many:
    past it the server could not accept at all, while below it new connections wait in the backlog."""
    wanted = limits.max_connections * listeners + SPARE_FILES
    budget = _file_budget(wanted)
    if budget >= wanted:
        return limits.max_connections
    fits = max(1, (budget - SPARE_FILES) // listeners)
    log.warning(
        "open-file limit %d: at most %d connections per listener (limits.max_connections is %d)",
        budget,
        fits,
        limits.max_connections,
    )
    return fits


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


def serve(settings: Settings, admin_token: str, started_at: float) -> int:
    """Run until SIGTERM or SIGINT; returns the process exit code."""
    # until the event loop takes the signals over, a stop request is only remembered
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    # the supervisor forks with these blocked, so that none is lost before the handlers above exist
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    _die_with_parent()
    apps = build(settings, admin_token)
    # what the worker built lives as long as it does: no collection needs to look at it again
    gc.collect()
    gc.freeze()
    listens = [(apps.main, settings.listen, settings.tls)]
    if settings.s3_listen is not None:
        listens.append((apps.root, settings.s3_listen, settings.s3_tls))
    connections = _connection_limit(settings.limits, len(listens))
    servers = [_server(app, listen, settings.limits, connections, tls) for app, listen, tls in listens]
    listen = str(settings.s3_listen or settings.listen)
    # on metadata several coordinators share, the per-mesh duties go by lease (one node at a time)
    lease_node = settings.node if settings.metadata.uri is not None else None
    code = 0

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [s.stop() for s in servers])
        if _stop_requested:  # told to stop while still starting up
            return
        # every worker reaps the freed-blob queue, so blobs freed by one that died are freed too
        reaper = asyncio.create_task(apps.store.reap_forever())
        stopping = asyncio.Event()
        expiring = asyncio.create_task(expiry.run(apps.store, settings.stale_upload_expiry, stopping, lease_node))
        aging = asyncio.create_task(lifecycle.run(apps.store, settings.lifecycle_interval, stopping, lease_node))
        duties = [expiring, aging]
        if settings.sse_key_file is not None and settings.sse_rewrap_interval > 0:
            duties.append(
                asyncio.create_task(rewrap.run(apps.store, settings.sse_rewrap_interval, stopping, settings.node))
            )

        def retire() -> None:
            nonlocal code
            code = heartbeat.RETIRED
            for s in servers:
                s.stop()

        beating = asyncio.create_task(
            heartbeat.run(apps.store, settings.node, listen, started_at, settings.heartbeat_interval, retire, stopping)
        )
        try:
            await asyncio.gather(*(s.serve() for s in servers))
        finally:
            reaper.cancel()
            stopping.set()
            for duty in duties:
                await duty
            await beating

    try:
        asyncio.run(run())
    except OSError as e:
        log.error("cannot listen: %s", e)
        return BIND_FAILED
    finally:
        apps.store.close()
    if code == 0 and apps.store.unsure:
        # not a clean stop: the next start sweeps this worker's tag for the blobs such a commit left
        log.warning("a commit's outcome was unknown; this worker's blobs are left to the next sweep")
        code = UNSURE
    return code
