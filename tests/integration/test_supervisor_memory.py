"""What the coordinator's processes hold (issue 17: the process tree's PSS), checked by what each has mapped,
not by a memory size (that would depend on the machine).

The supervisor holds the workers' code before forking them (server.preload_worker_code), so the workers
share it copy-on-write. cryptography, needed only for SSE-S3, is loaded by the supervisor (shared) when a key
file is configured, and else not at all (no encrypted row can exist then: server.check_sse_keys)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import Coordinator, start_coordinator, tunnelmesh_exe


def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def _tree(c: Coordinator) -> list[int]:
    pid = c.proc.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [pid, *(int(p) for p in f.read().split())]


def test_supervisor_has_the_worker_code_mapped_and_one_thread(coordinator: Coordinator) -> None:
    pid = coordinator.proc.pid
    assert "_granian" in _maps(pid)  # granian's extension, only a worker's need, loaded before the fork
    assert len(os.listdir(f"/proc/{pid}/task")) == 1  # the supervisor forks: it must have no other thread


def test_cryptography_not_loaded_without_sse(coordinator: Coordinator, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100_000)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x" * 100_000
    tree = _tree(coordinator)
    assert len(tree) >= 3  # the supervisor and its two workers
    for pid in tree:
        assert "/cryptography/" not in _maps(pid), pid  # no SSE-S3 configured, no encrypted object


def test_sse_configured_supervisor_loads_cryptography_for_its_workers(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "sse-keys.json"
    key_file.parent.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
    r = subprocess.run(
        [tunnelmesh_exe(), "sse", "init", "--key-file", str(key_file)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr
    c = start_coordinator(tmp_path, f"  sse_key_file: {key_file}\n")
    try:
        assert "/cryptography/" in _maps(c.proc.pid)
    finally:
        c.stop()
