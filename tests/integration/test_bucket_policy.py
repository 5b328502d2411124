"""Bucket policies over S3 (docs/access-control.md section 8, step 5): Put/Get/DeleteBucketPolicy and
GetBucketPolicyStatus, what a policy refuses at put time, and what it decides once stored.

- the text comes back byte for byte; AWS's statuses (204 puts and deletes, 404 NoSuchBucketPolicy);
- MalformedPolicy (400) for a bad document, a principal naming no peer or group of the mesh;
- the Deny matrix: a policy denying `s3:Delete*` and `s3:PutObject` on `B/locked/*` to everyone binds the
  owner, another peer with the default read-write, and a mesh admin there, and nobody elsewhere; the owner and
  admins still manage the policy even when it denies that too (the escape hatch);
- a `NotIpAddress` Deny decided on the caller's address (127.0.0.1 here);
- an Allow naming a peer under the default none; GET of a missing key: 404 only to who may list it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator
from support.peers import err, s3_client

REGION = "us-east-1"


class Mesh:
    def __init__(self, c: Coordinator) -> None:
        self.c = c
        self.admin = c.client()
        self.ids: dict[str, str] = {}
        self.owner = self.add_peer("owner")
        self.other = self.add_peer("other")
        self.third = self.add_peer("third")

    def add_peer(self, name: str) -> Any:
        r = self.c.cli("peer", "add", name, "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        self.ids[name] = doc["peer_id"]
        return s3_client(self.c.endpoint, doc["peer_id"], doc["token"])

    def default(self, value: str) -> None:
        r = self.c.cli("network", "set", "default_bucket_access", value, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

    def bucket(self) -> str:
        name = f"p-{uuid.uuid4().hex[:16]}"
        self.owner.create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    c = start_coordinator(tmp_path_factory.mktemp("policy"))
    try:
        yield Mesh(c)
    finally:
        c.stop()


def status(r: dict[str, Any]) -> int:
    return int(r["ResponseMetadata"]["HTTPStatusCode"])


def doc(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def st(effect: str, principal: Any, action: Any, resource: Any, **more: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource, **more}


# ---- the four routes ---------------------------------------------------------------------------------------


def test_put_get_delete_round_trip_byte_for_byte_with_aws_statuses(mesh: Mesh) -> None:
    b = mesh.bucket()
    s3 = mesh.owner
    assert err(lambda: s3.get_bucket_policy(Bucket=b)) == (404, "NoSuchBucketPolicy")
    # odd spacing, key order and a unicode Sid: what comes back is exactly what was put
    other = mesh.ids["other"]
    text = (
        '{ "Statement" :[ {"Sid":"r\u00e9ad",  "Effect":"Allow","Principal":{"AWS":"' + other + '"},\n'
        '"Action":"s3:GetObject","Resource":"arn:aws:s3:::' + b + '/*"}], "Version":"2012-10-17"}'
    )
    assert status(s3.put_bucket_policy(Bucket=b, Policy=text)) == 204
    assert s3.get_bucket_policy(Bucket=b)["Policy"] == text
    got = s3.get_bucket_policy_status(Bucket=b)
    assert status(got) == 200 and got["PolicyStatus"]["IsPublic"] is False
    assert status(s3.delete_bucket_policy(Bucket=b)) == 204
    assert err(lambda: s3.get_bucket_policy(Bucket=b)) == (404, "NoSuchBucketPolicy")
    assert status(s3.delete_bucket_policy(Bucket=b)) == 204  # none: still 204, as AWS
    assert mesh.owner.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is False


def test_policy_routes_on_a_missing_bucket_are_no_such_bucket(mesh: Mesh) -> None:
    name = f"p-missing-{uuid.uuid4().hex[:8]}"
    assert err(lambda: mesh.owner.get_bucket_policy(Bucket=name)) == (404, "NoSuchBucket")
    assert err(lambda: mesh.owner.put_bucket_policy(Bucket=name, Policy=doc())) == (404, "NoSuchBucket")


MALFORMED = {
    "not json": lambda b, ids: "Statement: nothing",
    "json but not an object": lambda b, ids: "[1, 2]",
    "duplicate key": lambda b, ids: '{"Statement": [], "Statement": []}',
    "no statement": lambda b, ids: '{"Version": "2012-10-17"}',
    "empty statement": lambda b, ids: doc(),
    "bad effect": lambda b, ids: doc(st("Maybe", "*", "s3:GetObject", f"arn:aws:s3:::{b}/*")),
    "unknown action": lambda b, ids: doc(st("Allow", "*", "s3:FlyAway", f"arn:aws:s3:::{b}/*")),
    "another bucket": lambda b, ids: doc(st("Allow", "*", "s3:GetObject", "arn:aws:s3:::elsewhere/*")),
    "object action on the bucket": lambda b, ids: doc(st("Allow", "*", "s3:PutObject", f"arn:aws:s3:::{b}")),
    "NotPrincipal with Allow": lambda b, ids: doc(
        {"Effect": "Allow", "NotPrincipal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}
    ),
    "unknown peer": lambda b, ids: doc(
        st("Allow", {"AWS": "peer-000000000000"}, "s3:GetObject", f"arn:aws:s3:::{b}/*")
    ),
    "unknown user arn": lambda b, ids: doc(
        st("Allow", {"AWS": "arn:aws:iam::x:user/peer-nobody"}, "s3:GetObject", f"arn:aws:s3:::{b}/*")
    ),
    "unknown group": lambda b, ids: doc(
        st("Allow", {"AWS": "arn:aws:iam::mesh:group/no-such-group"}, "s3:GetObject", f"arn:aws:s3:::{b}/*")
    ),
    "service principal": lambda b, ids: doc(
        st("Allow", {"Service": "s3.amazonaws.com"}, "s3:GetObject", f"arn:aws:s3:::{b}/*")
    ),
    "bad condition operator": lambda b, ids: doc(
        st("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{b}/*", Condition={"Roughly": {"aws:SourceIp": "1.2.3.4"}})
    ),
    "bad CIDR": lambda b, ids: doc(
        st("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{b}/*", Condition={"IpAddress": {"aws:SourceIp": "1.2.3/99"}})
    ),
    "too large": lambda b, ids: doc(
        *[st("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{b}/{i:05d}-{'x' * 100}") for i in range(200)]
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_policy_is_refused_and_nothing_is_stored(mesh: Mesh, case: str) -> None:
    b = mesh.bucket()
    mesh.owner.put_bucket_policy(Bucket=b, Policy=doc(st("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{b}/x")))
    before = mesh.owner.get_bucket_policy(Bucket=b)["Policy"]
    assert err(lambda: mesh.owner.put_bucket_policy(Bucket=b, Policy=MALFORMED[case](b, mesh.ids))) == (
        400,
        "MalformedPolicy",
    )
    assert mesh.owner.get_bucket_policy(Bucket=b)["Policy"] == before


@pytest.mark.parametrize(
    "principal",
    [
        "peer id",
        "CanonicalUser",
        "user arn",
        "built-in group",
        "account root that is no peer",  # inert (s3-tests' s3tenant1), not refused
    ],
)
def test_principals_naming_what_exists_are_accepted(mesh: Mesh, principal: str) -> None:
    b = mesh.bucket()
    other = mesh.ids["other"]
    value = {
        "peer id": {"AWS": other},
        "CanonicalUser": {"CanonicalUser": other},
        "user arn": {"AWS": f"arn:aws:iam::mesh:user/{other}"},
        "built-in group": {"AWS": "arn:aws:iam::mesh:group/peers"},
        "account root that is no peer": {"AWS": "arn:aws:iam::s3tenant1:root"},
    }[principal]
    text = doc(st("Allow", value, "s3:GetObject", f"arn:aws:s3:::{b}/*"))
    assert status(mesh.owner.put_bucket_policy(Bucket=b, Policy=text)) == 204
    assert mesh.owner.get_bucket_policy(Bucket=b)["Policy"] == text


# ---- the Deny matrix ----------------------------------------------------------------------------------------


def locked_policy(b: str) -> str:
    return doc(
        st("Deny", "*", ["s3:Delete*", "s3:PutObject"], f"arn:aws:s3:::{b}/locked/*", Sid="locked"),
        # managing the policy itself is denied too: the owner and admins keep it all the same
        st("Deny", "*", ["s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"], f"arn:aws:s3:::{b}"),
    )


@pytest.mark.parametrize("who", ["owner", "other", "admin"])
def test_a_deny_binds_owner_other_peer_and_admin_under_its_prefix_only(mesh: Mesh, who: str) -> None:
    mesh.default("read-write")
    b = mesh.bucket()
    for key in ("locked/k", "free/k"):
        mesh.owner.put_object(Bucket=b, Key=key, Body=b"before")
    mesh.owner.put_bucket_policy(Bucket=b, Policy=locked_policy(b))
    s3 = {"owner": mesh.owner, "other": mesh.other, "admin": mesh.admin}[who]

    assert err(lambda: s3.put_object(Bucket=b, Key="locked/k", Body=b"after")) == (403, "AccessDenied")
    assert err(lambda: s3.put_object(Bucket=b, Key="locked/new", Body=b"n")) == (403, "AccessDenied")
    assert err(lambda: s3.delete_object(Bucket=b, Key="locked/k")) == (403, "AccessDenied")
    assert err(lambda: s3.delete_object_tagging(Bucket=b, Key="locked/k")) == (403, "AccessDenied")
    gone = s3.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "locked/k"}]})
    assert [(e["Key"], e["Code"]) for e in gone.get("Errors", [])] == [("locked/k", "AccessDenied")]
    # a copy into the prefix is a PutObject there
    assert err(lambda: s3.copy_object(Bucket=b, Key="locked/copy", CopySource=f"{b}/free/k")) == (403, "AccessDenied")
    # reading there is untouched, and so is everything outside the prefix
    assert s3.get_object(Bucket=b, Key="locked/k")["Body"].read() == b"before"
    assert status(s3.put_object(Bucket=b, Key="free/k", Body=b"after")) == 200
    assert status(s3.put_object(Bucket=b, Key="lockedx", Body=b"n")) == 200  # not under locked/
    assert status(s3.delete_object(Bucket=b, Key="free/k")) == 204
    # nothing under the prefix changed
    assert mesh.owner.get_object(Bucket=b, Key="locked/k")["Body"].read() == b"before"
    keys = [o["Key"] for o in mesh.owner.list_objects_v2(Bucket=b, Prefix="locked/").get("Contents", [])]
    assert keys == ["locked/k"]


def test_the_owner_and_admins_always_manage_the_policy(mesh: Mesh) -> None:
    mesh.default("read-write")
    b = mesh.bucket()
    text = locked_policy(b)
    mesh.owner.put_bucket_policy(Bucket=b, Policy=text)
    for s3 in (mesh.owner, mesh.admin):
        assert s3.get_bucket_policy(Bucket=b)["Policy"] == text
        assert status(s3.put_bucket_policy(Bucket=b, Policy=text)) == 204
    # another peer with read-write manages nothing of it (the role lacks the policy actions anyway)
    assert err(lambda: mesh.other.get_bucket_policy(Bucket=b)) == (403, "AccessDenied")
    assert err(lambda: mesh.other.put_bucket_policy(Bucket=b, Policy=doc())) == (403, "AccessDenied")
    assert err(lambda: mesh.other.delete_bucket_policy(Bucket=b)) == (403, "AccessDenied")
    assert mesh.owner.get_bucket_policy(Bucket=b)["Policy"] == text
    # the owner lifts it: the prefix is writable again at once
    assert status(mesh.owner.delete_bucket_policy(Bucket=b)) == 204
    assert status(mesh.other.put_object(Bucket=b, Key="locked/k", Body=b"n")) == 200


@pytest.mark.parametrize(("cidr", "refused"), [("10.0.0.0/8", True), ("127.0.0.0/8", False)])
def test_a_not_ip_address_deny_is_decided_on_the_callers_address(mesh: Mesh, cidr: str, refused: bool) -> None:
    b = mesh.bucket()
    mesh.owner.put_object(Bucket=b, Key="k", Body=b"data")
    cond = {"NotIpAddress": {"aws:SourceIp": cidr}}
    mesh.owner.put_bucket_policy(
        Bucket=b, Policy=doc(st("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{b}/*", Condition=cond))
    )
    for s3 in (mesh.owner, mesh.admin):  # the tests talk from 127.0.0.1
        if refused:
            assert err(lambda s3=s3: s3.get_object(Bucket=b, Key="k")) == (403, "AccessDenied")
        else:
            assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"data"
    assert status(mesh.owner.put_object(Bucket=b, Key="k2", Body=b"x")) == 200  # only GetObject is denied


# ---- allowing -------------------------------------------------------------------------------------------------


def test_a_policy_allows_a_named_peer_under_the_default_none(mesh: Mesh) -> None:
    mesh.default("none")
    try:
        b = mesh.bucket()
        mesh.owner.put_object(Bucket=b, Key="k", Body=b"shared")
        assert err(lambda: mesh.other.get_object(Bucket=b, Key="k")) == (403, "AccessDenied")
        text = doc(st("Allow", {"AWS": mesh.ids["other"]}, "s3:GetObject", f"arn:aws:s3:::{b}/*"))
        mesh.owner.put_bucket_policy(Bucket=b, Policy=text)
        assert mesh.other.get_object(Bucket=b, Key="k")["Body"].read() == b"shared"
        # that and nothing more: no write, no listing; another peer gets nothing
        assert err(lambda: mesh.other.put_object(Bucket=b, Key="k", Body=b"x")) == (403, "AccessDenied")
        assert err(lambda: mesh.other.list_objects_v2(Bucket=b)) == (403, "AccessDenied")
        assert err(lambda: mesh.third.get_object(Bucket=b, Key="k")) == (403, "AccessDenied")
        assert mesh.owner.get_object(Bucket=b, Key="k")["Body"].read() == b"shared"
        # the bucket shows in the named peer's listing, not in the third's
        assert b in {x["Name"] for x in mesh.other.list_buckets()["Buckets"]}
        assert b not in {x["Name"] for x in mesh.third.list_buckets()["Buckets"]}
    finally:
        mesh.default("read-write")


@pytest.mark.parametrize("may_list", [False, True], ids=["without-ListBucket", "with-ListBucket"])
def test_get_of_a_missing_key_is_404_only_to_who_may_list_it(mesh: Mesh, may_list: bool) -> None:
    mesh.default("none")
    try:
        b = mesh.bucket()
        other = {"AWS": mesh.ids["other"]}
        statements = [st("Allow", other, "s3:GetObject", f"arn:aws:s3:::{b}/*")]
        if may_list:
            statements.append(st("Allow", other, "s3:ListBucket", f"arn:aws:s3:::{b}"))
        mesh.owner.put_bucket_policy(Bucket=b, Policy=doc(*statements))
        expected = (404, "NoSuchKey") if may_list else (403, "AccessDenied")
        assert err(lambda: mesh.other.get_object(Bucket=b, Key="missing")) == expected
        assert err(lambda: mesh.other.head_object(Bucket=b, Key="missing"))[0] == expected[0]
    finally:
        mesh.default("read-write")


def test_a_condition_on_the_encryption_header_is_decided(mesh: Mesh) -> None:
    """s3:x-amz-server-side-encryption (s3-tests test_bucket_policy_put_obj_s3_noenc): a Deny of unencrypted
    PUTs refuses a PUT without the header, and lets one with it through to the store (which refuses it for
    want of a key file here, 400/501 rather than 403: the policy did not refuse it)."""
    b = mesh.bucket()
    cond = {"Null": {"s3:x-amz-server-side-encryption": "true"}}
    mesh.owner.put_bucket_policy(
        Bucket=b, Policy=doc(st("Deny", "*", "s3:PutObject", f"arn:aws:s3:::{b}/*", Condition=cond))
    )
    assert err(lambda: mesh.owner.put_object(Bucket=b, Key="plain", Body=b"x")) == (403, "AccessDenied")
    code = err(lambda: mesh.owner.put_object(Bucket=b, Key="sealed", Body=b"x", ServerSideEncryption="AES256"))
    assert code[0] != 403, code


# ---- audit -----------------------------------------------------------------------------------------------------


def audit_events(mesh: Mesh, bucket: str) -> list[dict[str, Any]]:
    """The audit records of `bucket`, read by the mesh admin from `_tunnelmesh/audit/` (section 6)."""
    out = []
    pages = mesh.admin.get_paginator("list_objects_v2").paginate(Bucket="_tunnelmesh", Prefix="audit/")
    for page in pages:
        for o in page.get("Contents", []):
            rec = json.loads(mesh.admin.get_object(Bucket="_tunnelmesh", Key=o["Key"])["Body"].read())
            if rec.get("bucket") == bucket:
                out.append(rec)
    return out


def test_policy_and_block_changes_are_audited(mesh: Mesh) -> None:
    b = mesh.bucket()
    text = doc(st("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{b}/x"))
    mesh.owner.put_bucket_policy(Bucket=b, Policy=text)
    mesh.owner.delete_bucket_policy(Bucket=b)
    mesh.admin.delete_public_access_block(Bucket=b)
    events = sorted((r["event"], r["actor"], r["via"]) for r in audit_events(mesh, b))
    assert events == [
        ("pab.delete", "admin", "s3"),
        ("policy.delete", mesh.ids["owner"], "s3"),
        ("policy.put", mesh.ids["owner"], "s3"),
    ]
    put = next(r for r in audit_events(mesh, b) if r["event"] == "policy.put")
    # the digest and size, never the text: a record per change must stay small whatever the policy's padding
    assert put["detail"] == {"sha256": hashlib.sha256(text.encode()).hexdigest(), "bytes": len(text), "statements": 1}


def test_a_padded_policy_is_refused_and_a_lone_surrogate_is_malformed(mesh: Mesh) -> None:
    """The text is kept byte for byte, so its raw size is capped (64 KiB), not only the compacted 20 KiB; a
    lone surrogate (valid JSON escapes, no valid text) is MalformedPolicy, never a 500."""
    b = mesh.bucket()
    text = doc(st("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{b}/x"))
    padded = text[:-1] + "\n" * 70000 + "}"
    for body, code in ((padded, "MaxMessageLengthExceeded"), (text.replace("/x", "/\\ud800"), "MalformedPolicy")):
        with pytest.raises(ClientError) as e:
            mesh.owner.put_bucket_policy(Bucket=b, Policy=body)
        assert (e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]) == (
            400,
            code,
        )
    with pytest.raises(ClientError) as e:
        mesh.owner.get_bucket_policy(Bucket=b)
    assert e.value.response["Error"]["Code"] == "NoSuchBucketPolicy"


@pytest.mark.parametrize(
    ("key", "value"),
    [("s3:authType", "REST-QUERY-STRING"), ("s3:signatureversion", "AWS")],
    ids=["authType", "signatureversion"],
)
def test_conditions_on_how_the_request_was_signed(mesh: Mesh, key: str, value: str) -> None:
    """A Deny of presigned URLs (s3:authType) or of SigV2 (s3:signatureversion): a SigV4 header request passes."""
    b = mesh.bucket()
    mesh.owner.put_object(Bucket=b, Key="k", Body=b"data")
    cond = {"StringEquals": {key: value}}
    text = doc(st("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{b}/*", Condition=cond))
    mesh.owner.put_bucket_policy(Bucket=b, Policy=text)
    assert mesh.owner.get_object(Bucket=b, Key="k")["Body"].read() == b"data"
    if key == "s3:authType":
        url = mesh.owner.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=600)
        assert requests.get(url, timeout=30).status_code == 403
    else:
        creds = mesh.owner._request_signer._credentials  # the same peer, signing the SigV2 way
        v2 = boto3.client(
            "s3",
            endpoint_url=mesh.c.endpoint,
            aws_access_key_id=creds.access_key,
            aws_secret_access_key=creds.secret_key,
            region_name=REGION,
            config=Config(signature_version="s3", retries={"max_attempts": 1}),
        )
        assert err(lambda: v2.get_object(Bucket=b, Key="k")) == (403, "AccessDenied")
        assert v2.put_object(Bucket=b, Key="k2", Body=b"x")["ResponseMetadata"]["HTTPStatusCode"] == 200
