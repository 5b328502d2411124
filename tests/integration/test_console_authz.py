"""The console decides nothing itself (docs/operations.md 1.4): each console action is the S3 call a client
would make, as the signed-in principal. For a non-owner peer, a read-scoped access key, an owner under a
bucket policy's Deny, and the owner, each action is allowed or refused exactly as boto3 signing as the same
principal is, and as the access rules say."""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator
from support.console import ConsoleClient, signed_in
from support.peers import TestPeer, add_peer, cli_ok, s3_client

OBJECT_ACTIONS = ["list", "details", "download", "share", "delete", "multi-delete", "versioning"]
BUCKET_ACTIONS = ["create-bucket", "delete-bucket"]
DENIED = ["s3:DeleteObject", "s3:PutBucketVersioning", "s3:DeleteBucket"]


@dataclass
class Who:
    name: str
    console: ConsoleClient
    s3: Any
    bucket: str  # where the object actions run
    fresh_bucket: Callable[[], str]  # an empty bucket of the owner's, for deleting


@dataclass
class Mesh:
    c: Coordinator
    owner: TestPeer
    other: TestPeer


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    c = start_coordinator(tmp_path_factory.mktemp("console-authz"), workers=1)
    try:
        # no mesh-wide default: a peer reaches another's bucket only through a grant or a policy
        r = requests.put(
            f"http://127.0.0.1:{c.port}/api/network",
            json={"key": "default_bucket_access", "value": "none"},
            headers={"Authorization": f"Bearer {c.token}"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        yield Mesh(c, add_peer(c, "owner"), add_peer(c, "other"))
    finally:
        c.stop()


def _deny_policy(bucket: str, peer: str) -> str:
    statement = {
        "Effect": "Deny",
        "Principal": {"AWS": peer},
        "Action": DENIED,
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _bucket(mesh: Mesh, deny: bool = False) -> str:
    name = f"az-{uuid.uuid4().hex[:12]}"
    mesh.owner.s3.create_bucket(Bucket=name)
    if deny:
        mesh.owner.s3.put_bucket_policy(Bucket=name, Policy=_deny_policy(name, mesh.owner.id))
    return name


def _principals(mesh: Mesh) -> list[Who]:
    c, owner, other = mesh.c, mesh.owner, mesh.other
    own, denied = _bucket(mesh), _bucket(mesh, deny=True)
    key = json.loads(cli_ok(c, "key", "create", "--peer", owner.id, "--bucket", own, "--role", "read", "--json"))
    return [
        Who("owner", signed_in(c.port, token=owner.token), owner.s3, own, lambda: _bucket(mesh)),
        Who("other peer", signed_in(c.port, token=other.token), other.s3, own, lambda: _bucket(mesh)),
        Who(
            "read key",
            signed_in(c.port, access_key=key["id"], secret=key["secret"]),
            s3_client(c.endpoint, key["id"], key["secret"]),
            own,
            lambda: _bucket(mesh),
        ),
        Who("owner under Deny", signed_in(c.port, token=owner.token), owner.s3, denied, lambda: _bucket(mesh, True)),
    ]


def _boto_ok(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403, e.response
        return False
    return True


def _console_ok(r: requests.Response, ok: int) -> bool:
    assert r.status_code in (ok, 403), (r.status_code, r.text[:300])
    return r.status_code == ok


def _link_ok(url: str) -> bool:
    r = requests.get(url, timeout=30)
    assert r.status_code in (200, 403), r.status_code
    return r.status_code == 200


def _try(mesh: Mesh, who: Who, action: str) -> tuple[bool, bool]:
    """(allowed through the console, allowed through boto3) for one action, each on fresh objects."""
    b, console, s3, owner = who.bucket, who.console, who.s3, mesh.owner.s3
    base = f"http://127.0.0.1:{mesh.c.port}"
    k1, k2 = f"k-{uuid.uuid4().hex[:8]}", f"k-{uuid.uuid4().hex[:8]}"
    for k in (k1, k2):
        owner.put_object(Bucket=b, Key=k, Body=b"payload " + k.encode())
    if action == "list":
        return _console_ok(console.get(f"/b/{b}/"), 200), _boto_ok(lambda: s3.list_objects_v2(Bucket=b))
    if action == "details":
        r = console.get(f"/b/{b}/object", params={"key": k1})
        return _console_ok(r, 200), _boto_ok(lambda: s3.head_object(Bucket=b, Key=k1))
    if action == "download":
        r = console.get(f"/b/{b}/download", params={"key": k1})
        assert r.status_code == 303
        return _link_ok(base + r.headers["location"]), _boto_ok(lambda: s3.get_object(Bucket=b, Key=k1))
    if action == "share":
        r = console.act(f"/b/{b}/share", {"key": k1, "expires": "900"})
        shared = _console_ok(r, 200) and _link_ok(
            html.unescape(r.text.split('id="link" readonly>', 1)[1].split("<", 1)[0])
        )
        return shared, _boto_ok(lambda: s3.get_object(Bucket=b, Key=k1))
    if action == "delete":
        r = console.act(f"/b/{b}/delete-objects", {"key": k1, "confirm": "yes"})
        return _console_ok(r, 303), _boto_ok(lambda: s3.delete_object(Bucket=b, Key=k2))
    if action == "multi-delete":
        r = console.act(f"/b/{b}/delete-objects", {"key": [k1, k2], "confirm": "yes"})
        for k in (k1, k2):
            owner.put_object(Bucket=b, Key=k, Body=b"again")
        objects = {"Objects": [{"Key": k1}, {"Key": k2}]}
        return _console_ok(r, 303), not s3.delete_objects(Bucket=b, Delete=objects).get("Errors")
    if action == "versioning":
        r = console.act(f"/b/{b}/versioning", {"state": "Suspended"})
        conf = {"Status": "Suspended"}
        return _console_ok(r, 303), _boto_ok(lambda: s3.put_bucket_versioning(Bucket=b, VersioningConfiguration=conf))
    if action == "create-bucket":
        n1, n2 = f"nb-{uuid.uuid4().hex[:12]}", f"nb-{uuid.uuid4().hex[:12]}"
        return _console_ok(console.act("/buckets", {"name": n1}), 303), _boto_ok(lambda: s3.create_bucket(Bucket=n2))
    if action == "delete-bucket":
        f1, f2 = who.fresh_bucket(), who.fresh_bucket()
        r = console.act(f"/b/{f1}/delete", {"confirm": f1})
        return _console_ok(r, 303), _boto_ok(lambda: s3.delete_bucket(Bucket=f2))
    raise AssertionError(action)


# what the access rules say (docs/access-control.md); None: whatever boto3 gets, the console must get too
EXPECTED: dict[str, dict[str, bool | None]] = {
    "owner": dict.fromkeys(OBJECT_ACTIONS + BUCKET_ACTIONS, True),
    "other peer": {**dict.fromkeys(OBJECT_ACTIONS + BUCKET_ACTIONS, False), "create-bucket": True},
    "read key": {
        **dict.fromkeys(["list", "details", "download", "share"], True),
        **dict.fromkeys(["delete", "multi-delete", "versioning", "delete-bucket"], False),
        "create-bucket": None,
    },
    "owner under Deny": {
        **dict.fromkeys(["list", "details", "download", "share", "create-bucket"], True),
        **dict.fromkeys(["delete", "multi-delete", "versioning", "delete-bucket"], False),
    },
}


def test_each_console_action_is_allowed_exactly_as_through_s3(mesh: Mesh) -> None:
    table = []
    for who in _principals(mesh):
        for action in OBJECT_ACTIONS + BUCKET_ACTIONS:
            console_ok, boto_ok = _try(mesh, who, action)
            table.append((who.name, action, console_ok, boto_ok))
    wrong = [row for row in table if row[2] != row[3]]
    assert not wrong, f"console and boto3 disagree (who, action, console, boto3): {wrong}"
    unexpected = [r for r in table if EXPECTED[r[0]][r[1]] is not None and EXPECTED[r[0]][r[1]] != r[2]]
    assert not unexpected, f"not as the access rules say (who, action, console, boto3): {unexpected}"


def test_a_refused_action_changes_nothing_and_shows_the_s3_error(mesh: Mesh) -> None:
    b = _bucket(mesh)
    mesh.owner.s3.put_object(Bucket=b, Key="keep", Body=b"x")
    other = signed_in(mesh.c.port, token=mesh.other.token)
    r = other.act(f"/b/{b}/delete-objects", {"key": "keep", "confirm": "yes"})
    assert r.status_code == 403 and "AccessDenied" in r.text
    assert mesh.owner.s3.get_object(Bucket=b, Key="keep")["Body"].read() == b"x"


def test_console_calls_go_through_the_s3_api_as_the_principal(mesh: Mesh) -> None:
    """The S3 API's own access line shows the console's inner call, with the signed-in peer as its signer."""
    b = _bucket(mesh)
    owner = signed_in(mesh.c.port, token=mesh.owner.token)
    r = owner.act(f"/b/{b}/versioning", {"state": "Enabled"})
    assert r.status_code == 303
    # any field order (the access line's format is the log's, text or JSON-ish key=value)
    peer = mesh.owner.id
    mesh.c.wait_for_log(rf"(?m)^(?=.*\bpeer=\W?{peer}\b)(?=.*\bop=\W?PutBucketVersioning\b)(?=.*\bstatus=\W?200\b).*$")
    assert mesh.owner.s3.get_bucket_versioning(Bucket=b)["Status"] == "Enabled"
