"""Start-up behaviour of the `tunnelmesh coordinator` process: config errors, bind checks, credentials, restart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import free_port, start_coordinator, wait_for_port


def run_coordinator(tmp: Path, config: str, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    cfg = tmp / "c.yaml"
    cfg.write_text(config)
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ("listen: 0.0.0.0:8080\n", "listen"),
        ("listen: 8.8.8.8:8080\n", "public address"),
        ("s3:\n  listen: 0.0.0.0:9000\n", "s3.listen"),
        ("colour: blue\n", "colour: unknown key"),
        ("s3:\n  max_size: lots\n", "s3.max_size"),
        ("s3:\n  data_dir: /proc/forbidden\n", "s3.data_dir"),
        ("listen: nonsense\n", "listen"),
    ],
)
def test_bad_configuration_is_one_line_naming_the_key(tmp_path, config, needle) -> None:
    res = run_coordinator(tmp_path, config)
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert needle in lines[0]
    assert "Traceback" not in res.stderr


def test_generated_admin_token_is_stored_0600_and_never_logged(tmp_path) -> None:
    port, s3_port = free_port(), free_port()
    cfg = tmp_path / "c.yaml"
    data = tmp_path / "data"
    cfg.write_text(f"listen: 127.0.0.1:{port}\ns3:\n  data_dir: {data}\n  listen: 127.0.0.1:{s3_port}\n")
    env = {k: v for k, v in os.environ.items() if k != "TUNNELMESH_ADMIN_TOKEN"}
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_for_port(port, proc, log)
        token_file = data / "admin.token"
        token = token_file.read_text()
        # exactly the token: `curl -u admin:$(cat ...)` and a file read by other tools take it as it is
        assert token == token.strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert len(token) >= 32
        r = requests.get(f"http://127.0.0.1:{port}/s3/", auth=("admin", token))
        assert r.status_code == 200
        requests.get(f"http://127.0.0.1:{port}/s3/", auth=("admin", "wrong"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    text = log.read_text()
    assert str(token_file) in text
    assert token not in text


def test_objects_survive_a_restart(tmp_path) -> None:
    c = start_coordinator(tmp_path)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="keep")
        s3.put_object(Bucket="keep", Key="k", Body=b"durable")
    finally:
        c.stop()
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        assert c2.client().get_object(Bucket="keep", Key="k")["Body"].read() == b"durable"
    finally:
        c2.stop()


def test_startup_sweeps_temporaries_and_orphan_blobs(tmp_path) -> None:
    c = start_coordinator(tmp_path)
    c.stop()
    # a clean stop leaves a marker that lets the next start skip the orphan scan; a crash does not
    marker = c.data_dir / ".clean-shutdown"
    assert marker.exists()
    marker.unlink()
    tmp_file = c.data_dir / "tmp" / "leftover"
    tmp_file.write_bytes(b"partial upload")
    orphan = c.data_dir / "blobs" / "ab" / ("ab" + "0" * 30)
    orphan.write_bytes(b"orphan")
    old = 1_000_000_000
    os.utime(orphan, (old, old))
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        assert not tmp_file.exists()  # before any worker serves
        # the orphan sweep runs beside the workers, which serve meanwhile
        assert c2.client().list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert c2.wait_for_log(r"orphan sweep: removed (\d+) orphan blobs")[1] == "1"
        assert not orphan.exists()
        c2.wait_for_log(r"orphan sweep finished")  # reaped by the supervisor: a stop now is clean
    finally:
        c2.stop()
    # the sweep finished, so that stop was clean and the next start has nothing to sweep
    assert marker.exists()


def test_a_stop_is_clean_only_if_the_orphan_sweep_finished(tmp_path, monkeypatch) -> None:
    # one worker throughout: its listening port proves it is serving, so it takes a stop like any
    # running worker (a second one may still be starting up when the first one opens the port)
    c = start_coordinator(tmp_path, workers=1)
    c.stop()
    (c.data_dir / ".clean-shutdown").unlink()  # as after a crash: the next start sweeps
    orphan = c.data_dir / "blobs" / "ab" / ("ab" + "0" * 30)
    orphan.write_bytes(b"orphan")
    os.utime(orphan, (1_000_000_000, 1_000_000_000))
    # the sweep waits for this file before it reads anything (a test-only hold), so each stop below
    # comes at a known point of the sweep instead of whenever a busy sweep happens to be
    release = tmp_path / "release-sweep"
    monkeypatch.setenv("TUNNELMESH_TEST_SWEEP_HOLD", str(release))

    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir, workers=1)
    c2.stop()  # the sweep has not finished: it has not even started reading
    assert "orphan sweep interrupted" in c2.log(), c2.log()
    assert "orphan sweep: removed" not in c2.log(), c2.log()
    assert not (c.data_dir / ".clean-shutdown").exists()
    assert orphan.exists()
    # the next start sweeps again, to the end this time, and a stop after that is clean
    c3 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir, workers=1)
    try:
        release.touch()
        c3.wait_for_log(r"orphan sweep: removed 1 orphan blobs")
        # logged once the supervisor has reaped the sweeper: from then on a stop is clean
        c3.wait_for_log(r"orphan sweep finished")
    finally:
        c3.stop()
    assert "orphan sweep interrupted" not in c3.log(), c3.log()
    assert not orphan.exists()
    assert (c.data_dir / ".clean-shutdown").exists()


def test_max_size_rejects_a_put_that_would_pass_it_and_stores_nothing(tmp_path) -> None:
    c = start_coordinator(tmp_path, extra_yaml="  max_size: 100KB\n")
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="small")
        s3.put_object(Bucket="small", Key="a", Body=b"x" * 60_000)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket="small", Key="b", Body=b"x" * 50_000)
        assert e.value.response["Error"]["Code"] == "QuotaExceeded"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="small")["Contents"]] == ["a"]
        # exactly up to the limit is fine, and an overwrite counts only the difference
        s3.put_object(Bucket="small", Key="b", Body=b"x" * 40_000)
        s3.put_object(Bucket="small", Key="a", Body=b"y" * 60_000)
        assert [p for p in (c.data_dir / "tmp").rglob("*") if p.is_file()] == []
        # a body of undeclared length (chunked) is cut off as soon as it passes the limit
        s3.delete_object(Bucket="small", Key="b")

        def chunks():
            for _ in range(100):
                yield b"z" * 10_000

        r = requests.put(f"{c.endpoint}/small/chunked", data=chunks(), auth=("admin", c.token))
        assert r.status_code == 403 and "<Code>QuotaExceeded</Code>" in r.text
        assert [o["Key"] for o in s3.list_objects_v2(Bucket="small")["Contents"]] == ["a"]
        assert [p for p in (c.data_dir / "tmp").rglob("*") if p.is_file()] == []
    finally:
        c.stop()


@pytest.mark.parametrize("source", ["empty file", "short file", "short env"])
def test_an_empty_or_short_admin_token_is_refused_never_used(tmp_path, source: str) -> None:
    """An empty admin.token (a crash while writing it, or by hand) once meant an empty admin password."""
    data = tmp_path / "data"
    data.mkdir()
    env_extra = {}
    if source == "short env":
        env_extra["TUNNELMESH_ADMIN_TOKEN"] = "short"
    else:
        (data / "admin.token").write_text("" if source == "empty file" else "tooshort\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"listen: 127.0.0.1:{free_port()}\ns3:\n  data_dir: {data}\n  listen: 127.0.0.1:{free_port()}\n")
    env = {k: v for k, v in os.environ.items() if k != "TUNNELMESH_ADMIN_TOKEN"}
    res = subprocess.run(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, **env_extra},
    )
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "admin token" in lines[0] and "shorter than 16" in lines[0], res.stderr
    assert "tooshort" not in res.stderr


def test_the_data_dir_is_readable_by_the_coordinator_alone(tmp_path) -> None:
    """The metadata database holds every peer's token: no other local user may read it."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    old = data / "meta.sqlite3"
    c = start_coordinator(tmp_path, data_dir=data)
    try:
        c.client().create_bucket(Bucket="perm-check")
        assert c.cli("peer", "add", "perm-peer").returncode == 0
        made = [p for p in data.rglob("*") if p.is_file()]
        assert old in made and any(p.name.endswith("-wal") for p in made)
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        for path in made:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, (path, oct(path.stat().st_mode))
    finally:
        c.stop()
    # a database left world-readable by an older version is tightened at the next start
    old.chmod(0o644)
    c = start_coordinator(tmp_path, data_dir=data, token=c.token)
    try:
        assert stat.S_IMODE(old.stat().st_mode) == 0o600
    finally:
        c.stop()


def test_wildcard_bind_is_allowed_with_allow_public(tmp_path) -> None:
    port, s3_port = free_port(), free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"listen: 0.0.0.0:{port}\ns3:\n  data_dir: {tmp_path / 'd'}\n  listen: 127.0.0.1:{s3_port}\n")
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg), "--allow-public"],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, TUNNELMESH_ADMIN_TOKEN="t" * 32),
    )
    try:
        wait_for_port(port, proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
