"""The `tunnelmesh` command line, run as the real installed executable against real coordinators:
every management command, the three ways of connecting, one-line errors, a restart, disaster
recovery from `system backup`, and refusal of tampered or truncated archives.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, free_port, start_coordinator, tunnelmesh_exe, wait_for_port

REGION = "us-east-1"


# ---- helpers -----------------------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
    env.update(extra)
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([tunnelmesh_exe(), *args], capture_output=True, text=True, timeout=60, env=env or base_env())


def conn(c: Coordinator, token: str | None = None) -> list[str]:
    return ["--endpoint", f"http://127.0.0.1:{c.port}", "--token", token or c.token]


def tm(c: Coordinator, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    return c.cli(*args, token=token, timeout=60)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert "Traceback" not in res.stderr
    return res.stdout


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    """A failed command: non-zero exit, exactly one line on stderr, no traceback."""
    assert res.returncode != 0, f"expected a failure\nstdout: {res.stdout}\nstderr: {res.stderr}"
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("tunnelmesh: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def tm_json(c: Coordinator, *args: str, token: str | None = None):
    return json.loads(ok(tm(c, *args, "--json", token=token)))


def new_name(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def peer_client(c: Coordinator, peer: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        aws_access_key_id=peer["peer_id"],
        aws_secret_access_key=peer["token"],
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


def add_peer(c: Coordinator, name: str, admin: bool = False) -> dict[str, str]:
    return tm_json(c, "peer", "add", name, *(["--admin"] if admin else []))


def assert_peer_authenticates(c: Coordinator, peer: dict[str, str]) -> None:
    """SigV4 (boto3), Basic and Bearer all accepted for this peer."""
    assert "Buckets" in peer_client(c, peer).list_buckets()
    assert requests.get(f"{c.endpoint}/", auth=(peer["peer_id"], peer["token"])).status_code == 200
    assert requests.get(f"{c.endpoint}/", headers={"Authorization": f"Bearer {peer['token']}"}).status_code == 200


def assert_peer_refused(c: Coordinator, peer: dict[str, str]) -> None:
    with pytest.raises(ClientError):
        peer_client(c, peer).list_buckets()
    assert requests.get(f"{c.endpoint}/", auth=(peer["peer_id"], peer["token"])).status_code == 403
    assert requests.get(f"{c.endpoint}/", headers={"Authorization": f"Bearer {peer['token']}"}).status_code == 403


def run_parallel(calls: list[tuple[str, ...]], prefix: list[str] | None = None) -> list[subprocess.CompletedProcess]:
    """Run several independent CLI commands at once (they are separate processes anyway)."""
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda args: run(*args, *(prefix or [])), calls))


def state_snapshot(c: Coordinator) -> dict[str, object]:
    """What `peer list --json`, `network show --json` and `share list --json` print."""
    what = ("peers", "network", "shares")
    calls = [("peer", "list", "--json"), ("network", "show", "--json"), ("share", "list", "--json")]
    results = run_parallel(calls, conn(c))
    return {w: json.loads(ok(r)) for w, r in zip(what, results, strict=True)}


def api_snapshot(c: Coordinator) -> dict[str, object]:
    """The same state read straight from the admin API (cheap enough to check after every step)."""
    base, auth = f"http://127.0.0.1:{c.port}/api", ("admin", c.token)
    return {w: requests.get(f"{base}/{w}", auth=auth).json() for w in ("peers", "network", "shares")}


def api(c: Coordinator, method: str, path: str, doc: dict) -> None:
    r = requests.request(method, f"http://127.0.0.1:{c.port}/api/{path}", json=doc, auth=("admin", c.token))
    assert r.status_code in (200, 201), r.text


def populate(c: Coordinator) -> dict[str, dict[str, str]]:
    """Peers added with the CLI (one admin, one revoked); network, a bucket and two shares set up."""
    names = [("alice", False), ("ops", True), ("gone", False)]
    results = run_parallel([("peer", "add", n, "--json", *(["--admin"] if a else [])) for n, a in names], conn(c))
    peers = {n: json.loads(ok(r)) for (n, _), r in zip(names, results, strict=True)}
    ok(tm(c, "peer", "revoke", peers["gone"]["peer_id"]))
    for key, value in [
        ("mesh_name", "home-mesh"),
        ("cidr", "10.42.0.0/16"),
        ("coordinator_ip", "10.42.0.1"),
        ("dns_name", "coord.mesh"),
        ("extra.region", "eu-west"),
    ]:
        api(c, "PUT", "network", {"key": key, "value": value})
    api(c, "POST", "buckets", {"name": "media"})
    share = {"name": "photos", "bucket": "media", "path": "photos/2024", "peers": [peers["alice"]["peer_id"]]}
    api(c, "POST", "shares", share)
    api(c, "POST", "shares", {"name": "music", "bucket": "media", "read_only": True})
    return peers


# ---- bucket --------------------------------------------------------------------------------------


def test_bucket_create_list_and_delete(coordinator) -> None:
    name = new_name("bk")
    assert name in ok(tm(coordinator, "bucket", "create", name))
    assert name in [b["Name"] for b in coordinator.client().list_buckets()["Buckets"]]

    table = ok(tm(coordinator, "bucket", "list"))
    header, *rows = table.splitlines()
    assert header.split() == ["NAME", "OWNER", "OBJECTS", "USED", "QUOTA"]
    assert any(row.split()[:3] == [name, "admin", "0"] for row in rows), table

    coordinator.client().put_object(Bucket=name, Key="k", Body=b"x" * 1234)
    listed = {b["name"]: b for b in tm_json(coordinator, "bucket", "list")["buckets"]}
    assert listed[name]["objects"] == 1 and listed[name]["used"] == 1234 and listed[name]["owner"] == "admin"
    assert "_tunnelmesh" in listed

    coordinator.client().delete_object(Bucket=name, Key="k")
    assert name in ok(tm(coordinator, "bucket", "delete", name))
    assert name not in [b["Name"] for b in coordinator.client().list_buckets()["Buckets"]]
    assert name not in {b["name"] for b in tm_json(coordinator, "bucket", "list")["buckets"]}


def test_bucket_delete_refuses_a_non_empty_bucket_without_force_and_empties_it_with_force(coordinator) -> None:
    name = new_name("bk")
    ok(tm(coordinator, "bucket", "create", name))
    s3 = coordinator.client()
    s3.put_object(Bucket=name, Key="a", Body=b"a")
    s3.put_object(Bucket=name, Key="dir/b", Body=b"b")
    s3.create_multipart_upload(Bucket=name, Key="pending")

    one_line_error(tm(coordinator, "bucket", "delete", name), "BucketNotEmpty")
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]) == ["a", "dir/b"]

    ok(tm(coordinator, "bucket", "delete", name, "--force"))
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("bucket", "create", "ab"), "InvalidBucketName"),
        (("bucket", "create", "Upper_Case"), "InvalidBucketName"),
        (("bucket", "create", "_tunnelmesh"), "AccessDenied"),
        (("bucket", "delete", "_tunnelmesh"), "AccessDenied"),
        (("bucket", "delete", "_tunnelmesh", "--force"), "AccessDenied"),
        (("bucket", "delete", "no-such-bucket-here"), "NoSuchBucket"),
    ],
)
def test_bucket_command_errors_are_one_line(coordinator, args, needle) -> None:
    one_line_error(tm(coordinator, *args), needle)
    assert "_tunnelmesh" in [b["Name"] for b in coordinator.client().list_buckets()["Buckets"]]


def test_creating_an_existing_bucket_fails_with_one_line(coordinator) -> None:
    name = new_name("bk")
    ok(tm(coordinator, "bucket", "create", name))
    one_line_error(tm(coordinator, "bucket", "create", name), "BucketAlready")


# ---- peer ----------------------------------------------------------------------------------------


def test_peer_add_json_is_exactly_peer_id_and_token_and_the_token_authenticates(coordinator) -> None:
    out = ok(tm(coordinator, "peer", "add", "json-peer", "--json"))
    doc = json.loads(out)
    assert set(doc) == {"peer_id", "token"}
    assert isinstance(doc["peer_id"], str) and isinstance(doc["token"], str) and len(doc["token"]) >= 16
    assert_peer_authenticates(coordinator, doc)
    listed = {p["id"]: p for p in tm_json(coordinator, "peer", "list")["peers"]}
    assert listed[doc["peer_id"]]["name"] == "json-peer" and listed[doc["peer_id"]]["role"] == "peer"


def test_peer_add_prints_the_id_and_token_once_in_text_form(coordinator) -> None:
    out = ok(tm(coordinator, "peer", "add", "text-peer"))
    fields = dict(line.split(":", 1) for line in out.splitlines()[:2])
    peer = {"peer_id": fields["peer id"].strip(), "token": fields["token"].strip()}
    assert peer["peer_id"].startswith("peer-")
    assert_peer_authenticates(coordinator, peer)


def test_peer_add_admin_makes_an_admin_peer(coordinator) -> None:
    admin = add_peer(coordinator, "admin-peer", admin=True)
    listed = {p["id"]: p for p in tm_json(coordinator, "peer", "list")["peers"]}
    assert listed[admin["peer_id"]]["role"] == "admin"
    # it can run admin commands itself
    assert admin["peer_id"] in ok(tm(coordinator, "peer", "list", token=admin["token"]))


def test_peer_add_with_an_empty_name_fails_with_one_line(coordinator) -> None:
    one_line_error(tm(coordinator, "peer", "add", "   "), "InvalidArgument")


def test_peer_list_never_prints_tokens(coordinator) -> None:
    peers = [add_peer(coordinator, f"secretive-{i}", admin=i == 0) for i in range(3)]
    table = ok(tm(coordinator, "peer", "list"))
    as_json = ok(tm(coordinator, "peer", "list", "--json"))
    header = table.splitlines()[0]
    assert header.split() == ["ID", "NAME", "ROLE", "CREATED", "REVOKED"]
    for p in peers:
        assert p["peer_id"] in table and p["peer_id"] in as_json
        assert p["token"] not in table
        assert p["token"] not in as_json
    assert coordinator.token not in table and coordinator.token not in as_json
    for record in json.loads(as_json)["peers"]:
        assert "token" not in record
        assert set(record) == {"id", "name", "role", "created", "revoked"}


def test_peer_revoke_marks_the_peer_revoked_and_it_stops_authenticating(coordinator) -> None:
    p = add_peer(coordinator, "to-revoke")
    assert_peer_authenticates(coordinator, p)
    assert p["peer_id"] in ok(tm(coordinator, "peer", "revoke", p["peer_id"]))
    assert_peer_refused(coordinator, p)
    listed = {x["id"]: x for x in tm_json(coordinator, "peer", "list")["peers"]}
    assert listed[p["peer_id"]]["revoked"]
    row = next(line for line in ok(tm(coordinator, "peer", "list")).splitlines() if p["peer_id"] in line)
    assert row.split()[-1] != "-"


def test_peer_revoke_of_an_unknown_peer_fails_with_one_line(coordinator) -> None:
    before = api_snapshot(coordinator)
    one_line_error(tm(coordinator, "peer", "revoke", "peer-doesnotexist"), "NoSuchPeer")
    assert api_snapshot(coordinator) == before


# ---- object --------------------------------------------------------------------------------------


def test_object_put_and_get_round_trip_exact_bytes(coordinator, tmp_path) -> None:
    name = new_name("ob")
    ok(tm(coordinator, "bucket", "create", name))
    payload = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    out = ok(tm(coordinator, "object", "put", f"{name}/deep/dir/file name é.bin", str(src)))
    assert str(len(payload)) in out
    assert coordinator.client().get_object(Bucket=name, Key="deep/dir/file name é.bin")["Body"].read() == payload

    dst = tmp_path / "dst.bin"
    ok(tm(coordinator, "object", "get", f"{name}/deep/dir/file name é.bin", str(dst)))
    assert dst.read_bytes() == payload
    assert not list(tmp_path.glob(".*.part"))

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    ok(tm(coordinator, "object", "put", f"{name}/empty", str(empty)))
    assert coordinator.client().head_object(Bucket=name, Key="empty")["ContentLength"] == 0
    got = tmp_path / "got-empty"
    ok(tm(coordinator, "object", "get", f"{name}/empty", str(got)))
    assert got.read_bytes() == b""


def test_object_list_with_and_without_prefix(coordinator, tmp_path) -> None:
    name = new_name("ob")
    ok(tm(coordinator, "bucket", "create", name))
    s3 = coordinator.client()
    for key, size in [("a.txt", 1), ("logs/2024/x.log", 22), ("logs/2025/y.log", 333)]:
        s3.put_object(Bucket=name, Key=key, Body=b"z" * size)

    table = ok(tm(coordinator, "object", "list", name))
    header, *rows = table.splitlines()
    assert header.split() == ["KEY", "SIZE", "LAST", "MODIFIED"]
    assert [r.split()[:2] for r in rows] == [["a.txt", "1"], ["logs/2024/x.log", "22"], ["logs/2025/y.log", "333"]]

    prefixed = ok(tm(coordinator, "object", "list", name, "--prefix", "logs/"))
    assert [r.split()[0] for r in prefixed.splitlines()[1:]] == ["logs/2024/x.log", "logs/2025/y.log"]

    doc = json.loads(ok(tm(coordinator, "object", "list", name, "--prefix", "logs/2025", "--json")))
    assert [(o["key"], o["size"]) for o in doc["objects"]] == [("logs/2025/y.log", 333)]
    assert doc["objects"][0]["last_modified"]

    assert json.loads(ok(tm(coordinator, "object", "list", name, "--prefix", "nothing/", "--json"))) == {"objects": []}


def test_object_list_follows_continuation_past_one_page(coordinator) -> None:
    name = new_name("ob")
    ok(tm(coordinator, "bucket", "create", name))
    s3 = coordinator.client()
    keys = [f"k{i:05d}" for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=b""), keys))
    doc = json.loads(ok(tm(coordinator, "object", "list", name, "--json")))
    assert [o["key"] for o in doc["objects"]] == keys


def test_object_delete_removes_the_object(coordinator, tmp_path) -> None:
    name = new_name("ob")
    ok(tm(coordinator, "bucket", "create", name))
    s3 = coordinator.client()
    s3.put_object(Bucket=name, Key="keep", Body=b"1")
    s3.put_object(Bucket=name, Key="drop/me", Body=b"2")
    assert "drop/me" in ok(tm(coordinator, "object", "delete", f"{name}/drop/me"))
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]] == ["keep"]
    assert [r.split()[0] for r in ok(tm(coordinator, "object", "list", name)).splitlines()[1:]] == ["keep"]


def test_object_command_errors_are_one_line_and_leave_no_file(coordinator, tmp_path) -> None:
    name = new_name("ob")
    ok(tm(coordinator, "bucket", "create", name))
    f = tmp_path / "f"
    f.write_bytes(b"data")
    dst = tmp_path / "never"
    one_line_error(tm(coordinator, "object", "get", f"{name}/missing", str(dst)), "NoSuchKey")
    assert not dst.exists()
    assert not list(tmp_path.glob(".*.part"))
    one_line_error(tm(coordinator, "object", "put", "no-such-bucket-zz/k", str(f)), "NoSuchBucket")
    one_line_error(tm(coordinator, "object", "put", name, str(f)), "BUCKET/KEY")
    one_line_error(tm(coordinator, "object", "list", "no-such-bucket-zz"), "NoSuchBucket")
    one_line_error(tm(coordinator, "object", "put", "_tunnelmesh/peers/evil.json", str(f)), "AccessDenied")
    # an existing object, but nowhere to write it
    coordinator.client().put_object(Bucket=name, Key="k", Body=b"k")
    one_line_error(tm(coordinator, "object", "get", f"{name}/k", str(tmp_path / "no" / "such" / "file")))


# ---- network -------------------------------------------------------------------------------------


def test_network_set_and_show(coordinator) -> None:
    ok(tm(coordinator, "network", "set", "mesh_name", "office"))
    ok(tm(coordinator, "network", "set", "cidr", "10.9.8.7/24"))
    ok(tm(coordinator, "network", "set", "coordinator_ip", "10.9.8.1"))
    ok(tm(coordinator, "network", "set", "dns_name", "hub.office"))
    assert "extra.site = berlin" in ok(tm(coordinator, "network", "set", "extra.site", "berlin"))
    ok(tm(coordinator, "network", "set", "default_bucket_access", "read"))
    bad = tm(coordinator, "network", "set", "default_bucket_access", "everything")
    assert bad.returncode != 0 and "read-write, read, none" in bad.stderr + bad.stdout
    doc = tm_json(coordinator, "network", "show")
    assert doc == {
        "mesh_name": "office",
        "cidr": "10.9.8.0/24",  # normalised
        "coordinator_ip": "10.9.8.1",
        "dns_name": "hub.office",
        "default_bucket_access": "read",
        "default_public_access_block": None,  # unset: on
        "extra": {"site": "berlin"},
    }
    table = ok(tm(coordinator, "network", "show"))
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows["mesh_name"] == ["office"]
    assert rows["cidr"] == ["10.9.8.0/24"]
    assert rows["extra.site"] == ["berlin"]


def test_concurrent_network_sets_of_different_keys_all_take_effect(tmp_path) -> None:
    """Two operators (or a script) setting different keys at once must not undo each other's change.

    Driven through the admin API that `network set` calls, many at a time, so the overlap is certain."""
    c = start_coordinator(tmp_path)
    try:
        url, auth = f"http://127.0.0.1:{c.port}/api/network", ("admin", c.token)

        def set_key(i: int) -> int:
            return requests.put(url, json={"key": f"extra.k{i:02d}", "value": str(i)}, auth=auth).status_code

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(set_key, range(48))) == {200}
        extra = json.loads(ok(tm(c, "network", "show", "--json")))["extra"]
        assert extra == {f"k{i:02d}": str(i) for i in range(48)}, f"{48 - len(extra)} of 48 updates were lost"
    finally:
        c.stop()


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("cidr", "not-a-network", "cidr"),
        ("coordinator_ip", "999.1.1.1", "coordinator_ip"),
        ("colour", "blue", "colour"),
        ("extra.", "x", "InvalidArgument"),
    ],
)
def test_network_set_rejects_bad_keys_and_values_with_one_line(coordinator, key, value, needle) -> None:
    before = api_snapshot(coordinator)
    one_line_error(tm(coordinator, "network", "set", key, value), needle)
    assert api_snapshot(coordinator) == before


# ---- share ---------------------------------------------------------------------------------------


def test_share_add_list_and_remove(coordinator) -> None:
    bucket = new_name("sh")
    ok(tm(coordinator, "bucket", "create", bucket))
    p1, p2 = add_peer(coordinator, "nfs-1"), add_peer(coordinator, "nfs-2")
    ok(
        tm(
            coordinator, "share", "add", "docs-" + bucket[-6:], "--bucket", bucket, "--path", "/team/docs/",
            "--peer", p2["peer_id"], "--peer", p1["peer_id"], "--read-only",
        )
    )  # fmt: skip
    ok(tm(coordinator, "share", "add", "all-" + bucket[-6:], "--bucket", bucket))
    shares = {s["name"]: s for s in tm_json(coordinator, "share", "list")["shares"]}
    assert shares["docs-" + bucket[-6:]] == {
        "name": "docs-" + bucket[-6:],
        "bucket": bucket,
        "path": "team/docs",
        "peers": sorted([p1["peer_id"], p2["peer_id"]]),
        "read_only": True,
    }
    assert shares["all-" + bucket[-6:]] == {
        "name": "all-" + bucket[-6:],
        "bucket": bucket,
        "path": "",
        "peers": [],
        "read_only": False,
    }
    table = ok(tm(coordinator, "share", "list"))
    assert table.splitlines()[0].split() == ["NAME", "BUCKET", "PATH", "PEERS", "READ", "ONLY"]
    row = next(line.split() for line in table.splitlines() if line.startswith("all-" + bucket[-6:]))
    assert row == ["all-" + bucket[-6:], bucket, "/", "-", "no"]

    # adding again under the same name replaces it
    ok(tm(coordinator, "share", "add", "all-" + bucket[-6:], "--bucket", bucket, "--path", "x"))
    shares = {s["name"]: s for s in tm_json(coordinator, "share", "list")["shares"]}
    assert shares["all-" + bucket[-6:]]["path"] == "x"

    ok(tm(coordinator, "share", "remove", "docs-" + bucket[-6:]))
    names = [s["name"] for s in tm_json(coordinator, "share", "list")["shares"]]
    assert "docs-" + bucket[-6:] not in names and "all-" + bucket[-6:] in names


def test_share_errors_are_one_line_and_change_nothing(coordinator) -> None:
    before = api_snapshot(coordinator)
    one_line_error(tm(coordinator, "share", "add", "s1", "--bucket", "no-such-bucket-zz"), "NoSuchBucket")
    one_line_error(tm(coordinator, "share", "add", "bad/name", "--bucket", "_tunnelmesh"), "InvalidArgument")
    one_line_error(tm(coordinator, "share", "remove", "no-such-share"), "NoSuchShare")
    res = tm(coordinator, "share", "add", "s2")  # --bucket is required
    assert res.returncode != 0 and "Traceback" not in res.stderr and "--bucket" in res.stderr
    assert api_snapshot(coordinator) == before


# ---- system backup (read-only on the shared coordinator) ---------------------------------------


def test_system_backup_writes_a_private_tar_gz_with_a_manifest(coordinator, tmp_path) -> None:
    p = add_peer(coordinator, "in-backup")
    archive = tmp_path / "state.tar.gz"
    out = ok(tm(coordinator, "system", "backup", str(archive)))
    assert str(archive) in out
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert not list(tmp_path.glob(".*.part"))
    with tarfile.open(archive, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        keys = {e["key"] for e in manifest["objects"]}
        assert f"peers/{p['peer_id']}.json" in keys
        for e in manifest["objects"]:
            assert tar.getmember(e["member"]).size == e["size"]


def test_system_backup_to_an_unwritable_place_fails_with_one_line(coordinator, tmp_path) -> None:
    one_line_error(tm(coordinator, "system", "backup", str(tmp_path / "missing-dir" / "b.tar.gz")))


def test_system_restore_of_a_missing_file_fails_without_traceback(coordinator, tmp_path) -> None:
    res = tm(coordinator, "system", "restore", str(tmp_path / "nope.tar.gz"))
    assert res.returncode != 0 and "Traceback" not in res.stderr


# ---- connecting ----------------------------------------------------------------------------------


def test_connection_by_environment_variables(coordinator) -> None:
    env = base_env(TUNNELMESH_ENDPOINT=f"http://127.0.0.1:{coordinator.port}", TUNNELMESH_TOKEN=coordinator.token)
    name = new_name("env")
    ok(run("bucket", "create", name, env=env))
    assert name in {b["name"] for b in json.loads(ok(run("bucket", "list", "--json", env=env)))["buckets"]}
    p = json.loads(ok(run("peer", "add", "env-peer", "--json", env=env)))
    assert p["peer_id"] in ok(run("peer", "list", env=env))
    assert "mesh_name" in json.loads(ok(run("network", "show", "--json", env=env)))
    # flags win over the environment
    bad_env = dict(env, TUNNELMESH_TOKEN="wrong-token-wrong-token")
    one_line_error(run("peer", "list", env=bad_env), "AccessDenied")
    ok(run("peer", "list", "--token", coordinator.token, env=bad_env))


def test_connection_by_config_with_the_admin_token_in_the_environment(coordinator) -> None:
    env = base_env(TUNNELMESH_ADMIN_TOKEN=coordinator.token)
    name = new_name("cfg")
    ok(run("bucket", "create", name, "--config", str(coordinator.config_path), env=env))
    listed = json.loads(ok(run("bucket", "list", "--json", "--config", str(coordinator.config_path), env=env)))
    assert name in {b["name"] for b in listed["buckets"]}
    assert "peers" in json.loads(ok(run("peer", "list", "--json", "--config", str(coordinator.config_path), env=env)))


def test_connection_by_config_reads_the_generated_token_file(tmp_path) -> None:
    port, s3_port = free_port(), free_port()
    data = tmp_path / "data"
    cfg = tmp_path / "coordinator.yaml"
    cfg.write_text(f"listen: 127.0.0.1:{port}\nworkers: 1\ns3:\n  data_dir: {data}\n  listen: 127.0.0.1:{s3_port}\n")
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=base_env(),
    )
    try:
        wait_for_port(port, proc, log)
        wait_for_port(s3_port, proc, log)
        name = new_name("tok")
        ok(run("bucket", "create", name, "--config", str(cfg)))
        token = (data / "admin.token").read_text().strip()
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}/s3",
            aws_access_key_id="admin",
            aws_secret_access_key=token,
            region_name=REGION,
        )
        assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        p = json.loads(ok(run("peer", "add", "via-token-file", "--json", "--config", str(cfg))))
        assert p["peer_id"] in ok(run("peer", "list", "--config", str(cfg)))
        # without read access to the token file (and no env var) the CLI says so in one line
        (data / "admin.token").rename(data / "admin.token.moved")
        one_line_error(run("peer", "list", "--config", str(cfg)), "admin token")
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("peer", "list"), "--endpoint"),
        (("peer", "list", "--endpoint", "http://127.0.0.1:9"), "token"),
        (("peer", "list", "--config", "/nonexistent/coordinator.yaml"), "configuration"),
        (("peer", "list", "--endpoint", "not-a-url", "--token", "x" * 20), ""),
    ],
)
def test_missing_or_bad_connection_settings_fail_with_one_line(args, needle) -> None:
    one_line_error(run(*args), needle)


def test_unreachable_endpoint_fails_with_one_line_for_every_command(tmp_path) -> None:
    dead = ["--endpoint", f"http://127.0.0.1:{free_port()}", "--token", "t" * 32]
    f = tmp_path / "f"
    f.write_bytes(b"x")
    calls = [
        ("bucket", "list"),
        ("bucket", "create", "abc"),
        ("peer", "add", "x"),
        ("peer", "list"),
        ("peer", "revoke", "peer-x"),
        ("object", "put", "b/k", str(f)),
        ("object", "get", "b/k", str(tmp_path / "g")),
        ("object", "list", "b"),
        ("object", "delete", "b/k"),
        ("network", "show"),
        ("network", "set", "mesh_name", "x"),
        ("share", "list"),
        ("share", "remove", "x"),
        ("system", "backup", str(tmp_path / "b.tgz")),
        ("system", "restore", str(f)),
    ]
    for args, res in zip(calls, run_parallel(calls, dead), strict=True):
        assert "cannot reach" in one_line_error(res), args
    assert not (tmp_path / "g").exists() and not (tmp_path / "b.tgz").exists()


def test_wrong_token_fails_with_one_line_for_admin_and_object_commands(coordinator, tmp_path) -> None:
    bad = "not-the-token-" + "x" * 20
    one_line_error(tm(coordinator, "peer", "list", token=bad), "AccessDenied")
    one_line_error(tm(coordinator, "bucket", "create", new_name(), token=bad), "AccessDenied")
    one_line_error(tm(coordinator, "object", "list", "_tunnelmesh", token=bad), "AccessDenied")
    f = tmp_path / "f"
    f.write_bytes(b"x")
    one_line_error(tm(coordinator, "object", "put", "whatever/k", str(f), token=bad), "AccessDenied")


def test_endpoint_pointing_at_the_s3_listener_fails_with_one_line(coordinator) -> None:
    res = run("peer", "list", "--endpoint", coordinator.root_endpoint, "--token", coordinator.token)
    one_line_error(res)


# ---- restart, disaster recovery, tampered archives ---------------------------------------------


def test_everything_is_back_after_a_restart_and_peers_still_authenticate(tmp_path) -> None:
    c = start_coordinator(tmp_path)
    try:
        peers = populate(c)
        peer_client(c, peers["alice"]).put_object(Bucket="media", Key="photos/2024/a.jpg", Body=b"jpeg")
        before = state_snapshot(c)
    finally:
        c.stop()
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        assert state_snapshot(c2) == before
        assert_peer_authenticates(c2, peers["alice"])
        assert_peer_authenticates(c2, peers["ops"])
        assert_peer_refused(c2, peers["gone"])
        assert (
            peer_client(c2, peers["alice"]).get_object(Bucket="media", Key="photos/2024/a.jpg")["Body"].read()
            == b"jpeg"
        )
        # the admin peer still manages the coordinator after the restart
        assert peers["alice"]["peer_id"] in ok(tm(c2, "peer", "list", token=peers["ops"]["token"]))
    finally:
        c2.stop()


def test_disaster_recovery_from_a_backup_into_a_fresh_data_dir(tmp_path) -> None:
    archive = tmp_path / "backups" / "coordinator.tar.gz"
    archive.parent.mkdir()
    c = start_coordinator(tmp_path)
    try:
        peers = populate(c)
        before = state_snapshot(c)
        ok(tm(c, "system", "backup", str(archive)))
    finally:
        c.stop()
    shutil.rmtree(c.data_dir)
    assert not c.data_dir.exists()

    # a fresh coordinator at the same path, with a new bootstrap admin token
    c2 = start_coordinator(tmp_path, data_dir=c.data_dir)
    try:
        assert c2.token != c.token
        assert tm_json(c2, "peer", "list") == {"peers": []}
        assert_peer_refused(c2, peers["alice"])
        stray = add_peer(c2, "made-before-restore")

        out = ok(tm(c2, "system", "restore", str(archive)))
        assert "restored" in out

        after = state_snapshot(c2)
        assert after["network"] == before["network"]
        assert after["shares"] == before["shares"]
        assert after["peers"] == before["peers"]
        assert_peer_authenticates(c2, peers["alice"])
        assert_peer_authenticates(c2, peers["ops"])
        assert_peer_refused(c2, peers["gone"])
        # restore makes _tunnelmesh hold exactly the archive: a peer added in between is gone
        assert_peer_refused(c2, stray)
        # the restored admin peer manages the new coordinator
        assert "home-mesh" in ok(tm(c2, "network", "show", token=peers["ops"]["token"]))
        # and the restored peers can use the store again
        s3 = peer_client(c2, peers["alice"])
        s3.create_bucket(Bucket="media")
        s3.put_object(Bucket="media", Key="again", Body=b"ok")
        assert s3.get_object(Bucket="media", Key="again")["Body"].read() == b"ok"
    finally:
        c2.stop()
    # the restored state survives a restart of the recovered coordinator
    c3 = start_coordinator(tmp_path, token=c2.token, data_dir=c.data_dir)
    try:
        assert state_snapshot(c3) == before
        assert_peer_authenticates(c3, peers["alice"])
    finally:
        c3.stop()


def _read_archive(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        return [(m, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def _write_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            new = tarfile.TarInfo(info.name)
            new.size, new.mtime, new.mode = len(data), info.mtime, info.mode
            tar.addfile(new, io.BytesIO(data))


def _tampered_archives(good: Path, out: Path, alice_id: str) -> dict[str, Path]:
    members = _read_archive(good)
    manifest = json.loads(dict((m.name, d) for m, d in members)["manifest.json"])
    alice_member = next(e["member"] for e in manifest["objects"] if e["key"] == f"peers/{alice_id}.json")
    variants: dict[str, Path] = {}

    # 1. one byte of a stored peer record changed (still valid JSON, same size), rebuilt into a valid tar.gz
    edited = [(m, d.replace(b'"alice"', b'"alicf"') if m.name == alice_member else d) for m, d in members]
    assert edited != members
    variants["edited record"] = out / "edited.tar.gz"
    _write_archive(variants["edited record"], edited)

    # 2. bytes flipped in the middle of one stored object
    def flip(d: bytes) -> bytes:
        mid = len(d) // 2
        return d[:mid] + bytes(b ^ 0xFF for b in d[mid : mid + 4]) + d[mid + 4 :]

    variants["flipped bytes"] = out / "flipped.tar.gz"
    _write_archive(variants["flipped bytes"], [(m, flip(d) if m.name == alice_member else d) for m, d in members])

    # 3. the file cut short
    raw = good.read_bytes()
    variants["truncated"] = out / "truncated.tar.gz"
    variants["truncated"].write_bytes(raw[: len(raw) // 2])

    # 4. a valid gzip stream of a truncated tar
    variants["truncated tar inside gzip"] = out / "short-tar.tar.gz"
    variants["truncated tar inside gzip"].write_bytes(gzip.compress(gzip.decompress(raw)[:1536]))

    # 5. a stored object missing from the archive while the manifest lists it
    variants["missing member"] = out / "missing.tar.gz"
    _write_archive(variants["missing member"], [(m, d) for m, d in members if m.name != alice_member])

    # 6. an extra file the manifest does not list
    extra = tarfile.TarInfo("objects/999999")
    variants["unlisted member"] = out / "unlisted.tar.gz"
    _write_archive(variants["unlisted member"], [*members, (extra, b'{"id": "intruder"}')])

    # 7. not an archive at all, and an empty file
    variants["garbage"] = out / "garbage.tar.gz"
    variants["garbage"].write_bytes(b"this is not a tar.gz\n" * 10)
    variants["empty"] = out / "empty.tar.gz"
    variants["empty"].write_bytes(b"")
    return variants


def test_tampered_or_truncated_archives_are_refused_and_change_nothing(tmp_path) -> None:
    good = tmp_path / "good.tar.gz"
    c = start_coordinator(tmp_path)
    try:
        peers = populate(c)
        ok(tm(c, "system", "backup", str(good)))
        # move the state on after the backup, so a restore that went through would show
        later = add_peer(c, "added-after-backup")
        api(c, "PUT", "network", {"key": "mesh_name", "value": "renamed-after-backup"})
        requests.delete(f"http://127.0.0.1:{c.port}/api/shares/music", auth=("admin", c.token)).raise_for_status()
        api(c, "POST", "shares", {"name": "videos", "bucket": "media"})
        expected = api_snapshot(c)
        system_keys = sorted(o["Key"] for o in c.client().list_objects_v2(Bucket="_tunnelmesh").get("Contents", []))

        for what, path in _tampered_archives(good, tmp_path, peers["alice"]["peer_id"]).items():
            res = tm(c, "system", "restore", str(path))
            line = one_line_error(res, "InvalidArchive")
            assert "Nothing was changed" in line, (what, line)
            assert res.stdout == "", what
            assert api_snapshot(c) == expected, what
            assert (
                sorted(o["Key"] for o in c.client().list_objects_v2(Bucket="_tunnelmesh").get("Contents", []))
                == system_keys
            ), what
            assert_peer_authenticates(c, later)
            assert_peer_authenticates(c, peers["alice"])

        # the untouched archive still restores, which puts the backed-up state back
        ok(tm(c, "system", "restore", str(good)))
        restored = state_snapshot(c)
        assert restored == api_snapshot(c)
        assert restored != expected
        assert restored["network"]["mesh_name"] == "home-mesh"
        assert sorted(s["name"] for s in restored["shares"]["shares"]) == ["music", "photos"]
        assert_peer_refused(c, later)
        assert_peer_authenticates(c, peers["alice"])
    finally:
        c.stop()


def test_restore_by_a_non_admin_peer_is_refused_and_changes_nothing(tmp_path) -> None:
    good = tmp_path / "good.tar.gz"
    c = start_coordinator(tmp_path)
    try:
        peers = populate(c)
        ok(tm(c, "system", "backup", str(good)))
        later = add_peer(c, "added-after-backup")
        before = api_snapshot(c)
        refused = run_parallel(
            [("system", "restore", str(good)), ("system", "backup", str(tmp_path / "x.tgz"))],
            conn(c, peers["alice"]["token"]),
        )
        for res in refused:
            one_line_error(res, "AccessDenied")
        assert not (tmp_path / "x.tgz").exists()
        assert api_snapshot(c) == before
        assert_peer_authenticates(c, later)
    finally:
        c.stop()
