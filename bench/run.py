"""Benchmark: tunnelmesh, moto's server and the client's own ceiling, side by side, in one run, on one disk.

    python bench/run.py [--runs 3] [--seconds 5] [--large-count 6] [--million] [--list-keys N,N,...]
                        [--postgres] [--only GROUP,...] [--quick] [--write-readme] [--json FILE]
                        [--src DIR] [--skip-moto] [--skip-limits] [--skip-wrk] [--access-policy N]

Each target is started afresh on free loopback ports for every run, and the targets take turns run by
run (tunnelmesh, [tunnelmesh on PostgreSQL,] moto, ceiling; then the other way round), so whatever else
the machine does falls on all alike. Every workload is run --runs times per target: min / median / max.

Two clients drive every target: bench/loadgen.py (Python, SigV4-signed, payload hashes verified by the
server) and, for 4 KiB PUT and GET, wrk (C, HTTP Basic auth; bench/wrkclient.py). The ceiling of each
client is nginx answering THE SAME requests (signed alike; nginx ignores the headers): static files for
GET and HEAD, the exact 1000-key page tunnelmesh returned for ListObjectsV2, and a location that reads
and discards the body for PUT. Beside every row: the client's own CPU share (a client near 100% of a
core measures itself), and the peak PSS and RSS of the server's whole process tree. The bare HTTP
stack (bench/null_server.py) and the disk's write + fsync rate are measured in every run too.
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
import shlex
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from access_policy import prepare
from loadgen import Result, Signer, run_load
from wrkclient import WrkResult, basic, run_wrk, thread_run_delay, wrk_binary

SMALL = 4096
LARGE = 64 * 1024 * 1024
PART = 16 * 1024 * 1024
GIB = 1024**3
NGINX_SMALL = 1000  # 4 KiB files nginx serves for GET and HEAD
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


def tree_memory(pid: int) -> tuple[int, int]:
    """(PSS, RSS) bytes of a process and all its descendants. Forked workers share the pages they had at
    the fork: summed RSS counts those once per process, summed PSS divides each among its sharers."""
    pss = rss = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
    return pss, rss


class Monitor:
    """Peak PSS and RSS and CPU seconds of a process tree while a workload runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.peak_pss, self.cpu, self._stop = pid, 0, 0, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pss, rss = tree_memory(self.pid)
            self.peak, self.peak_pss = max(self.peak, rss), max(self.peak_pss, pss)
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
    meta: str | None = None  # the PostgreSQL URI of its metadata, where not SQLite

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


def start_nginx(tmp: Path, root: Path, pages: dict[int, Path]) -> Server | None:
    """nginx answering the benchmark's own requests with nothing behind them: the files under `root` for
    GET and HEAD, each list page in `pages` (keys in the bucket -> file) for its bucket's ListObjectsV2, and
    200 for any PUT once the body is read and discarded (keep-alive goes on: the next request parses)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        return None
    port = free_port()
    conf = tmp / "nginx.conf"
    lists = "".join(
        f"    location = /list-{n} {{ default_type application/xml; alias {path}; }}\n" for n, path in pages.items()
    )
    conf.write_text(
        f"daemon off; worker_processes auto; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
        "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n"
        f"  client_body_temp_path {tmp}/ngx-body; proxy_temp_path {tmp}/ngx-proxy;\n"
        f"  fastcgi_temp_path {tmp}/ngx-fcgi; uwsgi_temp_path {tmp}/ngx-uwsgi; scgi_temp_path {tmp}/ngx-scgi;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {root}; client_max_body_size 100m;\n{lists}"
        "    location / { if ($request_method = PUT) { return 200; } } } }\n"
    )
    proc = subprocess.Popen([nginx, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    # signed exactly as for tunnelmesh: the client does the same work per request
    return Server("nginx", proc, f"http://127.0.0.1:{port}", "", Signer("admin", "ceiling"))


def start_null(tmp: Path, store: bool = False, overlap: bool = False) -> Server:
    """The framework floor (bench/null_server.py): the coordinator's HTTP stack with nothing behind
    it, or (store=True) with only the hashing and the write + fsync that a signed PUT needs: naively on
    the event loop, or (overlap=True) on threads as the coordinator does. Both read through the
    coordinator's read buffer, so the two differ only in the technique."""
    port = free_port()
    args = [str(port)]
    if store:
        (tmp / "null-store").mkdir(exist_ok=True)
        args.append(str(tmp / "null-store"))
    env = {
        **os.environ,
        "NULL_SERVER_READ_BUFFER": str(NULL_READ_BUFFER),
        "NULL_SERVER_OVERLAP": "1" if overlap else "",
    }
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "null_server.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
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


TM, PG, MOTO, CEIL = "tunnelmesh", "tunnelmesh-pg", "moto", "ceiling"
NULL, BARE = "bare HTTP stack", "bare stack + hashing + fsync"
BARE_OVERLAP = "bare stack + hashing + fsync, overlapped"
NULL_READ_BUFFER = 408 * 1024  # the coordinator's default (limits.read_buffer_size)
SATURATED = 0.9  # a client at this share of one core or more measures itself more than the server
GROUPS = ("small", "wrk", "large", "multipart", "list", "delete", "versioned", "gib")
HTTP_LIST_MAX = 10_000  # buckets up to this many keys are filled over HTTP (every server); larger ones in bulk
UNITS = {"ops": "ops/s", "MB": "MB/s", "pages": "pages/s"}


@dataclass
class Sample:
    """One run of one workload against one target."""

    value: float  # ops/s, MB/s or pages/s
    ops: int
    seconds: float
    bytes: int
    errors: int
    p50_ms: float
    p99_ms: float
    client_cpu: float  # CPU seconds of the load generator itself (its event loop's thread, or the wrk process)
    server_cpu: float | None = None  # CPU seconds of the server's whole process tree
    peak_pss: int | None = None
    peak_rss: int | None = None
    client_wait: float = 0.0  # seconds the client was runnable but waiting for a core (other processes had them)

    @property
    def client_share(self) -> float:
        """The client's CPU seconds per wall second: 1.0 is one core, busy all the time."""
        return self.client_cpu / self.seconds if self.seconds else 0.0

    @property
    def client_busy(self) -> float:
        """CPU plus run-queue wait per wall second: near 1.0 (per client thread) the client never waited
        for an answer, so it set the pace, even where the machine's other load kept its CPU share down."""
        return (self.client_cpu + self.client_wait) / self.seconds if self.seconds else 0.0


@dataclass
class Row:
    name: str
    unit: str  # "ops", "MB" or "pages"
    client: str = "python"  # or "wrk"
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def values(self, target: str, attr: str = "value") -> list[float]:
        return [v for x in self.samples.get(target, []) if (v := getattr(x, attr)) is not None]

    def med(self, target: str, attr: str = "value") -> float | None:
        vals = self.values(target, attr)
        return statistics.median(vals) if vals else None

    def peak(self, target: str, attr: str) -> int:
        return int(max(self.values(target, attr), default=0))

    def median_sample(self, target: str) -> Sample:
        runs = sorted(self.samples[target], key=lambda x: x.value)
        return runs[(len(runs) - 1) // 2]


def value(r: Result, unit: str) -> float:
    return r.mb_per_s if unit == "MB" else r.ops_per_s


def target_of(s: Server) -> str:
    return CEIL if s.name == "nginx" else s.name


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.rows: dict[str, Row] = {}
        self.extra: dict[str, dict[str, str]] = {}
        self.lines: dict[str, list[float]] = {}  # per-run figures of the extra lines: their medians are reported
        self.run = 0  # which of the --runs is under way
        self.pages: dict[int, Path] = {}  # keys in the bucket -> a 1000-key page tunnelmesh returned
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

    def want(self, group: str) -> bool:
        only = getattr(self.args, "only", None)
        return not only or group in only

    def record(self, name: str, unit: str, target: str, sample: Sample, client: str = "python") -> None:
        key = name if client == "python" else f"{client}: {name}"
        self.rows.setdefault(key, Row(name, unit, client)).samples.setdefault(target, []).append(sample)

    def record_result(
        self, name: str, unit: str, target: str, r: Result, client: tuple[float, float], mon: Monitor | None
    ) -> None:
        self.record(
            name,
            unit,
            target,
            Sample(
                value(r, unit),
                r.ops,
                r.seconds,
                r.bytes,
                r.errors,
                r.pct(50),
                r.pct(99),
                client[0],
                mon.cpu if mon else None,
                mon.peak_pss if mon else None,
                mon.peak if mon else None,
                client[1],
            ),
        )

    async def load(self, s: Server, name: str, unit: str, conc: int, make, total=None, duration=None) -> Result:
        # the server's memory is sampled from another thread: thread_time() counts the event loop's thread
        # alone, which is the whole of the load generator
        mon = None if s.name == "nginx" else Monitor(s.proc.pid)
        with mon or contextlib.nullcontext():
            c0, w0 = time.thread_time(), thread_run_delay()
            r = await run_load(s.base, conc, make, total=total, duration=duration)
            client = time.thread_time() - c0, thread_run_delay() - w0
        if r.errors:
            print(f"  {s.name} {name}: {r.errors} errors", file=sys.stderr)
            if s.name == "nginx":
                raise RuntimeError(f"nginx answered {r.errors} errors on {name}: the ceiling would be wrong")
        self.record_result(name, unit, target_of(s), r, client, mon)
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
        """Every workload on one S3 server, or (nginx) the ceiling of each that has one."""
        a = self.args
        b = f"{s.prefix}/bench"
        if a.access_policy is not None:
            await self.access_policy(s, b)
            return
        nginx = s.name == "nginx"
        if not nginx:
            await run_load(s.base, 1, lambda i: self.req(s, "PUT", b), total=1)
        if self.want("small"):
            await self.small_objects(s, b)
        if self.want("wrk") and not a.skip_wrk:
            self.wrk_small(s, b)
        if self.want("large"):
            await self.large(s, b)
        if self.want("list"):
            await self.listing(s)
        if nginx:
            return
        if self.want("multipart"):
            await self.multipart(s, b)
        if self.want("delete"):
            await self.delete_objects(s, b)
        if self.want("versioned"):
            await self.versioned(s)
        if s.name in (TM, PG) and self.want("gib") and self.run == 0:  # a memory probe: once is enough
            await self.gib_transfers(s, b)

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
        if s.name == "nginx":
            count = NGINX_SMALL  # the files it serves (the same 4 KiB, from the page cache alike)
        await self.load(
            s, "4 KiB GET c16", "ops", 16, lambda i: self.req(s, "GET", f"{b}/small/{i % count}"), duration=a.seconds
        )
        await self.load(
            s, "4 KiB HEAD c16", "ops", 16, lambda i: self.req(s, "HEAD", f"{b}/small/{i % count}"), duration=a.seconds
        )

    def wrk_small(self, s: Server, b: str) -> None:
        """4 KiB PUT of distinct keys, then GET of the keys put, with wrk at concurrency 16. No HEAD: wrk
        waits for the body a HEAD answer announces and never gets (github.com/wg/wrk/issues/198)."""
        a = self.args
        auth = basic(s.signer.access_key, s.signer.secret) if s.signer else basic("bench", "bench")
        kw = {"auth": auth, "threads": a.wrk_threads, "connections": 16, "seconds": a.seconds}
        prefix = f"{b}/wrk/"
        put = self.wrk(s, "4 KiB PUT c16", "put.lua", [prefix, str(a.wrk_threads)], kw)
        # thread t of T put keys t + nT for n = 1 .. its 2xx count (n = 0 went to wrk's check of the script);
        # up to 16 requests, one per connection, were still in flight at the end: not counted as put
        first, count = a.wrk_threads, max(1, a.wrk_threads * min(put.ok_per_thread) - 16 - a.wrk_threads)
        if s.name == "nginx":
            prefix, first, count = f"{b}/small/", 0, NGINX_SMALL
        self.wrk(s, "4 KiB GET c16", "read.lua", ["GET", prefix, str(first), str(count)], kw)

    def wrk(self, s: Server, name: str, script: str, args: list[str], kw: dict) -> WrkResult:
        mon = None if s.name == "nginx" else Monitor(s.proc.pid)
        with mon or contextlib.nullcontext():
            r = run_wrk(s.base, script, args, **kw)
        if r.errors:
            print(f"  {s.name} wrk {name}: {r.errors} errors ({r.status_errors} answers >= 400)", file=sys.stderr)
            if s.name == "nginx":
                raise RuntimeError(f"nginx answered {r.errors} errors on wrk {name}: the ceiling would be wrong")
        sample = Sample(
            r.ops_per_s,
            r.ops,
            r.seconds,
            r.bytes,
            r.errors,
            r.p50_ms,
            r.p99_ms,
            r.client_cpu,
            mon.cpu if mon else None,
            mon.peak_pss if mon else None,
            mon.peak if mon else None,
            r.client_wait,
        )
        self.record(name, "ops", target_of(s), sample, client="wrk")
        return r

    async def large(self, s: Server, b: str) -> None:
        a = self.args
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
                t0, c0, w0 = time.perf_counter(), time.thread_time(), thread_run_delay()
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
                client = time.thread_time() - c0, thread_run_delay() - w0
        finally:
            os.close(fd)
        self.record_result("1 GiB multipart PUT, 16 MiB parts c4", "MB", s.name, r, client, mon)

    async def listing(self, s: Server) -> None:
        """Pages of 1000 keys (with a delimiter, from a random start) in a bucket of each --list-keys size.
        Buckets up to HTTP_LIST_MAX keys are filled over HTTP, larger ones by rows written straight into
        tunnelmesh's metadata (then it restarts; the start-up times are reported). nginx serves, for each
        size, the exact page tunnelmesh returned, to the same signed request."""
        for n in self.args.list_keys:
            bucket = f"{s.prefix}/list-{n}"
            bulk = n > HTTP_LIST_MAX
            if s.name == "nginx":
                if n not in self.pages:
                    continue
            elif bulk and s.name not in (TM, PG):
                continue
            else:
                await run_load(s.base, 1, lambda i, b=bucket: self.req(s, "PUT", b), total=1)
                if bulk:
                    self.bulk_load(s, f"list-{n}", n)
                else:
                    await run_load(
                        s.base,
                        16,
                        lambda i, b=bucket: self.req(s, "PUT", f"{b}/k/{i:08d}", EMPTY, body=b""),
                        total=n,
                    )
            rnd = random.Random(n)

            def query(i: int, n: int = n, rnd: random.Random = rnd) -> str:
                start = f"k%2F{rnd.randrange(max(1, n - 1000)):08d}"
                return f"delimiter=%2F&list-type=2&max-keys=1000&prefix=k%2F&start-after={start}"

            if s.name == TM and n not in self.pages:
                self.pages[n] = self.capture_page(s, bucket, query(0))
            # unmeasured pages first: after a bulk load the server has just restarted with a cold cache
            await run_load(s.base, 1, lambda i, b=bucket: self.req(s, "GET", b, EMPTY, query(i)), total=5)
            await self.load(
                s,
                f"ListObjectsV2 page of 1000, {n:,} keys",
                "pages",
                1,
                lambda i, b=bucket: self.req(s, "GET", b, EMPTY, query(i)),
                total=self.args.list_pages,
            )

    def capture_page(self, s: Server, bucket: str, query: str) -> Path:
        """One page as tunnelmesh answers it, for nginx to serve as the ListObjectsV2 ceiling."""
        import urllib.request

        req = urllib.request.Request(
            s.base + bucket + "?" + query, headers=dict(s.headers("GET", bucket, EMPTY, query))
        )
        body = urllib.request.urlopen(req).read()
        if body.count(b"<Contents>") != 1000:
            raise RuntimeError(f"{bucket}: a page of {body.count(b'<Contents>')} keys, not 1000")
        path = self.tmp / "pages" / f"{bucket.rsplit('/', 1)[1]}.xml"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(body)
        return path

    def bulk_load(self, s: Server, bucket: str, n: int) -> None:
        """n empty objects k/00000000 ... in `bucket`, as rows written straight into the metadata, then a
        clean restart and a restart after SIGKILL (both timed): the coordinator sees the rows as its own."""
        assert s.data_dir is not None and s.restart is not None
        now = time.time()
        seq0 = int(now * 1e6)  # as the coordinator numbers writes: increasing microseconds
        rows = ((bucket, f"k/{i:08d}", now, seq0 + i) for i in range(n))
        t0 = time.perf_counter()
        if s.meta is None:
            db = sqlite3.connect(s.data_dir / "meta.sqlite3", timeout=60)
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO objects(bucket, key, size, etag, mtime, headers, checksums, segments, owner, "
                "data, seq) VALUES (?, ?, 0, 'd41d8cd98f00b204e9800998ecf8427e', ?, '{}', '{}', '[]', 'admin', x'', ?)",
                rows,
            )
            db.execute("UPDATE buckets SET objects = objects + ? WHERE name = ?", (n, bucket))
            db.execute("COMMIT")
            db.close()
        else:
            import psycopg

            with psycopg.connect(s.meta) as conn:
                with conn.cursor().copy(
                    "COPY objects(bucket, key, size, etag, mtime, headers, checksums, segments, owner, data, seq) "
                    "FROM STDIN"
                ) as copy:
                    for b, k, t, seq in rows:
                        copy.write_row(
                            (b, k, 0, "d41d8cd98f00b204e9800998ecf8427e", t, "{}", "{}", "[]", "admin", b"", seq)
                        )
                conn.execute("UPDATE buckets SET objects = objects + %s WHERE name = %s", (n, bucket))
        loaded = time.perf_counter() - t0
        clean = s.restart()
        crashed = s.restart(crash=True)
        backend = "PostgreSQL" if s.meta else "SQLite"
        self.extra.setdefault(f"start-up with {n:,} objects on {backend} (until both listeners accept)", {})[
            f"run {len(self.lines.get(f'startup {n} {backend}', [])) + 1}:"
        ] = f"{clean:.2f} s after a clean stop, {crashed:.2f} s after SIGKILL ({n:,} rows loaded in {loaded:.0f} s)"
        self.lines.setdefault(f"startup {n} {backend}", []).append(clean)

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
        written = 0  # keys the PUTs reached: a slow server may not reach all 1,000 in --seconds

        def put(i: int):
            nonlocal written
            written = max(written, min(i + 1, keys))
            return self.req(s, "PUT", f"{b}/v/{i % keys:05d}", self.small_hash, body=self.small, payload=SMALL)

        await self.load(s, "versioned: 4 KiB PUT c16", "ops", 16, put, duration=a.seconds)
        await self.load(
            s,
            "versioned: 4 KiB GET c16",
            "ops",
            16,
            lambda i: self.req(s, "GET", f"{b}/v/{i % written:05d}"),
            duration=a.seconds,
        )
        await self.load(
            s,
            "versioned: ListObjectsV2 page of 1000",
            "pages",
            1,
            lambda i: self.req(s, "GET", b, EMPTY, "list-type=2&max-keys=1000&prefix=v%2F"),
            total=30,
        )
        await self.load(
            s,
            "versioned: ListObjectVersions page of 1000",
            "pages",
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

    async def bare_stack(self, null: Server, hashing: Server, overlapped: Server) -> None:
        """The same HTTP stack with nothing behind it, and with only the work a signed, durable PUT cannot
        skip (MD5, SHA-256, write, fsync): extra lines beside the nginx ceilings."""
        if self.want("small"):
            await self.load(
                null,
                "4 KiB PUT c16",
                "ops",
                16,
                lambda i: ("PUT", f"/n/{i}", null.headers("PUT", f"/n/{i}", self.small_hash), self.small, None, SMALL),
                duration=self.args.seconds,
            )
            # a 4 KiB object from memory: what any server on this stack pays before its own work on a read
            for method in ("GET", "HEAD"):
                await self.load(
                    null,
                    f"4 KiB {method} c16",
                    "ops",
                    16,
                    lambda i, m=method: (m, f"/n/{i % 1000}", null.headers(m, f"/n/{i % 1000}", EMPTY), None, None, 0),
                    duration=self.args.seconds,
                )
        if self.want("wrk") and not self.args.skip_wrk:
            self.wrk_small(null, "/n")
        if self.want("list"):
            # a body of the page's size from memory, to the same kind of signed GET: the stack's own cost of a page
            for n, page in self.pages.items():
                q = f"bytes={page.stat().st_size}"
                await self.load(
                    null,
                    f"ListObjectsV2 page of 1000, {n:,} keys",
                    "pages",
                    1,
                    lambda i, q=q: ("GET", f"/n/list?{q}", null.headers("GET", "/n/list", EMPTY, q), None, None, 0),
                    total=self.args.list_pages,
                )
        if self.want("large"):
            fd = os.open(self.large_file, os.O_RDONLY)
            try:
                for server in (hashing, overlapped):
                    await self.load(
                        server,
                        "64 MiB PUT c2",
                        "MB",
                        2,
                        lambda i, s=server: (
                            "PUT",
                            f"/n/{i}",
                            s.headers("PUT", f"/n/{i}", self.large_hash),
                            None,
                            (fd, LARGE),
                            LARGE,
                        ),
                        total=self.args.large_count,
                    )
            finally:
                os.close(fd)
            self.lines.setdefault("disk", []).append(disk_fsync_rate(self.tmp))
            self.lines.setdefault("hashing", []).append(hashing_rate(self.large_file.read_bytes()))

    def report(self, minutes: float) -> str:
        a = self.args
        lines = [
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}, {minutes:.0f} min; "
            f"`python bench/run.py{' ' if sys.argv[1:] else ''}{shlex.join(sys.argv[1:])}`: {a.runs} run(s) per "
            "target, the targets taking turns run by run. Cells: min / median / max over the runs; ratios and "
            "the other cells are of medians." + (f" {self.access[0].upper()}{self.access[1:]}." if self.access else ""),
        ]
        pg = any(PG in r.samples for r in self.rows.values())
        for client, title in (
            ("python", "Python client (bench/loadgen.py: asyncio, SigV4, payload hash verified)"),
            (
                "wrk",
                f"wrk client (C; HTTP Basic auth; `-t {a.wrk_threads} -c 16`; no HEAD: wrk cannot read a HEAD "
                "answer, github.com/wg/wrk/issues/198)",
            ),
        ):
            rows = [r for r in self.rows.values() if r.client == client and TM in r.samples]
            if rows:
                lines += ["", f"**{title}**", "", *self.table(rows, pg)]
        lines.append("")
        for row in self.rows.values():
            for target, what in (
                (
                    NULL,
                    "granian, one process per core, an ASGI app that reads the body and answers 200, to a GET "
                    "with a body from memory: 4 KiB, or a listing page's size",
                ),
                (BARE, "granian; MD5 + SHA-256, write + fsync, nothing else, each message on the event loop"),
                (
                    BARE_OVERLAP,
                    "the same work as the coordinator does it: messages of 256 KiB or more passed on as they are, "
                    "smaller ones joined into 512 KiB batches, MD5, SHA-256 and the write each on a thread while the "
                    "next piece arrives, writeback every 8 MiB",
                ),
            ):
                med = row.med(target)
                if med is None:
                    continue
                tm = row.med(TM)
                client = "wrk: " if row.client == "wrk" else ""
                lines.append(
                    f"- {client}{row.name} on the {target} (bench/null_server.py: {what}): "
                    f"{self.spread(row, target)} {UNITS[row.unit]}, client CPU / busy "
                    f"{row.med(target, 'client_share'):.0%} / {row.med(target, 'client_busy'):.0%} of a core"
                    + (f"; tunnelmesh reaches {tm / med:.0%} of it" if tm else "")
                )
        for key, label in (("disk", "disk write + fsync of 64 MiB"), ("hashing", "MD5 + SHA-256 on one core")):
            if self.lines.get(key):
                vals = self.lines[key]
                lines.append(
                    f"- {label}: {statistics.median(vals):,.0f} MB/s ({min(vals):,.0f}–{max(vals):,.0f}) over the runs"
                )
        for name, vals in self.extra.items():
            lines.append(f"- {name}: " + "; ".join(f"{k} {v}".strip() for k, v in vals.items()))
        peaks = []
        for target, label in ((TM, "tunnelmesh"), (PG, "tunnelmesh on PostgreSQL"), (MOTO, "moto")):
            pss = max((r.peak(target, "peak_pss") for r in self.rows.values()), default=0)
            rss = max((r.peak(target, "peak_rss") for r in self.rows.values()), default=0)
            if rss:
                peaks.append(f"{label} {pss / 2**20:.0f} / {rss / 2**20:.0f} MiB")
        if peaks:
            lines.append(
                "- peak PSS / RSS over the whole run (whole process tree; summed RSS counts the workers' shared "
                "pages once per process, PSS shares them out"
                + ("; PostgreSQL's own processes not included" if pg else "")
                + "): "
                + ", ".join(peaks)
            )
        lines.append(
            "- client CPU / busy: the load generator's own CPU seconds per wall second (the Python client's "
            "event-loop thread; wrk's process, all threads), and the same plus the time it waited for a core "
            f"(run-queue delay, /proc/.../schedstat); **!** marks busy at {SATURATED:.0%} of a core per client "
            "thread or more: that client hardly ever waited for an answer, so the figure measures the client"
        )
        return "\n".join(lines)

    @staticmethod
    def spread(row: Row, target: str) -> str:
        vals = row.values(target)
        if not vals:
            return "n/a"
        if len(vals) == 1:
            return num(vals[0])
        return f"{num(min(vals))} / **{num(statistics.median(vals))}** / {num(max(vals))}"

    def main_cell(self, row: Row, target: str) -> str:
        errors = sum(row.values(target, "errors"))
        cell = f"{self.spread(row, target)} {UNITS[row.unit]}"
        med = row.med(target)
        if row.unit == "pages" and med:
            cell += f" ({1000 / med:.1f} ms/page)"
        return cell + (f" ({errors:.0f} errors)" if errors else "")

    @staticmethod
    def lat(row: Row, target: str) -> str:
        p50, p99 = row.med(target, "p50_ms"), row.med(target, "p99_ms")
        return f"{p50:.1f} / {p99:.1f}" if p50 is not None and p99 is not None else "n/a"

    def table(self, rows: list[Row], pg: bool) -> list[str]:
        cols = ["workload", "tunnelmesh min / med / max", "p50 / p99 ms"]
        if pg:
            cols += ["tm on PostgreSQL min / med / max", "PG p50 / p99 ms"]
        cols += ["moto", "nginx ceiling", "tm / ceiling", "tm / moto"]
        if pg:
            cols += ["PG / ceiling"]
        cols += ["client CPU / busy, % of a core", "tm PSS / RSS peak MiB" + (" (PG)" if pg else "")]
        out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in rows:
            unit = UNITS[row.unit]
            tm, moto, ceil = row.med(TM), row.med(MOTO), row.med(CEIL)

            def ratio(x: float | None, y: float | None, fmt: str) -> str:
                return format(x / y, fmt) if x and y else "n/a"

            cells = [row.name, self.main_cell(row, TM), self.lat(row, TM)]
            if pg:
                cells += [self.main_cell(row, PG) if PG in row.samples else "n/a", self.lat(row, PG)]
            cells += [
                f"{num(moto)} {unit}" if moto else "n/a",
                f"{num(ceil)} {unit}" if ceil else "n/a",
                ratio(tm, ceil, ".0%"),
                ratio(tm, moto, ".2f") + ("x" if tm and moto else ""),
            ]
            if pg:
                cells.append(ratio(row.med(PG), ceil, ".0%"))
            shares = []
            for target, label in ((TM, "tm"), (PG, "pg"), (MOTO, "moto"), (CEIL, "nginx")):
                share, busy = row.med(target, "client_share"), row.med(target, "client_busy")
                if share is not None and busy is not None:
                    bound = busy >= SATURATED * (self.args.wrk_threads if row.client == "wrk" else 1)
                    shares.append(f"{label} {share:.0%}/{busy:.0%}" + (" **!**" if bound else ""))
            cells.append(", ".join(shares))
            mem = [
                f"{row.peak(t, 'peak_pss') / 2**20:.0f} / {row.peak(t, 'peak_rss') / 2**20:.0f}"
                for t in (TM, PG)
                if row.peak(t, "peak_rss")
            ]
            cells.append(mem[0] + (f" ({mem[1]})" if len(mem) > 1 else "") if mem else "n/a")
            out.append("| " + " | ".join(cells) + " |")
        return out


def num(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 10 else f"{v:.1f}"


def measure_ceilings(bench: Bench, tmp: Path) -> None:
    """One run of the ceilings: nginx answering the same requests, the bare HTTP stack, the disk."""
    root = tmp / "www"
    if not root.exists():
        (root / "bench" / "small").mkdir(parents=True)
        (root / "bench" / "large").mkdir()
        for i in range(NGINX_SMALL):
            (root / "bench" / "small" / str(i)).write_bytes(bench.small)
        for i in range(bench.args.large_count):
            os.link(bench.large_file, root / "bench" / "large" / str(i))
    nginx = start_nginx(tmp, root, bench.pages)
    if nginx is not None:
        try:
            asyncio.run(bench.s3_server(nginx))
        finally:
            nginx.stop()
    null, hashing, overlapped = start_null(tmp), start_null(tmp, store=True), start_null(tmp, store=True, overlap=True)
    null.name, hashing.name, overlapped.name = NULL, BARE, BARE_OVERLAP
    try:
        asyncio.run(bench.bare_stack(null, hashing, overlapped))
    finally:
        null.stop()
        hashing.stop()
        overlapped.stop()


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
    """Every figure of the run, machine-readable. Per row and target: the median run's figures under the
    keys bench/compare.py reads (value, ops, bytes, cpu_s, peak_rss, ...), and every run under "runs"."""
    rows = []
    for key, row in bench.rows.items():
        servers = {}
        for target in row.samples:
            m = row.median_sample(target)
            servers[target] = {
                "ops": m.ops,
                "seconds": m.seconds,
                "bytes": m.bytes,
                "errors": sum(row.values(target, "errors")),
                "value": row.med(target),
                "min": min(row.values(target)),
                "max": max(row.values(target)),
                "p50_ms": row.med(target, "p50_ms"),
                "p99_ms": row.med(target, "p99_ms"),
                "cpu_s": m.server_cpu,
                "client_share": row.med(target, "client_share"),
                "peak_rss": row.peak(target, "peak_rss") or None,
                "peak_pss": row.peak(target, "peak_pss") or None,
                "client_busy": row.med(target, "client_busy"),
                "runs": [
                    asdict(x) | {"client_share": x.client_share, "client_busy": x.client_busy}
                    for x in row.samples[target]
                ],
            }
        rows.append(
            # name: unique per client ("wrk: 4 KiB GET c16"), as bench/compare.py keys its rows by it
            {"name": key, "workload": row.name, "unit": row.unit, "client": row.client, "limit": row.med(CEIL)}
            | {"servers": servers}
        )
    path.write_text(
        json.dumps(
            {"args": vars(bench.args), "tunnelmesh": source, "rows": rows, "lines": bench.lines, "extra": bench.extra},
            indent=1,
            default=str,
        )
    )


def start_target(target: str, tmp: Path, run: int, pg: Any) -> Server:
    """A fresh server of `target` for one run (its own data dir, or its own PostgreSQL database)."""
    if target == TM:
        s = start_tunnelmesh(tmp, f"tm-run{run}")
    elif target == PG:
        uri = pg.database(f"tm_run{run}")
        s = start_tunnelmesh(tmp, f"pg-run{run}", env={"TUNNELMESH_S3_METADATA": uri})
        s.meta = uri
    else:
        s = start_moto(tmp)
    s.name = target
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="runs of every workload per target (min / median / max)")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each small-object workload")
    ap.add_argument("--large-count", type=int, default=6, help="64 MiB objects per large workload")
    ap.add_argument("--quick", action="store_true", help="--seconds 2 --large-count 3 (unless given)")
    ap.add_argument("--million", action="store_true", help="also list a bucket of 1,000,000 keys")
    ap.add_argument(
        "--list-keys",
        type=lambda v: [int(x) for x in v.split(",") if x],
        help="the bucket sizes to list (default 10000, and 1000000 with --million); sizes above "
        f"{HTTP_LIST_MAX:,} are loaded in bulk into tunnelmesh's metadata (no moto), e.g. 10000,1000000,10000000",
    )
    ap.add_argument("--list-pages", type=int, default=30, help="pages listed per bucket size and run")
    ap.add_argument(
        "--postgres", action="store_true", help="also tunnelmesh with its metadata on PostgreSQL (pgserver)"
    )
    ap.add_argument("--only", type=lambda v: set(v.split(",")), help=f"only these workload groups: {','.join(GROUPS)}")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk's threads (-t); its connections stay 16")
    ap.add_argument("--skip-moto", action="store_true")
    ap.add_argument("--skip-limits", action="store_true", help="no nginx ceilings, bare-stack or disk limits")
    ap.add_argument("--skip-wrk", action="store_true", help="no wrk client")
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
    if args.quick:
        given = set(sys.argv)
        args.seconds = args.seconds if "--seconds" in given else 2.0
        args.large_count = args.large_count if "--large-count" in given else 3
    if args.list_keys is None:
        args.list_keys = [10_000] + ([1_000_000] if args.million else [])
    if args.only and not args.only <= set(GROUPS):
        ap.error(
            f"--only: unknown groups {', '.join(sorted(args.only - set(GROUPS)))}; choose from {', '.join(GROUPS)}"
        )
    if any(n < 1001 for n in args.list_keys):
        ap.error("--list-keys: each bucket needs more than 1000 keys for a full page from a random start")
    if args.runs < 1:
        ap.error("--runs must be 1 or more")
    if args.access_policy is not None:
        if args.access_policy < 0:
            ap.error("--access-policy N: N must be 0 or more")
        args.skip_moto = args.skip_limits = True  # moto has no peers; the limits need the large workloads
    if not args.skip_wrk and wrk_binary() is None:
        print("wrk is not installed: no wrk table (apt-get install wrk)", file=sys.stderr)
        args.skip_wrk = True
    args.src, source = use_source(args.src)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent.parent) as d, contextlib.ExitStack() as stack:
        tmp = Path(d)
        os.chmod(tmp, 0o755)  # nginx's workers run as an unprivileged user and must read the files
        bench = Bench(args, tmp)
        pg = None
        if args.postgres:
            from scale_out import Postgres  # imported here: it imports this module

            pg = Postgres(tmp)
            stack.callback(pg.close)
        targets = (
            [TM] + ([PG] if pg else []) + ([] if args.skip_moto else [MOTO]) + ([] if args.skip_limits else [CEIL])
        )
        for run in range(args.runs):
            bench.run = run
            # the other way round every other run; tunnelmesh goes before the ceiling in the first, which
            # serves the list pages tunnelmesh returned
            for target in targets if run % 2 == 0 else targets[::-1]:
                print(f"run {run + 1}/{args.runs}: {target} ...", file=sys.stderr)
                if target == CEIL:
                    measure_ceilings(bench, tmp)
                    continue
                server = start_target(target, tmp, run, pg)
                try:
                    asyncio.run(bench.s3_server(server))
                finally:
                    server.stop()
                    if server.data_dir is not None:
                        shutil.rmtree(server.data_dir, ignore_errors=True)  # GiBs per run
        text = bench.report((time.monotonic() - started) / 60)
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
