"""The versioning write rules (store/commits.py; docs/data-protection.md 1.1, 1.2, 2.3) on every metadata
backend: a table of (bucket state x operation x what the key holds) against hand-written expectations, and
a hypothesis model of a bucket's keys and their versions that checks the schema's invariants after every
step. Each case uses a bucket of its own on one backend per module (a PostgreSQL database per case would
cost more than the case)."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from meta_backends import BACKENDS
from meta_rules import Rules

from tunnelmesh.store import commits
from tunnelmesh.store.errors import (
    BucketNotEmpty,
    InvalidBucketState,
    IsDeleteMarker,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    PreconditionFailed,
    QuotaExceeded,
    ReservedBucket,
)
from tunnelmesh.store.metadata import MetaReads
from tunnelmesh.store.records import (
    SYSTEM_BUCKET,
    Deleted,
    ObjectRecord,
    Part,
    Segment,
    Upload,
    WriteConditions,
    version_seq,
)

MAX = 1 << 40
HEX24 = re.compile(r"[0-9a-f]{24}")
_buckets = itertools.count()


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def m(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rules]:
    rules = Rules(BACKENDS[request.param](Path(tmp_path_factory.mktemp("versioning"))))
    yield rules
    rules.close()


def fresh_bucket(m: Rules) -> str:
    name = f"vb{next(_buckets)}"
    m.create_bucket(name, "p", "r", 1.0)
    return name


# ---- driving the rules -----------------------------------------------------------------------


def record(bucket: str, key: str, blob: str, size: int, t: float) -> ObjectRecord:
    return ObjectRecord(bucket, key, size, f"etag-{blob}", t, {}, {}, [Segment(blob, size, f"etag-{blob}")], "p")


def put(m: Rules, bucket: str, key: str, blob: str, size: int, t: float, rand: int = 7) -> tuple[str | None, list[str]]:
    r = m.write(lambda tx: commits.put_object(tx, record(bucket, key, blob, size, t), WriteConditions(), MAX, rand))
    return r.value, r.freed


def complete(
    m: Rules, bucket: str, key: str, blob: str, size: int, t: float, unused: str, rand: int = 7
) -> tuple[str | None, list[str]]:
    """A multipart upload of two parts, completed with the first only: the second (`unused`, 5 bytes) is
    freed whatever the bucket's state."""
    upload_id = f"up-{blob}"
    m.create_upload(Upload(upload_id, bucket, key, t - 1, "p", {}, None))
    m.put_part(bucket, key, upload_id, Part(1, size, f"etag-{blob}", t - 1, blob), MAX)
    m.put_part(bucket, key, upload_id, Part(2, 5, f"etag-{unused}", t - 1, unused), MAX)
    rec = record(bucket, key, blob, size, t)
    r = m.write(lambda tx: commits.complete_upload(tx, upload_id, rec, [1], "1:x", WriteConditions(), MAX, rand))
    return r.value, r.freed


def delete(
    m: Rules, bucket: str, entries: list[tuple[str, str | None]], t: float, rand: int = 9
) -> tuple[list[Any], list[str]]:
    r = m.write(lambda tx: commits.delete_objects(tx, bucket, [(k, v, None) for k, v in entries], "p", t, rand))
    return list(r.value), r.freed


def set_versioning(m: Rules, bucket: str, state: str) -> None:
    m.write(lambda tx: commits.set_versioning(tx, bucket, state))


# ---- reading what a key holds ----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One version of a key as the backend holds it."""

    version_id: str | None
    marker: bool
    blobs: tuple[str, ...]
    size: int
    seq: int
    current: bool  # the `objects` row


def _rows(r: MetaReads, bucket: str, key: str) -> list[Row]:
    """The key's versions, newest first: its `objects` row, then its `versions` rows."""
    out: list[Row] = []
    cur = r.get_object(bucket, key)
    ref = r.object_ref(bucket, key)
    if cur is not None:
        assert ref is not None and (ref.version_id, ref.seq, ref.size) == (cur.version_id, cur.seq, cur.size)
        out.append(Row(cur.version_id, False, tuple(s.blob for s in cur.segments), cur.size, cur.seq, True))
    else:
        assert ref is None
    for e in r.scan_versions(bucket, "", -(2**63), True, None, 10_000):
        if e.key != key:
            continue
        v = r.version(bucket, key, e.seq)
        assert v is not None and (v.version_id, v.marker, v.size) == (e.version_id, e.marker, e.size)
        out.append(Row(e.version_id, e.marker, tuple(s.blob for s in v.segments), e.size, e.seq, False))
    return out


def rows(m: Rules, bucket: str, key: str) -> list[Row]:
    return m.read(lambda r: _rows(r, bucket, key))


def check_structure(m: Rules, bucket: str, key: str) -> list[Row]:
    """The schema's invariants for one key (docs/data-protection.md 1.1), its id rules (1.2), and the point
    reads the rules use agreeing with the scan."""
    got = rows(m, bucket, key)
    noncurrent = [v for v in got if not v.current]
    seqs = [v.seq for v in got]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs), got
    # invariant 1: the `objects` row is newer than every `versions` row of the key (the order above)
    # invariant 2: the newest version is current iff it is not a delete marker
    if got:
        assert got[0].current == (not got[0].marker), got
    assert all(not v.current for v in got[1:])
    assert all(not v.marker or (v.blobs == () and v.size == 0) for v in got)
    # invariant 3: at most one null version per key, in either table
    nulls = [v for v in got if v.version_id is None]
    assert len(nulls) <= 1, got
    ids = [v.version_id for v in got if v.version_id is not None]
    assert len(set(ids)) == len(ids), got
    for v in got:
        if v.version_id is not None:
            assert HEX24.fullmatch(v.version_id) and version_seq(v.version_id) == v.seq, v
    newest = m.read(lambda r: r.newest_version_ref(bucket, key))
    assert ((newest.seq, newest.version_id, newest.marker) if newest else None) == (
        (noncurrent[0].seq, noncurrent[0].version_id, noncurrent[0].marker) if noncurrent else None
    )
    null_ref = m.read(lambda r: r.null_version_ref(bucket, key))
    nc_null = [v for v in noncurrent if v.version_id is None]
    assert ((null_ref.seq, null_ref.marker) if null_ref else None) == (
        (nc_null[0].seq, nc_null[0].marker) if nc_null else None
    )
    return got


def check_counters(m: Rules, bucket: str, keys: list[str]) -> tuple[int, int, int, int]:
    """The bucket's counters are what its records add up to (count_usage), and what the keys' rows add up to."""
    b = m.bucket(bucket)
    counters = (b.used, b.objects, b.mpu_used, b.nc_used, b.nc_objects)
    assert counters == m.read(lambda r: r.count_usage()).get(bucket, (0, 0, 0, 0, 0))
    all_rows = [v for k in keys for v in rows(m, bucket, k)]
    expect = (
        sum(v.size for v in all_rows),
        sum(v.current for v in all_rows),
        0,
        sum(v.size for v in all_rows if not v.current),
        sum(not v.current for v in all_rows),
    )
    assert counters == expect
    return b.used, b.objects, b.nc_used, b.nc_objects


def bucket_blobs(m: Rules, bucket: str) -> set[str]:
    return {blob for blob in m.referenced_blobs() if blob.startswith(f"{bucket}-")}


# ---- the table -------------------------------------------------------------------------------
#
# What a key holds, newest first, as tokens: "<id>:<blob>" a version, "<id>" a delete marker. Ids: "null";
# "v1" and "m1", the version and the delete marker the setup made; "new", a version id the operation made.
# Blobs: a (10 bytes), b (20), c (40, what the operation writes).

SIZES = {"a": 10, "b": 20, "c": 40}

# the version id a PutObject or Complete answers in a suspended bucket: none, as S3's (it writes the null version)
SUSPENDED_PUT: str | None = None

HOLDINGS: dict[str, list[str]] = {
    "nothing": [],
    "null current": ["null:a"],
    "non-null current": ["v1:b"],
    "current marker": ["m1", "v1:b"],
    "noncurrent null": ["v1:b", "null:a"],
    "current null marker": ["null", "v1:b"],
}

# (bucket state, what the key holds) -> the operations and their expected outcome: (answer, what the key
# then holds, blobs freed). An answer of a put: its version id; of a delete: (version id, delete marker).
# "put" stands for a PutObject and a CompleteMultipartUpload alike. The deletes by id: "current" (the
# current version's id), "noncurrent" (the id of the version under the newest), "marker" (the current
# delete marker's), "null".
Expect = tuple[Any, list[str], list[str]]
TABLE: dict[tuple[str, str], dict[str, Expect]] = {
    ("never", "nothing"): {
        "put": (None, ["null:c"], []),
        "delete": ((None, False), [], []),
        "null": (("null", False), [], []),
    },
    ("never", "null current"): {
        "put": (None, ["null:c"], ["a"]),
        "delete": ((None, False), [], ["a"]),
        "current": (("null", False), [], ["a"]),
        "null": (("null", False), [], ["a"]),
    },
    ("Enabled", "nothing"): {
        "put": ("new", ["new:c"], []),
        "delete": (("new", True), ["new"], []),
        "null": (("null", False), [], []),
    },
    ("Enabled", "null current"): {
        "put": ("new", ["new:c", "null:a"], []),
        "delete": (("new", True), ["new", "null:a"], []),
        "current": (("null", False), [], ["a"]),
        "null": (("null", False), [], ["a"]),
    },
    ("Enabled", "non-null current"): {
        "put": ("new", ["new:c", "v1:b"], []),
        "delete": (("new", True), ["new", "v1:b"], []),
        "current": (("v1", False), [], ["b"]),
        "null": (("null", False), ["v1:b"], []),
    },
    ("Enabled", "current marker"): {
        "put": ("new", ["new:c", "m1", "v1:b"], []),
        "delete": (("new", True), ["new", "m1", "v1:b"], []),
        "noncurrent": (("v1", False), ["m1"], ["b"]),
        "marker": (("m1", True), ["v1:b"], []),
        "null": (("null", False), ["m1", "v1:b"], []),
    },
    ("Enabled", "noncurrent null"): {
        "put": ("new", ["new:c", "v1:b", "null:a"], []),
        "delete": (("new", True), ["new", "v1:b", "null:a"], []),
        "current": (("v1", False), ["null:a"], ["b"]),
        "noncurrent": (("null", False), ["v1:b"], ["a"]),
        "null": (("null", False), ["v1:b"], ["a"]),
    },
    ("Enabled", "current null marker"): {
        "put": ("new", ["new:c", "null", "v1:b"], []),
        "delete": (("new", True), ["new", "null", "v1:b"], []),
        "noncurrent": (("v1", False), ["null"], ["b"]),
        "marker": (("null", True), ["v1:b"], []),
        "null": (("null", True), ["v1:b"], []),
    },
    ("Suspended", "nothing"): {
        "put": (SUSPENDED_PUT, ["null:c"], []),
        "delete": (("null", True), ["null"], []),
        "null": (("null", False), [], []),
    },
    ("Suspended", "null current"): {
        "put": (SUSPENDED_PUT, ["null:c"], ["a"]),
        "delete": (("null", True), ["null"], ["a"]),
        "current": (("null", False), [], ["a"]),
        "null": (("null", False), [], ["a"]),
    },
    ("Suspended", "non-null current"): {
        "put": (SUSPENDED_PUT, ["null:c", "v1:b"], []),
        "delete": (("null", True), ["null", "v1:b"], []),
        "current": (("v1", False), [], ["b"]),
        "null": (("null", False), ["v1:b"], []),
    },
    ("Suspended", "current marker"): {
        "put": (SUSPENDED_PUT, ["null:c", "m1", "v1:b"], []),
        "delete": (("null", True), ["null", "m1", "v1:b"], []),
        "noncurrent": (("v1", False), ["m1"], ["b"]),
        "marker": (("m1", True), ["v1:b"], []),
        "null": (("null", False), ["m1", "v1:b"], []),
    },
    ("Suspended", "noncurrent null"): {
        "put": (SUSPENDED_PUT, ["null:c", "v1:b"], ["a"]),
        "delete": (("null", True), ["null", "v1:b"], ["a"]),
        "current": (("v1", False), ["null:a"], ["b"]),
        "noncurrent": (("null", False), ["v1:b"], ["a"]),
        "null": (("null", False), ["v1:b"], ["a"]),
    },
    ("Suspended", "current null marker"): {
        "put": (SUSPENDED_PUT, ["null:c", "v1:b"], []),
        # the null marker is replaced by a new one (a newer seq: checked below)
        "delete": (("null", True), ["null", "v1:b"], []),
        "noncurrent": (("v1", False), ["null"], ["b"]),
        "marker": (("null", True), ["v1:b"], []),
        "null": (("null", True), ["v1:b"], []),
    },
}

# which version each delete-by-id names, by what the key holds
TARGETS: dict[str, dict[str, str]] = {
    "nothing": {},
    "null current": {"current": "null"},
    "non-null current": {"current": "v1"},
    "current marker": {"noncurrent": "v1", "marker": "m1"},
    "noncurrent null": {"current": "v1", "noncurrent": "null"},
    "current null marker": {"noncurrent": "v1", "marker": "null"},
}

CASES = [
    pytest.param(state, holding, op, kind, id=f"{state}-{holding}-{op}{'-mpu' if kind == 'complete' else ''}")
    for (state, holding), ops in TABLE.items()
    for op in ops
    for kind in (["put", "complete"] if op == "put" else [op])
] + [
    # a well-formed id the key never had: nothing happens, success
    pytest.param(state, holding, "absent", "absent", id=f"{state}-{holding}-absent")
    for (state, holding) in TABLE
]


def test_the_table_covers_every_state_and_holding() -> None:
    assert {s for s, _ in TABLE} == {"never", "Enabled", "Suspended"}
    for state in ("Enabled", "Suspended"):
        assert {h for s, h in TABLE if s == state} == set(HOLDINGS)
    for (state, holding), ops in TABLE.items():
        assert set(ops) == {"put", "delete", "null"} | set(TARGETS[holding]), (state, holding)


def setup_holding(m: Rules, b: str, holding: str, state: str) -> dict[str, str]:
    """Make the key "k" hold `holding` in a bucket whose state is then `state`; answers the ids made."""
    ids: dict[str, str] = {}
    if holding in ("null current", "noncurrent null"):
        assert put(m, b, "k", f"{b}-a", 10, 100.0) == (None, [])  # the bucket is never versioned yet
    if holding in ("non-null current", "current marker", "noncurrent null", "current null marker"):
        set_versioning(m, b, "Enabled")
        vid, freed = put(m, b, "k", f"{b}-b", 20, 200.0)
        assert freed == [] and vid is not None and HEX24.fullmatch(vid)
        ids["v1"] = vid
    if holding == "current marker":
        [gone], _ = delete(m, b, [("k", None)], 300.0)
        assert gone.marker and gone.version_id not in (None, "null")
        ids["m1"] = gone.version_id
    if holding == "current null marker":
        set_versioning(m, b, "Suspended")
        [gone], _ = delete(m, b, [("k", None)], 300.0)
        assert gone == Deleted("null", True)
    if state != "never":
        set_versioning(m, b, state)
    assert m.bucket(b).versioning == (None if state == "never" else state)
    return ids


def expected_rows(tokens: list[str], ids: dict[str, str], b: str) -> list[tuple[str | None, bool, tuple[str, ...]]]:
    out: list[tuple[str | None, bool, tuple[str, ...]]] = []
    for tok in tokens:
        name, _, blob = tok.partition(":")
        vid = None if name == "null" else ids[name]
        out.append((vid, not blob, (f"{b}-{blob}",) if blob else ()))
    return out


@pytest.mark.parametrize(("state", "holding", "op", "kind"), CASES)
def test_versioning_rule(m: Rules, state: str, holding: str, op: str, kind: str) -> None:
    b = fresh_bucket(m)
    ids = setup_holding(m, b, holding, state)
    before = check_structure(m, b, "k")
    assert [(v.version_id, v.marker, v.blobs) for v in before] == expected_rows(HOLDINGS[holding], ids, b)
    check_counters(m, b, ["k"])
    blobs_before = bucket_blobs(m, b)

    if op == "absent":
        absent = f"{before[0].seq + 5 if before else 99:016x}0badf00d"
        [answer], freed = delete(m, b, [("k", absent)], 1000.0)
        assert answer == Deleted(absent, False) and freed == []
        assert check_structure(m, b, "k") == before
        check_counters(m, b, ["k"])
        return

    expect_answer, expect_after, expect_freed = TABLE[(state, holding)][op]
    extra_freed: list[str] = []
    got_answer: Any
    if kind == "put":
        got_answer, freed = put(m, b, "k", f"{b}-c", 40, 1000.0)
    elif kind == "complete":
        got_answer, freed = complete(m, b, "k", f"{b}-c", 40, 1000.0, f"{b}-u")
        extra_freed = [f"{b}-u"]  # the part the object does not name
        # a retried Complete answers the version the first one made, and changes nothing
        done = rows(m, b, "k")
        rec = record(b, "k", f"{b}-c", 40, 1001.0)
        retry = m.write(lambda tx: commits.complete_upload(tx, f"up-{b}-c", rec, [1], "1:x", WriteConditions(), MAX, 3))
        assert (retry.value, retry.freed) == (got_answer, []) and rows(m, b, "k") == done
    else:
        target = {"delete": None, "null": "null"}.get(op, TARGETS[holding].get(op))
        vid = None if target is None else ids.get(target, target)
        [d], freed = delete(m, b, [("k", vid)], 1000.0)
        assert isinstance(d, Deleted)
        got_answer = (d.version_id, d.marker)

    # a new version's id: 24 hex, none the key had
    new_id = got_answer[0] if isinstance(got_answer, tuple) else got_answer
    if (expect_answer[0] if isinstance(expect_answer, tuple) else expect_answer) == "new":
        assert new_id is not None and HEX24.fullmatch(new_id) and new_id not in ids.values()
        ids["new"] = new_id
    if isinstance(expect_answer, tuple):
        assert got_answer == (ids.get(expect_answer[0], expect_answer[0]), expect_answer[1])
    else:
        assert got_answer == ids.get(expect_answer, expect_answer)

    after = check_structure(m, b, "k")
    assert [(v.version_id, v.marker, v.blobs) for v in after] == expected_rows(expect_after, ids, b)
    # a version the operation made is newer than every version the key had
    if op in ("put", "delete") and state != "never" and before:
        assert after[0].seq > before[0].seq
    # freed: exactly the blobs of the versions gone for good (a retired version's never)
    assert sorted(freed) == sorted([f"{b}-{x}" for x in expect_freed] + extra_freed)
    assert bucket_blobs(m, b) == {blob for v in after for blob in v.blobs}
    assert bucket_blobs(m, b) == (blobs_before | ({f"{b}-c"} if kind in ("put", "complete") else set())) - set(freed)
    used, objects, nc_used, nc_objects = check_counters(m, b, ["k"])
    sizes = [(SIZES[t.partition(":")[2]] if ":" in t else 0, t.partition(":")[2] != "") for t in expect_after]
    cur = sizes[:1] if sizes and sizes[0][1] else []
    assert (used, objects, nc_used, nc_objects) == (
        sum(s for s, _ in sizes),
        len(cur),
        sum(s for s, _ in sizes) - sum(s for s, _ in cur),
        len(sizes) - len(cur),
    )
    # every version the key holds is readable by its id, as S3 names it
    for v in after:
        rec = m.read(lambda r, v=v: commits.version_record(r, b, "k", commits.shown(v.version_id)))
        assert (rec.version_id, rec.marker, rec.seq, rec.size) == (v.version_id, v.marker, v.seq, v.size)


# ---- the model -------------------------------------------------------------------------------


@dataclass
class Version:
    """A version in the model. `blob` None: a delete marker, or a small object kept in its row (`data`)."""

    vid: str | None
    size: int
    marker: bool
    blob: str | None
    etag: str
    mtime: float
    tags: dict[str, str] | None = None
    data: bytes | None = None


KEYS = ("a", "a/b")
TICKS = st.sampled_from([0.0, 0.000001, 0.5, -0.5, -30.0])  # the clock also stands still and goes back
RANDS = st.integers(min_value=0, max_value=2**32 - 1)
IF_MATCH = st.sampled_from([None, None, "*", "right", "wrong"])
Answer = Deleted | NoSuchKey | PreconditionFailed


class VersioningModel(RuleBasedStateMachine):
    """A bucket as S3 defines it: per key its versions, newest last, and the bucket's versioning state,
    checked against the rules on a real backend after every step."""

    m: Rules

    def __init__(self) -> None:
        super().__init__()
        self.b = fresh_bucket(self.m)
        self.state: str | None = None
        self.keys: dict[str, list[Version]] = {k: [] for k in KEYS}
        self.now = 1000.0
        self.names = itertools.count()

    # -- the model's rules, S3's --

    def _tick(self, dt: float) -> float:
        self.now = max(1.0, self.now + dt)
        return self.now

    def _current(self, key: str) -> Version | None:
        """The key's current version, None if it has none or a delete marker is its newest."""
        vs = self.keys[key]
        return vs[-1] if vs and not vs[-1].marker else None

    def _find(self, key: str, vid: str) -> Version | None:
        want = None if vid == "null" else vid
        return next((v for v in self.keys[key] if v.vid == want), None)

    def _remove(self, key: str, gone: list[Version]) -> list[str]:
        """Versions gone for good: their blobs, freed."""
        self.keys[key] = [v for v in self.keys[key] if all(v is not g for g in gone)]
        return [v.blob for v in gone if v.blob is not None]

    def _fresh_id(self, key: str, vid: Any) -> str:
        assert isinstance(vid, str) and HEX24.fullmatch(vid), vid
        assert vid not in {v.vid for v in self.keys[key]}, vid
        return vid

    def _add(self, key: str, v: Version, answer: Any) -> list[str]:
        """A new newest version (or delete marker) `v`, whose id the write answered: the blobs freed."""
        if self.state is None:  # only ever the null version, overwritten (a delete marks nothing)
            assert answer is None
            freed = self._remove(key, list(self.keys[key]))
            if not v.marker:
                self.keys[key].append(v)
            return freed
        if self.state == "Enabled":
            v.vid = self._fresh_id(key, answer)
            self.keys[key].append(v)
            return []
        # Suspended: the null version, wherever it was, is replaced
        assert answer == ("null" if v.marker else SUSPENDED_PUT)
        freed = self._remove(key, [x for x in self.keys[key] if x.vid is None])
        self.keys[key].append(v)
        return freed

    def _delete(self, key: str, vid: str | None, if_match: str | None, answer: Any, t: float) -> list[str]:
        """One delete entry: the answer it must have had, and the blobs it freed."""
        if vid is None:
            cur = self._current(key)
            if if_match is not None and cur is None:
                assert isinstance(answer, NoSuchKey), answer
                return []
            if if_match is not None and cur is not None and if_match not in ("*", cur.etag):
                assert isinstance(answer, PreconditionFailed), answer
                return []
            assert isinstance(answer, Deleted) and answer.marker == (self.state is not None), answer
            return self._add(key, Version(None, 0, True, None, "", t), answer.version_id)
        found = self._find(key, vid)
        if found is not None and if_match is not None and if_match not in ("*", found.etag):
            assert isinstance(answer, PreconditionFailed), answer
            return []
        assert answer == Deleted(vid, found is not None and found.marker), answer
        return self._remove(key, [found] if found is not None else [])

    def _pick_id(self, data: st.DataObject, key: str) -> str:
        """An id to name a version by: one the key has, "null", or a well-formed one it never had."""
        have = [commits.shown(v.vid) for v in self.keys[key]]
        absent = f"{int(self.now * 1e6) + 12345:016x}00c0ffee"
        # an id naming the seq of a version the key has, with other random bits: not that version
        forged = [v.vid[:16] + f"{(int(v.vid[16:], 16) + 1) & 0xFFFFFFFF:08x}" for v in self.keys[key] if v.vid]
        return data.draw(st.sampled_from([*have, "null", absent, *forged[-1:]]))

    # -- the steps --

    @rule(
        key=st.sampled_from(KEYS),
        size=st.integers(1, 50),
        dt=TICKS,
        rand=RANDS,
        multipart=st.booleans(),
        tagged=st.booleans(),
    )
    def put(self, key: str, size: int, dt: float, rand: int, multipart: bool, tagged: bool) -> None:
        name, t = f"{self.b}-{next(self.names)}", self._tick(dt)
        tags = {"n": name} if tagged else None
        if multipart:
            answer, freed = complete(self.m, self.b, key, name, size, t, f"{name}u", rand)
            freed.remove(f"{name}u")  # the part the object does not name
            v = Version(None, size, False, name, f"etag-{name}", t)
        elif size <= 8:  # a small object: its bytes in its row, no blob
            rec = record(self.b, key, name, size, t)
            rec = dataclasses.replace(rec, segments=[], data=name.encode()[:size].ljust(size, b"."), tags=tags)
            r = self.m.write(lambda tx: commits.put_object(tx, rec, WriteConditions(), MAX, rand))
            answer, freed = r.value, r.freed
            v = Version(None, size, False, None, rec.etag, t, tags, rec.data)
        else:
            rec = dataclasses.replace(record(self.b, key, name, size, t), tags=tags)
            r = self.m.write(lambda tx: commits.put_object(tx, rec, WriteConditions(), MAX, rand))
            answer, freed = r.value, r.freed
            v = Version(None, size, False, name, rec.etag, t, tags)
        assert sorted(freed) == sorted(self._add(key, v, answer))

    @rule(key=st.sampled_from(KEYS), dt=TICKS, rand=RANDS)
    def delete(self, key: str, dt: float, rand: int) -> None:
        t = self._tick(dt)
        [answer], freed = delete(self.m, self.b, [(key, None)], t, rand)
        assert sorted(freed) == sorted(self._delete(key, None, None, answer, t))

    @rule(key=st.sampled_from(KEYS), data=st.data(), dt=TICKS)
    def delete_version(self, key: str, data: st.DataObject, dt: float) -> None:
        vid, t = self._pick_id(data, key), self._tick(dt)
        [answer], freed = delete(self.m, self.b, [(key, vid)], t)
        assert sorted(freed) == sorted(self._delete(key, vid, None, answer, t))

    @rule(data=st.data(), dt=TICKS, rand=RANDS)
    def delete_objects(self, data: st.DataObject, dt: float, rand: int) -> None:
        """One DeleteObjects, several entries per key, some with an If-Match: the ids and ETags are the ones
        the client saw before it."""
        entry = st.tuples(st.sampled_from(KEYS), st.booleans(), IF_MATCH)
        entries: list[tuple[str, str | None, str | None]] = []
        for key, by_id, match in data.draw(st.lists(entry, min_size=2, max_size=5)):
            vid = self._pick_id(data, key) if by_id else None
            target = self._find(key, vid) if vid is not None else self._current(key)
            right = target.etag if target is not None and not target.marker else "etag-none"
            entries.append((key, vid, {"right": right, "wrong": "etag-wrong"}.get(match or "", match)))
        t = self._tick(dt)
        r = self.m.write(lambda tx: commits.delete_objects(tx, self.b, entries, "p", t, rand))
        expect: list[str] = []
        for (key, vid, if_match), answer in zip(entries, r.value, strict=True):
            expect += self._delete(key, vid, if_match, answer, t)
        assert sorted(r.freed) == sorted(expect)
        # the delete markers one request makes have distinct ids, across keys too
        made = [a.version_id for a in r.value if isinstance(a, Deleted) and a.marker and a.version_id != "null"]
        assert len(set(made)) == len(made), made

    @rule(key=st.sampled_from(KEYS), data=st.data(), by_id=st.booleans(), tagged=st.booleans())
    def set_tags(self, key: str, data: st.DataObject, by_id: bool, tagged: bool) -> None:
        vid = self._pick_id(data, key) if by_id else None
        tags = {"set": str(next(self.names))} if tagged else None
        target = self._find(key, vid) if vid is not None else self._current(key)
        try:
            answer = self.m.write(lambda tx: commits.set_object_tags(tx, self.b, key, vid, tags)).value
        except NoSuchKey:
            assert vid is None and target is None
            return
        except NoSuchVersion:
            assert vid is not None and target is None
            return
        except IsDeleteMarker:
            assert target is not None and target.marker
            return
        assert target is not None and not target.marker
        assert answer == (vid if vid is not None else None if self.state is None else commits.shown(target.vid))
        target.tags = tags

    @rule()
    def enable(self) -> None:
        set_versioning(self.m, self.b, "Enabled")
        self.state = "Enabled"

    @rule()
    def suspend(self) -> None:
        set_versioning(self.m, self.b, "Suspended")
        self.state = "Suspended"

    # -- what must hold after every step --

    @invariant()
    def backend_agrees_with_the_model(self) -> None:
        assert self.m.bucket(self.b).versioning == self.state
        for key, versions in self.keys.items():
            got = check_structure(self.m, self.b, key)  # invariants 1-3, ids decodable to their seq
            assert [(v.version_id, v.marker, v.blobs, v.size) for v in got] == [
                (v.vid, v.marker, (v.blob,) if v.blob else (), v.size) for v in reversed(versions)
            ]
            for v in versions:
                rec = self.m.read(lambda r, k=key, v=v: commits.version_record(r, self.b, k, commits.shown(v.vid)))
                assert (rec.version_id, rec.marker, rec.size, rec.etag, rec.mtime, rec.tags, rec.data) == (
                    v.vid,
                    v.marker,
                    v.size,
                    v.etag,
                    v.mtime,
                    v.tags,
                    v.data,
                )
            if not any(v.vid is None for v in versions):
                with pytest.raises(NoSuchVersion):
                    self.m.read(lambda r, k=key: commits.version_record(r, self.b, k, "null"))
        all_versions = [v for versions in self.keys.values() for v in versions]
        used, objects, nc_used, nc_objects = check_counters(self.m, self.b, list(KEYS))  # == count_usage()
        current = [c for c in map(self._current, KEYS) if c is not None]
        assert (used, objects) == (sum(v.size for v in all_versions), len(current))
        assert (nc_used, nc_objects) == (used - sum(v.size for v in current), len(all_versions) - len(current))
        # no blob leaked, none freed while a version still names it
        assert bucket_blobs(self.m, self.b) == {v.blob for v in all_versions if v.blob is not None}


# examples per backend: a few seconds each (PostgreSQL's round trips cost the most)
MODEL_EXAMPLES = {"memory": 100, "sqlite": 40, "postgresql": 15}


def test_versioning_model(m: Rules, request: pytest.FixtureRequest) -> None:
    class Machine(VersioningModel):
        pass

    Machine.m = m
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=MODEL_EXAMPLES[request.node.callspec.params["m"]],
            stateful_step_count=30,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.parametrize("state", ["Enabled", "Suspended"])
@pytest.mark.parametrize("holding", sorted(HOLDINGS))
def test_a_bucket_is_not_empty_while_a_key_has_a_version_or_a_delete_marker(m: Rules, state: str, holding: str) -> None:
    b = fresh_bucket(m)
    setup_holding(m, b, holding, state)
    held = rows(m, b, "k")
    if held:
        with pytest.raises(BucketNotEmpty):
            m.write(lambda tx: commits.delete_bucket(tx, b, None))
        # emptied as Store.empty_bucket does: every version by its id
        _, freed = delete(m, b, [("k", commits.shown(v.version_id)) for v in held], 2000.0)
        assert sorted(freed) == sorted(blob for v in held for blob in v.blobs)
        assert rows(m, b, "k") == [] and check_counters(m, b, ["k"]) == (0, 0, 0, 0)
    m.write(lambda tx: commits.delete_bucket(tx, b, None))
    assert m.bucket(b) is None


def test_a_versioned_write_admits_its_whole_size_and_a_replaced_null_version_gives_its_room_back(m: Rules) -> None:
    b = fresh_bucket(m)
    m.set_quota(b, 100)
    put(m, b, "k", f"{b}-1", 60, 10.0)
    put(m, b, "k", f"{b}-2", 60, 11.0)  # never versioned: replaced in place, 60 bytes in all
    set_versioning(m, b, "Enabled")
    with pytest.raises(QuotaExceeded):
        put(m, b, "k", f"{b}-3", 60, 12.0)  # the 60 bytes there stay, as a noncurrent version
    vid, _ = put(m, b, "k", f"{b}-3", 40, 12.0)
    assert vid is not None and m.bucket(b).used == 100
    set_versioning(m, b, "Suspended")
    [gone], freed = delete(m, b, [("k", "null")], 14.0)  # the noncurrent null version's 60 bytes, freed
    assert gone == Deleted("null", False) and freed == [f"{b}-2"] and m.bucket(b).used == 40
    assert put(m, b, "k", f"{b}-5", 60, 15.0) == (SUSPENDED_PUT, [])  # 40 + 60: exactly the quota
    assert put(m, b, "k", f"{b}-6", 60, 16.0) == (SUSPENDED_PUT, [f"{b}-5"])  # replaces the null version: fits
    with pytest.raises(QuotaExceeded):
        put(m, b, "k2", f"{b}-7", 1, 17.0)
    assert check_counters(m, b, ["k", "k2"]) == (100, 1, 40, 1)


def test_versioning_goes_from_never_to_enabled_or_suspended_but_never_back(m: Rules) -> None:
    b = fresh_bucket(m)
    assert m.bucket(b).versioning is None
    for state in ("Suspended", "Enabled", "Enabled", "Suspended"):
        set_versioning(m, b, state)
        assert m.bucket(b).versioning == state
    with pytest.raises(ValueError):
        m.write(lambda tx: commits.set_versioning(tx, b, "Off"))
    with pytest.raises(ReservedBucket):
        m.write(lambda tx: commits.set_versioning(tx, SYSTEM_BUCKET, "Enabled"))
    with pytest.raises(NoSuchBucket):
        m.write(lambda tx: commits.set_versioning(tx, "no-such-bucket", "Enabled"))
    locked = fresh_bucket(m)
    set_versioning(m, locked, "Enabled")
    m.write(lambda tx: tx.set_bucket_attr(locked, "object_lock", 1))
    with pytest.raises(InvalidBucketState):
        set_versioning(m, locked, "Suspended")
    assert m.bucket(locked).versioning == "Enabled"


@pytest.mark.parametrize("vid", ["ffffffffffffffff00000000", "8000000000000000ffffffff", "0000000000000000ffffffff"])
def test_a_well_formed_id_naming_a_seq_no_version_can_have_is_absent_not_a_backend_error(m: Rules, vid: str) -> None:
    """Any 24 hex digits pass the edge's check (s3/ops/objects.py check_version_id), seqs past a 64-bit column
    included: such an id names no version (a read: NoSuchVersion; a delete: done, nothing to do)."""
    b = fresh_bucket(m)
    set_versioning(m, b, "Enabled")
    put(m, b, "k", f"{b}-1", 10, 10.0)
    before = rows(m, b, "k")
    assert delete(m, b, [("k", vid)], 11.0) == ([Deleted(vid, False)], [])
    assert delete(m, b, [("absent", vid)], 11.0) == ([Deleted(vid, False)], [])
    with pytest.raises(NoSuchVersion):
        m.read(lambda r: commits.version_record(r, b, "k", vid))
    with pytest.raises(NoSuchVersion):
        m.write(lambda tx: commits.set_object_tags(tx, b, "k", vid, {"a": "1"}))
    assert rows(m, b, "k") == before
