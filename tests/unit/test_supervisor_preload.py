"""The supervisor imports the workers' code before it forks them (server.preload_worker_code), so that
the workers share those pages copy-on-write instead of each holding its own copy (issue 17: the process
tree's memory); importing must start no thread, since the supervisor forks afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import gc, json, os, sys
from tunnelmesh import server
names = ("granian", "tunnelmesh.asgi", "tunnelmesh.s3.app", "prometheus_client")
before = sorted(m for m in names if m in sys.modules)
server.preload_worker_code()
after = sorted(m for m in names if m in sys.modules)
print(json.dumps([before, after, gc.get_freeze_count() > 0, len(os.listdir("/proc/self/task"))]))
"""


def test_supervisor_preloads_worker_code_and_stays_single_threaded(tmp_path: Path) -> None:
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    before, after, frozen, threads = json.loads(r.stdout)
    assert before == []  # importing tunnelmesh.server alone keeps the CLI light
    assert after == ["granian", "prometheus_client", "tunnelmesh.asgi", "tunnelmesh.s3.app"]
    assert frozen  # out of the collector's reach: a worker's full collection copies none of these pages
    assert threads == 1  # no thread (granian's runtime included) started by importing: forking stays safe
