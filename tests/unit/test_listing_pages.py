"""The listing page algorithm (store/listing.py), on every metadata backend, against a plain reference,
over generated key sets.

Pages are followed with the `last` each returns, as ListObjectsV2's continuation token does; their
concatenation must be the reference listing with nothing repeated or skipped.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from meta_backends import BACKENDS
from meta_rules import Rules

from tunnelmesh.store import commits, listing
from tunnelmesh.store.metadata import MetaTx
from tunnelmesh.store.records import Listed, ObjectRecord, WriteConditions, WriteResult

# "/" and " " and "+" sort before letters, "é" is two UTF-8 bytes and "😀" four (outside the BMP)
ALPHABET = ["/", "a", "b", "+", " ", "é", "😀"]
text = st.text(alphabet=ALPHABET, max_size=4)
keys = st.sets(st.text(alphabet=ALPHABET, min_size=1, max_size=5), max_size=14)
Entry = tuple[str, bool]  # (key or common prefix, is a common prefix)
Case = tuple[set[str], str, str, str | None, bool]  # keys, prefix, delimiter, after, after_is_prefix


def utf8(s: str) -> bytes:
    return s.encode()


def reference(names: set[str], prefix: str, delimiter: str, after: str | None, after_is_prefix: bool) -> list[Entry]:
    """S3's listing, the slow way: the keys under `prefix` after `after` in UTF-8 byte order, each
    rolled up into its common prefix when `delimiter` follows the prefix; `after` itself (a key or a
    common prefix) is excluded, and with `after_is_prefix` so is everything under it."""
    out: list[Entry] = []
    for k in sorted(names, key=utf8):
        if not k.startswith(prefix):
            continue
        if after is not None and (utf8(k) <= utf8(after) or (after_is_prefix and k.startswith(after))):
            continue
        i = k.find(delimiter, len(prefix)) if delimiter else -1
        entry = (k[: i + len(delimiter)], True) if i >= 0 else (k, False)
        if entry[1] and entry[0] == after:
            continue
        if not out or out[-1] != entry:
            out.append(entry)
    return out


@pytest.fixture(scope="module", params=sorted(BACKENDS))
def m(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rules]:
    rules = Rules(BACKENDS[request.param](Path(tmp_path_factory.mktemp("listing"))))
    yield rules
    rules.close()


_buckets = itertools.count()


def fill(m: Rules, names: set[str]) -> str:
    bucket = f"b{next(_buckets)}"
    m.create_bucket(bucket, "p", "r", 1.0)

    def put_all(tx: MetaTx) -> WriteResult[None]:  # one commit for the whole set
        for k in names:
            rec = ObjectRecord(bucket, k, 1, "e", 1.0, {}, {}, [], "p", b"x")
            commits.put_object(tx, rec, WriteConditions(), 1 << 30)
        return WriteResult(None)

    m.write(put_all)
    return bucket


def page_through(
    m: Rules,
    bucket: str,
    prefix: str,
    delimiter: str,
    after: str | None,
    after_is_prefix: bool,
    max_keys: int,
    limit: int,
) -> list[Entry]:
    listed: list[Entry] = []
    for _ in range(limit):
        page = m.list_objects(bucket, prefix, delimiter, after, after_is_prefix, max_keys)
        entries = sorted(
            [(o.key, False) for o in page.objects] + [(p, True) for p in page.prefixes], key=lambda e: utf8(e[0])
        )
        assert len(entries) <= max_keys
        assert len({e[0] for e in entries}) == len(entries)
        # `last` is the page's last entry, and says which kind it is
        assert (page.last, page.last_is_prefix) == (entries[-1] if entries else (None, False))
        listed += entries
        if not page.truncated:
            return listed
        # a truncated page is never empty: the next one starts after it
        assert entries
        after, after_is_prefix = page.last, page.last_is_prefix
    raise AssertionError(f"still truncated after {limit} pages")


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A key set, and a prefix and a start point often taken from its keys' own prefixes (where the
    boundaries are), else from the alphabet."""
    names = draw(keys)
    near = st.sampled_from(sorted({k[:i] for k in names for i in range(len(k) + 1)} | {""})) | text
    delimiter = draw(st.sampled_from(["", "/", "+", " ", "é", "😀", "a/", "//"]))
    return names, draw(near), delimiter, draw(st.none() | near), draw(st.booleans())


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(case=cases(), max_keys=st.integers(min_value=1, max_value=5))
# a delimiter inside the prefix does not count; only one after it does
@example(case=({"a/b/c", "a/b/d", "a/x", "a/b"}, "a/b", "/", None, False), max_keys=1)
# keys that share a common prefix straddle a page boundary
@example(case=({"a/1", "a/2", "b", "c/1", "c/2", "d"}, "", "/", None, False), max_keys=1)
# a marker inside a common prefix lists that prefix again (it has keys after the marker)
@example(case=({"a/1", "a/2", "a/3"}, "", "/", "a/1", False), max_keys=2)
# a marker equal to a common prefix (a v1 NextMarker) skips it
@example(case=({"a/1", "a/2", "b"}, "", "/", "a/", False), max_keys=2)
# a continuation token before the prefix: only keys under the prefix, still
@example(case=({"a0", "a1", "b1", "b2"}, "b", "", "a/", True), max_keys=3)
@example(case=({"a/0", "b/1"}, "b", "/", "a/", True), max_keys=3)
# multi-byte characters sort by their UTF-8 bytes, after every ASCII one
@example(case=({"é", "😀", "a", "aé", "a😀", "a/"}, "", "", None, False), max_keys=2)
def test_pages_concatenate_to_the_reference_listing(m: Rules, case: Case, max_keys: int) -> None:
    names, prefix, delimiter, after, after_is_prefix = case
    bucket = fill(m, names)
    expected = reference(names, prefix, delimiter, after, after_is_prefix)
    assert page_through(m, bucket, prefix, delimiter, after, after_is_prefix, max_keys, len(names) + 2) == expected
    # one page as big as the whole listing holds all of it and is not truncated
    whole = m.list_objects(bucket, prefix, delimiter, after, after_is_prefix, max(len(expected), 1))
    assert not whole.truncated
    assert sorted([o.key for o in whole.objects], key=utf8) == [k for k, p in expected if not p]
    assert sorted(whole.prefixes, key=utf8) == [k for k, p in expected if p]


def test_the_reference_itself(m: Rules) -> None:
    names = {"a/1", "a/2", "a", "b/c/d", "b/e", "é/x", " x"}
    assert reference(names, "", "/", None, False) == [
        (" x", False),
        ("a", False),
        ("a/", True),
        ("b/", True),
        ("é/", True),
    ]
    assert reference(names, "b/", "/", None, False) == [("b/c/", True), ("b/e", False)]
    assert reference(names, "", "/", "a/", True) == [("b/", True), ("é/", True)]
    assert reference(names, "", "", "a/1", False) == [("a/2", False), ("b/c/d", False), ("b/e", False), ("é/x", False)]


def test_a_prefix_of_the_last_code_point_bounds_every_key_under_it(m: Rules) -> None:
    top = "\U0010ffff"
    names = {top, top * 2, top * 3, top * 3 + "a"}
    bucket = fill(m, names)
    assert [o.key for o in m.list_objects(bucket, top, "", None, False, 10).objects] == sorted(names, key=utf8)
    assert m.list_objects(bucket, "", "", top, True, 10).objects == []


def test_past_a_common_prefix_of_the_last_code_point_nothing_is_left(m: Rules) -> None:
    """A common prefix made only of U+10FFFF has no successor: nothing sorts after its keys."""
    top = "\U0010ffff"
    bucket = fill(m, {"a", top + "z", top * 2})
    page = m.list_objects(bucket, "", top, None, False, 10)
    assert ([o.key for o in page.objects], page.prefixes, page.truncated) == (["a"], [top], False)
    after = m.list_objects(bucket, "", top, top, True, 10)
    assert (after.objects, after.prefixes, after.truncated) == ([], [], False)


class CountingScans:
    """A backend's reads, passed through, counting the ordered object scans (queries) a listing makes."""

    def __init__(self, reads: Any) -> None:
        self._reads = reads
        self.scans = 0

    def scan_objects(self, *args: Any) -> Any:
        self.scans += 1
        return self._reads.scan_objects(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reads, name)


def test_folders_of_a_few_keys_are_passed_over_in_the_open_scan(m: Rules) -> None:
    """Common prefixes of up to LOOKAHEAD + 1 keys cost a delimiter listing no query each (a seek past each took
    one query per common prefix); larger ones are still sought past; pages stay the reference's."""
    small = [1, 2, 5, 3, 1, 4, 2, 5, 3, 1] * 5  # keys per folder: 50 folders, none larger than LOOKAHEAD + 1
    assert max(small) == listing.LOOKAHEAD + 1
    names = {f"f{i:02d}/{j}" for i, n in enumerate(small) for j in range(n)} | {f"f{i:02d}" for i in range(0, 50, 7)}
    bucket = fill(m, names)
    expected = reference(names, "", "/", None, False)
    for max_keys in (1, 2, 3, 7, 1000):
        assert page_through(m, bucket, "", "/", None, False, max_keys, len(names) + 2) == expected

    def scans(r: Any, b: str, delimiter: str = "/") -> tuple[int, int]:
        counting = CountingScans(r)
        page = listing.list_objects(counting, b, "", delimiter, None, False, 1000)
        return counting.scans, len(page.prefixes)

    assert m.read(lambda r: scans(r, bucket)) == (1, 50)
    # folders larger than the lookahead are sought past (after the first, at their first key), as before: the
    # first scan, then one seek past each folder
    big = fill(m, {f"g{i:02d}/{j}" for i in range(20) for j in range(listing.LOOKAHEAD + 3)})
    assert m.read(lambda r: scans(r, big)) == (21, 20)


def test_a_folder_anywhere_in_a_delimited_page_is_rolled_up_in_one_scan(m: Rules) -> None:
    """A delimited page reads its first batch in growing chunks and stays a plain page while no key has the
    delimiter: a folder at any place in the batch (first key, a chunk's edge, the page's last key, past the page
    in the lookahead) still comes out as the reference's common prefix, in the one scan."""
    names = {f"k/{i:04d}" for i in range(1200)} | {"k/0500/x", "k/0500/y"}
    bucket = fill(m, names)

    def listed(r: Any, after: str, max_keys: int) -> tuple[int, list[Entry], bool]:
        counting = CountingScans(r)
        page = listing.list_objects(counting, bucket, "k/", "/", after, False, max_keys)
        entries = sorted([(o.key, False) for o in page.objects] + [(p, True) for p in page.prefixes])
        return counting.scans, entries, page.truncated

    for max_keys in (3, 1000):
        # the folder as the page's first entry, at each chunk edge, as its last entry and just past it
        for place in {0, 1, 4, 5, 6, 14, 15, 16, 34, 35, 36, max_keys - 1, max_keys, max_keys + 4, max_keys + 5}:
            after = f"k/{500 - place:04d}"
            expected = reference(names, "k/", "/", after, False)
            scans, entries, truncated = m.read(lambda r, a=after, n=max_keys: listed(r, a, n))
            assert (scans, entries, truncated) == (1, expected[:max_keys], len(expected) > max_keys), (max_keys, place)


def test_only_a_delimiter_past_the_prefix_makes_a_folder() -> None:
    """The check that lets a delimited page of objects skip the walk: it must say no to such a page (or the
    walk does all the work again), and yes to any key that holds the delimiter after the prefix."""

    def rows(*keys: str) -> list[Listed]:
        return [Listed(k, 0, "e", 1.0, "p") for k in keys]

    assert not listing._has_folder(rows(), "a/", "/")
    assert not listing._has_folder(rows("a/1", "a/2", "a/3"), "a/", "/")
    assert not listing._has_folder(rows("a/b/1", "a/b/2"), "a/b/", "/")  # in the prefix only
    assert not listing._has_folder(rows("ab", "ac"), "a", "a")  # the prefix's own "a" is not past it
    assert listing._has_folder(rows("a/1", "a/2/x"), "a/", "/")
    assert listing._has_folder(rows("ab", "aa"), "a", "a")
    assert listing._has_folder(rows("x1", "x/"), "", "/")
    assert listing._has_folder(rows("k//1"), "k/", "//") is False
    assert listing._has_folder(rows("k///1"), "k/", "//")


@pytest.mark.parametrize("backend", ["memory", "sqlite"])  # PostgreSQL's text cannot hold a NUL
def test_a_key_holding_a_nul_is_left_to_the_walk(backend: str, tmp_path: Path) -> None:
    """The plain-page check joins keys with NUL, which the S3 layer lets no key hold; a key that holds one anyway
    (written by another tool into SQLite) still lists as the walk lists it."""
    m = Rules(BACKENDS[backend](tmp_path))
    try:
        # joined and stripped of the prefix after each NUL, its "/" would be gone
        bucket = fill(m, {"x/a\x00x/", "x/b"})
        page = m.list_objects(bucket, "x/", "/", None, False, 10)
        assert ([o.key for o in page.objects], page.prefixes) == (["x/b"], ["x/a\x00x/"])
    finally:
        m.close()
