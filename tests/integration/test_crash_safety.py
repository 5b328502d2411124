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
    kind: str  # put, mpu, delete
    state: State | None  # the key's content once this op applied (None: deleted)
    start: float
    end: float = math.inf  # when the response arrived; inf while unanswered or failed
    acked: bool = False


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

    def begin(self, key: tuple[str, str], kind: str, state: State | None) -> Op:
        op = Op(kind, state, time.monotonic())
        with self.lock:
            self.ops[key].append(op)
        return op

    def ack(self, op: Op) -> None:
        op.end = time.monotonic()
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
    model.ack(op)
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
    model.ack(op)
    with model.lock:
        model.completed_uploads.add(upload_id)
    if r["ETag"].strip('"') != etag:
        model.errors.append(f"Complete {key} v{version}: answered ETag {r['ETag']}, expected {etag}")


def load_thread(s3, model: Model, rng: random.Random, stop: threading.Event) -> None:
    try:
        load_loop(s3, model, rng, stop)
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
        for bucket, key, size, segments, inline_len in conn.execute(
            f"SELECT bucket, key, size, segments, {inline} FROM objects"
        ):
            segs = json.loads(segments)
            objects[(bucket, key)] = size
            if inline_len is not None:
                if inline_len != size or segs:
                    problems.append(f"object {bucket}/{key}: size {size}, {inline_len} inline bytes, segments {segs}")
            elif sum(seg[1] for seg in segs) != size:
                problems.append(f"object {bucket}/{key}: size {size} but segments {segs}")
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

    # multipart uploads: a completed one is gone; pending ones are ours, then aborted
    pending: list[tuple[str, str, str]] = []
    for bucket in BUCKETS:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            pending.extend((bucket, u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
    ids = {u for _, _, u in pending}
    if ids & model.completed_uploads:
        failures.append(f"uploads completed (acknowledged) but still pending: {ids & model.completed_uploads}")
    unknown = ids - model.created_uploads
    if len(unknown) > model.creates_in_flight:
        failures.append(f"{len(unknown)} pending uploads nobody created ({model.creates_in_flight} creates in flight)")

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
    model.new_cycle(observed)


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


def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path, monkeypatch) -> None:
    plan = []
    for i in range(1, CYCLES + 1):
        plan.append("kill")
        if GRACEFUL_EVERY and i % GRACEFUL_EVERY == 0:
            plan.append("stop")
    print(
        f"\ncrash campaign: {CYCLES} SIGKILL cycles (+{plan.count('stop')} graceful stops under load), seed {SEED}, "
        f"{THREADS} load threads, {WORKERS} coordinator worker(s)"
    )
    rng = random.Random(SEED)
    data_dir = tmp_path / "data"
    c = start_coordinator(tmp_path, data_dir=data_dir, workers=WORKERS)
    token = c.token
    model = Model()
    totals = Totals()
    started = time.monotonic()
    try:
        s3 = c.client(**CLIENT_CONFIG)
        for b in BUCKETS:
            s3.create_bucket(Bucket=b)
        for cycle, mode in enumerate(plan, 1):
            # clients are made here, in one thread: boto3's default session is not thread-safe
            endpoints = [c.endpoint, c.root_endpoint]
            clients = [c.client(endpoint=endpoints[i % 2], **CLIENT_CONFIG) for i in range(THREADS)]
            stop = threading.Event()
            threads = [
                threading.Thread(
                    target=load_thread,
                    args=(clients[i], model, random.Random(rng.random()), stop),
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
                check_after_restart(c, model, totals, f"{cycle} ({mode})", killed_log)
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
            present = sum(1 for s in model.baseline.values() if s is not None)
            what = "SIGKILL" if mode == "kill" else "SIGTERM"
            print(
                f"cycle {cycle:3d}: {what} after {window:.2f}s, {ops} key ops sent, {acked} acknowledged; "
                f"restart checked, {present}/{len(ALL_KEYS)} keys present"
            )
    finally:
        stop_tree(c)
    elapsed = time.monotonic() - started
    summary = (
        f"crash campaign passed: {totals.cycles} SIGKILL cycles ({totals.processes_killed} processes killed) and "
        f"{totals.graceful} graceful stops under load survived in {elapsed:.0f}s; "
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
