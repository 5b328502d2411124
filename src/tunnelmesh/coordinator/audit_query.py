"""Reading the audit trail back (`GET /api/audit`, `tunnelmesh audit`): a time range is a key range of the
`audit/` listing (keys are `audit/<day>/<13-digit epoch ms>-...`), so only that range is listed and read."""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

from tunnelmesh.coordinator.audit import PREFIX
from tunnelmesh.coordinator.errors import CorruptRecord, InvalidInput
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.store.engine import SYSTEM_BUCKET

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
_ISO = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?Z?")


def parse_time(value: str | None, field: str) -> float | None:
    """Epoch seconds, or an ISO 8601 UTC date or time (`2026-11-30`, `2026-11-30T19:30:01Z`)."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        # epoch seconds of a real date: nan, inf and 1e20 are none (and would break the key range built from them)
        if not 0 <= number < 253402300800:  # 9999-12-31
            raise InvalidInput(field, f"{field}: epoch seconds between 0 and 253402300799")
        return number
    m = _ISO.fullmatch(value.strip())
    if m is None:
        raise InvalidInput(field, f"{field}: give epoch seconds or an ISO 8601 UTC time like 2026-11-30T19:30:01Z")
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        t = calendar.timegm((int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), 0, 0, 0))
        time.gmtime(t)
    except (ValueError, OverflowError):
        raise InvalidInput(field, f"{field}: {value!r} is not a time") from None
    return t + (float(frac) if frac else 0.0)


def parse_limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidInput("limit", f"limit: a number from 1 to {MAX_LIMIT}")
    return int(value)


def _ms_of(key: str) -> int | None:
    name = key[len(PREFIX) :].partition("/")[2]
    return int(name[:13]) if name[:13].isdigit() else None


async def search(
    state: SystemState,
    since: float | None,
    until: float | None,
    bucket: str | None,
    actor: str | None,
    event: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], bool]:
    """The records from `since` to `until` (inclusive, oldest first) that match every filter given; at most
    `limit` of them, and whether more matched."""
    after: str | None = None
    if since is not None:
        since_ms = round(since * 1000)
        after = f"{PREFIX}{time.strftime('%Y-%m-%d', time.gmtime(since))}/{since_ms:013d}"  # keys of that ms sort after
    until_ms = None if until is None else round(until * 1000)
    out: list[dict[str, Any]] = []
    while True:
        page = await state.store.list_objects(SYSTEM_BUCKET, PREFIX, "", after, False, 1000)
        for obj in page.objects:
            at_ms = _ms_of(obj.key)
            if at_ms is None:
                continue
            if until_ms is not None and at_ms > until_ms:
                return out, False
            try:
                doc = await state.get(obj.key)
            except CorruptRecord:
                continue
            if not isinstance(doc, dict):
                continue
            if (bucket and doc.get("bucket") != bucket) or (actor and doc.get("actor") != actor):
                continue
            if event and doc.get("event") != event and not str(doc.get("event", "")).startswith(event + "."):
                continue
            if len(out) == limit:
                return out, True
            out.append(doc)
        if not page.truncated:
            return out, False
        after = page.last
