"""Space comes back after any process dies: freed blobs are queued in the commit that frees them.

Real coordinator processes; workers or the whole tree are SIGKILLed right after overwrites and
deletes, inside the unlink grace, and the blob files on disk are compared with what the metadata
references. The invariant checked while nothing is in flight: every blob file is referenced by an
object or a part, or queued in `freed_blobs`; once the queue is reaped, files == referenced.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import (
    Coordinator,
    blob_files,
    children,
    referenced_and_queued,
    start_coordinator,
    started_put,
    wait_for_port,
    wait_until,
)

MIB = 1024 * 1024
OBJECTS = 200  # 1 MiB each: 200 MiB written, then all of it freed by overwrites and deletes
RESPAWN = r"a worker exited with code -9; starting a new one"
SWEPT = r"orphan sweep after worker ([\d, ]+) died finished"


def body(i: int, version: int) -> bytes:
    return (f"{i:05d}/{version}/".encode() * (MIB // 8 + 1))[:MIB]


def tmp_files(data_dir: Path) -> list[str]:
    # each process writes its temporaries in its own dir, tmp/<pid>/
    return sorted(str(p.relative_to(data_dir / "tmp")) for p in (data_dir / "tmp").rglob("*") if p.is_file())


def disk_matches_metadata(data_dir: Path) -> bool:
    refs, _ = referenced_and_queued(data_dir)
    return blob_files(data_dir) == refs


def fill_and_free(c: Coordinator) -> None:
    """PUT OBJECTS x 1 MiB, overwrite the first half, delete the second half (200 blobs freed)."""
    s3 = c.client()
    s3.create_bucket(Bucket="freed")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket="freed", Key=f"k{i:05d}", Body=body(i, 1)), range(OBJECTS)))
        half = OBJECTS // 2
        list(pool.map(lambda i: s3.put_object(Bucket="freed", Key=f"k{i:05d}", Body=body(i, 2)), range(half)))
    s3.delete_objects(Bucket="freed", Delete={"Objects": [{"Key": f"k{i:05d}"} for i in range(half, OBJECTS)]})


def check_objects(c: Coordinator) -> None:
    s3 = c.client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="freed")["Contents"]]
    assert keys == [f"k{i:05d}" for i in range(OBJECTS // 2)]
    for i in (0, OBJECTS // 2 - 1):
        assert s3.get_object(Bucket="freed", Key=f"k{i:05d}")["Body"].read() == body(i, 2)


def kill_workers(c: Coordinator) -> list[int]:
    workers = children(c.proc.pid)
    assert len(workers) == 2, workers
    for p in workers:
        os.kill(p, signal.SIGKILL)
    return workers


def test_blobs_freed_by_killed_workers_are_given_back_while_running_and_after_restart(tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, workers=2)
    try:
        fill_and_free(c)
        # inside the 5 s grace: the freed blobs still await their unlink when the workers die
        refs, queued = referenced_and_queued(c.data_dir)
        killed = kill_workers(c)
        wait_until("both workers restarted", lambda: len(re.findall(RESPAWN, c.log())) == 2)
        wait_until("new workers running", lambda: len(set(children(c.proc.pid)) - set(killed)) == 2)
        wait_for_port(c.port, c.proc, c.log_path)
        check_objects(c)
        # the replacements reap what the dead ones had freed: the disk holds only what is referenced
        wait_until(
            f"blob files == referenced blobs (files {len(blob_files(c.data_dir))}, referenced {len(refs)})",
            lambda: disk_matches_metadata(c.data_dir),
        )
        # a reaper unlinks the files, then forgets their rows
        wait_until("queue emptied", lambda: referenced_and_queued(c.data_dir) == (refs, set()))
        # the blobs they sealed but never committed were swept for by their writer tags (one sweep
        # for both, or one each)
        wait_until(
            "both dead workers swept",
            lambda: {int(p) for m in re.findall(SWEPT, c.log()) for p in m.split(", ")} == set(killed),
        )
    finally:
        c.stop()
    # so the deaths leave nothing for the next start: that stop is clean, and no full scan runs
    assert (c.data_dir / ".clean-shutdown").exists(), c.log()[-3000:]
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        assert disk_matches_metadata(c2.data_dir)
        check_objects(c2)
    finally:
        c2.stop()


def test_blobs_freed_before_the_whole_coordinator_is_killed_are_freed_at_the_next_start(tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, workers=2)
    try:
        fill_and_free(c)
        tree = [c.proc.pid, *children(c.proc.pid)]
        for p in tree:
            os.kill(p, signal.SIGSTOP)  # nobody reaps or respawns in between
        for p in tree:
            os.kill(p, signal.SIGKILL)
        c.proc.wait(timeout=10)
    finally:
        c.stop()
    # every blob file that nothing references is in the queue, which the kill cannot lose
    refs, queued = referenced_and_queued(c.data_dir)
    assert blob_files(c.data_dir) == refs | queued
    assert not refs & queued
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        if queued:  # the reapers may have freed some before the kill
            assert c2.wait_for_log(r"start-up: freed (\d+) queued blobs")[1] == str(len(queued))
        # the queue already gave everything back: the orphan scan finds nothing
        assert c2.wait_for_log(r"orphan sweep: removed (\d+) orphan blobs")[1] == "0"
        assert referenced_and_queued(c2.data_dir) == (refs, set())
        assert disk_matches_metadata(c2.data_dir)
        check_objects(c2)
    finally:
        c2.stop()


def test_temporaries_of_a_killed_worker_are_removed_while_the_coordinator_runs(tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, workers=2)
    socks: list[socket.socket] = []
    try:
        c.client().create_bucket(Bucket="freed")
        socks = [started_put(c, f"freed/slow{i}", 4 * MIB, b"x" * MIB) for i in range(4)]
        wait_until("4 uploads in flight", lambda: len(tmp_files(c.data_dir)) == 4)
        kill_workers(c)
        wait_until("both workers restarted", lambda: len(re.findall(RESPAWN, c.log())) == 2)
        # the supervisor removed the dead workers' temporaries, without waiting for a restart
        wait_until(f"tmp/ empty (left: {tmp_files(c.data_dir)})", lambda: not tmp_files(c.data_dir))
        wait_for_port(c.port, c.proc, c.log_path)  # a replacement serves (on a busy machine, not at once)
        assert c.client().list_objects_v2(Bucket="freed").get("KeyCount") == 0
    finally:
        for s in socks:
            s.close()
        c.stop()
