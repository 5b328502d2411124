"""A full disk: uploads fail with 507 InsufficientStorage, nothing partial is kept, existing objects
stay readable, and the service recovers as soon as space is freed.

The data dir sits on a small tmpfs the test mounts (the test machines run as root).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(c: Coordinator, s3, bucket: str) -> tuple[list[str], ClientError]:
    stored = []
    for i in range(100):
        key = f"obj-{i}"
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(MIB))
        except ClientError as e:
            return stored, e
        stored.append(key)
    raise AssertionError("the 24 MiB disk never filled up")


def test_full_disk_is_507_keeps_existing_objects_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, data_dir=small_disk / "data", workers=1)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="full")
        s3.put_object(Bucket="full", Key="precious", Body=b"keep me" * 1000)
        stored, err = fill(c, s3, "full")
        assert err.response["Error"]["Code"] == "InsufficientStorage"
        assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 507
        assert "Traceback" not in c.log()
        # nothing partial: no temporary file, no listing entry for the refused key
        assert [p for p in (small_disk / "data" / "tmp").rglob("*") if p.is_file()] == []
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]}
        assert keys == {"precious", *stored}
        assert s3.get_object(Bucket="full", Key="precious")["Body"].read() == b"keep me" * 1000
        assert len(s3.get_object(Bucket="full", Key=stored[0])["Body"].read()) == MIB
        # free space: deleted blobs are unlinked after a short grace period, then uploads work again
        s3.delete_objects(Bucket="full", Delete={"Objects": [{"Key": k} for k in stored[:8]]})
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.put_object(Bucket="full", Key="after", Body=os.urandom(MIB))
                break
            except ClientError as e:
                assert e.response["Error"]["Code"] == "InsufficientStorage"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert len(s3.get_object(Bucket="full", Key="after")["Body"].read()) == MIB
        r = c.cli("storage", "verify")
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        c.stop()
