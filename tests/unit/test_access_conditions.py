"""access.conditions: every operator against a present value, an absent key, and with IfExists."""

from __future__ import annotations

import pytest

from tunnelmesh.access.conditions import (
    EXISTING_TAG,
    REQUEST_TAG,
    REQUEST_TAG_KEYS,
    BadCondition,
    Condition,
    check_key,
    object_tag_keys,
    reads_object_keys,
)

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
        ("StringEquals", "s3:ExistingObjectTag/", "x"),  # no tag key
        ("StringEquals", "s3:RequestObjectTag/", "x"),
        ("StringEquals", "s3:ExistingObjectTag/" + "k" * 129, "x"),  # longer than any tag key
        ("StringEquals", "s3:RequestObjectTagKeys/k", "x"),
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


# ---- object-dependent keys (section 8 step 8) ---------------------------------------------------------


def test_object_tag_keys_lower_case_their_name_and_keep_the_tag_keys_case() -> None:
    assert check_key("s3:ExistingObjectTag/Security") == "s3:existingobjecttag/Security"
    assert check_key("S3:REQUESTOBJECTTAG/team") == "s3:requestobjecttag/team"
    assert check_key("s3:RequestObjectTagKeys") == REQUEST_TAG_KEYS
    assert reads_object_keys({"s3:existingobjecttag/a"}) and reads_object_keys({REQUEST_TAG_KEYS})
    assert not reads_object_keys({"s3:prefix", "aws:sourceip"})


@pytest.mark.parametrize("prefix", [EXISTING_TAG, REQUEST_TAG])
def test_a_tag_condition_against_present_and_absent_tags(prefix: str) -> None:
    name = "ExistingObjectTag" if prefix == EXISTING_TAG else "RequestObjectTag"
    eq = Condition.parse("StringEquals", f"s3:{name}/security", "public", substitute=True)
    ne = Condition.parse("StringNotEquals", f"s3:{name}/security", "secret", substitute=True)
    like_if = Condition.parse("StringLikeIfExists", f"s3:{name}/security", "pub*", substitute=True)
    null = Condition.parse("Null", f"s3:{name}/security", "true", substitute=True)
    needed = {eq.key}

    def ctx(tags: dict[str, str] | None) -> dict[str, tuple[str, ...]]:
        return object_tag_keys(tags, prefix, needed)

    assert eq.holds(ctx({"security": "public", "foo": "bar"}))
    assert not eq.holds(ctx({"security": "private"}))
    assert not eq.holds(ctx({"security1": "public"}))  # another tag: the key is absent
    assert not eq.holds(ctx({"Security": "public"}))  # tag keys are case-sensitive
    assert not eq.holds(ctx({})) and not eq.holds(ctx(None))
    assert ne.holds(ctx({"security": "public"})) and not ne.holds(ctx({"security": "secret"}))
    assert ne.holds(ctx({}))  # a negated operator holds for an absent key
    assert like_if.holds(ctx({})) and like_if.holds(ctx({"security": "public"}))
    assert not like_if.holds(ctx({"security": "private"}))
    assert null.holds(ctx({"other": "x"})) and not null.holds(ctx({"security": "x"}))


def test_request_object_tag_keys_is_multi_valued() -> None:
    any_of = Condition.parse("ForAnyValue:StringEquals", "s3:RequestObjectTagKeys", ["team", "cost"], substitute=True)
    all_of = Condition.parse("ForAllValues:StringEquals", "s3:RequestObjectTagKeys", ["team", "cost"], substitute=True)
    needed = {REQUEST_TAG_KEYS}

    def ctx(tags: dict[str, str] | None) -> dict[str, tuple[str, ...]]:
        return object_tag_keys(tags, REQUEST_TAG, needed)

    assert ctx({"team": "a", "x": "1"}) == {REQUEST_TAG_KEYS: ("team", "x")}
    assert any_of.holds(ctx({"team": "a", "x": "1"}))  # one key of the set is enough
    assert not any_of.holds(ctx({"x": "1"}))
    assert not any_of.holds(ctx(None)) and not any_of.holds(ctx({}))  # no tags: nothing to match
    assert all_of.holds(ctx({"team": "a", "cost": "1"}))
    assert not all_of.holds(ctx({"team": "a", "x": "1"}))  # every key must be in the set
    assert all_of.holds(ctx(None)) and all_of.holds(ctx({}))  # IAM: ForAllValues over nothing holds
    # existing tags never fill the request's keys
    assert object_tag_keys({"team": "a"}, EXISTING_TAG, needed) == {}
