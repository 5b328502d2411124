"""The access matrix (docs/access-control.md section 8, step 2): every route of `s3.router.ROUTES`, and each
`?versionId=` variant whose action differs, tried by four principals under each mesh default.

- `owner` (the peer that created the bucket) and `admin` (the mesh's bootstrap admin) are always allowed, but
  for a governance bypass, which is the admin's unless a statement grants it;
- `other` (another ordinary peer) is allowed iff every action of the row is in the default's role set
  (`read-write` -> write, `read` -> read, `none` -> nothing); it may always list buckets (seeing this one iff
  the default is not `none`) and create new ones, and never delete another's bucket;
- `anonymous` (no credentials) is always refused: the bucket's policy has no Principal "*" Allow.

The same matrix runs again (for the `read-write` default) under a second bucket policy, `deny-writes`:
Deny statements for Principal "*" on every write-like action (`s3:Put*`, `s3:Delete*`, AbortMultipartUpload,
BypassGovernanceRetention). A Deny binds everyone, owner and mesh admin included (section 1 step 2), so every
row asking one of those actions is refused for all four principals, but for the escape hatch: the owner and
mesh admins may always Get/Put/DeleteBucketPolicy. Rows that only read answer as under the plain policy.

Rows for the headers that ask more (x-amz-tagging, the object-lock headers, the governance bypass) are
here too. The actions of each row are written out here from the design's table 2.4, not taken from the router: this
file is what checks the router's mapping. A refusal is a 403 AccessDenied and leaves the bucket exactly as it
was (versions, tags, locks, configurations and uploads, read by the owner before and after); an allowance
is a success. Each cell gets its own bucket; one coordinator serves the module.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator, tunnelmesh_exe

from tunnelmesh.access.actions import ACTIONS, BYPASS, ROLES, Kind
from tunnelmesh.s3.router import ROUTES

REGION = "us-east-1"
DEFAULTS = ("read-write", "read", "none")
ROLE_OF_DEFAULT: dict[str, str | None] = {"read-write": "write", "read": "read", "none": None}
PRINCIPALS = ("owner", "admin", "other", "anonymous")
POLICIES = ("plain", "deny-writes")  # the fixture bucket's policy: a Deny that bites nothing, or one on every write
AES = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


def days(n: float) -> datetime.datetime:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=n)).replace(microsecond=0)


# ---- the bucket each cell works on ----------------------------------------------------------------


@dataclass(frozen=True)
class Fx:
    """A fresh object-lock bucket owned by `owner`: key `a` with two versions (a1 older, a2 current under a
    legal hold, both tagged), key `b` (tagged, under GOVERNANCE retention), bucket tags, a lifecycle rule,
    default encryption, a CORS rule, an in-progress upload of `mp` with one part, and a bucket policy: under
    `plain` one Deny that touches no key of the rows (a Deny names nobody: the mesh default still applies to
    everyone), under `deny-writes` that Deny plus Denies on every write (`deny_writes_policy`)."""

    name: str
    owner: Any
    endpoint: str
    a1: str
    a2: str
    b: str
    upload: str
    part_etag: str


def new_bucket(owner: Any, endpoint: str, policy: str) -> Fx:
    name = f"m-{uuid.uuid4().hex[:16]}"
    owner.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    a1 = owner.put_object(Bucket=name, Key="a", Body=b"one", Tagging="t=a1")["VersionId"]
    a2 = owner.put_object(Bucket=name, Key="a", Body=b"two", Tagging="t=a2", ObjectLockLegalHoldStatus="ON")
    b = owner.put_object(
        Bucket=name, Key="b", Body=b"bee", Tagging="t=b", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=days(1)
    )["VersionId"]
    owner.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "team", "Value": "x"}]})
    owner.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration=lifecycle("tmp/", 30))
    owner.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=AES)
    owner.put_bucket_cors(Bucket=name, CORSConfiguration=cors_rules("https://a.mesh"))
    upload = owner.create_multipart_upload(Bucket=name, Key="mp")["UploadId"]
    etag = owner.upload_part(Bucket=name, Key="mp", UploadId=upload, PartNumber=1, Body=b"part one")["ETag"]
    # last: under deny-writes the owner could not set anything up after it
    owner.put_bucket_policy(Bucket=name, Policy=policy_of(policy, name))
    return Fx(name, owner, endpoint, a1, a2["VersionId"], b, upload, etag)


def deny_policy(bucket: str, prefix: str) -> str:
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/{prefix}*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


# the write-like actions deny_writes_policy names; `denied_by_deny_writes` mirrors it
DENIED_PREFIXES = ("s3:Put", "s3:Delete")
DENIED_OBJECT_ACTIONS = ("s3:AbortMultipartUpload", "s3:BypassGovernanceRetention")


def deny_writes_policy(bucket: str) -> str:
    """The plain Deny on `never/`, a Deny on every bucket-level write of B and one on every object-level write
    under B. Literal actions sit only in the statement whose resource is of their kind (section 2.1); each
    wildcard keeps the actions that fit its statement's resource."""
    never = json.loads(deny_policy(bucket, "never/"))["Statement"][0]
    bucket_writes = {
        "Sid": "NoBucketWrites",
        "Effect": "Deny",
        "Principal": "*",
        "Action": [f"{p}*" for p in DENIED_PREFIXES],
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    object_writes = {
        "Sid": "NoObjectWrites",
        "Effect": "Deny",
        "Principal": "*",
        "Action": [f"{p}*" for p in DENIED_PREFIXES] + list(DENIED_OBJECT_ACTIONS),
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [never, bucket_writes, object_writes]})


def policy_of(policy: str, bucket: str) -> str:
    return deny_writes_policy(bucket) if policy == "deny-writes" else deny_policy(bucket, "never/")


PAB_OFF = {f: False for f in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")}


def lifecycle(prefix: str, n: int) -> dict[str, Any]:
    return {"Rules": [{"ID": prefix, "Filter": {"Prefix": prefix}, "Status": "Enabled", "Expiration": {"Days": n}}]}


def cors_rules(origin: str) -> dict[str, Any]:
    return {"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": [origin]}]}


def read_or_code(fn: Callable[[], Any]) -> Any:
    """The answer without its metadata, or the error code (an absent configuration is part of the state)."""
    try:
        r = fn()
    except ClientError as e:
        return ("error", e.response["Error"]["Code"])
    r.pop("ResponseMetadata", None)
    return r


def exists(s3: Any, bucket: str) -> bool:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        return False
    return True


def snapshot(fx: Fx) -> dict[str, Any]:
    """Everything a refused request could have changed, as the owner reads it."""
    s3, b = fx.owner, fx.name
    v = s3.list_object_versions(Bucket=b)
    versions = sorted((x["Key"], x["VersionId"], x["ETag"], x["IsLatest"]) for x in v.get("Versions", []))
    markers = sorted((x["Key"], x["VersionId"], x["IsLatest"]) for x in v.get("DeleteMarkers", []))
    per_version = {}
    for key, vid, _, _ in versions:
        tags = s3.get_object_tagging(Bucket=b, Key=key, VersionId=vid)["TagSet"]
        head = s3.head_object(Bucket=b, Key=key, VersionId=vid)
        lock = (
            head.get("ObjectLockMode"),
            head.get("ObjectLockRetainUntilDate"),
            head.get("ObjectLockLegalHoldStatus"),
        )
        per_version[(key, vid)] = (sorted((t["Key"], t["Value"]) for t in tags), lock)
    uploads = sorted((u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=b).get("Uploads", []))
    parts = {
        up: sorted(
            (p["PartNumber"], p["ETag"], p["Size"])
            for p in s3.list_parts(Bucket=b, Key=key, UploadId=up).get("Parts", [])
        )
        for key, up in uploads
    }
    return {
        "versions": versions,
        "markers": markers,
        "per_version": per_version,
        "versioning": read_or_code(lambda: s3.get_bucket_versioning(Bucket=b)),
        "tagging": read_or_code(lambda: s3.get_bucket_tagging(Bucket=b)),
        "lifecycle": read_or_code(lambda: s3.get_bucket_lifecycle_configuration(Bucket=b)),
        "encryption": read_or_code(lambda: s3.get_bucket_encryption(Bucket=b)),
        "cors": read_or_code(lambda: s3.get_bucket_cors(Bucket=b)),
        "lock": read_or_code(lambda: s3.get_object_lock_configuration(Bucket=b)),
        "policy": read_or_code(lambda: s3.get_bucket_policy(Bucket=b)),
        "public_access_block": read_or_code(lambda: s3.get_public_access_block(Bucket=b)),
        "uploads": uploads,
        "parts": parts,
        # the buckets the CreateBucket / DeleteBucket rows aim at
        "new_bucket": exists(s3, f"{b}-n"),
        "empty_bucket": exists(s3, f"{b}-e"),
    }


# ---- outcomes and the operations ------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    code: str | None = None
    answer: Any = None


def attempt(fn: Callable[[], Any]) -> Outcome:
    try:
        r = fn()
    except ClientError as e:
        return Outcome(e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
    return Outcome(r["ResponseMetadata"]["HTTPStatusCode"], None, r)


def body_is(expected: bytes) -> Callable[[Any], bool]:
    return lambda r: r["Body"].read() == expected


Op = Callable[[Any, Fx], Outcome]


def is_anonymous(c: Any) -> bool:
    return c.meta.config.signature_version is UNSIGNED


def post_object(c: Any, fx: Fx) -> Outcome:
    """A browser form upload: signed with the principal's credentials, or (anonymous) carrying none."""
    if is_anonymous(c):
        url, fields = f"{fx.endpoint}/{fx.name}", {"key": "posted"}
    else:
        p = c.generate_presigned_post(fx.name, "posted", ExpiresIn=600)
        url, fields = p["url"], p["fields"]
    files = [(k, (None, v)) for k, v in fields.items()] + [("file", ("f.bin", b"form", "application/octet-stream"))]
    r = requests.post(url, files=files, timeout=60)
    code = ET.fromstring(r.content).findtext("Code") if r.content else None
    return Outcome(r.status_code, code, r)


def delete_objects(objects: Callable[[Fx], list[dict[str, str]]]) -> Op:
    def op(c: Any, fx: Fx) -> Outcome:
        return attempt(lambda: c.delete_objects(Bucket=fx.name, Delete={"Objects": objects(fx)}))

    return op


@dataclass(frozen=True)
class Row:
    name: str  # the route name, or `<route>+versionId` for a variant
    route: str  # the name in ROUTES it exercises
    actions: frozenset[str]
    op: Op
    head: bool = False  # a HEAD answer has no body: its refusal shows only as 403
    check: Callable[[Any], bool] | None = None  # on an allowed success: the answer is the right one


def row(name: str, actions: str, op: Op, route: str | None = None, **kw: Any) -> Row:
    return Row(name, route or name.split("+")[0], frozenset(f"s3:{a}" for a in actions.split()), op, **kw)


V = "+versionId"
ROWS: tuple[Row, ...] = (
    row("ListBuckets", "ListAllMyBuckets", lambda c, fx: attempt(c.list_buckets)),
    row("CreateBucket", "CreateBucket", lambda c, fx: attempt(lambda: c.create_bucket(Bucket=f"{fx.name}-n"))),
    row("DeleteBucket", "DeleteBucket", lambda c, fx: attempt(lambda: c.delete_bucket(Bucket=f"{fx.name}-e"))),
    row("HeadBucket", "ListBucket", lambda c, fx: attempt(lambda: c.head_bucket(Bucket=fx.name)), head=True),
    row(
        "ListObjects",
        "ListBucket",
        lambda c, fx: attempt(lambda: c.list_objects(Bucket=fx.name)),
        check=lambda r: [o["Key"] for o in r["Contents"]] == ["a", "b"],
    ),
    row(
        "ListObjectsV2",
        "ListBucket",
        lambda c, fx: attempt(lambda: c.list_objects_v2(Bucket=fx.name)),
        check=lambda r: [o["Key"] for o in r["Contents"]] == ["a", "b"],
    ),
    row(
        "ListObjectVersions",
        "ListBucketVersions",
        lambda c, fx: attempt(lambda: c.list_object_versions(Bucket=fx.name)),
    ),
    row(
        "ListMultipartUploads",
        "ListBucketMultipartUploads",
        lambda c, fx: attempt(lambda: c.list_multipart_uploads(Bucket=fx.name)),
        check=lambda r: [u["UploadId"] for u in r["Uploads"]] != [],
    ),
    row("GetBucketLocation", "GetBucketLocation", lambda c, fx: attempt(lambda: c.get_bucket_location(Bucket=fx.name))),
    row("GetBucketAcl", "GetBucketAcl", lambda c, fx: attempt(lambda: c.get_bucket_acl(Bucket=fx.name))),
    row(
        "GetBucketVersioning",
        "GetBucketVersioning",
        lambda c, fx: attempt(lambda: c.get_bucket_versioning(Bucket=fx.name)),
        check=lambda r: r["Status"] == "Enabled",
    ),
    row(
        "PutBucketVersioning",
        "PutBucketVersioning",
        lambda c, fx: attempt(
            lambda: c.put_bucket_versioning(Bucket=fx.name, VersioningConfiguration={"Status": "Enabled"})
        ),
    ),
    row(
        "GetBucketTagging",
        "GetBucketTagging",
        lambda c, fx: attempt(lambda: c.get_bucket_tagging(Bucket=fx.name)),
        check=lambda r: r["TagSet"] == [{"Key": "team", "Value": "x"}],
    ),
    row(
        "PutBucketTagging",
        "PutBucketTagging",
        lambda c, fx: attempt(
            lambda: c.put_bucket_tagging(Bucket=fx.name, Tagging={"TagSet": [{"Key": "team", "Value": "y"}]})
        ),
    ),
    row(
        "DeleteBucketTagging",
        "PutBucketTagging",
        lambda c, fx: attempt(lambda: c.delete_bucket_tagging(Bucket=fx.name)),
    ),
    row(
        "GetBucketLifecycleConfiguration",
        "GetLifecycleConfiguration",
        lambda c, fx: attempt(lambda: c.get_bucket_lifecycle_configuration(Bucket=fx.name)),
        check=lambda r: r["Rules"][0]["ID"] == "tmp/",
    ),
    row(
        "PutBucketLifecycleConfiguration",
        "PutLifecycleConfiguration",
        lambda c, fx: attempt(
            lambda: c.put_bucket_lifecycle_configuration(Bucket=fx.name, LifecycleConfiguration=lifecycle("old/", 9))
        ),
    ),
    row(
        "DeleteBucketLifecycle",
        "PutLifecycleConfiguration",
        lambda c, fx: attempt(lambda: c.delete_bucket_lifecycle(Bucket=fx.name)),
    ),
    row(
        "GetBucketCors",
        "GetBucketCORS",
        lambda c, fx: attempt(lambda: c.get_bucket_cors(Bucket=fx.name)),
        check=lambda r: r["CORSRules"][0]["AllowedOrigins"] == ["https://a.mesh"],
    ),
    row(
        "PutBucketCors",
        "PutBucketCORS",
        lambda c, fx: attempt(
            lambda: c.put_bucket_cors(Bucket=fx.name, CORSConfiguration=cors_rules("https://b.mesh"))
        ),
    ),
    row("DeleteBucketCors", "PutBucketCORS", lambda c, fx: attempt(lambda: c.delete_bucket_cors(Bucket=fx.name))),
    row(
        "GetBucketEncryption",
        "GetEncryptionConfiguration",
        lambda c, fx: attempt(lambda: c.get_bucket_encryption(Bucket=fx.name)),
    ),
    row(
        "PutBucketEncryption",
        "PutEncryptionConfiguration",
        lambda c, fx: attempt(lambda: c.put_bucket_encryption(Bucket=fx.name, ServerSideEncryptionConfiguration=AES)),
    ),
    row(
        "DeleteBucketEncryption",
        "PutEncryptionConfiguration",
        lambda c, fx: attempt(lambda: c.delete_bucket_encryption(Bucket=fx.name)),
    ),
    row(
        "GetObjectLockConfiguration",
        "GetBucketObjectLockConfiguration",
        lambda c, fx: attempt(lambda: c.get_object_lock_configuration(Bucket=fx.name)),
        check=lambda r: r["ObjectLockConfiguration"]["ObjectLockEnabled"] == "Enabled",
    ),
    row(
        "PutObjectLockConfiguration",
        "PutBucketObjectLockConfiguration",
        lambda c, fx: attempt(
            lambda: c.put_object_lock_configuration(
                Bucket=fx.name,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
                },
            )
        ),
    ),
    row(
        "PutBucketAcl",
        "PutBucketAcl",
        lambda c, fx: attempt(lambda: c.put_bucket_acl(Bucket=fx.name, ACL="private")),
    ),
    row(
        "GetBucketPolicy",
        "GetBucketPolicy",
        lambda c, fx: attempt(lambda: c.get_bucket_policy(Bucket=fx.name)),
        check=lambda r: "never/" in r["Policy"],
    ),
    row(
        "PutBucketPolicy",
        "PutBucketPolicy",
        lambda c, fx: attempt(lambda: c.put_bucket_policy(Bucket=fx.name, Policy=deny_policy(fx.name, "other/"))),
    ),
    row(
        "DeleteBucketPolicy",
        "DeleteBucketPolicy",
        lambda c, fx: attempt(lambda: c.delete_bucket_policy(Bucket=fx.name)),
    ),
    row(
        "GetBucketPolicyStatus",
        "GetBucketPolicyStatus",
        lambda c, fx: attempt(lambda: c.get_bucket_policy_status(Bucket=fx.name)),
        check=lambda r: r["PolicyStatus"]["IsPublic"] is False,
    ),
    row(
        "GetPublicAccessBlock",
        "GetBucketPublicAccessBlock",
        lambda c, fx: attempt(lambda: c.get_public_access_block(Bucket=fx.name)),
        check=lambda r: r["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True,  # the mesh default: on
    ),
    row(
        "PutPublicAccessBlock",
        "PutBucketPublicAccessBlock",
        lambda c, fx: attempt(
            lambda: c.put_public_access_block(Bucket=fx.name, PublicAccessBlockConfiguration=PAB_OFF)
        ),
    ),
    row(
        "DeletePublicAccessBlock",
        "PutBucketPublicAccessBlock",
        lambda c, fx: attempt(lambda: c.delete_public_access_block(Bucket=fx.name)),
    ),
    # DeleteObjects asks per key: a refused key is an <Error> in a 200 answer (checked in `test_cell`)
    row("DeleteObjects", "DeleteObject", delete_objects(lambda fx: [{"Key": "a"}, {"Key": "b"}])),
    row("DeleteObjects" + V, "DeleteObjectVersion", delete_objects(lambda fx: [{"Key": "a", "VersionId": fx.a1}])),
    row("PostObject", "PutObject", post_object),
    row(
        "GetObject",
        "GetObject",
        lambda c, fx: attempt(lambda: c.get_object(Bucket=fx.name, Key="a")),
        check=body_is(b"two"),
    ),
    row(
        "GetObject" + V,
        "GetObjectVersion",
        lambda c, fx: attempt(lambda: c.get_object(Bucket=fx.name, Key="a", VersionId=fx.a1)),
        check=body_is(b"one"),
    ),
    row("HeadObject", "GetObject", lambda c, fx: attempt(lambda: c.head_object(Bucket=fx.name, Key="a")), head=True),
    row(
        "HeadObject" + V,
        "GetObjectVersion",
        lambda c, fx: attempt(lambda: c.head_object(Bucket=fx.name, Key="a", VersionId=fx.a1)),
        head=True,
    ),
    row("GetObjectAcl", "GetObjectAcl", lambda c, fx: attempt(lambda: c.get_object_acl(Bucket=fx.name, Key="a"))),
    row(
        "GetObjectAcl" + V,
        "GetObjectVersionAcl",
        lambda c, fx: attempt(lambda: c.get_object_acl(Bucket=fx.name, Key="a", VersionId=fx.a1)),
    ),
    row(
        "GetObjectAttributes",
        "GetObjectAttributes",
        lambda c, fx: attempt(lambda: c.get_object_attributes(Bucket=fx.name, Key="a", ObjectAttributes=["ETag"])),
    ),
    row(
        "GetObjectAttributes" + V,
        "GetObjectVersionAttributes",
        lambda c, fx: attempt(
            lambda: c.get_object_attributes(Bucket=fx.name, Key="a", VersionId=fx.a1, ObjectAttributes=["ETag"])
        ),
    ),
    row(
        "GetObjectTagging",
        "GetObjectTagging",
        lambda c, fx: attempt(lambda: c.get_object_tagging(Bucket=fx.name, Key="a")),
        check=lambda r: r["TagSet"] == [{"Key": "t", "Value": "a2"}],
    ),
    row(
        "GetObjectTagging" + V,
        "GetObjectVersionTagging",
        lambda c, fx: attempt(lambda: c.get_object_tagging(Bucket=fx.name, Key="a", VersionId=fx.a1)),
        check=lambda r: r["TagSet"] == [{"Key": "t", "Value": "a1"}],
    ),
    row(
        "PutObjectTagging",
        "PutObjectTagging",
        lambda c, fx: attempt(
            lambda: c.put_object_tagging(Bucket=fx.name, Key="a", Tagging={"TagSet": [{"Key": "t", "Value": "n"}]})
        ),
    ),
    row(
        "PutObjectTagging" + V,
        "PutObjectVersionTagging",
        lambda c, fx: attempt(
            lambda: c.put_object_tagging(
                Bucket=fx.name, Key="a", VersionId=fx.a1, Tagging={"TagSet": [{"Key": "t", "Value": "n"}]}
            )
        ),
    ),
    row(
        "DeleteObjectTagging",
        "DeleteObjectTagging",
        lambda c, fx: attempt(lambda: c.delete_object_tagging(Bucket=fx.name, Key="a")),
    ),
    row(
        "DeleteObjectTagging" + V,
        "DeleteObjectVersionTagging",
        lambda c, fx: attempt(lambda: c.delete_object_tagging(Bucket=fx.name, Key="a", VersionId=fx.a1)),
    ),
    row(
        "GetObjectRetention",
        "GetObjectRetention",
        lambda c, fx: attempt(lambda: c.get_object_retention(Bucket=fx.name, Key="b")),
        check=lambda r: r["Retention"]["Mode"] == "GOVERNANCE",
    ),
    row(
        "PutObjectRetention",  # an extension: no bypass needed
        "PutObjectRetention",
        lambda c, fx: attempt(
            lambda: c.put_object_retention(
                Bucket=fx.name, Key="b", Retention={"Mode": "GOVERNANCE", "RetainUntilDate": days(2)}
            )
        ),
    ),
    row(
        "GetObjectLegalHold",
        "GetObjectLegalHold",
        lambda c, fx: attempt(lambda: c.get_object_legal_hold(Bucket=fx.name, Key="a")),
        check=lambda r: r["LegalHold"]["Status"] == "ON",
    ),
    row(
        "PutObjectLegalHold",
        "PutObjectLegalHold",
        lambda c, fx: attempt(lambda: c.put_object_legal_hold(Bucket=fx.name, Key="a", LegalHold={"Status": "OFF"})),
    ),
    row("PutObject", "PutObject", lambda c, fx: attempt(lambda: c.put_object(Bucket=fx.name, Key="new", Body=b"n"))),
    # headers that ask more than the route's action (table 2.4's EXTRA_ASKS)
    row(
        "PutObject+tagging",
        "PutObject PutObjectTagging",
        lambda c, fx: attempt(lambda: c.put_object(Bucket=fx.name, Key="new", Body=b"n", Tagging="t=n")),
    ),
    row(
        "PutObject+retention",
        "PutObject PutObjectRetention",
        lambda c, fx: attempt(
            lambda: c.put_object(
                Bucket=fx.name, Key="new", Body=b"n", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=days(1)
            )
        ),
    ),
    row(
        "PutObject+legalHold",
        "PutObject PutObjectLegalHold",
        lambda c, fx: attempt(
            lambda: c.put_object(Bucket=fx.name, Key="new", Body=b"n", ObjectLockLegalHoldStatus="ON")
        ),
    ),
    row(
        "CopyObject",
        "PutObject GetObject",
        lambda c, fx: attempt(lambda: c.copy_object(Bucket=fx.name, Key="copied", CopySource=f"{fx.name}/a")),
    ),
    row(
        "CopyObject" + V,
        "PutObject GetObjectVersion",
        lambda c, fx: attempt(
            lambda: c.copy_object(
                Bucket=fx.name, Key="copied", CopySource={"Bucket": fx.name, "Key": "a", "VersionId": fx.a1}
            )
        ),
    ),
    row(
        "CreateMultipartUpload",
        "PutObject",
        lambda c, fx: attempt(lambda: c.create_multipart_upload(Bucket=fx.name, Key="mp2")),
    ),
    row(
        "UploadPart",
        "PutObject",
        lambda c, fx: attempt(
            lambda: c.upload_part(Bucket=fx.name, Key="mp", UploadId=fx.upload, PartNumber=2, Body=b"part two")
        ),
    ),
    row(
        "UploadPartCopy",
        "PutObject GetObject",
        lambda c, fx: attempt(
            lambda: c.upload_part_copy(
                Bucket=fx.name, Key="mp", UploadId=fx.upload, PartNumber=2, CopySource=f"{fx.name}/a"
            )
        ),
    ),
    row(
        "ListParts",
        "ListMultipartUploadParts",
        lambda c, fx: attempt(lambda: c.list_parts(Bucket=fx.name, Key="mp", UploadId=fx.upload)),
        check=lambda r: [p["PartNumber"] for p in r["Parts"]] == [1],
    ),
    row(
        "CompleteMultipartUpload",
        "PutObject",
        lambda c, fx: attempt(
            lambda: c.complete_multipart_upload(
                Bucket=fx.name,
                Key="mp",
                UploadId=fx.upload,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": fx.part_etag}]},
            )
        ),
    ),
    row(
        "AbortMultipartUpload",
        "AbortMultipartUpload",
        lambda c, fx: attempt(lambda: c.abort_multipart_upload(Bucket=fx.name, Key="mp", UploadId=fx.upload)),
    ),
    row("DeleteObject", "DeleteObject", lambda c, fx: attempt(lambda: c.delete_object(Bucket=fx.name, Key="a"))),
    row(
        "DeleteObject" + V,
        "DeleteObjectVersion",
        lambda c, fx: attempt(lambda: c.delete_object(Bucket=fx.name, Key="a", VersionId=fx.a1)),
    ),
    row(
        "DeleteObject" + V + "+bypass",  # b's version is under GOVERNANCE retention
        "DeleteObjectVersion BypassGovernanceRetention",
        lambda c, fx: attempt(
            lambda: c.delete_object(Bucket=fx.name, Key="b", VersionId=fx.b, BypassGovernanceRetention=True)
        ),
    ),
)
ROW_BY_NAME = {r.name: r for r in ROWS}
DELETED_KEYS = {"DeleteObjects": ["a", "b"], "DeleteObjects" + V: ["a"]}  # the keys each DeleteObjects row names


def expected_allowed(principal: str, default: str, r: Row) -> bool:
    """The design's answer for one cell (section 1 and table 2.4)."""
    if principal == "anonymous":
        return False
    if r.name in ("ListBuckets", "CreateBucket"):  # every peer; ListBuckets filters what it shows
        return True
    if principal == "admin":
        return True
    if principal == "owner":  # an owner bypasses a governance retention only if a statement grants it
        return BYPASS not in r.actions
    role = ROLE_OF_DEFAULT[default]
    return role is not None and r.actions <= ROLES[role]


def denied_by_deny_writes(action: str) -> bool:
    """Whether a Deny of `deny_writes_policy` names `action` (on the resource of its kind)."""
    kind = ACTIONS[action]
    if kind is Kind.SERVICE:
        return False
    return action.startswith(DENIED_PREFIXES) or (kind is Kind.OBJECT and action in DENIED_OBJECT_ACTIONS)


ESCAPE = frozenset({"s3:GetBucketPolicy", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy"})  # owner's, admins'


def expected_allowed_under(policy: str, principal: str, default: str, r: Row) -> bool:
    """`expected_allowed`, but under deny-writes a row asking a denied action is refused for everyone (a Deny
    binds owner and admins too), except the policy actions the owner and admins always keep. CreateBucket
    makes a new bucket, which has no policy."""
    if policy == "deny-writes" and r.name != "CreateBucket":
        escaped = ESCAPE if principal in ("owner", "admin") else frozenset()
        if any(denied_by_deny_writes(a) for a in r.actions - escaped):
            return False
    return expected_allowed(principal, default, r)


# defaults outermost, so the mesh default changes only twice in a full run; the deny-writes variant under
# `read-write` only (what it checks is the Deny, the defaults are the plain matrix's business)
CELLS = [
    (pol, d, p, r.name)
    for d in DEFAULTS
    for pol in (POLICIES if d == "read-write" else ("plain",))
    for p in PRINCIPALS
    for r in ROWS
]
CELL_IDS = [f"{p}-{d}-{n}" if pol == "plain" else f"{pol}-{p}-{d}-{n}" for pol, d, p, n in CELLS]


# ---- fixtures --------------------------------------------------------------------------------------


@dataclass
class Mesh:
    c: Coordinator
    clients: dict[str, Any]
    default: str | None = None

    def set_default(self, default: str) -> None:
        if self.default != default:
            r = self.c.cli("network", "set", "default_bucket_access", default, timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            shown = self.c.cli("network", "show", "--json", timeout=60)
            assert json.loads(shown.stdout)["default_bucket_access"] == default, shown.stdout + shown.stderr
            self.default = default


def client(endpoint: str, key: str | None = None, secret: str | None = None) -> Any:
    config = Config(retries={"max_attempts": 1}, **({"signature_version": UNSIGNED} if key is None else {}))
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key or "unused",
        aws_secret_access_key=secret or "unused",
        region_name=REGION,
        config=config,
    )


def add_peer(c: Coordinator, name: str) -> Any:
    r = c.cli("peer", "add", name, "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    return client(c.endpoint, doc["peer_id"], doc["token"])


def key_file(d: Path) -> Path:
    """An SSE key file, so bucket default encryption (a configuration the snapshot reads) can be set."""
    d.mkdir(mode=0o700)
    path = d / "sse-keys.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
    r = subprocess.run(
        [tunnelmesh_exe(), "sse", "init", "--key-file", str(path)], capture_output=True, text=True, env=env, timeout=60
    )
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("matrix")
    c = start_coordinator(tmp, extra_yaml=f"  sse_key_file: {key_file(tmp / 'keys')}\n")
    try:
        clients = {
            "owner": add_peer(c, "owner"),
            "admin": c.client(),
            "other": add_peer(c, "other"),
            "anonymous": client(c.endpoint),
        }
        yield Mesh(c, clients)
    finally:
        c.stop()


# ---- the tests -------------------------------------------------------------------------------------


def test_every_route_is_in_the_matrix() -> None:
    routes = {r.name for r in ROUTES}
    rows = {r.route for r in ROWS}
    assert routes - rows == set(), "routes without a matrix row"
    assert rows - routes == set(), "matrix rows naming no route"
    assert len(ROW_BY_NAME) == len(ROWS), "two rows share a name"
    for r in ROWS:
        assert r.actions and r.actions <= set(ACTIONS), (r.name, r.actions - set(ACTIONS))


def test_deny_writes_expectations() -> None:
    """The deny-writes variant refuses what it should: spot checks of `expected_allowed_under`."""
    by = ROW_BY_NAME
    for principal in ("owner", "admin"):
        for name in ("PutObject", "DeleteBucket", "DeleteObjects", "AbortMultipartUpload", "PutBucketTagging"):
            assert not expected_allowed_under("deny-writes", principal, "read-write", by[name]), (principal, name)
        for name in ("PutBucketPolicy", "DeleteBucketPolicy", "GetObject", "ListObjects", "CreateBucket"):
            assert expected_allowed_under("deny-writes", principal, "read-write", by[name]), (principal, name)
    assert not expected_allowed_under("deny-writes", "other", "read-write", by["PutBucketPolicy"])
    assert expected_allowed_under("deny-writes", "other", "read-write", by["GetObject"])
    refused = sum(not expected_allowed_under("deny-writes", "owner", "read-write", r) for r in ROWS)
    assert refused > len(ROWS) // 3, "the deny-writes variant bites too few rows to check anything"


@pytest.mark.parametrize(("policy", "default", "principal", "name"), CELLS, ids=CELL_IDS)
def test_cell(mesh: Mesh, policy: str, default: str, principal: str, name: str) -> None:
    r = ROW_BY_NAME[name]
    mesh.set_default(default)
    owner = mesh.clients["owner"]
    fx = new_bucket(owner, mesh.c.endpoint, policy)
    if name == "DeleteBucket":
        empty = f"{fx.name}-e"
        owner.create_bucket(Bucket=empty)  # an empty bucket of the owner's, so a delete can succeed
        if policy != "plain":  # the bucket the row deletes carries the variant's policy too
            owner.put_bucket_policy(Bucket=empty, Policy=policy_of(policy, empty))
    allowed = expected_allowed_under(policy, principal, default, r)
    before = None if allowed else snapshot(fx)
    got = r.op(mesh.clients[principal], fx)

    if allowed:
        assert 200 <= got.status < 300, (got.status, got.code)
        if r.check is not None:
            assert r.check(got.answer), got.answer
        if name == "ListBuckets":
            seen = fx.name in {b["Name"] for b in got.answer["Buckets"]}
            assert seen is (principal != "other" or default != "none"), "ListBuckets shows the wrong buckets"
        if name in DELETED_KEYS:
            assert got.answer.get("Errors", []) == [], got.answer
            assert sorted(d["Key"] for d in got.answer["Deleted"]) == DELETED_KEYS[name], got.answer
        # read by the mesh admin: a bucket `other` created is its own, which the owner may not see under `none`
        if name == "DeleteBucket":
            assert not exists(mesh.clients["admin"], f"{fx.name}-e")
        if name == "CreateBucket":
            assert exists(mesh.clients["admin"], f"{fx.name}-n")
        return

    if name in DELETED_KEYS:
        # the request itself passes (anonymous too, since a "*" statement could allow a key), each key is
        # refused in the result
        assert got.status == 200, (got.status, got.code)
        assert got.answer.get("Deleted", []) == [], got.answer
        errors = sorted((e["Key"], e["Code"]) for e in got.answer["Errors"])
        assert errors == [(k, "AccessDenied") for k in DELETED_KEYS[name]], got.answer
    elif r.head:
        assert got.status == 403, (got.status, got.code)  # no body: the code is not on the wire
    else:
        assert (got.status, got.code) == (403, "AccessDenied")
    assert snapshot(fx) == before, "a refused request changed the bucket"
