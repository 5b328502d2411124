"""access.policy: the grammar, every MalformedPolicy refusal of docs/access-control.md 2.1, and is_public."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tunnelmesh.access.policy import Known, MalformedPolicy, PolicyDoc, is_public, parse_policy

B = "bucket"
KNOWN = Known(peers=frozenset({"peer-a", "peer-b"}), groups=frozenset({"ci"}))


def stmt(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": "peer-a"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{B}/*",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def doc(*statements: dict[str, Any], **top: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements), **top})


def parse(text: str) -> PolicyDoc:
    return parse_policy(text, B, KNOWN)


REFUSALS = [
    ("too big", doc(*[stmt(Sid=f"s{i}", Resource=f"arn:aws:s3:::{B}/{'k' * 200}{i}") for i in range(100)])),
    ("not json", "{not json"),
    ("NaN is not json", doc(stmt(Condition={"StringEquals": {"s3:prefix": float("nan")}}))),
    ("id not a string", doc(stmt(), Id=5)),
    ("first byte", '["Statement"]'),
    ("a json string", '"x"'),
    ("duplicate key", '{"Version": "2012-10-17", "Statement": [], "Statement": []}'),
    ("duplicate key in a statement", '{"Statement": {"Effect": "Allow", "Effect": "Deny"}}'),
    ("no statement", json.dumps({"Version": "2012-10-17"})),
    ("empty statement", doc()),
    ("unknown top field", doc(stmt(), Foo=1)),
    ("bad version", json.dumps({"Version": "2020-01-01", "Statement": [stmt()]})),
    ("unknown statement field", doc(stmt(Foo="x"))),
    ("no effect", doc(stmt(Effect=None))),
    ("bad effect", doc(stmt(Effect="Maybe"))),
    ("no principal", doc(stmt(Principal=None))),
    ("no action", doc(stmt(Action=None))),
    ("no resource", doc(stmt(Resource=None))),
    ("both action and notaction", doc(stmt(NotAction="s3:PutObject"))),
    ("notprincipal with allow", doc(stmt(Principal=None, NotPrincipal={"AWS": "peer-a"}))),
    ("unknown peer", doc(stmt(Principal={"AWS": "peer-zz"}))),
    ("unknown user arn", doc(stmt(Principal={"AWS": "arn:aws:iam::123:user/peer-zz"}))),
    ("unknown canonical user", doc(stmt(Principal={"CanonicalUser": "peer-zz"}))),
    ("unknown group", doc(stmt(Principal={"AWS": "arn:aws:iam::mesh:group/nope"}))),
    ("service principal", doc(stmt(Principal={"Service": "s3.amazonaws.com"}))),
    ("federated principal", doc(stmt(Principal={"Federated": "cognito"}))),
    ("principal not * or object", doc(stmt(Principal="peer-a"))),
    ("iam role arn", doc(stmt(Principal={"AWS": "arn:aws:iam::123:role/x"}))),
    ("non-s3 action", doc(stmt(Action="ec2:RunInstances"))),
    ("unknown action", doc(stmt(Action="s3:GetObjekt"))),
    ("wildcard naming nothing", doc(stmt(Action="s3:Frob*"))),
    ("action not a string", doc(stmt(Action=5))),
    ("resource not an s3 arn", doc(stmt(Resource="arn:aws:ec2:::x"))),
    ("resource of another bucket", doc(stmt(Resource="arn:aws:s3:::other/*"))),
    ("resource glob missing this bucket", doc(stmt(Action="s3:ListBucket", Resource="arn:aws:s3:::oth*"))),
    ("empty resource", doc(stmt(Resource="arn:aws:s3:::"))),
    ("object action on a bucket", doc(stmt(Action="s3:PutObject", Resource=f"arn:aws:s3:::{B}"))),
    ("bucket action on objects", doc(stmt(Action="s3:ListBucket", Resource=f"arn:aws:s3:::{B}/*"))),
    ("wildcard fitting no resource", doc(stmt(Action="s3:ListBucket*", Resource=f"arn:aws:s3:::{B}/*"))),
    ("unknown operator", doc(stmt(Condition={"StringEqualz": {"s3:prefix": "x"}}))),
    ("unknown s3 key", doc(stmt(Condition={"StringEquals": {"s3:nope": "x"}}))),
    ("malformed cidr", doc(stmt(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/40"}}))),
    ("malformed date", doc(stmt(Condition={"DateLessThan": {"aws:CurrentTime": "soon"}}))),
    ("malformed number", doc(stmt(Condition={"NumericLessThan": {"s3:max-keys": "many"}}))),
    ("condition not an object", doc(stmt(Condition=["x"]))),
    ("unknown variable", doc(stmt(Resource=f"arn:aws:s3:::{B}/${{aws:PrincipalTag/x}}/*"))),
]


@pytest.mark.parametrize("text", [t for _, t in REFUSALS], ids=[n for n, _ in REFUSALS])
def test_every_refusal_is_malformed_policy(text: str) -> None:
    with pytest.raises(MalformedPolicy):
        parse(text)


def test_the_size_limit_counts_without_insignificant_whitespace() -> None:
    padded = doc(stmt()).replace(",", "," + " " * 30_000, 1)
    assert len(padded) > 20_480
    assert len(parse(padded).statements) == 1


ACCEPTED = [
    ("minimal", doc(stmt())),
    ("statement as an object", json.dumps({"Statement": stmt()})),
    ("2008 version", json.dumps({"Version": "2008-10-17", "Statement": [stmt()]})),
    ("id and sid", doc(stmt(Sid="s1"), Id="pol")),
    ("anyone", doc(stmt(Principal="*"))),
    ("aws anyone", doc(stmt(Principal={"AWS": "*"}))),
    ("user arn", doc(stmt(Principal={"AWS": "arn:aws:iam::123:user/peer-b"}))),
    ("canonical user", doc(stmt(Principal={"CanonicalUser": "peer-b"}))),
    ("root of an unknown account is inert", doc(stmt(Principal={"AWS": "arn:aws:iam::s3tenant1:root"}))),
    ("group", doc(stmt(Principal={"AWS": ["arn:aws:iam::mesh:group/ci", "arn:aws:iam::mesh:group/peers"]}))),
    ("notprincipal with deny", doc(stmt(Effect="Deny", Principal=None, NotPrincipal={"AWS": "peer-a"}))),
    ("s3 star on both resources", doc(stmt(Action="s3:*", Resource=[f"arn:aws:s3:::{B}", f"arn:aws:s3:::{B}/*"]))),
    ("star resource", doc(stmt(Action=["s3:GetObject", "s3:ListBucket"], Resource="arn:aws:s3:::*"))),
    ("bucket glob", doc(stmt(Resource="arn:aws:s3:::buck*/x/*"))),
    ("notaction", doc(stmt(Action=None, NotAction="s3:DeleteObject"))),
    ("notresource", doc(stmt(Resource=None, NotResource=f"arn:aws:s3:::{B}/private/*"))),
    ("variables", doc(stmt(Resource=f"arn:aws:s3:::{B}/home/${{aws:username}}/${{*}}"))),
    ("conditions", doc(stmt(Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "fd00::/8"]}}))),
]


@pytest.mark.parametrize("text", [t for _, t in ACCEPTED], ids=[n for n, _ in ACCEPTED])
def test_accepted_documents(text: str) -> None:
    assert parse(text).statements


def test_a_wildcard_keeps_only_the_actions_its_resources_can_name() -> None:
    st = parse(doc(stmt(Action="s3:Get*", Resource=f"arn:aws:s3:::{B}/*"))).statements[0]
    assert "s3:GetObject" in st.actions and "s3:GetBucketPolicy" not in st.actions
    st = parse(doc(stmt(Action="s3:*", Resource=f"arn:aws:s3:::{B}"))).statements[0]
    assert "s3:ListBucket" in st.actions and "s3:GetObject" not in st.actions


def test_inert_and_resolved_principals() -> None:
    inert = parse(doc(stmt(Principal={"AWS": "arn:aws:iam::s3tenant1:root"}))).statements[0]
    assert not inert.principals.peers and not inert.principals.anyone
    root = parse(doc(stmt(Principal={"AWS": "arn:aws:iam::peer-b:root"}))).statements[0]
    assert root.principals.peers == {"peer-b"}
    # compiling a stored policy (known=None) never refuses a principal that has since gone
    gone = parse_policy(doc(stmt(Principal={"AWS": "peer-gone"})), B, None).statements[0]
    assert gone.principals.peers == {"peer-gone"}


def _status(statement: dict[str, Any]) -> bool:
    return is_public(parse(doc(statement)))


# the s3-tests bucket policy status cases (test_get_*_bucket_policy_status), plus AWS's other "not public" limits
PUBLIC = [
    (
        "s3-tests publicpolicy",
        stmt(Principal={"AWS": "*"}, Action="s3:ListBucket", Resource=[f"arn:aws:s3:::{B}", f"arn:aws:s3:::{B}/*"]),
        True,
    ),
    (
        "s3-tests nonpublic by /32",
        stmt(
            Principal={"AWS": "*"},
            Action="s3:ListBucket",
            Resource=[f"arn:aws:s3:::{B}", f"arn:aws:s3:::{B}/*"],
            Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/32"}},
        ),
        False,
    ),
    (
        "s3-tests nonpublic principal",
        stmt(
            Principal={"AWS": "arn:aws:iam::s3tenant1:root"},
            Action="s3:ListBucket",
            Resource=[f"arn:aws:s3:::{B}", f"arn:aws:s3:::{B}/*"],
        ),
        False,
    ),
    ("star principal", stmt(Principal="*"), True),
    ("a peer", stmt(), False),
    ("a deny for anyone", stmt(Effect="Deny", Principal="*"), False),
    # narrower than AWS's /8 and /32: on a mesh one /8 holds every host (policy._NARROW)
    ("a /24 is narrow enough", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/24"}}), False),
    ("a /23 is not", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/23"}}), True),
    ("a mesh /8 is not", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}), True),
    ("loopback is not", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}), True),
    ("ipv6 loopback is not", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "::1/128"}}), True),
    ("ipv6 /64", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "2001:db8::/64"}}), False),
    ("ipv6 /63", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "2001:db8::/63"}}), True),
    ("ipv4-mapped /32", stmt(Principal="*", Condition={"IpAddress": {"aws:SourceIp": "::/32"}}), True),
    (
        "NotIpAddress limits nothing",
        stmt(Principal="*", Condition={"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
        True,
    ),
    ("fixed userid", stmt(Principal="*", Condition={"StringEquals": {"aws:userid": "peer-a"}}), False),
    ("userid glob", stmt(Principal="*", Condition={"StringEquals": {"aws:userid": "peer-*"}}), True),
    ("another condition", stmt(Principal="*", Condition={"StringLike": {"s3:prefix": "pub/*"}}), True),
]


@pytest.mark.parametrize(("statement", "public"), [(s, p) for _, s, p in PUBLIC], ids=[n for n, _, _ in PUBLIC])
def test_is_public(statement: dict[str, Any], public: bool) -> None:
    assert _status(statement) is public


def test_no_policy_is_not_public() -> None:
    assert is_public(None) is False
