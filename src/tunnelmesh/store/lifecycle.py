"""The lifecycle scanner (docs/data-protection.md section 4): applies the buckets' rules as they fall due.

A pass reads the time index (`lifecycle_due`) for hints due by now, earliest first, in batches, and applies
each in its own commit (commits.apply_hint: re-read, decide under the bucket's current rules, act or move
the hint). Its cost follows what is due, not the size of the store. A bucket whose rules change is walked
once, in batches (backfill cursors in the same index), so versions written before the rules get hints too.

One pass per interval in the mesh: like the stale-upload expiry (store/expiry.py), one worker per node runs
it (an flock), and with several coordinators only the node holding the lease. Every step re-checks what it
acts on in its commit, so two passes at once could never expire a version twice, or one written meanwhile.

`clock` is this module's time: tests replace it (tests/support/clocked_coordinator.py) to see a year pass
without sleeping. No configuration key or flag can shift it, and object lock never reads it: a retention is
checked against the metadata backend's clock (commits.check_removable).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from tunnelmesh.store import duty
from tunnelmesh.store import lifecycle_rules as lc
from tunnelmesh.store.engine import Store
from tunnelmesh.store.errors import Unavailable

log = logging.getLogger("tunnelmesh.store")

clock: Callable[[], float] = time.time

BATCH = 100
BACKFILL_BATCH = 1000
LEASE = "lifecycle"


@dataclass(slots=True)
class PassReport:
    expired: int = 0  # versions expired, delete markers removed, uploads aborted
    later: int = 0  # hints moved to their exact time
    dropped: int = 0  # hints of versions gone or no longer taken by a rule
    walked: int = 0  # rows a backfill looked at
    failed: int = 0  # hints that raised (logged, and moved a day on)


async def run_once(store: Store, stopping: asyncio.Event | None = None) -> PassReport:
    """One pass over everything due by `clock()`; ends early, between two commits, once `stopping` is set."""
    now = clock()
    report = PassReport()
    while hints := await store.due_hints(now, BATCH):
        for hint in hints:
            if stopping is not None and stopping.is_set():
                return report
            try:
                if hint.kind in (lc.BACKFILL, lc.BACKFILL_VERSIONS):
                    report.walked += await store.lifecycle_backfill(hint, BACKFILL_BATCH)
                    continue
                outcome = await store.apply_lifecycle(hint, now, secrets.randbits(32))
            except Unavailable:
                raise
            except Exception:
                # one bucket's bad hint must not stop every other bucket's lifecycle: it waits a day
                log.exception(
                    "lifecycle: %s hint of %s/%s failed; looked at again in a day", hint.kind, hint.bucket, hint.key
                )
                await store.move_hint(hint, now + lc.DAY)
                report.failed += 1
                continue
            if outcome == "expired":
                report.expired += 1
            elif outcome == "later":
                report.later += 1
            else:
                report.dropped += 1
    return report


async def run(store: Store, interval: float, stopping: asyncio.Event, node: str | None = None) -> None:
    """Lifecycle passes every `interval` seconds until `stopping` is set (store/duty.py)."""

    async def work() -> None:
        report = await run_once(store, stopping)
        if report.expired or report.walked:
            log.info("lifecycle: expired %d, walked %d rows of changed rules", report.expired, report.walked)

    lease = duty.Lease(LEASE, node, interval) if node is not None else None
    await duty.run(store, "lifecycle", store.dir.lifecycle_lock, interval, stopping, work, lease)
