"""Upgrades: the current coordinator started on data dirs written by older releases (tests/fixtures, made
by tests/fixtures/make_datadir.py) keeps every record usable, and brings the database to the current
schema version; a database from a newer release is refused, untouched."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import Coordinator, start_coordinator
from tunnelmesh.store import migrations

FIXTURES = Path(__file__).parent.parent / "fixtures"
DATADIRS = sorted(p.name for p in FIXTURES.glob("datadir-*"))


def _copy(fixture: str, tmp: Path) -> tuple[Path, dict]:
    data = tmp / "data"
    shutil.copytree(FIXTURES / fixture / "data", data)
    return data, json.loads((FIXTURES / fixture / "manifest.json").read_text())


def _client(c: Coordinator, key: str, secret: str):
    return boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _code(fn) -> str:
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["Error"]["Code"]


def _shape(db: Path) -> tuple[int, list[tuple], dict[str, list[tuple]]]:
    conn = sqlite3.connect(db)
    try:
        objects = sorted(
            (t, n, " ".join(sql.split()) if sql else None)
            for t, n, sql in conn.execute("SELECT type, name, sql FROM sqlite_master")
        )
        tables = [n for t, n, _ in objects if t == "table"]
        cols = {t: conn.execute(f"PRAGMA table_info({t})").fetchall() for t in tables}
        return conn.execute("PRAGMA user_version").fetchone()[0], objects, cols
    finally:
        conn.close()


@pytest.mark.parametrize("fixture", DATADIRS)
def test_a_data_dir_of_an_older_release_keeps_every_record_and_reaches_the_current_schema(tmp_path, fixture) -> None:
    data, man = _copy(fixture, tmp_path)
    assert _shape(data / "meta.sqlite3")[0] < migrations.LATEST  # made by an older release
    c = start_coordinator(tmp_path, data_dir=data, token=man["admin_token"])
    try:
        s3 = c.client()
        peer = man["peer"]
        peer_s3 = _client(c, peer["peer_id"], peer["token"])
        # every object reads back byte for byte, with its metadata
        for path, digest in man["objects"].items():
            bucket, key = path.split("/", 1)
            client = peer_s3 if bucket == "laptop-files" else s3
            assert _sha(client.get_object(Bucket=bucket, Key=key)["Body"].read()) == digest, path
        assert s3.head_object(Bucket="docs", Key="notes/inline.txt")["ContentType"] == "text/plain"
        assert s3.head_object(Bucket="photos", Key="blob.bin")["Metadata"] == {"camera": "fixture"}
        head = s3.head_object(Bucket="photos", Key="multipart.bin", ChecksumMode="ENABLED")
        assert (head["ETag"], head["ChecksumCRC32"]) == (man["multipart"]["etag"], man["multipart"]["checksum_crc32"])
        # the peer authenticates with its token, and only with it
        assert "laptop-files" in [b["Name"] for b in peer_s3.list_buckets()["Buckets"]]
        peer_s3.put_object(Bucket="laptop-files", Key="after-upgrade.txt", Body=b"still me")
        assert _code(lambda: _client(c, peer["peer_id"], peer["token"] + "x").list_buckets()) == "SignatureDoesNotMatch"
        # the pending upload completes with the part stored before the upgrade
        pend = man["pending"]
        listed = s3.list_multipart_uploads(Bucket=pend["bucket"])["Uploads"]
        assert [(u["Key"], u["UploadId"]) for u in listed] == [(pend["key"], pend["upload_id"])]
        parts = s3.list_parts(Bucket=pend["bucket"], Key=pend["key"], UploadId=pend["upload_id"])["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, pend["part_etag"])]
        s3.complete_multipart_upload(
            Bucket=pend["bucket"],
            Key=pend["key"],
            UploadId=pend["upload_id"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": pend["part_etag"]}]},
        )
        got = s3.get_object(Bucket=pend["bucket"], Key=pend["key"])["Body"].read()
        assert _sha(got) == pend["sha256"]
        # the quota still holds: usage counts the old objects, a write past the quota is refused
        r = c.cli("bucket", "usage", man["quota"]["bucket"], "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        usage = json.loads(r.stdout)
        inline = len(b"inline object, stored in its metadata row\n")
        assert (usage["quota"], usage["used"], usage["objects"]) == (man["quota"]["bytes"], inline + len(got), 2)
        room = man["quota"]["bytes"] - usage["used"] - usage["multipart_used"]
        too_big = b"q" * (room + 1)
        assert _code(lambda: s3.put_object(Bucket=man["quota"]["bucket"], Key="big", Body=too_big)) == "QuotaExceeded"
        s3.put_object(Bucket=man["quota"]["bucket"], Key="fits", Body=too_big[:room])
        r = c.cli("storage", "verify", timeout=60)
        assert r.returncode == 0 and "ok" in r.stdout and "MISMATCH" not in r.stdout, r.stdout + r.stderr
    finally:
        c.stop()
    fresh = tmp_path / "fresh.sqlite3"
    conn = sqlite3.connect(fresh, isolation_level=None)
    migrations.migrate(conn)
    conn.close()
    upgraded = _shape(data / "meta.sqlite3")
    assert upgraded[0] == migrations.LATEST
    assert upgraded == _shape(fresh)


def test_a_database_of_a_newer_release_is_refused_naming_both_versions_and_left_untouched(tmp_path) -> None:
    data, man = _copy(DATADIRS[-1], tmp_path)
    conn = sqlite3.connect(data / "meta.sqlite3")
    conn.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    conn.close()
    before = _shape(data / "meta.sqlite3")
    with pytest.raises(RuntimeError, match="coordinator exited with 2") as e:
        start_coordinator(tmp_path, data_dir=data, token=man["admin_token"])
    assert f"schema version {migrations.LATEST + 1}" in str(e.value)
    assert f"versions up to {migrations.LATEST} only" in str(e.value)
    assert "Traceback" not in str(e.value)
    assert _shape(data / "meta.sqlite3") == before
