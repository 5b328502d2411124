"""`tunnelmesh storage scrub`: stored bytes are re-hashed against what was recorded at write time;
the scheduled scrub does the same in the background; a blob whose size differs from its record is
never served."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator

MIB = 1024 * 1024


def scrub(c: Coordinator, *args: str) -> subprocess.CompletedProcess:
    return c.cli("storage", "scrub", *args)


def blob_path(data_dir: Path, bucket: str, key: str, segment: int = 0) -> Path:
    db = sqlite3.connect(data_dir / "meta.sqlite3")
    try:
        (segments,) = db.execute("SELECT segments FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
    finally:
        db.close()
    blob = json.loads(segments)[segment][0]
    return data_dir / "blobs" / blob[:2] / blob


def test_scrub_finds_rotted_blobs_and_repair_quarantines_them(tmp_path) -> None:
    c = start_coordinator(tmp_path)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="scrubbed")
        s3.put_object(Bucket="scrubbed", Key="small", Body=b"inline bytes")
        s3.put_object(Bucket="scrubbed", Key="flipped", Body=os.urandom(100_000))
        s3.put_object(Bucket="scrubbed", Key="truncated", Body=os.urandom(100_000))
        healthy = os.urandom(100_000)
        s3.put_object(Bucket="scrubbed", Key="healthy", Body=healthy)
        up = s3.create_multipart_upload(Bucket="scrubbed", Key="multi")["UploadId"]
        parts = [
            s3.upload_part(Bucket="scrubbed", Key="multi", UploadId=up, PartNumber=n, Body=os.urandom(size))
            for n, size in ((1, 5 * MIB), (2, 1000))
        ]
        s3.complete_multipart_upload(
            Bucket="scrubbed",
            Key="multi",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": p["ETag"]} for n, p in enumerate(parts)]},
        )

        clean = scrub(c)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "ROTTEN" not in clean.stdout

        # rot: one flipped byte, one truncated file, one flipped byte in the second part of a multipart object
        for key, seg in (("flipped", 0), ("multi", 1)):
            path = blob_path(c.data_dir, "scrubbed", key, seg)
            data = bytearray(path.read_bytes())
            data[len(data) // 2] ^= 0xFF
            path.write_bytes(bytes(data))
        truncated = blob_path(c.data_dir, "scrubbed", "truncated")
        truncated.write_bytes(truncated.read_bytes()[:5000])

        found = scrub(c, "--json")
        assert found.returncode == 1
        report = json.loads(found.stdout)
        assert sorted(r["key"] for r in report["rotten"]) == ["flipped", "multi", "truncated"]
        assert report["objects"] >= 5

        repaired = scrub(c, "--repair")
        assert repaired.returncode == 1 and repaired.stdout.count("ROTTEN") == 3
        quarantined = list((c.data_dir / "quarantine").iterdir())
        assert len(quarantined) == 4  # one blob each for flipped and truncated, two for multi
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="scrubbed")["Contents"]}
        assert keys == {"small", "healthy"}
        assert s3.get_object(Bucket="scrubbed", Key="healthy")["Body"].read() == healthy

        again = scrub(c)
        assert again.returncode == 0, again.stdout
    finally:
        c.stop()


def _get(
    conn: http.client.HTTPConnection, token: str, path: str, headers: dict | None = None
) -> tuple[int, dict, bytes]:
    auth = "Basic " + base64.b64encode(f"admin:{token}".encode()).decode()
    conn.request("GET", path, headers={"Authorization": auth, **(headers or {})})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_the_scheduled_scrub_reports_rot_in_the_log_and_in_storage_status(tmp_path) -> None:
    c = start_coordinator(tmp_path, "  scrub_interval: 2s\n  scrub_rate: 1GB\n")
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="sched")
        s3.put_object(Bucket="sched", Key="healthy", Body=os.urandom(300_000))
        s3.put_object(Bucket="sched", Key="flipped", Body=os.urandom(100_000))
        s3.put_object(Bucket="sched", Key="truncated", Body=os.urandom(300_000))

        flipped = blob_path(c.data_dir, "sched", "flipped")
        data = bytearray(flipped.read_bytes())
        data[5000] ^= 0x01
        flipped.write_bytes(bytes(data))
        truncated = blob_path(c.data_dir, "sched", "truncated")
        truncated.write_bytes(truncated.read_bytes()[:30_000])

        # a scrub that ran before the damage reports 0 rotten; a later one (every 2 s) names both keys
        m = c.wait_for_log(
            r"scrub: (\d+) objects, (\d+) bytes verified, 2 rotten: "
            r"'sched/flipped' \(segment 1: blob \w+ has MD5 \w+, expected \w+\), "
            r"'sched/truncated' \(segment 1: blob \w+ is 30000 bytes, expected 300000\)",
            timeout=120,
        )
        assert int(m.group(1)) == 3 and int(m.group(2)) == 700_000

        status = c.cli("storage", "status", "--json")
        assert status.returncode == 0, status.stderr
        scrub_doc = json.loads(status.stdout)["scrub"]
        assert scrub_doc["last_finished"] is not None and scrub_doc["objects"] == 3
        # the record of the last finished run: the one that logged, or a later one (nothing repairs in between)
        assert scrub_doc["rotten_count"] == 2
        assert sorted(r["key"] for r in scrub_doc["rotten"]) == ["flipped", "truncated"]
        text = c.cli("storage", "status")
        assert text.returncode == 0, text.stderr
        assert "last scrub: finished" in text.stdout and "ROTTEN  sched/flipped" in text.stdout, text.stdout
        # the background scrub only reports: deleting is the operator's call (storage scrub --repair)
        assert {o["Key"] for o in s3.list_objects_v2(Bucket="sched")["Contents"]} == {"healthy", "flipped", "truncated"}
    finally:
        c.stop()


def test_an_object_whose_blob_is_shorter_than_its_record_gets_an_error_before_any_byte(coordinator, s3) -> None:
    s3.create_bucket(Bucket="damaged")
    healthy = os.urandom(300_000)  # above the size answered in one body message, and pathsend's threshold
    s3.put_object(Bucket="damaged", Key="healthy", Body=healthy)
    s3.put_object(Bucket="damaged", Key="big", Body=os.urandom(300_000))
    s3.put_object(Bucket="damaged", Key="small", Body=os.urandom(40_000))
    up = s3.create_multipart_upload(Bucket="damaged", Key="multi")["UploadId"]
    parts = [
        s3.upload_part(Bucket="damaged", Key="multi", UploadId=up, PartNumber=n, Body=os.urandom(size))
        for n, size in ((1, 5 * MIB), (2, 100_000))
    ]
    s3.complete_multipart_upload(
        Bucket="damaged",
        Key="multi",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": p["ETag"]} for n, p in enumerate(parts)]},
    )
    for key, seg in (("big", 0), ("small", 0), ("multi", 1)):
        path = blob_path(coordinator.data_dir, "damaged", key, seg)
        path.write_bytes(path.read_bytes()[:30_000])

    conn = http.client.HTTPConnection("127.0.0.1", coordinator.port, timeout=30)
    cases = [
        ("big", {}),
        ("small", {}),
        ("big", {"Range": "bytes=0-99"}),
        ("multi", {}),
        ("multi", {"Range": "bytes=-10"}),
    ]
    for key, headers in cases:
        status_code, hdrs, body = _get(conn, coordinator.token, f"/s3/damaged/{key}", headers)
        assert status_code == 500, (key, headers, status_code, body[:300])
        assert hdrs["content-type"] == "application/xml"
        doc = ET.fromstring(body)
        assert doc.findtext("Code") == "InternalError" and "damaged" in doc.findtext("Message")
        # the same connection serves the next request
        status_code, _, body = _get(conn, coordinator.token, "/s3/damaged/healthy")
        assert status_code == 200 and body == healthy
    conn.close()
    assert re.search(
        r"DAMAGED OBJECT 'damaged/big': blob \w+ is 30000 bytes, its record says 300000", coordinator.log()
    )
    assert re.search(
        r"DAMAGED OBJECT 'damaged/multi': blob \w+ is 30000 bytes, its record says 100000", coordinator.log()
    )
    # a range entirely inside the intact first part of "multi" reads only that blob: served
    assert s3.get_object(Bucket="damaged", Key="multi", Range="bytes=0-9")["ContentLength"] == 10
    # copying a damaged object is refused the same way, and stores nothing
    with pytest.raises(ClientError) as info:
        s3.copy_object(Bucket="damaged", Key="copy", CopySource={"Bucket": "damaged", "Key": "big"})
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert not s3.list_objects_v2(Bucket="damaged", Prefix="copy").get("Contents")


def _version_blob(data_dir: Path, bucket: str, key: str) -> Path:
    """The blob of the key's one noncurrent version."""
    db = sqlite3.connect(data_dir / "meta.sqlite3")
    try:
        (segments,) = db.execute("SELECT segments FROM versions WHERE bucket=? AND key=?", (bucket, key)).fetchone()
    finally:
        db.close()
    blob = json.loads(segments)[0][0]
    return data_dir / "blobs" / blob[:2] / blob


def test_scrub_checks_noncurrent_versions_and_repair_never_deletes_a_locked_one(tmp_path) -> None:
    """Found in the attacker's review: the scrub walked current objects only, so rot in a backup's kept
    versions went unseen, and repair reported a locked version it could not delete as repaired."""
    c = start_coordinator(tmp_path)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="kept", ObjectLockEnabledForBucket=True)
        until = "2030-01-01T00:00:00Z"
        old = s3.put_object(
            Bucket="kept",
            Key="locked",
            Body=os.urandom(100_000),
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=until,
        )["VersionId"]
        s3.put_object(Bucket="kept", Key="locked", Body=b"newer")
        free = s3.put_object(Bucket="kept", Key="free", Body=os.urandom(100_000))["VersionId"]
        s3.put_object(Bucket="kept", Key="free", Body=b"newer")
        for key in ("locked", "free"):
            path = _version_blob(c.data_dir, "kept", key)
            data = bytearray(path.read_bytes())
            data[500] ^= 0xFF
            path.write_bytes(bytes(data))
        r = scrub(c, "--repair", "--json")
        assert r.returncode == 1, r.stdout + r.stderr
        report = json.loads(r.stdout)
        found = {(x["key"], x["version_id"], x["outcome"]) for x in report["rotten"]}
        assert found == {("locked", old, "locked"), ("free", free, "repaired")}, report
        with pytest.raises(ClientError) as info:  # the unlocked rotten version is gone
            s3.head_object(Bucket="kept", Key="free", VersionId=free)
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        # the locked one stays, its blob in quarantine: a read is an error, never wrong bytes
        with pytest.raises(ClientError) as info:
            s3.get_object(Bucket="kept", Key="locked", VersionId=old)
        assert info.value.response["Error"]["Code"] == "InternalError"
        assert s3.get_object(Bucket="kept", Key="locked")["Body"].read() == b"newer"
        verify = c.cli("storage", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        c.stop()
