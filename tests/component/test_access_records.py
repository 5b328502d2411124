"""The access records' incarnation rule (coordinator/access_records.py): a change meant for a bucket that
was deleted and re-created since is refused, never written over the successor's record."""

from __future__ import annotations

import dataclasses

import pytest

from tunnelmesh.coordinator.access_records import AccessRecords
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.store.errors import NoSuchBucket

from .inprocess import InProcessS3


def test_a_change_for_a_gone_incarnation_never_overwrites_the_successors_record(s3: InProcessS3) -> None:
    run = s3.loop.run_until_complete
    records = AccessRecords(SystemState(s3.store))
    s3("PUT", "/bkt")
    old = run(s3.store.require_bucket("bkt"))
    successor = dataclasses.replace(old, created=old.created + 10.0, owner="peer-b")

    def deny(rec: dict) -> None:
        rec["policy"] = "the successor's policy"

    run(records.update_bucket(successor, deny))

    def grant(rec: dict) -> None:
        rec["grants"] = [{"id": "g-1", "to": {"anyone": True}, "role": "write"}]

    with pytest.raises(NoSuchBucket):
        run(records.update_bucket(old, grant))
    kept = run(records.bucket(successor))
    assert kept["policy"] == "the successor's policy" and "grants" not in kept
    # an older record (a stale one, the bucket re-created since) is replaced by the current incarnation's
    run(records.update_bucket(dataclasses.replace(successor, created=successor.created + 1.0), grant))
