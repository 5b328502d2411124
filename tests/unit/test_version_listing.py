"""The version listing (store/listing.py list_versions), on every metadata backend, against a plain reference
over generated version histories; and what a page reads.

The states are built with the primitives (put_object for a current version, put_version for a noncurrent one or
a delete marker), not the write rules, so that every shape a history can take is listed: keys with many versions,
a delete marker as the newest, null versions current or not, keys with only noncurrent versions. Pages are
followed with the NextKeyMarker / NextVersionIdMarker each returns, as a client does; their concatenation must be
the reference listing, nothing repeated or skipped, each version's IsLatest right.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from meta_backends import BACKENDS
from meta_rules import Rules

from tunnelmesh.store import listing
from tunnelmesh.store.metadata import MetaReads, MetaTx
from tunnelmesh.store.records import (
    Bucket,
    ObjectRecord,
    VersionEntry,
    VersionListing,
    WriteResult,
    new_version_id,
    version_seq,
)
from tunnelmesh.store.sqlite_meta import SqliteMeta

ALPHABET = ["/", "a", "b", " ", "é", "😀"]
text = st.text(alphabet=ALPHABET, max_size=3)
# what a key's history holds, newest first: "cur" (the current version, only ever first), "old" (a noncurrent
# version), "dm" (a delete marker)
Kind = str


@dataclass(frozen=True)
class Version:
    key: str
    seq: int
    kind: Kind
    null: bool

    @property
    def version_id(self) -> str | None:
        return None if self.null else new_version_id(self.seq, self.seq * 7919)

    @property
    def shown_id(self) -> str:
        return self.version_id or "null"


State = dict[str, list[Version]]  # key -> its versions, newest first
# a listed item: ("v", key, version id or "null", is latest, is a marker, size, etag) or ("p", common prefix)
Item = tuple[Any, ...]

_seqs = itertools.count(1_000_000)


def history(key: str, kinds: list[Kind], null_at: int | None) -> list[Version]:
    n = len(kinds)
    base = next(_seqs) * 100  # distinct seqs across keys too: a version marker of one key may be tried on another
    return [Version(key, base + n - i, kind, i == null_at) for i, kind in enumerate(kinds)]


@st.composite
def states(draw: st.DrawFn) -> State:
    names = draw(st.sets(st.text(alphabet=ALPHABET, min_size=1, max_size=4), max_size=8))
    out: State = {}
    for key in sorted(names):
        first = draw(st.sampled_from(["cur", "dm", "old"]))  # "old" first: a key with only noncurrent versions
        rest = draw(st.lists(st.sampled_from(["old", "dm"]), max_size=3))
        kinds = [first, *rest]
        null_at = draw(st.none() | st.integers(min_value=0, max_value=len(kinds) - 1))
        out[key] = history(key, kinds, null_at)
    return out


def record(bucket: str, v: Version) -> ObjectRecord:
    if v.kind == "dm":
        return ObjectRecord(
            bucket, v.key, 0, "", v.seq / 1e6, {}, {}, [], "o", None, version_id=v.version_id, seq=v.seq, marker=True
        )
    return ObjectRecord(
        bucket, v.key, v.seq % 97, f"e{v.seq}", v.seq / 1e6, {}, {}, [], "o", b"x", version_id=v.version_id, seq=v.seq
    )


_buckets = itertools.count()


def fill(m: Rules, state: State) -> str:
    bucket = f"v{next(_buckets)}"

    def fn(tx: MetaTx) -> WriteResult[None]:  # one commit for the whole state
        tx.insert_bucket(Bucket(bucket, "o", 1.0, "r", None, 0, 0, 0))
        for versions in state.values():
            for v in versions:
                if v.kind == "cur":
                    tx.put_object(record(bucket, v))
                else:
                    tx.put_version(record(bucket, v), v.kind == "dm", 1.0)
        return WriteResult(None)

    m.write(fn)
    return bucket


def reference(
    state: State, prefix: str, delimiter: str, key_marker: str | None, version_marker: str | None
) -> list[Item]:
    """S3's version listing, the slow way: every version by key (code-point order) and newest first, after
    the markers, rolled up into common prefixes; a version is the latest when it is its key's newest, except
    that a page resumed inside a key shows none of that key's noncurrent versions as latest (it cannot know
    whether versions before its marker remain: the one before it was on the previous page)."""
    resumed = None
    after: tuple[str, float] | None = None
    if key_marker is not None and key_marker >= prefix:
        after = (key_marker, float("inf"))
        if version_marker == "null":
            nulls = [v for v in state.get(key_marker, []) if v.null]
            if nulls:
                after, resumed = (key_marker, -nulls[0].seq), key_marker
        elif version_marker is not None:
            seq = version_seq(version_marker)
            assert seq is not None
            after, resumed = (key_marker, -seq), key_marker
    out: list[Item] = []
    for key in sorted(state):
        if not key.startswith(prefix):
            continue
        for i, v in enumerate(state[key]):
            if after is not None and (key, -v.seq) <= after:
                continue
            j = key.find(delimiter, len(prefix)) if delimiter else -1
            if j >= 0:
                cp = key[: j + len(delimiter)]
                if cp != key_marker and ("p", cp) not in out:
                    out.append(("p", cp))
                continue
            latest = i == 0 and (v.kind == "cur" or key != resumed)
            out.append(item_of(v, latest))
    return out


def item_of(v: Version, latest: bool) -> Item:
    size, etag = (0, "") if v.kind == "dm" else (v.seq % 97, f"e{v.seq}")
    return ("v", v.key, v.shown_id, latest, v.kind == "dm", size, etag)


def items(page: VersionListing) -> list[Item]:
    """The page in stream order (a common prefix sorts where its keys would)."""
    got: list[Item] = [
        ("v", e.key, e.version_id or "null", e.is_latest, e.marker, e.size, e.etag) for e in page.entries
    ]
    return sorted(got + [("p", p) for p in page.prefixes], key=lambda it: it[1])  # stable: versions keep their order


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def m(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rules]:
    rules = Rules(BACKENDS[request.param](Path(tmp_path_factory.mktemp("versions"))))
    yield rules
    rules.close()


def list_versions(
    m: Rules, bucket: str, prefix: str, delimiter: str, key_marker: str | None, version_marker: str | None, n: int
) -> VersionListing:
    return m.read(lambda r: listing.list_versions(r, bucket, prefix, delimiter, key_marker, version_marker, n))


def page_through(
    m: Rules,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str | None,
    version_marker: str | None,
    max_keys: int,
    limit: int,
) -> list[Item]:
    listed: list[Item] = []
    for _ in range(limit):
        page = list_versions(m, bucket, prefix, delimiter, key_marker, version_marker, max_keys)
        got = items(page)
        assert len(got) <= max_keys
        listed += got
        if not page.truncated:
            assert (page.next_key, page.next_version) == (None, None)
            return listed
        # a truncated page is never empty, and the next starts after its last entry
        assert got
        last = got[-1]
        assert (page.next_key, page.next_version) == ((last[1], None) if last[0] == "p" else (last[1], last[2]))
        key_marker, version_marker = page.next_key, page.next_version
    raise AssertionError(f"still truncated after {limit} pages")


Case = tuple[State, str, str, str | None, str | None]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A state, and a prefix and markers often taken from its own keys and versions (where the boundaries are)."""
    state = draw(states())
    names = sorted(state)
    near = st.sampled_from(sorted({k[:i] for k in names for i in range(len(k) + 1)} | {""})) | text
    delimiter = draw(st.sampled_from(["", "/", " ", "é", "a/"]))
    key_marker = draw(st.none() | (st.sampled_from(names) if names else text) | near)
    version_marker = None
    if key_marker is not None:
        ids = [v.shown_id for vs in state.values() for v in vs]
        other = st.integers(min_value=1, max_value=2**62).map(lambda s: new_version_id(s, 0))
        version_marker = draw(st.none() | st.just("null") | (st.sampled_from(ids) if ids else other) | other)
    return state, draw(near), delimiter, key_marker, version_marker


def check(m: Rules, case: Case, max_keys: int) -> None:
    state, prefix, delimiter, key_marker, version_marker = case
    bucket = fill(m, state)
    expected = reference(state, prefix, delimiter, key_marker, version_marker)
    total = sum(len(vs) for vs in state.values())
    got = page_through(m, bucket, prefix, delimiter, key_marker, version_marker, max_keys, total + 2)
    assert got == expected
    # one page as big as the whole listing holds all of it and is not truncated
    whole = list_versions(m, bucket, prefix, delimiter, key_marker, version_marker, max(len(expected), 1))
    assert not whole.truncated and items(whole) == expected


MANY = {"k": history("k", ["cur", *(["old"] * 5), "dm", *(["old"] * 5)], 3), "l": history("l", ["dm", "dm", "old"], 0)}
DIRS = {**MANY, "d/1": history("d/1", ["cur", "old", "old"], None), "d/2": history("d/2", ["dm"], None)}


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(case=cases(), max_keys=st.integers(min_value=1, max_value=5))
# a key with many versions, a marker among them and a null one, paged through one and a few at a time
@example(case=(MANY, "", "", None, None), max_keys=1)
@example(case=(MANY, "", "", None, None), max_keys=4)
# resumed after a version, and after the null one (given as "null")
@example(case=(MANY, "", "", "k", MANY["k"][4].shown_id), max_keys=3)
@example(case=(MANY, "", "", "k", "null"), max_keys=2)
# "null" where the key has no null version: after every version of the key
@example(
    case=({"a": history("a", ["cur", "old"], None), "b": history("b", ["cur"], None)}, "", "", "a", "null"), max_keys=5
)
# a version marker newer than every version of the key: its current version is still its latest
@example(case=({"a": history("a", ["cur", "old"], None)}, "", "", "a", new_version_id(2**60, 0)), max_keys=5)
# a common prefix whose keys have many versions is one entry; the page ends on it, and the next resumes past it
@example(case=(DIRS, "", "/", None, None), max_keys=1)
# a key marker inside a common prefix lists that prefix again (it has versions after the marker)
@example(case=(DIRS, "", "/", "d/1", None), max_keys=2)
# only noncurrent versions: the newest is the latest
@example(case=({"n": history("n", ["old", "old"], 1)}, "", "", None, None), max_keys=1)
def test_pages_concatenate_to_the_reference_listing(m: Rules, case: Case, max_keys: int) -> None:
    check(m, case, max_keys)


def test_the_reference_itself() -> None:
    k = history("k", ["cur", "old", "dm"], 1)
    d = history("d/x", ["dm", "old"], None)
    state = {"k": k, "d/x": d}
    ids = [v.shown_id for v in k]
    assert ids[1] == "null"
    assert reference(state, "", "", None, None) == [
        item_of(d[0], True),
        item_of(d[1], False),
        item_of(k[0], True),
        item_of(k[1], False),
        item_of(k[2], False),
    ]
    assert reference(state, "", "/", None, None) == [
        ("p", "d/"),
        item_of(k[0], True),
        item_of(k[1], False),
        item_of(k[2], False),
    ]
    assert reference(state, "", "", "k", "null") == [item_of(k[2], False)]
    assert reference(state, "", "", "d/x", None) == [item_of(k[0], True), item_of(k[1], False), item_of(k[2], False)]
    assert reference(state, "", "/", "d/", None) == reference(state, "", "", "d/x", None)
    assert reference(state, "k", "", "d/x", d[0].shown_id) == reference(state, "k", "", None, None)


def test_an_undecodable_version_marker_is_the_callers_error(m: Rules) -> None:
    """The S3 layer answers InvalidArgument first (tests/component/test_version_listing.py)."""
    bucket = fill(m, {"k": history("k", ["cur"], None)})
    with pytest.raises(ValueError):
        list_versions(m, bucket, "", "", "k", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", 5)


# ---- what a page reads ------------------------------------------------------------------------------


class Counting:
    """A MetaReads that counts what a listing asks for: statements (calls) and the rows it pulls, and the most
    rows any one scan was allowed (its limit: a networked backend fetches that many at once)."""

    def __init__(self, r: MetaReads) -> None:
        self.r = r
        self.calls = 0
        self.rows = 0
        self.widest = 0

    def _rows(self, it: Iterator[VersionEntry], limit: int) -> Iterator[VersionEntry]:
        self.calls += 1
        self.widest = max(self.widest, limit)
        for e in it:
            self.rows += 1
            yield e

    def scan_current(self, bucket: str, start: str, inclusive: bool, end: str | None, limit: int) -> Any:
        return self._rows(self.r.scan_current(bucket, start, inclusive, end, limit), limit)

    def scan_versions(self, bucket: str, key: str, nseq: int, inclusive: bool, end: str | None, limit: int) -> Any:
        return self._rows(self.r.scan_versions(bucket, key, nseq, inclusive, end, limit), limit)

    def object_ref(self, bucket: str, key: str) -> Any:
        self.calls += 1
        return self.r.object_ref(bucket, key)

    def null_version_ref(self, bucket: str, key: str) -> Any:
        self.calls += 1
        return self.r.null_version_ref(bucket, key)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a version listing read {name}")


def crowded(m: Rules, many: int) -> str:
    """Keys k00..k19 with three versions each, beside keys with `many` versions each: before them ("j"),
    between two of them ("k04x"), after them ("z"), and under a common prefix ("p/...")."""
    state: State = {f"k{i:02d}": history(f"k{i:02d}", ["cur", "old", "dm"], 1) for i in range(20)}
    for key in ("j", "k04x", "z", "p/1", "p/2"):
        state[key] = history(key, ["cur", *(["old"] * (many - 1))], None)
    return fill(m, state)


PAGES = [  # (prefix, delimiter, key marker, version marker, max keys)
    ("", "", "k02", None, 6),  # k03 and k04, then the page is full, k04x's versions next
    ("", "", "k03", "null", 5),  # inside k03, on to k04 and one of k04x
    ("k", "", None, None, 9),
    ("", "/", "k19", None, 3),  # p/ and its keys' many versions are one entry
    ("", "", "j", None, 3),  # after every version of j
]


@pytest.mark.parametrize("page", PAGES)
def test_a_page_reads_its_own_versions_not_the_buckets(m: Rules, page: tuple[Any, ...]) -> None:
    prefix, delimiter, key_marker, version_marker, max_keys = page
    counts = []
    for many in (3, 400):  # the same page, beside keys with few and with many versions
        bucket = crowded(m, many)

        def fn(r: MetaReads, bucket: str = bucket) -> tuple[VersionListing, Counting]:
            c = Counting(r)
            return listing.list_versions(c, bucket, prefix, delimiter, key_marker, version_marker, max_keys), c

        got, c = m.read(fn)
        assert len(got.entries) + len(got.prefixes) == max_keys and got.truncated
        counts.append((items(got), c.calls, c.rows, c.widest))
        # two scans per batch (a common prefix starts another) and the "null" marker's two point reads; each
        # scan no wider than the page, and no more rows pulled than the page and one ahead per scan
        assert c.calls <= 2 * (1 + len(got.prefixes)) + 2
        assert c.widest <= max_keys + 2
        assert c.rows <= max_keys + c.calls
    small, big = counts
    assert [it[:2] for it in small[0]] == [it[:2] for it in big[0]]  # the same keys (their ids differ)
    assert small[1:] == big[1:], (small, big)


def test_sqlite_does_the_same_work_for_a_page_whatever_the_other_keys_versions(tmp_path: Path) -> None:
    """SQLite's own count of virtual-machine steps (a progress handler called at every instruction) for one
    page is about the same beside keys with 3 versions as beside keys with 400: the scans seek, they do not walk."""
    steps = []
    for many in (3, 400):
        (tmp_path / str(many)).mkdir()
        m = Rules(SqliteMeta.open(tmp_path / str(many)))
        try:
            bucket = crowded(m, many)
            conn = m.backend._reader.c
            n = [0]

            def tick(n: list[int] = n) -> int:
                n[0] += 1
                return 0

            conn.set_progress_handler(tick, 1)
            page = list_versions(m, bucket, "", "/", "k03", "null", 6)
            conn.set_progress_handler(None, 1)
            assert [e.key for e in page.entries] == ["k03", "k04", "k04", "k04", "k04x", "k04x"]
            steps.append(n[0])
        finally:
            m.close()
    # a walk over the other keys' versions would take hundreds of times as many; equal here, measured (a
    # different B-tree layout may cost a few steps more)
    assert 0 < steps[1] <= steps[0] * 3 // 2, steps
