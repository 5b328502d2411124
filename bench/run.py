"""Benchmark: tunnelmesh and moto's server side by side, in one run, on the same disk.

    python bench/run.py [--seconds 5] [--large-count 6] [--write-readme]

Starts each server on a free loopback port, runs the same workloads against both with the same
load generator (SigV4-signed requests, payload hashes verified by the server), and prints ops/s,
MB/s, p50/p99 latency and the server's peak RSS (summed over its process tree).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import Result, Signer, run_load  # noqa: E402

SMALL = 4096
LARGE = 64 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        stack.extend(children.get(p, []))
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(0.1)

    def __enter__(self) -> RssSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    base: str  # http://host:port
    prefix: str  # path prefix of the S3 API
    signer: Signer

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_tunnelmesh(tmp: Path) -> Server:
    port, s3_port = free_port(), free_port()
    token = secrets.token_urlsafe(24)
    cfg = tmp / "coordinator.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\nlog_level: warning\ns3:\n  data_dir: {tmp / 'tm-data'}\n"
        f"  listen: 127.0.0.1:{s3_port}\n  max_size: 1TB\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)],
        env=dict(os.environ, TUNNELMESH_ADMIN_TOKEN=token),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return Server("tunnelmesh", proc, f"http://127.0.0.1:{port}", "/s3", Signer("admin", token))


def start_moto(tmp: Path) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return Server("moto", proc, f"http://127.0.0.1:{port}", "", Signer("testing", "testing"))


def workloads(server: Server, seconds: float, large_count: int, large_file: Path) -> dict[str, Result]:
    host = server.base.removeprefix("http://")
    small_body = os.urandom(SMALL)
    small_hash = hashlib.sha256(small_body).hexdigest()
    large_hash = hashlib.sha256(large_file.read_bytes()).hexdigest()
    bucket = f"{server.prefix}/bench"
    put_count = 0

    def signed(method: str, path: str, payload_hash: str, query: str = "") -> list[tuple[str, str]]:
        return server.signer.headers(method, host, path, query, payload_hash)

    def small_put(i: int):  # noqa: ANN202
        nonlocal put_count
        put_count = max(put_count, i + 1)
        path = f"{bucket}/small/{i}"
        return "PUT", path, signed("PUT", path, small_hash), small_body, None, SMALL

    def small_get(i: int):  # noqa: ANN202
        path = f"{bucket}/small/{i % put_count}"
        return "GET", path, signed("GET", path, hashlib.sha256(b"").hexdigest()), None, None, 0

    def small_head(i: int):  # noqa: ANN202
        path = f"{bucket}/small/{i % put_count}"
        return "HEAD", path, signed("HEAD", path, hashlib.sha256(b"").hexdigest()), None, None, 0

    fd = os.open(large_file, os.O_RDONLY)

    def large_put(i: int):  # noqa: ANN202
        path = f"{bucket}/large/{i}"
        return "PUT", path, signed("PUT", path, large_hash), None, (fd, LARGE), LARGE

    def large_get(i: int):  # noqa: ANN202
        path = f"{bucket}/large/{i % large_count}"
        return "GET", path, signed("GET", path, hashlib.sha256(b"").hexdigest()), None, None, 0

    async def go() -> dict[str, Result]:
        create = await run_load(
            server.base,
            1,
            lambda i: ("PUT", bucket, signed("PUT", bucket, hashlib.sha256(b"").hexdigest()), b"", None, 0),
            total=1,
        )
        assert create.errors == 0, "bucket creation failed"
        out = {}
        out["4 KiB PUT c16"] = await run_load(server.base, 16, small_put, duration=seconds)
        out["4 KiB GET c16"] = await run_load(server.base, 16, small_get, duration=seconds)
        out["4 KiB HEAD c16"] = await run_load(server.base, 16, small_head, duration=seconds)
        out["64 MiB PUT c2"] = await run_load(server.base, 2, large_put, total=large_count)
        out["64 MiB GET c2"] = await run_load(server.base, 2, large_get, total=large_count)
        return out

    try:
        return asyncio.run(go())
    finally:
        os.close(fd)


def fmt_row(name: str, a: Result, b: Result, large: bool) -> str:
    if large:
        ratio = a.mb_per_s / b.mb_per_s if b.mb_per_s else float("nan")
        return (
            f"| {name} | {a.mb_per_s:.0f} MB/s | {a.pct(50):.0f} / {a.pct(99):.0f} ms | "
            f"{b.mb_per_s:.0f} MB/s | {b.pct(50):.0f} / {b.pct(99):.0f} ms | {ratio:.2f}x | {a.errors}/{b.errors} |"
        )
    ratio = a.ops_per_s / b.ops_per_s if b.ops_per_s else float("nan")
    return (
        f"| {name} | {a.ops_per_s:.0f} ops/s | {a.pct(50):.1f} / {a.pct(99):.1f} ms | "
        f"{b.ops_per_s:.0f} ops/s | {b.pct(50):.1f} / {b.pct(99):.1f} ms | {ratio:.2f}x | {a.errors}/{b.errors} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each small-object workload")
    ap.add_argument("--large-count", type=int, default=6, help="64 MiB objects per large workload")
    ap.add_argument("--write-readme", action="store_true", help="replace the results section of bench/README.md")
    args = ap.parse_args()

    results: dict[str, dict[str, Result]] = {}
    peaks: dict[str, int] = {}
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent.parent) as d:
        tmp = Path(d)
        large_file = tmp / "large.bin"
        with large_file.open("wb") as f:
            for _ in range(LARGE // (1 << 20)):
                f.write(os.urandom(1 << 20))
        for start in (start_tunnelmesh, start_moto):
            server = start(tmp)
            try:
                with RssSampler(server.proc.pid) as rss:
                    results[server.name] = workloads(server, args.seconds, args.large_count, large_file)
                peaks[server.name] = rss.peak
            finally:
                server.stop()

    tm, moto = results["tunnelmesh"], results["moto"]
    lines = [
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; `python bench/run.py --seconds {args.seconds:g} "
        f"--large-count {args.large_count}`.",
        "",
        "| workload | tunnelmesh | p50 / p99 | moto server | p50 / p99 | tunnelmesh / moto | errors (tm/moto) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in tm:
        lines.append(fmt_row(name, tm[name], moto[name], large=name.startswith("64")))
    lines.append("")
    lines.append(
        f"Peak RSS of the whole server process tree: tunnelmesh {peaks['tunnelmesh'] / 2**20:.0f} MiB, "
        f"moto {peaks['moto'] / 2**20:.0f} MiB."
    )
    text = "\n".join(lines)
    print(text)
    if args.write_readme:
        readme = Path(__file__).parent / "README.md"
        content = readme.read_text()
        start, end = "<!-- results -->", "<!-- /results -->"
        head, _, rest = content.partition(start)
        _, _, tail = rest.partition(end)
        readme.write_text(f"{head}{start}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    main()
