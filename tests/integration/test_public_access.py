"""Anonymous access and PublicAccessBlock (docs/access-control.md sections 5 and 8, step 6).

Anonymous requests are raw `http.client` requests with no credentials at all, as curl sends them. They are
decided as the anonymous principal: only a Principal "*" statement allows one, RestrictPublicBuckets takes
that away while the policy is public, and nothing lists the mesh's buckets or reaches the admin API for
them. The block itself: Put/Get/DeletePublicAccessBlock, the mesh default (on), BlockPublicPolicy refusing a
public policy, BlockPublicAcls refusing public canned ACLs before the AccessControlListNotSupported that
any other ACL gets; PutBucketAcl takes `private` only.
"""

from __future__ import annotations

import http.client
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator
from support.peers import err

FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
OFF = dict.fromkeys(FLAGS, False)


class Mesh:
    def __init__(self, c: Coordinator) -> None:
        self.c = c
        self.admin = c.client()
        r = c.cli("peer", "add", "owner", "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        peer = json.loads(r.stdout)
        self.owner_id = peer["peer_id"]
        self.owner = boto3.client(
            "s3",
            endpoint_url=c.endpoint,
            aws_access_key_id=peer["peer_id"],
            aws_secret_access_key=peer["token"],
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}),
        )

    def bucket(self) -> str:
        name = f"pub-{uuid.uuid4().hex[:16]}"
        self.owner.create_bucket(Bucket=name)
        return name

    def publish(self, b: str, *statements: dict[str, Any]) -> None:
        """Lift the block and put a policy of `statements` (default: anyone may GetObject)."""
        self.owner.delete_public_access_block(Bucket=b)
        sts = statements or (anyone(b, "s3:GetObject", f"{b}/*"),)
        self.owner.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": list(sts)}))


def anyone(b: str, action: Any, resource: str, effect: str = "Allow") -> dict[str, Any]:
    return {"Effect": effect, "Principal": "*", "Action": action, "Resource": f"arn:aws:s3:::{resource}"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    c = start_coordinator(tmp_path_factory.mktemp("public"))
    try:
        yield Mesh(c)
    finally:
        c.stop()


def raw(
    c: Coordinator, method: str, path: str, body: bytes | None = None, port: int | None = None
) -> tuple[int, bytes]:
    """One request with no credentials at all, as `curl http://coordinator/s3/B/K` sends it."""
    conn = http.client.HTTPConnection("127.0.0.1", port or c.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={} if body is None else {"Content-Length": str(len(body))})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def code(body: bytes) -> str | None:
    return ET.fromstring(body).findtext("Code") if body else None


def exists(s3: Any, b: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=b, Key=key)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False
    return True


# ---- anonymous reads ----------------------------------------------------------------------------------------


def test_curl_reads_a_published_object_and_restrict_public_buckets_takes_it_back(mesh: Mesh) -> None:
    b = mesh.bucket()
    mesh.owner.put_object(Bucket=b, Key="dist/app.tar", Body=b"artifact")
    assert raw(mesh.c, "GET", f"/s3/{b}/dist/app.tar")[0] == 403  # not published yet
    mesh.publish(b)
    assert raw(mesh.c, "GET", f"/s3/{b}/dist/app.tar") == (200, b"artifact")
    assert raw(mesh.c, "HEAD", f"/s3/{b}/dist/app.tar")[0] == 200
    # the second listener, at its root, answers the same
    assert raw(mesh.c, "GET", f"/{b}/dist/app.tar", port=mesh.c.s3_port) == (200, b"artifact")
    # a missing key: 403, since anonymous may not list the bucket (AWS)
    status, body = raw(mesh.c, "GET", f"/s3/{b}/dist/none")
    assert (status, code(body)) == (403, "AccessDenied")
    assert mesh.owner.get_bucket_policy_status(Bucket=b)["PolicyStatus"]["IsPublic"] is True

    mesh.owner.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=OFF | {"RestrictPublicBuckets": True})
    status, body = raw(mesh.c, "GET", f"/s3/{b}/dist/app.tar")
    assert (status, code(body)) == (403, "AccessDenied")
    # peers are not anonymous: the owner still reads it
    assert mesh.owner.get_object(Bucket=b, Key="dist/app.tar")["Body"].read() == b"artifact"
    mesh.owner.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=OFF)
    assert raw(mesh.c, "GET", f"/s3/{b}/dist/app.tar") == (200, b"artifact")


def test_anonymous_never_lists_buckets_even_with_everything_public(mesh: Mesh) -> None:
    b = mesh.bucket()
    mesh.publish(b, anyone(b, "s3:*", b), anyone(b, "s3:*", f"{b}/*"))
    for path, port in (("/s3/", mesh.c.port), ("/", mesh.c.s3_port)):
        status, body = raw(mesh.c, "GET", path, port=port)
        assert (status, code(body)) == (403, "AccessDenied")
        assert b.encode() not in body
    # the bucket's own listing is what the policy opened
    status, body = raw(mesh.c, "GET", f"/s3/{b}?list-type=2")
    assert status == 200, body


def test_anonymous_never_creates_a_bucket(mesh: Mesh) -> None:
    name = f"anon-{uuid.uuid4().hex[:12]}"
    status, body = raw(mesh.c, "PUT", f"/s3/{name}")
    assert (status, code(body)) == (403, "AccessDenied")
    assert err(lambda: mesh.admin.head_bucket(Bucket=name))[0] == 404


def test_anonymous_never_reaches_the_admin_api(mesh: Mesh) -> None:
    for path in ("/api/peers", "/api/storage", "/api/network"):
        status, _ = raw(mesh.c, "GET", path)
        assert status in (401, 403), (path, status)


# ---- anonymous writes ---------------------------------------------------------------------------------------


def test_anonymous_writes_only_where_a_star_statement_allows_it(mesh: Mesh) -> None:
    b = mesh.bucket()
    mesh.publish(b)  # GetObject only
    status, body = raw(mesh.c, "PUT", f"/s3/{b}/drop/x", body=b"hello")
    assert (status, code(body)) == (403, "AccessDenied")
    assert not exists(mesh.owner, b, "drop/x")
    status, body = raw(mesh.c, "DELETE", f"/s3/{b}/drop/x")
    assert (status, code(body)) == (403, "AccessDenied")

    mesh.publish(b, anyone(b, "s3:GetObject", f"{b}/*"), anyone(b, "s3:PutObject", f"{b}/drop/*"))
    assert raw(mesh.c, "PUT", f"/s3/{b}/drop/x", body=b"hello")[0] == 200
    # bucket-owner-enforced: what anonymous wrote belongs to the bucket's owner
    assert mesh.owner.get_object_acl(Bucket=b, Key="drop/x")["Owner"]["ID"] == mesh.owner_id
    assert mesh.owner.get_object(Bucket=b, Key="drop/x")["Body"].read() == b"hello"
    # outside the statement's prefix, and any other write action, stays refused
    status, body = raw(mesh.c, "PUT", f"/s3/{b}/elsewhere", body=b"x")
    assert (status, code(body)) == (403, "AccessDenied")
    assert not exists(mesh.owner, b, "elsewhere")
    status, body = raw(mesh.c, "DELETE", f"/s3/{b}/drop/x")
    assert (status, code(body)) == (403, "AccessDenied")
    assert exists(mesh.owner, b, "drop/x")
    status, body = raw(mesh.c, "PUT", f"/s3/{b}?tagging", body=b"<Tagging><TagSet/></Tagging>")
    assert (status, code(body)) == (403, "AccessDenied")


def test_a_form_upload_without_signature_stays_refused_even_when_anyone_may_put(mesh: Mesh) -> None:
    b = mesh.bucket()
    mesh.publish(b, anyone(b, "s3:PutObject", f"{b}/*"))
    files = [("key", (None, "posted")), ("file", ("f.bin", b"form", "application/octet-stream"))]
    r = requests.post(f"{mesh.c.endpoint}/{b}", files=files, timeout=60)
    assert (r.status_code, code(r.content)) == (403, "AccessDenied")
    assert not exists(mesh.owner, b, "posted")


# ---- the block ----------------------------------------------------------------------------------------------


def test_public_access_block_routes(mesh: Mesh) -> None:
    b = mesh.bucket()
    s3 = mesh.owner
    # never set: the mesh default, on (as AWS gives a new bucket)
    assert s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"] == dict.fromkeys(FLAGS, True)
    conf = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": False,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False,
    }
    r = s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=conf)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"] == conf
    r = s3.delete_public_access_block(Bucket=b)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert err(lambda: s3.get_public_access_block(Bucket=b)) == (404, "NoSuchPublicAccessBlockConfiguration")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls></PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><Surprise>true</Surprise></PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls>"
        b"<BlockPublicAcls>false</BlockPublicAcls></PublicAccessBlockConfiguration>",
        b"<Other/>",
        b"<PublicAccessBlockConfiguration>",
    ],
    ids=["empty", "not-a-boolean", "unknown-element", "twice", "wrong-root", "not-xml"],
)
def test_a_malformed_public_access_block_is_refused_and_nothing_changes(mesh: Mesh, body: bytes) -> None:
    b = mesh.bucket()
    before = mesh.owner.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"]
    r = requests.put(f"{mesh.c.endpoint}/{b}?publicAccessBlock", data=body, auth=("admin", mesh.c.token), timeout=30)
    assert (r.status_code, code(r.content)) == (400, "MalformedXML")
    assert mesh.owner.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"] == before


def test_block_public_policy_refuses_a_public_policy_and_only_that(mesh: Mesh) -> None:
    b = mesh.bucket()
    public = json.dumps({"Version": "2012-10-17", "Statement": [anyone(b, "s3:GetObject", f"{b}/*")]})
    assert err(lambda: mesh.owner.put_bucket_policy(Bucket=b, Policy=public)) == (403, "AccessDenied")
    assert err(lambda: mesh.owner.get_bucket_policy(Bucket=b)) == (404, "NoSuchBucketPolicy")
    # a source range that holds a whole mesh, or loopback (everyone behind a local proxy), is public all the same
    for cidr in ("10.1.0.0/16", "127.0.0.1/32"):
        wide = anyone(b, "s3:GetObject", f"{b}/*") | {"Condition": {"IpAddress": {"aws:SourceIp": cidr}}}
        text = json.dumps({"Version": "2012-10-17", "Statement": [wide]})
        assert err(lambda text=text: mesh.owner.put_bucket_policy(Bucket=b, Policy=text)) == (403, "AccessDenied")
    # a Deny for everyone, or an Allow limited to a narrow source, is not public
    for st in (
        anyone(b, "s3:GetObject", f"{b}/*", effect="Deny"),
        anyone(b, "s3:GetObject", f"{b}/*") | {"Condition": {"IpAddress": {"aws:SourceIp": "10.1.2.0/24"}}},
    ):
        text = json.dumps({"Version": "2012-10-17", "Statement": [st]})
        assert mesh.owner.put_bucket_policy(Bucket=b, Policy=text)["ResponseMetadata"]["HTTPStatusCode"] == 204
    # the mesh admin is refused as well: the block is the bucket's, not a peer's right
    assert err(lambda: mesh.admin.put_bucket_policy(Bucket=b, Policy=public)) == (403, "AccessDenied")
    mesh.owner.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=OFF)
    assert mesh.owner.put_bucket_policy(Bucket=b, Policy=public)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_block_public_acls_refuses_public_acls_before_the_acl_refusal(mesh: Mesh) -> None:
    b = mesh.bucket()
    s3 = mesh.owner
    for acl in ("public-read", "public-read-write", "authenticated-read"):
        assert err(lambda acl=acl: s3.put_object(Bucket=b, Key="k", Body=b"x", ACL=acl)) == (403, "AccessDenied")
        assert err(lambda acl=acl: s3.put_bucket_acl(Bucket=b, ACL=acl)) == (403, "AccessDenied")
    everyone = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'
    assert err(lambda: s3.put_object(Bucket=b, Key="k", Body=b"x", GrantRead=everyone)) == (403, "AccessDenied")
    assert not exists(s3, b, "k")
    s3.put_object(Bucket=b, Key="k", Body=b"x", ACL="private")
    # a new bucket gets the mesh default block: a public one cannot be created
    name = f"pub-{uuid.uuid4().hex[:12]}"
    assert err(lambda: s3.create_bucket(Bucket=name, ACL="public-read")) == (403, "AccessDenied")
    # without the block, ACLs are refused as before: the bucket stays bucket-owner-enforced
    s3.put_public_access_block(Bucket=b, PublicAccessBlockConfiguration=OFF)
    assert err(lambda: s3.put_object(Bucket=b, Key="k2", Body=b"x", ACL="public-read")) == (
        400,
        "AccessControlListNotSupported",
    )
    assert err(lambda: s3.put_bucket_acl(Bucket=b, ACL="public-read")) == (400, "AccessControlListNotSupported")
    assert not exists(s3, b, "k2")


def test_put_bucket_acl_takes_private_only(mesh: Mesh) -> None:
    b = mesh.bucket()
    s3 = mesh.owner
    assert s3.put_bucket_acl(Bucket=b, ACL="private")["ResponseMetadata"]["HTTPStatusCode"] == 200
    # what GetBucketAcl answers, put back as it is (a read-modify-write), is private
    acl = s3.get_bucket_acl(Bucket=b)
    policy = {"Owner": acl["Owner"], "Grants": acl["Grants"]}
    assert s3.put_bucket_acl(Bucket=b, AccessControlPolicy=policy)["ResponseMetadata"]["HTTPStatusCode"] == 200
    wider = policy | {
        "Grants": [*acl["Grants"], {"Grantee": {"Type": "CanonicalUser", "ID": "someone"}, "Permission": "READ"}]
    }
    assert err(lambda: s3.put_bucket_acl(Bucket=b, AccessControlPolicy=wider)) == (400, "AccessControlListNotSupported")
    public = policy | {
        "Grants": [
            *acl["Grants"],
            {
                "Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
                "Permission": "READ",
            },
        ]
    }
    assert err(lambda: s3.put_bucket_acl(Bucket=b, AccessControlPolicy=public)) == (403, "AccessDenied")
    assert s3.get_bucket_acl(Bucket=b)["Grants"] == acl["Grants"]


def test_the_block_routes_are_the_owners(mesh: Mesh) -> None:
    """Anonymous and a policy-less bucket: every block and policy route is refused, nothing is changed."""
    b = mesh.bucket()
    for method, query, body in (
        ("GET", "publicAccessBlock", None),
        ("DELETE", "publicAccessBlock", None),
        ("PUT", "policy", b"{}"),
        ("GET", "policyStatus", None),
        ("PUT", "acl", b""),
    ):
        status, reply = raw(mesh.c, method, f"/s3/{b}?{query}", body=body)
        assert (status, code(reply)) == (403, "AccessDenied"), (method, query)
    assert mesh.owner.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"] == dict.fromkeys(FLAGS, True)


def test_the_coordinators_default_block_is_off_when_the_network_says_so(mesh: Mesh) -> None:
    r = mesh.c.cli("network", "set", "default_public_access_block", "off", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        b = mesh.bucket()
        assert err(lambda: mesh.owner.get_public_access_block(Bucket=b)) == (
            404,
            "NoSuchPublicAccessBlockConfiguration",
        )
        public = json.dumps({"Version": "2012-10-17", "Statement": [anyone(b, "s3:GetObject", f"{b}/*")]})
        mesh.owner.put_bucket_policy(Bucket=b, Policy=public)
        mesh.owner.put_object(Bucket=b, Key="k", Body=b"open")
        assert raw(mesh.c, "GET", f"/s3/{b}/k") == (200, b"open")
    finally:
        r = mesh.c.cli("network", "set", "default_public_access_block", "on", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
