"""A coordinator whose metadata is in PostgreSQL (`s3.metadata`): it serves S3 as on SQLite, keeps
everything across a restart, answers 503 (never 403, never a hang) while the database is down and
resumes by itself when it is back, and never shows the database password.

The server is a private pgserver instance of this module (the shared one of tests/pg_server.py must
stay up for the other tests), so the outage test can stop and start it."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import psycopg
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, free_port, start_coordinator, wait_until
from pg_server import PrivateServer

MIB = 1024 * 1024
# short, so the outage test is quick; the answers must still come within it (plus the slack PgMeta allows)
METADATA_TIMEOUT = 0.5
# a generous bound on any one answer during the outage: well past the timeout, far short of a hang
NO_HANG = 30.0


@pytest.fixture(scope="module")
def pg() -> Iterator[PrivateServer]:
    server = PrivateServer()
    yield server
    server.close()


@pytest.fixture
def database(pg: PrivateServer) -> tuple[str, str]:
    """A fresh database with a role of its own: (its URI, password included; the password)."""
    password = f"pw{secrets.token_hex(12)}"
    name = f"tm_{uuid.uuid4().hex[:12]}"
    return pg.database(name, f"u_{name}", password), password


def start_on(tmp: Path, uri: str, data_dir: Path | None = None, workers: int = 2) -> Coordinator:
    """A coordinator on `uri`, given through the environment (so the password is not in the YAML file)."""
    extra = f"  metadata_timeout: {METADATA_TIMEOUT}s\n  metadata_pool: 2\n"
    return start_coordinator(tmp, extra, data_dir=data_dir, workers=workers, env={"TUNNELMESH_S3_METADATA": uri})


def client(c: Coordinator, access_key: str, secret: str):
    return boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        # no retries (legacy mode's max_attempts counts retries): each answer is the server's first
        config=Config(retries={"total_max_attempts": 1}, read_timeout=NO_HANG, connect_timeout=NO_HANG),
    )


def add_peer(c: Coordinator, name: str) -> dict[str, str]:
    r = c.cli("peer", "add", name, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def keys_in_postgresql(uri: str, bucket: str) -> set[str]:
    with psycopg.connect(uri) as conn:
        return {k for (k,) in conn.execute("SELECT key FROM objects WHERE bucket = %s", (bucket,))}


def test_s3_on_postgresql_works_as_on_sqlite_and_survives_a_restart(tmp_path: Path, database) -> None:
    uri, _ = database
    c = start_on(tmp_path, uri)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="pg-b")
        s3.put_object(Bucket="pg-b", Key="a/one", Body=b"one")
        s3.put_object(Bucket="pg-b", Key="a/two", Body=b"two" * 20_000)  # a blob, not inline
        s3.put_object(Bucket="pg-b", Key="top", Body=b"top")
        assert s3.get_object(Bucket="pg-b", Key="a/two")["Body"].read() == b"two" * 20_000
        listed = s3.list_objects_v2(Bucket="pg-b", Delimiter="/")
        assert [o["Key"] for o in listed["Contents"]] == ["top"]
        assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["a/"]
        # multipart: two parts, completed
        parts = [b"x" * (5 * MIB), b"y" * 1000]
        up = s3.create_multipart_upload(Bucket="pg-b", Key="big")["UploadId"]
        etags = [
            s3.upload_part(Bucket="pg-b", Key="big", UploadId=up, PartNumber=i + 1, Body=p)["ETag"]
            for i, p in enumerate(parts)
        ]
        s3.complete_multipart_upload(
            Bucket="pg-b",
            Key="big",
            UploadId=up,
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]},
        )
        assert s3.get_object(Bucket="pg-b", Key="big")["Body"].read() == b"".join(parts)
        s3.copy_object(Bucket="pg-b", Key="copy", CopySource={"Bucket": "pg-b", "Key": "a/two"})
        assert s3.get_object(Bucket="pg-b", Key="copy")["Body"].read() == b"two" * 20_000
        s3.delete_object(Bucket="pg-b", Key="top")
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket="pg-b", Key="top")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        # a quota, enforced by the PostgreSQL admission
        s3.create_bucket(Bucket="pg-q")
        r = c.cli("bucket", "quota", "set", "pg-q", "100KB")
        assert r.returncode == 0, r.stderr
        s3.put_object(Bucket="pg-q", Key="k1", Body=b"q" * 60_000)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="pg-q", Key="k2", Body=b"q" * 60_000)
        assert e.value.response["Error"]["Code"] == "QuotaExceeded"
        # the metadata is in PostgreSQL, not in a SQLite file in the data dir
        assert keys_in_postgresql(uri, "pg-b") == {"a/one", "a/two", "big", "copy"}
        assert not (c.data_dir / "meta.sqlite3").exists()
        r = c.cli("storage", "verify", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
    finally:
        c.stop()
    assert c.proc.returncode == 0, c.log()[-3000:]

    again = start_on(tmp_path, uri, data_dir=c.data_dir)
    try:
        s3 = again.client()
        assert s3.get_object(Bucket="pg-b", Key="big")["Body"].read() == b"".join(parts)
        assert s3.get_object(Bucket="pg-b", Key="a/one")["Body"].read() == b"one"
        assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket="pg-b")["Contents"]) == [
            "a/one",
            "a/two",
            "big",
            "copy",
        ]
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="pg-q", Key="k2", Body=b"q" * 60_000)
        assert e.value.response["Error"]["Code"] == "QuotaExceeded"
    finally:
        again.stop()


def answer(fn: Callable[[], tuple[int, str]]) -> tuple[int, str, float]:
    """(HTTP status, error code or "", seconds it took)."""
    started = time.monotonic()
    status, code = fn()
    return status, code, time.monotonic() - started


def boto(call: Callable[[], object]) -> Callable[[], tuple[int, str]]:
    def run() -> tuple[int, str]:
        try:
            call()
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"].get("Code", "")
        return 200, ""

    return run


def http(method: str, url: str, **kw: object) -> Callable[[], tuple[int, str]]:
    def run() -> tuple[int, str]:
        r = requests.request(method, url, timeout=NO_HANG, **kw)  # type: ignore[arg-type]
        if r.status_code < 300:
            return r.status_code, ""
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.status_code, r.json().get("error", "")
        code = r.text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in r.text else ""
        return r.status_code, code

    return run


def test_database_down_answers_503_quickly_and_service_resumes_by_itself(
    tmp_path: Path, pg: PrivateServer, database
) -> None:
    uri, password = database
    c = start_on(tmp_path, uri, workers=1)
    try:
        admin = client(c, "admin", c.token)
        admin.create_bucket(Bucket="outage")
        admin.put_object(Bucket="outage", Key="k", Body=b"before")
        peer = add_peer(c, "p1")
        ps3 = client(c, peer["peer_id"], peer["token"])
        presigned = ps3.generate_presigned_url("get_object", Params={"Bucket": "outage", "Key": "k"})
        url = f"{c.endpoint}/outage/k"
        requests_to_try: dict[str, Callable[[], tuple[int, str]]] = {
            # the peer's credentials are looked up in the database: its failure must not read as "no such peer"
            "peer SigV4 GET": boto(lambda: ps3.get_object(Bucket="outage", Key="k")["Body"].read()),
            "peer SigV4 PUT": boto(lambda: ps3.put_object(Bucket="outage", Key="k2", Body=b"during")),
            "peer SigV4 list": boto(lambda: ps3.list_objects_v2(Bucket="outage")),
            "peer presigned GET": http("GET", presigned),
            "peer Basic GET": http("GET", url, auth=(peer["peer_id"], peer["token"])),
            "peer Bearer GET": http("GET", url, headers={"Authorization": f"Bearer {peer['token']}"}),
            "admin SigV4 GET": boto(lambda: admin.get_object(Bucket="outage", Key="k")["Body"].read()),
            "admin SigV4 PUT": boto(lambda: admin.put_object(Bucket="outage", Key="k3", Body=b"during")),
            "admin API storage": http(
                "GET", f"http://127.0.0.1:{c.port}/api/storage", headers={"Authorization": f"Bearer {c.token}"}
            ),
        }
        for name, fn in requests_to_try.items():
            assert answer(fn)[:2] == (200, ""), name
        # an anonymous ListBuckets is refused before any lookup: the same answer with the database up or down
        # (an anonymous object read needs the bucket's policy, so it is one of the requests above in effect)
        assert http("GET", f"{c.endpoint}/")() == (403, "AccessDenied")

        pg.stop()
        slowest = 0.0
        for _ in range(2):  # the first round meets pooled connections the server dropped, the second none
            for name, fn in requests_to_try.items():
                status, code, took = answer(fn)
                assert (status, code) == (503, "ServiceUnavailable"), f"{name} while the database is down"
                slowest = max(slowest, took)
        assert http("GET", f"{c.endpoint}/")() == (403, "AccessDenied")
        r = c.cli("storage", "status", timeout=NO_HANG)
        assert r.returncode != 0 and "ServiceUnavailable" in r.stdout + r.stderr, r.stdout + r.stderr
        print(
            f"\nslowest 503 answer while PostgreSQL was down: {slowest:.2f} s (metadata_timeout {METADATA_TIMEOUT} s)"
        )

        pg.start()
        back = time.monotonic()
        wait_until(
            "a request succeeds once PostgreSQL is back", lambda: answer(requests_to_try["peer SigV4 GET"])[0] == 200
        )
        print(f"service resumed {time.monotonic() - back:.2f} s after PostgreSQL was back")
        for name, fn in requests_to_try.items():
            assert answer(fn)[:2] == (200, ""), f"{name} after the database came back"
        assert ps3.get_object(Bucket="outage", Key="k2")["Body"].read() == b"during"
        assert c.proc.poll() is None and "a worker exited" not in c.log()
        # the background duties say it once per outage, and that it is over, without a traceback
        c.wait_for_log(r"reaper: the metadata database is back")
        assert c.log().count("reaper: the metadata database is unavailable") == 1
        assert "Traceback" not in c.log()
        status = c.cli("storage", "status")
        assert status.returncode == 0, status.stderr
    finally:
        c.stop()
    log = c.log()
    assert password not in log
    assert password not in status.stdout + status.stderr


def test_storage_status_shows_the_backend_with_the_password_redacted(tmp_path: Path, database) -> None:
    uri, password = database
    c = start_on(tmp_path, uri)
    try:
        r = c.cli("storage", "status")
        assert r.returncode == 0, r.stderr
        line = next(x for x in r.stdout.splitlines() if x.startswith("metadata: "))
        assert line.startswith("metadata: postgresql postgresql://u_tm_") and ":***@" in line, line
        j = c.cli("storage", "status", "--json")
        assert json.loads(j.stdout)["metadata"] == line.removeprefix("metadata: ")
        assert password not in r.stdout + r.stderr + j.stdout + j.stderr
        c.wait_for_log(r"metadata: postgresql ")
    finally:
        c.stop()
    assert password not in c.log()


def test_sqlite_stays_the_default_and_status_names_its_file(coordinator: Coordinator) -> None:
    r = coordinator.cli("storage", "status", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["metadata"] == f"sqlite {(coordinator.data_dir / 'meta.sqlite3').resolve()}"


def test_a_coordinator_whose_database_cannot_be_reached_refuses_to_start_saying_why(tmp_path: Path) -> None:
    password = f"pw{secrets.token_hex(12)}"
    config = tmp_path / "c.yaml"
    config.write_text(f"listen: 127.0.0.1:{free_port()}\ns3:\n  data_dir: {tmp_path / 'd'}\n  listen: ''\n")
    env = dict(
        os.environ,
        TUNNELMESH_ADMIN_TOKEN=secrets.token_urlsafe(24),
        TUNNELMESH_S3_METADATA=f"postgresql://tm:{password}@/tm?host={tmp_path / 'no-server-here'}",
    )
    r = subprocess.run(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=NO_HANG,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "tunnelmesh: the metadata database is unavailable: " in r.stderr and "no-server-here" in r.stderr
    assert "Traceback" not in r.stderr
    assert password not in r.stdout + r.stderr


def _start_plain(tmp_path: Path, data_dir: Path, metadata: str | None) -> subprocess.CompletedProcess[str]:
    """`tunnelmesh coordinator` on `data_dir`, with or without s3.metadata, expected to refuse at once."""
    config = tmp_path / f"c-{uuid.uuid4().hex[:6]}.yaml"
    config.write_text(f"listen: 127.0.0.1:{free_port()}\ns3:\n  data_dir: {data_dir}\n  listen: ''\n")
    env = {k: v for k, v in os.environ.items() if k != "TUNNELMESH_S3_METADATA"}
    env["TUNNELMESH_ADMIN_TOKEN"] = secrets.token_urlsafe(24)
    if metadata is not None:
        env["TUNNELMESH_S3_METADATA"] = metadata
    return subprocess.run(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=NO_HANG,
    )


def test_a_data_dir_whose_records_are_in_postgresql_refuses_to_start_on_sqlite_and_back(
    tmp_path: Path, database
) -> None:
    """From the data-safety review: losing $TUNNELMESH_S3_METADATA on a restart started the node on a new,
    empty SQLite beside blobs only PostgreSQL names, whose first orphan sweep after a crash would have
    deleted them all. The data dir records its engine; a start on the other one is refused, naming why."""
    uri, password = database
    data_dir = tmp_path / "d"
    c = start_on(tmp_path, uri, data_dir)
    try:
        s3 = client(c, "admin", c.token)
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="k", Body=b"x" * 40_000)  # a blob file only PostgreSQL names
    finally:
        c.stop()
    blobs_before = sorted(p.name for p in (data_dir / "blobs").rglob("*") if p.is_file())
    r = _start_plain(tmp_path, data_dir, None)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "records of" in r.stderr and "are in postgresql, but the configuration says sqlite" in r.stderr
    assert "TUNNELMESH_S3_METADATA" in r.stderr and "Traceback" not in r.stderr
    assert not (data_dir / "meta.sqlite3").exists()  # nothing was created, swept or written
    assert sorted(p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()) == blobs_before
    # and a SQLite data dir is not silently abandoned for PostgreSQL either
    sqlite_dir = tmp_path / "s"
    s = start_coordinator(tmp_path, data_dir=sqlite_dir)
    s.stop()
    r = _start_plain(tmp_path, sqlite_dir, uri)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "are in sqlite, but the configuration says postgresql" in r.stderr
    assert password not in r.stdout + r.stderr
    # the PostgreSQL node itself starts again as before
    c = start_on(tmp_path, uri, data_dir)
    try:
        assert client(c, "admin", c.token).get_object(Bucket="kept", Key="k")["Body"].read() == b"x" * 40_000
    finally:
        c.stop()
