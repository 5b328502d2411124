"""Scoped access keys (docs/access-control.md section 4, section 8 step 4), on one real coordinator under
`network set default_bucket_access none`, made with the real CLI (`tunnelmesh key create|list|revoke`) and used
with real clients: boto3 (SigV4 header, presigned v4 and v2), botocore's SigV2 header signer, Basic, Bearer.

- every signing scheme but Bearer takes a key; the peer's mesh token keeps working beside it;
- a key without scope acts as its peer; a scoped key only within its bucket, role and prefix; never CreateBucket;
- a key of a mesh admin has no admin power: `_tunnelmesh`, other peers' buckets and the admin API are refused;
- expiry and revocation (of the key, of its peer, of a grant its peer held) apply at the next request;
- a peer manages its own keys, an admin anyone's; nobody else's;
- the secret is in no log line, no file of the data dir, no backup record, no audit record.
"""

from __future__ import annotations

import json
import tarfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import requests.auth
from botocore.auth import HmacV1Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator
from support.peers import TestPeer as Peer
from support.peers import add_peer, cli_fails, cli_ok, s3_client

REGION = "us-east-1"
# every secret handed out in this module: the last test looks for each in the logs and records
SECRETS: list[str] = []


@dataclass
class Key:
    id: str
    secret: str
    peer: str
    doc: dict[str, Any]


@dataclass
class Mesh:
    c: Coordinator
    alice: Peer  # a plain peer, the keys' usual parent
    bob: Peer  # another plain peer, owner of buckets alice has no rights on
    boss: Peer  # a mesh admin peer (with a record, so it may have keys)


def make_key(c: Coordinator, token: str, *args: str) -> Key:
    """`tunnelmesh key create ARGS --json`, run with `token` (a peer's own, or an admin's)."""
    doc = json.loads(cli_ok(c, "key", "create", *args, "--json", token=token))
    assert doc["id"].startswith("TMAK") and len(doc["secret"]) >= 32, doc
    SECRETS.append(doc["secret"])
    return Key(doc["id"], doc["secret"], doc["peer"], doc)


def key_s3(c: Coordinator, k: Key, signature_version: str = "s3v4") -> Any:
    return s3_client(c.endpoint, k.id, k.secret, signature_version)


def listed_keys(c: Coordinator, token: str, *args: str) -> dict[str, dict[str, Any]]:
    return {k["id"]: k for k in json.loads(cli_ok(c, "key", "list", *args, "--json", token=token))}


def api(c: Coordinator, method: str, path: str, body: Any = None, **auth: Any) -> requests.Response:
    return requests.request(method, f"http://127.0.0.1:{c.port}/api/{path}", json=body, timeout=60, **auth)


def bearer(token: str) -> dict[str, Any]:
    return {"headers": {"authorization": f"Bearer {token}"}}


def error(fn: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ClientError) as e:
        fn()
    err = e.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def denied(fn: Callable[[], Any]) -> None:
    assert error(fn) == (403, "AccessDenied")


def unknown_key(fn: Callable[[], Any]) -> None:
    assert error(fn) == (403, "InvalidAccessKeyId")


def s3_error_code(resp: requests.Response) -> tuple[int, str | None]:
    return resp.status_code, ET.fromstring(resp.content).findtext("Code") if resp.content else None


def new_bucket(owner: Peer) -> str:
    name = f"k-{uuid.uuid4().hex[:16]}"
    owner.s3.create_bucket(Bucket=name)
    owner.s3.put_object(Bucket=name, Key="ci/a", Body=b"ci-a")
    owner.s3.put_object(Bucket=name, Key="other/b", Body=b"other-b")
    return name


def read(s3: Any, bucket: str, key: str = "ci/a") -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    c = start_coordinator(tmp_path_factory.mktemp("keys"), workers=2)
    try:
        cli_ok(c, "network", "set", "default_bucket_access", "none")
        yield Mesh(c, add_peer(c, "alice"), add_peer(c, "bob"), add_peer(c, "boss", admin=True))
    finally:
        c.stop()


# ---- authentication ----------------------------------------------------------------------------------


def test_a_key_signs_with_sigv4_presigned_v4_v2_sigv2_and_basic_but_not_bearer(mesh: Mesh) -> None:
    c, alice = mesh.c, mesh.alice
    b = new_bucket(alice)
    k = make_key(c, alice.token, "--name", "every scheme")
    assert k.peer == alice.id and k.doc["scope"] is None and k.doc["expires"] is None
    url = f"{c.endpoint}/{b}/ci/a"

    v4 = key_s3(c, k)
    v4.put_object(Bucket=b, Key="ci/by-key", Body=b"by key")
    assert read(v4, b, "ci/by-key") == b"by key"
    assert read(alice.s3, b, "ci/by-key") == b"by key"  # the peer's own bucket, written as the peer

    for version in ("s3v4", "s3"):
        signed = key_s3(c, k, version).generate_presigned_url("get_object", Params={"Bucket": b, "Key": "ci/a"})
        assert ("X-Amz-Credential=" + k.id in signed) if version == "s3v4" else ("AWSAccessKeyId=" + k.id in signed)
        got = requests.get(signed, timeout=30)
        assert (got.status_code, got.content) == (200, b"ci-a"), (version, got.text)

    req = AWSRequest(method="GET", url=url)
    HmacV1Auth(Credentials(k.id, k.secret)).add_auth(req)
    assert req.headers["Authorization"].startswith(f"AWS {k.id}:")
    got = requests.get(url, headers=dict(req.headers.items()), timeout=30)
    assert (got.status_code, got.content) == (200, b"ci-a"), got.text

    got = requests.get(url, auth=(k.id, k.secret), timeout=30)
    assert (got.status_code, got.content) == (200, b"ci-a"), got.text
    assert s3_error_code(requests.get(url, auth=(k.id, k.secret[:-1] + "x"), timeout=30)) == (403, "AccessDenied")

    # Bearer carries no key id: the key's secret is not a token
    assert s3_error_code(requests.get(url, **bearer(k.secret), timeout=30)) == (403, "AccessDenied")
    # a wrong secret under the key's id is refused
    bad_secret = error(lambda: s3_client(c.endpoint, k.id, "x" * 40).get_object(Bucket=b, Key="ci/a"))
    assert bad_secret == (403, "SignatureDoesNotMatch")

    # the mesh token goes on working beside the key
    assert read(alice.s3, b) == b"ci-a"
    got = requests.get(url, **bearer(alice.token), timeout=30)
    assert (got.status_code, got.content) == (200, b"ci-a")


# ---- scope -------------------------------------------------------------------------------------------


def test_a_key_without_scope_acts_as_its_peer(mesh: Mesh) -> None:
    c, alice = mesh.c, mesh.alice
    mine, second, bobs = new_bucket(alice), new_bucket(alice), new_bucket(mesh.bob)
    s3 = key_s3(c, make_key(c, alice.token))
    for b in (mine, second):
        s3.put_object(Bucket=b, Key="anywhere/x", Body=b"x")
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]] == ["anywhere/x", "ci/a", "other/b"]
        s3.delete_object(Bucket=b, Key="anywhere/x")
    # what its peer may not do (default none: bob's bucket), the key may not either
    denied(lambda: read(alice.s3, bobs))
    denied(lambda: read(s3, bobs))
    denied(lambda: s3.put_object(Bucket=bobs, Key="ci/x", Body=b"x"))
    names = {x["Name"] for x in s3.list_buckets()["Buckets"]}
    assert {mine, second} <= names and bobs not in names


def test_a_scoped_key_acts_only_within_its_bucket_role_and_prefix(mesh: Mesh) -> None:
    c, alice = mesh.c, mesh.alice
    scoped, other = new_bucket(alice), new_bucket(alice)
    alice.s3.put_bucket_versioning(Bucket=scoped, VersioningConfiguration={"Status": "Enabled"})
    k = make_key(c, alice.token, "--bucket", scoped, "--role", "write", "--prefix", "ci/")
    assert k.doc["scope"] == [{"bucket": scoped, "role": "write", "prefix": "ci/"}]
    s3 = key_s3(c, k)

    vid = s3.put_object(Bucket=scoped, Key="ci/new", Body=b"new")["VersionId"]
    assert read(s3, scoped, "ci/new") == b"new"
    denied(lambda: s3.put_object(Bucket=scoped, Key="other/new", Body=b"x"))
    denied(lambda: read(s3, scoped, "other/b"))
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=scoped, Prefix="ci/")["Contents"]] == ["ci/a", "ci/new"]
    denied(lambda: s3.list_objects_v2(Bucket=scoped))
    denied(lambda: s3.list_objects_v2(Bucket=scoped, Prefix="other/"))
    # another bucket of its own peer is outside the scope
    denied(lambda: read(s3, other))
    denied(lambda: s3.put_object(Bucket=other, Key="ci/x", Body=b"x"))
    # a write role adds delete markers but never destroys a version (its peer, the owner, could)
    denied(lambda: s3.delete_object(Bucket=scoped, Key="ci/new", VersionId=vid))
    versions = alice.s3.list_object_versions(Bucket=scoped, Prefix="ci/new")["Versions"]
    assert [v["VersionId"] for v in versions] == [vid]
    # no new buckets, and only its scope's buckets are listed
    name = f"k-{uuid.uuid4().hex[:16]}"
    denied(lambda: s3.create_bucket(Bucket=name))
    assert name not in {x["Name"] for x in alice.s3.list_buckets()["Buckets"]}
    assert [x["Name"] for x in s3.list_buckets()["Buckets"]] == [scoped]
    # the unscoped peer itself does all of it
    alice.s3.put_object(Bucket=other, Key="ci/x", Body=b"x")
    alice.s3.delete_object(Bucket=scoped, Key="ci/new", VersionId=vid)


def test_a_scope_wider_than_the_peer_gives_nothing_more(mesh: Mesh) -> None:
    c, alice, bob = mesh.c, mesh.alice, mesh.bob
    b, untouched = new_bucket(bob), new_bucket(bob)
    cli_ok(c, "bucket", "grant", b, "--peer", alice.id, "--role", "read", token=bob.token)
    s3 = key_s3(c, make_key(c, alice.token, "--bucket", b, "--bucket", untouched, "--role", "admin"))
    assert read(s3, b) == b"ci-a"  # the peer's read, within the key's scope
    denied(lambda: s3.put_object(Bucket=b, Key="ci/x", Body=b"x"))
    denied(lambda: s3.delete_object(Bucket=b, Key="ci/a"))
    denied(lambda: s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"}))
    denied(lambda: read(s3, untouched))  # alice has nothing there: nor has her key
    assert read(bob.s3, b) == b"ci-a" and "Contents" in bob.s3.list_objects_v2(Bucket=b)


class _SigV4(requests.auth.AuthBase):
    """SigV4 header signing of a requests call, with the key's credentials (and a signed payload)."""

    def __init__(self, k: Key) -> None:
        self.k = k

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        req = AWSRequest(method=r.method, url=r.url, data=r.body or b"")
        S3SigV4Auth(Credentials(self.k.id, self.k.secret), "s3", REGION).add_auth(req)
        r.headers.update(dict(req.headers.items()))
        return r


# ---- no admin power ----------------------------------------------------------------------------------


def test_an_admin_peers_key_has_no_admin_power(mesh: Mesh) -> None:
    c, boss = mesh.c, mesh.boss
    bobs = new_bucket(mesh.bob)
    k = make_key(c, boss.token, "--name", "admin's rclone")
    assert k.peer == boss.id
    s3 = key_s3(c, k)
    # the admin peer itself may read the system bucket and other peers' buckets
    assert "Contents" in boss.s3.list_objects_v2(Bucket="_tunnelmesh", Prefix="peers/")
    assert read(boss.s3, bobs) == b"ci-a"
    # its key may not: `_tunnelmesh` holds every peer token
    denied(lambda: s3.list_objects_v2(Bucket="_tunnelmesh", Prefix="peers/"))
    denied(lambda: s3.get_object(Bucket="_tunnelmesh", Key=f"peers/{mesh.alice.id}.json"))
    denied(lambda: s3.get_object(Bucket="_tunnelmesh", Key=f"keys/{k.id}.json"))
    denied(lambda: read(s3, bobs))
    assert bobs not in {x["Name"] for x in s3.list_buckets()["Buckets"]}
    # ...nor use the admin API, with Basic or SigV4
    basic = {"auth": (k.id, k.secret)}
    for method, path, body in [
        ("GET", "peers", None),
        ("POST", "peers", {"name": "by-key", "admin": True}),
        ("GET", "audit", None),
        ("GET", "keys", None),
        ("POST", "keys", {"name": "child of a key"}),
        ("DELETE", f"keys/{k.id}", None),
        ("POST", f"buckets/{bobs}/grants", {"peer": boss.id, "role": "admin"}),
        ("GET", "system/backup", None),
    ]:
        r = api(c, method, path, body, **basic)
        assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), (method, path, r.text)
    r = requests.get(f"http://127.0.0.1:{c.port}/api/peers", auth=_SigV4(k), timeout=60)
    assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), r.text
    assert api(c, "GET", "peers", **bearer(boss.token)).status_code == 200  # the admin's token is for that
    assert all(p["name"] != "by-key" for p in api(c, "GET", "peers", **bearer(boss.token)).json()["peers"])
    assert k.id in listed_keys(c, boss.token)  # not revoked by its own DELETE
    assert listed_keys(c, boss.token)[k.id]["revoked"] is None


def test_a_peers_key_is_refused_on_the_bucket_and_self_routes(mesh: Mesh) -> None:
    c, alice = mesh.c, mesh.alice
    b = new_bucket(alice)
    k = make_key(c, alice.token)
    basic = {"auth": (k.id, k.secret)}
    for method, path, body in [
        ("GET", f"buckets/{b}/access", None),
        ("POST", f"buckets/{b}/grants", {"peer": mesh.bob.id, "role": "write"}),
        ("GET", "keys", None),
        ("POST", "keys", {"name": "child of a key"}),
        ("DELETE", f"keys/{k.id}", None),
    ]:
        r = api(c, method, path, body, **basic)
        assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), (method, path, r.text)
    denied(lambda: read(mesh.bob.s3, b))  # no grant was made
    assert listed_keys(c, alice.token)[k.id]["revoked"] is None
    # the same routes answer the peer's own token
    r = api(c, "POST", f"buckets/{b}/grants", {"peer": mesh.bob.id, "role": "read"}, **bearer(alice.token))
    assert r.status_code == 201, r.text
    assert read(mesh.bob.s3, b) == b"ci-a"


# ---- expiry and revocation ---------------------------------------------------------------------------


def test_an_expiring_key_is_refused_once_expired_and_listed_as_such(mesh: Mesh) -> None:
    c, alice = mesh.c, mesh.alice
    b = new_bucket(alice)
    k = make_key(c, alice.token, "--expires", "1s")
    assert k.doc["expires"] is not None
    deadline = time.monotonic() + 60
    while True:
        try:
            key_s3(c, k).list_objects_v2(Bucket=b)  # a fresh client, a fresh request
        except ClientError as e:
            err = e.response
            assert (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]) == (403, "InvalidAccessKeyId")
            break
        assert time.monotonic() < deadline, "the 1 s key was still accepted after 60 s"
        time.sleep(0.2)
    got = requests.get(f"{c.endpoint}/{b}/ci/a", auth=(k.id, k.secret), timeout=30)
    assert s3_error_code(got) == (403, "AccessDenied")
    listed = listed_keys(c, alice.token)[k.id]
    assert (listed["expired"], listed["revoked"]) == (True, None)
    r = c.cli("key", "list", token=alice.token, timeout=60)
    assert r.returncode == 0 and any(k.id in line and "expired" in line for line in r.stdout.splitlines())


def test_a_long_lived_key_works_and_is_not_listed_expired(mesh: Mesh) -> None:
    c, alice = mesh.c, mesh.alice
    b = new_bucket(alice)
    k = make_key(c, alice.token, "--expires", "30d")
    assert k.doc["expires"] is not None
    assert read(key_s3(c, k), b) == b"ci-a"
    assert listed_keys(c, alice.token)[k.id]["expired"] is False


def test_a_revoked_key_is_refused_at_the_next_request_presigned_urls_included(mesh: Mesh) -> None:
    c, alice = mesh.c, mesh.alice
    b = new_bucket(alice)
    k = make_key(c, alice.token)
    s3 = key_s3(c, k)
    urls = [
        key_s3(c, k, v).generate_presigned_url("get_object", Params={"Bucket": b, "Key": "ci/a"}, ExpiresIn=600)
        for v in ("s3v4", "s3")
    ]
    assert read(s3, b) == b"ci-a"
    assert all(requests.get(u, timeout=30).status_code == 200 for u in urls)
    assert f"revoked {k.id}" in cli_ok(c, "key", "revoke", k.id, token=alice.token)
    unknown_key(lambda: read(s3, b))
    unknown_key(lambda: key_s3(c, k).list_buckets())
    for u in urls:
        assert s3_error_code(requests.get(u, timeout=30)) == (403, "InvalidAccessKeyId")
    assert s3_error_code(requests.get(f"{c.endpoint}/{b}/ci/a", auth=(k.id, k.secret), timeout=30))[0] == 403
    listed = listed_keys(c, alice.token)[k.id]
    assert listed["revoked"] is not None
    assert read(alice.s3, b) == b"ci-a"  # the peer itself is untouched
    cli_fails(c, "NoSuchAccessKey", "key", "revoke", "TMAK" + "A" * 16, token=alice.token)


def test_revoking_the_peer_kills_its_keys(mesh: Mesh) -> None:
    c = mesh.c
    dave = add_peer(c, "dave")
    b = new_bucket(dave)
    k = make_key(c, dave.token)
    s3 = key_s3(c, k)
    assert read(s3, b) == b"ci-a"
    cli_ok(c, "peer", "revoke", dave.id)
    unknown_key(lambda: read(s3, b))
    unknown_key(lambda: read(dave.s3, b))


def test_a_peer_losing_a_grant_narrows_its_key(mesh: Mesh) -> None:
    c, alice, bob = mesh.c, mesh.alice, mesh.bob
    b = new_bucket(bob)
    cli_ok(c, "bucket", "grant", b, "--peer", alice.id, "--role", "write", token=bob.token)
    s3 = key_s3(c, make_key(c, alice.token))
    s3.put_object(Bucket=b, Key="ci/by-alice-key", Body=b"x")
    assert read(s3, b, "ci/by-alice-key") == b"x"
    cli_ok(c, "bucket", "ungrant", b, "--peer", alice.id, token=bob.token)
    denied(lambda: s3.put_object(Bucket=b, Key="ci/again", Body=b"x"))
    denied(lambda: read(s3, b))
    assert "ci/again" not in [o["Key"] for o in bob.s3.list_objects_v2(Bucket=b)["Contents"]]


# ---- who manages keys --------------------------------------------------------------------------------


def test_a_peer_manages_its_own_keys_and_an_admin_anyones(mesh: Mesh) -> None:
    c, alice, bob = mesh.c, mesh.alice, mesh.bob
    mine = make_key(c, alice.token, "--name", "alice's own")
    bobs = make_key(c, bob.token, "--name", "bob's own")
    # a peer lists its own keys only, never a secret
    own = listed_keys(c, alice.token)
    assert mine.id in own and bobs.id not in own
    assert all("secret" not in k and "salt" not in k for k in own.values())
    cli_fails(c, "AccessDenied", "key", "list", "--peer", bob.id, token=alice.token)
    # ...and may not make or revoke another peer's
    cli_fails(c, "AccessDenied", "key", "create", "--peer", bob.id, token=alice.token)
    cli_fails(c, "AccessDenied", "key", "revoke", bobs.id, token=alice.token)
    r = api(c, "POST", "keys", {"peer": bob.id}, **bearer(alice.token))
    assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), r.text
    r = api(c, "DELETE", f"keys/{bobs.id}", **bearer(alice.token))
    assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), r.text
    assert [k for k in listed_keys(c, bob.token) if k != bobs.id] == []  # nothing made for bob
    assert listed_keys(c, bob.token)[bobs.id]["revoked"] is None
    # over HTTP with its own token, as the CLI does
    r = api(c, "POST", "keys", {"name": "over http", "expires_in": 3600}, **bearer(alice.token))
    assert r.status_code == 201, r.text
    SECRETS.append(r.json()["secret"])
    assert r.json()["peer"] == alice.id
    assert api(c, "DELETE", f"keys/{r.json()['id']}", **bearer(alice.token)).status_code == 200
    # an admin (the bootstrap admin's token, and an admin peer's) makes, lists and revokes anyone's
    for_bob = make_key(c, c.token, "--peer", bob.id, "--name", "made by an admin")
    assert (for_bob.peer, for_bob.doc["created_by"]) == (bob.id, "admin")
    b = new_bucket(bob)
    assert read(key_s3(c, for_bob), b) == b"ci-a"  # it acts as bob
    every = listed_keys(c, mesh.boss.token)
    assert {mine.id, bobs.id, for_bob.id} <= set(every)
    assert set(listed_keys(c, mesh.boss.token, "--peer", bob.id)) == {bobs.id, for_bob.id}
    cli_ok(c, "key", "revoke", mine.id, token=mesh.boss.token)
    cli_ok(c, "key", "revoke", for_bob.id, token=c.token)
    unknown_key(lambda: key_s3(c, mine).list_buckets())
    unknown_key(lambda: key_s3(c, for_bob).list_buckets())


# ---- the secret is nowhere ---------------------------------------------------------------------------


def _files(root: Path) -> Iterator[tuple[Path, bytes]]:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield p, p.read_bytes()


def test_no_secret_in_a_log_line_a_record_or_a_backup(mesh: Mesh, tmp_path: Path) -> None:
    """Runs last: every secret handed out in this module is looked for in the log, the data dir, a backup."""
    c, alice = mesh.c, mesh.alice
    k = make_key(c, alice.token, "--name", "audited", "--bucket", new_bucket(alice), "--role", "read")
    cli_ok(c, "key", "revoke", k.id, token=alice.token)
    assert len(SECRETS) >= 2
    log = c.log()
    assert k.id in log or alice.id in log  # the log names who acted, so it is the right file

    files = list(_files(c.data_dir))
    # the same search finds what the records do hold: the key's id (its record), its peer's token
    assert any(k.id.encode() in data for _, data in files)
    assert any(alice.token.encode() in data for _, data in files)

    archive = tmp_path / "state.tar.gz"
    cli_ok(c, "system", "backup", str(archive))
    with tarfile.open(archive, "r:gz") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    assert any(f"keys/{k.id}.json".encode() in data for _, data in members)  # the manifest names the record
    assert any(k.id.encode() in data and b'"salt"' in data for _, data in members)  # the record itself

    audit = json.loads(cli_ok(c, "audit", "--event", "key.create", "--json"))["records"]
    audit += json.loads(cli_ok(c, "audit", "--event", "key.revoke", "--json"))["records"]
    created = [r for r in audit if r["event"] == "key.create" and r["detail"]["key"] == k.id]
    revoked = [r for r in audit if r["event"] == "key.revoke" and r["detail"]["key"] == k.id]
    assert len(created) == 1 and len(revoked) == 1, audit
    assert (created[0]["actor"], created[0]["detail"]["peer"]) == (alice.id, alice.id)
    assert created[0]["detail"]["scope"] == k.doc["scope"]
    assert len({r["detail"]["key"] for r in audit if r["event"] == "key.create"}) >= len(SECRETS)
    audit_text = json.dumps(audit)

    for secret in SECRETS:
        assert secret not in log
        assert secret not in audit_text
        for path, data in files:
            assert secret.encode() not in data, path
        for name, data in members:
            assert secret.encode() not in data, name
