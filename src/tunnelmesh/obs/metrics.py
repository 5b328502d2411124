"""The coordinator's Prometheus metrics, in prometheus-client's multiprocess mode (docs/operations.md 1.6).

Each worker writes its counters and histograms to files in $PROMETHEUS_MULTIPROC_DIR (obs/multiproc.py
prepares it in the supervisor); the worker answering a scrape sums every worker's files and adds the
scrape-time store gauges (obs/collector.py). The S3 request counts, the hot path, are tallied in memory and
written within a second (RequestTally); the rare events (auth failures, admin requests, commits) directly.

Labels are bounded sets only: an operation name from the router, an HTTP status, an admin handler's name,
a fixed failure reason. Never a key, bucket, peer, client or request id (buckets appear only at scrape
time, capped).
"""

from __future__ import annotations

import os

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    # the value class is chosen when prometheus_client is imported: without the dir, each worker would
    # count on its own and a scrape would see only the one that answered
    raise RuntimeError("tunnelmesh.obs.metrics needs PROMETHEUS_MULTIPROC_DIR (set by the coordinator's supervisor)")

import asyncio
from bisect import bisect_left
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tunnelmesh.obs.auth_reasons import AUTH_REASONS
from tunnelmesh.obs.collector import StoreCollector, StoreSnapshot
from tunnelmesh.store.engine import Store

# 5 ms to 30 s: a metadata read to a large upload on a slow link
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# the group writer commits at most store.writer.MAX_GROUP (128) writes at once
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

S3_REQUESTS = Counter("tunnelmesh_s3_requests", "S3 requests answered.", ["operation", "status"], registry=None)
S3_DURATION = Histogram(
    "tunnelmesh_s3_request_duration_seconds",
    "S3 request time, from the request head to the last byte handed to the server.",
    ["operation"],
    buckets=DURATION_BUCKETS,
    registry=None,
)
S3_RECEIVED = Counter("tunnelmesh_s3_received_bytes", "S3 request body bytes received.", ["operation"], registry=None)
S3_SENT = Counter("tunnelmesh_s3_sent_bytes", "S3 response body bytes sent.", ["operation"], registry=None)
ADMIN_REQUESTS = Counter(
    "tunnelmesh_admin_requests", "Admin API requests answered.", ["route", "status"], registry=None
)
IN_FLIGHT = Gauge(
    "tunnelmesh_requests_in_flight",
    "S3 requests being served, all workers.",
    multiprocess_mode="livesum",
    registry=None,
)
AUTH_FAILURES = Counter("tunnelmesh_auth_failures", "Refused credentials, by reason.", ["reason"], registry=None)
COMMIT_BATCH = Histogram(
    "tunnelmesh_commit_batch_size",
    "Writes per metadata commit of the group writer (SQLite).",
    buckets=BATCH_BUCKETS,
    registry=None,
)
_auth_children = {reason: AUTH_FAILURES.labels(reason) for reason in AUTH_REASONS}  # each reason shows, at 0
_admin_children: dict[tuple[str, int], Counter] = {}
# how long a worker's S3 counts may wait in memory before they reach its metric files
FLUSH_INTERVAL = 1.0


class RequestTally:
    """The S3 request counts of this worker, added up in memory and written to its metric files at most
    FLUSH_INTERVAL after they change (and before this worker answers a scrape).

    Why not write each request through: every write to a multiprocess value takes a lock, a getpid and an
    mmap store, six of them per request (in flight up and down, count, duration sum and bucket, bytes);
    that cost 9-13 % more server CPU on 4 KiB GETs and HEADs. Here a request costs a dict lookup and a
    few additions. The price: a worker killed outright loses at most its last second of counts (never
    what was written: the sums still never go backwards).

    Touched only on the worker's event loop (asgi.serve and the scrape), so it needs no lock.
    """

    __slots__ = ("active", "_pending", "_scheduled")

    def __init__(self) -> None:
        self.active = 0  # S3 requests being served (the requests_in_flight gauge, at the next flush)
        # (operation, status) -> [count, received, sent, seconds, *duration bucket counts]
        self._pending: dict[tuple[str, int], list[Any]] = {}
        self._scheduled = False

    def begin(self) -> None:
        self.active += 1
        if not self._scheduled:
            self._schedule()

    def end(self, operation: str, status: int, seconds: float, received: int, sent: int) -> None:
        self.active -= 1
        row = self._pending.get((operation, status))
        if row is None:
            row = self._pending[(operation, status)] = [0, 0, 0, 0.0] + [0] * (len(DURATION_BUCKETS) + 1)
        row[0] += 1
        row[1] += received
        row[2] += sent
        row[3] += seconds
        row[4 + bisect_left(DURATION_BUCKETS, seconds)] += 1  # the first bucket whose bound holds it, or +Inf
        if not self._scheduled:
            self._schedule()

    def cut_off(self) -> None:
        """A request ended without an outcome (its client stopped reading): no longer in flight."""
        self.active -= 1
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for (operation, status), row in pending.items():
            count, received, sent, seconds, *buckets = row
            S3_REQUESTS.labels(operation, str(status)).inc(count)
            if received:
                S3_RECEIVED.labels(operation).inc(received)
            else:
                S3_RECEIVED.labels(operation)  # the series exists from the first request, at 0
            if sent:
                S3_SENT.labels(operation).inc(sent)
            else:
                S3_SENT.labels(operation)
            _histogram_add(S3_DURATION.labels(operation), seconds, buckets)
        IN_FLIGHT.set(self.active)


def _histogram_add(child: Histogram, total: float, counts: list[int]) -> None:
    """Many observations at once: what `observe()` does one at a time (prometheus-client 0.26.0 keeps a
    histogram's sum and per-bucket counts in `_sum` and `_buckets`, +Inf last; tests/unit/test_metrics_tally.py
    checks the result against observe's)."""
    child._sum.inc(total)
    for bucket, n in zip(child._buckets, counts, strict=True):
        if n:
            bucket.inc(n)


TALLY = RequestTally()


def admin_request(route: str, status: int) -> None:
    child = _admin_children.get((route, status))
    if child is None:
        child = _admin_children[(route, status)] = ADMIN_REQUESTS.labels(route, str(status))
    child.inc()


def auth_failure(reason: str) -> None:
    _auth_children[reason].inc()


def commit_batch(size: int) -> None:
    COMMIT_BATCH.observe(size)


def _registry(snapshot: StoreSnapshot, max_bucket_series: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(StoreCollector(snapshot, max_bucket_series))
    return registry


async def render(store: Store, max_bucket_series: int) -> bytes:
    """The text exposition of every worker's metrics and the store's gauges. The store is read on the loop;
    the files are read and summed in a thread (they grow with workers and respawns)."""
    TALLY.flush()  # this worker's own counts are current; the others' are at most FLUSH_INTERVAL behind
    snapshot = await StoreSnapshot.read(store)
    return await asyncio.to_thread(lambda: generate_latest(_registry(snapshot, max_bucket_series)))
