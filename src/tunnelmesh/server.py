"""Process start-up: prepare the data dir, resolve the admin credential, run the listeners.

The coordinator process is a small supervisor. It validates everything first, then forks worker
processes (one per core by default); each serves both listeners (the main one: the S3 API under
/s3 and the admin API under /api/; the second one: the S3 API at the root, for clients that
cannot take an endpoint path). Workers share the SQLite metadata and the blob directory; the
supervisor restarts a worker that dies.

One coordinator owns a data dir: the supervisor takes an flock on its lock file (store/datadir.py)
before it changes anything there (only the write probe comes first), and every process it forks
inherits it, so the lock is held until the last of them has exited (a worker outliving a killed
supervisor still writes). A second coordinator on the same data dir refuses to start, naming the
holder's pid. The lock covers the node-local state (embedded metadata, admin.token, markers,
tmp/); see store/datadir.py for the layout, and store/engine.py for what a stop that is not clean
(a supervisor dying, or a worker dying without its orphan sweep finishing) leads to.

Each worker gets a writer tag that no other process of this supervisor has had (it ends the ids
of the blobs the worker writes): when a worker dies, the blobs it sealed but never committed are
found by that tag and removed while the others serve, so a long-running coordinator loses no
space to dead workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import http.client
import logging
import os
import secrets
import signal
import socket
import ssl
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tunnelmesh import tls
from tunnelmesh.config import ConfigError, Listen, Settings
from tunnelmesh.obs import multiproc
from tunnelmesh.obs.logfmt import configure_logging as configure_logging  # the CLI calls it from here
from tunnelmesh.obs.notify import sd_notify
from tunnelmesh.store import blobs as blobs_mod
from tunnelmesh.store import heartbeat, scrub_schedule
from tunnelmesh.store.blobs import BlobStore
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.engine import (
    StartupSweep,
    claim_writer_tags,
    free_all_queued,
    mark_clean_shutdown,
    prepare_data_dir,
    retire_own_writers,
    sweep_dead_writers,
    sweep_orphans,
    sweep_own_writers,
    take_over_silent_nodes,
)

log = logging.getLogger("tunnelmesh")

ADMIN_ACCESS_KEY = "admin"
ADMIN_TOKEN_ENV = "TUNNELMESH_ADMIN_TOKEN"
MIN_ADMIN_TOKEN = 16
# how long the first workers may take to answer /healthz before the start counts as failed
READY_TIMEOUT = 30.0


def check_data_dir(data_dir: Path) -> None:
    """Make the data dir ours alone: it holds every peer's token (in the metadata database) and
    objects up to 32 KiB inline, so no other local user may read any of it."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        # files made by versions that ran under the default umask
        for path in data_dir.iterdir():
            if path.is_file() and not path.is_symlink():
                path.chmod(0o600)
        probe = DataDir(data_dir).write_probe
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"s3.data_dir: {data_dir} is not writable: {e.strerror}") from None


def lock_data_dir(data_dir: Path) -> int:
    """Take the data dir for this coordinator; returns the lock's fd, to keep open for its whole life.

    An flock, not a pid file: the kernel drops it when the last process holding it ends, however
    it ends, so no stale lock survives a crash.
    """
    path = DataDir(data_dir).lock_file
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(f"s3.data_dir: cannot open {path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(f"s3.data_dir {data_dir.resolve()} is in use by another coordinator (pid {holder})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def admin_token(data_dir: Path, create: bool) -> tuple[str, str]:
    """The bootstrap admin secret and where it came from (never the secret itself).

    A short or empty secret is refused, never used: an empty admin.token (left by a crash, or by
    hand) would otherwise let anyone in as admin with an empty password.
    """
    env = os.environ.get(ADMIN_TOKEN_ENV)
    if env is not None:
        return _long_enough(env, f"${ADMIN_TOKEN_ENV}"), f"${ADMIN_TOKEN_ENV}"
    path = DataDir(data_dir).admin_token
    if path.exists():
        return _long_enough(path.read_text().strip(), str(path)), str(path)
    if not create:
        raise RuntimeError(f"no admin token in ${ADMIN_TOKEN_ENV} or {path}")
    token = secrets.token_urlsafe(32)
    # written whole under a temporary name, then renamed: a crash never leaves a partial token
    tmp = DataDir(data_dir).replacement(path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # no trailing newline: tools that read the file whole (SDK config, --token-file) get the secret itself
    with os.fdopen(fd, "w") as f:
        f.write(token)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return token, f"{path} (generated)"


def _long_enough(token: str, source: str) -> str:
    if len(token) < MIN_ADMIN_TOKEN:
        raise ConfigError(
            f"the admin token from {source} is shorter than {MIN_ADMIN_TOKEN} characters; "
            "set a longer one (or remove the file to have one generated)"
        )
    return token


def report_state(settings: Settings, token: str) -> None:
    """Load the coordinator's records from _tunnelmesh (and only from there) and say what was found.

    A corrupt record is reported by key and skipped; the others load.
    """
    from tunnelmesh.coordinator.errors import CorruptRecord
    from tunnelmesh.coordinator.network import NetworkConfig
    from tunnelmesh.coordinator.peers import Peer, PeerRegistry
    from tunnelmesh.coordinator.shares import Shares
    from tunnelmesh.coordinator.state import SystemState
    from tunnelmesh.s3.auth.credentials import Identity
    from tunnelmesh.s3.request import Principal
    from tunnelmesh.store.backends import open_meta
    from tunnelmesh.store.engine import Store

    store = Store(
        settings.data_dir,
        settings.max_size,
        meta=open_meta(settings.data_dir, settings.metadata),
        blobs=BlobStore(settings.data_dir, settings.files),
    )
    try:
        state = SystemState(store)
        registry = PeerRegistry(state, Identity(Principal(ADMIN_ACCESS_KEY, is_admin=True), token))

        async def load() -> tuple[list[Peer], dict[str, Any], list[dict[str, Any]]]:
            peers = await registry.peers()
            # a data dir from before the token index gets one, before any worker authenticates
            if indexed := await registry.reindex():
                log.info("token index: %d entries written", indexed)
            try:
                network = await NetworkConfig(state).show()
            except CorruptRecord as e:
                log.warning("%s", e)
                network = {}
            return peers, network, await Shares(state).list()

        peers, network, shares = asyncio.run(load())
        log.info(
            "state from _tunnelmesh: %d peers (%d revoked), %d shares, network %s",
            len(peers),
            sum(1 for p in peers if p.revoked),
            len(shares),
            network.get("mesh_name") or "(unset)",
        )
    finally:
        store.close()


def check_ports_free(settings: Settings) -> None:
    """Bind each address once without SO_REUSEPORT: a port held by anyone (another coordinator
    included) fails here with a clear message instead of being silently shared."""
    listens = [("listen", settings.listen)] + ([("s3.listen", settings.s3_listen)] if settings.s3_listen else [])
    for key, listen in listens:
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # SO_REUSEADDR tolerates connections still in TIME_WAIT after a restart; without
            # SO_REUSEPORT the bind still fails if anything is listening there
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((listen.host, listen.port))
            except OSError as e:
                raise ConfigError(f"{key}: cannot listen on {listen}: {e.strerror}") from None


def _fork(job: Callable[[], int], what: str) -> int:
    """Run `job` in a child process that never returns into the supervisor's code, whatever
    happens: it exits with the job's code, or 1 after logging what failed."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = job()
        except BaseException:
            log.exception("%s failed", what)
        finally:
            logging.shutdown()
            os._exit(code)
    return pid


def preload_worker_code(sse: bool = False) -> None:
    """Import what a worker runs here, once, before the first fork, and take every object so far out of
    the collector's reach (docs: gc.freeze).

    Memory (issue 17: the process tree's PSS): imported after the fork, each worker held its own copy of
    the application, granian and prometheus-client; imported here, the workers share those pages with the
    supervisor copy-on-write. Frozen, they stay shared through a worker's full collections, which would
    otherwise write to every object's header and copy every page. Only after multiproc.prepared: the
    metrics module needs PROMETHEUS_MULTIPROC_DIR when it is imported. Importing starts no thread, so
    forking stays safe. All of it, the console's Jinja2 too: what a worker imports lazily is its own alone
    (measured: a lazy Jinja2 saved 2.5 MiB idle, and cost 3 MiB more once both workers had served a console
    page). `sse`: SSE-S3 is configured, so the workers will need cryptography (imported on
    first use otherwise, store/sse.py)."""
    import ctypes  # noqa: F401  (worker._die_with_parent imports it at start)

    from tunnelmesh import worker  # noqa: F401

    if sse:
        from cryptography.hazmat.primitives.ciphers import aead  # noqa: F401

    gc.collect()
    gc.freeze()


def _spawn_worker(settings: Settings, token: str, tag: str, started_at: float) -> int:
    def serve() -> int:
        from tunnelmesh import worker

        blobs_mod.set_writer_tag(tag)  # before it can write any blob
        return worker.serve(settings, token, started_at)

    # until the worker has its own handlers, a stop signal would run the supervisor's inherited one
    # in the child and be lost (the worker then serves on until SIGKILL, and the stop is not clean);
    # blocked, it waits until worker.serve unblocks it
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    pid = _fork(serve, "worker")
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid


def _spawn_sweeper(settings: Settings, todo: StartupSweep) -> int:
    """The orphan sweep after a crash, in its own process: the workers serve meanwhile, and the
    supervisor stays free of threads (it forks workers)."""

    def sweep() -> int:
        if todo.tags is None:
            sweep_orphans(settings.data_dir, todo.before, settings.metadata, settings.files)
        else:
            sweep_own_writers(settings.data_dir, todo.tags, settings.metadata, settings.files)
        return 0

    return _fork(sweep, "orphan sweep")


def _spawn_dead_writer_sweeper(settings: Settings, dead: dict[str, int]) -> int:
    """The sweep for the orphan blobs of dead workers (writer tag -> pid), in its own process."""

    def sweep() -> int:
        sweep_dead_writers(settings.data_dir, dead, settings.metadata, settings.files)
        return 0

    return _fork(sweep, "orphan sweep after a worker died")


def _pids(dead: dict[str, int]) -> str:
    return ", ".join(str(p) for p in sorted(dead.values()))


def _spawn_scrubber(settings: Settings) -> int:
    """A scheduled integrity scrub in its own process, at low priority: the workers serve meanwhile."""

    def scrub() -> int:
        from tunnelmesh.store import scrub_schedule

        os.nice(10)
        node = settings.node if settings.metadata.uri is not None else None
        return scrub_schedule.run(
            settings.data_dir, settings.scrub_rate, settings.metadata, settings.files, node, settings.scrub_interval
        )

    return _fork(scrub, "scrub")


def _spawn_takeover(settings: Settings) -> int:
    """A look for other nodes silent past s3.node_timeout, and the sweep of their leftovers, in its own
    process (metadata shared by several coordinators only)."""

    def take_over() -> int:
        # a second look three of this node's heartbeat intervals later (the others beat as often, or
        # the same timeout covers three of theirs: silent_writer_tags)
        confirm = 3 * settings.heartbeat_interval
        take_over_silent_nodes(
            settings.data_dir, settings.node, settings.node_timeout, confirm, settings.metadata, settings.files
        )
        return 0

    return _fork(take_over, "takeover of silent nodes")


def _stop_scrubber(pid: int | None) -> None:
    """A scrub only reads; killing it loses nothing (its record says it was cut short)."""
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def version() -> str:
    try:
        return metadata.version("tunnelmesh")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from tunnelmesh import __version__

        return __version__


def answers_healthz(listen: Listen, https: bool) -> bool:
    """Whether a worker answers `GET /healthz` on the main listener (a wildcard address asked on loopback).

    Over TLS the certificate is not checked: this asks our own workers whether they serve, and the
    supervisor has already checked the certificate and key pair (tls.check)."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen.host, listen.host)
    conn: http.client.HTTPConnection
    if https:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, listen.port, timeout=1.0, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, listen.port, timeout=1.0)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def run(settings: Settings) -> int:
    """Start the coordinator and block until it is stopped. Returns the exit code."""
    # everything the coordinator creates (database, WAL, blobs, state files) is its own alone
    os.umask(0o077)
    tls.check(settings)  # before any worker: a bad pair is one line here, not a dead worker per respawn
    check_data_dir(settings.data_dir)
    lock = lock_data_dir(settings.data_dir)
    try:
        # before any process imports prometheus_client: the workers forked below inherit the variable
        with multiproc.prepared(settings):
            return _run_locked(settings)
    finally:
        os.close(lock)


def check_sse_keys(settings: Settings) -> None:
    """SSE-S3 (store/sse.py): the key file must open every encrypted row. A master key id the metadata names
    that the key file lacks (or a key file gone while rows or bucket defaults need one) refuses the start,
    naming what is missing: serving would answer 500 for those objects, and a bucket default would go unmet."""
    from tunnelmesh.store.backends import run_on
    from tunnelmesh.store.sse import KeyFileError, KeyRing

    ring: KeyRing | None = None
    if settings.sse_key_file is not None:
        try:
            ring = KeyRing.load(settings.sse_key_file)
        except KeyFileError as e:
            raise ConfigError(f"s3.sse_key_file: {e}") from None

    async def used(m: Any) -> tuple[dict[str, int], list[str]]:
        return await m.read(lambda r: (r.sse_kids(), [b.name for b in r.buckets() if b.sse_default is not None]))

    kids, defaults = run_on(settings.data_dir, used, settings.metadata)
    missing = sorted(set(kids) - set(ring.keys if ring is not None else ()))
    if missing:
        counts = ", ".join(f"{k} ({kids[k]} rows)" for k in missing)
        where = f"the key file {settings.sse_key_file}" if ring is not None else "no s3.sse_key_file is configured"
        raise ConfigError(f"s3.sse_key_file: encrypted objects use master keys missing here: {counts}; {where}")
    if ring is None and defaults:
        raise ConfigError(
            f"s3.sse_key_file: buckets with default encryption need the key file: {', '.join(sorted(defaults))}"
        )
    if ring is not None:
        # key ids and counts only: never a key
        per_kid = ", ".join(f"{k}: {n}" for k, n in sorted(kids.items())) or "none yet"
        log.info(
            "sse: key file %s, active key %s; encrypted rows per key: %s", settings.sse_key_file, ring.active, per_kid
        )


def _run_locked(settings: Settings) -> int:
    check_ports_free(settings)
    sweep_todo = prepare_data_dir(settings.data_dir, settings.metadata, settings.files)
    check_sse_keys(settings)
    blobs = BlobStore(settings.data_dir, settings.files)
    # the supervisor's own tag is claimed too (it writes records at start-up): no other node may share it
    blobs_mod.set_writer_tag(claim_writer_tags(settings.data_dir, settings.node, 1, settings.metadata)[0])
    token, source = admin_token(settings.data_dir, create=True)
    # once every check that refuses a start has passed: a refused start stays one line on stderr
    log.info("tunnelmesh %s starting", version())
    report_state(settings, token)
    count = settings.workers or (os.cpu_count() or 1)

    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # the supervisor has no threads and no open database here, so forking is safe; the workers
    # share the supervisor's imported code copy-on-write
    # every tag is claimed in the metadata before its worker starts, so it is never given twice, by
    # this supervisor or any other coordinator sharing the metadata: the sweep for a dead worker's tag
    # must never meet the blobs of a live writer
    tags: dict[int, str] = {}  # worker pid -> its writer tag

    started_at = time.time()

    def spawn_worker(tag: str) -> int:
        pid = _spawn_worker(settings, token, tag, started_at)
        tags[pid] = tag
        return pid

    preload_worker_code(sse=settings.sse_key_file is not None)
    first_tags = claim_writer_tags(settings.data_dir, settings.node, count, settings.metadata)
    workers = {spawn_worker(tag) for tag in first_tags}
    log.info("admin credential: access key %r, secret from %s", ADMIN_ACCESS_KEY, source)
    log.info("S3 API at %s://%s/s3 (admin API under /api/)", tls.scheme(settings.tls), settings.listen)
    if settings.s3_listen is not None:
        log.info("S3 API at %s://%s", tls.scheme(settings.s3_tls), settings.s3_listen)
    log.info("%d workers; data in %s, max_size %d bytes", count, settings.data_dir.resolve(), settings.max_size)
    log.info("metadata: %s", settings.metadata.describe(settings.data_dir))  # its password redacted
    # after a crash an orphan sweep runs beside the workers; until it has finished, no stop is
    # clean (the next start must sweep again)
    sweeper = _spawn_sweeper(settings, sweep_todo) if sweep_todo is not None else None
    swept = sweeper is None
    scrub_timer = scrub_schedule.Timer(settings.data_dir, settings.scrub_interval, time.time())
    scrubber: int | None = None
    # on shared metadata, a look for silent nodes every half timeout (a lease makes it one node's at a time)
    shared = settings.metadata.uri is not None
    taker: int | None = None
    next_takeover = time.monotonic() + settings.node_timeout / 2
    # the tags (-> pids) of dead workers whose orphans no sweep has removed yet, and the sweep
    # running for some of them; while any is left, no stop is clean
    unswept: dict[str, int] = {}
    tag_sweeper: tuple[int, dict[str, int]] | None = None

    # systemd (Type=notify) hears READY=1 once a worker answers, not when the processes exist: a unit
    # ordered after this one starts when the coordinator serves
    ready = False
    ready_by = time.monotonic() + READY_TIMEOUT
    code = 0
    died = False  # a dead worker's orphans may be left for the next start's full sweep
    respawns: list[float] = []
    missing = 0  # workers to start again once a writer tag can be claimed (the metadata may be down)
    next_claim = 0.0

    def start_missing() -> None:
        nonlocal missing, next_claim
        try:
            new_tags = claim_writer_tags(settings.data_dir, settings.node, missing, settings.metadata)
        except Exception as e:  # the metadata is down: the supervisor must not die of it, nor log every second
            if not next_claim:
                log.error("cannot claim a writer tag for a new worker (%s); retrying every second", type(e).__name__)
            next_claim = time.monotonic() + 1.0
            return
        if next_claim:
            log.info("writer tags claimed again: starting %d workers", missing)
        missing, next_claim = 0, 0.0
        workers.update(spawn_worker(tag) for tag in new_tags)

    while not stopping:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid, status = 0, 0
        if pid == 0:
            if not ready:
                if answers_healthz(settings.listen, settings.tls is not None):
                    ready = True
                    log.info("ready: /healthz answers on %s", settings.listen)
                    sd_notify("READY=1\nSTATUS=serving")
                elif time.monotonic() >= ready_by:
                    log.error("no worker answered /healthz on %s within %g s; stopping", settings.listen, READY_TIMEOUT)
                    code = 1
                    break
            if scrubber is None and scrub_timer.is_due(time.time()):
                scrubber = _spawn_scrubber(settings)
            if shared and taker is None and time.monotonic() >= next_takeover:
                taker = _spawn_takeover(settings)
            if missing and time.monotonic() >= next_claim:
                start_missing()
            if tag_sweeper is None and unswept:  # one sweep at a time, for all the dead so far
                log.info("orphan sweep after worker %s died started", _pids(unswept))
                tag_sweeper = (_spawn_dead_writer_sweeper(settings, dict(unswept)), dict(unswept))
            time.sleep(0.1)
            continue
        # whichever child it was, its pid is reaped and no new child has it yet: its temporaries
        # (tmp/<pid>/) are garbage now, and no live process's are touched
        blobs.remove_tmp_of(pid)
        if pid == scrubber:
            scrubber = None
            scrub_timer.finished(time.time())
            continue
        if pid == taker:
            taker = None
            next_takeover = time.monotonic() + settings.node_timeout / 2
            continue
        if pid == sweeper:
            swept, sweeper = os.waitstatus_to_exitcode(status) == 0, None
            if swept:  # from here on a stop is clean (tests wait for this line)
                log.info("orphan sweep finished")
            continue
        if tag_sweeper is not None and pid == tag_sweeper[0]:
            done = tag_sweeper[1]
            tag_sweeper = None
            for tag in done:
                unswept.pop(tag, None)
            if os.waitstatus_to_exitcode(status) == 0:  # tests wait for this line
                log.info("orphan sweep after worker %s died finished", _pids(done))
            else:  # not retried (it could fail forever): the next start's full sweep does it
                died = True
            continue
        workers.discard(pid)
        multiproc.mark_dead(pid)
        rc = os.waitstatus_to_exitcode(status)
        # any worker that exits while the others serve may have sealed blobs it never committed:
        # they bear its tag, which a sweep looks for; one killed during a stop leaves them to the
        # next start
        if pid in tags:
            tag = tags.pop(pid)
            if rc != 0 or not stopping:
                unswept[tag] = pid
        if stopping:
            break
        now = time.monotonic()
        # a worker whose tag was retired (heartbeat.RETIRED) is no crash: after an outage of the database
        # longer than s3.node_timeout every worker of the node may stop so, and each gets a new tag
        respawns = [t for t in respawns if now - t < 60] + ([now] if rc != heartbeat.RETIRED else [])
        if rc == 3 or len(respawns) > 5:  # cannot bind, or crashing in a loop: give up
            log.error("a worker exited with code %s; stopping", rc)
            code = 1
            break
        log.error("a worker exited with code %s; starting a new one", rc)
        missing += 1
        if not next_claim:  # else the idle loop retries on its schedule
            start_missing()
    sd_notify("STOPPING=1")
    if sweeper is not None:
        pid, status = os.waitpid(sweeper, os.WNOHANG)
        if pid:
            swept = os.waitstatus_to_exitcode(status) == 0
        else:
            os.kill(sweeper, signal.SIGKILL)
            os.waitpid(sweeper, 0)
            log.info("orphan sweep interrupted; the next start sweeps again")
    if tag_sweeper is not None:
        pid, status = os.waitpid(tag_sweeper[0], os.WNOHANG)
        if not pid:
            os.kill(tag_sweeper[0], signal.SIGKILL)
            os.waitpid(tag_sweeper[0], 0)
            log.info("orphan sweep after worker %s died interrupted", _pids(tag_sweeper[1]))
        elif os.waitstatus_to_exitcode(status) == 0:
            for tag in tag_sweeper[1]:
                unswept.pop(tag, None)
    _stop_scrubber(scrubber)
    _stop_scrubber(taker)  # killing it loses nothing: a sweep interrupted is done again, tags stay unswept
    log.info("draining: %d workers", len(workers))
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    died = died or bool(unswept)
    clean = code == 0 and swept and not died
    while workers and time.monotonic() < deadline:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid:
            workers.discard(pid)
            blobs.remove_tmp_of(pid)
            clean = clean and os.waitstatus_to_exitcode(status) == 0
        else:
            time.sleep(0.05)
    for pid in workers:
        clean = False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if clean:
        # every worker has exited, so nobody reads: the queue's grace is over
        free_all_queued(settings.data_dir, "shutdown", settings.metadata, settings.files)
        retire_own_writers(settings.data_dir, settings.node, settings.metadata)
        mark_clean_shutdown(settings.data_dir)
    elif died:
        log.info("a worker died and its orphan blobs were not swept; the next start sweeps for them")
    log.info("stopped (%s)", "clean" if clean else "unclean")
    return code
