"""Every admin operation killed at random instants: the coordinator (supervisor and workers) is
SIGKILLed at a seeded random moment between just before and just after the CLI's request, then
restarted on the same data dir, and the operation must have taken effect completely or not at all.

Each operation is first run once uninterrupted: that checks its happy path with the same checks and
shows how long the coordinator takes over the request (from its log). Each kill comes a random time
after the CLI's connection is established: at once, or anywhere over that duration and a little
after it. After every restart, whatever the operation:

- the orphan sweep finishes, `storage verify` exits 0, tmp/ is empty;
- every blob file is referenced by an object or a part, or queued as freed (no leak), and every
  referenced blob exists (only a blob `storage scrub --repair` moved to quarantine/ may be absent);
- a command that exited 0 took effect (an acknowledged operation survives the kill).

The restore has its own campaign (test_restore_atomic.py). A forced bucket delete is not atomic
by design (`Store.empty_bucket` deletes pages of 1000 objects, then aborts the uploads one by one,
then deletes the bucket, each in its own commit): its test checks that a crash leaves a bucket
emptied in exactly that order, every remaining object whole, and that running it again finishes.

The seed is printed and can be set with CRASH_CAMPAIGN_SEED to replay a failure (and the number
of kills per operation with CRASH_CAMPAIGN_KILLS).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import string
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, blob_files, descendants, referenced_and_queued, start_coordinator

SEED = int(os.environ.get("CRASH_CAMPAIGN_SEED", "20261130"))
# per operation, after the uninterrupted run; raise it (CRASH_CAMPAIGN_KILLS) to hunt for rarer windows
KILLS = int(os.environ.get("CRASH_CAMPAIGN_KILLS", "5"))
FORCED_DELETE_KILLS = KILLS + 2
SYSTEM = "_tunnelmesh"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
MIB = 1024 * 1024
INLINE_MAX = 32 * 1024  # records and objects above this are stored as blobs


# ---- the coordinator: kill, restart, raw reads ---------------------------------------------------


def kill_coordinator(c: Coordinator, pids: list[int] | None = None) -> None:
    """SIGKILL the supervisor and every process it forked (workers, sweeper), as a power cut would:
    all are stopped first, so no worker sees its parent die and begins a graceful shutdown."""
    pids = pids or descendants(c.proc.pid)
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
    c.proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    for pid in pids[1:]:
        while alive(pid):
            assert time.monotonic() < deadline, f"process {pid} outlived SIGKILL"
            time.sleep(0.005)


def alive(pid: int) -> bool:
    """Still running: a zombie has released its files and locks (the orphaned workers' zombies
    wait for init to reap them, which may take seconds)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def restart(tmp: Path, c: Coordinator) -> tuple[Coordinator, int]:
    """The coordinator again on the same data dir, once its orphan sweep has finished; returns it
    with the number of orphan blobs the sweep removed (blobs the kill caught sealed but uncommitted)."""
    new = start_coordinator(tmp, token=c.token, data_dir=c.data_dir)
    new.wait_for_log(r"\d+ workers; data in")
    new.wait_for_log(r"orphan sweep finished")
    return new, int(new.wait_for_log(r"orphan sweep: removed (\d+) orphan blobs")[1])


def cli_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}


def api(c: Coordinator, method: str, path: str, doc: dict | None = None) -> dict:
    r = requests.request(method, f"http://127.0.0.1:{c.port}/api/{path}", json=doc, auth=("admin", c.token), timeout=60)
    assert r.status_code in (200, 201), r.text
    return r.json()


def get(c: Coordinator, bucket: str, key: str) -> bytes | None:
    """An object's bytes as the admin reads them over S3 (Basic), or None if there is no such key."""
    r = requests.get(f"{c.endpoint}/{bucket}/{key}", auth=("admin", c.token), timeout=60)
    if r.status_code == 404:
        assert "<Code>NoSuchKey</Code>" in r.text, r.text
        return None
    assert r.status_code == 200, f"{bucket}/{key}: {r.status_code} {r.text[:300]}"
    return r.content


def put(c: Coordinator, bucket: str, key: str, data: bytes) -> None:
    r = requests.put(f"{c.endpoint}/{bucket}/{key}", data=data, auth=("admin", c.token), timeout=60)
    assert r.status_code == 200, r.text


def list_keys(c: Coordinator, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    token = None
    while True:
        params = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
        r = requests.get(f"{c.endpoint}/{bucket}", params=params, auth=("admin", c.token), timeout=60)
        assert r.status_code == 200, r.text
        doc = ElementTree.fromstring(r.content)
        keys += [el.text or "" for el in doc.iter(f"{NS}Key")]
        token = doc.findtext(f"{NS}NextContinuationToken")
        if doc.findtext(f"{NS}IsTruncated") != "true":
            return keys


def system_record(c: Coordinator, key: str) -> Any:
    data = get(c, SYSTEM, key)
    return None if data is None else json.loads(data)


def segments_of(data_dir: Path, bucket: str, key: str) -> list[str]:
    conn = sqlite3.connect(data_dir / "meta.sqlite3", timeout=30)
    try:
        row = conn.execute("SELECT segments FROM objects WHERE bucket=? AND key=?", (bucket, key)).fetchone()
    finally:
        conn.close()
    return [seg[0] for seg in json.loads(row[0])] if row else []


def quarantined(data_dir: Path) -> set[str]:
    q = data_dir / "quarantine"
    return {p.name for p in q.iterdir()} if q.exists() else set()


def check_consistent(c: Coordinator, where: str) -> None:
    """What must hold after every restart, whatever was killed."""
    verify = c.cli("storage", "verify")
    assert verify.returncode == 0, f"{where}: storage verify: {verify.stdout}{verify.stderr}"
    assert not [p for p in (c.data_dir / "tmp").rglob("*") if p.is_file()], f"{where}: temporaries left"
    refs, queued = referenced_and_queued(c.data_dir)
    files = blob_files(c.data_dir)
    assert files <= refs | queued, f"{where}: blob files nothing references: {sorted(files - refs - queued)[:5]}"
    missing = refs - files
    assert missing <= quarantined(c.data_dir), f"{where}: referenced blobs missing: {sorted(missing)[:5]}"


# ---- authentication probes --------------------------------------------------------------------------


def sigv4_status(c: Coordinator, access_key: str, secret: str) -> tuple[int, str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    try:
        s3.list_buckets()
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
    return 200, ""


def schemes_accepting(c: Coordinator, peer_id: str, token: str) -> dict[str, bool]:
    """For SigV4, Basic and Bearer: does the coordinator let this peer in?"""
    basic = requests.get(f"{c.endpoint}/", auth=(peer_id, token), timeout=60).status_code
    bearer = requests.get(f"{c.endpoint}/", headers={"authorization": f"Bearer {token}"}, timeout=60).status_code
    sigv4, _ = sigv4_status(c, peer_id, token)
    for status in (basic, bearer, sigv4):
        assert status in (200, 403), status
    return {"sigv4": sigv4 == 200, "basic": basic == 200, "bearer": bearer == 200}


# ---- the operations ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One CLI run of an operation: its arguments, and what it printed once it ended."""

    args: list[str]
    rc: int = -1
    out: str = ""
    err: str = ""
    unanswered: bool = False  # the CLI could not reach the coordinator, or lost it mid-request


class Operation:
    """An admin operation as a CLI command: set up once, prepared before each run, checked after.

    `check` returns "new" (took effect), "old" (did not), or "partial" when the operation is
    documented to leave harmless debris (it must then say why that is harmless).
    """

    name = ""
    log_op = ""  # how the coordinator's request log names the request (admin=... or op=...)
    show: tuple[str, ...] = ()  # the CLI command that shows what it changed, run once at the end
    kills = KILLS

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        self.rng, self.tmp = rng, tmp

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        raise NotImplementedError

    def check(self, c: Coordinator, run: Run) -> str:
        raise NotImplementedError


def word(rng: random.Random, n: int) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=n))


def many_ids(tag: str) -> list[str]:
    """Peer ids enough to make a share record larger than the inline limit."""
    return [f"{tag}-{i:04d}-" + "x" * 50 for i in range(700)]


class PeerAdd(Operation):
    name, log_op, show = "peer add", "admin=add_peer", ("peer", "list")
    kills = KILLS + 2  # two commits (index entry, then record): more tries to land between them

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        self.before = {p["id"] for p in api(c, "GET", "peers")["peers"]}
        self.index_before = set(list_keys(c, SYSTEM, "peer-tokens/"))
        self.peer_name = f"crash-{i}"
        return ["peer", "add", self.peer_name, "--json"]

    def check(self, c: Coordinator, run: Run) -> str:
        listed = {p["id"]: p for p in api(c, "GET", "peers")["peers"]}
        new = set(listed) - self.before
        assert self.before <= set(listed)
        assert len(new) <= 1, new
        printed = json.loads(run.out) if run.rc == 0 else None
        if printed:
            assert new == {printed["peer_id"]}, "an acknowledged peer add was lost"
        peer_id = next(iter(new), None)
        if peer_id is not None:
            # complete: a whole record, the index entry that finds it, and it gets in by every scheme
            record = system_record(c, f"peers/{peer_id}.json")
            assert record["name"] == self.peer_name and record["role"] == "peer" and not record["revoked"], record
            if printed:
                assert record["token"] == printed["token"]
            digest = hashlib.sha256(record["token"].encode()).hexdigest()
            assert system_record(c, f"peer-tokens/{digest}") == {"id": peer_id}
            assert schemes_accepting(c, peer_id, record["token"]) == dict.fromkeys(("sigv4", "basic", "bearer"), True)
        # the index is written before the record: a kill between leaves an entry naming no peer,
        # harmless because a Bearer lookup must still find a record holding a token with that digest
        debris = 0
        for key in set(list_keys(c, SYSTEM, "peer-tokens/")) - self.index_before:
            named = system_record(c, key)["id"]
            if named == peer_id:
                continue
            debris += 1
            assert named not in listed and system_record(c, f"peers/{named}.json") is None
            assert sigv4_status(c, named, "x" * 43) == (403, "InvalidAccessKeyId")
        if peer_id is not None:
            return "new"
        return "partial" if debris else "old"


class PeerRevoke(Operation):
    name, log_op, show = "peer revoke", "admin=revoke_peer", ("peer", "list")

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        doc = api(c, "POST", "peers", {"name": f"victim-{i}", "admin": False})
        self.peer_id, self.token = doc["peer_id"], doc["token"]
        assert all(schemes_accepting(c, self.peer_id, self.token).values())
        return ["peer", "revoke", self.peer_id]

    def check(self, c: Coordinator, run: Run) -> str:
        listed = {p["id"]: p for p in api(c, "GET", "peers")["peers"]}
        revoked = bool(listed[self.peer_id]["revoked"])
        assert revoked or run.rc != 0, "an acknowledged revocation was lost"
        # never "listed as revoked but still authenticates", on any scheme
        assert schemes_accepting(c, self.peer_id, self.token) == dict.fromkeys(
            ("sigv4", "basic", "bearer"), not revoked
        )
        return "new" if revoked else "old"


def bucket_usage(c: Coordinator, name: str) -> dict | None:
    """What `bucket usage NAME` shows, or None when there is no such bucket."""
    r = requests.get(f"http://127.0.0.1:{c.port}/api/buckets/{name}/usage", auth=("admin", c.token), timeout=60)
    if r.status_code == 404:
        assert r.json()["error"] == "NoSuchBucket", r.text
        return None
    assert r.status_code == 200, r.text
    return r.json()


def buckets_listed(c: Coordinator) -> set[str]:
    return {b["name"] for b in api(c, "GET", "buckets")["buckets"]}


class BucketCreate(Operation):
    name, log_op, show = "bucket create", "admin=create_bucket", ("bucket", "list")

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        self.bucket = f"made-{i}"
        return ["bucket", "create", self.bucket]

    def check(self, c: Coordinator, run: Run) -> str:
        usage = bucket_usage(c, self.bucket)
        assert (usage is not None) == (self.bucket in buckets_listed(c))
        if usage is None:
            assert run.rc != 0, "an acknowledged bucket create was lost"
            return "old"
        assert (usage["owner"], usage["objects"], usage["used"], usage["quota"]) == ("admin", 0, 0, None), usage
        put(c, self.bucket, "k", b"usable")  # a whole bucket: it takes objects
        return "new"


class BucketDeleteEmpty(Operation):
    name, log_op, show = "bucket delete", "admin=delete_bucket", ("bucket", "list")

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        self.bucket = f"doomed-{i}"
        api(c, "POST", "buckets", {"name": self.bucket})
        return ["bucket", "delete", self.bucket]

    def check(self, c: Coordinator, run: Run) -> str:
        usage = bucket_usage(c, self.bucket)
        assert (usage is not None) == (self.bucket in buckets_listed(c))
        if usage is not None:
            assert run.rc != 0, "an acknowledged bucket delete was lost"
            assert usage["objects"] == 0
            return "old"
        return "new"


def objects_and_uploads(c: Coordinator, bucket: str, rng: random.Random, n: int) -> tuple[dict[str, bytes], set[str]]:
    """Objects (some inline, some in blobs) and two pending multipart uploads with a part each."""
    s3 = c.client()
    s3.create_bucket(Bucket=bucket)
    contents = {f"obj-{j:03d}": rng.randbytes(rng.choice((100, 5000, 70_000))) for j in range(n)}
    for key, data in contents.items():
        put(c, bucket, key, data)
    uploads = set()
    for j in range(2):
        up = s3.create_multipart_upload(Bucket=bucket, Key=f"pending-{j}")["UploadId"]
        s3.upload_part(Bucket=bucket, Key=f"pending-{j}", UploadId=up, PartNumber=1, Body=rng.randbytes(50_000))
        uploads.add(up)
    return contents, uploads


def pending_uploads(c: Coordinator, bucket: str) -> set[str]:
    r = requests.get(f"{c.endpoint}/{bucket}?uploads", auth=("admin", c.token), timeout=60)
    assert r.status_code == 200, r.text
    return {el.text or "" for el in ElementTree.fromstring(r.content).iter(f"{NS}UploadId")}


class BucketDeleteNotEmpty(Operation):
    """Without --force on a bucket with objects and uploads: refused, and a kill changes nothing."""

    name, log_op, show = "bucket delete (not empty, no force)", "admin=delete_bucket", ("bucket", "usage", "kept")

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        super().setup(c, rng, tmp)
        self.contents, self.uploads = objects_and_uploads(c, "kept", rng, 12)

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        return ["bucket", "delete", "kept"]

    def check(self, c: Coordinator, run: Run) -> str:
        assert run.rc != 0
        if run.err:
            assert "BucketNotEmpty" in run.err or "cannot reach" in run.err, run.err
        usage = bucket_usage(c, "kept")
        assert usage is not None and usage["objects"] == len(self.contents)
        assert {k: get(c, "kept", k) for k in self.contents} == self.contents
        assert pending_uploads(c, "kept") == self.uploads
        return "old"


class Quota(Operation):
    """`bucket quota set` and `bucket quota clear`, chosen at random."""

    name, log_op, show = "bucket quota set/clear", "admin=set_quota", ("bucket", "usage", "limited")

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        super().setup(c, rng, tmp)
        objects_and_uploads(c, "limited", rng, 3)
        self.quota: int | None = None

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        self.old = self.quota
        if self.old is None or self.rng.random() < 0.5:
            self.new: int | None = self.rng.randrange(10**6, 10**12)
            return ["bucket", "quota", "set", "limited", str(self.new)]
        self.new = None
        return ["bucket", "quota", "clear", "limited"]

    def check(self, c: Coordinator, run: Run) -> str:
        usage = bucket_usage(c, "limited")
        assert usage is not None and usage["quota"] in (self.old, self.new), (usage, self.old, self.new)
        assert run.rc != 0 or usage["quota"] == self.new, "an acknowledged quota change was lost"
        self.quota = usage["quota"]
        return "new" if self.quota == self.new and self.new != self.old else "old"


class NetworkSet(Operation):
    """Fixed fields and free-form ones, in a record near the inline limit: a change may turn it
    from inline bytes into a blob or back."""

    name, log_op, show = "network set", "admin=set_network", ("network", "show")

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        super().setup(c, rng, tmp)
        api(c, "PUT", "network", {"key": "mesh_name", "value": "start"})
        # a value is at most 1024 characters: 33 of 1000 make the record larger than INLINE_MAX,
        # and shortening one makes it inline again
        for n in range(33):
            api(c, "PUT", "network", {"key": f"extra.k{n:02d}", "value": word(rng, 1000)})
        self.doc = api(c, "GET", "network")

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        key, value = self.rng.choice(
            [
                ("mesh_name", f"mesh-{i}-{word(self.rng, 6)}"),
                ("cidr", f"10.{self.rng.randrange(256)}.0.0/16"),
                (f"extra.k{self.rng.randrange(36):02d}", word(self.rng, self.rng.choice((10, 1000)))),
            ]
        )
        self.new = json.loads(json.dumps(self.doc))
        if key.startswith("extra."):
            self.new["extra"][key[len("extra.") :]] = value
        else:
            self.new[key] = value
        return ["network", "set", key, value]

    def check(self, c: Coordinator, run: Run) -> str:
        now = api(c, "GET", "network")
        assert now in (self.doc, self.new), "network config is a mix of the old and the new"
        assert run.rc != 0 or now == self.new, "an acknowledged network change was lost"
        outcome = "new" if now == self.new and now != self.doc else "old"
        self.doc = now
        return outcome


def shares_by_name(c: Coordinator) -> dict[str, dict]:
    return {s["name"]: s for s in api(c, "GET", "shares")["shares"]}


def share_args(doc: dict) -> list[str]:
    peers = [a for p in doc["peers"] for a in ("--peer", p)]
    return ["share", "add", doc["name"], "--bucket", doc["bucket"], "--path", doc["path"], *peers] + (
        ["--read-only"] if doc["read_only"] else []
    )


class ShareAdd(Operation):
    """A new share, or a replaced one; small records and records large enough to be a blob."""

    name, log_op, show = "share add", "admin=add_share", ("share", "list")

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        super().setup(c, rng, tmp)
        api(c, "POST", "buckets", {"name": "media"})
        self.shares: dict[str, dict] = {}

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        name = self.rng.choice(["replaced-small", "replaced-big", f"new-{i}"])
        peers = many_ids(f"p{i}") if name == "replaced-big" or self.rng.random() < 0.3 else [f"peer-{i}"]
        self.new = {
            "name": name,
            "bucket": "media",
            "path": f"dir-{i}",
            "peers": sorted(peers),
            "read_only": self.rng.random() < 0.5,
        }
        return share_args(self.new)

    def check(self, c: Coordinator, run: Run) -> str:
        now = shares_by_name(c)
        name = self.new["name"]
        others = {k: v for k, v in now.items() if k != name}
        assert others == {k: v for k, v in self.shares.items() if k != name}, "another share changed"
        assert now.get(name) in (self.shares.get(name), self.new), f"share {name} is neither old nor new"
        assert run.rc != 0 or now[name] == self.new, "an acknowledged share add was lost"
        outcome = "new" if now.get(name) == self.new != self.shares.get(name) else "old"
        self.shares = now
        return outcome


class ShareRemove(Operation):
    name, log_op, show = "share remove", "admin=remove_share", ("share", "list")

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        super().setup(c, rng, tmp)
        api(c, "POST", "buckets", {"name": "media"})
        api(c, "POST", "shares", {"name": "bystander", "bucket": "media", "peers": many_ids("b")})
        self.shares = shares_by_name(c)

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        self.name_ = f"gone-{i}"
        peers = many_ids(f"g{i}") if i % 2 else ["one"]
        api(c, "POST", "shares", {"name": self.name_, "bucket": "media", "peers": peers})
        self.shares = shares_by_name(c)
        return ["share", "remove", self.name_]

    def check(self, c: Coordinator, run: Run) -> str:
        now = shares_by_name(c)
        if self.name_ in now:
            assert run.rc != 0, "an acknowledged share remove was lost"
            assert now == self.shares
            return "old"
        assert now == {k: v for k, v in self.shares.items() if k != self.name_}
        return "new"


class ObjectPut(Operation):
    """`object put` overwriting a key: the old bytes or the new ones, whole."""

    name, log_op, show = "object put", "op=PutObject", ("object", "list", "objs")

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        super().setup(c, rng, tmp)
        api(c, "POST", "buckets", {"name": "objs"})
        self.current = rng.randbytes(1000)
        put(c, "objs", "k", self.current)

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        self.new = self.rng.randbytes(self.rng.choice((2000, 300_000, 6 * MIB)))
        path = self.tmp / "upload.bin"
        path.write_bytes(self.new)
        return ["object", "put", "objs/k", str(path)]

    def check(self, c: Coordinator, run: Run) -> str:
        now = get(c, "objs", "k")
        assert now in (self.current, self.new), f"objs/k is neither old nor new ({len(now or b'')} bytes)"
        assert run.rc != 0 or now == self.new, "an acknowledged put was lost"
        outcome = "new" if now == self.new else "old"
        self.current = now
        return outcome


class ScrubRepair(Operation):
    """`storage scrub --repair` with one rotten object: it is quarantined and deleted, or still
    there; a kill between the two (blob moved, object not yet deleted) leaves an object whose
    blob is in quarantine/, which the next scrub reports and removes."""

    name, log_op, show = "storage scrub --repair", "admin=storage_scrub", ("storage", "status")

    def setup(self, c: Coordinator, rng: random.Random, tmp: Path) -> None:
        super().setup(c, rng, tmp)
        api(c, "POST", "buckets", {"name": "scrubbed"})
        self.healthy = {f"healthy-{j}": rng.randbytes(rng.choice((500, 200_000, 2 * MIB))) for j in range(6)}
        for key, data in self.healthy.items():
            put(c, "scrubbed", key, data)

    def prepare(self, c: Coordinator, i: int) -> list[str]:
        self.key = f"rotten-{i}"
        put(c, "scrubbed", self.key, self.rng.randbytes(100_000))
        (self.blob,) = segments_of(c.data_dir, "scrubbed", self.key)
        path = c.data_dir / "blobs" / self.blob[:2] / self.blob
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        os.chmod(path, 0o600)
        path.write_bytes(bytes(data))
        return ["storage", "scrub", "--repair"]

    def check(self, c: Coordinator, run: Run) -> str:
        assert run.rc != 0  # there was rot to report, or the kill cut it short
        assert {k: get(c, "scrubbed", k) for k in self.healthy} == self.healthy
        moved = self.blob in quarantined(c.data_dir)
        if self.key not in list_keys(c, "scrubbed"):
            assert moved
            return "new"
        # still listed: the blob is untouched in blobs/, or moved and the delete was cut off;
        # either way a scrub finds it again and a repair finishes the job
        again = c.cli("storage", "scrub", "--repair", "--json")
        assert again.returncode == 1, again.stdout + again.stderr
        assert [r["key"] for r in json.loads(again.stdout)["rotten"]] == [self.key]
        assert self.key not in list_keys(c, "scrubbed") and self.blob in quarantined(c.data_dir)
        return "partial" if moved else "old"


OPERATIONS = [
    PeerAdd,
    PeerRevoke,
    BucketCreate,
    BucketDeleteEmpty,
    BucketDeleteNotEmpty,
    Quota,
    NetworkSet,
    ShareAdd,
    ShareRemove,
    ObjectPut,
    ScrubRepair,
]


# ---- the campaign ----------------------------------------------------------------------------------

LOG_TOOK = re.compile(r" ms=([\d.]+)\b")


def request_took(c: Coordinator, log_op: str) -> float:
    """How long the coordinator took over the last such request, in seconds, from its log line."""
    lines = [line for line in c.log().splitlines() if f" {log_op} " in line]
    assert lines, f"no request {log_op} logged:\n{c.log()[-2000:]}"
    m = LOG_TOOK.search(lines[-1])
    assert m, lines[-1]
    return float(m[1]) / 1000


def connected(pid: int, port: int) -> bool:
    """Has process `pid` an established TCP connection to 127.0.0.1:`port`?"""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[len("socket:[") : -1])
    if not inodes:
        return False
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return False
    for row in rows:
        cols = row.split()
        if cols[3] == "01" and int(cols[2].rsplit(":", 1)[1], 16) == port and cols[9] in inodes:
            return True
    return False


def run_cli(c: Coordinator, args: list[str], kill_after: float | None = None) -> Run:
    """Run the CLI; with `kill_after`, SIGKILL the whole coordinator that many seconds after the
    CLI's connection is established (the CLI's start-up time varies too much under load to aim by it)."""
    run = Run(args)
    pids = descendants(c.proc.pid)  # before, so that the kill itself is quick
    proc = subprocess.Popen(
        c.cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env()
    )
    if kill_after is not None:
        deadline = time.monotonic() + 60
        while not connected(proc.pid, c.port) and proc.poll() is None:
            assert time.monotonic() < deadline, "the CLI never connected"
            time.sleep(0.0005)
        time.sleep(kill_after)
        kill_coordinator(c, pids)
    run.out, run.err = proc.communicate(timeout=120)
    run.rc = proc.returncode
    run.unanswered = "cannot reach the coordinator" in run.err
    return run


def kill_delay(rng: random.Random, took: float) -> float:
    """After the connection: at once (the request not yet handled) now and then, else anywhere
    over the request and a little after it."""
    return 0.0 if rng.random() < 0.15 else rng.uniform(0, took * 1.5 + 0.003)


@dataclass
class Tally:
    outcomes: Counter = field(default_factory=Counter)
    unanswered: int = 0  # took effect, but the kill came before the CLI heard the answer
    orphans: int = 0


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: o.__name__)
def test_an_admin_operation_killed_at_random_instants_is_all_or_nothing(tmp_path: Path, operation: type) -> None:
    rng = random.Random(f"{SEED}-{operation.__name__}")
    print(f"seed {SEED} (CRASH_CAMPAIGN_SEED), operation {operation.__name__}")
    op: Operation = operation()
    c = start_coordinator(tmp_path)
    try:
        op.setup(c, rng, tmp_path)
        # uninterrupted: the happy path passes the same check, and shows how long the request takes
        run = run_cli(c, op.prepare(c, 0))
        took = request_took(c, op.log_op)
        expected = "old" if isinstance(op, BucketDeleteNotEmpty) else "new"
        assert op.check(c, run) == expected, run
        tally = Tally()
        for i in range(1, op.kills + 1):
            args = op.prepare(c, i)
            delay = kill_delay(rng, took)
            where = f"seed {SEED}, {op.name}, kill {i} at {delay * 1000:.1f} ms after connecting"
            run = run_cli(c, args, delay)
            c, orphans = restart(tmp_path, c)
            check_consistent(c, where)
            outcome = op.check(c, run)
            tally.outcomes[outcome] += 1
            tally.unanswered += outcome == "new" and run.unanswered
            tally.orphans += orphans
        show = c.cli(*op.show)
        assert show.returncode == 0, show.stderr
        print(
            f"{op.name}: the request takes {took * 1000:.1f} ms; after {op.kills} kills: {dict(tally.outcomes)}, "
            f"{tally.unanswered} took effect unanswered, {tally.orphans} orphan blobs swept"
        )
    finally:
        c.stop()


# ---- the forced bucket delete ------------------------------------------------------------------------

FULL_OBJECTS = 2100  # over two pages of 1000: a kill can land between the pages
FULL_UPLOADS = 12


def content(key: str) -> bytes:
    """Deterministic bytes per key: most inline, every 50th in a blob."""
    size = 40_000 if int(key.rsplit("-", 1)[1]) % 50 == 0 else 200
    return (key.encode() * (size // len(key) + 1))[:size]


def fill_full_bucket(c: Coordinator) -> tuple[list[str], set[str]]:
    s3 = c.client()
    s3.create_bucket(Bucket="full")
    keys = [f"o-{j:05d}" for j in range(FULL_OBJECTS)]

    def put_some(chunk: list[str]) -> None:
        with requests.Session() as session:
            for key in chunk:
                r = session.put(f"{c.endpoint}/full/{key}", data=content(key), auth=("admin", c.token), timeout=60)
                assert r.status_code == 200, r.text

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(put_some, [keys[j::4] for j in range(4)]))
    uploads = set()
    for j in range(FULL_UPLOADS):
        up = s3.create_multipart_upload(Bucket="full", Key=f"u-{j:02d}")["UploadId"]
        s3.upload_part(Bucket="full", Key=f"u-{j:02d}", UploadId=up, PartNumber=1, Body=b"p" * 40_000)
        uploads.add(up)
    return keys, uploads


def check_partly_emptied(c: Coordinator, keys: list[str], uploads: set[str], where: str) -> str:
    """The bucket after a killed forced delete: whole, emptied in order, or gone."""
    usage = bucket_usage(c, "full")
    if usage is None:
        assert "full" not in buckets_listed(c)
        return "gone"
    left = list_keys(c, "full")
    pending = pending_uploads(c, "full")
    # pages of 1000 keys in key order, then the uploads one by one, then the bucket
    deleted = len(keys) - len(left)
    assert deleted in (*range(0, len(keys), 1000), len(keys)), f"{where}: {deleted} objects deleted, not whole pages"
    assert left == keys[deleted:], f"{where}: not the first {deleted} keys deleted"
    assert pending <= uploads and (not left or pending == uploads), f"{where}: uploads aborted before objects"
    assert usage["objects"] == len(left) and usage["used"] == sum(len(content(k)) for k in left)
    assert usage["multipart_used"] == 40_000 * len(pending)
    blob_backed = [k for k in left if len(content(k)) > INLINE_MAX]
    sample = blob_backed + random.Random(where).sample(left, min(100, len(left)))
    for key in sample:
        assert get(c, "full", key) == content(key), f"{where}: {key} damaged"
    if len(left) == len(keys) and pending == uploads:
        return "untouched"
    return f"{len(left)} objects, {len(pending)} uploads left"


def test_a_forced_bucket_delete_killed_at_random_instants_leaves_a_bucket_emptied_in_order(tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-forced-delete")
    print(f"seed {SEED} (CRASH_CAMPAIGN_SEED), forced bucket delete")
    template = start_coordinator(tmp_path, data_dir=tmp_path / "template")
    try:
        keys, uploads = fill_full_bucket(template)
    finally:
        template.stop()
    token = template.token
    outcomes: list[str] = []
    took: float | None = None
    unanswered = 0
    for i in range(FORCED_DELETE_KILLS + 1):
        data_dir = tmp_path / f"run-{i}"
        shutil.copytree(template.data_dir, data_dir, symlinks=True)
        c = start_coordinator(tmp_path, token=token, data_dir=data_dir)
        try:
            c.wait_for_log(r"\d+ workers; data in")
            args = ["bucket", "delete", "full", "--force"]
            if took is None:  # uninterrupted first: it deletes everything, and shows how long that takes
                run = run_cli(c, args)
                assert run.rc == 0, run
                took = request_took(c, "admin=delete_bucket")
                assert check_partly_emptied(c, keys, uploads, "uninterrupted") == "gone"
                check_consistent(c, "uninterrupted forced delete")
                continue
            delay = kill_delay(rng, took)
            where = f"seed {SEED}, forced delete, kill {i} at {delay * 1000:.1f} ms after connecting"
            run = run_cli(c, args, delay)
            c, _ = restart(tmp_path, c)
            check_consistent(c, where)
            outcome = check_partly_emptied(c, keys, uploads, where)
            assert run.rc != 0 or outcome == "gone", f"{where}: an acknowledged delete was lost"
            unanswered += outcome == "gone" and run.unanswered
            outcomes.append(outcome)
            if outcome != "gone":  # running it again finishes the job
                again = c.cli(*args)
                assert again.returncode == 0, again.stderr
                assert bucket_usage(c, "full") is None
                check_consistent(c, where + ", deleted again")
        finally:
            c.stop()
        shutil.rmtree(data_dir)
    assert took is not None
    print(f"forced delete: the request takes {took * 1000:.0f} ms; after kills: {outcomes}, {unanswered} unanswered")
