"""Benchmark: several coordinators, one store. One coordinator on SQLite, one on PostgreSQL and two on one
PostgreSQL sharing one blob dir, one after another, in one run, on one machine, driven by one load generator.

    python bench/scale_out.py [--seconds 5] [--large-count 6] [--keys 10000] [--write-readme]
                              [--src DIR] [--json FILE]

PostgreSQL 16 comes from the `pgserver` wheel (pip install -e '.[bench]'), started in the run's temporary
directory, on the same disk as the data dirs, at its default durability (fsync on: every commit waits for
its WAL write, as SQLite's does). The two-coordinator set-up has each node on its own data dir and node id,
both on one database and one shared blob dir, and the generator spreads its connections half and half.
Same worker processes in total everywhere: one coordinator gets `workers: 2`, two get `workers: 1` each.

Per workload it reports throughput and latency as a ratio to SQLite, the server CPU seconds of the
coordinators and of PostgreSQL apart, and the generator's own CPU share (it runs on the same cores), with
the bare HTTP stack's 4 KiB PUT rate (bench/null_server.py) as the raw limit. Then where the time goes on
PostgreSQL: transactions per request, the database's active and idle-in-transaction time per request
(pg_stat_database), what busy backends wait on (pg_stat_activity), the statements per request and their
server time from a short logged probe (the wheel has no pg_stat_statements), and the latency over SQLite's
with nothing queued.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import Result, run_load
from run import (
    EMPTY,
    LARGE,
    SMALL,
    Bench,
    Server,
    start_null,
    start_tunnelmesh,
    tree_stats,
    use_source,
    value,
    write_between,
)

with warnings.catch_warnings():
    # pgserver asks platformdirs for a runtime dir, which warns where XDG_RUNTIME_DIR is unset
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    import pgserver

SQLITE, PG, PAIR = "SQLite", "PostgreSQL", "PostgreSQL x2"
# s: a PostgreSQL 16 backend publishes its counters at most once a second while busy, and the rest 10 s
# after it last went idle (PGSTAT_IDLE_INTERVAL): counters read sooner miss the end of a workload
STATS_FLUSH = 11.0
PROBE = 100  # requests per logged probe
DURABILITY = ("fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")
MARKERS = ("<!-- scale-out -->", "<!-- /scale-out -->")
CROSS = "4 KiB GET c16, written on A, read on B"
BASE = {CROSS: "4 KiB GET c16"}  # the workload whose SQLite figure a row is compared with, where not its own
# a logged statement's duration: parse, bind and execute of one extended-protocol statement are one round
# trip; a simple-protocol statement (BEGIN, COMMIT) is logged as "statement". Lines start with the database.
LOGGED = r"db={} LOG:  duration: ([\d.]+) ms  (statement|parse|bind|execute)[^:]*: ?(\w*)"

# make(k, server, i): the request number i (unique over all connections) sent to servers[k]
Make = Callable[[int, Server, int], tuple[Any, ...]]


@dataclass
class DbStats:
    """pg_stat_database counters of one database (times in ms)."""

    commits: int
    rollbacks: int
    active_ms: float
    idle_in_tx_ms: float

    def minus(self, other: DbStats) -> DbStats:
        return DbStats(
            self.commits - other.commits,
            self.rollbacks - other.rollbacks,
            self.active_ms - other.active_ms,
            self.idle_in_tx_ms - other.idle_in_tx_ms,
        )


@dataclass
class Probe:
    """The statements a few requests at concurrency 1 per node sent to PostgreSQL, from its log."""

    requests: int
    statements: int
    server_ms: float  # parse + bind + execute of all of them
    commits: int
    commit_ms: float


class WaitSampler:
    """What the database's busy backends wait on, sampled from pg_stat_activity ten times a second while a
    workload runs: "CPU" where a backend runs a statement and waits on nothing (lock waits, WAL flushes
    and I/O show as their wait events)."""

    def __init__(self, admin: str, database: str) -> None:
        self.admin, self.database = admin, database
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            while not self._stop.wait(0.1):
                for (event,) in conn.execute(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity "
                    "WHERE datname = %s AND state = 'active' AND backend_type = 'client backend'",
                    (self.database,),
                ):
                    self.counts[event] += 1

    def __enter__(self) -> WaitSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    def top(self, n: int = 3) -> str:
        total = sum(self.counts.values())
        if not total:
            return "none active"
        return ", ".join(f"{event} {count / total:.0%}" for event, count in self.counts.most_common(n))


@dataclass
class Figure:
    result: Result
    coordinator_cpu: float
    pg_cpu: float | None
    client_cpu: float  # the generator's thread: it shares the cores with the servers
    db: DbStats | None = None
    probe: Probe | None = None
    waits: WaitSampler | None = None
    c1: Result | None = None  # PROBE requests at one connection per coordinator


@dataclass
class Setup:
    name: str
    servers: list[Server]
    database: str | None = None  # its database on the PostgreSQL server


class Postgres:
    """One PostgreSQL 16 (pgserver) in the run's directory, at its default durability."""

    def __init__(self, tmp: Path) -> None:
        self.server = pgserver.get_server(tmp / "postgres", cleanup_mode="delete")
        self.admin = self.server.get_uri()
        with psycopg.connect(self.admin, autocommit=True) as conn:
            self.settings = {s: str(conn.execute(f"SHOW {s}").fetchone()[0]) for s in DURABILITY}
            self.statements_extension = bool(
                conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'").fetchone()
            )
            # the probe's log lines: no bound values (a 4 KiB body would be logged whole)
            conn.execute("ALTER SYSTEM SET log_parameter_max_length = 0")
            # and each names its database: only the coordinators' statements count, not ours
            conn.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] db=%d '")
            conn.execute("SELECT pg_reload_conf()")
        if self.settings["fsync"] != "on":
            raise RuntimeError("PostgreSQL runs with fsync off: its commits would not be durable")

    @property
    def pid(self) -> int:
        pid = self.server.get_pid()
        assert pid is not None, "PostgreSQL is not running"
        return pid

    def database(self, name: str) -> str:
        """A new empty database: the postgresql:// URI the coordinator's config takes."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        d = conninfo_to_dict(self.admin)
        query = "&".join(f"{k}={quote(str(d[k]), safe='/')}" for k in ("host", "port") if k in d)
        return f"postgresql://{quote(str(d['user']))}@/{name}?{query}"

    def stats(self, name: str) -> DbStats:
        """The counters of database `name` once every backend has published its own."""
        time.sleep(STATS_FLUSH)
        with psycopg.connect(self.admin, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit, xact_rollback, active_time, idle_in_transaction_time "
                "FROM pg_stat_database WHERE datname = %s",
                (name,),
            ).fetchone()
        assert row is not None, name
        return DbStats(int(row[0]), int(row[1]), float(row[2]), float(row[3]))

    def log_statements(self, on: bool) -> int:
        """Log every statement with its duration (or stop); returns the log's size, where a probe starts."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"ALTER SYSTEM SET log_min_duration_statement = {0 if on else -1}")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)  # idle backends read the new setting before their next statement
        return self.server.log.stat().st_size

    def logged(self, since: int, requests: int, database: str) -> Probe:
        with self.server.log.open() as f:
            f.seek(since)
            lines = f.read()
        statements = commits = 0
        server_ms = commit_ms = 0.0
        for m in re.finditer(LOGGED.format(re.escape(database)), lines):
            ms, kind, word = float(m.group(1)), m.group(2), m.group(3).upper()
            server_ms += ms
            if kind in ("statement", "execute"):
                statements += 1
            if kind == "statement" and word == "COMMIT":
                commits += 1
                commit_ms += ms
        return Probe(requests, statements, server_ms, commits, commit_ms)

    def close(self) -> None:
        self.server.cleanup()


def c1_cell(f: Figure, base: Figure | None) -> str:
    if f.c1 is None:
        return "n/a"
    if base is None or base.c1 is None:
        return f"{f.c1.pct(50):.2f}"
    return f"{f.c1.pct(50):.2f} ({f.c1.pct(50) - base.c1.pct(50):+.2f})"


def merge(results: list[Result]) -> Result:
    """The results of connections run side by side, as one run."""
    return Result(
        sum(r.ops for r in results),
        max(r.seconds for r in results),
        sum(r.bytes for r in results),
        [lat for r in results for lat in r.latencies],
        sum(r.errors for r in results),
    )


async def spread(
    servers: list[Server], conc: int, make: Make, total: int | None = None, duration: float | None = None
) -> Result:
    """run_load with its connections (and any total) shared evenly across `servers`, request numbers
    counted over all of them (so keys stay unique)."""
    n = len(servers)
    if conc % n:
        raise ValueError(f"concurrency {conc} does not split evenly over {n} coordinators")
    numbers = itertools.count()
    results = await asyncio.gather(
        *(
            run_load(
                s.base,
                conc // n,
                lambda _i, k=k, s=s: make(k, s, next(numbers)),
                total=None if total is None else total // n + (k < total % n),
                duration=duration,
            )
            for k, s in enumerate(servers)
        )
    )
    return merge(list(results))


class ScaleOut:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.bench = Bench(args, tmp)  # the payloads and the signed requests of bench/run.py
        self.figures: dict[str, dict[str, Figure]] = {}  # workload -> set-up -> figure
        self.units: dict[str, str] = {}
        self.pg: Postgres | None = None
        self.db_mark: DbStats | None = None  # the last reading, if nothing ran on the database since
        self.started = time.perf_counter()

    def req(self, s: Server, method: str, path: str, **kw: Any) -> tuple[Any, ...]:
        return self.bench.req(s, method, path, **kw)

    async def measure(
        self,
        setup: Setup,
        name: str,
        unit: str,
        conc: int,
        make: Make,
        total: int | None = None,
        duration: float | None = None,
        stats: bool = False,
    ) -> Figure:
        """One workload through spread(); with `stats`, also its pg_stat_database counters (each reading waits
        for the backends to publish theirs: only the 4 KiB workloads pay that, and back to back ones share
        a reading)."""
        pg = self.pg if setup.database else None
        before = None
        if pg and setup.database and stats:
            before = self.db_mark or pg.stats(setup.database)
        self.db_mark = None  # anything measured without a reading after it spoils the next baseline
        coord0 = sum(tree_stats(s.proc.pid)[1] for s in setup.servers)
        pg0 = tree_stats(pg.pid)[1] if pg else 0.0
        waits = WaitSampler(pg.admin, setup.database) if pg and setup.database and stats else None
        client0 = time.thread_time()  # the load generator is this thread's event loop
        with waits or contextlib.nullcontext():
            r = await spread(setup.servers, conc, make, total=total, duration=duration)
        client = time.thread_time() - client0
        coord = sum(tree_stats(s.proc.pid)[1] for s in setup.servers) - coord0
        pg_cpu = tree_stats(pg.pid)[1] - pg0 if pg else None
        db = None
        if pg and setup.database and before:
            self.db_mark = pg.stats(setup.database)
            db = self.db_mark.minus(before)
        if r.errors:
            print(f"  {setup.name} {name}: {r.errors} errors", file=sys.stderr)
        fig = Figure(r, coord, pg_cpu, client, db, waits=waits)
        self.figures.setdefault(name, {})[setup.name] = fig
        self.units[name] = unit
        return fig

    async def probe(self, setup: Setup, name: str, make: Make) -> None:
        """`name`'s latency at one connection per node (no queueing: what the metadata's round trips add),
        and on PostgreSQL the statements behind its requests, from the log (logging every statement is not
        cheap: that runs apart)."""
        fig = self.figures[name][setup.name]
        fig.c1 = await spread(setup.servers, len(setup.servers), make, total=PROBE)
        if self.pg is None or setup.database is None:
            return
        since = self.pg.log_statements(True)
        try:
            await spread(setup.servers, len(setup.servers), make, total=PROBE)
        finally:
            self.pg.log_statements(False)
        fig.probe = self.pg.logged(since, PROBE, setup.database)

    async def workloads(self, setup: Setup) -> None:
        a, n = self.args, len(setup.servers)
        b = f"{setup.servers[0].prefix}/bench"
        self.db_mark = None
        await spread(setup.servers[:1], 1, lambda k, s, i: self.req(s, "PUT", b), total=1)
        small, small_hash = self.bench.small, self.bench.small_hash
        writer: dict[int, int] = {}  # 4 KiB key number -> the coordinator it was written through

        def put(k: int, s: Server, i: int) -> tuple[Any, ...]:
            writer[i] = k
            return self.req(s, "PUT", f"{b}/small/{i}", payload_hash=small_hash, body=small, payload=SMALL)

        await self.measure(setup, "4 KiB PUT c16", "ops", 16, put, duration=a.seconds, stats=True)
        written = [[i for i, w in writer.items() if w == k] for k in range(n)]

        def read(method: str, other: bool = False) -> Make:
            def make(k: int, s: Server, i: int) -> tuple[Any, ...]:
                keys = written[(k + 1) % n if other else k]
                return self.req(s, method, f"{b}/small/{keys[i % len(keys)]}")

            return make

        # each coordinator reads what was written through it (on one coordinator: everything)
        await self.measure(setup, "4 KiB GET c16", "ops", 16, read("GET"), duration=a.seconds, stats=True)
        await self.measure(setup, "4 KiB HEAD c16", "ops", 16, read("HEAD"), duration=a.seconds, stats=True)
        if n > 1:  # read-after-write across nodes: every key read through the other coordinator
            await self.measure(
                setup,
                CROSS,
                "ops",
                16,
                read("GET", True),
                duration=a.seconds,
                stats=True,
            )
        fd = os.open(self.bench.large_file, os.O_RDONLY)
        try:
            await self.measure(
                setup,
                "64 MiB PUT c2",
                "MB",
                2,
                lambda k, s, i: self.req(
                    s,
                    "PUT",
                    f"{b}/large/{i}",
                    payload_hash=self.bench.large_hash,
                    body_file=(fd, LARGE),
                    payload=LARGE,
                ),
                total=a.large_count,
            )
        finally:
            os.close(fd)
        await self.measure(
            setup,
            "64 MiB GET c2",
            "MB",
            2,
            lambda k, s, i: self.req(s, "GET", f"{b}/large/{i % a.large_count}"),
            total=a.large_count,
        )
        await self.listing(setup, b)
        probe_keys = itertools.count()
        await self.probe(
            setup,
            "4 KiB PUT c16",
            lambda k, s, i: self.req(
                s, "PUT", f"{b}/probe/{next(probe_keys)}", payload_hash=small_hash, body=small, payload=SMALL
            ),
        )
        await self.probe(setup, "4 KiB GET c16", read("GET"))
        await self.probe(setup, "4 KiB HEAD c16", read("HEAD"))
        if n > 1:
            await self.probe(setup, CROSS, read("GET", True))

    async def listing(self, setup: Setup, b: str) -> None:
        keys = self.args.keys
        await spread(setup.servers, 16, lambda k, s, i: self.req(s, "PUT", f"{b}/list/{i:07d}", body=b""), total=keys)
        rnd = random.Random(1)

        def page(k: int, s: Server, i: int) -> tuple[Any, ...]:
            start = f"list%2F{rnd.randrange(max(1, keys - 1000)):07d}"
            query = f"delimiter=%2F&list-type=2&max-keys=1000&prefix=list%2F&start-after={start}"
            return self.req(s, "GET", b, payload_hash=EMPTY, query=query)

        await self.measure(setup, f"ListObjectsV2 page of 1000, {keys:,} keys c2", "ops", 2, page, total=40)

    async def null_limit(self) -> None:
        """The 4 KiB PUT limit: the same HTTP stack with nothing behind it."""
        null = start_null(self.tmp)
        try:
            setup = Setup("null server", [null])

            def put(k: int, s: Server, i: int) -> tuple[Any, ...]:
                return (
                    "PUT",
                    f"/n/{i}",
                    s.headers("PUT", f"/n/{i}", self.bench.small_hash),
                    self.bench.small,
                    None,
                    SMALL,
                )

            await self.measure(setup, "4 KiB PUT c16", "ops", 16, put, duration=self.args.seconds)
        finally:
            null.stop()

    def setups(self) -> list[tuple[str, Callable[[], Setup]]]:
        token = secrets.token_urlsafe(24)

        def sqlite() -> Setup:
            return Setup(SQLITE, [start_tunnelmesh(self.tmp, "sqlite", workers=2, token=token)])

        def one_pg() -> Setup:
            assert self.pg is not None
            uri = self.pg.database("tm_single")
            env = {"TUNNELMESH_S3_METADATA": uri}
            return Setup(PG, [start_tunnelmesh(self.tmp, "pg", workers=2, token=token, env=env)], "tm_single")

        def pair() -> Setup:
            assert self.pg is not None
            uri = self.pg.database("tm_pair")
            env = {"TUNNELMESH_S3_METADATA": uri}
            blobs = self.tmp / "shared-blobs"
            nodes = []
            try:
                for node in ("node-a", "node-b"):
                    extra = f"  blob_dir: {blobs}\n  node_id: {node}\n"
                    nodes.append(start_tunnelmesh(self.tmp, node, workers=1, s3_extra=extra, token=token, env=env))
            except BaseException:
                for s in nodes:
                    s.stop()
                raise
            return Setup(PAIR, nodes, "tm_pair")

        return [(SQLITE, sqlite), (PG, one_pg), (PAIR, pair)]

    def run(self) -> None:
        self.pg = Postgres(self.tmp)
        try:
            for name, start in self.setups():
                print(f"{name} ...", file=sys.stderr)
                setup = start()
                try:
                    asyncio.run(self.workloads(setup))
                finally:
                    for s in setup.servers:
                        s.stop()
            asyncio.run(self.null_limit())
        finally:
            self.pg.close()
        self.seconds = time.perf_counter() - self.started

    def report(self) -> str:
        a = self.args
        assert self.pg is not None
        lines = [
            f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; "
            f"`python bench/scale_out.py --seconds {a.seconds:g} --large-count {a.large_count} --keys {a.keys}` "
            f"({self.seconds:.0f} s).",
            "",
            "| workload | set-up | throughput | p50 / p99 ms | / SQLite | coordinators CPU s | PostgreSQL CPU s "
            "| client CPU s / wall s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, by_setup in self.ordered():
            unit = self.units[name]
            base = self.sqlite(name)
            for setup, f in by_setup.items():
                r = f.result
                v = value(r, unit)
                per = f" ({f.coordinator_cpu / r.ops * 1e3:.2f} ms/op)" if unit == "ops" and r.ops else ""
                pg_per = f" ({f.pg_cpu / r.ops * 1e3:.2f} ms/op)" if unit == "ops" and r.ops and f.pg_cpu else ""
                cells = [
                    name,
                    setup if setup != "null server" else "limit: null server",
                    f"{v:,.0f} {'ops/s' if unit == 'ops' else 'MB/s'}" + (f" ({r.errors} errors)" if r.errors else ""),
                    f"{r.pct(50):.1f} / {r.pct(99):.1f}",
                    f"{v / value(base.result, unit):.2f}x" if base and value(base.result, unit) else "n/a",
                    f"{f.coordinator_cpu:.1f}{per}",
                    f"{f.pg_cpu:.1f}{pg_per}" if f.pg_cpu is not None else "n/a",
                    f"{f.client_cpu:.1f} / {r.seconds:.1f} ({f.client_cpu / r.seconds:.0%})" if r.seconds else "n/a",
                ]
                lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *self.where_the_time_goes(), "", *self.notes()]
        return "\n".join(lines)

    def ordered(self) -> list[tuple[str, dict[str, Figure]]]:
        """The workloads in the order they ran, the cross-node GET (run by one set-up only) after HEAD."""
        names = [n for n in self.figures if n != CROSS]
        if CROSS in self.figures:
            names.insert(names.index("4 KiB HEAD c16") + 1, CROSS)
        return [(n, self.figures[n]) for n in names]

    def sqlite(self, name: str) -> Figure | None:
        return self.figures.get(BASE.get(name, name), {}).get(SQLITE)

    def where_the_time_goes(self) -> list[str]:
        lines = [
            "Where the time goes on PostgreSQL (4 KiB workloads; per request):",
            "",
            "| workload | set-up | transactions (commit + rollback) | PG active ms | PG idle in transaction ms "
            "| busy backends wait on | statements (probe) | server ms / statement (probe) | COMMIT ms (probe) "
            "| p50 c16 - SQLite's ms | p50 c1 ms (- SQLite's) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, by_setup in self.ordered():
            if not name.startswith("4 KiB"):
                continue
            base = self.sqlite(name)
            for setup, f in by_setup.items():
                if f.db is None:
                    continue
                ops, db, p = f.result.ops or 1, f.db, f.probe
                cells = [
                    name,
                    setup,
                    f"{(db.commits + db.rollbacks) / ops:.2f} ({db.commits / ops:.2f} + {db.rollbacks / ops:.2f})",
                    f"{db.active_ms / ops:.3f}",
                    f"{db.idle_in_tx_ms / ops:.3f}",
                    f.waits.top() if f.waits else "n/a",
                    f"{p.statements / p.requests:.1f}" if p else "n/a",
                    f"{p.server_ms / p.statements:.3f}" if p and p.statements else "n/a",
                    f"{p.commit_ms / p.commits:.3f}" if p and p.commits else "n/a",
                    f"{f.result.pct(50) - base.result.pct(50):+.1f}" if base else "n/a",
                    c1_cell(f, base),
                ]
                lines.append("| " + " | ".join(cells) + " |")
        return lines

    def notes(self) -> list[str]:
        assert self.pg is not None
        durability = ", ".join(f"{k} = {v}" for k, v in self.pg.settings.items())
        return [
            "- Set-ups, one after another on the same 2 cores and disk, the same load generator: SQLite and "
            "PostgreSQL are one coordinator with `workers: 2`; PostgreSQL x2 is two coordinators with "
            "`workers: 1` each (the same worker processes in total), each with its own `s3.data_dir` and "
            "`s3.node_id`, on one database and one shared `s3.blob_dir`; the generator opens half its "
            "connections to each.",
            f"- PostgreSQL 16 (pgserver wheel) at its default durability: {durability}. Every commit waits "
            "for its WAL to reach the disk, as SQLite's does; nothing here turns that off.",
            '- "written on A, read on B": the same 4 KiB GET, but every key is read through the other '
            'coordinator than the one that wrote it (on "4 KiB GET c16" each reads its own).',
            "- CPU seconds: /proc, whole process trees: the coordinators, and PostgreSQL's postmaster with its "
            "backends and background processes. Client: the CPU time of the generator's thread over the "
            "workload's wall time; it runs on the same cores as the servers.",
            "- Transactions, active and idle-in-transaction time: pg_stat_database over the measured load. "
            "Active is the time backends spent in the statements, waits for locks and for the WAL's fsync "
            "included. Idle in transaction is PostgreSQL waiting for the coordinator's next statement within a "
            "transaction (round trips plus the coordinator's own work). What busy backends wait on: "
            "pg_stat_activity sampled ten times a second (CPU: running, waiting on nothing). "
            + (
                "pg_stat_statements is installable but not preloaded here; "
                if self.pg.statements_extension
                else "pg_stat_statements is not in the pgserver wheel; "
            )
            + f"statements per request and their server time (parse + bind + execute) come instead from a "
            f"probe of {PROBE} requests at one connection per coordinator with every statement logged "
            "(`log_min_duration_statement = 0`), apart from the measured load. Each statement is one round "
            "trip to PostgreSQL. p50 c1: the same requests without logging, one connection per coordinator "
            "and nothing queued, against SQLite's: what the round trips add to a request on their own.",
            "- Limit: bench/null_server.py, the same HTTP stack with nothing behind it (one process per core).",
        ]

    def dump(self, path: Path, source: str) -> None:
        rows = []
        for name, by_setup in self.figures.items():
            for setup, f in by_setup.items():
                r = f.result
                rows.append(
                    {
                        "workload": name,
                        "setup": setup,
                        "unit": self.units[name],
                        "ops": r.ops,
                        "seconds": r.seconds,
                        "bytes": r.bytes,
                        "errors": r.errors,
                        "value": value(r, self.units[name]),
                        "p50_ms": r.pct(50),
                        "p99_ms": r.pct(99),
                        "coordinator_cpu_s": f.coordinator_cpu,
                        "postgres_cpu_s": f.pg_cpu,
                        "client_cpu_s": f.client_cpu,
                        "pg_stat_database": asdict(f.db) if f.db else None,
                        "probe": asdict(f.probe) if f.probe else None,
                        "pg_waits": dict(f.waits.counts) if f.waits else None,
                        "c1_p50_ms": f.c1.pct(50) if f.c1 else None,
                        "c1_p99_ms": f.c1.pct(99) if f.c1 else None,
                    }
                )
        assert self.pg is not None
        doc = {
            "args": vars(self.args),
            "tunnelmesh": source,
            "postgres": self.pg.settings,
            "seconds": self.seconds,
            "rows": rows,
        }
        path.write_text(json.dumps(doc, indent=1, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each 4 KiB workload")
    ap.add_argument("--large-count", type=int, default=6, help="64 MiB objects per large workload")
    ap.add_argument("--keys", type=int, default=10_000, help="keys in the listing bucket")
    ap.add_argument("--src", type=Path, help="the tunnelmesh source tree to run (the directory holding tunnelmesh/)")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--write-readme", action="store_true", help="replace the results in bench/README.md")
    args = ap.parse_args()
    if args.keys < 1000:
        ap.error("--keys: at least 1000 (a page is 1000 keys)")
    args.src, source = use_source(args.src)
    # a SIGTERM (a timeout) exits through the finally blocks that stop the coordinators and PostgreSQL
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    with tempfile.TemporaryDirectory(dir=Path(__file__).parent.parent) as d:
        tmp = Path(d)
        os.chmod(tmp, 0o755)  # pgserver's server may run as another user, and must reach its directory
        bench = ScaleOut(args, tmp)
        bench.run()
        text = bench.report()
    if args.json is not None:
        bench.dump(args.json, source)
    print(text)
    if args.write_readme:
        write_between(Path(__file__).parent / "README.md", *MARKERS, text)


if __name__ == "__main__":
    main()
