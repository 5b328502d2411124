"""Server CPU per ListObjects page, two source trees alternately, on data dirs of bulk-loaded keys.

    python bench/list_cost.py prepare DIR N                  # bucket `bench`: flat/ N keys; tree/ N in folders
                                                             # of 10; few/ N in folders of 3; big/ N in folders
                                                             # of 1000 (bench/bulk_keys.py, coordinator stopped)
    python bench/list_cost.py compare DIR --before SRC --after SRC [--pages 100] [--rounds 2] [--only TEXT]
    python bench/list_cost.py floor DIR                      # SQLite alone reading a page's rows, in-process

`floor` is the least a page can cost in this process model: the time Python's sqlite3 takes to read 1000 rows
of flat/ (the key alone, then the columns a listing shows), without a Python step per row, no HTTP and no XML.

Each round starts a coordinator (`workers: 1`) from each tree (ABBA order), and per scenario fetches `--pages`
pages of 1000 keys one after another, then prints the median CPU milliseconds per page of the coordinator's
whole process tree (/proc) with min-max, and whether both trees answered the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parent))
from bulk_keys import load
from loadgen import Signer
from run import free_port, tree_stats, wait_port

EMPTY = hashlib.sha256(b"").hexdigest()
TOKEN = "list-cost-admin-token-0123456789abcdef"
BUCKET = "/s3/bench"


def start(src: str, data: Path) -> tuple[subprocess.Popen, int]:
    port, s3_port = free_port(), free_port()
    cfg = data.parent / "coordinator.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{port}\nlog_level: warning\nworkers: 1\n"
        f"s3:\n  data_dir: {data}\n  listen: 127.0.0.1:{s3_port}\n  max_size: 1TB\n"
    )
    env = dict(os.environ, TUNNELMESH_ADMIN_TOKEN=TOKEN, PYTHONPATH=src)
    with (data.parent / "coordinator.log").open("ab") as log:
        p = subprocess.Popen(
            [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)], env=env, stdout=log, stderr=log
        )
    wait_port(port)
    wait_port(s3_port)
    return p, port


def stop(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)


class Client:
    def __init__(self, port: int) -> None:
        self.port, self.signer = port, Signer("admin", TOKEN)
        self.conn = http.client.HTTPConnection("127.0.0.1", port)

    def get(self, method: str, path: str, query: str = "") -> bytes:
        h = dict(self.signer.headers(method, f"127.0.0.1:{self.port}", path, query, EMPTY))
        self.conn.request(method, path + (f"?{query}" if query else ""), headers=h)
        r = self.conn.getresponse()
        body = r.read()
        if r.status != 200:
            raise RuntimeError(f"{method} {path}?{query}: {r.status} {body[:300]!r}")
        return body


def q(**kw: str) -> str:
    return "&".join(f"{k.replace('_', '-')}={quote(v, safe='')}" for k, v in sorted(kw.items()))


def prepare(d: Path, n: int, src: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    p, port = start(src, d / "data")
    Client(port).get("PUT", BUCKET)
    stop(p)
    db = d / "data" / "meta.sqlite3"
    for prefix, fanout in (("flat/", 0), ("tree/", 10), ("few/", 3), ("big/", 1000)):
        load(db, "bench", prefix, n, fanout=fanout)
    (d / "info.json").write_text(json.dumps({"n": n}))


def scenarios(n: int, rnd: random.Random) -> dict[str, Callable[[], str]]:
    def flat() -> str:
        return f"flat/{rnd.randrange(max(1, n - 1000)):08d}"

    def folder(prefix: str, fanout: int) -> str:
        return f"{prefix}{rnd.randrange(max(1, n // fanout - 1001)):06d}"

    return {
        "v2 start-after": lambda: q(list_type="2", start_after=flat()),
        "v2 prefix+delimiter, no folders": lambda: q(list_type="2", prefix="flat/", delimiter="/", start_after=flat()),
        "v2 delimiter, folders of 10": lambda: q(
            list_type="2", prefix="tree/", delimiter="/", start_after=folder("tree/", 10)
        ),
        "v2 delimiter, folders of 3": lambda: q(
            list_type="2", prefix="few/", delimiter="/", start_after=folder("few/", 3)
        ),
        "v2 delimiter, folders of 1000": lambda: q(
            list_type="2", prefix="big/", delimiter="/", start_after=folder("big/", 1000)
        ),
        "v2 url + fetch-owner": lambda: q(list_type="2", start_after=flat(), encoding_type="url", fetch_owner="true"),
        "v1 marker": lambda: q(marker=flat(), prefix="flat/"),
        "versions": lambda: "versions=&" + q(key_marker=flat(), prefix="flat/"),
    }


def walk(cl: Client, pages: int) -> tuple[int, str]:
    """Pages of flat/ from its start, each from the previous one's NextContinuationToken."""
    h, token, done = hashlib.sha256(), None, 0
    while done < pages:
        kw = {"list_type": "2", "prefix": "flat/"} | ({"continuation_token": token} if token else {})
        body = cl.get("GET", BUCKET, q(**kw))
        h.update(body)
        done += 1
        m = re.search(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
        if not m:
            break
        token = m.group(1).decode()
    return done, h.hexdigest()[:12]


def run(src: str, d: Path, pages: int, only: str | None) -> dict[str, tuple[float, str]]:
    n = json.loads((d / "info.json").read_text())["n"]
    p, port = start(src, d / "data")
    out: dict[str, tuple[float, str]] = {}
    try:
        cl = Client(port)
        for _ in range(5):
            cl.get("GET", BUCKET, q(list_type="2"))
        for name, make in scenarios(n, random.Random(7)).items():
            if only and only not in name:
                continue
            queries = [make() for _ in range(pages)]
            cl.get("GET", BUCKET, queries[0])
            h = hashlib.sha256()
            c0 = tree_stats(p.pid)[1]
            for query in queries:
                h.update(cl.get("GET", BUCKET, query))
            out[name] = ((tree_stats(p.pid)[1] - c0) / pages * 1000, h.hexdigest()[:12])
        if not only or only in "v2 continuation-token walk":
            c0 = tree_stats(p.pid)[1]
            done, digest = walk(cl, pages)
            out["v2 continuation-token walk"] = ((tree_stats(p.pid)[1] - c0) / done * 1000, digest)
    finally:
        stop(p)
    return out


def floor(d: Path, pages: int) -> None:
    n = json.loads((d / "info.json").read_text())["n"]
    db = sqlite3.connect(f"file:{d / 'data' / 'meta.sqlite3'}?mode=ro", uri=True)
    rnd = random.Random(7)
    starts = [f"flat/{rnd.randrange(max(1, n - 1000)):08d}" for _ in range(pages)]
    for cols in ("key", "key, size, etag, mtime, owner"):
        sql = f"SELECT {cols} FROM objects WHERE bucket = 'bench' AND key > ? AND key < 'flat0' ORDER BY key LIMIT 1001"
        times = []
        for _ in range(5):
            t0 = time.thread_time()
            for start in starts:
                db.execute(sql, (start,)).fetchall()
            times.append((time.thread_time() - t0) / pages * 1000)
        print(
            f"read 1000 rows of ({cols}): {statistics.median(times):.3f} ms CPU per page"
            f" [{min(times):.3f}-{max(times):.3f}]"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["prepare", "compare", "floor"])
    ap.add_argument("dir", type=Path)
    ap.add_argument("n", type=int, nargs="?", default=10_000)
    ap.add_argument("--before", default="/work/main/src")
    ap.add_argument("--after", default=str(Path(__file__).resolve().parent.parent / "src"))
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only")
    a = ap.parse_args()
    if a.cmd == "prepare":
        t0 = time.time()
        prepare(a.dir, a.n, a.after)
        print(f"loaded 4 x {a.n} keys in {time.time() - t0:.0f} s")
        return
    if a.cmd == "floor":
        floor(a.dir, a.pages)
        return
    cpu: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    digest: dict[str, dict[str, str]] = {"before": {}, "after": {}}
    for side in (["before", "after", "after", "before"] * a.rounds)[: 2 * a.rounds]:
        for name, (ms, dig) in run(getattr(a, side), a.dir, a.pages, a.only).items():
            cpu[side].setdefault(name, []).append(ms)
            digest[side][name] = dig
    print(f"{'server CPU ms per page':34s} {'before':>22s} {'after':>22s}  after/before")
    for name, b in cpu["before"].items():
        f = cpu["after"][name]
        ratio = statistics.median(f) / statistics.median(b)
        same = "same bytes" if digest["before"][name] == digest["after"][name] else "DIFFERENT BYTES"
        print(
            f"{name:34s} {statistics.median(b):7.2f} [{min(b):.2f}-{max(b):.2f}]  "
            f"{statistics.median(f):7.2f} [{min(f):.2f}-{max(f):.2f}]  x{ratio:.2f}"
            f"  {same}"
        )


if __name__ == "__main__":
    main()
