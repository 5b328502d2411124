"""Readiness notification (docs/operations.md 1.7): with `$NOTIFY_SOCKET` set, as systemd sets it for a
Type=notify unit, the supervisor sends READY=1 once a worker answers /healthz and STOPPING=1 when told to
stop; its log names the version at start and says how the stop went."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
import requests
from conftest import free_port, wait_for_port

DEADLINE = 60.0


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    # a short directory of its own: a unix socket's path may not pass 107 bytes
    d = tempfile.mkdtemp(prefix="tm-notify-")
    path = os.path.join(d, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(DEADLINE)
    try:
        yield sock, path
    finally:
        sock.close()
        shutil.rmtree(d)


def messages_until(sock: socket.socket, wanted: str) -> list[dict[str, str]]:
    """Every notification received until one that sets `wanted` (KEY=value), in order."""
    seen: list[dict[str, str]] = []
    while True:
        data = sock.recv(4096).decode()
        seen.append(dict(line.split("=", 1) for line in data.splitlines() if line))
        key, value = wanted.split("=", 1)
        if seen[-1].get(key) == value:
            return seen


def test_ready_after_healthz_answers_and_stopping_at_sigterm(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    port, s3_port = free_port(), free_port()
    config = tmp_path / "coordinator.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nworkers: 2\ns3:\n  data_dir: {tmp_path / 'data'}\n  listen: 127.0.0.1:{s3_port}\n"
    )
    log_path = tmp_path / "coordinator.log"
    env = dict(os.environ, TUNNELMESH_ADMIN_TOKEN="t" * 24, NOTIFY_SOCKET=path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(config)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        # nothing polled the coordinator before READY=1: when it arrives, the first /healthz must answer
        before = messages_until(sock, "READY=1")
        assert before[-1] == {"READY": "1", "STATUS": "serving"}
        r = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=DEADLINE)
        assert (r.status_code, r.text) == (200, "ok\n")
        wait_for_port(s3_port, proc, log_path)  # both listeners up: the stop below is a full one
        proc.send_signal(signal.SIGTERM)
        after = messages_until(sock, "STOPPING=1")
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert after == [{"STOPPING": "1"}]  # nothing between READY and STOPPING
    assert all("READY" not in m for m in before[:-1])  # READY once
    log = log_path.read_text()
    version = metadata.version("tunnelmesh")
    lines = [
        f"tunnelmesh {version} starting",
        f"ready: /healthz answers on 127.0.0.1:{port}",
        "draining: 2 workers",
        "stopped (clean)",
    ]
    at = [log.find(line) for line in lines]
    assert -1 not in at and at == sorted(at), log
    # before any worker exists: the version is in the log whatever the workers do
    assert log.index(f"tunnelmesh {version} starting") < log.index("admin credential")


def test_sd_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunnelmesh.obs.notify import sd_notify  # here: the module-level tests run on code without it

    name = f"tm-notify-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)  # what systemd's '@name' means
        sock.settimeout(DEADLINE)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1\nSTATUS=serving")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving"


def test_sd_notify_is_a_no_op_without_a_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tunnelmesh.obs.notify import sd_notify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not sd_notify("READY=1")
    # a socket that is gone is not the coordinator's failure either
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not sd_notify("READY=1")
