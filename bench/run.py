"""Benchmark: tunnelmesh, moto's server and the raw limits, side by side, in one run, on one disk.

    python bench/run.py [--seconds 5] [--large-count 6] [--million] [--write-readme]
                        [--src DIR] [--json FILE] [--skip-moto] [--skip-limits] [--access-policy N]

Each S3 server is started on a free loopback port and driven by the same load generator
(SigV4-signed requests, payload hashes verified by the server). The limits are measured in the
same run: nginx serving the same files from the same disk for GET/HEAD, and the disk's own
write rate with fsync for PUT. Every figure is printed as a ratio to moto and to the limit.
With --access-policy N, only tunnelmesh's 4 KiB workloads run, as a non-owner peer under a bucket
policy of N statements (bench/access_policy.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import platform
import random
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from access_policy import prepare
from loadgen import Result, Signer, run_load

SMALL = 4096
LARGE = 64 * 1024 * 1024
PART = 16 * 1024 * 1024
GIB = 1024**3
EMPTY = hashlib.sha256(b"").hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listening on {port}")


def tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        stack.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, to the nanosecond where the kernel allows.

    /proc/PID/stat counts in clock ticks (10 ms: too coarse for a workload of a few requests) but
    includes threads that have exited; /proc/PID/task/TID/schedstat counts nanoseconds of live
    threads only. Ticks truncate the true total, so the larger of the two is exact while no thread
    has exited, and within two ticks once one has (the server's threads do come and go: the
    nanosecond sum alone read 3% low on the 1 GiB transfers)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    ns = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                ns += int(f.read().split()[0])
    return max(ticks, ns / 1e9)


def tree_stats(pid: int) -> tuple[int, float]:
    """(resident bytes, CPU seconds) of a process and all its descendants."""
    rss, cpu = 0, 0.0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                rss += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            cpu += cpu_seconds(p)
        except (OSError, StopIteration, IndexError, ValueError):
            pass
    return rss, cpu


class Monitor:
    """Peak RSS and CPU seconds of a process tree while a workload runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.cpu, self._stop = pid, 0, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_stats(self.pid)[0])
            self._stop.wait(0.05)

    def __enter__(self) -> Monitor:
        self._cpu0 = tree_stats(self.pid)[1]
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.cpu = tree_stats(self.pid)[1] - self._cpu0


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    base: str
    prefix: str
    signer: Signer | None
    data_dir: Path | None = None
    restart: Callable[..., float] | None = None

    def headers(self, method: str, path: str, payload_hash: str, query: str = "") -> list[tuple[str, str]]:
        if self.signer is None:
            return []
        return self.signer.headers(method, self.base.removeprefix("http://"), path, query, payload_hash)

    def stop(self) -> None:
        """SIGTERM to the server's main process (a clean stop), then kill whatever is left."""
        family = tree(self.proc.pid)
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        for p in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, 9)


def start_tunnelmesh(
    tmp: Path,
    name: str = "tunnelmesh",
    workers: int = 0,
    s3_extra: str = "",
    token: str | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """A coordinator at its production settings; `workers` 0 is one per core, `s3_extra` more indented
    lines of its s3 section (bench/scale_out.py starts several, each with its own name and data dir)."""
    port, s3_port = free_port(), free_port()
    token = token or secrets.token_urlsafe(24)
    data = tmp / f"{name}-data"
    cfg = tmp / f"{name}.yaml"
    workers_line = f"workers: {workers}\n" if workers else ""  # none: the default, one per core
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\nlog_level: warning\n{workers_line}"
        f"s3:\n  data_dir: {data}\n  listen: 127.0.0.1:{s3_port}\n  max_size: 1TB\n{s3_extra}"
    )
    env = dict(os.environ, TUNNELMESH_ADMIN_TOKEN=token, **(env or {}))

    def spawn() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    server = Server(name, spawn(), f"http://127.0.0.1:{port}", "/s3", Signer("admin", token), data)
    wait_port(port)
    wait_port(s3_port)

    def restart(crash: bool = False) -> float:
        if crash:  # SIGKILL to the whole tree: the next start must recover
            family = tree(server.proc.pid)
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            server.proc.wait()
            while any(Path(f"/proc/{pid}").exists() for pid in family):  # their sockets close on exit
                time.sleep(0.01)
        else:
            server.stop()
        t0 = time.perf_counter()
        server.proc = spawn()
        wait_port(port)
        wait_port(s3_port)
        return time.perf_counter() - t0

    server.restart = restart
    return server


def start_moto(tmp: Path) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return Server("moto", proc, f"http://127.0.0.1:{port}", "", Signer("testing", "testing"))


def start_nginx(tmp: Path, root: Path) -> Server | None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"daemon off; worker_processes auto; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n"
        f"  client_body_temp_path {tmp}/ngx-body; proxy_temp_path {tmp}/ngx-proxy;\n"
        f"  fastcgi_temp_path {tmp}/ngx-fcgi; uwsgi_temp_path {tmp}/ngx-uwsgi; scgi_temp_path {tmp}/ngx-scgi;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n"
    )
    proc = subprocess.Popen([nginx, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return Server("nginx", proc, f"http://127.0.0.1:{port}", "", None)


def start_null(tmp: Path, store: bool = False) -> Server:
    """The framework floor (bench/null_server.py): the coordinator's HTTP stack with nothing behind
    it, or (store=True) with only the hashing and the write + fsync that a signed PUT needs."""
    port = free_port()
    args = [str(port)]
    if store:
        (tmp / "null-store").mkdir(exist_ok=True)
        args.append(str(tmp / "null-store"))
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "null_server.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return Server("null", proc, f"http://127.0.0.1:{port}", "", Signer("null", "null"))


def hashing_rate(data: bytes) -> float:
    """MB/s of MD5 (the ETag) plus SHA-256 (the signed payload) of `data` on one core."""
    t0 = time.perf_counter()
    hashlib.md5(data).digest()
    hashlib.sha256(data).digest()
    return len(data) / (time.perf_counter() - t0) / 1e6


def disk_fsync_rate(tmp: Path, size: int = LARGE, rounds: int = 4) -> float:
    """MB/s of writing `size` bytes in 1 MiB chunks and fsyncing, on the benchmark's disk."""
    chunk = os.urandom(1 << 20)
    best = []
    for i in range(rounds):
        path = tmp / f"disk-probe-{i}"
        t0 = time.perf_counter()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        for _ in range(size // len(chunk)):
            os.write(fd, chunk)
        os.fsync(fd)
        os.close(fd)
        best.append(size / (time.perf_counter() - t0) / 1e6)
        path.unlink()
    return sorted(best)[len(best) // 2]


@dataclass
class Row:
    name: str
    unit: str  # "ops" or "MB"
    results: dict[str, Result] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    limit: float | None = None  # the raw limit in the same unit


def value(r: Result, unit: str) -> float:
    return r.ops_per_s if unit == "ops" else r.mb_per_s


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.rows: dict[str, Row] = {}
        self.extra: dict[str, dict[str, str]] = {}
        self.access = ""  # --access-policy: who signs the workloads and what lets it in, for the report
        self.large_file = tmp / "large.bin"
        self.part_file = tmp / "part.bin"
        with self.large_file.open("wb") as f:
            for _ in range(LARGE // (1 << 20)):
                f.write(os.urandom(1 << 20))
        self.part_file.write_bytes(self.large_file.read_bytes()[:PART])
        self.large_hash = hashlib.sha256(self.large_file.read_bytes()).hexdigest()
        self.part_hash = hashlib.sha256(self.part_file.read_bytes()).hexdigest()
        self.part_md5 = hashlib.md5(self.part_file.read_bytes()).hexdigest()
        self.small = os.urandom(SMALL)
        self.small_hash = hashlib.sha256(self.small).hexdigest()

    def record(self, name: str, unit: str, server: str, result: Result, mon: Monitor | None) -> None:
        row = self.rows.setdefault(name, Row(name, unit))
        row.results[server] = result
        if mon is not None:
            row.rss[server], row.cpu[server] = mon.peak, mon.cpu

    async def load(self, s: Server, name: str, unit: str, conc: int, make, total=None, duration=None) -> Result:
        mon = Monitor(s.proc.pid)
        with mon:
            r = await run_load(s.base, conc, make, total=total, duration=duration)
        if r.errors:
            print(f"  {s.name} {name}: {r.errors} errors", file=sys.stderr)
        self.record(name, unit, s.name, r, mon)
        return r

    def req(
        self,
        s: Server,
        method: str,
        path: str,
        payload_hash: str = EMPTY,
        query: str = "",
        body=None,
        body_file=None,
        payload: int = 0,
        extra: list[tuple[str, str]] | None = None,
    ):
        target = path + (f"?{query}" if query else "")
        return method, target, s.headers(method, path, payload_hash, query) + (extra or []), body, body_file, payload

    async def s3_server(self, s: Server) -> None:
        a = self.args
        b = f"{s.prefix}/bench"
        if a.access_policy is not None:
            await self.access_policy(s, b)
            return
        await run_load(s.base, 1, lambda i: self.req(s, "PUT", b), total=1)
        await self.small_objects(s, b)
        fd = os.open(self.large_file, os.O_RDONLY)
        try:
            await self.load(
                s,
                "64 MiB PUT c2",
                "MB",
                2,
                lambda i: self.req(s, "PUT", f"{b}/large/{i}", self.large_hash, body_file=(fd, LARGE), payload=LARGE),
                total=a.large_count,
            )
        finally:
            os.close(fd)
        await self.load(
            s,
            "64 MiB GET c2",
            "MB",
            2,
            lambda i: self.req(s, "GET", f"{b}/large/{i % a.large_count}"),
            total=a.large_count,
        )
        await self.multipart(s, b)
        await self.listing(s, b)
        await self.delete_objects(s, b)
        await self.versioned(s)
        if s.name == "tunnelmesh":
            await self.gib_transfers(s, b)
            if a.million:
                await self.million(s)

    async def access_policy(self, s: Server, b: str) -> None:
        """--access-policy N: only the 4 KiB workloads, signed by a peer that neither owns the bucket nor is an
        admin, let in by a grant (N = 0) or by a bucket policy of N statements (bench/access_policy.py)."""
        assert s.signer is not None
        setup = prepare(s.base, s.prefix, s.signer.secret, b.rsplit("/", 1)[1], self.args.access_policy)
        self.access = setup.describe()
        print(f"  {self.access}", file=sys.stderr)
        await self.small_objects(replace(s, signer=Signer(setup.peer_id, setup.token)), b)

    async def small_objects(self, s: Server, b: str) -> None:
        """4 KiB PUT, then GET and HEAD of what was put, at concurrency 16 for --seconds each."""
        a = self.args
        count = 0

        def small_put(i: int):
            nonlocal count
            count = max(count, i + 1)
            return self.req(s, "PUT", f"{b}/small/{i}", self.small_hash, body=self.small, payload=SMALL)

        await self.load(s, "4 KiB PUT c16", "ops", 16, small_put, duration=a.seconds)
        await self.load(
            s, "4 KiB GET c16", "ops", 16, lambda i: self.req(s, "GET", f"{b}/small/{i % count}"), duration=a.seconds
        )
        await self.load(
            s, "4 KiB HEAD c16", "ops", 16, lambda i: self.req(s, "HEAD", f"{b}/small/{i % count}"), duration=a.seconds
        )

    async def multipart(self, s: Server, b: str) -> None:
        import urllib.request

        key = f"{b}/multipart-1gib"
        req = urllib.request.Request(
            s.base + key + "?uploads=", method="POST", headers=dict(s.headers("POST", key, EMPTY, "uploads="))
        )
        body = urllib.request.urlopen(req).read().decode()
        upload_id = body.split("<UploadId>")[1].split("</UploadId>")[0]
        parts = GIB // PART
        fd = os.open(self.part_file, os.O_RDONLY)
        q = lambda n: f"partNumber={n}&uploadId={upload_id}"  # noqa: E731
        try:
            mon = Monitor(s.proc.pid)
            with mon:
                t0 = time.perf_counter()
                r = await run_load(
                    s.base,
                    4,
                    lambda i: self.req(s, "PUT", key, self.part_hash, q(i + 1), body_file=(fd, PART), payload=PART),
                    total=parts,
                )
                doc = (
                    "<CompleteMultipartUpload>"
                    + "".join(
                        f'<Part><PartNumber>{n}</PartNumber><ETag>"{self.part_md5}"</ETag></Part>'
                        for n in range(1, parts + 1)
                    )
                    + "</CompleteMultipartUpload>"
                )
                data = doc.encode()
                done = await run_load(
                    s.base,
                    1,
                    lambda i: self.req(
                        s, "POST", key, hashlib.sha256(data).hexdigest(), f"uploadId={upload_id}", body=data
                    ),
                    total=1,
                )
                r.seconds = time.perf_counter() - t0
                r.errors += done.errors
        finally:
            os.close(fd)
        self.record("1 GiB multipart PUT, 16 MiB parts c4", "MB", s.name, r, mon)

    async def listing(self, s: Server, b: str) -> None:
        n = 10_000
        await run_load(s.base, 16, lambda i: self.req(s, "PUT", f"{b}/list/{i:07d}", EMPTY, body=b""), total=n)
        rnd = random.Random(1)

        def page(i: int):
            start = f"list/{rnd.randrange(n - 1000):07d}"
            query = f"delimiter=%2F&list-type=2&max-keys=1000&prefix=list%2F&start-after={start.replace('/', '%2F')}"
            return self.req(s, "GET", b, EMPTY, query)

        await self.load(s, "ListObjectsV2 page of 1000, 10k keys", "ops", 1, page, total=30)

    async def delete_objects(self, s: Server, b: str) -> None:
        n = 3000
        await run_load(s.base, 16, lambda i: self.req(s, "PUT", f"{b}/del/{i}", EMPTY, body=b""), total=n)

        def batch(i: int):
            doc = (
                "<Delete>"
                + "".join(f"<Object><Key>del/{k}</Key></Object>" for k in range(i * 1000, i * 1000 + 1000))
                + "</Delete>"
            ).encode()
            md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
            return self.req(
                s, "POST", b, hashlib.sha256(doc).hexdigest(), "delete=", body=doc, extra=[("content-md5", md5)]
            )

        await self.load(s, "DeleteObjects of 1000 keys", "ops", 1, batch, total=3)

    async def versioned(self, s: Server) -> None:
        """A versioned bucket: 4 KiB overwrites of 1,000 keys (each a new version, the old one kept), reads of
        the current versions, and pages of both listings over keys with several versions each."""
        a = self.args
        b = f"{s.prefix}/bench-versioned"
        await run_load(s.base, 1, lambda i: self.req(s, "PUT", b), total=1)
        doc = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
        await run_load(
            s.base,
            1,
            lambda i: self.req(s, "PUT", b, hashlib.sha256(doc).hexdigest(), "versioning=", body=doc),
            total=1,
        )
        keys = 1000

        def put(i: int):
            return self.req(s, "PUT", f"{b}/v/{i % keys:05d}", self.small_hash, body=self.small, payload=SMALL)

        await self.load(s, "versioned: 4 KiB PUT c16", "ops", 16, put, duration=a.seconds)
        await self.load(
            s,
            "versioned: 4 KiB GET c16",
            "ops",
            16,
            lambda i: self.req(s, "GET", f"{b}/v/{i % keys:05d}"),
            duration=a.seconds,
        )
        await self.load(
            s,
            "versioned: ListObjectsV2 page of 1000",
            "ops",
            1,
            lambda i: self.req(s, "GET", b, EMPTY, "list-type=2&max-keys=1000&prefix=v%2F"),
            total=30,
        )
        await self.load(
            s,
            "versioned: ListObjectVersions page of 1000",
            "ops",
            1,
            lambda i: self.req(s, "GET", b, EMPTY, "max-keys=1000&prefix=v%2F&versions="),
            total=30,
        )

    async def gib_transfers(self, s: Server, b: str) -> None:
        """Peak RSS while two 1 GiB objects go up and two come down at once."""
        size = GIB
        big = self.tmp / "gib.bin"
        with big.open("wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(size >> 20):
                f.write(chunk)
        h = hashlib.sha256(big.read_bytes()).hexdigest()
        fd = os.open(big, os.O_RDONLY)
        try:
            await run_load(
                s.base, 2, lambda i: self.req(s, "PUT", f"{b}/gib/{i}", h, body_file=(fd, size), payload=size), total=2
            )

            def mixed(i: int):
                if i < 2:
                    return self.req(s, "PUT", f"{b}/gib/up{i}", h, body_file=(fd, size), payload=size)
                return self.req(s, "GET", f"{b}/gib/{i - 2}")

            await self.load(s, "2x1 GiB PUT + 2x1 GiB GET at once", "MB", 4, mixed, total=4)
        finally:
            os.close(fd)
            big.unlink()

    async def million(self, s: Server) -> None:
        """List-page cost and start-up time with 1,000,000 objects (rows written straight to SQLite)."""
        assert s.data_dir is not None and s.restart is not None
        db = sqlite3.connect(s.data_dir / "meta.sqlite3", timeout=60)
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT OR REPLACE INTO objects(bucket, key, size, etag, mtime, headers, checksums, segments, owner, data) "
            "VALUES ('bench', ?, 0, 'd41d8cd98f00b204e9800998ecf8427e', ?, '{}', '{}', '[]', 'admin', x'')",
            ((f"million/{i:07d}", now) for i in range(1_000_000)),
        )
        db.execute("UPDATE buckets SET objects = objects + 1000000 WHERE name = 'bench'")
        db.execute("COMMIT")
        db.close()
        clean = s.restart()
        crashed = s.restart(crash=True)
        self.extra["start-up with 1,000,000 objects (until both listeners accept)"] = {
            "tunnelmesh": f"{clean:.2f} s after a clean stop, {crashed:.2f} s after SIGKILL"
        }
        rnd = random.Random(2)

        def page(i: int):
            start = f"million%2F{rnd.randrange(999_000):07d}"
            query = f"delimiter=%2F&list-type=2&max-keys=1000&prefix=million%2F&start-after={start}"
            return self.req(s, "GET", f"{s.prefix}/bench", EMPTY, query)

        await self.load(s, "ListObjectsV2 page of 1000, 1M keys", "ops", 1, page, total=30)

    async def limits(self, nginx: Server | None) -> None:
        rate = disk_fsync_rate(self.tmp)
        for name in ("64 MiB PUT c2", "1 GiB multipart PUT, 16 MiB parts c4"):
            self.rows.setdefault(name, Row(name, "MB")).limit = rate
        self.extra["disk write + fsync, 64 MiB"] = {"limit": f"{rate:.0f} MB/s"}
        hashing = hashing_rate(self.large_file.read_bytes())
        cores = os.cpu_count() or 1
        self.extra["MD5 + SHA-256 of a signed PUT, one core"] = {
            "limit": f"{hashing:.0f} MB/s; {cores} cores at most {cores * hashing:.0f} MB/s, "
            f"{cores * hashing / rate:.0%} of the disk, before any I/O"
        }
        if nginx is None:
            return
        await run_load(nginx.base, 1, lambda i: ("GET", "/small/0", [], None, None, 0), total=1)
        for name, path, conc, kw in (
            ("4 KiB GET c16", lambda i: f"/small/{i % 1000}", 16, {"duration": self.args.seconds}),
            ("4 KiB HEAD c16", lambda i: f"/small/{i % 1000}", 16, {"duration": self.args.seconds}),
            ("64 MiB GET c2", lambda i: f"/large/{i % self.args.large_count}", 2, {"total": self.args.large_count}),
        ):
            method = "HEAD" if "HEAD" in name else "GET"
            r = await run_load(nginx.base, conc, lambda i, p=path, m=method: (m, p(i), [], None, None, 0), **kw)
            if r.errors:
                raise RuntimeError(f"nginx answered {r.errors} errors on {name}: the limit would be wrong")
            row = self.rows[name]
            row.limit = value(r, row.unit)

    async def bare_stack(self, null: Server, hashing: Server) -> None:
        """The same HTTP stack with nothing behind it (the small-PUT limit), and with only the work
        a signed, durable PUT cannot skip (the ceiling for large PUTs)."""
        r = await run_load(
            null.base,
            16,
            lambda i: ("PUT", f"/n/{i}", null.headers("PUT", f"/n/{i}", self.small_hash), self.small, None, SMALL),
            duration=self.args.seconds,
        )
        self.rows["4 KiB PUT c16"].limit = r.ops_per_s
        self.extra["4 KiB PUT limit"] = {
            "": "the same HTTP stack with nothing behind it: granian and an ASGI app that reads the body "
            "and answers 200 (bench/null_server.py)"
        }
        fd = os.open(self.large_file, os.O_RDONLY)
        try:
            r = await run_load(
                hashing.base,
                2,
                lambda i: ("PUT", f"/n/{i}", [], None, (fd, LARGE), LARGE),
                total=self.args.large_count,
            )
        finally:
            os.close(fd)
        tm = self.rows["64 MiB PUT c2"].results["tunnelmesh"].mb_per_s
        self.extra["64 MiB PUT c2 on the bare stack"] = {
            "ceiling": f"{r.mb_per_s:.0f} MB/s (granian, MD5 + SHA-256, write + fsync, nothing else; "
            f"tunnelmesh reaches {tm / r.mb_per_s:.0%} of it)"
        }

    def report(self) -> str:
        a = self.args
        lines = [
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; "
            f"`python bench/run.py --seconds {a.seconds:g} --large-count {a.large_count}"
            f"{' --million' if a.million else ''}"
            f"{f' --access-policy {a.access_policy}' if a.access_policy is not None else ''}`."
            + (f" {self.access[0].upper()}{self.access[1:]}." if self.access else ""),
            "",
            "| workload | tunnelmesh | p50 / p99 ms | moto | tm / moto | limit | tm / limit | tm peak RSS | tm CPU s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows.values():
            tm, moto = row.results.get("tunnelmesh"), row.results.get("moto")
            if tm is None:
                continue
            unit = "ops/s" if row.unit == "ops" else "MB/s"
            v = value(tm, row.unit)
            mv = value(moto, row.unit) if moto else None
            cells = [
                row.name,
                f"{v:,.0f} {unit}" + (f" ({tm.errors} errors)" if tm.errors else ""),
                f"{tm.pct(50):.1f} / {tm.pct(99):.1f}",
                f"{mv:,.0f} {unit}" if mv is not None else "n/a",
                f"{v / mv:.2f}x" if mv else "n/a",
                f"{row.limit:,.0f} {unit}" if row.limit else "n/a",
                f"{v / row.limit:.0%}" if row.limit else "n/a",
                f"{row.rss.get('tunnelmesh', 0) / 2**20:.0f} MiB",
                f"{row.cpu.get('tunnelmesh', 0):.1f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for name, vals in self.extra.items():
            lines.append(f"- {name}: " + ", ".join(f"{k} {v}".strip() for k, v in vals.items()))
        moto_rss = max((r.rss.get("moto", 0) for r in self.rows.values()), default=0)
        tm_rss = max((r.rss.get("tunnelmesh", 0) for r in self.rows.values()), default=0)
        lines.append(
            f"- peak RSS over the whole run (whole process tree): tunnelmesh {tm_rss / 2**20:.0f} MiB, "
            f"moto {moto_rss / 2**20:.0f} MiB"
        )
        return "\n".join(lines)


def measure_limits(bench: Bench, tmp: Path) -> None:
    root = tmp / "www"
    (root / "small").mkdir(parents=True)
    (root / "large").mkdir()
    for i in range(1000):
        (root / "small" / str(i)).write_bytes(bench.small)
    for i in range(bench.args.large_count):
        os.link(bench.large_file, root / "large" / str(i))
    nginx = start_nginx(tmp, root)
    try:
        asyncio.run(bench.limits(nginx))
    finally:
        if nginx:
            nginx.stop()
    null, hashing = start_null(tmp), start_null(tmp, store=True)
    try:
        asyncio.run(bench.bare_stack(null, hashing))
    finally:
        null.stop()
        hashing.stop()


def tunnelmesh_source() -> str:
    """The tunnelmesh package the coordinator processes will import (they inherit this environment)."""
    out = subprocess.run(
        [sys.executable, "-c", "import tunnelmesh; print(tunnelmesh.__file__)"],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.exit("python cannot import tunnelmesh here: set PYTHONPATH or pass --src\n" + out.stderr)
    return str(Path(out.stdout.strip()).parent)


def use_source(src: Path | None) -> tuple[Path | None, str]:
    """Point every process started from here on (the coordinators included) at the tree `src`, and
    check they import tunnelmesh from it: (src resolved, where tunnelmesh is imported from)."""
    if src is not None:
        src = src.resolve()
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    source = tunnelmesh_source()
    if src is not None and not Path(source).is_relative_to(src):
        sys.exit(f"--src {src}: python imports tunnelmesh from {source} instead")
    return src, source


def write_between(readme: Path, start: str, end: str, text: str) -> None:
    """Replace what stands between the markers `start` and `end` in `readme` with `text`."""
    content = readme.read_text()
    if start not in content or end not in content:
        sys.exit(f"{readme}: no {start} ... {end} markers to write the results between")
    head, _, rest = content.partition(start)
    _, _, tail = rest.partition(end)
    readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


def dump(bench: Bench, path: Path, source: str) -> None:
    """Every figure of the run, machine-readable (bench/compare.py reads it)."""
    rows = []
    for row in bench.rows.values():
        servers = {
            name: {
                "ops": r.ops,
                "seconds": r.seconds,
                "bytes": r.bytes,
                "errors": r.errors,
                "value": value(r, row.unit),
                "p50_ms": r.pct(50),
                "p99_ms": r.pct(99),
                "cpu_s": row.cpu.get(name),
                "peak_rss": row.rss.get(name),
            }
            for name, r in row.results.items()
        }
        rows.append({"name": row.name, "unit": row.unit, "limit": row.limit, "servers": servers})
    path.write_text(json.dumps({"args": vars(bench.args), "tunnelmesh": source, "rows": rows}, indent=1, default=str))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each small-object workload")
    ap.add_argument("--large-count", type=int, default=6, help="64 MiB objects per large workload")
    ap.add_argument("--million", action="store_true", help="also list and restart with 1,000,000 objects")
    ap.add_argument("--skip-moto", action="store_true")
    ap.add_argument("--skip-limits", action="store_true", help="no nginx, disk or bare-stack limits")
    ap.add_argument(
        "--access-policy",
        type=int,
        metavar="N",
        help="only the 4 KiB workloads, as a non-owner peer let in by a bucket policy of N statements (0: a grant); "
        "implies --skip-moto --skip-limits (bench/access_policy.py)",
    )
    ap.add_argument("--src", type=Path, help="the tunnelmesh source tree to run (the directory holding tunnelmesh/)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--write-readme", action="store_true", help="replace the results in bench/README.md and README.md")
    args = ap.parse_args()
    if args.access_policy is not None:
        if args.access_policy < 0:
            ap.error("--access-policy N: N must be 0 or more")
        args.skip_moto = args.skip_limits = True  # moto has no peers; the limits need the large workloads
    args.src, source = use_source(args.src)
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent.parent) as d:
        tmp = Path(d)
        os.chmod(tmp, 0o755)  # nginx's workers run as an unprivileged user and must read the files
        bench = Bench(args, tmp)
        starters = [start_tunnelmesh] + ([] if args.skip_moto else [start_moto])
        for start in starters:
            server = start(tmp)
            try:
                asyncio.run(bench.s3_server(server))
            finally:
                server.stop()
        if not args.skip_limits:
            measure_limits(bench, tmp)
        text = bench.report()
    if args.json is not None:
        dump(bench, args.json, source)
    print(text)
    Path(__file__).parent.joinpath("results").mkdir(exist_ok=True)
    Path(__file__).parent.joinpath("results", "latest.json").write_text(json.dumps({"text": text}))
    if args.write_readme:  # bench/README.md and the project README quote the same table
        for readme in (Path(__file__).parent / "README.md", Path(__file__).parent.parent / "README.md"):
            write_between(readme, "<!-- results -->", "<!-- /results -->", text)


if __name__ == "__main__":
    main()
