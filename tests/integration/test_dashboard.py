"""deploy/grafana/tunnelmesh.json asks only for metrics a live coordinator exports, and the scrape passes
Prometheus' own linter (`promtool check metrics`)."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Coordinator, start_coordinator
from prometheus_client.parser import text_string_to_metric_families
from support.debian import debian_program

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tunnelmesh.json"
NAME = re.compile(r"\btunnelmesh_[a-z0-9_]+")


def exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from exprs(v)
    elif isinstance(node, list):
        for v in node:
            yield from exprs(v)


@pytest.fixture(scope="module")
def scrape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scrape after a little of everything: S3 reads and writes, an error, an admin request."""
    c: Coordinator = start_coordinator(tmp_path_factory.mktemp("dash"), extra_yaml="metrics:\n  public: true\n")
    try:
        s3 = c.client()
        bucket = f"dash-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
        s3.get_object(Bucket=bucket, Key="k")["Body"].read()
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
        conn.request("GET", "/api/storage", headers={"Authorization": f"Bearer {c.token}"})
        assert conn.getresponse().status == 200
        conn.close()
        # each worker writes its request counts within a second (obs/metrics.py RequestTally)
        deadline = time.monotonic() + 30
        while 'tunnelmesh_s3_requests_total{operation="GetObject"' not in (body := _get(c.port, "/metrics")):
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        yield body
    finally:
        c.stop()


def _get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200, body
        return body
    finally:
        conn.close()


def test_every_dashboard_metric_is_exported(scrape: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    wanted = {re.sub(r"_(bucket|sum|count)$", "", n) for e in exprs(dashboard) for n in NAME.findall(e)}
    assert len(wanted) >= 10, wanted  # the dashboard covers the metrics, not one or two
    exported = set()
    for family in text_string_to_metric_families(scrape):
        exported.add(family.name)
        exported.update(s.name for s in family.samples)
    assert wanted <= exported, sorted(wanted - exported)


def test_promtool_accepts_the_scrape(scrape: str) -> None:
    promtool = debian_program("promtool", "prometheus")
    r = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout, r.stderr)
