"""Object-tag conditions in bucket policies (docs/access-control.md section 8, step 8), over a real coordinator
with boto3, under the mesh default `none` (so only the policy lets the other peer in):

- `s3:ExistingObjectTag/<k>`: decided once the operation has looked the object up, on the tags of the version
  asked for (GetObject, HeadObject, GetObjectAcl, PutObjectTagging: the tags before the change); a missing key
  answers as the GET-missing-key rule says; a Deny on a tag binds the owner too;
- `s3:RequestObjectTag/<k>` from x-amz-tagging (PutObject, CreateMultipartUpload) and `s3:RequestObjectTagKeys`
  from a PutObjectTagging body: a refused request writes nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from conftest import Coordinator, start_coordinator
from support.peers import err

REGION = "us-east-1"


class Mesh:
    def __init__(self, c: Coordinator) -> None:
        self.c = c
        self.ids: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.owner = self.add_peer("owner")
        self.other = self.add_peer("other")
        r = c.cli("network", "set", "default_bucket_access", "none", timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr

    def add_peer(self, name: str) -> Any:
        r = self.c.cli("peer", "add", name, "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        self.ids[name] = doc["peer_id"]
        self.tokens[name] = doc["token"]
        return self.client(name)

    def client(self, name: str, **config: Any) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.c.endpoint,
            aws_access_key_id=self.ids[name],
            aws_secret_access_key=self.tokens[name],
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, **config),
        )

    def bucket(self, *statements: dict[str, Any]) -> str:
        """A new bucket of the owner's with three objects (tagged security=public, security=private, and none)
        and a policy of `statements` (each given the other peer as principal and this bucket's resource)."""
        b = f"t-{uuid.uuid4().hex[:16]}"
        self.owner.create_bucket(Bucket=b)
        self.owner.put_object(Bucket=b, Key="public", Body=b"p", Tagging="security=public&foo=bar")
        self.owner.put_object(Bucket=b, Key="private", Body=b"q", Tagging="security=private")
        self.owner.put_object(Bucket=b, Key="untagged", Body=b"u")
        full = []
        for s in statements:
            resource = f"arn:aws:s3:::{b}" if s.pop("bucket_level", False) else f"arn:aws:s3:::{b}/*"
            full.append({"Effect": "Allow", "Principal": {"AWS": self.ids["other"]}, "Resource": resource, **s})
        if full:
            self.owner.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": full}))
        return b

    def tags(self, b: str, key: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self.owner.get_object_tagging(Bucket=b, Key=key)["TagSet"]}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    c = start_coordinator(tmp_path_factory.mktemp("objtags"))
    try:
        yield Mesh(c)
    finally:
        c.stop()


DENIED = (403, "AccessDenied")
PUBLIC = {"StringEquals": {"s3:ExistingObjectTag/security": "public"}}


@pytest.mark.parametrize("may_list", [False, True], ids=["without-ListBucket", "with-ListBucket"])
def test_get_object_only_where_the_existing_tag_says_public(mesh: Mesh, may_list: bool) -> None:
    statements = [{"Action": "s3:GetObject", "Condition": PUBLIC}]
    if may_list:
        statements.append({"Action": "s3:ListBucket", "bucket_level": True})
    b = mesh.bucket(*statements)
    assert mesh.other.get_object(Bucket=b, Key="public")["Body"].read() == b"p"
    assert mesh.other.head_object(Bucket=b, Key="public")["ContentLength"] == 1
    for key in ("private", "untagged"):
        assert err(lambda key=key: mesh.other.get_object(Bucket=b, Key=key)) == DENIED
        assert err(lambda key=key: mesh.other.head_object(Bucket=b, Key=key))[0] == 403
    # a missing key: 404 only to a caller who may list it (the GET-missing-key rule), else 403
    missing = (404, "NoSuchKey") if may_list else DENIED
    assert err(lambda: mesh.other.get_object(Bucket=b, Key="missing")) == missing
    assert err(lambda: mesh.other.head_object(Bucket=b, Key="missing"))[0] == missing[0]
    # only GetObject was allowed: its tags are not readable, even on the public object
    assert err(lambda: mesh.other.get_object_tagging(Bucket=b, Key="public")) == DENIED
    # a tag changed by the owner changes the answer at the next request
    mesh.owner.put_object_tagging(Bucket=b, Key="private", Tagging={"TagSet": [{"Key": "security", "Value": "public"}]})
    assert mesh.other.get_object(Bucket=b, Key="private")["Body"].read() == b"q"


def test_a_deny_on_an_existing_tag_binds_the_owner(mesh: Mesh) -> None:
    b = mesh.bucket()
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": ["s3:GetObject", "s3:GetObjectAcl"],
        "Resource": f"arn:aws:s3:::{b}/*",
        "Condition": {"StringEquals": {"s3:ExistingObjectTag/security": "private"}},
    }
    mesh.owner.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [deny]}))
    assert err(lambda: mesh.owner.get_object(Bucket=b, Key="private")) == DENIED
    assert err(lambda: mesh.owner.get_object_acl(Bucket=b, Key="private")) == DENIED
    assert mesh.owner.get_object(Bucket=b, Key="public")["Body"].read() == b"p"
    assert mesh.owner.get_object(Bucket=b, Key="untagged")["Body"].read() == b"u"
    assert mesh.owner.get_object_acl(Bucket=b, Key="untagged")["Owner"]["ID"] == mesh.ids["owner"]
    assert err(lambda: mesh.owner.get_object(Bucket=b, Key="missing")) == (404, "NoSuchKey")


def test_get_object_acl_and_tagging_on_the_existing_tag(mesh: Mesh) -> None:
    b = mesh.bucket({"Action": ["s3:GetObjectAcl", "s3:GetObjectTagging"], "Condition": PUBLIC})
    assert mesh.other.get_object_acl(Bucket=b, Key="public")["Owner"]["ID"] == mesh.ids["owner"]
    tags = mesh.other.get_object_tagging(Bucket=b, Key="public")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"security": "public", "foo": "bar"}
    for key in ("private", "untagged", "missing"):
        assert err(lambda key=key: mesh.other.get_object_acl(Bucket=b, Key=key)) == DENIED
        assert err(lambda key=key: mesh.other.get_object_tagging(Bucket=b, Key=key)) == DENIED
    assert err(lambda: mesh.other.get_object(Bucket=b, Key="public")) == DENIED


def test_put_object_tagging_only_while_the_existing_tag_matches(mesh: Mesh) -> None:
    """s3-tests test_bucket_policy_put_obj_tagging_existing_tag: the tags decided on are those before the change."""
    b = mesh.bucket({"Action": ["s3:PutObjectTagging", "s3:DeleteObjectTagging"], "Condition": PUBLIC})
    public = {"TagSet": [{"Key": "security", "Value": "public"}, {"Key": "foo", "Value": "baz"}]}
    assert mesh.other.put_object_tagging(Bucket=b, Key="public", Tagging=public)
    assert mesh.tags(b, "public") == {"security": "public", "foo": "baz"}
    assert err(lambda: mesh.other.put_object_tagging(Bucket=b, Key="private", Tagging=public)) == DENIED
    assert mesh.tags(b, "private") == {"security": "private"}  # unchanged
    assert err(lambda: mesh.other.delete_object_tagging(Bucket=b, Key="private")) == DENIED
    assert mesh.tags(b, "private") == {"security": "private"}
    assert err(lambda: mesh.other.put_object_tagging(Bucket=b, Key="missing", Tagging=public)) == DENIED
    # allowed while public: making it private is the last change the other peer may make
    private = {"TagSet": [{"Key": "security", "Value": "private"}]}
    mesh.other.put_object_tagging(Bucket=b, Key="public", Tagging=private)
    assert mesh.tags(b, "public") == {"security": "private"}
    assert err(lambda: mesh.other.put_object_tagging(Bucket=b, Key="public", Tagging=public)) == DENIED
    assert mesh.tags(b, "public") == {"security": "private"}


def test_put_object_only_with_the_request_tag(mesh: Mesh) -> None:
    team_a = {"StringEquals": {"s3:RequestObjectTag/team": "a"}}
    # PutObject with x-amz-tagging asks PutObjectTagging too (as on AWS)
    b = mesh.bucket({"Action": ["s3:PutObject", "s3:PutObjectTagging"], "Condition": team_a})
    assert mesh.other.put_object(Bucket=b, Key="new", Body=b"n", Tagging="team=a")["ETag"]
    assert mesh.tags(b, "new") == {"team": "a"}
    for key, tagging in (("none", None), ("other-team", "team=b"), ("other-key", "group=a")):
        extra = {} if tagging is None else {"Tagging": tagging}
        assert err(lambda key=key, extra=extra: mesh.other.put_object(Bucket=b, Key=key, Body=b"x", **extra)) == DENIED
        assert err(lambda key=key: mesh.owner.head_object(Bucket=b, Key=key))[0] == 404  # nothing written
    assert err(lambda: mesh.other.create_multipart_upload(Bucket=b, Key="mp", Tagging="team=b")) == DENIED
    assert mesh.owner.list_multipart_uploads(Bucket=b).get("Uploads", []) == []
    assert mesh.other.create_multipart_upload(Bucket=b, Key="mp", Tagging="team=a")["UploadId"]


def test_put_object_tagging_with_request_tag_keys(mesh: Mesh) -> None:
    """s3:RequestObjectTagKeys from the Tagging body: ForAllValues (every key in the set) and ForAnyValue."""
    b = mesh.bucket(
        {
            "Action": "s3:PutObjectTagging",
            "Condition": {"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "cost"]}},
        },
        {
            "Action": "s3:DeleteObjectTagging",
            "Condition": {"ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["team"]}},
        },
    )

    def tagging(**tags: str) -> dict[str, Any]:
        return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}

    mesh.other.put_object_tagging(Bucket=b, Key="untagged", Tagging=tagging(team="a", cost="1"))
    assert mesh.tags(b, "untagged") == {"team": "a", "cost": "1"}
    assert err(lambda: mesh.other.put_object_tagging(Bucket=b, Key="untagged", Tagging=tagging(team="b", x="1"))) == (
        DENIED
    )
    assert mesh.tags(b, "untagged") == {"team": "a", "cost": "1"}
    # a delete carries no tags: ForAnyValue over none does not hold
    assert err(lambda: mesh.other.delete_object_tagging(Bucket=b, Key="untagged")) == DENIED
    assert mesh.tags(b, "untagged") == {"team": "a", "cost": "1"}
    # an empty tag set: ForAllValues over none holds (IAM's rule)
    mesh.other.put_object_tagging(Bucket=b, Key="untagged", Tagging=tagging())
    assert mesh.tags(b, "untagged") == {}


def test_a_copy_reads_its_sources_tags(mesh: Mesh) -> None:
    """A Deny on a tag is not passed round by copying the object (then reading the copy): a copy's read of its
    source is decided on the source's tags; an Allow on a tag lets the copy through."""
    b = mesh.bucket(
        {"Action": "s3:GetObject", "Condition": PUBLIC},
        {"Action": "s3:PutObject"},
    )
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{b}/*",
        "Condition": {"StringEquals": {"s3:ExistingObjectTag/security": "private"}},
    }
    policy = json.loads(mesh.owner.get_bucket_policy(Bucket=b)["Policy"])
    policy["Statement"].append(deny)
    mesh.owner.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
    mesh.other.copy_object(Bucket=b, Key="copy-public", CopySource={"Bucket": b, "Key": "public"})
    assert mesh.owner.get_object(Bucket=b, Key="copy-public")["Body"].read() == b"p"
    for key in ("private", "untagged"):
        src = {"Bucket": b, "Key": key}
        assert err(lambda src=src: mesh.other.copy_object(Bucket=b, Key="copy", CopySource=src)) == DENIED
    # the owner is bound by the Deny too, and nothing was written
    copy = {"Bucket": b, "Key": "private"}
    assert err(lambda: mesh.owner.copy_object(Bucket=b, Key="copy", CopySource=copy)) == DENIED
    assert err(lambda: mesh.owner.head_object(Bucket=b, Key="copy"))[0] == 404


def test_a_form_uploads_tagging_field_is_the_request_tag(mesh: Mesh) -> None:
    b = mesh.bucket(
        {
            "Action": ["s3:PutObject", "s3:PutObjectTagging"],
            "Condition": {"StringEquals": {"s3:RequestObjectTag/team": "a"}},
        }
    )
    c = mesh.client("other", signature_version="s3v4")

    def post(key: str, team: str) -> int:
        doc = f"<Tagging><TagSet><Tag><Key>team</Key><Value>{team}</Value></Tag></TagSet></Tagging>"
        form = c.generate_presigned_post(b, key, Fields={"tagging": doc}, Conditions=[{"tagging": doc}])
        parts = [(n, (None, v)) for n, v in form["fields"].items()] + [("file", ("f", b"posted", "text/plain"))]
        return requests.post(form["url"], files=parts, timeout=60).status_code

    assert post("form-a", "a") == 204
    assert mesh.tags(b, "form-a") == {"team": "a"}
    assert post("form-b", "b") == 403
    assert err(lambda: mesh.owner.head_object(Bucket=b, Key="form-b"))[0] == 404


def test_a_version_is_decided_on_its_own_tags(mesh: Mesh) -> None:
    b = mesh.bucket({"Action": ["s3:GetObject", "s3:GetObjectVersion"], "Condition": PUBLIC})
    mesh.owner.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    v1 = mesh.owner.put_object(Bucket=b, Key="v", Body=b"one", Tagging="security=public")["VersionId"]
    v2 = mesh.owner.put_object(Bucket=b, Key="v", Body=b"two", Tagging="security=private")["VersionId"]
    assert mesh.other.get_object(Bucket=b, Key="v", VersionId=v1)["Body"].read() == b"one"
    assert err(lambda: mesh.other.get_object(Bucket=b, Key="v", VersionId=v2)) == DENIED
    assert err(lambda: mesh.other.get_object(Bucket=b, Key="v")) == DENIED  # the current version is v2


def test_anonymous_reads_only_the_objects_tagged_public(mesh: Mesh) -> None:
    """Publishing by tag: Principal "*" may GET what is tagged security=public, nothing else."""
    b = mesh.bucket()
    mesh.owner.delete_public_access_block(Bucket=b)
    allow = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}
    policy = {"Version": "2012-10-17", "Statement": [{**allow, "Condition": PUBLIC}]}
    mesh.owner.put_bucket_policy(Bucket=b, Policy=json.dumps(policy))
    r = requests.get(f"{mesh.c.endpoint}/{b}/public", timeout=60)
    assert (r.status_code, r.content) == (200, b"p")
    for key in ("private", "untagged", "missing"):
        r = requests.get(f"{mesh.c.endpoint}/{b}/{key}", timeout=60)
        assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content, (key, r.status_code)
