"""wrk (Debian's /usr/bin/wrk, C, epoll) as a second load generator for small objects.

The Python generator spends about as much CPU per request as a small GET costs the server, so on two
cores its ceiling, not the server, can set the figure. wrk costs a fraction of that. It cannot sign
SigV4 (its Lua has no HMAC), so it sends HTTP Basic credentials (`peer-id:token`), which the
coordinator accepts and moto and nginx ignore. bench/wrk/*.lua make the requests and print one
machine-readable line at the end; the client's CPU seconds come from wait4's rusage of the wrk process.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).parent / "wrk"


def run_delay(pid: int) -> float | None:
    """Seconds the threads of `pid` have spent runnable but waiting for a core (/proc/.../schedstat's
    second field): on a shared machine, a client whose CPU plus this is its whole wall time never waited
    for the server."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return total / 1e9


def thread_run_delay() -> float:
    """run_delay of the calling thread alone."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def wrk_binary() -> str | None:
    return shutil.which("wrk") or ("/usr/bin/wrk" if os.path.exists("/usr/bin/wrk") else None)


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


@dataclass
class WrkResult:
    ops: int  # requests answered 2xx
    seconds: float
    bytes: int
    errors: int  # non-2xx/3xx answers plus socket errors
    status_errors: int
    p50_ms: float
    p99_ms: float
    client_cpu: float  # CPU seconds of the wrk process, all its threads
    client_wait: float  # seconds its threads were runnable but waiting for a core (sampled: to within 50 ms)
    ok_per_thread: list[int]

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def run_wrk(
    base: str,
    script: str,
    args: list[str],
    *,
    auth: str,
    threads: int,
    connections: int,
    seconds: float,
) -> WrkResult:
    """Run wrk for `seconds` (whole seconds, at least 1) with bench/wrk/`script` and its arguments."""
    binary = wrk_binary()
    if binary is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    cmd = [
        binary,
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: {auth}",
        "-s",
        str(SCRIPTS / script),
        base,
        "--",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    waited = [0.0]
    stop = threading.Event()

    def sample() -> None:
        # the rusage at exit has no run-queue delay: read it while wrk lives, the last reading counts
        while not stop.wait(0.05):
            total = run_delay(proc.pid)
            if total is not None:
                waited[0] = max(waited[0], total)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.stdout.read()  # until wrk exits (a few lines: no pipe can fill)
    stop.set()
    sampler.join()
    # wait4, not wait: its rusage is the CPU the client itself spent, every thread included
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    line = next((x for x in out.splitlines() if x.startswith("WRK ")), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {' '.join(cmd)}\n{out}")
    d = json.loads(line[4:])
    ok = sum(d["ok"])
    return WrkResult(
        ops=ok,
        seconds=d["duration_us"] / 1e6,
        bytes=d["bytes"],
        errors=d["requests"] - ok + d["socket_errors"],
        status_errors=d["status_errors"],
        p50_ms=d["p50_us"] / 1000,
        p99_ms=d["p99_us"] / 1000,
        client_cpu=usage.ru_utime + usage.ru_stime,
        client_wait=waited[0],
        ok_per_thread=d["ok"],
    )
