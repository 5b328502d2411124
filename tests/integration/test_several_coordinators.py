"""Several coordinators serving one store (docs/scale-out.md): two real coordinator processes, each with
its own data dir and ports, on one PostgreSQL database (tests/pg_server.py) and one shared blob dir.

- strong read-after-write: a write acknowledged through one is seen by GET, HEAD and listings through
  the other at once, and a delete as well;
- a peer added on one works on the other at once; revoked on one, it is refused by the other as soon as
  the revoke has returned;
- a quota storm spread over both: the admission is exact, whoever admits;
- SIGKILL one in the middle of uploads: the other goes on serving every acknowledged object; once the
  killed one restarts, its sweep frees its own leftovers and never the other's in-flight blob;
- every node's heartbeat shows in `storage status`; one silent past s3.node_timeout (SIGSTOPped) is
  taken over by the other, which sweeps its leftovers, and when it wakes, the write it held sealed all
  along is refused, never acknowledged naming a deleted blob.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import http.client
import json
import math
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, descendants, response_status, start_coordinator, started_put, wait_until
from pg_server import fresh_database
from psycopg.conninfo import conninfo_to_dict

from tunnelmesh.store.backends import MetaConfig, open_meta

KIB = 1024
SEALED_HOLD = "TUNNELMESH_TEST_SEALED_HOLD"


def database() -> str:
    """A fresh database as the postgresql:// URI the config takes (its server listens on a unix socket)."""
    d = conninfo_to_dict(fresh_database())
    query = "&".join(f"{k}={quote(str(d[k]), safe='/')}" for k in ("host", "port") if k in d)
    return f"postgresql://{quote(str(d['user']))}@/{d['dbname']}?{query}"


def start_node(
    tmp: Path, uri: str, blob_dir: Path, node: str, token: str, hold: Path | None = None, more: str = ""
) -> Coordinator:
    """A coordinator with its own data dir (tmp/<node>) on the shared metadata and blob dir; `more`: more
    s3 keys, indented."""
    extra = f"  blob_dir: {blob_dir}\n  node_id: {node}\n  metadata_pool: 2\n" + more
    env = {"TUNNELMESH_S3_METADATA": uri}
    if hold is not None:
        env[SEALED_HOLD] = str(hold)
    return start_coordinator(tmp, extra, token=token, data_dir=tmp / node, workers=2, env=env)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Coordinator, Coordinator, str, Path]]:
    tmp = tmp_path_factory.mktemp("pair")
    uri, blob_dir, token = database(), tmp / "shared-blobs", secrets.token_urlsafe(24)
    a = start_node(tmp, uri, blob_dir, "node-a", token)
    try:
        b = start_node(tmp, uri, blob_dir, "node-b", token)
    except Exception:
        a.stop()
        raise
    yield a, b, uri, blob_dir
    a.stop()
    b.stop()


def body(n: int, seed: str) -> bytes:
    """`n` bytes that differ by seed (so a wrong blob can never read back equal)."""
    return (seed.encode() + secrets.token_bytes(64)) * (n // (len(seed) + 64) + 1)


def code_of(e: ClientError) -> int:
    return e.response["ResponseMetadata"]["HTTPStatusCode"]


def cli_json(c: Coordinator, *args: str) -> dict:
    r = c.cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_write_through_one_is_read_listed_and_deleted_through_the_other_at_once(pair) -> None:
    a, b, uri, blob_dir = pair
    sa, sb = a.client(), b.client()
    sa.create_bucket(Bucket="raw")
    for i, size in enumerate([10, 40 * KIB, 300 * KIB, 5]):
        writer, reader = (sa, sb) if i % 2 == 0 else (sb, sa)
        data = body(size, f"v{i}")[:size]
        writer.put_object(Bucket="raw", Key="k", Body=data)
        # no wait, no retry: the very next request through the other node sees it
        assert reader.get_object(Bucket="raw", Key="k")["Body"].read() == data
        assert reader.head_object(Bucket="raw", Key="k")["ContentLength"] == size
        listed = reader.list_objects_v2(Bucket="raw")["Contents"]
        assert [(o["Key"], o["Size"]) for o in listed] == [("k", size)]
    sb.put_object(Bucket="raw", Key="gone", Body=body(50 * KIB, "gone"))
    sa.delete_object(Bucket="raw", Key="gone")
    with pytest.raises(ClientError) as e:
        sb.head_object(Bucket="raw", Key="gone")
    assert code_of(e.value) == 404
    assert [o["Key"] for o in sb.list_objects_v2(Bucket="raw")["Contents"]] == ["k"]
    # a first start on PostgreSQL is no unclean stop: neither node swept (the database told them it was new)
    assert "orphan sweep" not in a.log() and "orphan sweep" not in b.log()
    # both nodes put their blobs in the one shared dir, none in their data dirs
    assert not (a.data_dir / "blobs").exists() and not (b.data_dir / "blobs").exists()
    # every blob bears a writer tag claimed in the metadata, by one node only, and both nodes wrote
    tags_a, tags_b = claimed_tags(uri, "node-a"), claimed_tags(uri, "node-b")
    assert tags_a and tags_b and not tags_a & tags_b
    written = {blob[-8:] for blob in shared_files(blob_dir)}
    assert written <= tags_a | tags_b and written & tags_a and written & tags_b, (written, tags_a, tags_b)


def test_a_peer_added_on_one_works_on_the_other_and_a_revoke_on_one_is_refused_by_the_other(pair) -> None:
    a, b, *_ = pair
    for adder, other in ((a, b), (b, a)):
        peer = cli_json(adder, "peer", "add", f"p-{adder.port}")
        as_peer = boto3.client(
            "s3",
            endpoint_url=other.endpoint,
            aws_access_key_id=peer["peer_id"],
            aws_secret_access_key=peer["token"],
            region_name="us-east-1",
            config=Config(retries={"total_max_attempts": 1}),
        )
        assert "Buckets" in as_peer.list_buckets()
        r = adder.cli("peer", "revoke", peer["peer_id"])
        assert r.returncode == 0, r.stderr
        with pytest.raises(ClientError) as e:
            as_peer.list_buckets()
        assert code_of(e.value) == 403


def test_a_quota_storm_over_both_nodes_admits_exactly_what_fits(pair) -> None:
    a, b, *_ = pair
    a.client().create_bucket(Bucket="storm")
    r = b.cli("bucket", "quota", "set", "storm", "1000000")
    assert r.returncode == 0, r.stderr
    size, attempts = 100_000, 24  # ten fit exactly

    def put(i: int) -> str:
        c = (a, b)[i % 2].client()
        try:
            c.put_object(Bucket="storm", Key=f"o{i}", Body=body(size, f"s{i}")[:size])
            return "ok"
        except ClientError as e:
            return e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(put, range(attempts)))
    assert results.count("ok") == 10, results
    assert set(results) == {"ok", "QuotaExceeded"}, results
    for c in (a, b):
        usage = cli_json(c, "bucket", "usage", "storm")
        assert (usage["used"], usage["objects"], usage["quota"]) == (10 * size, 10, 1_000_000), usage
        verify = cli_json(c, "storage", "verify")
        assert verify["ok"], verify


# ---- SIGKILL one node in the middle of uploads -----------------------------------------------------


def held(hold: Path) -> dict[str, int]:
    """blob id -> pid of the worker holding it sealed and uncommitted."""
    out = {}
    for p in hold.glob("held-*"):
        _, pid, blob = p.name.split("-")
        out[blob] = int(pid)
    return out


def shared_files(blob_dir: Path) -> set[str]:
    return {p.name for p in blob_dir.glob("[0-9a-f][0-9a-f]/*")}


def named_and_queued(uri: str) -> tuple[set[str], set[str]]:
    """The blobs the metadata names, and those queued as freed, in one snapshot."""
    meta = open_meta(Path("/nonexistent"), MetaConfig(uri), serving=False)

    async def read() -> tuple[set[str], set[str]]:
        return await meta.read(lambda r: (r.referenced_blobs(), set(r.freed_before(math.inf, None))), snapshot=True)

    try:
        return asyncio.run(read())
    finally:
        meta.close()


def claimed_tags(uri: str, node: str) -> set[str]:
    meta = open_meta(Path("/nonexistent"), MetaConfig(uri), serving=False)
    try:
        return set(asyncio.run(meta.read(lambda r: r.writer_tags(node))))
    finally:
        meta.close()


def sigkill_tree(c: Coordinator) -> None:
    for pid in reversed(descendants(c.proc.pid)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    c.proc.wait()


def get(c: Coordinator, key: str) -> tuple[int, bytes]:
    return get_from(c, f"crash/{key}")


def test_sigkill_one_node_mid_upload_the_other_serves_and_the_restart_sweeps_only_its_own(tmp_path: Path) -> None:
    uri, blob_dir, token = database(), tmp_path / "shared-blobs", secrets.token_urlsafe(24)
    hold_a, hold_b = tmp_path / "hold-a", tmp_path / "hold-b"
    for h in (hold_a, hold_b):
        h.mkdir()
        (h / "release").write_bytes(b"")  # nobody holds until a test removes it
    a = start_node(tmp_path, uri, blob_dir, "node-a", token, hold_a)
    b = start_node(tmp_path, uri, blob_dir, "node-b", token, hold_b)
    b_held_sock = None
    try:
        a.client().create_bucket(Bucket="crash")
        # uploads through both at once, acknowledged
        objects = {f"k{i}": body(40 * KIB + i * 997, f"k{i}") for i in range(24)}

        def put(key: str) -> str:
            c = (a, b)[int(key[1:]) % 2]
            c.client().put_object(Bucket="crash", Key=key, Body=objects[key])
            return key

        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            acked = set(pool.map(put, objects))
        assert acked == set(objects)

        # A: uploads in the middle: two sealed and not committed, one still streaming its body
        (hold_a / "release").unlink()
        a_socks = [started_put(a, f"crash/a-held-{i}", 50 * KIB, body(50 * KIB, "ah")[: 50 * KIB]) for i in range(2)]
        wait_until("both blobs of A held sealed", lambda: len(held(hold_a)) == 2)
        a_socks.append(started_put(a, "crash/a-streaming", 400 * KIB, b"s" * (100 * KIB)))
        a_tmp = blob_dir / "tmp" / "node-a"
        wait_until("A's temporary of the streaming upload", lambda: any(p.is_file() for p in a_tmp.glob("*/*")))
        # B: one sealed and not committed while A dies and restarts: it must survive A's sweep
        (hold_b / "release").unlink()
        b_data = body(60 * KIB, "b-held")[: 60 * KIB]
        b_held_sock = started_put(b, "crash/b-held", len(b_data), b_data)
        wait_until("a blob of B held sealed", lambda: len(held(hold_b)) == 1)
        (b_blob,) = held(hold_b)
        a_blobs = set(held(hold_a))

        sigkill_tree(a)
        for s in a_socks:
            s.close()
        # the survivor serves every acknowledged object, byte for byte (and HEAD/list agree)
        sb = b.client()
        for key, data in objects.items():
            assert get(b, key) == (200, data), key
        listed = {o["Key"]: o["Size"] for o in sb.list_objects_v2(Bucket="crash")["Contents"]}
        assert listed == {k: len(v) for k, v in objects.items()}
        assert b_blob in shared_files(blob_dir) and a_blobs <= shared_files(blob_dir)

        a = start_node(tmp_path, uri, blob_dir, "node-a", token, hold_a)
        a.wait_for_log(r"orphan sweep finished")
        after = shared_files(blob_dir)
        # B's in-flight blob is untouched (a full scan would take it: no commit names it yet)
        assert b_blob in after
        # A's own leftovers are gone: its sealed-uncommitted blobs and its dead workers' temporaries
        assert not a_blobs & after, a_blobs & after
        swept = a.wait_for_log(r"orphan sweep: removed (\d+) orphan blobs of this node's earlier writers")
        assert int(swept.group(1)) == len(a_blobs)
        assert not [p for p in a_tmp.glob("*/*") if p.is_file()]
        # released, B's PUT commits and reads back through A
        (hold_b / "release").write_bytes(b"")
        (hold_a / "release").write_bytes(b"")
        assert response_status(b_held_sock) == 200
        assert get(a, "b-held") == (200, b_data)
        for key, data in objects.items():
            assert get(a, key) == (200, data), key

        # once both are idle: no named blob is missing, and every unnamed one is queued (then reaped)
        def consistent() -> bool:
            files = shared_files(blob_dir)
            named, _queued = named_and_queued(uri)
            assert not named - files, f"blobs named by the metadata are gone: {sorted(named - files)[:5]}"
            return not files - named

        wait_until("no unnamed blob left in the shared dir", consistent)
        for c in (a, b):
            assert cli_json(c, "storage", "verify")["ok"]
    finally:
        for h in (hold_a, hold_b):
            (h / "release").write_bytes(b"")
        if b_held_sock is not None:
            b_held_sock.close()
        a.stop()
        b.stop()


def test_a_second_coordinator_given_a_node_id_already_held_refuses_to_start(tmp_path: Path) -> None:
    """From the data-safety review: two coordinators with one node id (the default is the host name and
    port: two containers with one fixed hostname) would each sweep the other's blobs and temporaries as
    their own. The first data dir to claim a node id holds it; another is refused at start-up."""
    uri, blob_dir, token = database(), tmp_path / "shared-blobs", secrets.token_urlsafe(24)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = start_node(tmp_path / "a", uri, blob_dir, "node-x", token)
    try:
        with pytest.raises(RuntimeError, match="coordinator exited with 2") as e:
            start_node(tmp_path / "b", uri, blob_dir, "node-x", token)
        assert "node id 'node-x' belongs to another coordinator's data dir" in str(e.value), str(e.value)[-2000:]
        # the first one, untouched, still serves; and restarts under its own id
        a.stop()
        a = start_node(tmp_path / "a", uri, blob_dir, "node-x", token)
        s3 = boto3.client(
            "s3",
            endpoint_url=a.endpoint,
            aws_access_key_id="admin",
            aws_secret_access_key=token,
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="still-here")
    finally:
        a.stop()


def test_storage_status_lists_every_node_live_at_its_address(pair) -> None:
    a, b, *_ = pair
    for c, me in ((a, "node-a"), (b, "node-b")):
        d = cli_json(c, "storage", "status")
        assert d["node"] == me
        nodes = {n["node"]: n for n in d["nodes"]}
        assert set(nodes) == {"node-a", "node-b"}, nodes
        for n, owner in ((nodes["node-a"], a), (nodes["node-b"], b)):
            assert n["live"] and n["listen"] == f"127.0.0.1:{owner.s3_port}", n
            assert n["started"] and n["last_seen"] and 0 <= n["silent_for"] < 60, n
        text = c.cli("storage", "status")
        assert text.returncode == 0, text.stderr
        assert f"node {me} (this one): live, at 127.0.0.1:{c.s3_port}" in text.stdout, text.stdout


def signal_tree(c: Coordinator, sig: signal.Signals) -> None:
    for pid in descendants(c.proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_a_node_silent_past_the_timeout_is_taken_over_and_its_held_write_is_refused_when_it_wakes(
    tmp_path: Path,
) -> None:
    """Node A stalls (SIGSTOP: no heartbeat) with a blob sealed and not yet committed. Node B takes A over
    once A has been silent for s3.node_timeout: it retires A's writer tags and deletes that blob, an orphan
    as far as B can tell, and A's temporaries. When A wakes, the commit naming the deleted blob must be
    refused (retired tag), never acknowledged; A's worker gives way to a new one, and A serves again."""
    uri, blob_dir, token = database(), tmp_path / "shared-blobs", secrets.token_urlsafe(24)
    hold = tmp_path / "hold-a"
    hold.mkdir()
    (hold / "release").write_bytes(b"")  # nothing held until the test removes it
    quick = "  heartbeat_interval: 0.25\n  node_timeout: 4\n"
    a = start_node(tmp_path, uri, blob_dir, "node-a", token, hold, more=quick)
    b = start_node(tmp_path, uri, blob_dir, "node-b", token, more=quick)
    sock = None
    try:
        a.client().create_bucket(Bucket="stall")
        kept = body(70 * KIB, "kept")[: 70 * KIB]
        a.client().put_object(Bucket="stall", Key="kept", Body=kept)
        (hold / "release").unlink()
        data = body(50 * KIB, "held")[: 50 * KIB]
        sock = started_put(a, "stall/held", len(data), data)
        wait_until("A's blob held sealed", lambda: len(held(hold)) == 1)
        (blob,) = held(hold)
        a_tmp = blob_dir / "tmp" / "node-a"
        assert blob in shared_files(blob_dir) and a_tmp.is_dir()

        signal_tree(a, signal.SIGSTOP)
        b.wait_for_log(
            r"takeover: node node-a silent for more than 4 s: retired its \d+ writer tags, "
            r"removed 1 orphan blobs"
        )
        assert blob not in shared_files(blob_dir)
        assert not a_tmp.exists()
        status = {n["node"]: n["live"] for n in cli_json(b, "storage", "status")["nodes"]}
        assert status == {"node-a": False, "node-b": True}, status

        signal_tree(a, signal.SIGCONT)
        (hold / "release").write_bytes(b"")
        # the commit is refused (503), or the worker, stopping for its retired tag, ends the connection
        assert response_status(sock) in (503, None)
        a.wait_for_log(r"writer tag was retired by another coordinator")
        a.wait_for_log(r"a worker exited with code 4; starting a new one")
        wait_until("A's new workers listen", lambda: _serves(a))
        sa = a.client()
        with pytest.raises(ClientError) as e:
            sa.head_object(Bucket="stall", Key="held")
        assert code_of(e.value) == 404
        # A serves again with new writers: writes through it and reads through both
        fresh = body(80 * KIB, "fresh")[: 80 * KIB]
        wait_until("A takes writes again", lambda: _put_ok(sa, "fresh", fresh))
        for c in (a, b):
            assert get_from(c, "stall/fresh") == (200, fresh)
            assert get_from(c, "stall/kept") == (200, kept)
        wait_until(
            "A live again",
            lambda: (
                {n["node"]: n["live"] for n in cli_json(b, "storage", "status")["nodes"]}
                == {"node-a": True, "node-b": True}
            ),
        )
        named, _ = named_and_queued(uri)
        assert named <= shared_files(blob_dir), named - shared_files(blob_dir)
    finally:
        with contextlib.suppress(Exception):
            signal_tree(a, signal.SIGCONT)
        (hold / "release").write_bytes(b"")
        if sock is not None:
            sock.close()
        a.stop()
        b.stop()


def _put_ok(s3, key: str, data: bytes) -> bool:
    try:
        s3.put_object(Bucket="stall", Key=key, Body=data)
        return True
    except ClientError as e:
        assert code_of(e) == 503, e.response  # only while the retired worker gives way
        return False


def _serves(c: Coordinator) -> bool:
    try:
        return get_from(c, "stall/kept")[0] == 200
    except ConnectionError:  # between the retired workers and their successors, nobody listens
        return False


def get_from(c: Coordinator, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
    try:
        auth = "Basic " + base64.b64encode(f"admin:{c.token}".encode()).decode()
        conn.request("GET", f"/s3/{path}", headers={"Authorization": auth})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()
