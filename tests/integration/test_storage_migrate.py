"""`tunnelmesh storage migrate` with real processes: a coordinator on SQLite is stopped, its metadata moved to a
real PostgreSQL, and the coordinator started again on it (same data dir, same blobs) serves everything it had:
objects byte for byte, listings, usage, an upload in progress, a peer's credentials. The SQLite side is
fenced (a start on it is refused, exit 2), a re-run says it is done and changes nothing, and the command
refuses a running coordinator's data dir and a database that holds another store."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator, tunnelmesh_exe
from pg_server import fresh_database
from psycopg.conninfo import conninfo_to_dict

MIB = 1024 * 1024
PASSWORD = "s3cr3t-never-shown"  # the tests' server trusts its socket: libpq never sends it


def database() -> str:
    """A fresh database as the postgresql:// URI the config takes, with a password in it (to prove it is
    never shown)."""
    d = conninfo_to_dict(fresh_database())
    query = "&".join(f"{k}={quote(str(d[k]), safe='/')}" for k in ("host", "port") if k in d)
    return f"postgresql://{quote(str(d['user']))}:{PASSWORD}@/{d['dbname']}?{query}"


def migrate(config: Path, uri: str | None = None, env_uri: str | None = None) -> subprocess.CompletedProcess:
    """The real command; the URI on the command line (`uri`) or in $TUNNELMESH_S3_METADATA (`env_uri`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
    if env_uri is not None:
        env["TUNNELMESH_S3_METADATA"] = env_uri
    args = [tunnelmesh_exe(), "storage", "migrate", "--config", str(config)] + (["--to", uri] if uri else [])
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert PASSWORD not in r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    return r


def cli_json(c: Coordinator, *args: str) -> dict:
    r = c.cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def as_peer(c: Coordinator, peer_id: str, token: str):
    return boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        aws_access_key_id=peer_id,
        aws_secret_access_key=token,
        region_name="us-east-1",
        config=Config(retries={"total_max_attempts": 1}),
    )


def contents(s3, bucket: str) -> dict[str, bytes]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def listing(s3, bucket: str) -> list[tuple[str, int, str]]:
    return [(o["Key"], o["Size"], o["ETag"]) for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def usage(c: Coordinator, bucket: str) -> dict:
    d = cli_json(c, "bucket", "usage", bucket)
    return {k: d[k] for k in ("used", "objects", "multipart_used", "quota")}


def test_a_sqlite_coordinator_moved_to_postgresql_serves_everything_it_had(tmp_path: Path) -> None:
    uri = database()
    data = tmp_path / "data"
    node = "  node_id: mover\n"
    c = start_coordinator(tmp_path, node, data_dir=data)
    parts = [os.urandom(5 * MIB), os.urandom(1000)]
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="moved")
        s3.put_object(Bucket="moved", Key="inline", Body=b"small and inline")
        s3.put_object(Bucket="moved", Key="dir/blob", Body=os.urandom(200_000), Metadata={"note": "kept"})
        s3.put_object(Bucket="moved", Key="ключ/é", Body=b"unicode key")
        s3.create_bucket(Bucket="moved-q")
        assert c.cli("bucket", "quota", "set", "moved-q", "100KB").returncode == 0
        s3.put_object(Bucket="moved-q", Key="q1", Body=os.urandom(60_000))
        up = s3.create_multipart_upload(Bucket="moved", Key="big")["UploadId"]
        etags = [
            s3.upload_part(Bucket="moved", Key="big", UploadId=up, PartNumber=i + 1, Body=p)["ETag"]
            for i, p in enumerate(parts)
        ]
        peer = cli_json(c, "peer", "add", "p1")
        assert "Buckets" in as_peer(c, peer["peer_id"], peer["token"]).list_buckets()
        before = {b: contents(s3, b) for b in ("moved", "moved-q")}
        listed = {b: listing(s3, b) for b in ("moved", "moved-q")}
        used = {b: usage(c, b) for b in ("moved", "moved-q")}
        assert used["moved"]["multipart_used"] == sum(map(len, parts))
        # refused while the coordinator runs: its data dir is locked
        r = migrate(c.config_path, env_uri=uri)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "in use by another coordinator" in r.stderr and "stop it first" in r.stderr
    finally:
        c.stop()
    assert c.proc.returncode == 0, c.log()[-3000:]
    with psycopg.connect(uri) as conn:  # the refusal wrote nothing
        assert conn.execute("SELECT to_regclass('objects')").fetchone() == (None,)
    blobs = sorted(p.name for p in (data / "blobs").rglob("*") if p.is_file())

    r = migrate(c.config_path, uri=uri)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "moved the metadata" in r.stdout and "verified: row counts" in r.stdout
    assert f":***@/{conninfo_to_dict(uri)['dbname']}" in r.stdout  # the config line, redacted
    assert "metadata: postgresql://" in r.stdout
    assert sorted(p.name for p in (data / "blobs").rglob("*") if p.is_file()) == blobs  # blobs stay

    pg = start_coordinator(tmp_path, node, data_dir=data, env={"TUNNELMESH_S3_METADATA": uri})
    try:
        s3 = pg.client()
        assert {b: contents(s3, b) for b in ("moved", "moved-q")} == before
        assert {b: listing(s3, b) for b in ("moved", "moved-q")} == listed
        assert s3.head_object(Bucket="moved", Key="dir/blob")["Metadata"] == {"note": "kept"}
        assert {b: usage(pg, b) for b in ("moved", "moved-q")} == used
        with pytest.raises(ClientError) as e:  # the quota came along
            s3.put_object(Bucket="moved-q", Key="q2", Body=os.urandom(60_000))
        assert e.value.response["Error"]["Code"] == "QuotaExceeded"
        # the upload begun on SQLite completes on PostgreSQL
        assert [p["PartNumber"] for p in s3.list_parts(Bucket="moved", Key="big", UploadId=up)["Parts"]] == [1, 2]
        s3.complete_multipart_upload(
            Bucket="moved",
            Key="big",
            UploadId=up,
            MultipartUpload={"Parts": [{"ETag": e, "PartNumber": i + 1} for i, e in enumerate(etags)]},
        )
        assert s3.get_object(Bucket="moved", Key="big")["Body"].read() == b"".join(parts)
        # the peer's credentials (in _tunnelmesh) came along; a wrong token is still refused
        assert "Buckets" in as_peer(pg, peer["peer_id"], peer["token"]).list_buckets()
        with pytest.raises(ClientError) as e:
            as_peer(pg, peer["peer_id"], peer["token"] + "x").list_buckets()
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert cli_json(pg, "storage", "verify")["ok"]
        assert "postgresql" in cli_json(pg, "storage", "status")["metadata"]
    finally:
        pg.stop()
    assert pg.proc.returncode == 0, pg.log()[-3000:]

    # a re-run says it is done and changes nothing (the URI from the environment this time)
    with psycopg.connect(uri) as conn:
        snapshot = conn.execute("SELECT bucket, key, etag, mtime FROM objects ORDER BY bucket, key").fetchall()
    r = migrate(c.config_path, env_uri=uri)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "already done" in r.stdout
    with psycopg.connect(uri) as conn:
        assert conn.execute("SELECT bucket, key, etag, mtime FROM objects ORDER BY bucket, key").fetchall() == snapshot

    # the SQLite side is fenced: a start on it is refused, saying where the records went and when
    blobs = sorted(p.name for p in (data / "blobs").rglob("*") if p.is_file())
    r = subprocess.run(
        [tunnelmesh_exe(), "coordinator", "--config", str(c.config_path)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")},
        timeout=60,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "was moved to PostgreSQL" in r.stderr and "UTC" in r.stderr and "refusing to start" in r.stderr
    assert "Traceback" not in r.stderr and PASSWORD not in r.stderr
    assert sorted(p.name for p in (data / "blobs").rglob("*") if p.is_file()) == blobs  # nothing swept


def test_migrate_into_a_database_holding_another_store_is_refused(tmp_path: Path) -> None:
    uri = database()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = start_coordinator(tmp_path / "a", "  node_id: first\n", data_dir=tmp_path / "a" / "data")
    first.stop()
    second = start_coordinator(tmp_path / "b", "  node_id: second\n", data_dir=tmp_path / "b" / "data")
    try:
        second.client().create_bucket(Bucket="kept")
    finally:
        second.stop()
    assert migrate(first.config_path, uri=uri).returncode == 0
    r = migrate(second.config_path, uri=uri)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "holds another store's records (node first" in r.stderr
    # nothing changed: the second still starts on SQLite and has its bucket
    again = start_coordinator(tmp_path / "b", "  node_id: second\n", data_dir=tmp_path / "b" / "data")
    try:
        assert "kept" in [b["Name"] for b in again.client().list_buckets()["Buckets"]]
    finally:
        again.stop()
