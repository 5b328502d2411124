"""Grants and groups (docs/access-control.md section 8, step 3), on real coordinators under
`network set default_bucket_access none`, checked with real boto3 calls: each allowance succeeds and each
refusal is a 403 AccessDenied.

- read, write and admin grants to a peer and to a group member; a prefix-limited (`team/`) write grant:
  writes inside allowed, outside refused; listings with `Prefix="team/"` allowed, any other AccessDenied;
- revocation: an ungrant applies at the next request, on both workers (told apart by the per-process
  prefix of `x-amz-request-id`), to a presigned URL made before it, and on a second coordinator of the same
  PostgreSQL database; a bucket deleted and re-created (by another peer) keeps none of the old grants;
- who manages grants: the bucket's owner with its own token, a bucket-admin grantee; not another peer
  (403 from the admin API); every other admin endpoint stays for mesh admins;
- the refusals of section 2.3, idempotent grants, NoSuchGrant, the group rules, and `bucket access`.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator
from support.peers import TestPeer as Peer
from support.peers import add_peer, cli_fails, cli_ok, s3_client


@dataclass
class Mesh:
    c: Coordinator
    admin: Any
    owner: Peer
    bob: Peer
    carol: Peer
    dave: Peer


def api(c: Coordinator, method: str, path: str, token: str, body: Any = None) -> requests.Response:
    return requests.request(
        method,
        f"http://127.0.0.1:{c.port}/api/{path}",
        json=body,
        headers={"authorization": f"Bearer {token}"},
        timeout=60,
    )


def denied(fn: Callable[[], Any]) -> None:
    """`fn` is refused with 403 AccessDenied."""
    with pytest.raises(ClientError) as e:
        fn()
    err = e.value.response
    assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (403, "AccessDenied"), err


def new_bucket(m: Mesh, owner: Peer | None = None) -> str:
    name = f"g-{uuid.uuid4().hex[:16]}"
    (owner or m.owner).s3.create_bucket(Bucket=name)
    (owner or m.owner).s3.put_object(Bucket=name, Key="team/a", Body=b"team-a")
    (owner or m.owner).s3.put_object(Bucket=name, Key="other/b", Body=b"other-b")
    return name


def grant(m: Mesh, bucket: str, *target: str, role: str, prefix: str | None = None, token: str | None = None) -> str:
    extra = ["--prefix", prefix] if prefix is not None else []
    return cli_ok(m.c, "bucket", "grant", bucket, *target, "--role", role, *extra, token=token or m.owner.token)


def read_ok(p: Peer, bucket: str, key: str = "team/a") -> bytes:
    return p.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    c = start_coordinator(tmp_path_factory.mktemp("grants"), workers=2)
    try:
        cli_ok(c, "network", "set", "default_bucket_access", "none")
        m = Mesh(c, c.client(), add_peer(c, "owner"), add_peer(c, "bob"), add_peer(c, "carol"), add_peer(c, "dave"))
        yield m
    finally:
        c.stop()


# ---- what each role allows ------------------------------------------------------------------------


def test_read_grant_to_a_peer(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    denied(lambda: read_ok(mesh.bob, b))  # default none: nothing before the grant
    out = grant(mesh, b, "--peer", mesh.bob.id, role="read")
    assert f"granted read on {b} to peer {mesh.bob.id}" in out
    assert read_ok(mesh.bob, b) == b"team-a"
    keys = [o["Key"] for o in mesh.bob.s3.list_objects_v2(Bucket=b)["Contents"]]
    assert keys == ["other/b", "team/a"]
    denied(lambda: mesh.bob.s3.put_object(Bucket=b, Key="team/new", Body=b"x"))
    denied(lambda: mesh.bob.s3.delete_object(Bucket=b, Key="team/a"))
    denied(lambda: read_ok(mesh.dave, b))  # the grant names bob only
    assert read_ok(mesh.owner, b) == b"team-a"


def test_write_grant_to_a_peer(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    grant(mesh, b, "--peer", mesh.bob.id, role="write")
    mesh.bob.s3.put_object(Bucket=b, Key="other/new", Body=b"new")
    assert read_ok(mesh.bob, b, "other/new") == b"new"
    mesh.bob.s3.delete_object(Bucket=b, Key="other/b")
    # write is not admin: no bucket configuration, no deleting the bucket
    denied(lambda: mesh.bob.s3.put_bucket_tagging(Bucket=b, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}))
    denied(lambda: mesh.bob.s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"}))
    denied(lambda: mesh.dave.s3.put_object(Bucket=b, Key="other/dave", Body=b"x"))


def test_admin_grant_to_a_peer(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    denied(lambda: mesh.bob.s3.put_bucket_tagging(Bucket=b, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}))
    grant(mesh, b, "--peer", mesh.bob.id, role="admin")
    mesh.bob.s3.put_bucket_tagging(Bucket=b, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]})
    mesh.bob.s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    assert mesh.owner.s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
    mesh.bob.s3.put_object(Bucket=b, Key="team/a", Body=b"v2")
    denied(lambda: mesh.bob.s3.delete_bucket(Bucket=b))  # the owner's alone
    # a bucket admin manages the bucket's grants too (grants are policy changes)
    grant(mesh, b, "--peer", mesh.dave.id, role="read", token=mesh.bob.token)
    assert read_ok(mesh.dave, b) == b"v2"


def test_grant_to_a_group_member(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    group = f"team-{uuid.uuid4().hex[:8]}"
    cli_ok(mesh.c, "group", "create", group)
    cli_ok(mesh.c, "group", "add", group, mesh.carol.id)
    grant(mesh, b, "--group", group, role="write")
    mesh.carol.s3.put_object(Bucket=b, Key="team/carol", Body=b"c")
    assert read_ok(mesh.carol, b, "team/carol") == b"c"
    denied(lambda: mesh.dave.s3.put_object(Bucket=b, Key="team/dave", Body=b"d"))
    denied(lambda: read_ok(mesh.dave, b))
    # out of the group: refused at the next request
    cli_ok(mesh.c, "group", "remove", group, mesh.carol.id)
    denied(lambda: read_ok(mesh.carol, b))
    # a deleted group's grants match nobody, even a member re-added to a new group of that name
    cli_ok(mesh.c, "group", "add", group, mesh.carol.id)
    assert read_ok(mesh.carol, b) == b"team-a"
    cli_ok(mesh.c, "group", "delete", group)
    denied(lambda: read_ok(mesh.carol, b))
    # a group of the same name made again is another group: the old grant is not its
    cli_ok(mesh.c, "group", "create", group)
    cli_ok(mesh.c, "group", "add", group, mesh.dave.id)
    cli_ok(mesh.c, "group", "add", group, mesh.carol.id)
    denied(lambda: read_ok(mesh.dave, b))
    denied(lambda: mesh.carol.s3.put_object(Bucket=b, Key="team/carol", Body=b"c"))
    grant(mesh, b, "--group", group, role="read")  # not "already granted": a new grant, to the new group
    assert read_ok(mesh.dave, b) == b"team-a"
    denied(lambda: mesh.dave.s3.put_object(Bucket=b, Key="team/dave", Body=b"d"))


def test_builtin_group_peers_is_every_peer(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    denied(lambda: read_ok(mesh.dave, b))
    grant(mesh, b, "--group", "peers", role="read")
    assert read_ok(mesh.dave, b) == b"team-a" and read_ok(mesh.carol, b) == b"team-a"
    denied(lambda: mesh.dave.s3.put_object(Bucket=b, Key="team/x", Body=b"x"))


# ---- a prefix-limited grant -----------------------------------------------------------------------


def test_prefix_limited_write_grant(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    grant(mesh, b, "--peer", mesh.bob.id, role="write", prefix="team/")
    mesh.bob.s3.put_object(Bucket=b, Key="team/bob", Body=b"bob")
    assert read_ok(mesh.bob, b, "team/bob") == b"bob"
    mesh.bob.s3.delete_object(Bucket=b, Key="team/bob")
    denied(lambda: mesh.bob.s3.put_object(Bucket=b, Key="other/bob", Body=b"x"))
    denied(lambda: mesh.bob.s3.put_object(Bucket=b, Key="teams", Body=b"x"))
    denied(lambda: read_ok(mesh.bob, b, "other/b"))
    denied(lambda: mesh.bob.s3.delete_object(Bucket=b, Key="other/b"))
    # listings: inside the prefix, the page; anything else refused, never a filtered page
    page = mesh.bob.s3.list_objects_v2(Bucket=b, Prefix="team/")
    assert [o["Key"] for o in page["Contents"]] == ["team/a"]
    assert [o["Key"] for o in mesh.bob.s3.list_objects(Bucket=b, Prefix="team/")["Contents"]] == ["team/a"]
    denied(lambda: mesh.bob.s3.list_objects_v2(Bucket=b))
    denied(lambda: mesh.bob.s3.list_objects_v2(Bucket=b, Prefix="other/"))
    denied(lambda: mesh.bob.s3.list_objects_v2(Bucket=b, Prefix="te"))
    mesh.bob.s3.get_bucket_location(Bucket=b)  # always, with a prefix grant
    denied(lambda: mesh.bob.s3.get_bucket_versioning(Bucket=b))  # bucket actions only without a prefix
    assert read_ok(mesh.owner, b, "other/b") == b"other-b"


# ---- revocation ------------------------------------------------------------------------------------


def test_ungrant_applies_at_the_next_request(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    grant(mesh, b, "--peer", mesh.bob.id, role="read")
    assert read_ok(mesh.bob, b) == b"team-a"
    out = cli_ok(mesh.c, "bucket", "ungrant", b, "--peer", mesh.bob.id, token=mesh.owner.token)
    assert f"removed read on {b} from peer {mesh.bob.id}" in out
    denied(lambda: read_ok(mesh.bob, b))
    cli_fails(mesh.c, "NoSuchGrant", "bucket", "ungrant", b, "--peer", mesh.bob.id, token=mesh.owner.token)


def _worker_of(response_meta: dict[str, Any]) -> str:
    rid = response_meta["RequestId"]
    assert len(rid) == 16, rid
    return rid[:8]  # s3/request.py: a random prefix per process, then a counter


def _until_both_workers(p: Peer, c: Coordinator, bucket: str, allowed: bool) -> set[str]:
    """GETs over fresh connections (a new client each) until two workers have answered; every answer is
    the one expected. Returns the workers seen."""
    seen: set[str] = set()
    for _ in range(300):
        fresh = s3_client(c.endpoint, p.id, p.token)
        if allowed:
            r = fresh.get_object(Bucket=bucket, Key="team/a")
            assert r["Body"].read() == b"team-a"
            seen.add(_worker_of(r["ResponseMetadata"]))
        else:
            with pytest.raises(ClientError) as e:
                fresh.get_object(Bucket=bucket, Key="team/a")
            err = e.value.response
            assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (403, "AccessDenied")
            seen.add(_worker_of(err["ResponseMetadata"]))
        if len(seen) == 2:
            return seen
    raise AssertionError(f"only workers {seen} answered 300 fresh connections")


def test_ungrant_reaches_both_workers(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    grant(mesh, b, "--peer", mesh.bob.id, role="read")
    # both workers compiled (and cached) the view that allows bob
    before = _until_both_workers(mesh.bob, mesh.c, b, allowed=True)
    cli_ok(mesh.c, "bucket", "ungrant", b, "--peer", mesh.bob.id, "--role", "read", token=mesh.owner.token)
    after = _until_both_workers(mesh.bob, mesh.c, b, allowed=False)
    assert before == after


def test_presigned_url_made_before_an_ungrant_is_refused_after_it(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    grant(mesh, b, "--peer", mesh.bob.id, role="read")
    url = mesh.bob.s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "team/a"}, ExpiresIn=3600)
    r = requests.get(url, timeout=60)
    assert (r.status_code, r.content) == (200, b"team-a")
    cli_ok(mesh.c, "bucket", "ungrant", b, "--peer", mesh.bob.id, token=mesh.owner.token)
    r = requests.get(url, timeout=60)
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, r.text


@pytest.mark.parametrize("delete_with", ["s3", "admin-api"])
def test_recreated_bucket_keeps_none_of_the_old_grants(mesh: Mesh, delete_with: str) -> None:
    b = new_bucket(mesh)
    grant(mesh, b, "--peer", mesh.bob.id, role="write")
    mesh.bob.s3.put_object(Bucket=b, Key="team/bob", Body=b"x")
    if delete_with == "s3":
        for key in ("team/a", "other/b", "team/bob"):
            mesh.owner.s3.delete_object(Bucket=b, Key=key)
        mesh.owner.s3.delete_bucket(Bucket=b)
    else:
        cli_ok(mesh.c, "bucket", "delete", b, "--force")
        # the admin API's delete forgets the access record too
        with pytest.raises(ClientError) as e:
            mesh.admin.get_object(Bucket="_tunnelmesh", Key=f"access/buckets/{b}.json")
        assert e.value.response["Error"]["Code"] == "NoSuchKey"
    mesh.dave.s3.create_bucket(Bucket=b)  # another peer takes the name
    denied(lambda: mesh.bob.s3.put_object(Bucket=b, Key="team/bob", Body=b"x"))
    denied(lambda: mesh.bob.s3.list_objects_v2(Bucket=b))
    access = json.loads(cli_ok(mesh.c, "bucket", "access", b, "--json", token=mesh.dave.token))
    assert access["owner"] == mesh.dave.id and access["grants"] == []


# ---- who manages grants ---------------------------------------------------------------------------


def test_the_owner_manages_grants_with_its_own_token_and_another_peer_may_not(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    body = {"peer": mesh.dave.id, "role": "write"}
    for who in (mesh.bob, mesh.dave):
        for method, path in (("POST", "grants"), ("DELETE", "grants"), ("GET", "access")):
            r = api(mesh.c, method, f"buckets/{b}/{path}", who.token, body if method != "GET" else None)
            assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), r.text
            assert who.token not in r.text
    cli_fails(
        mesh.c, "AccessDenied", "bucket", "grant", b, "--peer", mesh.dave.id, "--role", "write", token=mesh.dave.token
    )
    denied(lambda: mesh.dave.s3.put_object(Bucket=b, Key="team/x", Body=b"x"))
    # a write grantee still may not grant (write is not admin)
    grant(mesh, b, "--peer", mesh.bob.id, role="write")
    r = api(mesh.c, "POST", f"buckets/{b}/grants", mesh.bob.token, body)
    assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), r.text
    # the owner, with its own peer token
    r = api(mesh.c, "POST", f"buckets/{b}/grants", mesh.owner.token, body)
    assert r.status_code == 201, r.text
    assert r.json()["grant"]["by"] == mesh.owner.id
    mesh.dave.s3.put_object(Bucket=b, Key="team/x", Body=b"x")
    # every other admin endpoint stays for mesh admins
    for method, path, doc in (
        ("GET", "groups", None),
        ("POST", "groups", {"name": "sneaky"}),
        ("GET", "audit", None),
        ("GET", "peers", None),
    ):
        r = api(mesh.c, method, path, mesh.owner.token, doc)
        assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), (path, r.text)
    # the system bucket's access is nobody's to change, a mesh admin's included
    cli_fails(mesh.c, "AccessDenied", "bucket", "grant", "_tunnelmesh", "--peer", mesh.bob.id, "--role", "read")
    r = api(mesh.c, "POST", "buckets/no-such-bucket-here/grants", mesh.owner.token, body)
    assert (r.status_code, r.json()["error"]) == (404, "NoSuchBucket"), r.text


# ---- refusals and idempotence ---------------------------------------------------------------------


def test_grant_refusals_and_idempotence(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    owner = mesh.owner.token
    cases = [
        (["--peer", mesh.bob.id, "--role", "admin", "--prefix", "team/"], "InvalidArgument"),
        (["--peer", mesh.bob.id, "--role", "read", "--prefix", "team/*"], "InvalidArgument"),
        (["--peer", mesh.bob.id, "--role", "read", "--prefix", "te?m/"], "InvalidArgument"),
        (["--peer", "peer-000000000000", "--role", "read"], "NoSuchPeer"),
        (["--group", "no-such-group", "--role", "read"], "NoSuchGroup"),
        (["--anyone", "--role", "read"], "AccessDenied"),  # the public access block (default on)
    ]
    for args, code in cases:
        cli_fails(mesh.c, code, "bucket", "grant", b, *args, token=owner)
    for prefix in ("a\u0000", "a\r\nforged log line", "a\u001b[31m"):  # control characters: refused by the schema
        body = {"peer": mesh.bob.id, "role": "read", "prefix": prefix}
        r = api(mesh.c, "POST", f"buckets/{b}/grants", owner, body)
        assert (r.status_code, r.json()["error"]) == (400, "InvalidRequest"), r.text
    for bad in (
        {"role": "read"},
        {"peer": mesh.bob.id, "group": "peers", "role": "read"},
        {"peer": mesh.bob.id, "role": "owner"},
        {"peer": mesh.bob.id, "role": "read", "extra": 1},
    ):
        r = api(mesh.c, "POST", f"buckets/{b}/grants", owner, bad)
        assert r.status_code == 400, (bad, r.text)
    assert json.loads(cli_ok(mesh.c, "bucket", "access", b, "--json", token=owner))["grants"] == []
    # idempotent: the same grant twice is one grant
    first = grant(mesh, b, "--peer", mesh.bob.id, role="write", prefix="team/")
    again = grant(mesh, b, "--peer", mesh.bob.id, role="write", prefix="team/")
    assert first.startswith("granted") and again.startswith("already granted")
    assert first.split("(")[-1] == again.split("(")[-1]  # the same id
    grants = json.loads(cli_ok(mesh.c, "bucket", "access", b, "--json", token=owner))["grants"]
    assert [(g["to"], g["role"], g["prefix"]) for g in grants] == [({"peer": mesh.bob.id}, "write", "team/")]
    # ungrant filters: another role or prefix matches nothing
    cli_fails(mesh.c, "NoSuchGrant", "bucket", "ungrant", b, "--peer", mesh.bob.id, "--role", "read", token=owner)
    cli_fails(mesh.c, "NoSuchGrant", "bucket", "ungrant", b, "--peer", mesh.bob.id, "--prefix", "x/", token=owner)
    cli_ok(mesh.c, "bucket", "ungrant", b, "--peer", mesh.bob.id, "--prefix", "team/", token=owner)


def test_anyone_grant_once_the_block_is_lifted(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    cli_fails(mesh.c, "AccessDenied", "bucket", "grant", b, "--anyone", "--role", "read", token=mesh.owner.token)
    cli_ok(mesh.c, "network", "set", "default_public_access_block", "off")
    try:
        grant(mesh, b, "--anyone", role="read")
        assert read_ok(mesh.dave, b) == b"team-a"  # "*" covers every peer too
        denied(lambda: mesh.dave.s3.put_object(Bucket=b, Key="x", Body=b"x"))
    finally:
        cli_ok(mesh.c, "network", "set", "default_public_access_block", "on")


def test_group_rules(mesh: Mesh) -> None:
    name = f"ci-{uuid.uuid4().hex[:8]}"
    for bad, code in (
        ("peers", "InvalidArgument"),
        ("Upper", "InvalidArgument"),
        ("_under", "InvalidArgument"),
        ("x" * 64, "InvalidRequest"),
        ("a/b", "InvalidArgument"),
    ):
        cli_fails(mesh.c, code, "group", "create", bad)
    cli_ok(mesh.c, "group", "create", name)
    cli_fails(mesh.c, "GroupAlreadyExists", "group", "create", name)
    cli_fails(mesh.c, "NoSuchPeer", "group", "add", name, "peer-000000000000")
    cli_fails(mesh.c, "NoSuchGroup", "group", "add", "no-such-group", mesh.bob.id)
    cli_fails(mesh.c, "InvalidArgument", "group", "add", "peers", mesh.bob.id)
    cli_ok(mesh.c, "group", "add", name, mesh.bob.id)
    cli_ok(mesh.c, "group", "add", name, mesh.bob.id)  # already a member: unchanged
    groups = json.loads(cli_ok(mesh.c, "group", "list", "--json"))["groups"]
    mine = [g for g in groups if g["name"] == name]
    assert len(mine) == 1 and mine[0]["members"] == [mesh.bob.id] and mine[0]["by"] == "admin"
    cli_fails(mesh.c, "NoSuchGroupMember", "group", "remove", name, mesh.carol.id)
    cli_ok(mesh.c, "group", "remove", name, mesh.bob.id)
    cli_ok(mesh.c, "group", "delete", name)
    cli_fails(mesh.c, "NoSuchGroup", "group", "delete", name)
    assert name not in {g["name"] for g in json.loads(cli_ok(mesh.c, "group", "list", "--json"))["groups"]}


# ---- bucket access ---------------------------------------------------------------------------------


def test_bucket_access_report(mesh: Mesh) -> None:
    b = new_bucket(mesh)
    group = f"rd-{uuid.uuid4().hex[:8]}"
    cli_ok(mesh.c, "group", "create", group)
    cli_ok(mesh.c, "group", "add", group, mesh.carol.id)
    grant(mesh, b, "--peer", mesh.bob.id, role="write", prefix="team/")
    grant(mesh, b, "--group", group, role="read")
    grant(mesh, b, "--peer", mesh.dave.id, role="admin")
    doc = json.loads(cli_ok(mesh.c, "bucket", "access", b, "--json", token=mesh.owner.token))
    assert doc["owner"] == mesh.owner.id and doc["default_bucket_access"] == "none"
    ids = {(g["to"].get("peer") or g["to"].get("group")): g["id"] for g in doc["grants"]}

    def rights(kind: str, name: str) -> dict[str, tuple[str, str]]:
        (p,) = [p for p in doc["principals"] if (p["kind"], p["name"]) == (kind, name)]
        return {r["prefix"]: (r["role"], r["why"]) for r in p["rights"]}

    assert rights("peer", mesh.owner.id) == {"": ("admin", "owner"), "team/": ("admin", "owner")}
    assert rights("peer", mesh.bob.id) == {"": ("none", "implicit"), "team/": ("write", f"grant:{ids[mesh.bob.id]}")}
    assert rights("peer", mesh.carol.id) == {
        "": ("read", f"grant:{ids[group]}"),
        "team/": ("read", f"grant:{ids[group]}"),
    }
    assert rights("peer", mesh.dave.id)[""] == ("admin", f"grant:{ids[mesh.dave.id]}")
    assert rights("group", group)[""] == ("read", f"grant:{ids[group]}")
    assert rights("group", "peers") == {"": ("none", "implicit"), "team/": ("none", "implicit")}
    assert rights("anyone", "*") == {"": ("none", "implicit"), "team/": ("none", "implicit")}
    # the table form names the same
    table = cli_ok(mesh.c, "bucket", "access", b, token=mesh.owner.token)
    assert f"owner {mesh.owner.id}" in table and "default none" in table
    line = [ln for ln in table.splitlines() if ln.startswith("peer") and mesh.bob.id in ln and "team/" in ln]
    assert len(line) == 1 and line[0].split()[-2:] == ["write", f"grant:{ids[mesh.bob.id]}"]
    # the owner learns who has rights to its bucket, not the mesh's directory: a peer nothing names is not
    # listed for it (nor other groups), and is for a mesh admin
    stranger = add_peer(mesh.c, "stranger")
    by_owner = json.loads(cli_ok(mesh.c, "bucket", "access", b, "--json", token=mesh.owner.token))
    assert ("peer", stranger.id) not in {(p["kind"], p["name"]) for p in by_owner["principals"]}
    assert ("peer", mesh.carol.id) in {(p["kind"], p["name"]) for p in by_owner["principals"]}  # a named group's
    by_admin = json.loads(cli_ok(mesh.c, "bucket", "access", b, "--json", token=mesh.c.token))
    assert ("peer", stranger.id) in {(p["kind"], p["name"]) for p in by_admin["principals"]}
    # and the report agrees with the edge
    mesh.bob.s3.put_object(Bucket=b, Key="team/report", Body=b"x")
    denied(lambda: read_ok(mesh.bob, b, "other/b"))
    assert read_ok(mesh.carol, b, "other/b") == b"other-b"


# ---- two coordinators on one PostgreSQL -------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Coordinator, Coordinator]]:
    from test_several_coordinators import database, start_node

    tmp: Path = tmp_path_factory.mktemp("pair")
    uri, blob_dir, token = database(), tmp / "shared-blobs", secrets.token_urlsafe(24)
    a = start_node(tmp, uri, blob_dir, "node-a", token)
    try:
        b = start_node(tmp, uri, blob_dir, "node-b", token)
    except Exception:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def test_ungrant_on_one_coordinator_is_refused_on_the_other(pair: tuple[Coordinator, Coordinator]) -> None:
    a, b = pair
    cli_ok(a, "network", "set", "default_bucket_access", "none")
    owner, bob = add_peer(a, "owner"), add_peer(a, "bob")
    bob_on_b = s3_client(b.endpoint, bob.id, bob.token)
    name = f"g-{uuid.uuid4().hex[:16]}"
    owner.s3.create_bucket(Bucket=name)
    owner.s3.put_object(Bucket=name, Key="k", Body=b"v")
    denied(lambda: bob_on_b.get_object(Bucket=name, Key="k"))
    cli_ok(a, "bucket", "grant", name, "--peer", bob.id, "--role", "read", token=owner.token)
    assert bob_on_b.get_object(Bucket=name, Key="k")["Body"].read() == b"v"  # granted on A, allowed on B
    cli_ok(a, "bucket", "ungrant", name, "--peer", bob.id, token=owner.token)
    denied(lambda: bob_on_b.get_object(Bucket=name, Key="k"))
