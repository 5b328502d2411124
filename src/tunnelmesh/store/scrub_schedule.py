"""The background integrity scrub: when it is due, the run itself, and the record of the last one.

The supervisor (one per data dir) forks the scrubber when it is due, so there is one per
coordinator; coordinators sharing one store scrub it once per interval between them (a lease). It
re-hashes every object at `s3.scrub_rate` bytes per second at most and reports what rotted; it
repairs nothing (deleting data is the operator's call: `tunnelmesh storage scrub --repair`). When
it last ran and what it found live in `<data_dir>/scrub-state.json`, node-local, so a restart
neither scrubs again at once nor postpones the scrub for ever. A scrub cut short (a stop, a crash)
is retried an hour later (or one interval, if shorter).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunnelmesh.store import scrub
from tunnelmesh.store.backends import SQLITE, MetaConfig, run_on
from tunnelmesh.store.blobs import BlobStore
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.metadata import MetaTx

log = logging.getLogger("tunnelmesh.scrub")

RETRY_AFTER_INTERRUPTION = 3600.0
MAX_RECORDED_ROT = 1000  # keys kept in the state file (and the status API); the count is always exact
MAX_LOGGED_ROT = 100


@dataclass
class ScrubState:
    first_seen: float  # when scheduling began on this data dir: the first scrub is one interval later
    last_started: float | None = None
    last_finished: float | None = None
    # a scheduled scrub left to another coordinator sharing the store (it held the lease, or had just
    # scrubbed): the next is one interval later, as after a scrub of this node's own
    last_skipped: float | None = None
    # the result of the last finished scrub
    objects: int = 0
    bytes: int = 0
    rotten_count: int = 0
    rotten: list[dict[str, str]] = field(default_factory=list)

    @property
    def interrupted(self) -> bool:
        return self.last_started is not None and (self.last_finished is None or self.last_finished < self.last_started)


def load(data_dir: Path) -> ScrubState | None:
    try:
        raw = json.loads(DataDir(data_dir).scrub_state.read_text())
        return ScrubState(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:  # damaged: start the schedule afresh rather than never scrub
        log.warning("scrub: ignoring unreadable %s (%s)", DataDir(data_dir).scrub_state, e)
        return None


def save(data_dir: Path, state: ScrubState) -> None:
    """Atomically: a reader (the status API, the supervisor) sees the old record or the new one."""
    files = DataDir(data_dir)
    path = files.scrub_state
    tmp = files.replacement(path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(asdict(state), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def next_due(state: ScrubState, interval: float, now: float) -> float:
    """When the next scrub starts (a time in the past: now)."""
    if state.interrupted:
        return now + min(interval, RETRY_AFTER_INTERRUPTION)
    since = max(t for t in (state.first_seen, state.last_finished, state.last_skipped) if t is not None)
    return since + interval


class Timer:
    """The supervisor's view: whether a scrub is due. `interval` 0 disables scheduled scrubs."""

    def __init__(self, data_dir: Path, interval: float, now: float) -> None:
        self.data_dir = data_dir
        self.interval = interval
        self.due: float | None = None
        if interval > 0:
            state = load(data_dir)
            if state is None:
                state = ScrubState(first_seen=now)
                save(data_dir, state)
            self.due = next_due(state, interval, now)

    def is_due(self, now: float) -> bool:
        return self.due is not None and now >= self.due

    def finished(self, now: float) -> None:
        """The scrubber exited (done, failed or killed): schedule the next one from its record."""
        state = load(self.data_dir) or ScrubState(first_seen=now)
        self.due = next_due(state, self.interval, now)


# the lease of the scrub duty on metadata several coordinators share: one scrub per interval per mesh
LEASE = "scrub"


def run(
    data_dir: Path,
    rate: int,
    meta: MetaConfig = SQLITE,
    layout: DataDir | None = None,
    node: str | None = None,
    interval: float = 0.0,
) -> int:
    """One scheduled scrub (in the scrubber process). Returns the exit code: 0, also when it found rot.
    `node`: this node's id where several coordinators share the store (they all read the same objects):
    it scrubs only if it takes the mesh's lease, and no node scrubbed within 0.9 `interval`."""
    started = time.time()
    state = load(data_dir) or ScrubState(first_seen=started)
    earlier = state.last_started
    # recorded before anything can fail (the lease needs the database): a failure is then an interrupted
    # scrub, retried an hour later, not one still due that the supervisor would start again at once
    state.last_started = started
    save(data_dir, state)
    if node is not None and not run_on(data_dir, lambda m: m.write(lambda tx: _take(tx, node, interval)), meta):
        state.last_started, state.last_skipped = earlier, started
        save(data_dir, state)
        log.info("scrub: left to another coordinator (it is scrubbing the shared store, or has just done so)")
        return 0
    log.info("scrub: started, reading at most %d bytes/s", rate)
    blobs = BlobStore(data_dir, layout)
    quarantine = DataDir(data_dir).quarantine
    report = run_on(data_dir, lambda m: scrub.scrub(m, blobs, quarantine, repair=False, rate=rate), meta)
    state.last_finished = time.time()
    state.objects, state.bytes, state.rotten_count = report.objects, report.bytes, len(report.rotten)
    state.rotten = [{"bucket": r.bucket, "key": r.key, "problem": r.problem} for r in report.rotten][:MAX_RECORDED_ROT]
    save(data_dir, state)
    if node is not None:
        run_on(data_dir, lambda m: m.write(lambda tx: tx.finish_lease(LEASE, node)), meta)
    summary = f"scrub: {report.objects} objects, {report.bytes} bytes verified, {len(report.rotten)} rotten"
    if report.rotten:
        # repr: keys are client data, and a line break in one must not forge a log line
        names = ", ".join(f"{f'{r.bucket}/{r.key}'!r} ({r.problem})" for r in report.rotten[:MAX_LOGGED_ROT])
        more = len(report.rotten) - MAX_LOGGED_ROT
        log.error("%s: %s%s", summary, names, f", and {more} more" if more > 0 else "")
    else:
        log.info("%s, in %.1f s", summary, state.last_finished - started)
    return 0


def _take(tx: MetaTx, node: str, interval: float) -> bool:
    # held for an interval: a node that dies scrubbing holds the duty back one interval at most
    return tx.take_lease(LEASE, node, max(interval, RETRY_AFTER_INTERRUPTION), interval * 0.9)


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def status(data_dir: Path) -> dict[str, Any]:
    """The `scrub` field of GET /api/storage."""
    state = load(data_dir) or ScrubState(first_seen=0.0)
    return {
        "last_started": _iso(state.last_started),
        "last_finished": _iso(state.last_finished),
        "running_or_interrupted": state.interrupted,
        "objects": state.objects,
        "bytes": state.bytes,
        "rotten_count": state.rotten_count,
        "rotten": state.rotten,
    }
