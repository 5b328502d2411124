"""When the background scrub is due, across restarts, and its record (a real data dir, no processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunnelmesh.config import ConfigError, load, parse_duration
from tunnelmesh.store import scrub_schedule
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.scrub_schedule import RETRY_AFTER_INTERRUPTION, ScrubState, Timer

DAY = 86400.0


def test_a_new_data_dir_scrubs_one_interval_after_the_first_start_and_a_restart_does_not_postpone_it(
    tmp_path: Path,
) -> None:
    first = Timer(tmp_path, 7 * DAY, now=1000.0)
    assert first.due == 1000.0 + 7 * DAY and not first.is_due(1000.0 + 7 * DAY - 1)
    restarted = Timer(tmp_path, 7 * DAY, now=1000.0 + 3 * DAY)
    assert restarted.due == 1000.0 + 7 * DAY
    assert restarted.is_due(1000.0 + 7 * DAY)


def test_after_a_finished_scrub_the_next_is_one_interval_later_even_across_a_restart(tmp_path: Path) -> None:
    scrub_schedule.save(tmp_path, ScrubState(first_seen=0.0, last_started=5000.0, last_finished=6000.0))
    t = Timer(tmp_path, DAY, now=6500.0)  # a restart soon after the scrub: no new scrub at once
    assert t.due == 6000.0 + DAY and not t.is_due(6500.0)
    late = Timer(tmp_path, DAY, now=6000.0 + 10 * DAY)  # down for longer than an interval: due now
    assert late.is_due(6000.0 + 10 * DAY)


def test_a_scrub_cut_short_is_retried_soon_not_after_a_whole_interval(tmp_path: Path) -> None:
    scrub_schedule.save(tmp_path, ScrubState(first_seen=0.0, last_started=9000.0, last_finished=100.0))
    t = Timer(tmp_path, 7 * DAY, now=9500.0)
    assert t.due == 9500.0 + RETRY_AFTER_INTERRUPTION
    short = Timer(tmp_path, 2.0, now=9500.0)
    assert short.due == 9502.0
    assert scrub_schedule.status(tmp_path)["running_or_interrupted"] is True


def test_interval_zero_never_scrubs_and_writes_nothing(tmp_path: Path) -> None:
    t = Timer(tmp_path, 0, now=0.0)
    assert not t.is_due(10**12)
    assert not DataDir(tmp_path).scrub_state.exists()


def test_a_damaged_state_file_restarts_the_schedule_instead_of_stopping_it(tmp_path: Path) -> None:
    DataDir(tmp_path).scrub_state.write_text("{not json")
    t = Timer(tmp_path, DAY, now=50.0)
    assert t.due == 50.0 + DAY
    assert json.loads(DataDir(tmp_path).scrub_state.read_text())["first_seen"] == 50.0


def test_status_of_a_store_never_scrubbed(tmp_path: Path) -> None:
    doc = scrub_schedule.status(tmp_path)
    assert doc["last_started"] is None and doc["last_finished"] is None and doc["rotten"] == []


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * DAY), ("12h", 43200.0), ("15m", 900.0), ("2s", 2.0), ("30", 30.0), (0, 0.0), ("1w", 7 * DAY)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def _config(tmp_path: Path, s3_lines: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("s3:\n" + s3_lines)
    return path


def test_scrub_keys_default_to_weekly_at_50mb_per_second(tmp_path: Path) -> None:
    s = load(None)
    assert s.scrub_interval == 7 * DAY and s.scrub_rate == 50 * 10**6
    s = load(_config(tmp_path, "  scrub_interval: 0\n  scrub_rate: 1GiB\n"))
    assert s.scrub_interval == 0 and s.scrub_rate == 2**30


@pytest.mark.parametrize(
    ("lines", "key"),
    [
        ("  scrub_interval: weekly\n", "s3.scrub_interval"),
        ("  scrub_interval: -1d\n", "s3.scrub_interval"),
        ("  scrub_rate: fast\n", "s3.scrub_rate"),
        ("  scrub_rate: 0\n", "s3.scrub_rate"),
    ],
)
def test_bad_scrub_keys_are_named(tmp_path: Path, lines: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load(_config(tmp_path, lines))


def test_nodes_sharing_a_store_scrub_it_once_per_interval_between_them(tmp_path: Path) -> None:
    """Two nodes on one PostgreSQL and blob dir, their timers firing together: the first to take the lease
    scrubs, the second records a skip, which puts its next scrub one interval later, as its own would."""
    from pg_server import fresh_database

    from tunnelmesh.store.backends import MetaConfig
    from tunnelmesh.store.engine import prepare_data_dir

    meta, blobs = MetaConfig(fresh_database()), tmp_path / "blobs"
    layouts = {node: DataDir(tmp_path / node, blobs, node) for node in ("node-a", "node-b")}
    for layout in layouts.values():
        layout.root.mkdir()
        prepare_data_dir(layout.root, meta, layout)
    a, b = layouts["node-a"], layouts["node-b"]
    assert scrub_schedule.run(a.root, 10**9, meta, a, "node-a", DAY) == 0
    a_state = scrub_schedule.load(a.root)
    assert a_state is not None and a_state.last_finished is not None and a_state.last_skipped is None
    assert scrub_schedule.run(b.root, 10**9, meta, b, "node-b", DAY) == 0
    b_state = scrub_schedule.load(b.root)
    assert b_state is not None and b_state.last_skipped is not None and b_state.last_finished is None
    assert Timer(b.root, DAY, now=b_state.last_skipped + 1).due == b_state.last_skipped + DAY
    # done less than 0.9 interval ago: A's own timer, were it to fire again, skips too
    assert scrub_schedule.run(a.root, 10**9, meta, a, "node-a", DAY) == 0
    again = scrub_schedule.load(a.root)
    assert again is not None and again.last_skipped is not None and again.last_finished == a_state.last_finished
