"""`tunnelmesh storage scrub`: stored bytes are re-hashed against what was recorded at write time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

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
