"""The Store API: the only door to metadata and blobs.

Reads run inline on the event loop (indexed SQLite lookups take microseconds); writes go to one
writer thread per worker process, which commits them in groups (a commit fsyncs the WAL).

Space is given back by these rules, which hold whichever process dies at whichever instant:

- A blob freed by an overwrite, delete, abort or Complete is queued in `freed_blobs` by the very
  commit that stops referencing it. Every worker reaps the queue (`Store.reap_forever`): it unlinks
  the blobs freed more than UNLINK_GRACE_SECONDS ago (a reader that looked the old version up a
  moment earlier can still open it), then deletes their rows. A crash between the two leaves rows
  for missing files, which the next reap drops. The start-up reaps the whole queue before any
  worker runs, and so does a clean stop after the last worker exited. Blob ids are random and never
  reused, so a queued blob can never be referenced again: a duplicate unlink is harmless.
- A blob sealed but never committed (the process died between the two) is an orphan. Its id ends
  with the writer tag of the process that sealed it (see store/blobs.py), a tag the supervisor
  claims in the metadata for one worker only (`claim_writer_tags`; unique across coordinators).
  When a worker dies while the coordinator runs, the supervisor runs `sweep_dead_writers` for
  its tag beside the other workers: the blobs bearing it that no commit names and that are not
  queued are removed (no live process can ever name them). After a stop that was not clean (the
  supervisor was killed, a worker died and its sweep did not finish, or a previous scan did not
  finish) only a full scan (`sweep_orphans`) finds them; on metadata several coordinators share,
  the sweep of the tags this node had claimed (`sweep_own_writers`), since another live node's
  sealed blobs are unnamed too. A clean stop leaves a marker (`DataDir.clean_shutdown_marker`),
  which lets the next start skip it.
- A temporary (tmp/<pid>/<id>) belongs to one process: the supervisor removes those of a child
  once it has reaped it, and the start-up removes them all.

Data-dir layout: store/datadir.py names every file, and says which are node-local and which
shareable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import math
import os
import random
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import Token
from pathlib import Path
from typing import IO, Any, TypeVar

from tunnelmesh.lanes import Lane
from tunnelmesh.store import commits, content, listing, scrub_schedule, sse
from tunnelmesh.store import scrub as scrub_mod
from tunnelmesh.store.backends import SQLITE, MetaConfig, NodeIdTaken, check_backend, open_meta, run_on
from tunnelmesh.store.blobs import TAG_HEX, Blobs, BlobStore, BlobWriter, new_writer_tag, writer_tag
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.errors import (
    BucketNotEmpty,
    CommitUnknown,
    DamagedObject,
    EncryptionUnavailable,
    NoRoom,
    ObjectLocked,
    ObjectTooLarge,
    Unavailable,
    UpgradePending,
    WriterRetired,
)
from tunnelmesh.store.metadata import MetaBackend, MetaReads, MetaTx
from tunnelmesh.store.records import (
    SYSTEM_BUCKET,
    Bucket,
    CompletedUpload,
    Deleted,
    Freshness,
    Hint,
    Listing,
    NodeState,
    ObjectRecord,
    ObjectRef,
    Part,
    SealedRow,
    Segment,
    Upload,
    WriteConditions,
    WriteResult,
)

log = logging.getLogger("tunnelmesh.store")

T = TypeVar("T")

# long enough for a reader that just looked a blob up to open it (and for granian to open a
# pathsend file); short enough that deleting frees space promptly
UNLINK_GRACE_SECONDS = 5.0
# how often a worker looks for queued blobs past their grace (a few indexed rows when idle)
REAP_INTERVAL_SECONDS = 1.0
REAP_BATCH = 1000
# tests only: the path of a file the orphan sweep waits for before it reads anything, so a test
# can stop the coordinator while the sweep has certainly not finished (and then let it finish)
SWEEP_HOLD_ENV = "TUNNELMESH_TEST_SWEEP_HOLD"
# tests only: a directory; while it holds no file named "release", a worker that has sealed a blob
# writes held-<pid>-<blob id> there and waits before the commit, so a test can kill it at that point
SEALED_HOLD_ENV = "TUNNELMESH_TEST_SEALED_HOLD"


@dataclasses.dataclass(frozen=True)
class StartupSweep:
    """What the orphan sweep after an unclean stop looks at: the blobs sealed before `before`. `tags`
    None is the full scan (SQLite: the data dir's metadata is this node's alone). With metadata shared by
    several coordinators it is the writer tags this node had claimed before this start: another live
    node's sealed but uncommitted blobs are unnamed too, and only the tags tell them apart."""

    before: float
    tags: list[str] | None


def prepare_data_dir(data_dir: Path, meta: MetaConfig = SQLITE, layout: DataDir | None = None) -> StartupSweep | None:
    """Create the layout and remove crash leftovers that would be in the way. Runs once, before
    any worker starts, and takes constant time however many objects are stored.

    This node's temporaries are always removed (another node's, in a shared blob dir, never). Orphan
    blobs (sealed, but never named by a commit) can only exist after a crash; finding them means reading
    every row, so that is left to `sweep_orphans` (or, on shared metadata, `sweep_own_writers`), which
    runs beside the workers. Returns what it must sweep, or None after a clean stop (nothing to sweep).
    """
    files = layout if layout is not None else DataDir(data_dir)
    ident = check_backend(files, meta)  # before anything is opened, swept or written
    blobs = BlobStore(data_dir, files)
    blobs.prepare()
    swept = blobs.sweep_tmp()
    marker = files.clean_shutdown_marker
    had_db = files.meta_db.exists()  # before the first write below creates it
    started = time.time()

    def claim(tx: MetaTx) -> None:
        holder = tx.claim_node(files.node, ident, started)
        if holder != ident:  # two nodes with one id would sweep each other's blobs and temporaries
            raise NodeIdTaken(
                f"node id {files.node!r} belongs to another coordinator's data dir (this one is {files.root}); "
                "give each coordinator its own s3.node_id"
            )
        ensure_system_bucket(tx, started)

    async def start(m: MetaBackend) -> list[str]:
        await m.write(claim)
        # read before this start's workers claim theirs: the sweep must never take a live writer's tag
        return await m.read(lambda r: r.writer_tags(files.node)) if meta.uri is not None else []

    tags = run_on(data_dir, start, meta)
    # a new store has nothing to sweep: on SQLite no database yet; on shared metadata, where no file can
    # tell, this node has never claimed a writer tag (so it never wrote a blob)
    new = not had_db if meta.uri is None else not tags
    clean = marker.exists() or new
    marker.unlink(missing_ok=True)
    if swept:
        log.info("start-up sweep: removed %d temporary files", swept)
    free_all_queued(data_dir, "start-up", meta, files)
    if clean:
        return None
    return StartupSweep(started, None if meta.uri is None else tags)


def ensure_system_bucket(tx: MetaTx, now: float) -> None:
    """The coordinator's own bucket, made at the first start of a store."""
    if tx.lock_bucket(SYSTEM_BUCKET) is None:
        commits.create_bucket(tx, SYSTEM_BUCKET, "coordinator", "", now)


def free_all_queued(data_dir: Path, when: str, meta: MetaConfig = SQLITE, layout: DataDir | None = None) -> int:
    """Unlink every queued freed blob, grace or not: only while no worker runs (nobody reads). With
    metadata shared by several coordinators the other nodes' readers may be reading a blob just freed, so
    there the grace is kept."""
    blobs = BlobStore(data_dir, layout)

    async def free(m: MetaBackend) -> int:
        until = math.inf if meta.uri is None else await m.read(lambda r: r.clock()) - UNLINK_GRACE_SECONDS
        n = 0
        while ids := await m.read(lambda r: r.freed_before(until, REAP_BATCH)):
            blobs.unlink(ids)  # first the files, then the rows: a crash between leaves rows, not files
            await m.write(functools.partial(_forget_freed, ids))
            n += len(ids)
        return n

    n = run_on(data_dir, free, meta)
    if n:
        log.info("%s: freed %d queued blobs", when, n)
    return n


def _named_or_queued(r: MetaReads, tags: Collection[str] | None = None) -> set[str]:
    """The blobs a record names or the freed queue holds (the reapers', after their grace), in one snapshot."""
    return r.referenced_blobs(tags) | set(r.freed_before(math.inf, None))


def sweep_orphans(data_dir: Path, before: float, meta: MetaConfig = SQLITE, layout: DataDir | None = None) -> int:
    """Remove the blobs sealed before `before` that no commit names; returns how many.

    Safe while workers serve: the references are read in one snapshot, and a blob unnamed in it
    that was sealed before this start can never be named later (every write seals new blobs, and
    Complete only names parts that the snapshot already shows).
    """
    _hold(SWEEP_HOLD_ENV)
    refs = run_on(data_dir, lambda m: m.read(_named_or_queued, snapshot=True), meta)
    blobs = BlobStore(data_dir, layout)
    orphans = [b for b in blobs.blob_ids_older_than(before) if b not in refs]
    blobs.unlink(orphans)
    log.info("orphan sweep: removed %d orphan blobs", len(orphans))
    return len(orphans)


def sweep_dead_writers(
    data_dir: Path, dead: dict[str, int], meta: MetaConfig = SQLITE, layout: DataDir | None = None
) -> int:
    """Remove the blobs of dead workers (`dead` maps their writer tags to their pids) that no commit
    names and that are not queued; returns how many (`sweep_tags`)."""
    removed = sweep_tags(data_dir, dead, meta, layout)
    pids = ", ".join(str(p) for p in sorted(dead.values()))
    log.info("orphan sweep after worker %s died: removed %d orphan blobs", pids, removed)
    return removed


def sweep_own_writers(data_dir: Path, tags: Collection[str], meta: MetaConfig, layout: DataDir | None = None) -> int:
    """The orphan sweep after an unclean stop on metadata several coordinators share: the blobs of this
    node's earlier writers (the tags it had claimed before this start; every one of them is gone, as the
    data-dir lock is held), never the full scan, which would take another live node's sealed but
    uncommitted blobs."""
    removed = sweep_tags(data_dir, tags, meta, layout)
    log.info("orphan sweep: removed %d orphan blobs of this node's earlier writers", removed)
    return removed


def sweep_tags(data_dir: Path, tags: Collection[str], meta: MetaConfig = SQLITE, layout: DataDir | None = None) -> int:
    """Remove the blobs bearing these writer tags, whose writers are all dead, that no commit names and
    that are not queued; returns how many.

    Safe while the other workers serve: only the dead process ever had its tag (claimed in the metadata,
    so no other coordinator has it either), and once the tag is retired nothing can commit a new blob of
    it (MetaTx.retire_writer_tags: not even a COMMIT the database was still finishing when the process
    died), so a blob of its that is unnamed now stays unnamed (a Complete names only parts already
    committed). A blob named now may be freed later: then the queue has it, or the reapers have unlinked
    it already. The tags are marked swept at the end: later sweeps of the node pass them over.

    One trap: a process killed after its commit reached the WAL but before SQLite published it
    leaves a transaction no reader sees, which a recovery (a restart after a crash) would bring
    back if no write came after it. So the orphans are first queued as freed, in a commit of this
    process's own, which no later recovery can pass over, and only then unlinked.
    """
    _hold(SWEEP_HOLD_ENV)
    blobs = BlobStore(data_dir, layout)
    wanted = set(tags)

    async def sweep(m: MetaBackend) -> int:
        # retired first: a commit still in flight under one of these tags (its writer killed while the
        # database committed) ends before this does, and none can commit after it, so the snapshot
        # below shows every blob of theirs that will ever be named; and listed after, so that a blob a
        # stalled writer sealed meanwhile is among the candidates (the tags are marked swept at the end)
        await m.write(lambda tx: tx.retire_writer_tags(wanted))
        candidates = list(blobs.blob_ids_tagged(wanted))
        removed = 0
        refs = await m.read(lambda r: _named_or_queued(r, wanted), snapshot=True)
        # a freed blob that a reaper unlinked and forgot since the listing is no orphan: skip it
        orphans = [b for b in candidates if b not in refs and blobs.path(b).exists()]
        if orphans:
            # never read by anyone: no grace (freed at the epoch), reapers may take them at once
            await m.write(lambda tx: tx.queue_freed(orphans, 0.0))
            removed = blobs.unlink(orphans)
            await m.write(functools.partial(_forget_freed, orphans))
        await m.write(lambda tx: tx.tags_swept(wanted))
        return removed

    return run_on(data_dir, sweep, meta) if wanted else 0


def retire_own_writers(data_dir: Path, node: str, meta: MetaConfig = SQLITE) -> None:
    """At a clean stop (every writer of this node exited cleanly, so none left an orphan): this node's
    tags are retired and swept, and the next unclean stop's sweep, or a takeover, passes them over."""

    async def retire(m: MetaBackend) -> None:
        def done(tx: MetaTx) -> None:
            tags = tx.writer_tags(node)
            tx.retire_writer_tags(tags)
            tx.tags_swept(tags)

        await m.write(done)

    run_on(data_dir, retire, meta)


# the lease of the takeover duty: one node at a time looks for silent nodes' leftovers
TAKEOVER = "takeover"
TAKEOVER_LEASE_SECONDS = 600.0


def take_over_silent_nodes(
    data_dir: Path,
    node: str,
    silent_for: float,
    confirm_after: float,
    meta: MetaConfig,
    layout: DataDir | None = None,
) -> int:
    """On metadata several coordinators share: sweep the leftovers of every other node silent for more
    than `silent_for` seconds (no heartbeat): its temporaries and its orphan blobs (`sweep_tags`, which
    retires its writer tags first, so that were it only stalled, nothing it still writes can be
    committed). A node counts as silent only if it still is `confirm_after` seconds after the first look:
    after an outage of the database longer than the timeout, every node looks silent until its next
    beat. Returns how many nodes were taken over. Done by one node at a time (a lease)."""
    files = layout if layout is not None else DataDir(data_dir)

    async def silent_now(m: MetaBackend) -> dict[str, list[str]]:
        found = await m.read(lambda r: r.silent_writer_tags(silent_for))
        found.pop(node, None)  # this node's own earlier writers are its start-up's to sweep
        return found

    async def find(m: MetaBackend) -> dict[str, list[str]]:
        if not await m.write(lambda tx: tx.take_lease(TAKEOVER, node, TAKEOVER_LEASE_SECONDS, 0.0)):
            return {}
        silent = await silent_now(m)
        if silent:
            await asyncio.sleep(confirm_after)
            silent = {other: tags for other, tags in (await silent_now(m)).items() if other in silent}
        if not silent:
            await m.write(lambda tx: tx.finish_lease(TAKEOVER, node))
        return silent

    silent = run_on(data_dir, find, meta)
    for other in sorted(silent):
        # a last look right before its temporaries go: a node that came back during a long sweep of
        # another keeps them (and its new tags, which a fresh claim or beat keeps out of this list)
        tags = run_on(data_dir, silent_now, meta).get(other)
        if not tags:
            continue
        temporaries = files.remove_node_tmp(other)
        removed = sweep_tags(data_dir, tags, meta, files)
        log.warning(
            "takeover: node %s silent for more than %.0f s: retired its %d writer tags, removed %d orphan blobs "
            "and %d temporaries",
            other,
            silent_for,
            len(tags),
            removed,
            temporaries,
        )
    if silent:
        run_on(data_dir, lambda m: m.write(lambda tx: tx.finish_lease(TAKEOVER, node)), meta)
    return len(silent)


def _claim(tag: str, node: str, tx: MetaTx) -> bool:
    return tx.claim_writer_tag(tag, node)


def claim_writer_tags(data_dir: Path, node: str, count: int, meta: MetaConfig = SQLITE) -> list[str]:
    """`count` writer tags claimed for `node` in the metadata, each new to every coordinator that shares
    it (a tag already claimed is drawn again), so no sweep for a dead writer's tag can ever meet a live
    writer's blobs, on this node or another."""

    async def claim(m: MetaBackend) -> list[str]:
        tags: list[str] = []
        while len(tags) < count:
            tag = new_writer_tag()
            if await m.write(functools.partial(_claim, tag, node)):
                tags.append(tag)
        return tags

    return run_on(data_dir, claim, meta)


def _hold(env: str) -> None:
    hold = os.environ.get(env)
    while hold and not os.path.exists(hold):
        time.sleep(0.05)


async def _hold_sealed(blob_id: str) -> None:
    """Tests only (SEALED_HOLD_ENV): wait between a seal and its commit."""
    hold = Path(os.environ[SEALED_HOLD_ENV])
    release = hold / "release"
    if release.exists():
        return
    (hold / f"held-{os.getpid()}-{blob_id}").write_bytes(b"")
    while not release.exists():
        await asyncio.sleep(0.05)


def mark_clean_shutdown(data_dir: Path) -> None:
    DataDir(data_dir).clean_shutdown_marker.write_bytes(b"")


class Store:
    """The one door to metadata and blobs (see the module docstring). `meta` is the metadata backend
    (store/metadata.py), by default the data dir's SQLite database; `blobs` where the bytes are, by
    default the data dir's blobs/ (store/blobs.py)."""

    def __init__(
        self, data_dir: Path, max_size: int, meta: MetaBackend | None = None, blobs: Blobs | None = None
    ) -> None:
        self.data_dir = data_dir
        self.max_size = max_size
        # how often a part still streaming restarts its upload's stale-expiry clock (see store/expiry.py)
        self.upload_refresh = 60.0
        self.dir = DataDir(data_dir)
        # this coordinator's node id (asgi.py sets it): the upgrade gate never waits on its own node
        self.node = ""
        self.blobs: Blobs = blobs if blobs is not None else BlobStore(data_dir)
        self.meta: MetaBackend = meta if meta is not None else open_meta(data_dir)
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="store-io")
        # a commit's outcome was unknown (CommitUnknown): its new blobs were kept, and may be orphans that
        # only a sweep finds, so this process's stop must not count as clean (worker.serve)
        self.unsure = False
        # SSE-S3's master keys (s3.sse_key_file, store/sse.py); None: no key file, no encrypted writes
        self.sse: sse.KeyRing | None = None

    async def _commit(self, fn: Callable[[MetaTx], WriteResult[T]], new_blobs: list[str] | None = None) -> T:
        """A write: its freed blobs are queued in the same transaction (a reaper unlinks them after the
        grace period), and `new_blobs` are discarded if the write fails, when the outcome is known,
        whether or not the request that asked is still waiting."""

        # the writers of the new blobs (this process) must not be retired: a sweep may have deleted them
        tags = {blob_id[-TAG_HEX:] for blob_id in new_blobs} if new_blobs else set()

        expected = commits.EXPECTED_BUCKET.get()

        def run(tx: MetaTx) -> T:
            if tags and tx.hold_writer_tags(tags):
                raise WriterRetired()
            # run where the backend runs it (a writer thread, a pooled connection): the request's incarnation goes along
            bound = commits.EXPECTED_BUCKET.set(expected)
            try:
                result = fn(tx)
            finally:
                commits.EXPECTED_BUCKET.reset(bound)
            if result.freed:
                # stamped by the backend's clock (the database's, where nodes share it: one node's
                # reaper must measure the grace of a blob another node freed on the same clock), when
                # the transaction runs: the grace starts at the commit, not when the write was queued
                tx.queue_freed(result.freed, None)
            return result.value

        def settle(ok: bool, value: object) -> None:
            if not ok and new_blobs:
                self.discard(new_blobs)

        try:
            return await self.meta.write(run, settle if new_blobs else None)
        except CommitUnknown:
            self.unsure = True
            raise

    @staticmethod
    def bind_bucket(bucket: Bucket | None) -> Token[tuple[str, float] | None]:
        """Make this request's writes refuse any incarnation of `bucket` but this one (commits.EXPECTED_BUCKET);
        None: no bucket bound. Returns the token to unbind with (`unbind_bucket`)."""
        return commits.EXPECTED_BUCKET.set(None if bucket is None else (bucket.name, bucket.created))

    @staticmethod
    def unbind_bucket(token: Token[tuple[str, float] | None]) -> None:
        commits.EXPECTED_BUCKET.reset(token)

    async def reap(self, grace: float = UNLINK_GRACE_SECONDS) -> int:
        """Unlink the queued blobs freed more than `grace` seconds ago, then forget them; returns
        how many. Several workers may reap at once: they only unlink unreferenced files twice."""
        loop = asyncio.get_running_loop()
        n = 0
        while ids := await self.meta.read(lambda r: r.freed_before(r.clock() - grace, REAP_BATCH)):
            await loop.run_in_executor(self._io, self.blobs.unlink, ids)
            await self.meta.write(functools.partial(_forget_freed, ids))
            n += len(ids)
            if len(ids) < REAP_BATCH:
                break
        if n:
            log.debug("reaper: freed %d blobs", n)
        return n

    async def reap_forever(self, interval: float = REAP_INTERVAL_SECONDS) -> None:
        """The worker's reaper: runs until cancelled."""
        down = False
        while True:
            # jitter spreads the workers' turns, so they rarely unlink the same batch together
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))
            try:
                await self.reap()
            except Unavailable:
                # one line per outage, not a traceback a second: the requests failing meanwhile say it too
                if not down:
                    log.warning("reaper: the metadata database is unavailable; retrying")
                down = True
                continue
            except Exception:
                log.exception("reaping freed blobs failed")
            if down:
                log.info("reaper: the metadata database is back")
                down = False

    async def beat(self, node: str, listen: str, started_at: float, interval: float) -> bool:
        """This node is alive (a heartbeat); True if this process's writer tag has been retired meanwhile
        (the node was taken over: the process must stop, see WriterRetired)."""
        tag = writer_tag()

        def run(tx: MetaTx) -> bool:
            tx.beat(node, listen, started_at, interval)
            return bool(tx.hold_writer_tags([tag]))

        return await self.meta.write(run)

    async def nodes(self) -> list[NodeState]:
        return await self.meta.read(lambda r: r.nodes())

    async def require_current_nodes(self, feature: str, node_timeout: float) -> None:
        """Raise UpgradePending while a node of an older schema than this code may still write: one that beat
        within `node_timeout`, or one silent that neither stopped cleanly nor was taken over (it still has
        writer tags to sweep). Its overwrite of an object would keep or destroy what `feature` wrote there
        (docs/scale-out.md, "Upgrading a mesh"). Paid only by the writes of such a feature."""
        known = self.meta.release
        for n in await self.nodes():
            # this node runs this code: between its claim and its first beat its row has no release yet
            if (n.release or 0) >= known or n.node == self.node:
                continue
            # live, or silent but not stopped cleanly nor taken over (its writer tags not all swept): a paused
            # or partitioned node of an older release may come back and overwrite in place
            live = n.silent_for is not None and n.silent_for < node_timeout
            if live or await self.meta.read(functools.partial(_has_writer_tags, n.node)):
                raise UpgradePending(feature, n.node, n.release, known)

    async def take_lease(self, duty: str, node: str, ttl: float, every: float) -> bool:
        return await self.meta.write(lambda tx: tx.take_lease(duty, node, ttl, every))

    async def finish_lease(self, duty: str, node: str) -> None:
        await self.meta.write(lambda tx: tx.finish_lease(duty, node))

    def close(self) -> None:
        # queued blobs stay queued: other workers may still read them; the supervisor frees the
        # rest once every worker has exited
        self.meta.close()
        self._io.shutdown(wait=True)
        self.blobs.close()

    # ---- buckets -------------------------------------------------------------------------

    async def bucket(self, name: str) -> Bucket | None:
        return await self.meta.read(lambda r: r.bucket(name))

    async def require_bucket(self, name: str) -> Bucket:
        return await self.meta.read(lambda r: commits.require_bucket(r, name))

    async def buckets(self) -> list[Bucket]:
        return await self.meta.read(lambda r: r.buckets())

    async def freshness(self, keys: Sequence[str], bucket: str | None) -> Freshness:
        """The current ETags of `keys` (of SYSTEM_BUCKET) and `bucket`'s row: the one read by which every request
        checks what its worker cached (MetaReads.freshness)."""
        # not a snapshot read: a write committing between the ETags and the bucket row is the same as the
        # request arriving a moment earlier or later, which no client can tell apart, so the skew is harmless
        etags, row = await self.meta.read(lambda r: r.freshness(keys, bucket))
        return Freshness(etags, row)

    async def create_bucket(self, name: str, owner: str, region: str, object_lock: bool = False) -> None:
        now = time.time()
        await self._commit(lambda tx: commits.create_bucket(tx, name, owner, region, now, object_lock))

    async def delete_bucket(self, name: str, peer: str | None = None) -> None:
        await self._commit(lambda tx: commits.delete_bucket(tx, name, peer))

    async def empty_bucket(self, name: str) -> None:
        """Delete every version (current or not, delete markers too) and abort every upload in a bucket, for
        a forced bucket delete; a version object lock keeps stays, and BucketNotEmpty says how many.

        Not atomic: pages of 1000 versions in key order, each deleted by its version id, then the uploads
        one by one, each in its own commit. A crash part-way leaves the bucket partly emptied in that order
        (every version left is whole); running the forced delete again finishes it. A pass resumes each page
        after the last entry of the one before; another pass follows until one deletes nothing (a resume
        after a null version that is gone skips the rest of its key)."""
        while True:
            locked = deleted = 0
            key_marker: str | None = None
            version_marker: str | None = None
            while True:
                page = await self.list_versions(name, "", "", key_marker, version_marker, 1000)
                if page.entries:
                    entries: list[commits.DeleteEntry] = [
                        (v.key, commits.shown(v.version_id), None) for v in page.entries
                    ]
                    done = await self.delete_objects(name, entries)
                    deleted += sum(isinstance(d, Deleted) for d in done)
                    locked += sum(isinstance(d, ObjectLocked) for d in done)
                if not page.truncated:
                    break
                key_marker, version_marker = page.next_key, page.next_version
            if not deleted:
                break
        while uploads := await self.list_uploads(name, "", "", "", 1000):
            for up in uploads:
                await self.abort_upload(name, up.key, up.upload_id)
        if locked:
            raise BucketNotEmpty(name, locked)

    async def set_versioning(self, name: str, state: str) -> None:
        """`state`: "Enabled" or "Suspended"."""
        await self._commit(lambda tx: commits.set_versioning(tx, name, state))

    async def set_quota(self, name: str, quota: int | None) -> None:
        await self._commit(lambda tx: commits.set_quota(tx, name, quota))

    # ---- blobs ---------------------------------------------------------------------------

    async def ingest(
        self,
        body: AsyncIterator[bytes],
        limit: int,
        room: int | None = None,
        bucket: str = "",
        dek: bytes | None = None,
    ) -> BlobWriter:
        """Stream a body into a new sealed blob. Nothing is visible until a commit names it.

        A body that grows past `limit` is cut off at once (ObjectTooLarge), and so is one that grows
        past `room`, the space left in `bucket` (NoRoom), so a client with no declared length cannot
        fill the disk past a quota before the commit refuses it.

        With `dek` (an object version's data key, SSE-S3) the blob holds the body encrypted (store/sse.py);
        the writer's `plain_size` is the body's size and `md5` the MD5 of the stored bytes (the segment's,
        so a scrub checks them without the key). Limits count the body's bytes.
        """
        cap = limit if room is None else min(limit, room)
        w = self.blobs.writer()
        sealer = sse.Sealer(sse.blob_key(dek, w.blob_id), w.write) if dek is not None else None
        sealing: Future[str] | None = None
        # written (and encrypted) on a thread while the next batch is received (tunnelmesh/lanes.py)
        lane = Lane(w.write if sealer is None else sealer.write)
        try:
            async for chunk in body:
                if w.plain_size + len(chunk) > cap:
                    raise NoRoom(bucket, room) if room is not None and room < limit else ObjectTooLarge(limit)
                w.plain_size += len(chunk)
                await lane.feed(chunk)
            await lane.drain()
            if sealer is not None:
                w.md5 = sealer.finish()
            sealing = self._io.submit(w.seal)
            await asyncio.wrap_future(sealing)
        except BaseException:
            if sealing is None:
                lane.when_idle(w.abort)  # never closes the file under a thread still writing to it
            else:
                # cancelled while a thread seals: it goes on and renames the blob into place, so the
                # blob goes once the seal is over (aborting now would close the fd under the thread)
                sealing.add_done_callback(lambda f: self._drop_unsealed_or_sealed(w, f))
            raise
        if SEALED_HOLD_ENV in os.environ:
            await _hold_sealed(w.blob_id)
        return w

    def _drop_unsealed_or_sealed(self, w: BlobWriter, sealing: Future[str]) -> None:
        if sealing.cancelled():  # never started: the temporary is still open
            w.abort()
        elif sealing.exception() is None:  # sealed, and no commit will ever name it
            self.discard([w.blob_id])
        # a failed seal has removed its temporary itself

    def discard(self, blob_ids: list[str]) -> None:
        self.blobs.unlink(blob_ids)

    def keeps_inline(self, size: int) -> bool:
        """Whether an object of `size` bytes is kept in its metadata row (else in a blob): the one
        place that decides (store/content.py)."""
        return content.keeps_inline(size)

    async def write_bytes(self, data: bytes) -> tuple[bytes | None, list[Segment]]:
        """Where a whole body in memory goes, as (the record's `data`, its `segments`): the bytes
        themselves for a small one, else a new sealed blob that nothing names until a commit does."""
        if content.keeps_inline(len(data)):
            return data, []
        writer = await self.ingest(content.once(data), len(data))
        return None, [Segment(writer.blob_id, len(data), hashlib.md5(data).hexdigest())]

    def open_range(self, rec: ObjectRecord, first: int, length: int) -> content.ByteRange:
        """Bytes [first, first+length) of `rec`, every blob file behind them opened before this
        returns (see store/content.py); the caller closes it. Raises DamagedObject. An encrypted object's
        range is of its plaintext."""
        dek = self.data_key(rec.sse, rec.bucket, rec.key, rec) if rec.sse is not None else None
        return content.open_range(self.blobs, rec, first, length, dek)

    # ---- SSE-S3 (store/sse.py) -----------------------------------------------------------

    def new_data_key(self, bucket: str, key: str) -> tuple[bytes, str]:
        """A new object version's data key and its wrapped form (ObjectRecord.sse, Upload.sse) under the
        active master key. Raises EncryptionUnavailable without a key file."""
        if self.sse is None:
            raise EncryptionUnavailable()
        return self.sse.new_object_key(bucket, key)

    def data_key(self, sealed: str, bucket: str, key: str, rec: ObjectRecord | None = None) -> bytes:
        """The data key a row's `sse` wraps. A key that cannot be had (no key file, a master key missing
        from it, a wrapped key that fails authentication) makes the object unreadable: DamagedObject."""
        try:
            if self.sse is None:
                raise sse.SseError("it is encrypted, and no key file is configured (s3.sse_key_file)")
            return self.sse.unwrap(sealed, bucket, key)
        except sse.SseError as e:
            problem = f"its data key cannot be unwrapped: {e}"
            if rec is None:
                raise DamagedObject(bucket, key, problem) from None
            raise content.damaged(rec, problem) from None

    def encrypt_inline(self, dek: bytes | None, data: bytes) -> bytes:
        """An object kept in its row, as stored: encrypted under `dek`, or as it is (None)."""
        return sse.encrypt_inline(dek, data) if dek is not None else data

    async def sse_kids(self) -> dict[str, int]:
        return await self.meta.read(lambda r: r.sse_kids())

    async def rewrap(self, kid: str, limit: int) -> tuple[int, int]:
        """Wrap under the active master key the data keys of up to `limit` rows master key `kid` wraps (metadata
        only: the data keys, and so the blobs, stay as they are). Returns (rows found, rows re-wrapped): a row
        overwritten meanwhile keeps its new key, and one whose key does not unwrap is left as it is (logged)."""
        ring = self.sse
        if ring is None or kid == ring.active:
            return 0, 0
        rows = await self.meta.read(lambda r: r.sealed_rows(kid, limit))
        changes: list[tuple[SealedRow, str]] = []
        for row in rows:
            try:
                changes.append((row, ring.rewrap(row.sse, row.bucket, row.key)))
            except sse.SseError as e:
                log.warning("sse-rewrap: %r in %s: %s; left under key %s", f"{row.bucket}/{row.key}", row.table, e, kid)

        def run(tx: MetaTx) -> int:
            return sum(tx.reseal(row, sealed, ring.active) for row, sealed in changes)

        return len(rows), (await self.meta.write(run) if changes else 0)

    async def read_all(self, rec: ObjectRecord) -> bytes:
        """The whole content of a small object (coordinator records). The blob reads run inline: the
        objects read this way are small. Raises DamagedObject."""
        byte_range = self.open_range(rec, 0, rec.size)
        try:
            return b"".join([chunk async for chunk in byte_range.chunks()])
        finally:
            byte_range.close()

    async def verify_usage(self) -> list[dict[str, object]]:
        """Recount every bucket from its version and part records, in one snapshot, against its counters."""
        buckets, counted = await self.meta.read(lambda r: (r.buckets(), r.count_usage()), snapshot=True)
        report: list[dict[str, object]] = []
        for b in buckets:
            used, objects, mpu_used, nc_used, nc_objects = counted.get(b.name, (0, 0, 0, 0, 0))
            report.append(
                {
                    "bucket": b.name,
                    "used": b.used,
                    "objects": b.objects,
                    "multipart_used": b.mpu_used,
                    "noncurrent_used": b.nc_used,
                    "noncurrent_objects": b.nc_objects,
                    "counted_used": used,
                    "counted_objects": objects,
                    "counted_multipart_used": mpu_used,
                    "counted_noncurrent_used": nc_used,
                    "counted_noncurrent_objects": nc_objects,
                    "ok": (b.used, b.objects, b.mpu_used, b.nc_used, b.nc_objects)
                    == (used, objects, mpu_used, nc_used, nc_objects),
                }
            )
        return report

    # ---- the store as a whole (what the admin API's storage and backup endpoints ask) -------

    def disk_free(self) -> int:
        return self.blobs.disk_free()

    def scrub_status(self) -> dict[str, Any]:
        return scrub_schedule.status(self.data_dir)

    async def scrub(self, repair: bool) -> scrub_mod.ScrubReport:
        """Re-hash every object now (the hashing off the event loop); with `repair`, drop the versions found
        rotten (only those: an object overwritten since the scrub read it is new and good)."""
        report = await scrub_mod.scrub(self.meta, self.blobs, self.dir.quarantine, repair)
        if repair:
            for rot in report.rotten:
                rot.outcome = await self.delete_object_version(rot.bucket, rot.key, rot.seq, rot.blobs)
        return report

    @property
    def spool_dir(self) -> Path:
        """Where this process may keep a large temporary file (an archive on its way in or out)."""
        return self.blobs.tmp_dir

    def spool(self) -> IO[bytes]:
        return tempfile.TemporaryFile(dir=self.spool_dir)

    async def store_used(self) -> int:
        return await self.meta.read(lambda r: r.store_used())

    async def admit_object(self, bucket: str, key: str, size: int | None) -> int:
        """An early, advisory quota check of a write of `size` bytes (None: not declared) to `key`,
        before its body is read; the commit re-checks exactly. Refuses a size that does not fit
        (QuotaExceeded) and answers how many bytes the write may take: the bound for a body of
        undeclared length. The bytes the write frees count as room (commits.put_frees)."""

        def replaced(r: MetaReads, b: Bucket) -> int:
            return commits.put_frees(r, b, key)

        return await self._admit(bucket, size, replaced)

    async def admit_part(self, bucket: str, upload_id: str, number: int, size: int | None) -> int:
        """As admit_object, for part `number` of an upload: the part it replaces counts as room."""

        def replaced(r: MetaReads, b: Bucket) -> int:
            return next((p.size for p in r.parts(upload_id, number - 1, 1) if p.part_number == number), 0)

        return await self._admit(bucket, size, replaced)

    async def _admit(self, bucket: str, size: int | None, replaced: Callable[[MetaReads, Bucket], int]) -> int:
        # The bucket's usage, the store's and the replaced size are read in one snapshot: read apart,
        # an overwrite committed between two of the reads is counted twice and refuses a write that fits.
        def read(r: MetaReads) -> tuple[Bucket, int, int]:
            b = commits.require_bucket(r, bucket)
            return b, replaced(r, b), r.store_used()

        b, credit, store_used = await self.meta.read(read, snapshot=True)
        if size is not None:
            commits.admit(b, size - credit, store_used, self.max_size)
        return commits.room(b, store_used, self.max_size) + credit

    # ---- objects -------------------------------------------------------------------------

    async def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        return await self.meta.read(lambda r: r.get_object(bucket, key))

    async def object_ref(self, bucket: str, key: str) -> ObjectRef | None:
        """An object's size, ETag, mtime and blobs: cheaper than the whole record (nothing decoded for
        an inline object), for a caller that only checks which version is there."""
        return await self.meta.read(lambda r: r.object_ref(bucket, key))

    async def get_version(self, bucket: str, key: str, version_id: str) -> ObjectRecord:
        """Version `version_id` ("null" for the null version) of the key, current or not, a delete marker
        included (`marker` set). Raises NoSuchVersion (NoSuchBucket)."""
        return await self.meta.read(lambda r: commits.version_record(r, bucket, key, version_id))

    async def current_marker(self, bucket: str, key: str) -> str | None:
        """The version id, as S3 shows it, of the delete marker that is the key's current version, if one is
        (a key with no current object); None otherwise."""
        ref = await self.meta.read(lambda r: r.newest_version_ref(bucket, key))
        return commits.shown(ref.version_id) if ref is not None and ref.marker else None

    async def put_object(self, rec: ObjectRecord, cond: WriteConditions) -> str | None:
        """Returns the new version's id; None for a null version (a bucket never versioned, or suspended)."""
        new_blobs = [s.blob for s in rec.segments]
        # the random part of a version id is drawn by the commit, only in a versioned bucket: on the event loop,
        # os.urandom let go of the GIL, which the writer thread took, on every PUT (py-spy: a third of this method)
        return await self._commit(lambda tx: commits.put_object(tx, rec, cond, self.max_size, None), new_blobs)

    async def set_object_tags(
        self, bucket: str, key: str, version_id: str | None, tags: dict[str, str] | None
    ) -> str | None:
        """Set the tags of a version (None: the current one); returns its id as S3 shows it (None in a bucket
        never versioned)."""
        return await self._commit(lambda tx: commits.set_object_tags(tx, bucket, key, version_id, tags))

    async def set_bucket_tags(self, name: str, tags: str | None) -> None:
        await self._commit(lambda tx: commits.set_bucket_tags(tx, name, tags))

    async def set_bucket_encryption(self, name: str, algorithm: str | None) -> None:
        await self._commit(lambda tx: commits.set_bucket_encryption(tx, name, algorithm))

    async def delete_objects(
        self, bucket: str, entries: list[commits.DeleteEntry], owner: str = "", bypass: bool = False
    ) -> list[commits.DeleteOutcome]:
        """Delete each (key, version id or None, If-Match ETag or None); answers, per entry, what was done or
        why it was left alone (commits.delete_objects). A delete marker made is `owner`'s; `bypass` passes
        GOVERNANCE retentions (an admin's x-amz-bypass-governance-retention)."""
        now, rand = time.time(), secrets.randbits(32)
        return await self._commit(lambda tx: commits.delete_objects(tx, bucket, entries, owner, now, rand, bypass))

    async def set_lock_config(self, name: str, default: str | None) -> None:
        await self._commit(lambda tx: commits.set_lock_config(tx, name, default))

    async def set_retention(
        self, bucket: str, key: str, version_id: str | None, retention: tuple[str, float] | None, bypass: bool
    ) -> str:
        """Returns the version's id as S3 shows it."""
        return await self._commit(lambda tx: commits.set_retention(tx, bucket, key, version_id, retention, bypass))

    async def set_legal_hold(self, bucket: str, key: str, version_id: str | None, on: bool) -> str:
        return await self._commit(lambda tx: commits.set_legal_hold(tx, bucket, key, version_id, on))

    async def delete_object_version(self, bucket: str, key: str, seq: int, blobs: list[str]) -> str:
        return await self._commit(lambda tx: commits.delete_object_version(tx, bucket, key, seq, blobs))

    async def replace_bucket(self, bucket: str, records: list[ObjectRecord]) -> None:
        """One commit that leaves `bucket` holding exactly `records` (their blobs already ingested)."""
        new_blobs = [s.blob for rec in records for s in rec.segments]
        await self._commit(lambda tx: commits.replace_bucket(tx, bucket, records), new_blobs)

    async def list_objects(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        after: str | None,
        after_is_prefix: bool,
        max_keys: int,
    ) -> Listing:
        return await self.meta.read(
            lambda r: listing.list_objects(r, bucket, prefix, delimiter, after, after_is_prefix, max_keys),
            snapshot=bool(delimiter),
        )

    async def list_versions(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str | None,
        version_marker: str | None,
        max_keys: int,
    ) -> listing.VersionListing:
        # one snapshot: a write between the page's reads of the two tables could show a version twice, or never
        return await self.meta.read(
            lambda r: listing.list_versions(r, bucket, prefix, delimiter, key_marker, version_marker, max_keys),
            snapshot=True,
        )

    # ---- lifecycle (store/lifecycle.py) ----------------------------------------------------

    async def set_lifecycle(self, name: str, doc: str | None) -> None:
        """Replace (None: remove) the bucket's lifecycle rules (store/lifecycle_rules.py's JSON)."""
        now = time.time()
        await self._commit(lambda tx: commits.set_lifecycle(tx, name, doc, now))

    async def due_hints(self, before: float, limit: int) -> list[Hint]:
        return await self.meta.read(lambda r: r.due_hints(before, limit))

    async def apply_lifecycle(self, hint: Hint, now: float, rand: int) -> str:
        return await self._commit(lambda tx: commits.apply_hint(tx, hint, now, rand))

    async def lifecycle_backfill(self, hint: Hint, batch: int) -> int:
        return await self._commit(lambda tx: commits.backfill(tx, hint, batch))

    async def move_hint(self, hint: Hint, at: float) -> None:
        await self.meta.write(lambda tx: tx.put_hint(dataclasses.replace(hint, at=at)))

    # ---- multipart -----------------------------------------------------------------------

    async def create_upload(self, up: Upload) -> None:
        await self._commit(lambda tx: commits.create_upload(tx, up))

    async def require_upload(self, bucket: str, key: str, upload_id: str) -> Upload:
        return await self.meta.read(lambda r: commits.require_upload(r, bucket, key, upload_id))

    async def put_part(self, bucket: str, key: str, upload_id: str, part: Part) -> None:
        await self._commit(lambda tx: commits.put_part(tx, bucket, key, upload_id, part, self.max_size), [part.blob])

    async def upload_last_active(self, upload_id: str) -> float | None:
        return await self.meta.read(lambda r: r.upload_last_active(upload_id))

    async def touch_upload(self, upload_id: str) -> bool:
        now = time.time()
        return await self._commit(lambda tx: commits.touch_upload(tx, upload_id, now))

    async def parts(self, upload_id: str, after: int = 0, limit: int = 10001) -> list[Part]:
        return await self.meta.read(lambda r: r.parts(upload_id, after, limit))

    async def list_uploads(
        self, bucket: str, prefix: str, key_marker: str, upload_id_marker: str, limit: int
    ) -> list[Upload]:
        return await self.meta.read(lambda r: r.list_uploads(bucket, prefix, key_marker, upload_id_marker, limit))

    async def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self._commit(lambda tx: commits.abort_upload(tx, bucket, key, upload_id))

    async def pending_uploads(self) -> dict[str, int]:
        return await self.meta.read(lambda r: r.pending_uploads())

    async def stale_uploads(self, cutoff: float, limit: int) -> list[Upload]:
        return await self.meta.read(lambda r: r.stale_uploads(cutoff, limit))

    async def expire_upload(self, upload_id: str, cutoff: float) -> int | None:
        """Abort an upload if, under the commit, it is still idle since `cutoff`: the bytes freed,
        or None if it was kept (a part arrived meanwhile) or is already gone."""
        return await self._commit(lambda tx: commits.expire_upload(tx, upload_id, cutoff))

    async def completed_upload(self, bucket: str, key: str, upload_id: str) -> CompletedUpload | None:
        return await self.meta.read(lambda r: r.completed_upload(bucket, key, upload_id))

    async def complete_upload(
        self,
        upload_id: str,
        rec: ObjectRecord,
        used_parts: list[int],
        parts_sig: str,
        cond: WriteConditions,
    ) -> str | None:
        """Returns the version id as put_object does."""
        rand = secrets.randbits(32)
        return await self._commit(
            lambda tx: commits.complete_upload(tx, upload_id, rec, used_parts, parts_sig, cond, self.max_size, rand)
        )


def _has_writer_tags(node: str, r: MetaReads) -> bool:
    return bool(r.writer_tags(node))


def _forget_freed(blob_ids: list[str], tx: MetaTx) -> None:
    tx.forget_freed(blob_ids)
