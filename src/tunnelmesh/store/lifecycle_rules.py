"""A bucket's lifecycle rules (docs/data-protection.md section 4), as the store keeps and applies them.

The S3 layer (s3/ops/lifecycle.py) parses and validates the XML into a `doc`: a list of rule dicts in the
shape below, kept as JSON text on the bucket row and given back as the client wrote it (a top-level Prefix
stays top-level, a Filter stays a Filter). `compile` turns the text into `Rule`s, cached by the text, so the
write path and the scanner decode a bucket's rules once per process.

    {"id": str, "status": "Enabled" | "Disabled",
     "prefix": str                                     # the legacy top-level Prefix, or
     "filter": {"prefix": str, "tag": [k, v], "and": {"prefix", "tags": [[k, v]], "gt", "lt"}, "gt", "lt"},
     "expiration": {"days": int} | {"date": float} | {"marker": bool},
     "noncurrent": {"days": int, "newer": int},
     "abort": int}                                     # AbortIncompleteMultipartUpload.DaysAfterInitiation

Times follow S3: an expiry is the object's time plus the days, rounded up to the next midnight UTC.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DAY = 86400.0

# the kinds of hints (records.Hint.kind)
CURRENT, NONCURRENT, MARKER, UPLOAD = "current", "noncurrent", "marker", "upload"
# cursors of the walk over a bucket after its rules changed: its current versions, then the others and uploads
BACKFILL, BACKFILL_VERSIONS = "backfill", "backfill-versions"


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    size_gt: int | None = None
    size_lt: int | None = None
    days: int | None = None
    date: float | None = None
    expired_marker: bool = False
    nc_days: int | None = None
    nc_newer: int | None = None
    abort_days: int | None = None

    def matches(self, key: str, size: int | None = None, tags: Mapping[str, str] | None = None) -> bool:
        """Whether the rule's filter takes this version; a size or tag set not given (None) is not held
        against it (the write path hints before it knows them; the scanner decides with them)."""
        if not key.startswith(self.prefix):
            return False
        if size is not None:
            if self.size_gt is not None and not size > self.size_gt:
                return False
            if self.size_lt is not None and not size < self.size_lt:
                return False
        return tags is None or all(tags.get(k) == v for k, v in self.tags)


@dataclass(frozen=True, slots=True)
class Rules:
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def current_due(self, key: str, mtime: float, size: int | None, tags: Mapping[str, str] | None) -> float | None:
        """When the current version written at `mtime` expires: the earliest Expiration of a rule taking it."""
        due = [
            r.date if r.date is not None else midnight_after(mtime + (r.days or 0) * DAY)
            for r in self.rules
            if (r.days is not None or r.date is not None) and r.matches(key, size, tags)
        ]
        return min(due, default=None)

    def noncurrent_rules(self, key: str, size: int | None, tags: Mapping[str, str] | None) -> list[Rule]:
        return [r for r in self.rules if r.nc_days is not None and r.matches(key, size, tags)]

    def noncurrent_due(self, key: str, since: float, size: int | None, tags: Mapping[str, str] | None) -> float | None:
        due = [midnight_after(since + (r.nc_days or 0) * DAY) for r in self.noncurrent_rules(key, size, tags)]
        return min(due, default=None)

    def expires_markers(self, key: str) -> bool:
        return any(r.expired_marker and r.matches(key) for r in self.rules)

    def abort_due(self, key: str, initiated: float) -> float | None:
        due = [
            midnight_after(initiated + r.abort_days * DAY)
            for r in self.rules
            if r.abort_days is not None and r.matches(key)
        ]
        return min(due, default=None)

    @property
    def keeps_newer(self) -> int | None:
        """The fewest NewerNoncurrentVersions any rule keeps (None: no rule keeps any)."""
        return min((r.nc_newer for r in self.rules if r.nc_newer is not None), default=None)

    @property
    def aborts_uploads(self) -> bool:
        return any(r.abort_days is not None for r in self.rules)


def midnight_after(t: float) -> float:
    return math.ceil(t / DAY) * DAY


def _rule(d: dict[str, Any]) -> Rule:
    f = d.get("filter") or {}
    conj = f.get("and") or {}
    prefix = d.get("prefix", f.get("prefix", conj.get("prefix", "")))
    tags = [tuple(f["tag"])] if "tag" in f else [tuple(t) for t in conj.get("tags", [])]
    exp = d.get("expiration") or {}
    nc = d.get("noncurrent") or {}
    return Rule(
        id=d["id"],
        prefix=prefix,
        tags=tuple(sorted(tags)),
        size_gt=f.get("gt", conj.get("gt")),
        size_lt=f.get("lt", conj.get("lt")),
        days=exp.get("days"),
        date=exp.get("date"),
        expired_marker=bool(exp.get("marker")),
        nc_days=nc.get("days"),
        nc_newer=nc.get("newer"),
        abort_days=d.get("abort"),
    )


@functools.lru_cache(maxsize=256)
def compile_rules(text: str) -> Rules:
    """The enabled rules of a bucket's lifecycle JSON (cached: the text is the key)."""
    return Rules(tuple(_rule(d) for d in json.loads(text) if d.get("status") == "Enabled"))


def rules_of(text: str | None) -> Rules | None:
    """A bucket's rules, or None when it has none (or none enabled)."""
    if text is None:
        return None
    rules = compile_rules(text)
    return rules if rules.rules else None
