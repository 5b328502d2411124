"""Concurrent overwrites of one key: readers never see a torn or mixed object, the last commit wins,
and conditional creates (If-None-Match: *) racing on one new key have exactly one winner.

Timing is only used to *order* events (time.monotonic() stamps taken by the client threads), never
to assert how fast anything is. The ordering arguments are spelled out where they are used.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

KiB = 1024
MiB = 1024 * KiB
PART = 5 * MiB  # the smallest allowed non-final multipart part

INITIAL_SIZE = 1500
N_WRITERS = 8
VERSIONS_PER_WRITER = 6
N_READERS = 8
MIN_READS_PER_READER = 4


# --- versions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    name: str
    data: bytes
    parts: tuple[int, ...]  # part sizes when uploaded multipart, () for a single PutObject

    @property
    def etag(self) -> str:
        if not self.parts:
            return hashlib.md5(self.data).hexdigest()
        digests, pos = b"", 0
        for n in self.parts:
            digests += hashlib.md5(self.data[pos : pos + n]).digest()
            pos += n
        return f"{hashlib.md5(digests).hexdigest()}-{len(self.parts)}"


def make_version(name: str, size: int, parts: tuple[int, ...] = ()) -> Version:
    """A body that names itself in its first line, then deterministic filler unique to the version."""
    header = f"tunnelmesh-version {name} size={size:010d}\n".encode()
    assert len(header) < size
    filler = random.Random(f"filler-{name}").randbytes(size - len(header))
    assert not parts or sum(parts) == size
    return Version(name, header + filler, parts)


def name_of(body: bytes) -> str:
    first = body.split(b"\n", 1)[0].decode("ascii", "replace")
    assert first.startswith("tunnelmesh-version "), f"body does not start with a version header: {first[:80]!r}"
    return first.split(" ")[1]


def planned_versions() -> dict[int, list[Version]]:
    """Per writer: sizes spread log-uniformly from 1 KiB to 3 MiB, all distinct; the last version of each
    writer is multipart (one small part for odd writers, a 5 MiB part plus a tail for even ones)."""
    rng = random.Random(20240611)
    plan: dict[int, list[Version]] = {}
    used: set[int] = {INITIAL_SIZE}
    for w in range(N_WRITERS):
        versions = []
        for s in range(VERSIONS_PER_WRITER):
            size = int(KiB * (3 * KiB) ** rng.random())  # 1 KiB .. 3 MiB
            while size in used:
                size += 1
            used.add(size)
            name = f"w{w:02d}s{s:02d}"
            if s == VERSIONS_PER_WRITER - 1:
                parts = (PART, size) if w % 2 == 0 else (size,)
                versions.append(make_version(name, sum(parts), parts))
            else:
                versions.append(make_version(name, size))
        plan[w] = versions
    return plan


# --- recording ------------------------------------------------------------------------------------


@dataclass
class Write:
    version: Version
    start: float  # just before the committing request (PutObject / CompleteMultipartUpload) was sent
    ack: float  # just after its successful response arrived


@dataclass
class Read:
    start: float
    end: float
    version: str
    kind: str


@dataclass
class Log:
    writes: list[Write] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, msg: str) -> None:
        with self.lock:
            self.failures.append(msg)


def write_version(client, bucket: str, key: str, v: Version) -> tuple[float, float]:
    if not v.parts:
        start = time.monotonic()
        resp = client.put_object(Bucket=bucket, Key=key, Body=v.data)
        ack = time.monotonic()
    else:
        up = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        done, pos = [], 0
        for i, n in enumerate(v.parts, start=1):
            r = client.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=i, Body=v.data[pos : pos + n])
            done.append({"PartNumber": i, "ETag": r["ETag"]})
            pos += n
        start = time.monotonic()
        resp = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})
        ack = time.monotonic()
    assert resp["ETag"].strip('"') == v.etag, (v.name, resp["ETag"], v.etag)
    return start, ack


def clamp_range(spec: str, size: int) -> tuple[int, int]:
    """The (first, last) a satisfiable single range selects from an object of `size` bytes."""
    first, _, last = spec.removeprefix("bytes=").partition("-")
    if not first:
        return max(0, size - int(last)), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


def clamp_first(spec: str) -> int:
    first = spec.removeprefix("bytes=").partition("-")[0]
    return int(first) if first else 0


# Every version is at least 1 KiB, so ranges starting below that are always satisfiable; the ones
# starting near the 5 MiB part boundary of the two-part versions (crossing it there) and at 3 MiB are
# 416 on versions too small to reach them; ranges past the end of a version are clamped.
RANGES = (
    "bytes=0-99",
    "bytes=1000-1023",
    "bytes=-700",
    "bytes=517-",
    f"bytes={PART - 300}-{PART + 299}",
    "bytes=1-1",
    f"bytes=3-{3 * MiB}",
)


# --- the overwrite race ---------------------------------------------------------------------------


def test_readers_see_only_whole_versions_while_writers_overwrite_and_the_last_commit_wins(
    coordinator, s3, bucket: str, request: pytest.FixtureRequest
) -> None:
    key = "contended/object.bin"
    plan = planned_versions()
    initial = make_version("initial", INITIAL_SIZE)
    versions = {v.name: v for vs in plan.values() for v in vs} | {initial.name: initial}
    by_etag = {v.etag: v for v in versions.values()}
    by_size = {len(v.data): v for v in versions.values()}
    assert len(by_etag) == len(by_size) == len(versions)

    s3.put_object(Bucket=bucket, Key=key, Body=initial.data)
    log = Log()
    log.writes.append(Write(initial, float("-inf"), time.monotonic()))

    # boto3 clients are created here (client creation is not thread-safe); each thread gets its own
    writer_clients = [coordinator.client() for _ in range(N_WRITERS)]
    reader_clients = [coordinator.client() for _ in range(N_READERS)]
    go = threading.Barrier(N_WRITERS + N_READERS)
    writers_done = threading.Event()

    def writer(w: int) -> None:
        client = writer_clients[w]
        go.wait()
        for v in plan[w]:
            try:
                start, ack = write_version(client, bucket, key, v)
            except Exception as e:
                log.fail(f"writer {w} version {v.name}: {e!r}")
                continue
            with log.lock:
                log.writes.append(Write(v, start, ack))

    def reader(r: int) -> None:
        client = reader_clients[r]
        rng = random.Random(r)
        go.wait()
        n = 0
        while not writers_done.is_set() or n < MIN_READS_PER_READER:
            n += 1
            ranged = n % 2 == 0
            spec = rng.choice(RANGES) if ranged else None
            start = time.monotonic()
            try:
                if spec:
                    resp = client.get_object(Bucket=bucket, Key=key, Range=spec)
                else:
                    resp = client.get_object(Bucket=bucket, Key=key)
                body = resp["Body"].read()
            except ClientError as e:
                end = time.monotonic()
                err = e.response.get("Error", {})
                size = err.get("ActualObjectSize", "")
                v = by_size.get(int(size)) if size.isdigit() else None
                # a range starting past the end of the version read is rightly unsatisfiable (416); the
                # error names the object size, which identifies the version (all sizes differ)
                if spec and err.get("Code") == "InvalidRange" and v is not None and clamp_first(spec) >= int(size):
                    with log.lock:
                        log.reads.append(Read(start, end, v.name, "416"))
                else:
                    log.fail(f"reader {r} GET range={spec}: {e!r} {err}")
                continue
            except Exception as e:
                log.fail(f"reader {r} GET range={spec}: {e!r}")
                continue
            end = time.monotonic()
            etag = resp["ETag"].strip('"')
            if spec is None:
                name = name_of(body)
                v = versions.get(name)
                if v is None:
                    log.fail(f"reader {r}: whole GET returned an unknown version {name!r}")
                    continue
                if body != v.data:
                    log.fail(
                        f"reader {r}: whole GET of {name} returned {len(body)} bytes that differ from the "
                        f"{len(v.data)} written (torn or mixed)"
                    )
                if etag != v.etag:
                    log.fail(f"reader {r}: whole GET of {name} carried ETag {etag}, expected {v.etag}")
                if resp["ContentLength"] != len(v.data):
                    log.fail(f"reader {r}: whole GET of {name}: Content-Length {resp['ContentLength']}")
            else:
                v = by_etag.get(etag)
                if v is None:
                    log.fail(f"reader {r}: ranged GET {spec} carried an unknown ETag {etag}")
                    continue
                name = v.name
                first, last = clamp_range(spec, len(v.data))
                want_cr = f"bytes {first}-{last}/{len(v.data)}"
                if resp.get("ContentRange") != want_cr:
                    log.fail(f"reader {r}: ranged GET {spec} of {name}: Content-Range {resp.get('ContentRange')}")
                if body != v.data[first : last + 1]:
                    log.fail(
                        f"reader {r}: ranged GET {spec} of {name} (ETag {etag}) returned {len(body)} bytes "
                        f"that are not bytes {first}-{last} of that version"
                    )
            with log.lock:
                log.reads.append(Read(start, end, name, "range" if spec else "whole"))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(N_WRITERS)]
    readers = [threading.Thread(target=reader, args=(r,)) for r in range(N_READERS)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(timeout=600)
    writers_done.set()
    for t in readers:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads + readers), "a client thread hung"

    assert log.failures == [], "\n".join(log.failures[:30])
    assert len(log.writes) == 1 + N_WRITERS * VERSIONS_PER_WRITER
    assert len(log.reads) >= N_READERS * MIN_READS_PER_READER
    assert {"whole", "range"} <= {r.kind for r in log.reads}

    write_of = {w.version.name: w for w in log.writes}

    # No stale read. If write W was acknowledged before a read R began, and version V was
    # acknowledged before W was even sent, then V committed before W, W committed before R looked
    # the key up, so R cannot return V.
    stale = []
    for rd in log.reads:
        newest_start_acked = max(w.start for w in log.writes if w.ack < rd.start)
        if write_of[rd.version].ack < newest_start_acked:
            stale.append(rd)
    assert stale == [], f"{len(stale)} reads returned a version older than one acknowledged before they began"

    # No read from the future: a read cannot return a version whose write had not been sent yet.
    future = [rd for rd in log.reads if write_of[rd.version].start > rd.end]
    assert future == []

    # The final content. Let F be the version committed last, so commit(F) >= commit(W) >= start(W)
    # for every write W, and ack(F) > commit(F). Hence ack(F) >= start(W) for every W; in particular
    # F was acknowledged after the last-acknowledged write was sent. Any write that meets this bound
    # could have committed last, so this is exactly what the client-side clocks can prove.
    final = s3.get_object(Bucket=bucket, Key=key)
    final_body = final["Body"].read()
    final_name = name_of(final_body)
    assert final_name in write_of and final_name != initial.name
    fv = versions[final_name]
    assert final_body == fv.data
    assert final["ETag"].strip('"') == fv.etag
    last_acked = max(log.writes, key=lambda w: w.ack)
    latest_start = max(w.start for w in log.writes)
    assert write_of[final_name].ack >= last_acked.start
    assert write_of[final_name].ack >= latest_start
    candidates = sorted(w.version.name for w in log.writes if w.ack >= latest_start)
    assert final_name in candidates

    # every overwritten version's bytes are gone from the listing: one key, the final size
    listing = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"].strip('"')) for o in listing] == [(key, len(fv.data), fv.etag)]

    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(
            f"\n[concurrent-writers] {len(log.writes) - 1} overwrites, {len(log.reads)} verified reads "
            f"({sum(r.kind == 'range' for r in log.reads)} ranged, {sum(r.kind == '416' for r in log.reads)} "
            f"ranges past the end answered 416); final {final_name} among candidates {candidates}"
        )


# --- the conditional-create race -------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_racing_if_none_match_creates_have_exactly_one_winner_whose_body_is_stored(
    coordinator, s3, bucket: str, round_: int
) -> None:
    n = 20
    key = f"created-once-{round_}-{uuid.uuid4().hex[:8]}"
    bodies = [f"contender {i} of round {round_}: ".encode() + bytes([65 + i]) * (100 + 37 * i) for i in range(n)]
    clients = [coordinator.client() for _ in range(n)]
    go = threading.Barrier(n)
    outcomes: list[tuple[int, int, str, str]] = [None] * n  # type: ignore[list-item]

    def contender(i: int) -> None:
        go.wait()
        try:
            r = clients[i].put_object(Bucket=bucket, Key=key, Body=bodies[i], IfNoneMatch="*")
            outcomes[i] = (i, r["ResponseMetadata"]["HTTPStatusCode"], "OK", r["ETag"].strip('"'))
        except ClientError as e:
            outcomes[i] = (i, e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"], "")
        except Exception as e:
            outcomes[i] = (i, -1, repr(e), "")

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)

    winners = [o for o in outcomes if o[1] == 200]
    losers = [o for o in outcomes if o[1] != 200]
    assert len(winners) == 1, outcomes
    assert all((status, code) == (412, "PreconditionFailed") for _, status, code, _ in losers), losers
    w = winners[0][0]
    assert winners[0][3] == hashlib.md5(bodies[w]).hexdigest()

    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == bodies[w]
    assert got["ETag"].strip('"') == hashlib.md5(bodies[w]).hexdigest()
    # and the key is still protected: a late create fails too
    with pytest.raises(ClientError) as late:
        s3.put_object(Bucket=bucket, Key=key, Body=b"late", IfNoneMatch="*")
    assert late.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == bodies[w]
