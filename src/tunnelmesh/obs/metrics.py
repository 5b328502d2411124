"""The coordinator's Prometheus metrics, in prometheus-client's multiprocess mode (docs/operations.md 1.6).

Each worker writes its counters and histograms to files in $PROMETHEUS_MULTIPROC_DIR (obs/multiproc.py
prepares it in the supervisor); the worker answering a scrape sums every worker's files and adds the
scrape-time store gauges (obs/collector.py).

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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tunnelmesh.obs.collector import StoreCollector, StoreSnapshot
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request
from tunnelmesh.store.engine import Store

AUTH_REASONS = ("signature", "unknown_key", "expired", "bearer", "console_signin", "metrics_token")
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

# the per-request path: one dict lookup instead of labels()' lock and tuple building on every request
_s3_children: dict[tuple[str, int], tuple[Counter, Histogram, Counter, Counter]] = {}
_admin_children: dict[tuple[str, int], Counter] = {}


def s3_request(operation: str, status: int, seconds: float, received: int, sent: int) -> None:
    children = _s3_children.get((operation, status))
    if children is None:
        children = _s3_children[(operation, status)] = (
            S3_REQUESTS.labels(operation, str(status)),
            S3_DURATION.labels(operation),
            S3_RECEIVED.labels(operation),
            S3_SENT.labels(operation),
        )
    requests, duration, rx, tx = children
    requests.inc()
    duration.observe(seconds)
    if received:
        rx.inc(received)
    if sent:
        tx.inc(sent)


def admin_request(route: str, status: int) -> None:
    child = _admin_children.get((route, status))
    if child is None:
        child = _admin_children[(route, status)] = ADMIN_REQUESTS.labels(route, str(status))
    child.inc()


def auth_failure(reason: str) -> None:
    _auth_children[reason].inc()


def failed_auth(req: Request, err: S3Error | None) -> str | None:
    """The reason a request's credential was refused, or None if it was not (or not for a credential: a
    malformed header, an anonymous refusal or an authorization denial are not failed sign-ins)."""
    if err is None:
        return None
    if err.code == "SignatureDoesNotMatch":
        return "signature"
    if err.code == "InvalidAccessKeyId":
        return "unknown_key"
    if err.code == "AccessDenied":
        if "Expires" in err.fields:
            return "expired"
        scheme = req.header("authorization").split(" ", 1)[0].lower()
        if req.principal is None and scheme in ("bearer", "basic"):  # the peer token itself, refused
            return "bearer"
    return None


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
    snapshot = await StoreSnapshot.read(store)
    return await asyncio.to_thread(lambda: generate_latest(_registry(snapshot, max_bucket_series)))
