"""access.conditions: every operator against a present value, an absent key, and with IfExists."""

from __future__ import annotations

import pytest

from tunnelmesh.access.conditions import BadCondition, Condition

# (operator, key, policy value, request value that satisfies, request value that does not)
CASES = [
    ("StringEquals", "s3:prefix", "docs/", "docs/", "DOCS/"),
    ("StringNotEquals", "s3:prefix", "docs/", "other/", "docs/"),
    ("StringEqualsIgnoreCase", "s3:prefix", "docs/", "DOCS/", "doc/"),
    ("StringNotEqualsIgnoreCase", "s3:prefix", "docs/", "doc/", "DOCS/"),
    ("StringLike", "s3:prefix", "home/*/x?", "home/a/b/x1", "home/a/b/x"),
    ("StringNotLike", "s3:prefix", "home/*", "other", "home/a"),
    ("NumericEquals", "s3:max-keys", "10", "10", "11"),
    ("NumericNotEquals", "s3:max-keys", "10", "11", "10"),
    ("NumericLessThan", "s3:max-keys", "10", "9", "10"),
    ("NumericLessThanEquals", "s3:max-keys", "10", "10", "11"),
    ("NumericGreaterThan", "s3:max-keys", "10", "11", "10"),
    ("NumericGreaterThanEquals", "s3:max-keys", "10", "10", "9"),
    ("DateEquals", "aws:CurrentTime", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
    ("DateNotEquals", "aws:CurrentTime", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"),
    ("DateLessThan", "aws:CurrentTime", "2026-01-01T00:00:00Z", "2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z"),
    ("DateLessThanEquals", "aws:CurrentTime", "2026-01-01T00:00:00Z", "1767225600", "2026-01-01T00:00:01Z"),
    ("DateGreaterThan", "aws:CurrentTime", "2026-01-01T00:00:00Z", "2026-06-01T00:00:00+02:00", "2025-06-01"),
    ("DateGreaterThanEquals", "aws:EpochTime", "1767225600", "1767225600", "1767225599"),
    ("Bool", "aws:SecureTransport", "true", "true", "false"),
    ("IpAddress", "aws:SourceIp", "10.99.0.0/16", "10.99.3.4", "10.98.0.1"),
    ("NotIpAddress", "aws:SourceIp", "10.99.0.0/16", "192.168.1.1", "10.99.0.1"),
    ("IpAddress", "aws:SourceIp", "fd00:abcd::/32", "fd00:abcd::17", "fd00:abce::1"),
    ("NotIpAddress", "aws:SourceIp", "fd00:abcd::/32", "::1", "fd00:abcd:1::1"),
    ("IpAddress", "aws:SourceIp", "10.0.0.1/32", "10.0.0.1", "::ffff:10.0.0.2"),
    # an IPv4 client seen through a dual-stack listener is the IPv4 address, in either form of the condition
    ("IpAddress", "aws:SourceIp", "203.0.113.0/24", "::ffff:203.0.113.5", "::ffff:203.0.114.5"),
    ("NotIpAddress", "aws:SourceIp", "203.0.113.0/24", "::ffff:198.51.100.1", "::ffff:203.0.113.5"),
    ("IpAddress", "aws:SourceIp", "::ffff:203.0.113.0/120", "203.0.113.5", "203.0.114.5"),
]
NEGATED = {"StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "NumericNotEquals", "DateNotEquals"}
NEGATED |= {"NotIpAddress"}


def _ctx(key: str, value: str | None) -> dict[str, tuple[str, ...]]:
    return {} if value is None else {key.lower(): (value,)}


@pytest.mark.parametrize(("op", "key", "value", "good", "bad"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
@pytest.mark.parametrize("if_exists", [False, True], ids=["plain", "IfExists"])
def test_each_operator_present_and_absent(op: str, key: str, value: str, good: str, bad: str, if_exists: bool) -> None:
    cond = Condition.parse(op + ("IfExists" if if_exists else ""), key, value, substitute=True)
    assert cond.holds(_ctx(key, good))
    assert not cond.holds(_ctx(key, bad))
    # absent key: IfExists and the negated operators hold, the others do not (IAM)
    assert cond.holds({}) is (if_exists or op in NEGATED)


def test_values_of_one_key_are_alternatives_and_keys_are_case_insensitive() -> None:
    cond = Condition.parse("StringEquals", "S3:Prefix", ["a/", "b/"], substitute=True)
    assert cond.holds({"s3:prefix": ("b/",)})
    assert not cond.holds({"s3:prefix": ("c/",)})
    neg = Condition.parse("StringNotEquals", "s3:prefix", ["a/", "b/"], substitute=True)
    assert neg.holds({"s3:prefix": ("c/",)}) and not neg.holds({"s3:prefix": ("a/",)})


def test_several_cidrs_v4_and_v6() -> None:
    cond = Condition.parse("IpAddress", "aws:SourceIp", ["10.0.0.0/8", "2001:db8::/32"], substitute=True)
    for ip, ok in [("10.1.2.3", True), ("2001:db8::1", True), ("11.0.0.1", False), ("2001:db9::1", False)]:
        assert cond.holds({"aws:sourceip": (ip,)}) is ok
    assert not cond.holds({"aws:sourceip": ("not-an-ip",)})


@pytest.mark.parametrize(
    ("value", "absent", "present"),
    [("true", True, False), ("false", False, True)],
)
def test_null_tests_presence(value: str, absent: bool, present: bool) -> None:
    cond = Condition.parse("Null", "s3:x-amz-server-side-encryption", value, substitute=True)
    assert cond.holds({}) is absent
    assert cond.holds({"s3:x-amz-server-side-encryption": ("AES256",)}) is present


def test_set_qualifiers_over_multi_valued_keys() -> None:
    key = "tunnelmesh:PrincipalGroup"
    any_ = Condition.parse("ForAnyValue:StringEquals", key, ["ci", "ops"], substitute=True)
    all_ = Condition.parse("ForAllValues:StringEquals", key, ["ci", "ops"], substitute=True)
    ctx = {"tunnelmesh:principalgroup": ("ci", "dev")}
    assert any_.holds(ctx) and not all_.holds(ctx)
    assert all_.holds({"tunnelmesh:principalgroup": ("ci", "ops")})
    assert all_.holds({}) and not any_.holds({})  # IAM: ForAllValues over nothing is true, ForAnyValue false


def test_variables_are_substituted_per_caller_and_literal_escapes_are_not_wildcards() -> None:
    cond = Condition.parse("StringLike", "s3:prefix", "home/${aws:username}/*", substitute=True)
    assert cond.holds({"s3:prefix": ("home/peer-1/x",), "aws:username": ("peer-1",)})
    assert not cond.holds({"s3:prefix": ("home/peer-2/x",), "aws:username": ("peer-1",)})
    assert not cond.holds({"s3:prefix": ("home/peer-1/x",)})  # anonymous: no username, no match
    star = Condition.parse("StringLike", "s3:prefix", "a${*}b", substitute=True)
    assert star.holds({"s3:prefix": ("a*b",)}) and not star.holds({"s3:prefix": ("axb",)})
    unsubstituted = Condition.parse("StringEquals", "s3:prefix", "${aws:username}", substitute=False)
    assert unsubstituted.holds({"s3:prefix": ("${aws:username}",), "aws:username": ("p",)})


@pytest.mark.parametrize(
    ("op", "key", "value"),
    [
        ("StringEqualz", "s3:prefix", "x"),
        ("NullIfExists", "s3:prefix", "true"),
        ("ArnLike", "s3:prefix", "x"),
        ("StringEquals", "s3:nosuchkey", "x"),
        ("StringEquals", "s3:ExistingObjectTag/k", "x"),  # step 8
        ("StringEquals", "ec2:Region", "x"),
        ("IpAddress", "aws:SourceIp", "10.0.0.0/33"),
        ("IpAddress", "aws:SourceIp", "10.0.0.256"),
        ("NotIpAddress", "aws:SourceIp", "fd00::/129"),
        ("IpAddress", "aws:SourceIp", "not-a-cidr"),
        ("NumericLessThan", "s3:max-keys", "ten"),
        ("NumericLessThan", "s3:max-keys", "nan"),
        ("DateLessThan", "aws:CurrentTime", "yesterday"),
        ("Bool", "aws:SecureTransport", "yes"),
        ("Null", "s3:prefix", "maybe"),
        ("StringEquals", "s3:prefix", []),
        ("StringEquals", "s3:prefix", {"nested": "x"}),
        ("StringLike", "s3:prefix", "${aws:PrincipalTag/team}"),
    ],
)
def test_bad_conditions_are_refused_at_parse_time(op: str, key: str, value: object) -> None:
    with pytest.raises(BadCondition):
        Condition.parse(op, key, value, substitute=True)


def test_an_unknown_aws_key_is_accepted_and_absent() -> None:
    cond = Condition.parse("StringEquals", "aws:PrincipalOrgID", "o-123", substitute=True)
    assert not cond.holds({})
    assert Condition.parse("StringNotEquals", "aws:PrincipalOrgID", "o-123", substitute=True).holds({})
