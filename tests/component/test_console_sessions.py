"""Console session records (console/sessions.py) over a real Store, on each metadata backend: the record is
named by the id's digest and holds no secret; logout and expiry delete it; the sweep removes what expired."""

from __future__ import annotations

import hashlib

from tunnelmesh.console.sessions import PREFIX, Sessions, secret_digest
from tunnelmesh.coordinator.state import SystemState

from .inprocess import InProcessS3


def test_a_session_is_a_record_named_by_the_ids_digest_without_a_secret(s3: InProcessS3) -> None:
    state = SystemState(s3.store)
    sessions = Sessions(state)
    sid, made = s3.loop.run_until_complete(sessions.create("peer-1", None, "the-peers-token-0123456789"))
    keys = s3.loop.run_until_complete(state.keys(PREFIX))
    assert keys == [PREFIX + hashlib.sha256(sid.encode()).hexdigest()]
    raw = s3.loop.run_until_complete(state.read_bytes(keys[0]))
    assert raw is not None and sid.encode() not in raw and b"the-peers-token" not in raw
    assert made.token_digest == secret_digest("the-peers-token-0123456789")
    assert s3.loop.run_until_complete(sessions.load(sid)) == made
    s3.loop.run_until_complete(sessions.end(sid))
    assert s3.loop.run_until_complete(sessions.load(sid)) is None
    assert s3.loop.run_until_complete(state.keys(PREFIX)) == []


def test_an_expired_session_is_deleted_when_met(s3: InProcessS3) -> None:
    state = SystemState(s3.store)
    sid, _ = s3.loop.run_until_complete(Sessions(state, lifetime=-1).create("peer-1", None, "secret-0123456789"))
    assert s3.loop.run_until_complete(Sessions(state).load(sid)) is None
    assert s3.loop.run_until_complete(state.keys(PREFIX)) == []


def test_the_sweep_removes_expired_and_unreadable_records_only(s3: InProcessS3) -> None:
    state = SystemState(s3.store)
    live, _ = s3.loop.run_until_complete(Sessions(state).create("peer-1", "k-1", "secret-0123456789"))
    for _ in range(3):
        s3.loop.run_until_complete(Sessions(state, lifetime=-1).create("peer-2", None, "secret-0123456789"))
    s3.loop.run_until_complete(state.put_bytes(PREFIX + "0" * 64, b"not json"))
    assert s3.loop.run_until_complete(Sessions(state).sweep()) == 4
    assert s3.loop.run_until_complete(state.keys(PREFIX)) == [PREFIX + hashlib.sha256(live.encode()).hexdigest()]
    assert s3.loop.run_until_complete(Sessions(state).load(live)) is not None


def test_a_malformed_id_names_no_session(s3: InProcessS3) -> None:
    sessions = Sessions(SystemState(s3.store))
    for sid in ("", "short", "x" * 44, "../" + "a" * 40, "a" * 42 + "="):
        assert s3.loop.run_until_complete(sessions.load(sid)) is None
