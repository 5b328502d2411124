"""One page of a bucket listing (ListObjects, ListObjectsV2, ListObjectVersions), over any metadata
backend's ordered scan: keys rolled up into common prefixes, a jump past each common prefix rather
than a read of every key under it."""

from __future__ import annotations

from tunnelmesh.store.metadata import MetaReads
from tunnelmesh.store.records import Listing, ObjectRecord


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
    objects: list[ObjectRecord] = []
    prefixes: list[str] = []
    last: str | None = None
    last_is_prefix = False
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
    taken = 0
    while True:
        want = max_keys - taken + 1
        # read lazily: after a jump past a common prefix the rest of the batch is never read
        jumped = False
        seen = 0
        last_row_key: str | None = None
        for rec in r.scan_objects(bucket, pos, inclusive, end, want):
            seen += 1
            last_row_key = key = rec.key
            if delimiter:
                i = key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = key[: i + len(delimiter)]
                    if not (after is not None and cp == after):
                        if taken == max_keys:
                            return Listing(objects, prefixes, True, last, last_is_prefix)
                        prefixes.append(cp)
                        taken += 1
                        last, last_is_prefix = cp, True
                    nxt = prefix_successor(cp)
                    if nxt is None:  # no key sorts after this prefix's keys
                        return Listing(objects, prefixes, False, last, last_is_prefix)
                    pos, inclusive, jumped = nxt, True, True
                    break
            if taken == max_keys:
                return Listing(objects, prefixes, True, last, last_is_prefix)
            objects.append(rec)
            taken += 1
            last, last_is_prefix = key, False
        if not jumped:
            if seen < want:
                return Listing(objects, prefixes, False, last, last_is_prefix)
            assert last_row_key is not None  # a full batch was read
            pos, inclusive = last_row_key, False
