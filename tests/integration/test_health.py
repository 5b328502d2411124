"""`/healthz` and `/readyz` on the main listener (docs/operations.md 1.7): unauthenticated, outside the S3
request slots, `/readyz` 503 with a one-line reason while PostgreSQL is down and 200 again once it is back;
on `s3.listen` both paths stay bucket names."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import Coordinator, start_coordinator, started_put, wait_until
from pg_server import PrivateServer

TIMEOUT = 30.0


def get(c: Coordinator, path: str, method: str = "GET", port: int | None = None) -> requests.Response:
    return requests.request(method, f"http://127.0.0.1:{port or c.port}{path}", timeout=TIMEOUT)


def test_healthz_and_readyz_answer_ok_without_credentials(coordinator: Coordinator) -> None:
    for path in ("/healthz", "/readyz", "/healthz?probe=1", "/readyz?probe=1"):
        r = get(coordinator, path)
        assert (r.status_code, r.text) == (200, "ok\n"), path
        assert r.headers["content-type"].startswith("text/plain"), path
        assert r.headers["cache-control"] == "no-store", path
    for path in ("/healthz", "/readyz"):
        head = get(coordinator, path, "HEAD")
        assert (head.status_code, head.content) == (200, b""), path
        post = get(coordinator, path, "POST")
        assert post.status_code == 405, path
        assert post.headers["allow"] == "GET, HEAD", path
    # only the exact paths: anything else off /s3 and /api/ is still the listener's 404
    assert get(coordinator, "/healthz/x").status_code == 404
    assert get(coordinator, "/readyzz").status_code == 404


def test_on_the_s3_listener_they_are_bucket_names(coordinator: Coordinator) -> None:
    root = coordinator.client(coordinator.root_endpoint)
    for name in ("healthz", "readyz"):
        root.create_bucket(Bucket=name)
        root.put_object(Bucket=name, Key="k", Body=name.encode())
        assert [o["Key"] for o in root.list_objects_v2(Bucket=name)["Contents"]] == ["k"]
        assert root.get_object(Bucket=name, Key="k")["Body"].read() == name.encode()
        # anonymous there: an S3 refusal of a bucket listing, not a probe's "ok"
        anon = get(coordinator, f"/{name}", port=coordinator.s3_port)
        assert anon.status_code == 403, anon.text
        assert "<Code>AccessDenied</Code>" in anon.text
        # the same bucket under /s3 on the main listener, while /<name> there stays the probe
        under_s3 = coordinator.client()
        assert under_s3.get_object(Bucket=name, Key="k")["Body"].read() == name.encode()
        assert get(coordinator, f"/{name}").text == "ok\n"


def test_the_probes_take_no_s3_slot(tmp_path: Path) -> None:
    """With the worker's one S3 slot held by an upload waiting for its body, both probes still answer (the
    upload would hold the slot for body_timeout, ten times the probe's patience)."""
    c = start_coordinator(tmp_path, "limits:\n  max_requests: 1\n  body_timeout: 300\n  min_body_rate: 1\n", workers=1)
    try:
        c.client().create_bucket(Bucket="slot")
        held = started_put(c, "slot/k", 1000, b"x" * 10)
        try:
            for path in ("/healthz", "/readyz"):
                r = get(c, path)
                assert (r.status_code, r.text) == (200, "ok\n"), path
        finally:
            held.close()
    finally:
        c.stop()


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivateServer]:
    # a server of this module's own: the shared one must stay up for every other test
    server = PrivateServer()
    yield server
    server.close()


def test_readyz_is_503_with_the_reason_while_postgresql_is_down(tmp_path: Path, pg: PrivateServer) -> None:
    password = f"pw{secrets.token_hex(12)}"
    name = f"tm_{uuid.uuid4().hex[:12]}"
    uri = pg.database(name, f"u_{name}", password)
    c = start_coordinator(
        tmp_path, "  metadata_timeout: 0.5s\n  metadata_pool: 2\n", workers=2, env={"TUNNELMESH_S3_METADATA": uri}
    )
    try:
        assert get(c, "/readyz").text == "ok\n"
        pg.stop()
        try:
            # each worker caches its answer for a second: poll until one has probed the outage
            down: list[requests.Response] = []
            wait_until("/readyz says 503", lambda: down.append(get(c, "/readyz")) or down[-1].status_code == 503)
            reason = down[-1].text
            assert reason.startswith("metadata unreachable: "), reason
            assert reason.endswith("\n") and reason.count("\n") == 1, reason  # one line
            assert password not in reason and str(pg.socket_dir) not in reason  # no secret, no address
            # liveness is not readiness: the loop still answers
            assert (get(c, "/healthz").status_code, get(c, "/healthz").text) == (200, "ok\n")
        finally:
            pg.start()
        # ready again by itself: the worker's next probe reconnects
        up: list[requests.Response] = []
        wait_until("/readyz says 200 again", lambda: up.append(get(c, "/readyz")) or up[-1].status_code == 200)
        assert up[-1].text == "ok\n"
        assert password not in c.log()
    finally:
        c.stop()
