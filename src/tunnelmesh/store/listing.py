"""One page of a bucket listing (ListObjects, ListObjectsV2, ListObjectVersions), over any metadata
backend's ordered scan: keys rolled up into common prefixes, a jump past each common prefix rather
than a read of every key under it."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from itertools import chain, islice
from operator import attrgetter, itemgetter

from tunnelmesh.store.metadata import MetaReads
from tunnelmesh.store.records import Listed, Listing, VersionEntry, VersionListing, version_seq


def prefix_successor(p: str) -> str | None:
    """The smallest string greater than every string that starts with p; None when there is none
    (p is all U+10FFFF: every greater string starts with it)."""
    while p:
        last = ord(p[-1])
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:  # skip surrogates: they are not valid in keys
                nxt = 0xE000
            return p[:-1] + chr(nxt)
        p = p[:-1]
    return None


# how many keys under a common prefix a delimiter listing reads past, in the scan already open, before it
# seeks beyond them with a new query: folders of a few keys cost no query each (a query costs SQLite about as
# much as reading five rows); once a folder outgrows it, the rest of the page seeks at each folder's first key
LOOKAHEAD = 4


def list_objects(
    r: MetaReads,
    bucket: str,
    prefix: str,
    delimiter: str,
    after: str | None,
    after_is_prefix: bool,
    max_keys: int,
) -> Listing:
    """One page. `after` excludes itself (and, if a prefix, everything under it)."""
    # a continuation token is the client's to send: one from another listing may point before the prefix
    past = prefix_successor(after) if after is not None and after_is_prefix else None
    if after is not None and after_is_prefix and past is None:
        return Listing([], [], False, None, False)  # nothing sorts after that prefix's keys
    if past is not None and past > prefix:
        pos, inclusive = past, True
    elif after is not None and after >= prefix:
        pos, inclusive = after, False
    else:
        pos, inclusive = prefix, True
    end = prefix_successor(prefix) if prefix else None
    if not delimiter:
        # one range scan, one more row than the page to know whether it is truncated
        return _plain(list(r.scan_objects(bucket, pos, inclusive, end, max_keys + 1)), max_keys)
    # the delimited walk's first batch, read in growing chunks: while no key has the delimiter past the prefix
    # (a folder of files, the usual case) the page is the batch's first rows, without the walk's Python step
    # per key; at the first key that has one the walk takes over, from the batch's first row, in the same scan
    batch = r.scan_objects(bucket, pos, inclusive, end, max_keys + 1 + LOOKAHEAD)
    rows: list[Listed] = []
    chunk_size = LOOKAHEAD + 1
    while True:
        # no more rows than a page of objects needs (one more than max_keys: whether it is truncated)
        want = min(chunk_size, max_keys + 1 - len(rows))
        chunk = list(islice(batch, want))
        rows += chunk
        if _has_folder(chunk, prefix, delimiter):
            # handed over in a list the walk empties, so that only the walk's loop holds the scan: it drops the
            # cursor when it seeks past a folder (an open one keeps its statement busy, and every later query
            # would be prepared anew)
            first: list[Iterator[Listed]] = [chain(rows, batch)]
            del batch
            return _delimited(r, bucket, prefix, delimiter, after, pos, inclusive, end, max_keys, first)
        if len(chunk) < want or len(rows) > max_keys:
            return _plain(rows, max_keys)
        chunk_size *= 2


def _plain(rows: list[Listed], max_keys: int) -> Listing:
    """A page of objects only from rows in key order: the first `max_keys`, truncated if there are more."""
    truncated = len(rows) > max_keys
    del rows[max_keys:]
    return Listing(rows, [], truncated, rows[-1].key if rows else None, False)


_key = itemgetter(0)


def _has_folder(rows: list[Listed], prefix: str, delimiter: str) -> bool:
    """Whether any row's key holds `delimiter` after `prefix` (which every key starts with), in a few passes
    of C over the keys joined by NUL, which no key holds (s3/ops/common.py refuse_nul)."""
    if "\x00" in delimiter:
        return True  # the S3 layer refuses one; the walk then decides, whatever it is
    joined = "\x00" + "\x00".join(map(_key, rows))
    if joined.count("\x00") > max(len(rows), 1):  # one before each key
        return True  # a key with a NUL (the S3 layer lets none in): the walk decides
    if prefix:  # each key's prefix follows a NUL: dropped, so that no match starts inside one
        joined = joined.replace("\x00" + prefix, "\x00")
    return delimiter in joined


def _delimited(
    r: MetaReads,
    bucket: str,
    prefix: str,
    delimiter: str,
    after: str | None,
    pos: str,
    inclusive: bool,
    end: str | None,
    max_keys: int,
    first: list[Iterator[Listed]],
) -> Listing:
    """The walk from (pos, inclusive); `first` holds its first batch's scan, begun already."""
    objects: list[Listed] = []
    prefixes: list[str] = []
    last: str | None = None
    last_is_prefix = False
    start, dlen = len(prefix), len(delimiter)
    taken = 0
    # the common prefix whose keys are being passed over, and how many were; once one had more than LOOKAHEAD
    # keys, `seek` says to seek past each at once
    skip: str | None = None
    skipped = 0
    seek = False
    while True:
        # room for the lookahead: a page's last common prefix is passed over in this scan too
        want = max_keys - taken + 1 + LOOKAHEAD
        # read lazily: after a jump past a common prefix the rest of the batch is never read
        jumped = False
        seen = 0
        last_row_key: str | None = None
        for rec in first.pop() if first else r.scan_objects(bucket, pos, inclusive, end, want):
            seen += 1
            last_row_key = key = rec[0]
            if skip is not None:
                if key.startswith(skip):
                    skipped += 1
                    if skipped <= LOOKAHEAD:
                        continue
                    seek = True
                else:
                    skip = None
            if skip is None:
                i = key.find(delimiter, start)
                if i < 0:
                    if taken == max_keys:
                        return Listing(objects, prefixes, True, last, last_is_prefix)
                    objects.append(rec)
                    taken += 1
                    last, last_is_prefix = key, False
                    continue
                cp = key[: i + dlen]
                if cp != after:
                    if taken == max_keys:
                        return Listing(objects, prefixes, True, last, last_is_prefix)
                    prefixes.append(cp)
                    taken += 1
                    last, last_is_prefix = cp, True
                skip, skipped = cp, 0
                if not seek:
                    continue
            nxt = prefix_successor(skip)
            if nxt is None:  # no key sorts after this prefix's keys
                return Listing(objects, prefixes, False, last, last_is_prefix)
            pos, inclusive, jumped, skip = nxt, True, True, None
            break
        if not jumped:
            if seen < want:
                return Listing(objects, prefixes, False, last, last_is_prefix)
            assert last_row_key is not None  # a full batch was read
            pos, inclusive = last_row_key, False


# a position inside a key's versions (VersionEntry.nseq): before the newest and after the oldest of every key
MIN_NSEQ = -(2**63)
MAX_NSEQ = 2**63 - 1

_order = attrgetter("key", "nseq")


def _following(entries: Iterator[VersionEntry], key: str, nseq: int) -> Iterator[VersionEntry]:
    """`entries` (a scan_current from `key` inclusive) without the first if it is not after (key, nseq): only
    the key's own current row can be, and it may sit either side of a position inside its key."""
    first = next(entries, None)
    if first is not None and (first.key, first.nseq) > (key, nseq):
        yield first
    yield from entries


def _as_latest(e: VersionEntry) -> VersionEntry:
    # built field by field: dataclasses.replace took 60% of a 1000-version page's CPU (and _replace is no faster)
    return VersionEntry(e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], True)


def _latest(entries: Iterator[VersionEntry]) -> Iterator[VersionEntry]:
    # an `objects` row is its key's newest version (docs/data-protection.md 1.1, invariant 2)
    return map(_as_latest, entries)


def _versions(
    r: MetaReads, bucket: str, key: str, nseq: int, inclusive: bool, end: str | None, limit: int
) -> Iterator[VersionEntry]:
    """Every version, current or not, after (key, nseq) (at it too if inclusive) with key < end, in (key, nseq)
    order: the two tables' ordered scans merged. Each is read at most `limit` rows, so only the first `limit`
    entries are sure to be complete: the caller takes no more, and scans again from the last one."""
    if nseq == MIN_NSEQ and inclusive:  # from the key's newest version
        current = r.scan_current(bucket, key, True, end, limit)
    elif nseq == MAX_NSEQ:  # after the key's oldest
        current = r.scan_current(bucket, key, False, end, limit)
    else:
        current = _following(r.scan_current(bucket, key, True, end, limit + 1), key, nseq)
    noncurrent = r.scan_versions(bucket, key, nseq, inclusive, end, limit)
    return islice(heapq.merge(_latest(current), noncurrent, key=_order), limit)


def _resume_at(r: MetaReads, bucket: str, key_marker: str, version_marker: str | None) -> int:
    """The nseq a page resumes after in `key_marker`'s versions: MAX_NSEQ (after all of them) without a version
    marker, or when the null version it names is gone."""
    if version_marker is None:
        return MAX_NSEQ
    if version_marker != "null":
        seq = version_seq(version_marker)
        if seq is None:
            raise ValueError(f"not a version id: {version_marker!r}")  # the S3 layer refuses it first
        return -seq  # no read: the id names its place
    ref = r.object_ref(bucket, key_marker)
    if ref is None or ref.version_id is not None:
        ref = r.null_version_ref(bucket, key_marker)
    return -ref.seq if ref is not None else MAX_NSEQ


def list_versions(
    r: MetaReads,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str | None,
    version_marker: str | None,
    max_keys: int,
) -> VersionListing:
    """One page of ListObjectVersions: versions and delete markers by key, newest first, after (key_marker,
    version_marker), rolled up into common prefixes as list_objects does; each version counts toward max_keys.
    Reads the page's versions and those of its keys, however many versions other keys have."""
    entries: list[VersionEntry] = []
    prefixes: list[str] = []
    last: tuple[str | None, str | None] = (None, None)
    # the key of the stream's previous entry: an entry is its key's latest only if first of its key
    prev: str | None = None
    if key_marker is not None and key_marker >= prefix:
        key, nseq, inclusive = key_marker, _resume_at(r, bucket, key_marker, version_marker), False
        if nseq != MAX_NSEQ:
            # resumed inside the key: its newest version came before (unless it is current: _latest says so)
            prev = key_marker
    else:
        key, nseq, inclusive = prefix, MIN_NSEQ, True
    end = prefix_successor(prefix) if prefix else None
    taken = 0
    while True:
        want = max_keys - taken + 1
        jumped = False
        seen = 0
        for e in _versions(r, bucket, key, nseq, inclusive, end, want):
            seen += 1
            key, nseq = e.key, e.nseq
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = key[: i + len(delimiter)]
                    if cp != key_marker:  # a marker equal to a common prefix (a NextKeyMarker) skips it
                        if taken == max_keys:
                            return VersionListing(entries, prefixes, True, *last)
                        prefixes.append(cp)
                        taken += 1
                        last = (cp, None)
                    nxt = prefix_successor(cp)
                    if nxt is None:  # no key sorts after this prefix's keys
                        return VersionListing(entries, prefixes, False, None, None)
                    key, nseq, inclusive, jumped = nxt, MIN_NSEQ, True, True
                    break
            if taken == max_keys:
                return VersionListing(entries, prefixes, True, *last)
            if not e.is_latest and key != prev:
                e = _as_latest(e)
            prev = key
            entries.append(e)
            taken += 1
            last = (key, e.version_id or "null")
        if not jumped:
            if seen < want:
                return VersionListing(entries, prefixes, False, None, None)
            inclusive = False  # a full batch was read: on from its last entry
