"""The worker's in-memory S3 request tally (obs/metrics.py RequestTally) writes what observing each request
one at a time would have: the same counts, bytes, duration sum and buckets. It reaches into
prometheus-client's histogram internals, so this is the test that an upgrade changing them fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, json
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from tunnelmesh.obs import metrics

durations = [0.001, 0.005, 0.0051, 0.3, 2.0, 29.0, 31.0, 100.0]

async def main():
    t = metrics.TALLY
    for i, d in enumerate(durations):
        t.begin()
        t.end("GetObject", 200 if i % 2 else 404, d, i, 10 * i)
    t.begin()  # one still in flight
    t.flush()

asyncio.run(main())
reference = Histogram("reference_seconds", "", ["operation"], buckets=metrics.DURATION_BUCKETS, registry=None)
for d in durations:
    reference.labels("GetObject").observe(d)
registry = CollectorRegistry()
MultiProcessCollector(registry)
out = {}
for family in registry.collect():
    for s in family.samples:
        labels = {k: v for k, v in s.labels.items() if k != "operation"}
        out[s.name + json.dumps(labels, sort_keys=True)] = s.value
print(json.dumps(out))
"""


def test_tally_writes_what_observing_each_request_would(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out['tunnelmesh_s3_requests_total{"status": "200"}'] == 4
    assert out['tunnelmesh_s3_requests_total{"status": "404"}'] == 4
    assert out["tunnelmesh_s3_received_bytes_total{}"] == sum(range(8))
    assert out["tunnelmesh_s3_sent_bytes_total{}"] == 10 * sum(range(8))
    assert out["tunnelmesh_requests_in_flight{}"] == 1
    ours = {k.removeprefix("tunnelmesh_s3_request_duration_seconds"): v for k, v in out.items() if "duration" in k}
    reference = {k.removeprefix("reference_seconds"): v for k, v in out.items() if k.startswith("reference_seconds")}
    assert ours == reference and len(ours) == 15 and '_bucket{"le": "+Inf"}' in ours, (ours, reference)
    assert ours['_bucket{"le": "0.005"}'] == 2 and ours['_bucket{"le": "30.0"}'] == 6
