"""The group writer on a real SQLite file: order, per-write savepoints, outcomes, settle callbacks, concurrency.

A group is made deterministic by holding the writers' flock (the file beside the database that the
writer threads of all worker processes take turns through): the writer takes the first queued write,
waits on the lock, and once it is released takes everything queued meanwhile into one transaction.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tunnelmesh.store.sqlite_db import connect
from tunnelmesh.store.writer import GroupWriter

T = TypeVar("T")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "meta.sqlite3"
    conn = connect(path)
    conn.execute("CREATE TABLE t(seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL)")
    conn.close()
    return path


@pytest.fixture
def writer(db: Path) -> Iterator[GroupWriter]:
    w = GroupWriter(db)
    yield w
    w.close()


def rows(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM t ORDER BY seq")]
    finally:
        conn.close()


def insert(name: str, fail_after: bool = False) -> Callable[[sqlite3.Connection], int]:
    """A write as the store's are (the writer runs it in a savepoint); with `fail_after`, it raises once
    its row is in."""

    def fn(c: sqlite3.Connection) -> int:
        seq: int = c.execute("INSERT INTO t(name) VALUES (?) RETURNING seq", (name,)).fetchone()[0]
        if fail_after:
            raise ValueError(f"{name} refused")
        return seq

    return fn


@contextmanager
def writers_held(db: Path) -> Iterator[None]:
    fd = os.open(f"{db}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# a writer thread that died leaves its callers waiting forever: fail instead
DEADLINE = 30.0


async def done(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, DEADLINE)


async def queued(tasks: list[asyncio.Task]) -> None:
    """Let every task run up to its `await` of the writer (each puts its write on the queue first)."""
    for _ in range(3):
        await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)


async def in_one_group(
    db: Path, writer: GroupWriter, fns: list[Callable[[sqlite3.Connection], Any]], trace: list[str]
) -> list[tuple[bool, Any]]:
    """Submit `fns` so that they commit as one group; `trace` receives the writer connection's SQL."""

    def tracing(c: sqlite3.Connection) -> None:
        c.set_trace_callback(trace.append)

    await done(writer.submit(tracing))  # a group of its own, before the lock is taken
    trace.clear()  # its COMMIT
    with writers_held(db):
        tasks = [asyncio.create_task(writer.submit(fn)) for fn in fns]
        await queued(tasks)
    results = await done(asyncio.gather(*tasks, return_exceptions=True))
    return [(not isinstance(r, BaseException), r) for r in results]


def transactions(trace: list[str]) -> list[str]:
    return [s for s in trace if s.split()[0] in ("BEGIN", "COMMIT") or s == "ROLLBACK"]


def test_writes_commit_in_the_order_they_were_submitted(db: Path, writer: GroupWriter) -> None:
    async def scenario() -> list[int]:
        return list(await done(asyncio.gather(*(writer.submit(insert(f"w{i}")) for i in range(20)))))

    seqs = asyncio.run(scenario())
    assert seqs == list(range(1, 21))
    assert rows(db) == [f"w{i}" for i in range(20)]


def test_a_failing_write_rolls_back_alone_and_the_rest_of_its_group_commits(db: Path, writer: GroupWriter) -> None:
    trace: list[str] = []
    fns = [insert("a"), insert("b", fail_after=True), insert("c"), insert("a"), insert("d")]
    outcomes = asyncio.run(in_one_group(db, writer, fns, trace))
    # the five writes were one transaction, each in its own savepoint
    assert transactions(trace) == ["BEGIN IMMEDIATE", "COMMIT"]
    assert trace.count("SAVEPOINT op") == 5
    assert trace.count("ROLLBACK TO op") == 2
    assert [ok for ok, _ in outcomes] == [True, False, True, False, True]
    # the rolled-back rows left no trace, not even their place in the sequence
    assert [v for ok, v in outcomes if ok] == [1, 2, 3]
    # each caller gets its own write's exception: b's own, and the duplicate's from SQLite
    assert isinstance(outcomes[1][1], ValueError) and str(outcomes[1][1]) == "b refused"
    assert "UNIQUE" in str(outcomes[3][1])
    assert rows(db) == ["a", "c", "d"]


def test_a_group_whose_writes_all_succeed_runs_them_without_a_savepoint_each(db: Path, writer: GroupWriter) -> None:
    trace: list[str] = []
    outcomes = asyncio.run(in_one_group(db, writer, [insert(f"w{i}") for i in range(4)], trace))
    assert outcomes == [(True, i) for i in range(1, 5)]
    # one savepoint for the group (to fall back to if a write failed), none per write: per 4 KiB PUT, the
    # two statements that were the most of its commit's overhead after its own
    assert transactions(trace) == ["BEGIN IMMEDIATE", "COMMIT"]
    assert [s for s in trace if s.split()[0] in ("SAVEPOINT", "RELEASE", "ROLLBACK")] == ["SAVEPOINT grp"]
    assert rows(db) == ["w0", "w1", "w2", "w3"]


def test_writes_before_a_failing_one_are_applied_once(db: Path, writer: GroupWriter) -> None:
    """The group is run again, each write in its own savepoint, after the first try is rolled back."""
    trace: list[str] = []
    outcomes = asyncio.run(in_one_group(db, writer, [insert("a"), insert("b"), insert("a")], trace))
    assert [ok for ok, _ in outcomes] == [True, True, False]
    assert [v for ok, v in outcomes if ok] == [1, 2]
    assert trace.count("ROLLBACK TO grp") == 1 and trace.count("ROLLBACK TO op") == 1
    assert transactions(trace) == ["BEGIN IMMEDIATE", "COMMIT"]
    assert rows(db) == ["a", "b"]


def test_each_writes_result_reaches_its_own_caller(db: Path, writer: GroupWriter) -> None:
    trace: list[str] = []
    fns: list[Callable[[sqlite3.Connection], Any]] = [lambda m, i=i: {"write": i} for i in range(6)]
    outcomes = asyncio.run(in_one_group(db, writer, fns, trace))
    assert transactions(trace) == ["BEGIN IMMEDIATE", "COMMIT"]
    assert outcomes == [(True, {"write": i}) for i in range(6)]


def test_a_failed_commit_fails_every_write_of_the_group_and_applies_none(db: Path, writer: GroupWriter) -> None:
    def lose_the_transaction(c: sqlite3.Connection) -> None:
        # what a commit that SQLite refuses leaves: no transaction to commit
        c.execute("ROLLBACK")

    trace: list[str] = []
    outcomes = asyncio.run(in_one_group(db, writer, [insert("x"), insert("y"), lose_the_transaction], trace))
    assert [ok for ok, _ in outcomes] == [False, False, False]
    # one error for the whole group, the store's own (its class is the store's to choose), not a write's result
    assert all(isinstance(e, Exception) for _, e in outcomes)
    assert len({type(e) for _, e in outcomes}) == 1
    assert rows(db) == []

    # and the writer goes on
    async def after() -> int:
        return await done(writer.submit(insert("z")))

    assert asyncio.run(after()) == 1
    assert rows(db) == ["z"]


def test_settle_sees_each_outcome_before_the_caller_does(db: Path, writer: GroupWriter) -> None:
    seen: list[tuple[str, bool, Any]] = []

    async def scenario() -> list[Any]:
        async def one(name: str, fail: bool) -> Any:
            try:
                res = await writer.submit(insert(name, fail), lambda ok, v: seen.append((name, ok, v)))
            finally:
                assert name in [s[0] for s in seen]  # settled before the caller resumed
            return res

        return await done(asyncio.gather(one("a", False), one("b", True), one("c", False), return_exceptions=True))

    results = asyncio.run(scenario())
    assert (results[0], results[2]) == (1, 2)
    assert isinstance(results[1], ValueError)
    assert [(n, ok) for n, ok, _ in seen] == [("a", True), ("b", False), ("c", True)]
    assert seen[0][2] == 1 and seen[1][2] is results[1] and seen[2][2] == results[2]
    assert rows(db) == ["a", "c"]


def test_settle_runs_even_when_the_caller_was_cancelled_and_the_write_still_commits(
    db: Path, writer: GroupWriter
) -> None:
    async def scenario() -> tuple[bool, Any, bool]:
        settled = asyncio.Event()
        outcome: list[tuple[bool, Any]] = []

        def settle(ok: bool, value: Any) -> None:
            outcome.append((ok, value))
            settled.set()

        with writers_held(db):
            task = asyncio.create_task(writer.submit(insert("late"), settle))
            await queued([task])
            task.cancel()
            await asyncio.sleep(0)
            cancelled = task.cancelled()
        await done(settled.wait())
        return *outcome[0], cancelled

    ok, value, cancelled = asyncio.run(scenario())
    assert cancelled
    assert (ok, value) == (True, 1)
    assert rows(db) == ["late"]


def test_a_settle_that_raises_does_not_cost_the_caller_its_result(db: Path, writer: GroupWriter) -> None:
    def settle(ok: bool, value: Any) -> None:
        raise RuntimeError("cleanup failed")

    async def scenario() -> list[int]:
        return list(await done(asyncio.gather(writer.submit(insert("a"), settle), writer.submit(insert("b")))))

    assert asyncio.run(scenario()) == [1, 2]
    assert rows(db) == ["a", "b"]


def test_many_concurrent_writes_from_several_event_loops_are_each_applied_once(db: Path, writer: GroupWriter) -> None:
    per_loop, loops = 150, 3

    def run_loop(n: int, out: dict[int, list[int]]) -> None:
        async def scenario() -> list[int]:
            return list(await done(asyncio.gather(*(writer.submit(insert(f"{n}-{i}")) for i in range(per_loop)))))

        out[n] = asyncio.run(scenario())

    out: dict[int, list[int]] = {}
    threads = [threading.Thread(target=run_loop, args=(n, out)) for n in range(loops)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * DEADLINE)
    assert sorted(out) == list(range(loops))
    seqs = [s for n in range(loops) for s in out[n]]
    # every caller got a distinct row, every row is one caller's, and each loop's writes kept their order
    assert sorted(seqs) == list(range(1, per_loop * loops + 1))
    assert all(out[n] == sorted(out[n]) for n in range(loops))
    assert sorted(rows(db)) == sorted(f"{n}-{i}" for n in range(loops) for i in range(per_loop))
