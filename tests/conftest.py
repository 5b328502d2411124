"""Fixtures: a real coordinator process on free loopback ports, real S3 clients pointed at it, and the
helpers the integration tests share (process trees, blob accounting, polling)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tunnelmesh.store.sqlite_meta import SqliteTx


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()


def free_port() -> int:
    """A port for a coordinator to listen on, outside the kernel's ephemeral range: a port the kernel
    handed out for binding to 0 could be taken by any outgoing connection (the suite opens thousands)
    before the coordinator binds it. Each port is handed out once per test process."""
    low = min(_ephemeral_low(), 65536)
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(10000, low) if low > 11000 else rng.randrange(low, 65536)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found")


@dataclass
class Coordinator:
    proc: subprocess.Popen
    data_dir: Path
    port: int
    s3_port: int
    token: str
    config_path: Path
    log_path: Path

    @property
    def endpoint(self) -> str:
        """The S3 API under the /s3 path of the main listener."""
        return f"http://127.0.0.1:{self.port}/s3"

    @property
    def root_endpoint(self) -> str:
        """The S3 API at the root of the second listener."""
        return f"http://127.0.0.1:{self.s3_port}"

    def client(self, endpoint: str | None = None, **config: object) -> object:
        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            aws_access_key_id="admin",
            aws_secret_access_key=self.token,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli_command(self, *args: str, token: str | None = None) -> list[str]:
        """The real `tunnelmesh` executable, pointed at this coordinator by explicit flags."""
        endpoint = ["--endpoint", f"http://127.0.0.1:{self.port}", "--token", token or self.token]
        return [tunnelmesh_exe(), *args, *endpoint]

    def cli(self, *args: str, token: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a CLI command; no TUNNELMESH_* variables leak in from the test's environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
        return subprocess.run(
            self.cli_command(*args, token=token), capture_output=True, text=True, timeout=timeout, env=env
        )

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match[str]:
        """The first match of `pattern` in the log, once it appears."""
        deadline = time.monotonic() + timeout
        while (m := re.search(pattern, self.log())) is None:
            assert time.monotonic() < deadline, f"{pattern!r} not logged within {timeout} s:\n{self.log()[-3000:]}"
            time.sleep(0.05)
        return m

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def started_put(c: Coordinator, path: str, declared: int, sent: bytes) -> socket.socket:
    """A PUT under /s3 declaring `declared` body bytes of which `sent` are on the way (all of them,
    or only the start); the caller reads the response, or holds the socket open, as it needs."""
    token = base64.b64encode(f"admin:{c.token}".encode()).decode()
    s = socket.create_connection(("127.0.0.1", c.port), timeout=60)
    head = f"PUT /s3/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\n"
    s.sendall(f"{head}Content-Length: {declared}\r\n\r\n".encode() + sent)
    return s


def response_status(s: socket.socket) -> int | None:
    """The status of the response on `s`, or None if the connection ended without one."""
    buf = b""
    try:
        while b"\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                return None
            buf += chunk
    except ConnectionResetError:
        return None
    return int(buf.split(b" ", 2)[1])


def tunnelmesh_exe() -> str:
    """The installed `tunnelmesh` console script (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("tunnelmesh")
    if beside.exists():
        return str(beside)
    found = shutil.which("tunnelmesh")
    assert found, "the tunnelmesh console script is not installed"
    return found


def bucket_exists(s3, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        return False
    return True


def wait_for_port(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"coordinator exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"coordinator did not listen on {port}:\n{log_path.read_text()}")


def start_coordinator(
    tmp: Path,
    extra_yaml: str = "",
    token: str | None = None,
    data_dir: Path | None = None,
    workers: int = 2,
    env: dict[str, str] | None = None,
    entry: list[str] | None = None,
) -> Coordinator:
    """`extra_yaml` is appended after the s3 block (indent it to add s3 keys); `env`: more variables; `entry`:
    what runs `coordinator --config ...` (default `python -m tunnelmesh`; tests/support/ has a clocked one)."""
    port, s3_port = free_port(), free_port()
    data_dir = data_dir or tmp / "data"
    token = token or secrets.token_urlsafe(24)
    config = tmp / f"coordinator-{port}.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nworkers: {workers}\ns3:\n  data_dir: {data_dir}\n  listen: 127.0.0.1:{s3_port}\n"
        + extra_yaml
    )
    log_path = tmp / f"coordinator-{port}.log"
    env = dict(os.environ, TUNNELMESH_ADMIN_TOKEN=token, **(env or {}))
    proc = subprocess.Popen(
        [*(entry or [sys.executable, "-m", "tunnelmesh"]), "coordinator", "--config", str(config)],
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    c = Coordinator(proc, data_dir, port, s3_port, token, config, log_path)
    try:
        wait_for_port(port, proc, log_path)
        wait_for_port(s3_port, proc, log_path)
    except Exception:
        c.stop()
        raise
    return c


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("coord"))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3(coordinator: Coordinator):
    """boto3 at its current defaults (CRC32 request checksums, response validation)."""
    return coordinator.client()


@pytest.fixture
def bucket(s3) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


# ---- helpers shared by the integration tests ------------------------------------------------------


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `cond` until it holds; fail naming `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def descendants(root: int) -> list[int]:
    """`root` first, then every process below it (workers, their servers), read from /proc's ppids."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def tree_rss(root: int) -> int:
    """The resident memory of `root` and all its descendants, in bytes."""
    total = 0
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def children(pid: int) -> list[int]:
    """The direct children of `pid` (the supervisor's workers), from each thread's children list."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def blob_files(data_dir: Path) -> set[str]:
    """The names of the blob files on disk (blobs/<xx>/<id>)."""
    return {f.name for f in (data_dir / "blobs").glob("*/*")}


def referenced_and_queued(data_dir: Path) -> tuple[set[str], set[str]]:
    """Blobs named by objects and parts, and blobs queued as freed, in one snapshot (none queued
    when the data dir predates the `freed_blobs` table)."""
    conn = sqlite3.connect(data_dir / "meta.sqlite3", timeout=30)
    try:
        conn.execute("BEGIN")
        refs = {seg[0] for (s,) in conn.execute("SELECT segments FROM objects") for seg in json.loads(s)}
        refs |= {b for (b,) in conn.execute("SELECT blob FROM parts")}
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        queued = {b for (b,) in conn.execute("SELECT blob FROM freed_blobs")} if "freed_blobs" in tables else set()
        conn.execute("COMMIT")
    finally:
        conn.close()
    return refs, queued


def referenced_blobs(data_dir: Path) -> set[str]:
    """The blobs the metadata names, as the store itself counts them (read-only connection)."""
    conn = sqlite3.connect(f"file:{data_dir / 'meta.sqlite3'}?mode=ro", uri=True, isolation_level=None)
    try:
        return SqliteTx(conn).referenced_blobs()
    finally:
        conn.close()


def assert_blobs_accounted_for(c: Coordinator, timeout: float = 60.0) -> None:
    """No referenced blob is missing, and every unreferenced one is deleted once its grace period is over.

    Call it while no request is in flight: the file listing and the metadata are read separately.
    """
    deadline = time.monotonic() + timeout
    while True:
        files, refs = blob_files(c.data_dir), referenced_blobs(c.data_dir)
        missing = refs - files
        assert not missing, f"{len(missing)} blobs named by the metadata are gone: {sorted(missing)[:5]}"
        orphans = files - refs
        if not orphans:
            return
        # freed blobs are deleted after a grace period; leaked ones never are
        assert time.monotonic() < deadline, f"{len(orphans)} blobs no commit names: {sorted(orphans)[:5]}"
        time.sleep(0.2)


def storage_verify_ok(c: Coordinator) -> None:
    """`tunnelmesh storage verify` exits 0 and reports the store consistent."""
    r = c.cli("storage", "verify", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"], r.stdout


def md5_etag(parts: list[bytes]) -> str:
    """The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then a dash and the part count."""
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f'"{digest}-{len(parts)}"'


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", response) or (S3 error code, None)."""
    try:
        return "ok", fn()
    except ClientError as e:
        return e.response["Error"]["Code"], None
