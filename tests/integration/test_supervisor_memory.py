"""The running supervisor holds the workers' code before forking them (server.preload_worker_code): the
workers share it copy-on-write, which keeps the process tree's PSS within issue 17's bound. Checked by what
the supervisor has mapped, not by a memory size (that would depend on the machine)."""

from __future__ import annotations

import os

from conftest import Coordinator


def _maps(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_supervisor_has_the_worker_code_mapped_and_one_thread(coordinator: Coordinator) -> None:
    pid = coordinator.proc.pid
    assert "_granian" in _maps(pid)  # granian's extension, only a worker's need, loaded before the fork
    assert len(os.listdir(f"/proc/{pid}/task")) == 1  # the supervisor forks: it must have no other thread
