"""`system restore` is all or nothing across a crash: the coordinator (supervisor and workers) is
SIGKILLed at random moments during restores between two archives A and B that differ both ways
(peers only one holds, peers revoked in one and active in the other, the network config), and after
each restart the state is exactly A or exactly B: the same peers authenticate, the revoked ones are
refused, and the usage counters agree with the objects."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from conftest import Coordinator, descendants, start_coordinator

BULK = 300  # enough records that the restore takes long enough to be hit in the middle
ITERATIONS = 15


def api(c: Coordinator, method: str, path: str, doc: dict | None = None) -> dict:
    r = requests.request(method, f"http://127.0.0.1:{c.port}/api/{path}", json=doc, auth=("admin", c.token), timeout=60)
    assert r.status_code in (200, 201), r.text
    return r.json()


def add_peer(c: Coordinator, name: str) -> dict[str, str]:
    doc = api(c, "POST", "peers", {"name": name, "admin": False})
    return {"peer_id": doc["peer_id"], "token": doc["token"]}


def authenticates(c: Coordinator, peer: dict[str, str]) -> bool:
    r = requests.get(f"{c.endpoint}/", auth=(peer["peer_id"], peer["token"]), timeout=60)
    assert r.status_code in (200, 403), r.text
    return r.status_code == 200


def state(c: Coordinator, probes: dict[str, dict[str, str]]) -> dict:
    """Everything that tells A from B: every peer with its revocation, the network, who authenticates."""
    return {
        "peers": sorted((p["id"], bool(p["revoked"])) for p in api(c, "GET", "peers")["peers"]),
        "network": api(c, "GET", "network")["mesh_name"],
        "shares": sorted(s["name"] for s in api(c, "GET", "shares")["shares"]),
        "authenticate": sorted(name for name, p in probes.items() if authenticates(c, p)),
    }


def many_ids(tag: str) -> list[str]:
    """Peer ids enough to make a share record larger than the inline limit (32 KiB)."""
    return [f"{tag}-{i:04d}-" + "x" * 50 for i in range(700)]


def summary(s: dict) -> dict:
    return {**{k: v for k, v in s.items() if k != "peers"}, "peers": len(s["peers"])}


def kill_coordinator(c: Coordinator) -> None:
    """SIGKILL the supervisor and every worker it forked, as a power cut would."""
    pids = descendants(c.proc.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    c.proc.wait(timeout=30)
    # the workers are gone too before anyone looks at the data dir again
    deadline = time.monotonic() + 30
    for pid in pids[1:]:
        while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
            time.sleep(0.01)


def restart(tmp: Path, c: Coordinator) -> Coordinator:
    new = start_coordinator(tmp, token=c.token, data_dir=c.data_dir)
    new.wait_for_log(r"\d+ workers; data in")
    api(new, "GET", "peers")  # a worker answers
    return new


def test_a_restore_killed_at_any_moment_leaves_exactly_the_old_state_or_the_archive(tmp_path) -> None:
    c = start_coordinator(tmp_path)
    try:
        c.client().create_bucket(Bucket="media")
        # B: p1, p2, p4 active, p3 unknown, mesh "before", share "music"
        probes = {n: add_peer(c, n) for n in ("p1", "p2", "p4")}
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: add_peer(c, f"bulk-{i:03d}"), range(BULK)))
        api(c, "PUT", "network", {"key": "mesh_name", "value": "before"})
        api(c, "POST", "shares", {"name": "music", "bucket": "media"})
        # records past the inline size are restored as blobs: one in each archive
        api(c, "POST", "shares", {"name": "big-b", "bucket": "media", "peers": many_ids("b")})
        archive_b = tmp_path / "b.tar.gz"
        assert c.cli("system", "backup", str(archive_b)).returncode == 0
        # A: p1 and p4 revoked, p3 added, mesh "after", share "video" instead of "music"
        api(c, "POST", f"peers/{probes['p1']['peer_id']}/revoke")
        api(c, "POST", f"peers/{probes['p4']['peer_id']}/revoke")
        probes["p3"] = add_peer(c, "p3")
        api(c, "PUT", "network", {"key": "mesh_name", "value": "after"})
        requests.delete(f"http://127.0.0.1:{c.port}/api/shares/music", auth=("admin", c.token)).raise_for_status()
        api(c, "POST", "shares", {"name": "video", "bucket": "media"})
        requests.delete(f"http://127.0.0.1:{c.port}/api/shares/big-b", auth=("admin", c.token)).raise_for_status()
        api(c, "POST", "shares", {"name": "big-a", "bucket": "media", "peers": many_ids("a")})
        archive_a = tmp_path / "a.tar.gz"
        assert c.cli("system", "backup", str(archive_a)).returncode == 0

        a = state(c, probes)
        assert a["authenticate"] == ["p2", "p3"] and a["network"] == "after" and a["shares"] == ["big-a", "video"]
        # an uninterrupted restore, timed, so the kills below spread over the whole of one
        started = time.monotonic()
        assert c.cli("system", "restore", str(archive_b)).returncode == 0
        duration = time.monotonic() - started
        b = state(c, probes)
        assert b["authenticate"] == ["p1", "p2", "p4"] and b["network"] == "before"
        assert b["shares"] == ["big-b", "music"]
        assert len(b["peers"]) == len(a["peers"]) - 1
        states = {"A": a, "B": b}
        archives = {"A": archive_a, "B": archive_b}
        current = "B"

        rng = random.Random(20261130)
        outcomes = []
        for i in range(ITERATIONS):
            target = "A" if current == "B" else "B"
            delay = rng.uniform(0, duration * 1.2)
            restore = subprocess.Popen(
                c.cli_command("system", "restore", str(archives[target])),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(delay)
            kill_coordinator(c)
            restore.wait(timeout=120)
            c = restart(tmp_path, c)
            now = state(c, probes)
            assert now in (a, b), f"iteration {i} (killed {delay * 1000:.0f} ms in): a mix of A and B: {summary(now)}"
            current = "A" if now == a else "B"
            outcomes.append("old" if current != target else "new")
            verify = c.cli("storage", "verify")
            assert verify.returncode == 0, verify.stdout + verify.stderr
            assert states[current] == now
        print(f"restore takes {duration * 1000:.0f} ms; after a kill: {outcomes}")
    finally:
        c.stop()
