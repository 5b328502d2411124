"""The policies of the s3-tests the design expects green in step 5, parsed and decided as those tests expect."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tunnelmesh.access.evaluate import ANONYMOUS, Ask, Who, decide
from tunnelmesh.access.policy import Known, MalformedPolicy, parse_policy
from tunnelmesh.access.view import BucketIdent, BucketView, compile_view

B = "s3tests-bucket"
IDENT = BucketIdent(owner="main", created=1.0)
MAIN, ALT = Who("peer", "main"), Who("peer", "alt")
KNOWN = Known(frozenset({"main", "alt"}), frozenset())
sse = "s3:x-amz-server-side-encryption"


def view(policy: dict[str, Any]) -> BucketView:
    text = json.dumps(policy)
    parse_policy(text, B, KNOWN)  # what PutBucketPolicy would check
    record = {"bucket": B, "created": IDENT.created, "policy": text}
    return compile_view(record, IDENT, B, frozenset(), "none", pab_default=False)


def allowed(v: BucketView, who: Who, action: str, key: str | None, **ctx: str) -> bool:
    return decide(v, who, Ask(action, B, key, {k.lower(): (x,) for k, x in ctx.items()})).allowed


def one(action: Any, resource: Any, effect: str = "Allow", **more: Any) -> dict[str, Any]:
    st = {"Effect": effect, "Principal": {"AWS": "*"}, "Action": action, "Resource": resource, **more}
    return {"Version": "2012-10-17", "Statement": [st]}


def test_put_obj_s3_noenc_and_incorrect_algo() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            one("s3:PutObject", f"arn:aws:s3:::{B}/*", "Deny", Condition={"Null": {sse: "true"}})["Statement"][0],
            one("s3:PutObject", f"arn:aws:s3:::{B}/*", "Deny", Condition={"StringNotEquals": {sse: "AES256"}})[
                "Statement"
            ][0],
        ],
    }
    v = view(policy)
    assert not allowed(v, MAIN, "s3:PutObject", "k")  # no encryption header: denied, owner included
    assert not allowed(v, MAIN, "s3:PutObject", "k", **{sse: "aws:kms"})
    assert allowed(v, MAIN, "s3:PutObject", "k", **{sse: "AES256"})


def test_head_object_404_with_policy_prefix() -> None:
    v = view(one("s3:ListBucket", f"arn:aws:s3:::{B}", Condition={"StringLike": {"s3:prefix": "public/*"}}))
    assert allowed(v, ANONYMOUS, "s3:ListBucket", None, **{"s3:prefix": "public/missing"})
    assert not allowed(v, ANONYMOUS, "s3:ListBucket", None, **{"s3:prefix": "private/missing"})
    assert not allowed(v, ANONYMOUS, "s3:GetObject", "public/missing")


def test_multipart_upload_on_a_bucket_with_policy() -> None:
    v = view(one("*", [f"arn:aws:s3:::{B}", f"arn:aws:s3:::{B}/*"], Principal="*"))
    for action in ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"):
        assert allowed(v, ALT, action, "foo")
    assert allowed(v, ALT, "s3:ListBucket", None)


def test_bucket_policy_another_bucket() -> None:
    policy = one("s3:ListBucket", ["arn:aws:s3:::*", "arn:aws:s3:::*/*"])
    assert allowed(view(policy), ALT, "s3:ListBucket", None)
    parse_policy(json.dumps(policy), "another-bucket", KNOWN)  # the same text fits the second bucket


def test_upload_part_copy_source_prefix() -> None:
    v = view(one("s3:GetObject", f"arn:aws:s3:::{B}/public/*"))
    assert allowed(v, ALT, "s3:GetObject", "public/foo")
    assert not allowed(v, ALT, "s3:GetObject", "private/foo")


def test_condition_operator_end_with_if_exists() -> None:
    v = view(one("s3:GetObject", f"arn:aws:s3:::{B}/*", Principal="*", Condition={
        "StringLikeIfExists": {"aws:Referer": "http://www.example.com/*"}
    }))  # fmt: skip
    assert allowed(v, ALT, "s3:GetObject", "foo", **{"aws:Referer": "http://www.example.com/index.html"})
    assert not allowed(v, ALT, "s3:GetObject", "foo", **{"aws:Referer": "http://example.com"})
    assert allowed(v, ALT, "s3:GetObject", "foo")  # no Referer: IfExists holds
    # the test also expects the bucket owner refused there: AWS lets the owner through (doc section 8, step 5)
    assert allowed(v, MAIN, "s3:GetObject", "foo", **{"aws:Referer": "http://example.com"})


@pytest.mark.parametrize(
    "policy",
    [
        one("s3:PutObject", f"arn:aws:s3:::{B}"),  # test_bucket_policy_multipart: AWS refuses it too
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "NotPrincipal": {"AWS": "arn:aws:iam::s3tenant1:root"},
                    "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{B}",
                }
            ]
        },  # test_bucket_policy_allow_notprincipal
    ],  # fmt: skip
    ids=["multipart-object-action-on-bucket", "allow-notprincipal"],
)
def test_refused_s3tests_policies(policy: dict[str, Any]) -> None:
    with pytest.raises(MalformedPolicy):
        parse_policy(json.dumps(policy), B, KNOWN)
