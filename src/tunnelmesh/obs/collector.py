"""Scrape-time gauges read from the store's metadata: the same values whichever worker answers the scrape,
where per-process gauges would disagree (docs/operations.md 1.6)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tunnelmesh import __version__
from tunnelmesh.store import scrub_schedule
from tunnelmesh.store.engine import Store
from tunnelmesh.store.records import Bucket


@dataclass(frozen=True)
class StoreSnapshot:
    """What one scrape reads from the store (on the event loop), for the collector to render (in a thread)."""

    buckets: list[Bucket]
    store_used: int
    max_size: int
    scrub: scrub_schedule.ScrubState | None

    @classmethod
    async def read(cls, store: Store) -> StoreSnapshot:
        return cls(
            await store.buckets(),
            await store.store_used(),
            store.max_size,
            scrub_schedule.load(store.data_dir),
        )


class StoreCollector(Collector):
    """Bucket usage and quota (at most `max_series` buckets labelled, the largest), store size and limit,
    multipart bytes pending, the last scrub's result, and the build."""

    def __init__(self, snapshot: StoreSnapshot, max_series: int) -> None:
        self.snapshot = snapshot
        self.max_series = max_series

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        build = GaugeMetricFamily("tunnelmesh_build_info", "The running version (always 1).", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        yield GaugeMetricFamily(
            "tunnelmesh_store_used_bytes", "Bytes stored, counted against max_size.", value=snap.store_used
        )
        yield GaugeMetricFamily("tunnelmesh_store_max_bytes", "The store's max_size.", value=snap.max_size)
        yield GaugeMetricFamily(
            "tunnelmesh_multipart_pending_bytes",
            "Bytes held by unfinished multipart uploads.",
            value=sum(b.mpu_used for b in snap.buckets),
        )
        # the largest buckets are the ones worth a series each; ties by name, so the set is stable
        ranked = sorted(snap.buckets, key=lambda b: (-b.used, b.name))
        labelled, rest = ranked[: self.max_series], ranked[self.max_series :]
        used = GaugeMetricFamily(
            "tunnelmesh_bucket_used_bytes",
            "Bytes a bucket holds, every version (what its quota counts).",
            labels=["bucket"],
        )
        quota = GaugeMetricFamily(
            "tunnelmesh_bucket_quota_bytes", "A bucket's quota, where it has one.", labels=["bucket"]
        )
        for b in labelled:
            used.add_metric([b.name], b.used)
            if b.quota:
                quota.add_metric([b.name], b.quota)
        yield used
        yield quota
        yield GaugeMetricFamily(
            "tunnelmesh_buckets",
            "Buckets in the store.",
            value=len(snap.buckets),
        )
        yield GaugeMetricFamily(
            "tunnelmesh_buckets_unlabelled",
            "Buckets beyond metrics.max_bucket_series, with no series of their own.",
            value=len(rest),
        )
        scrub = snap.scrub
        yield GaugeMetricFamily(
            "tunnelmesh_scrub_last_run_timestamp_seconds",
            "When the last scrub finished (0: never).",
            value=(scrub.last_finished if scrub and scrub.last_finished else 0),
        )
        objects = GaugeMetricFamily(
            "tunnelmesh_scrub_last_objects", "Objects the last finished scrub checked, by result.", labels=["result"]
        )
        rotten = scrub.rotten_count if scrub else 0
        objects.add_metric(["ok"], (scrub.objects if scrub else 0) - rotten)
        objects.add_metric(["rotten"], rotten)
        yield objects
