"""Crash safety: SIGKILL the whole coordinator process tree at random moments under load, restart, verify.

Each cycle drives concurrent PutObject (0 B .. 2 MiB), overwrites, DeleteObject, DeleteObjects and
multipart uploads (2-3 parts, 5 MiB each but the last, CRC32 composite checksums) from several
threads against both listeners, then SIGKILLs the supervisor and every process under it (found
through /proc, frozen with SIGSTOP first so that nothing respawns or reaps in between) at a random
moment (0.05-0.6 s after the load started), restarts on the same data_dir and checks:

- every key reads back as exactly one state it may have: the last acknowledged write or delete,
  or (only when an operation on the key was in flight or failed at the kill) that operation's
  result; full bytes (md5), size, ETag and CRC32 (full-object or composite) all agree, so no object
  is partial or mixed;
- the listing names exactly the keys that exist, with their sizes and ETags;
- <data_dir>/tmp is empty, every file under <data_dir>/blobs is referenced by the metadata
  (objects.segments, parts.blob) and every referenced blob exists with the recorded size; the
  SQLite integrity check passes;
- `tunnelmesh storage verify` exits 0 and its counters equal the totals read back;
- an upload whose Complete was acknowledged is no longer pending (pending ones are then aborted).

Every GRACEFUL_EVERY-th cycle is followed by an extra one that stops the coordinator with SIGTERM
under the same load (a clean stop, after which the start-up skips the orphan scan); the same checks
follow, and every process of the tree must have exited.

Content is derived from (key, version), so the expected bytes of every write are known without
keeping them. Operations on the same key may overlap between threads; the allowed final states of
a key are those of every operation not superseded by an acknowledged one that started after it ended.

Run (CI setting: 50 SIGKILL cycles + 5 graceful stops, about 1.5-2 minutes on 2 cores):

    python -m pytest tests/integration/test_crash_safety.py -q -s

A longer campaign (about 1.7 s per cycle, so roughly 15 minutes):

    TUNNELMESH_CRASH_CYCLES=500 python -m pytest tests/integration/test_crash_safety.py -q -s

A second test runs the campaign in a versioned bucket (overwrites of a few hot keys, delete markers,
deletes by version id, DeleteObjects mixing both, multipart completes) and checks every version by its
id after each restart: TUNNELMESH_CRASH_VERSIONED_CYCLES cycles (default a twelfth of
TUNNELMESH_CRASH_CYCLES, at least 3: about 10 s in CI).

Other knobs: TUNNELMESH_CRASH_SEED (client-side randomness; printed at the start, though kill timing
is never exactly reproducible), TUNNELMESH_CRASH_THREADS (load threads, default 4),
TUNNELMESH_CRASH_WORKERS (the coordinator's `workers`, default 1), TUNNELMESH_CRASH_GRACEFUL_EVERY
(default 10; 0 for SIGKILL only). -s shows one line per cycle and the totals at the end.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time
import zlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError, FlexibleChecksumError, ResponseStreamingError
from conftest import Coordinator, start_coordinator

CYCLES = int(os.environ.get("TUNNELMESH_CRASH_CYCLES", "50"))
SEED = int(os.environ.get("TUNNELMESH_CRASH_SEED", str(random.randrange(1 << 30))))
THREADS = int(os.environ.get("TUNNELMESH_CRASH_THREADS", "4"))
WORKERS = int(os.environ.get("TUNNELMESH_CRASH_WORKERS", "1"))
GRACEFUL_EVERY = int(os.environ.get("TUNNELMESH_CRASH_GRACEFUL_EVERY", "10"))

MIB = 1024 * 1024
PART = 5 * MIB
BUCKETS = ("crash-a", "crash-b")
KEYS_PER_BUCKET = ["k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09", "k10"] + [
    "dir/sub/k11",
    "sp ace+plus&amp",
    "ünïcödé-k13",
]
ALL_KEYS = [(b, k) for b in BUCKETS for k in KEYS_PER_BUCKET]
CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 60}


# ---- content and expected states ---------------------------------------------------------------


def content(key: tuple[str, str], version: int, part: int, size: int) -> bytes:
    return random.Random(f"{SEED}/{key[0]}/{key[1]}/{version}/{part}").randbytes(size)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@dataclass(frozen=True)
class State:
    """What a key holds: enough to recognise every byte of it."""

    size: int
    md5: str
    etag: str
    crc32: str | None
    label: str = field(compare=False)  # where it came from, for messages only


def same_state(a: State | None, b: State | None) -> bool:
    return a == b  # None (absent) equals only None


def describe(s: State | None) -> str:
    return "absent" if s is None else f"{s.label} ({s.size} B, md5 {s.md5}, etag {s.etag}, crc32 {s.crc32})"


@dataclass
class Op:
    kind: str  # put, mpu, delete; in a versioned bucket also unversion (a delete by version id)
    state: State | None  # the key's content once this op applied (None: deleted)
    start: float
    end: float = math.inf  # when the response arrived; inf while unanswered or failed
    acked: bool = False
    target: str | None = None  # unversion: the version id it deletes
    vid: str | None = None  # the version id answered (versioned puts, completes, delete markers)


class Model:
    """Per key: the state verified at the last restart and every operation sent since."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.baseline: dict[tuple[str, str], State | None] = {k: None for k in ALL_KEYS}
        self.ops: dict[tuple[str, str], list[Op]] = defaultdict(list)
        self.versions = itertools.count(1)
        self.errors: list[str] = []  # failures that happened while the server was alive
        self.kill_time = math.inf
        # multipart bookkeeping for the cycle
        self.created_uploads: set[str] = set()
        self.completed_uploads: set[str] = set()
        self.creates_in_flight = 0

    def begin(self, key: tuple[str, str], kind: str, state: State | None, target: str | None = None) -> Op:
        op = Op(kind, state, time.monotonic(), target=target)
        with self.lock:
            self.ops[key].append(op)
        return op

    def ack(self, op: Op, resp: dict | None = None) -> None:
        op.end = time.monotonic()
        if resp is not None and op.kind != "unversion":
            op.vid = resp.get("VersionId")
        op.acked = True

    def failed(self, what: str, e: BaseException) -> None:
        """An exception on the client. Before the kill this is a server bug; after it, expected."""
        t = time.monotonic()
        if t < self.kill_time:
            with self.lock:
                self.errors.append(f"{what}: {type(e).__name__}: {e}")

    def believed_present(self, key: tuple[str, str]) -> bool:
        with self.lock:
            acked = [o for o in self.ops[key] if o.acked]
        if acked:
            return max(acked, key=lambda o: o.end).state is not None
        return self.baseline[key] is not None

    def allowed(self, key: tuple[str, str]) -> list[tuple[Op | None, State | None]]:
        """States the key may hold after the kill, with the op that produced each (None: baseline)."""
        ops = self.ops[key]
        acked_starts = [o.start for o in ops if o.acked]
        out: list[tuple[Op | None, State | None]] = []
        if not acked_starts:
            out.append((None, self.baseline[key]))
        for o in ops:
            # superseded: an acknowledged op began after this one was answered, so it committed later
            if not any(s > o.end for s in acked_starts):
                out.append((o, o.state))
        return out

    def describe_state(self) -> str:
        present = sum(1 for s in self.baseline.values() if s is not None)
        return f"{present}/{len(self.baseline)} keys present"

    def new_cycle(self, observed: dict[tuple[str, str], State | None]) -> None:
        self.baseline = dict(observed)
        self.ops = defaultdict(list)
        self.errors = []
        self.kill_time = math.inf
        self.created_uploads = set()
        self.completed_uploads = set()
        self.creates_in_flight = 0


# ---- load ------------------------------------------------------------------------------------


def put_state(key: tuple[str, str], version: int, data: bytes) -> State:
    md5 = hashlib.md5(data).hexdigest()
    return State(len(data), md5, md5, crc32_b64(data), f"put v{version}")


def do_put(s3, model: Model, rng: random.Random, key: tuple[str, str], big: bool) -> None:
    version = next(model.versions)
    if big:
        size = rng.randint(64 * 1024, 2 * MIB)
    else:
        size = rng.choice([0, 1, rng.randint(2, 4096), rng.randint(4096, 64 * 1024)])
    data = content(key, version, 0, size)
    st = put_state(key, version, data)
    op = model.begin(key, "put", st)
    try:
        r = s3.put_object(Bucket=key[0], Key=key[1], Body=data)
    except Exception as e:
        model.failed(f"PUT {key} v{version}", e)
        return
    model.ack(op, r)
    if r["ETag"].strip('"') != st.etag:
        model.errors.append(f"PUT {key} v{version}: answered ETag {r['ETag']}, expected {st.etag}")


def do_delete(s3, model: Model, key: tuple[str, str]) -> None:
    op = model.begin(key, "delete", None)
    try:
        s3.delete_object(Bucket=key[0], Key=key[1])
    except Exception as e:
        model.failed(f"DELETE {key}", e)
        return
    model.ack(op)


def do_delete_many(s3, model: Model, rng: random.Random) -> None:
    bucket = rng.choice(BUCKETS)
    keys = rng.sample(KEYS_PER_BUCKET, rng.randint(2, 4))
    ops = [model.begin((bucket, k), "delete", None) for k in keys]
    try:
        r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})
    except Exception as e:
        model.failed(f"DeleteObjects {bucket} {keys}", e)
        return
    for op in ops:
        model.ack(op)
    if r.get("Errors"):
        model.errors.append(f"DeleteObjects {bucket} {keys}: errors {r['Errors']}")


def do_multipart(s3, model: Model, rng: random.Random, key: tuple[str, str]) -> None:
    version = next(model.versions)
    nparts = rng.choice([2, 2, 3])
    sizes = [PART] * (nparts - 1) + [rng.randint(1, MIB)]
    with model.lock:
        model.creates_in_flight += 1
    try:
        up = s3.create_multipart_upload(Bucket=key[0], Key=key[1], ChecksumAlgorithm="CRC32")
    except Exception as e:
        model.failed(f"CreateMultipartUpload {key}", e)
        return
    upload_id = up["UploadId"]
    with model.lock:
        model.creates_in_flight -= 1
        model.created_uploads.add(upload_id)
    whole = hashlib.md5()
    part_md5s: list[bytes] = []
    part_crcs: list[bytes] = []
    done: list[dict] = []
    for n, size in enumerate(sizes, 1):
        data = content(key, version, n, size)
        whole.update(data)
        part_md5s.append(hashlib.md5(data).digest())
        part_crcs.append(zlib.crc32(data).to_bytes(4, "big"))
        try:
            r = s3.upload_part(
                Bucket=key[0], Key=key[1], UploadId=upload_id, PartNumber=n, Body=data, ChecksumAlgorithm="CRC32"
            )
        except Exception as e:
            model.failed(f"UploadPart {key} v{version} #{n}", e)
            return
        # a CRC32 (COMPOSITE) upload's Complete lists each part's checksum, as S3 requires
        done.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
        if r["ETag"].strip('"') != part_md5s[-1].hex():
            model.errors.append(f"UploadPart {key} v{version} #{n}: answered ETag {r['ETag']}")
    etag = f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{nparts}"
    crc = f"{crc32_b64(b''.join(part_crcs))}-{nparts}"
    st = State(sum(sizes), whole.hexdigest(), etag, crc, f"multipart v{version} ({nparts} parts)")
    op = model.begin(key, "mpu", st)
    try:
        r = s3.complete_multipart_upload(Bucket=key[0], Key=key[1], UploadId=upload_id, MultipartUpload={"Parts": done})
    except Exception as e:
        model.failed(f"CompleteMultipartUpload {key} v{version}", e)
        return
    model.ack(op, r)
    with model.lock:
        model.completed_uploads.add(upload_id)
    if r["ETag"].strip('"') != etag:
        model.errors.append(f"Complete {key} v{version}: answered ETag {r['ETag']}, expected {etag}")


LoadLoop = Callable[[object, Model, random.Random, threading.Event], None]


def load_thread(s3, model: Model, rng: random.Random, stop: threading.Event, loop: LoadLoop) -> None:
    try:
        loop(s3, model, rng, stop)
    except Exception as e:
        with model.lock:
            model.errors.append(f"load thread died: {type(e).__name__}: {e}")


def load_loop(s3, model: Model, rng: random.Random, stop: threading.Event) -> None:
    while not stop.is_set():
        r = rng.random()
        key = rng.choice(ALL_KEYS)
        if r < 0.40:
            do_put(s3, model, rng, key, big=False)
        elif r < 0.55:
            do_put(s3, model, rng, key, big=True)
        elif r < 0.68:
            # an overwrite: prefer a key that exists
            present = [k for k in rng.sample(ALL_KEYS, 6) if model.believed_present(k)]
            do_put(s3, model, rng, present[0] if present else key, big=rng.random() < 0.3)
        elif r < 0.82:
            present = [k for k in rng.sample(ALL_KEYS, 6) if model.believed_present(k)]
            do_delete(s3, model, present[0] if present else key)
        elif r < 0.88:
            do_delete_many(s3, model, rng)
        else:
            do_multipart(s3, model, rng, key)


# ---- killing the process tree ------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return rest[0], int(rest[1])


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _proc_stat(int(name))
            if st is not None:
                children[st[1]].append(int(name))
    out, i = [root], 0
    while i < len(out):
        out.extend(children.get(out[i], []))
        i += 1
    return out


def kill_tree(c: Coordinator) -> int:
    """Freeze every process of the coordinator (so none can spawn or reap), then SIGKILL them all."""
    frozen: set[int] = set()
    while True:
        new = [p for p in process_tree(c.proc.pid) if p not in frozen]
        if not new:
            break
        for p in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        frozen.update(new)
    for p in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    c.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    for p in frozen:
        while (st := _proc_stat(p)) is not None and st[0] != "Z":  # a zombie no longer runs
            assert time.monotonic() < deadline, f"process {p} survived SIGKILL"
            time.sleep(0.005)
    return len(frozen)


def stop_tree(c: Coordinator) -> None:
    pids = process_tree(c.proc.pid)
    c.stop()
    for p in pids:
        with contextlib.suppress(ProcessLookupError):
            if (st := _proc_stat(p)) is not None and st[0] != "Z":
                os.kill(p, signal.SIGKILL)


# ---- checks ------------------------------------------------------------------------------------


def read_state(s3, key: tuple[str, str]) -> State | None:
    try:
        r = s3.get_object(Bucket=key[0], Key=key[1], ChecksumMode="ENABLED")
    except ClientError as e:
        if e.response["Error"]["Code"] == "NoSuchKey":
            return None
        raise
    h = hashlib.md5()
    n = 0
    try:
        for chunk in r["Body"].iter_chunks(1 << 20):
            h.update(chunk)
            n += len(chunk)
    except (FlexibleChecksumError, ResponseStreamingError) as e:
        # bytes that do not match the stored CRC32, or a body cut short: never a state anyone wrote
        return State(-1, "", r["ETag"].strip('"'), r.get("ChecksumCRC32"), f"unreadable body ({e})")
    if n != r["ContentLength"]:
        return State(-1, "", r["ETag"].strip('"'), None, f"{n} bytes read, Content-Length {r['ContentLength']}")
    return State(n, h.hexdigest(), r["ETag"].strip('"'), r.get("ChecksumCRC32"), "observed")


def check_disk(data_dir: Path) -> dict:
    """tmp/ empty, blobs/ == referenced blobs with their sizes, metadata intact. Returns DB facts."""
    problems: list[str] = []
    leftovers = sorted(str(p.relative_to(data_dir)) for p in (data_dir / "tmp").rglob("*") if p.is_file())
    if leftovers:
        problems.append(f"{len(leftovers)} temporary files left in tmp/: {leftovers[:5]}")
    conn = sqlite3.connect(data_dir / "meta.sqlite3", timeout=30)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            problems.append(f"SQLite integrity_check: {integrity[:5]}")
        refs: dict[str, int] = {}
        objects: dict[tuple[str, str], int] = {}
        cols = {r[1] for r in conn.execute("PRAGMA table_info(objects)")}
        inline = "length(data)" if "data" in cols else "NULL"  # small objects may live in the row itself
        tables = {t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        # noncurrent versions and delete markers own their blobs as current objects do
        rows = conn.execute(f"SELECT 'object', bucket, key, size, segments, {inline} FROM objects").fetchall()
        if "versions" in tables:
            rows += conn.execute("SELECT 'version', bucket, key, size, segments, length(data) FROM versions").fetchall()
        for table, bucket, key, size, segments, inline_len in rows:
            segs = json.loads(segments)
            if table == "object":
                objects[(bucket, key)] = size
            if inline_len is not None:
                if inline_len != size or segs:
                    problems.append(f"{table} {bucket}/{key}: size {size}, {inline_len} inline bytes, segments {segs}")
            elif sum(seg[1] for seg in segs) != size:
                problems.append(f"{table} {bucket}/{key}: size {size} but segments {segs}")
            for blob, s, *_ in segs:
                if refs.setdefault(blob, s) != s:
                    problems.append(f"blob {blob} referenced with sizes {refs[blob]} and {s}")
        uploads = {u: b for u, b in conn.execute("SELECT upload_id, bucket FROM uploads")}
        mpu_bytes: dict[str, int] = defaultdict(int)
        for upload_id, blob, size in conn.execute("SELECT upload_id, blob, size FROM parts"):
            if upload_id not in uploads:
                problems.append(f"part blob {blob} belongs to no upload ({upload_id})")
            else:
                mpu_bytes[uploads[upload_id]] += size
            if refs.setdefault(blob, size) != size:
                problems.append(f"blob {blob} referenced with sizes {refs[blob]} and {size}")
    finally:
        conn.close()
    files: dict[str, int] = {}
    for sub in os.scandir(data_dir / "blobs"):
        if not sub.is_dir():
            problems.append(f"stray file blobs/{sub.name}")
            continue
        for entry in os.scandir(sub.path):
            files[entry.name] = entry.stat().st_size
            if entry.name[:2] != sub.name:
                problems.append(f"blob {entry.name} in the wrong directory {sub.name}")
    orphans = sorted(set(files) - set(refs))
    missing = sorted(set(refs) - set(files))
    if orphans:
        problems.append(f"{len(orphans)} orphan blobs survived the start-up sweep: {orphans[:5]}")
    if missing:
        problems.append(f"{len(missing)} referenced blobs are missing: {missing[:5]}")
    wrong = [(b, refs[b], files[b]) for b in set(refs) & set(files) if refs[b] != files[b]]
    if wrong:
        problems.append(f"{len(wrong)} blobs have the wrong size (blob, recorded, on disk): {wrong[:5]}")
    return {"problems": problems, "objects": objects, "mpu_bytes": dict(mpu_bytes), "blobs": len(files)}


def verify_cli(c: Coordinator) -> subprocess.Popen:
    return subprocess.Popen(
        c.cli_command("storage", "verify", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@dataclass
class Totals:
    cycles: int = 0
    graceful: int = 0
    processes_killed: int = 0
    objects_checked: int = 0
    present_verified: int = 0
    bytes_verified: int = 0
    acked_puts: int = 0
    acked_multiparts: int = 0
    acked_deletes: int = 0
    acked_writes_read_back: int = 0
    inflight_applied: int = 0
    inflight_not_applied: int = 0
    inflight_undecidable: int = 0
    uploads_aborted: int = 0
    swept_tmp: int = 0
    swept_orphans: int = 0
    elapsed: float = 0.0
    # the versioned campaign
    acked_unversions: int = 0
    unversions_confirmed: int = 0
    versions_read: int = 0
    markers_read: int = 0


TMP_SWEEP_RE = re.compile(r"start-up sweep: removed (\d+) temporary files")
ORPHAN_SWEEP = r"orphan sweep: removed (\d+) orphan blobs"


def check_after_restart(c: Coordinator, model: Model, totals: Totals, cycle: str, killed_log: str) -> None:
    where = f"cycle {cycle} (seed {SEED}, data {c.data_dir})"
    verify = verify_cli(c)
    disk = check_disk(c.data_dir)
    assert not disk["problems"], f"{where}: data dir after the start-up sweep:\n" + "\n".join(disk["problems"])

    s3 = c.client(**CLIENT_CONFIG)
    observed: dict[tuple[str, str], State | None] = {}
    failures: list[str] = []
    for key in ALL_KEYS:
        got = read_state(s3, key)
        observed[key] = got
        totals.objects_checked += 1
        allowed = model.allowed(key)
        matches = [(op, st) for op, st in allowed if same_state(st, got)]
        if not matches:
            kinds = (
                "mixed or partial"
                if got is not None and all(s is None or s.size != got.size for _, s in allowed)
                else "unexpected"
            )
            failures.append(
                f"{key}: {kinds} content {describe(got)}; allowed: "
                + "; ".join(
                    f"{describe(st)} [{'baseline' if op is None else ('acked' if op.acked else 'in flight')}]"
                    for op, st in allowed
                )
            )
            continue
        if got is not None:
            totals.present_verified += 1
            totals.bytes_verified += got.size
        if any(op is not None and op.acked and op.state is not None for op, _ in matches):
            totals.acked_writes_read_back += 1
        if (got is not None) != (disk["objects"].get(key) is not None):
            failures.append(f"{key}: read {describe(got)} but the metadata row says size {disk['objects'].get(key)}")
    # in-flight operations: did they apply?
    for key in ALL_KEYS:
        for op in model.ops[key]:
            if op.acked:
                continue
            others = [st for o, st in model.allowed(key) if o is not op]
            if any(same_state(st, op.state) for st in others):
                totals.inflight_undecidable += 1
            elif same_state(op.state, observed[key]):
                totals.inflight_applied += 1
            else:
                totals.inflight_not_applied += 1
    for ops in model.ops.values():
        totals.acked_puts += sum(1 for o in ops if o.acked and o.kind == "put")
        totals.acked_multiparts += sum(1 for o in ops if o.acked and o.kind == "mpu")
        totals.acked_deletes += sum(1 for o in ops if o.acked and o.kind == "delete")

    # the listing names exactly the keys that exist
    for bucket in BUCKETS:
        listed = {
            o["Key"]: (o["Size"], o["ETag"].strip('"'))
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])
        }
        expected = {k: (st.size, st.etag) for (b, k), st in observed.items() if b == bucket and st is not None}
        if listed != expected:
            failures.append(f"listing of {bucket}: {listed} but objects read back are {expected}")

    # usage counters: the CLI's recount, and against what was read back
    out, err = verify.communicate(timeout=60)
    if verify.returncode != 0:
        failures.append(f"`tunnelmesh storage verify` exited {verify.returncode}: {out} {err}")
    else:
        report = {b["bucket"]: b for b in json.loads(out)["buckets"]}
        for bucket in BUCKETS:
            present = [st for (b, _), st in observed.items() if b == bucket and st is not None]
            want = (sum(s.size for s in present), len(present), disk["mpu_bytes"].get(bucket, 0))
            r = report[bucket]
            if (r["used"], r["objects"], r["multipart_used"]) != want:
                failures.append(f"usage of {bucket}: counters {r} but read back (used, objects, mpu) {want}")

    pending = check_uploads(s3, model, BUCKETS, failures)
    finish_check(s3, where, failures, killed_log, pending, totals)
    model.new_cycle(observed)


def check_uploads(s3, model: Model, buckets: tuple[str, ...], failures: list[str]) -> list[tuple[str, str, str]]:
    """A completed upload is gone; pending ones are ours (answers them, to be aborted)."""
    pending: list[tuple[str, str, str]] = []
    for bucket in buckets:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            pending.extend((bucket, u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
    ids = {u for _, _, u in pending}
    if ids & model.completed_uploads:
        failures.append(f"uploads completed (acknowledged) but still pending: {ids & model.completed_uploads}")
    unknown = ids - model.created_uploads
    if len(unknown) > model.creates_in_flight:
        failures.append(f"{len(unknown)} pending uploads nobody created ({model.creates_in_flight} creates in flight)")
    return pending


def finish_check(
    s3, where: str, failures: list[str], killed_log: str, pending: list[tuple[str, str, str]], totals: Totals
) -> None:
    """Fail with every finding and the killed coordinator's log; else abort the interrupted uploads."""
    if failures:
        raise AssertionError(
            f"{where}: after SIGKILL and restart:\n"
            + "\n".join(failures)
            + "\n--- log of the killed coordinator ---\n"
            + killed_log[-3000:]
        )
    for bucket, key, upload_id in pending:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        totals.uploads_aborted += 1


def stop_gracefully(c: Coordinator) -> int:
    """SIGTERM the supervisor (a normal stop) and require every process of the tree to exit."""
    pids = process_tree(c.proc.pid)
    c.stop()
    deadline = time.monotonic() + 15
    for p in pids:
        while (st := _proc_stat(p)) is not None and st[0] != "Z":
            assert time.monotonic() < deadline, f"process {p} still runs after a graceful stop"
            time.sleep(0.01)
    return len(pids)


Check = Callable[[Coordinator, Model, Totals, str, str], None]


def campaign(
    tmp_path: Path,
    cycles: int,
    graceful_every: int,
    buckets: tuple[str, ...],
    versioning: bool,
    model: Model,
    loop: LoadLoop,
    check: Check,
) -> Totals:
    """`cycles` rounds of load (`loop` in THREADS threads) then SIGKILL (and after every graceful_every-th,
    an extra round ended by SIGTERM), each followed by a restart on the same data_dir and `check`."""
    plan = []
    for i in range(1, cycles + 1):
        plan.append("kill")
        if graceful_every and i % graceful_every == 0:
            plan.append("stop")
    print(
        f"\ncrash campaign{' (versioned)' if versioning else ''}: {cycles} SIGKILL cycles "
        f"(+{plan.count('stop')} graceful stops under load), seed {SEED}, {THREADS} load threads, "
        f"{WORKERS} coordinator worker(s)"
    )
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    c = start_coordinator(tmp_path, data_dir=data_dir, workers=WORKERS)
    token = c.token
    totals = Totals()
    started = time.monotonic()
    try:
        s3 = c.client(**CLIENT_CONFIG)
        for b in buckets:
            s3.create_bucket(Bucket=b)
            if versioning:
                s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
        for cycle, mode in enumerate(plan, 1):
            # clients are made here, in one thread: boto3's default session is not thread-safe
            endpoints = [c.endpoint, c.root_endpoint]
            clients = [c.client(endpoint=endpoints[i % 2], **CLIENT_CONFIG) for i in range(THREADS)]
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=load_thread,
                    args=(clients[i], model, random.Random(rng.random()), stop, loop),
                    daemon=True,
                )
                for i in range(THREADS)
            ]
            for t in threads:
                t.start()
            window = rng.uniform(0.05, 0.6)
            time.sleep(window)
            stop.set()
            model.kill_time = time.monotonic()
            if mode == "kill":
                totals.processes_killed += kill_tree(c)
            else:
                stop_gracefully(c)
            for t in threads:
                t.join(timeout=90)
                assert not t.is_alive(), f"cycle {cycle}: a load thread hangs after the {mode}"
            killed_log = c.log()
            assert not model.errors, f"cycle {cycle}: errors while the coordinator was up:\n" + "\n".join(
                model.errors[:20]
            )
            ops = sum(len(v) for v in model.ops.values())
            acked = sum(1 for v in model.ops.values() for o in v if o.acked)

            c = start_coordinator(tmp_path, token=token, data_dir=data_dir, workers=WORKERS)
            if m := TMP_SWEEP_RE.search(c.log()):
                totals.swept_tmp += int(m[1])
            if mode == "kill":  # the orphan sweep runs beside the workers: the checks need it finished
                totals.swept_orphans += int(c.wait_for_log(ORPHAN_SWEEP)[1])
            try:
                check(c, model, totals, f"{cycle} ({mode})", killed_log)
            except AssertionError:
                raise
            except Exception as e:
                raise AssertionError(
                    f"cycle {cycle}: the checks after the restart failed: {e!r}; the restarted coordinator's exit "
                    f"code is {c.proc.poll()}, its processes {process_tree(c.proc.pid)}; its log:\n{c.log()[-3000:]}"
                ) from e
            if mode == "kill":
                totals.cycles += 1
            else:
                totals.graceful += 1
            what = "SIGKILL" if mode == "kill" else "SIGTERM"
            print(
                f"cycle {cycle:3d}: {what} after {window:.2f}s, {ops} key ops sent, {acked} acknowledged; "
                f"restart checked, {model.describe_state()}"
            )
    finally:
        stop_tree(c)
    totals.elapsed = time.monotonic() - started
    return totals


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    totals = campaign(tmp_path, CYCLES, GRACEFUL_EVERY, BUCKETS, False, Model(), load_loop, check_after_restart)
    summary = (
        f"crash campaign passed: {totals.cycles} SIGKILL cycles ({totals.processes_killed} processes killed) and "
        f"{totals.graceful} graceful stops under load survived in {totals.elapsed:.0f}s; "
        f"{totals.objects_checked} object reads checked "
        f"({totals.present_verified} present, {totals.bytes_verified / MIB:.0f} MiB compared); acknowledged: "
        f"{totals.acked_puts} puts, {totals.acked_multiparts} multipart completes, {totals.acked_deletes} deletes, "
        f"{totals.acked_writes_read_back} acknowledged writes read back byte-exact; in flight at the stop: "
        f"{totals.inflight_applied} applied, {totals.inflight_not_applied} not applied, "
        f"{totals.inflight_undecidable} undecidable; start-up sweeps removed {totals.swept_tmp} temporaries and "
        f"{totals.swept_orphans} orphan blobs; {totals.uploads_aborted} interrupted uploads aborted"
    )
    print(summary)
    assert totals.cycles == CYCLES, summary


# ---- the campaign in a versioned bucket ----------------------------------------------------------
#
# Every write makes a version and every delete a delete marker, so nothing acknowledged may ever be lost:
# the check reads every version of every key back by its id (byte-exact the first time, by HEAD after),
# requires every acknowledged version and marker to be there unless an acknowledged delete by version
# id removed it, accepts a version nobody acknowledged only as the result of a request in flight at the
# kill, and requires the current version to be the newest there is (ids order as a key's versions do,
# and an acknowledged write's id is above the id of every write acknowledged before it started).

VBUCKET = "crash-v"
HOT_KEYS = ["hot0", "hot1", "hot/2"]
VKEYS = [*HOT_KEYS, "cold3", "ünï cold4"]
VALL_KEYS = [(VBUCKET, k) for k in VKEYS]
MARKER = State(0, "", "delete-marker", None, "delete marker")  # what a delete marker holds, for comparisons
CREATES = ("put", "mpu", "delete")  # the ops that make a version (a delete makes a delete marker)
VERSIONED_CYCLES = int(os.environ.get("TUNNELMESH_CRASH_VERSIONED_CYCLES", str(max(3, CYCLES // 12))))


class VersionedModel(Model):
    """Model, plus every version of each key verified at the last restart (id -> State, MARKER for a marker)."""

    def __init__(self) -> None:
        super().__init__()
        self.known: dict[tuple[str, str], dict[str, State]] = {k: {} for k in VALL_KEYS}
        self.read_whole: set[str] = set()  # version ids already read back byte-exact

    def live_ids(self, key: tuple[str, str]) -> list[str]:
        """The versions of the key the client believes exist: the targets of deletes by version id."""
        with self.lock:
            ops = list(self.ops[key])
            ids = set(self.known[key])
        ids |= {o.vid for o in ops if o.acked and o.kind in CREATES and o.vid}
        ids -= {o.target for o in ops if o.acked and o.kind == "unversion"}
        return sorted(ids)

    def describe_state(self) -> str:
        n = sum(len(v) for v in self.known.values())
        return f"{n} versions and markers of {len(self.known)} keys"

    def next_cycle(self, known: dict[tuple[str, str], dict[str, State]]) -> None:
        self.known = known
        self.new_cycle({})


def do_mark(s3, model: Model, key: tuple[str, str]) -> None:
    """A delete without a version id: a delete marker."""
    op = model.begin(key, "delete", MARKER)
    try:
        r = s3.delete_object(Bucket=key[0], Key=key[1])
    except Exception as e:
        model.failed(f"DELETE {key}", e)
        return
    model.ack(op, r)
    if r.get("DeleteMarker") is not True or not op.vid:
        model.errors.append(f"DELETE {key} in a versioned bucket answered no delete marker: {r}")


def do_unversion(s3, model: VersionedModel, rng: random.Random, key: tuple[str, str]) -> None:
    """A delete by version id of one version the client knows of (the current one or an older one)."""
    ids = model.live_ids(key)
    if not ids:
        do_mark(s3, model, key)
        return
    vid = rng.choice(ids)
    op = model.begin(key, "unversion", None, target=vid)
    try:
        r = s3.delete_object(Bucket=key[0], Key=key[1], VersionId=vid)
    except Exception as e:
        model.failed(f"DELETE {key} versionId={vid}", e)
        return
    model.ack(op)
    if r.get("VersionId") != vid:
        model.errors.append(f"DELETE {key} versionId={vid}: answered {r}")


def do_delete_versions(s3, model: VersionedModel, rng: random.Random) -> None:
    """DeleteObjects in the versioned bucket: per key a delete marker or a delete by version id."""
    keys = rng.sample(VKEYS, rng.randint(2, 3))
    entries: list[dict] = []
    ops: dict[str, Op] = {}
    for k in keys:
        ids = model.live_ids((VBUCKET, k))
        if ids and rng.random() < 0.5:
            vid = rng.choice(ids)
            entries.append({"Key": k, "VersionId": vid})
            ops[k] = model.begin((VBUCKET, k), "unversion", None, target=vid)
        else:
            entries.append({"Key": k})
            ops[k] = model.begin((VBUCKET, k), "delete", MARKER)
    try:
        r = s3.delete_objects(Bucket=VBUCKET, Delete={"Objects": entries})
    except Exception as e:
        model.failed(f"DeleteObjects {VBUCKET} {entries}", e)
        return
    if r.get("Errors"):
        model.errors.append(f"DeleteObjects {entries}: errors {r['Errors']}")
    answered = {d["Key"]: d for d in r.get("Deleted", [])}
    for k, op in ops.items():
        d = answered.get(k, {})
        model.ack(op, {"VersionId": d.get("DeleteMarkerVersionId")})
        if op.kind == "delete" and (d.get("DeleteMarker") is not True or not op.vid):
            model.errors.append(f"DeleteObjects {entries}: {k} answered no delete marker: {d}")
        if op.kind == "unversion" and d.get("VersionId") != op.target:
            model.errors.append(f"DeleteObjects {entries}: {k} answered {d}")


def versioned_load_loop(s3, model: Model, rng: random.Random, stop: threading.Event) -> None:
    assert isinstance(model, VersionedModel)
    while not stop.is_set():
        key = (VBUCKET, rng.choice(HOT_KEYS) if rng.random() < 0.8 else rng.choice(VKEYS))
        r = rng.random()
        if r < 0.45:
            do_put(s3, model, rng, key, big=False)
        elif r < 0.53:
            do_put(s3, model, rng, key, big=True)
        elif r < 0.68:
            do_mark(s3, model, key)
        elif r < 0.86:
            do_unversion(s3, model, rng, key)
        elif r < 0.93:
            do_delete_versions(s3, model, rng)
        else:
            do_multipart(s3, model, rng, key)


def read_version(s3, key: tuple[str, str], vid: str, whole: bool) -> State | None:
    """The version `vid` of the key read by its id (MARKER for a delete marker, None if it is not there):
    the whole body when `whole`, else its HEAD (size and ETag; the md5 taken as the ETag's)."""
    try:
        if whole:
            r = s3.get_object(Bucket=key[0], Key=key[1], VersionId=vid, ChecksumMode="ENABLED")
        else:
            r = s3.head_object(Bucket=key[0], Key=key[1], VersionId=vid, ChecksumMode="ENABLED")
    except ClientError as e:
        status = e.response["ResponseMetadata"]["HTTPStatusCode"]
        h = e.response["ResponseMetadata"]["HTTPHeaders"]
        if status == 405 and h.get("x-amz-delete-marker") == "true" and h.get("x-amz-version-id") == vid:
            return MARKER
        if status == 404 and "x-amz-delete-marker" not in h:
            return None
        return State(-1, "", "", None, f"answered {status} {e.response['Error']} {h}")
    if r.get("VersionId") != vid:
        return State(-1, "", "", None, f"asked for version {vid}, answered version {r.get('VersionId')}")
    etag = r["ETag"].strip('"')
    if not whole:
        return State(r["ContentLength"], "", etag, r.get("ChecksumCRC32"), "HEAD")
    h = hashlib.md5()
    n = 0
    try:
        for chunk in r["Body"].iter_chunks(1 << 20):
            h.update(chunk)
            n += len(chunk)
    except (FlexibleChecksumError, ResponseStreamingError) as e:
        return State(-1, "", etag, r.get("ChecksumCRC32"), f"unreadable body ({e})")
    if n != r["ContentLength"]:
        return State(-1, "", etag, None, f"{n} bytes read, Content-Length {r['ContentLength']}")
    return State(n, h.hexdigest(), etag, r.get("ChecksumCRC32"), "observed")


def same_version(got: State | None, want: State, whole: bool) -> bool:
    if whole or got is None or want == MARKER:
        return got == want
    return (got.size, got.etag, got.crc32) == (want.size, want.etag, want.crc32)  # a HEAD has no md5


def read_current(s3, key: tuple[str, str]) -> tuple[str, str | None, State | None]:
    """What a read without a version id finds: ("object", id, HEAD state), ("marker", id, None) or
    ("absent", None, None)."""
    try:
        r = s3.head_object(Bucket=key[0], Key=key[1], ChecksumMode="ENABLED")
    except ClientError as e:
        h = e.response["ResponseMetadata"]["HTTPHeaders"]
        if e.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
            raise
        if h.get("x-amz-delete-marker") == "true":
            return "marker", h.get("x-amz-version-id"), None
        return "absent", None, None
    return "object", r.get("VersionId"), State(r["ContentLength"], "", r["ETag"].strip('"'), r.get("ChecksumCRC32"), "")


def stored_versions(data_dir: Path, bucket: str) -> dict[str, set[str | None]]:
    """Per key, the version ids the metadata holds (current rows and the versions table), read in one
    snapshot: the only way to learn the id of a version whose write was in flight at the kill."""
    conn = sqlite3.connect(f"file:{data_dir / 'meta.sqlite3'}?mode=ro", uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        out: dict[str, set[str | None]] = defaultdict(set)
        for table in ("objects", "versions"):
            for key, vid in conn.execute(f"SELECT key, version_id FROM {table} WHERE bucket = ?", (bucket,)):
                out[key].add(vid)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return out


def check_key_versions(
    s3, model: VersionedModel, key: tuple[str, str], stored: set[str | None], totals: Totals, failures: list[str]
) -> dict[str, State]:
    """Check one key's versions after the restart; answers them (id -> State) for the next cycle."""
    ops = model.ops[key]
    creates = [o for o in ops if o.kind in CREATES]
    removed = {o.target for o in ops if o.kind == "unversion" and o.acked}
    maybe_removed = {o.target for o in ops if o.kind == "unversion" and not o.acked}
    if None in stored:
        failures.append(f"{key}: a null version in a bucket versioned since its creation")
        stored = stored - {None}
    ids: set[str] = {v for v in stored if v is not None}
    expected: dict[str, tuple[State, str]] = {v: (st, "seen at the last restart") for v, st in model.known[key].items()}
    for o in creates:
        if o.acked:
            if not o.vid:
                failures.append(f"{key}: an acknowledged {o.kind} answered no version id")
                continue
            expected[o.vid] = (o.state or MARKER, f"acknowledged {o.kind}")
            totals.acked_puts += o.kind == "put"
            totals.acked_multiparts += o.kind == "mpu"
            totals.acked_deletes += o.kind == "delete"
    totals.acked_unversions += sum(1 for o in ops if o.kind == "unversion" and o.acked)
    for vid, (st, why) in expected.items():
        if vid in removed:
            if vid in ids:
                failures.append(f"{key}: version {vid} ({why}) still there after an acknowledged delete by its id")
            elif (got := read_version(s3, key, vid, whole=False)) is not None:
                failures.append(f"{key}: version {vid} deleted by its id (acknowledged) reads as {describe(got)}")
            else:
                totals.unversions_confirmed += 1
        elif vid not in ids and vid not in maybe_removed:
            failures.append(f"{key}: version {vid} ({why}, {describe(st)}) is lost")
    found: dict[str, State] = {}
    placed: dict[str, Op] = {o.vid: o for o in creates if o.acked and o.vid}  # id -> the op that made it
    pending = [o for o in creates if not o.acked]
    for vid in sorted(ids):
        whole = vid not in model.read_whole
        got = read_version(s3, key, vid, whole)
        totals.versions_read += 1
        if got is None:
            failures.append(f"{key}: version {vid} is in the metadata but reads as absent")
            continue
        if vid in expected:
            want, why = expected[vid]
            if not same_version(got, want, whole):
                failures.append(f"{key}: version {vid} ({why}) reads {describe(got)}, expected {describe(want)}")
                continue
            got = want
        else:
            # nobody was told of this version: it must be the result of a request in flight at the kill
            matches = [o for o in pending if (o.state or MARKER) == got]
            if not matches:
                failures.append(
                    f"{key}: version {vid} holds {describe(got)}, which no request made: in flight were "
                    + "; ".join(describe(o.state or MARKER) for o in pending)
                )
                continue
            pending.remove(matches[0])
            totals.inflight_applied += 1
            if len(matches) == 1:  # of several alike (markers, empty bodies) which made this one is unknown
                placed[vid] = matches[0]
        if whole and got != MARKER:
            totals.bytes_verified += got.size
        totals.markers_read += got == MARKER
        model.read_whole.add(vid)
        found[vid] = got
    totals.inflight_not_applied += len(pending)
    # ids order as the key's versions: of two versions there now, the one acknowledged before the other's
    # write started has the smaller id, and every version there before this cycle is older than every one
    # made in it (a version is newer than every version there when it was made; invariant 1)
    new = sorted(v for v in placed if v in found)
    for a in new:
        for b in new:
            if placed[a].end < placed[b].start and not a < b:
                failures.append(f"{key}: {b} was written after {a} was acknowledged, but its id is not above it")
    old = [v for v in found if v in model.known[key]]
    if old and new and max(old) > min(new):
        failures.append(f"{key}: version {min(new)}, made in this cycle, has an id below the older {max(old)}")
    # the current version is the newest one there is (a delete marker: the key reads as deleted)
    kind, cur, head = read_current(s3, key)
    totals.objects_checked += 1
    newest = max(found) if found else None
    if newest is None:
        want_current: tuple[str, str | None] = ("absent", None)
    else:
        want_current = ("marker" if found[newest] == MARKER else "object", newest)
    if (kind, cur) != want_current:
        failures.append(
            f"{key}: the current version is {kind} {cur}, but the newest of {sorted(found)} is {want_current}"
        )
    elif kind == "object" and newest is not None and not same_version(head, found[newest], whole=False):
        failures.append(f"{key}: the current version {cur} reads {describe(head)}, by its id {describe(found[newest])}")
    elif kind == "object":
        totals.present_verified += 1
    return found


def check_after_restart_versioned(c: Coordinator, model: Model, totals: Totals, cycle: str, killed_log: str) -> None:
    assert isinstance(model, VersionedModel)
    where = f"versioned cycle {cycle} (seed {SEED}, data {c.data_dir})"
    verify = verify_cli(c)
    disk = check_disk(c.data_dir)
    assert not disk["problems"], f"{where}: data dir after the start-up sweep:\n" + "\n".join(disk["problems"])
    s3 = c.client(**CLIENT_CONFIG)
    stored = stored_versions(c.data_dir, VBUCKET)
    failures: list[str] = []
    if set(stored) - set(VKEYS):
        failures.append(f"versions of keys nobody wrote: {sorted(set(stored) - set(VKEYS))}")
    known: dict[tuple[str, str], dict[str, State]] = {}
    for key in VALL_KEYS:
        known[key] = check_key_versions(s3, model, key, stored.get(key[1], set()), totals, failures)

    # the listing names exactly the keys whose newest version is not a delete marker
    current = {k: vs[max(vs)] for (_, k), vs in known.items() if vs and vs[max(vs)] != MARKER}
    listed = {
        o["Key"]: (o["Size"], o["ETag"].strip('"'))
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=VBUCKET)
        for o in page.get("Contents", [])
    }
    if listed != {k: (st.size, st.etag) for k, st in current.items()}:
        failures.append(f"listing of {VBUCKET}: {listed} but the current versions read back are {current}")

    # usage counters: the CLI's recount, and against every version read back (noncurrent ones included)
    out, err = verify.communicate(timeout=60)
    if verify.returncode != 0:
        failures.append(f"`tunnelmesh storage verify` exited {verify.returncode}: {out} {err}")
    else:
        r = {b["bucket"]: b for b in json.loads(out)["buckets"]}[VBUCKET]
        every = [st for vs in known.values() for st in vs.values()]
        used = sum(st.size for st in every)
        cur_used = sum(st.size for st in current.values())
        want = (used, len(current), used - cur_used, len(every) - len(current), disk["mpu_bytes"].get(VBUCKET, 0))
        got = (r["used"], r["objects"], r["noncurrent_used"], r["noncurrent_objects"], r["multipart_used"])
        if got != want:
            failures.append(f"usage of {VBUCKET}: (used, objects, nc_used, nc_objects, mpu) {got}, read back {want}")

    pending = check_uploads(s3, model, (VBUCKET,), failures)
    finish_check(s3, where, failures, killed_log, pending, totals)
    model.next_cycle(known)


def test_sigkill_under_load_in_a_versioned_bucket_loses_no_version(tmp_path: Path) -> None:
    """The campaign in a versioned bucket: overwrites of a few hot keys, delete markers, deletes by
    version id (of the current version or an older one), DeleteObjects mixing both, multipart
    completes. A few cycles in CI (TUNNELMESH_CRASH_VERSIONED_CYCLES, default a twelfth of
    TUNNELMESH_CRASH_CYCLES and at least 3)."""
    # a short campaign still ends one round with a clean stop
    graceful_every = min(GRACEFUL_EVERY, VERSIONED_CYCLES - 1) if GRACEFUL_EVERY else 0
    totals = campaign(
        tmp_path,
        VERSIONED_CYCLES,
        graceful_every,
        (VBUCKET,),
        True,
        VersionedModel(),
        versioned_load_loop,
        check_after_restart_versioned,
    )
    summary = (
        f"versioned crash campaign passed: {totals.cycles} SIGKILL cycles and {totals.graceful} graceful stops in "
        f"{totals.elapsed:.0f}s; acknowledged: {totals.acked_puts} puts, {totals.acked_multiparts} multipart "
        f"completes, {totals.acked_deletes} delete markers, {totals.acked_unversions} deletes by version id "
        f"({totals.unversions_confirmed} confirmed gone by their id); {totals.versions_read} version reads by id "
        f"({totals.markers_read} delete markers, {totals.bytes_verified / MIB:.0f} MiB compared), "
        f"{totals.present_verified} current versions matched; in flight at the stop: {totals.inflight_applied} "
        f"applied, {totals.inflight_not_applied} not applied; start-up sweeps removed {totals.swept_tmp} "
        f"temporaries and {totals.swept_orphans} orphan blobs; {totals.uploads_aborted} interrupted uploads aborted"
    )
    print(summary)
    assert totals.cycles == VERSIONED_CYCLES, summary
    assert totals.versions_read and totals.acked_unversions and totals.markers_read, summary
