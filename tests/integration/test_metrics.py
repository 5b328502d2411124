"""GET /metrics (docs/operations.md 1.6): who may scrape; counts summed over forked workers and kept across
a worker's death; no unbounded label; the bucket gauges agree with the admin API.

Real coordinator processes with two workers; requests on fresh connections so that both workers serve
some (each worker's request ids start with its own 8-hex-digit prefix, which tells them apart).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import Coordinator, children, start_coordinator, wait_until
from prometheus_client.parser import text_string_to_metric_families
from support.peers import add_peer, s3_client

METRICS_TOKEN = "metrics-token-" + "x" * 24

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (so the kernel may hand it to either worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def basic(c: Coordinator) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{c.token}".encode()).decode()}


def scrape_text(c: Coordinator, headers: dict[str, str] | None = None) -> str:
    status, resp_headers, body = get(c.port, "/metrics", headers or {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert status == 200, body
    assert resp_headers["content-type"].startswith("text/plain; version=")
    return body.decode()


def samples(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(c: Coordinator) -> Samples:
    return samples(scrape_text(c))


def scrape_until(c: Coordinator, what: str, cond: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
    """The first scrape where `cond` holds: a worker writes its request counts to its metric files within
    a second (obs/metrics.py RequestTally), so the other worker's may lag the one answering."""
    deadline = time.monotonic() + timeout
    while not cond(found := scrape(c)):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def requests_total(found: Samples, operation: str, status: str = "200") -> float:
    return value(found, "tunnelmesh_s3_requests_total", operation=operation, status=status)


def put(c: Coordinator, bucket: str, key: str, body: bytes) -> str:
    """A PutObject on a fresh connection; the answering worker's request-id prefix."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
    try:
        conn.request("PUT", f"/s3/{bucket}/{key}", body=body, headers=basic(c))
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, resp.status
        return resp.getheader("x-amz-request-id")[:8]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    tmp = tmp_path_factory.mktemp("metrics")
    c = start_coordinator(tmp, extra_yaml=f"metrics:\n  token: {METRICS_TOKEN}\n  dir: {tmp / 'metrics'}\n")
    yield c
    c.stop()


def test_access_needs_a_credential(coord: Coordinator) -> None:
    status, headers, _ = get(coord.port, "/metrics")
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    before = scrape(coord)
    assert get(coord.port, "/metrics", {"Authorization": "Bearer not-the-metrics-token-at-all"})[0] == 401
    assert get(coord.port, "/metrics", {"Authorization": f"Bearer {coord.token}"})[0] == 200  # the admin's token
    assert get(coord.port, "/metrics", basic(coord))[0] == 200
    peer = add_peer(coord, f"scraper-{uuid.uuid4().hex[:6]}")
    assert get(coord.port, "/metrics", {"Authorization": f"Bearer {peer.token}"})[0] == 403  # not an admin
    after = scrape(coord)
    failed = "tunnelmesh_auth_failures_total"
    assert value(after, failed, reason="metrics_token") == value(before, failed, reason="metrics_token") + 1
    # on the S3 listener /metrics is a bucket's name: an S3 answer, never the metrics
    status, headers, body = get(coord.s3_port, "/metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert b"tunnelmesh_" not in body and headers["content-type"] == "application/xml", (status, body)


def test_public_mode_and_bucket_cap(tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, extra_yaml="metrics:\n  public: true\n  max_bucket_series: 2\n")
    try:
        s3 = c.client()
        names = [f"cap-{i}-{uuid.uuid4().hex[:8]}" for i in range(3)]
        for i, name in enumerate(names):
            s3.create_bucket(Bucket=name)
            s3.put_object(Bucket=name, Key="k", Body=b"x" * (1000 * (i + 1)))
        status, _, body = get(c.port, "/metrics")  # no credential at all
        assert status == 200
        found = samples(body.decode())
        labelled = {dict(k[1])["bucket"] for k in found if k[0] == "tunnelmesh_bucket_used_bytes"}
        assert labelled == {names[2], names[1]}  # the largest two; the system bucket and the smallest go unlabelled
        assert value(found, "tunnelmesh_buckets_unlabelled") == 2
        assert value(found, "tunnelmesh_buckets") == 4
    finally:
        c.stop()


def test_counts_sum_over_workers_and_survive_a_killed_worker(coord: Coordinator) -> None:
    s3 = coord.client()
    bucket = f"sum-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    before = scrape(coord)
    prefixes: set[str] = set()
    n = 0
    while n < 60 or len(prefixes) < 2:
        prefixes.add(put(coord, bucket, f"k{n}", b"abc"))
        n += 1
        assert n < 400, f"every request went to one worker: {prefixes}"
    base = requests_total(before, "PutObject")
    after = scrape_until(coord, f"{n} PutObjects counted", lambda f: requests_total(f, "PutObject") - base >= n)
    assert requests_total(after, "PutObject") - base == n  # each once, whichever worker served it
    received = "tunnelmesh_s3_received_bytes_total"
    assert value(after, received, operation="PutObject") - value(before, received, operation="PutObject") == 3 * n
    # each PUT is one write in some group commit (the groups' sizes add up to the writes, whatever the grouping)
    assert value(after, "tunnelmesh_commit_batch_size_sum") >= value(before, "tunnelmesh_commit_batch_size_sum") + n

    # a worker dies: what it counted stays in the sums, and its replacement adds to them
    metrics_dir = coord.config_path.parent / "metrics"
    victim = children(coord.proc.pid)[0]
    assert (metrics_dir / f"counter_{victim}.db").exists()
    assert (metrics_dir / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    coord.wait_for_log(r"a worker exited with code -9; starting a new one")
    assert (metrics_dir / f"counter_{victim}.db").exists()  # its counts are kept
    assert not (metrics_dir / f"gauge_livesum_{victim}.db").exists()  # its requests in flight are not
    wait_until("two workers again", lambda: len(children(coord.proc.pid)) == 2)
    survived = scrape(coord)
    assert requests_total(survived, "PutObject") == requests_total(after, "PutObject")
    assert value(survived, "tunnelmesh_requests_in_flight") == 0

    new_prefixes: set[str] = set()
    m = 0
    deadline = time.monotonic() + 60
    while not (new_prefixes - prefixes):  # until the new worker has served some
        new_prefixes.add(put(coord, bucket, f"after{m}", b"abcd"))
        m += 1
        assert time.monotonic() < deadline, "the respawned worker served nothing"
    total = requests_total(after, "PutObject") + m
    final = scrape_until(coord, "the new worker's counts", lambda f: requests_total(f, "PutObject") >= total)
    assert requests_total(final, "PutObject") == total


def test_no_label_names_a_key_or_peer(coord: Coordinator) -> None:
    peer = add_peer(coord, f"labels-{uuid.uuid4().hex[:6]}")
    bucket = f"lbl-{uuid.uuid4().hex[:8]}"
    peer.s3.create_bucket(Bucket=bucket)
    keys = [f"secret-key-{uuid.uuid4().hex}", f"dir-{uuid.uuid4().hex[:8]}/nested"]
    for key in keys:
        peer.s3.put_object(Bucket=bucket, Key=key, Body=b"v")
        peer.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with pytest.raises(ClientError):
        peer.s3.get_object(Bucket=bucket, Key="missing-" + uuid.uuid4().hex)
    scrape_until(coord, "the workload counted", lambda f: requests_total(f, "GetObject", "404") >= 1)
    text = scrape_text(coord)
    values = {v for family in text_string_to_metric_families(text) for s in family.samples for v in s.labels.values()}
    forbidden = {peer.id, peer.token, *keys, f"{bucket}/{keys[0]}"}
    assert not values & forbidden, values & forbidden
    assert peer.id not in text and keys[0] not in text


def test_auth_failures_by_reason(coord: Coordinator) -> None:
    before = scrape(coord)
    bucket = f"auth-{uuid.uuid4().hex[:8]}"
    coord.client().create_bucket(Bucket=bucket)
    refusals = [
        (s3_client(coord.endpoint, "admin", "wrong-secret-" + "y" * 20), "signature"),
        (s3_client(coord.endpoint, "no-such-peer-" + uuid.uuid4().hex[:6], "z" * 32), "unknown_key"),
    ]
    for client, _ in refusals:
        with pytest.raises(ClientError):
            client.head_bucket(Bucket=bucket)
    assert get(coord.port, f"/s3/{bucket}", {"Authorization": "Bearer no-such-token-" + "q" * 20})[0] == 403
    url = coord.client().generate_presigned_url("list_objects_v2", Params={"Bucket": bucket}, ExpiresIn=1)
    time.sleep(2.5)  # past the link's expiry (a second, at whole-second precision)
    status, _, body = get(coord.port, url.split(str(coord.port), 1)[1])
    assert status == 403 and b"expired" in body, body
    origin = f"http://127.0.0.1:{coord.port}"
    r = requests.post(f"{origin}/console/login", data={"token": "w" * 43}, headers={"Origin": origin}, timeout=30)
    assert r.status_code == 401
    after = scrape(coord)
    failed = "tunnelmesh_auth_failures_total"
    for reason in ("signature", "unknown_key", "bearer", "expired", "console_signin"):
        assert value(after, failed, reason=reason) == value(before, failed, reason=reason) + 1, reason


def test_bucket_gauges_equal_the_storage_api(coord: Coordinator) -> None:
    s3 = coord.client()
    bucket = f"use-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a", Body=b"a" * 12345)
    s3.put_object(Bucket=bucket, Key="b", Body=b"b" * 678)
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="big")
    s3.upload_part(Bucket=bucket, Key="big", UploadId=mpu["UploadId"], PartNumber=1, Body=b"p" * 1000)
    conn = http.client.HTTPConnection("127.0.0.1", coord.port, timeout=60)
    conn.request(
        "PUT",
        f"/api/buckets/{bucket}/quota",
        body=json.dumps({"quota": 10**6}),
        headers={"Authorization": f"Bearer {coord.token}", "Content-Type": "application/json"},
    )
    assert conn.getresponse().status == 200
    conn.close()
    status, _, body = get(coord.port, "/api/storage", {"Authorization": f"Bearer {coord.token}"})
    assert status == 200
    storage = json.loads(body)
    found = scrape(coord)
    for b in storage["buckets"]:
        assert value(found, "tunnelmesh_bucket_used_bytes", bucket=b["name"]) == b["used"], b
        if b["quota"]:
            assert value(found, "tunnelmesh_bucket_quota_bytes", bucket=b["name"]) == b["quota"], b
    assert value(found, "tunnelmesh_bucket_used_bytes", bucket=bucket) == 12345 + 678
    assert value(found, "tunnelmesh_bucket_quota_bytes", bucket=bucket) == 10**6
    assert value(found, "tunnelmesh_store_used_bytes") == storage["used"]
    assert value(found, "tunnelmesh_store_max_bytes") == storage["max_size"]
    assert value(found, "tunnelmesh_multipart_pending_bytes") == storage["pending_bytes"] >= 1000
    assert value(found, "tunnelmesh_buckets") == len(storage["buckets"])
    admin = "tunnelmesh_admin_requests_total"
    assert value(found, admin, route="storage_status", status="200") >= 1
    assert value(found, admin, route="set_quota", status="200") >= 1


def test_a_previous_runs_files_are_wiped_and_the_dir_is_not_shared(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    stale = shared / "counter_999999.db"  # left by a crashed run: its counts must not be summed into ours
    stale.write_bytes(b"\0" * 64)
    yaml = f"metrics:\n  public: true\n  dir: {shared}\n"
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    first = start_coordinator(tmp_path / "one", extra_yaml=yaml)
    try:
        assert not stale.exists()
        with pytest.raises(RuntimeError) as refused:
            start_coordinator(tmp_path / "two", extra_yaml=yaml)
        assert f"metrics.dir: {shared} is in use by another coordinator" in str(refused.value)
        assert get(first.port, "/metrics")[0] == 200
    finally:
        first.stop()


@pytest.mark.parametrize("kind", ["writable by others", "symlink"])
def test_a_metrics_dir_others_could_plant_files_in_is_refused(tmp_path: Path, kind: str) -> None:
    """Workers write by predictable names (opened following symlinks) and a start deletes every *.db there."""
    real = tmp_path / "real"
    real.mkdir()
    if kind == "symlink":
        named = tmp_path / "link"
        named.symlink_to(real)
    else:
        real.chmod(0o777)
        named = real
    with pytest.raises(RuntimeError) as refused:
        start_coordinator(tmp_path, extra_yaml=f"metrics:\n  dir: {named}\n")
    assert "metrics.dir: " in str(refused.value)


def test_a_damaged_metric_file_is_a_clear_500(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    c = start_coordinator(tmp_path, extra_yaml=f"metrics:\n  public: true\n  dir: {shared}\n")
    try:
        (shared / "counter_999999.db").write_bytes(b"\x10\x00\x00\x00" + b"\xff" * 60)
        status, _, body = get(c.port, "/metrics")
        assert (status, body) == (500, b"metrics unavailable: see the coordinator's log\n")
        c.wait_for_log("metrics: the scrape failed")
    finally:
        c.stop()
