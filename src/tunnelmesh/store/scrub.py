"""Integrity at rest: re-hash every stored version (current or not) against the MD5 recorded when it was
written.

Blob files are immutable, so any difference is rot (or tampering). Each segment's MD5 is kept in
the object's row; inline objects are checked against their ETag. With repair, the blobs of a
rotten object are moved to `<data_dir>/quarantine/` and the caller deletes the object, so clients
get NoSuchKey instead of silently wrong bytes.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tunnelmesh.store import sse
from tunnelmesh.store.blobs import Blobs
from tunnelmesh.store.listing import list_objects
from tunnelmesh.store.metadata import MetaBackend
from tunnelmesh.store.records import Listing, ObjectRecord

CHUNK = 1024 * 1024


@dataclass
class Rot:
    bucket: str
    key: str
    problem: str
    blobs: list[str] = field(default_factory=list)
    seq: int = 0  # with blobs, names the version found rotten (current or not)
    version_id: str | None = None  # None: the null version
    outcome: str = ""  # a repair's: "repaired", "locked" (kept, its blobs quarantined) or "gone" (replaced meanwhile)


@dataclass
class ScrubReport:
    objects: int = 0
    bytes: int = 0
    rotten: list[Rot] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)


class Throttle:
    """At most `rate` bytes per second on average (0: no limit), so a background scrub leaves the
    disk to the clients."""

    def __init__(self, rate: int = 0) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.done = 0

    def take(self, n: int) -> None:
        if not self.rate:
            return
        self.done += n
        ahead = self.done / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


def _md5_of_file(path: Path, throttle: Throttle) -> tuple[str, int]:
    h = hashlib.md5()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            throttle.take(len(chunk))
    return h.hexdigest(), size


def _check(obj: ObjectRecord, blobs: Blobs, throttle: Throttle) -> str | None:
    # an encrypted object's stored bytes are ciphertext (store/sse.py): sizes are computed from the plaintext's;
    # its ETag is of the plaintext, so only a segment's own MD5 (of the stored bytes) can be checked without the
    # key. A multipart object's segments carry their parts' ETags (plaintext): their sizes are checked, and the
    # chunks' tags catch a flipped byte at the next read
    sized = sse.stored_size if obj.sse is not None else int
    if obj.data is not None:
        if len(obj.data) != sized(obj.size):
            return f"inline data is {len(obj.data)} bytes, the object {obj.size}"
        if obj.sse is None and "-" not in obj.etag and hashlib.md5(obj.data).hexdigest() != obj.etag:
            return "inline data does not match its ETag"
        return None
    for i, seg in enumerate(obj.segments):
        if obj.sse is not None:
            expected = "" if "-" in obj.etag else seg.md5
        else:
            expected = seg.md5 or (obj.etag if len(obj.segments) == 1 and "-" not in obj.etag else "")
        try:
            digest, size = _md5_of_file(blobs.path(seg.blob), throttle)
        except FileNotFoundError:
            return f"segment {i + 1}: blob {seg.blob} is missing"
        if size != sized(seg.size):
            return f"segment {i + 1}: blob {seg.blob} is {size} bytes, expected {sized(seg.size)}"
        if expected and digest != expected:
            return f"segment {i + 1}: blob {seg.blob} has MD5 {digest}, expected {expected}"
    return None


def _same_version(now: ObjectRecord | None, obj: ObjectRecord) -> bool:
    return now is not None and (now.seq, now.etag, [s.blob for s in now.segments]) == (
        obj.seq,
        obj.etag,
        [s.blob for s in obj.segments],
    )


async def scrub(meta: MetaBackend, blobs: Blobs, quarantine: Path, repair: bool, rate: int = 0) -> ScrubReport:
    """Check every object, reading at most `rate` bytes per second (0: as fast as the disk goes); the
    hashing runs on a thread, the metadata reads on the caller's loop. With repair, move the blobs of
    rotten objects to `quarantine` (the caller deletes the objects)."""
    report = ScrubReport()
    throttle = Throttle(rate)

    async def current(bucket: str, key: str) -> ObjectRecord | None:
        return await meta.read(lambda r: r.get_object(bucket, key))

    async def noncurrent(bucket: str, key: str, seq: int) -> ObjectRecord | None:
        return await meta.read(lambda r: r.version(bucket, key, seq))

    async def check(obj: ObjectRecord, again: Callable[[], Awaitable[ObjectRecord | None]]) -> None:
        report.objects += 1
        report.bytes += obj.size
        if obj.data is not None:
            problem = _check(obj, blobs, throttle)
        else:
            problem = await asyncio.to_thread(_check, obj, blobs, throttle)
        if problem is None or not _same_version(await again(), obj):
            return  # sound, or overwritten or deleted while we read it: its old blobs may be gone
        rot = Rot(obj.bucket, obj.key, problem, [s.blob for s in obj.segments], obj.seq, obj.version_id)
        report.rotten.append(rot)

    for bucket in await meta.read(lambda r: r.buckets()):
        page = Listing([], [], True, None, False)
        while page.truncated:
            after = page.last
            page = await meta.read(lambda r: list_objects(r, bucket.name, "", "", after, False, 1000))  # noqa: B023
            for listed in page.objects:
                obj = await current(bucket.name, listed.key)
                if obj is not None:  # else deleted while we scrubbed
                    await check(obj, functools.partial(current, obj.bucket, obj.key))
        if bucket.versioning is None:
            continue  # a bucket never versioned has no noncurrent version
        # the noncurrent versions: kept data too (a locked backup's old versions above all)
        pos: tuple[str, int] = ("", -(2**63))
        while versions := await meta.read(
            lambda r: list(r.scan_versions(bucket.name, pos[0], pos[1], False, None, 1000))  # noqa: B023
        ):
            for e in versions:
                v = await noncurrent(bucket.name, e.key, e.seq) if not e.marker else None
                if v is not None:
                    await check(v, functools.partial(noncurrent, v.bucket, v.key, v.seq))
            pos = (versions[-1].key, versions[-1].nseq)
    if repair:
        quarantine.mkdir(exist_ok=True)
        for rot in report.rotten:
            for blob in rot.blobs:
                try:
                    os.rename(blobs.path(blob), quarantine / blob)
                    report.quarantined.append(blob)
                except FileNotFoundError:
                    pass
    return report
