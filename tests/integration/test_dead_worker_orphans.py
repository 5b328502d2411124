"""A worker that dies between sealing a blob and committing it leaves no orphan behind, while the
coordinator keeps running: the supervisor sweeps the blobs bearing the dead worker's writer tag.

Real coordinator processes with two workers. A test-only hold (TUNNELMESH_TEST_SEALED_HOLD) makes a
worker wait between the seal and the commit, so SIGKILL lands exactly there; the other worker holds
uploads at the same point meanwhile, and those must survive the sweep and commit afterwards.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from conftest import (
    Coordinator,
    blob_files,
    children,
    referenced_and_queued,
    response_status,
    start_coordinator,
    started_put,
    wait_until,
)

KIB = 1024
SEALED_HOLD = "TUNNELMESH_TEST_SEALED_HOLD"
ATTEMPTS = 64  # connections go to a worker by the kernel's hash: both get one long before this


def body(name: str) -> bytes:
    """Past the 32 KiB stored inline, so every object here has a blob file."""
    return (f"{name}/".encode() * (40 * KIB))[: 40 * KIB + len(name)]


def auth(c: Coordinator) -> str:
    return "Basic " + base64.b64encode(f"admin:{c.token}".encode()).decode()


def request(c: Coordinator, method: str, path: str, data: bytes = b"") -> tuple[int, bytes]:
    """One request on a connection of its own (so the kernel picks the worker afresh each time)."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
    try:
        conn.request(method, path, body=data, headers={"Authorization": auth(c)})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def held(hold: Path) -> dict[str, int]:
    """blob id -> pid of the worker holding it sealed and uncommitted."""
    out = {}
    for p in hold.glob("held-*"):
        _, pid, blob = p.name.split("-")
        out[blob] = int(pid)
    return out


def test_a_dead_workers_sealed_blobs_are_swept_while_running_and_a_live_workers_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    release = hold / "release"
    release.touch()  # not holding yet
    monkeypatch.setenv(SEALED_HOLD, str(hold))
    c = start_coordinator(tmp_path, workers=2)
    socks: dict[str, socket.socket] = {}
    try:
        assert request(c, "PUT", "/s3/orph")[0] == 200
        workers = children(c.proc.pid)
        assert len(workers) == 2, workers
        # committed objects written by both workers (the writer tag, an id's last 8 digits, says which)
        committed: dict[str, bytes] = {}
        for i in range(ATTEMPTS):
            key = f"committed{i:02d}"
            committed[key] = body(key)
            assert request(c, "PUT", f"/s3/orph/{key}", committed[key])[0] == 200
            if i >= 3 and len({b[-8:] for b in referenced_and_queued(c.data_dir)[0]}) == 2:
                break
        tags = {b[-8:] for b in referenced_and_queued(c.data_dir)[0]}
        assert len(tags) == 2, "every committed object was written by one worker"

        # from here on every seal waits before its commit: hold uploads until both workers hold one
        release.unlink()
        for i in range(ATTEMPTS):
            key = f"held{i:02d}"
            socks[key] = started_put(c, f"orph/{key}", len(body(key)), body(key))
            sent = len(socks)
            wait_until(f"{key} sealed and held", lambda: len(held(hold)) == sent)  # noqa: B023 - called at once
            if len(set(held(hold).values())) == 2:
                break
        holding = held(hold)
        assert set(holding.values()) == set(workers), (holding, workers)
        victim, survivor = workers
        doomed = {b for b, p in holding.items() if p == victim}
        kept = {b for b, p in holding.items() if p == survivor}
        assert doomed | kept <= blob_files(c.data_dir)
        # each worker wrote under its own tag, and the victim has committed blobs too (to be kept)
        victim_tag = next(iter(doomed))[-8:]
        assert all(b.endswith(victim_tag) for b in doomed)
        assert not any(b.endswith(victim_tag) for b in kept)
        assert any(b.endswith(victim_tag) for b in referenced_and_queued(c.data_dir)[0])

        os.kill(victim, signal.SIGKILL)
        removed = c.wait_for_log(rf"orphan sweep after worker {victim} died: removed (\d+) orphan blobs")
        assert int(removed[1]) == len(doomed)
        c.wait_for_log(rf"orphan sweep after worker {victim} died finished")
        files = blob_files(c.data_dir)
        assert not doomed & files
        # the survivor's uploads, sealed and uncommitted through the whole sweep, are still there
        assert kept <= files
        assert files == referenced_and_queued(c.data_dir)[0] | kept

        # let the survivor commit: its uploads succeed; the victim's connections ended unanswered
        release.touch()
        statuses = {key: response_status(s) for key, s in socks.items()}
        live_keys = [k for k, st in statuses.items() if st == 200]
        dead_keys = [k for k, st in statuses.items() if st is None]
        assert (len(live_keys), len(dead_keys)) == (len(kept), len(doomed)), statuses
        for key in live_keys:
            assert request(c, "GET", f"/s3/orph/{key}") == (200, body(key))
        for key in dead_keys:
            assert request(c, "GET", f"/s3/orph/{key}")[0] == 404
        for key, data in committed.items():
            assert request(c, "GET", f"/s3/orph/{key}") == (200, data)
        assert blob_files(c.data_dir) == referenced_and_queued(c.data_dir)[0]
    finally:
        for s in socks.values():
            s.close()
        release.touch()
        c.stop()
    # the dead worker's orphans were swept: that death does not make the stop unclean
    assert (c.data_dir / ".clean-shutdown").exists(), c.log()[-3000:]


def test_a_stop_before_a_dead_workers_sweep_finished_is_not_clean(tmp_path: Path, monkeypatch) -> None:
    # the sweep waits for this file before it reads anything, so the stop comes before it finished
    release = tmp_path / "release-sweep"
    monkeypatch.setenv("TUNNELMESH_TEST_SWEEP_HOLD", str(release))
    c = start_coordinator(tmp_path, workers=2)
    try:
        victim = children(c.proc.pid)[0]
        os.kill(victim, signal.SIGKILL)
        c.wait_for_log(rf"orphan sweep after worker {victim} died started")
    finally:
        c.stop()
    assert re.search(rf"orphan sweep after worker {victim} died interrupted", c.log()), c.log()
    assert "orphan blobs were not swept; the next start sweeps" in c.log()
    assert not (c.data_dir / ".clean-shutdown").exists()
    # so the next start scans everything
    monkeypatch.delenv("TUNNELMESH_TEST_SWEEP_HOLD")
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        c2.wait_for_log(r"orphan sweep: removed 0 orphan blobs")
        c2.wait_for_log(r"orphan sweep finished")
    finally:
        c2.stop()
    assert (c.data_dir / ".clean-shutdown").exists()
