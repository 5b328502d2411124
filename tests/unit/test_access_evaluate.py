"""access.evaluate: decide() in the order of docs/access-control.md section 1, over compiled views."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tunnelmesh.access.actions import ACTIONS, ROLES
from tunnelmesh.access.conditions import EXISTING_TAG, REQUEST_TAG, object_tag_keys
from tunnelmesh.access.evaluate import ANONYMOUS, Ask, Decision, Who, decide, visible
from tunnelmesh.access.grants import BadGrant, Grant, grant_statements
from tunnelmesh.access.policy import parse_policy
from tunnelmesh.access.view import SYSTEM_VIEW, BucketIdent, BucketView, PublicAccessBlock, compile_view

B = "bucket"
IDENT = BucketIdent(owner="owner", created=100.0)
OWNER = Who("peer", "owner")
ADMIN = Who("peer", "admin", is_admin=True)
ALICE = Who("peer", "alice")
BOB = Who("peer", "bob", groups=frozenset({"ci"}))
CAROL = Who("peer", "carol")


def view(
    *statements: dict[str, Any], default: str = "none", grants: list[dict[str, Any]] | None = None, **rec: Any
) -> BucketView:
    record: dict[str, Any] = {"bucket": B, "created": IDENT.created, "grants": grants or [], **rec}
    if statements:
        record["policy"] = json.dumps({"Version": "2012-10-17", "Statement": list(statements)})
    return compile_view(record, IDENT, B, frozenset({"ci"}), default, pab_default=False)


def st(
    effect: str = "Allow", principal: Any = None, action: Any = "s3:GetObject", resource: Any = None, **more: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"Effect": effect}
    if "NotPrincipal" not in more:
        out["Principal"] = principal if principal is not None else {"AWS": ["alice"]}
    if "NotAction" not in more:
        out["Action"] = action
    if "NotResource" not in more:
        out["Resource"] = resource if resource is not None else f"arn:aws:s3:::{B}/*"
    out.update(more)
    return out


# one memo for the whole module: every decision below is also made through it (a miss, then hits), and must
# come out the same as without it (decide's memo only narrows statements once per caller and request keys)
MEMO: dict[Any, Any] = {}


def decided(v: BucketView, who: Who, ask: Ask) -> Decision:
    plain = decide(v, who, ask)
    for _ in range(2):
        assert decide(v, who, ask, MEMO) == plain, (ask, who)
    return plain


def ok(v: BucketView, who: Who, action: str, key: str | None = "k", **ctx: str) -> bool:
    return decided(v, who, Ask(action, B, key, {k.lower(): (val,) for k, val in ctx.items()})).allowed


GET, PUT, DEL, LIST = "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"


# (name, statements, who, action, key, expected allowed, expected why-prefix)
AWS_CASES: list[tuple[str, list[dict[str, Any]], Who, str, str | None, bool, str]] = [
    ("implicit deny", [], ALICE, GET, "k", False, "implicit"),
    ("allow", [st()], ALICE, GET, "k", True, "policy#0"),
    ("allow names only alice", [st()], CAROL, GET, "k", False, "implicit"),
    ("allow is per action", [st()], ALICE, PUT, "k", False, "implicit"),
    ("explicit deny wins over allow", [st(), st("Deny")], ALICE, GET, "k", False, "deny:policy#1"),
    (
        "deny wins over an earlier allow by sid",
        [st(Sid="A"), st("Deny", Sid="D")],
        ALICE,
        GET,
        "k",
        False,
        "deny:policy:D",
    ),
    ("deny binds the owner", [st("Deny", {"AWS": "*"}, "s3:*")], OWNER, GET, "k", False, "deny"),
    ("deny binds mesh admins", [st("Deny", "*", "s3:*")], ADMIN, DEL, "k", False, "deny"),
    (
        "owner may always manage the policy",
        [st("Deny", "*", "s3:*", f"arn:aws:s3:::{B}")],
        OWNER,
        "s3:PutBucketPolicy",
        None,
        True,
        "owner",
    ),
    (
        "admin may always manage the policy",
        [st("Deny", "*", "s3:*", f"arn:aws:s3:::{B}")],
        ADMIN,
        "s3:DeleteBucketPolicy",
        None,
        True,
        "admin",
    ),
    (
        "others may not",
        [st("Deny", "*", "s3:*", f"arn:aws:s3:::{B}"), st(action="s3:*", resource=f"arn:aws:s3:::{B}")],
        ALICE,
        "s3:GetBucketPolicy",
        None,
        False,
        "deny",
    ),
    (
        "deny on a prefix only",
        [st(action="s3:*"), st("Deny", action=DEL, resource=f"arn:aws:s3:::{B}/releases/*")],
        ALICE,
        DEL,
        "releases/v1",
        False,
        "deny",
    ),
    (
        "outside the denied prefix",
        [st(action="s3:*"), st("Deny", action=DEL, resource=f"arn:aws:s3:::{B}/releases/*")],
        ALICE,
        DEL,
        "tmp/x",
        True,
        "policy",
    ),
    ("NotAction allows the rest", [st(NotAction="s3:DeleteObject")], ALICE, PUT, "k", True, "policy"),
    ("NotAction leaves its own out", [st(NotAction="s3:DeleteObject")], ALICE, DEL, "k", False, "implicit"),
    ("NotAction deny", [st(action="s3:*"), st("Deny", NotAction="s3:Get*")], ALICE, PUT, "k", False, "deny"),
    ("NotAction deny spares", [st(action="s3:*"), st("Deny", NotAction="s3:Get*")], ALICE, GET, "k", True, "policy"),
    (
        "NotResource allows the rest",
        [st(NotResource=f"arn:aws:s3:::{B}/private/*")],
        ALICE,
        GET,
        "pub/x",
        True,
        "policy",
    ),
    (
        "NotResource leaves its own out",
        [st(NotResource=f"arn:aws:s3:::{B}/private/*")],
        ALICE,
        GET,
        "private/x",
        False,
        "implicit",
    ),
    (
        "NotPrincipal deny: everyone else",
        [st(principal="*"), st("Deny", NotPrincipal={"AWS": "alice"})],
        CAROL,
        GET,
        "k",
        False,
        "deny",
    ),
    (
        "NotPrincipal deny: spares the named",
        [st(principal="*"), st("Deny", NotPrincipal={"AWS": "alice"})],
        ALICE,
        GET,
        "k",
        True,
        "policy",
    ),
    (
        "NotPrincipal deny: anonymous too",
        [st(principal="*"), st("Deny", NotPrincipal={"AWS": "alice"})],
        ANONYMOUS,
        GET,
        "k",
        False,
        "deny",
    ),
    ("group principal", [st(principal={"AWS": "arn:aws:iam::mesh:group/ci"})], BOB, GET, "k", True, "policy"),
    ("built-in group peers", [st(principal={"AWS": "arn:aws:iam::mesh:group/peers"})], CAROL, GET, "k", True, "policy"),
    (
        "peers is not anonymous",
        [st(principal={"AWS": "arn:aws:iam::mesh:group/peers"})],
        ANONYMOUS,
        GET,
        "k",
        False,
        "implicit",
    ),
    ("anyone includes anonymous", [st(principal="*")], ANONYMOUS, GET, "k", True, "policy"),
    ("inert root account", [st(principal={"AWS": "arn:aws:iam::s3tenant1:root"})], ALICE, GET, "k", False, "implicit"),
    ("bucket action on the bucket", [st(action=LIST, resource=f"arn:aws:s3:::{B}")], ALICE, LIST, None, True, "policy"),
    (
        "object resource is not the bucket",
        [st(action="s3:*", resource=f"arn:aws:s3:::{B}/*")],
        ALICE,
        GET,
        None,
        False,
        "implicit",
    ),
    (
        "username variable",
        [st(resource=f"arn:aws:s3:::{B}/home/${{aws:username}}/*")],
        ALICE,
        GET,
        "home/alice/x",
        True,
        "policy",
    ),
    (
        "username variable, another home",
        [st(resource=f"arn:aws:s3:::{B}/home/${{aws:username}}/*")],
        ALICE,
        GET,
        "home/bob/x",
        False,
        "implicit",
    ),
    ("bypass needs a statement, even for the owner", [], OWNER, "s3:BypassGovernanceRetention", "k", False, "implicit"),
    (
        "bypass granted to the owner",
        [st(principal={"AWS": "owner"}, action="s3:BypassGovernanceRetention")],
        OWNER,
        "s3:BypassGovernanceRetention",
        "k",
        True,
        "policy",
    ),
    ("admins bypass", [], ADMIN, "s3:BypassGovernanceRetention", "k", True, "admin"),
    ("owner", [], OWNER, "s3:DeleteBucket", None, True, "owner"),
    ("admin", [], ADMIN, "s3:DeleteBucket", None, True, "admin"),
]


@pytest.mark.parametrize(
    ("statements", "who", "action", "key", "allowed", "why"),
    [c[1:] for c in AWS_CASES],
    ids=[c[0] for c in AWS_CASES],
)
def test_aws_evaluation(
    statements: list[dict[str, Any]], who: Who, action: str, key: str | None, allowed: bool, why: str
) -> None:
    d = decided(view(*statements), who, Ask(action, B, key))
    assert d.allowed is allowed
    assert d.why.startswith(why)


def test_conditions_gate_a_statement() -> None:
    v = view(
        st(action="s3:*", Condition={"IpAddress": {"aws:SourceIp": "10.99.0.0/16"}}),
        st("Deny", action=DEL, Condition={"NotIpAddress": {"aws:SourceIp": ["10.99.1.0/24", "fd00::/8"]}}),
    )
    assert ok(v, ALICE, GET, **{"aws:SourceIp": "10.99.2.2"})
    assert not ok(v, ALICE, GET, **{"aws:SourceIp": "10.98.2.2"})
    assert not ok(v, ALICE, GET)  # the key absent: IpAddress does not hold
    assert not ok(v, ALICE, DEL, **{"aws:SourceIp": "10.99.2.2"})  # allowed, then denied outside 10.99.1/24
    assert ok(v, ALICE, DEL, **{"aws:SourceIp": "10.99.1.7"})
    assert v.needed_keys == {"aws:sourceip"}


def test_a_prefix_limited_listing_is_refused_not_filtered() -> None:
    v = view(st(action=LIST, resource=f"arn:aws:s3:::{B}", Condition={"StringLike": {"s3:prefix": "team/*"}}))
    assert ok(v, ALICE, LIST, None, **{"s3:prefix": "team/a/"})
    assert not ok(v, ALICE, LIST, None, **{"s3:prefix": "other/"})
    assert not ok(v, ALICE, LIST, None)  # no prefix at all (HeadBucket)


@pytest.mark.parametrize(
    ("default", "action", "allowed"),
    [
        ("read-write", GET, True),
        ("read-write", PUT, True),
        ("read-write", DEL, True),
        ("read-write", "s3:DeleteObjectVersion", False),  # a deliberate tightening: history is the bucket admin's
        ("read-write", "s3:PutBucketTagging", False),
        ("read-write", "s3:DeleteBucket", False),
        ("read", GET, True),
        ("read", LIST, True),
        ("read", PUT, False),
        ("none", GET, False),
        ("none", LIST, False),
    ],
)
def test_the_mesh_default(default: str, action: str, allowed: bool) -> None:
    key = None if ACTIONS[action].value == "bucket" else "k"
    d = decide(view(default=default), CAROL, Ask(action, B, key))
    assert d.allowed is allowed
    assert d.why == (f"default:{default}" if allowed else "implicit")
    assert not decide(view(default=default), ANONYMOUS, Ask(action, B, key)).allowed  # never for anonymous


def test_a_named_peer_loses_the_default_and_a_deny_does_not_take_it_away() -> None:
    v = view(st(principal={"AWS": "alice"}, action=GET), default="read-write")
    assert ok(v, ALICE, GET) and not ok(v, ALICE, PUT)  # alice's statements replace the default for her
    assert ok(v, CAROL, PUT)  # carol keeps it
    g = view(st(principal={"AWS": "arn:aws:iam::mesh:group/ci"}, action=GET), default="read-write")
    assert not ok(g, BOB, PUT) and ok(g, CAROL, PUT)  # named through a group
    d = view(st("Deny", principal="*", action=DEL, resource=f"arn:aws:s3:::{B}/releases/*"), default="read-write")
    assert ok(d, CAROL, PUT, "releases/x") and ok(d, CAROL, DEL, "tmp/x") and not ok(d, CAROL, DEL, "releases/x")
    anyone = view(st(principal="*", action=GET), default="read-write")
    assert ok(anyone, CAROL, PUT)  # "*" does not count as naming


def test_the_system_bucket_rule() -> None:
    for action in ACTIONS:
        key = None if ACTIONS[action].value != "object" else "peers/x.json"
        ask = Ask(action, "_tunnelmesh", key)
        assert decide(SYSTEM_VIEW, ADMIN, ask).allowed is (action in ROLES["read"]), action
        for who in (OWNER, CAROL, ANONYMOUS, Who("key", "admin", is_admin=True, key_id="TMAK1")):
            assert not decide(SYSTEM_VIEW, who, ask).allowed
    # whatever view is passed for it: no record of `_tunnelmesh` is ever consulted
    permissive = view(st(principal="*", action="s3:*"), default="read-write")
    assert not decide(permissive, CAROL, Ask(GET, "_tunnelmesh", "x")).allowed
    assert not decide(SYSTEM_VIEW, ADMIN, Ask("s3:PutBucketPolicy", "_tunnelmesh")).allowed
    assert decide(SYSTEM_VIEW, ADMIN, Ask(GET, "_tunnelmesh", "x")).why == "system"
    assert visible(SYSTEM_VIEW, ADMIN) and not visible(SYSTEM_VIEW, CAROL)


def test_restrict_public_buckets_skips_anyone_statements_for_anonymous_callers() -> None:
    statements = [st(principal="*", action=GET)]
    open_view = view(*statements, public_access_block=None)
    restricted = view(*statements, public_access_block={"RestrictPublicBuckets": True})
    assert open_view.public and restricted.public
    assert ok(open_view, ANONYMOUS, GET)
    assert not ok(restricted, ANONYMOUS, GET)
    assert ok(restricted, CAROL, GET)  # an authenticated peer still matches "*"
    mesh_default = compile_view(None, IDENT, B, frozenset(), "none", pab_default=True)
    assert mesh_default.pab == PublicAccessBlock()


def test_a_scoped_key_is_the_intersection_of_its_scope_and_its_peer() -> None:
    scope = grant_statements(Grant("k1", "read", prefix="ci/", peer="alice"), B)
    key = Who("key", "alice", key_id="TMAK1", scope=scope)
    v = view(st(principal={"AWS": "alice"}, action="s3:*"))
    assert ok(v, key, GET, "ci/x")
    assert not ok(v, key, PUT, "ci/x")  # the peer may, the scope may not
    assert not ok(v, key, GET, "other/x")
    assert decide(v, key, Ask(GET, B, "other/x")).why == "key-scope"
    assert not ok(view(), key, GET, "ci/x")  # the scope may, the peer may not
    unscoped = Who("key", "alice", key_id="TMAK2")
    assert ok(v, unscoped, PUT, "x")
    owner_key = Who("key", "owner", is_admin=True, key_id="TMAK3")
    assert ok(view(), owner_key, PUT, "x")  # a key acts as its peer's ownership
    admin_key = Who("key", "admin", is_admin=True, key_id="TMAK4")
    assert not ok(view(), admin_key, GET, "x")  # but never as a mesh admin


@pytest.mark.parametrize(
    ("grant", "who", "action", "key", "ctx_prefix", "allowed"),
    [
        ({"to": {"peer": "alice"}, "role": "read"}, ALICE, GET, "x", None, True),
        ({"to": {"peer": "alice"}, "role": "read"}, ALICE, PUT, "x", None, False),
        ({"to": {"peer": "alice"}, "role": "write"}, ALICE, PUT, "x", None, True),
        ({"to": {"peer": "alice"}, "role": "write"}, ALICE, "s3:DeleteObjectVersion", "x", None, False),
        ({"to": {"peer": "alice"}, "role": "admin"}, ALICE, "s3:DeleteObjectVersion", "x", None, True),
        ({"to": {"peer": "alice"}, "role": "admin"}, ALICE, "s3:PutBucketPolicy", None, None, True),
        ({"to": {"peer": "alice"}, "role": "admin"}, ALICE, "s3:DeleteBucket", None, None, False),
        ({"to": {"group": "ci"}, "role": "write"}, BOB, PUT, "x", None, True),
        ({"to": {"group": "ci"}, "role": "write"}, CAROL, PUT, "x", None, False),
        ({"to": {"anyone": True}, "role": "read"}, ANONYMOUS, GET, "x", None, True),
        ({"to": {"peer": "alice"}, "role": "write", "prefix": "team/"}, ALICE, PUT, "team/x", None, True),
        ({"to": {"peer": "alice"}, "role": "write", "prefix": "team/"}, ALICE, PUT, "teamx", None, False),
        ({"to": {"peer": "alice"}, "role": "read", "prefix": "team/"}, ALICE, LIST, None, "team/a", True),
        ({"to": {"peer": "alice"}, "role": "read", "prefix": "team/"}, ALICE, LIST, None, "", False),
        ({"to": {"peer": "alice"}, "role": "read", "prefix": "team/"}, ALICE, LIST, None, None, False),
        ({"to": {"peer": "alice"}, "role": "read", "prefix": "team/"}, ALICE, "s3:GetBucketLocation", None, None, True),
        ({"to": {"peer": "alice"}, "role": "read", "prefix": "team/"}, ALICE, "s3:GetBucketTagging", None, None, False),
    ],
)
def test_grants(
    grant: dict[str, Any], who: Who, action: str, key: str | None, ctx_prefix: str | None, allowed: bool
) -> None:
    v = view(grants=[{"id": "g-1", **grant}])
    ctx = {} if ctx_prefix is None else {"s3:prefix": (ctx_prefix,)}
    d = decide(v, who, Ask(action, B, key, ctx))
    assert d.allowed is allowed
    if allowed:
        assert d.why == "grant:g-1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role": "owner", "peer": "a"},
        {"role": "read"},
        {"role": "read", "peer": "a", "group": "g"},
        {"role": "admin", "peer": "a", "prefix": "p/"},
        {"role": "read", "peer": "a", "prefix": "p*"},
        {"role": "read", "peer": "a", "prefix": "p?"},
        {"role": "read", "peer": "a", "prefix": "p\0"},
    ],
)
def test_bad_grants_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(BadGrant):
        Grant("g", **kwargs)


def test_an_anyone_grant_makes_the_bucket_public() -> None:
    assert view(grants=[{"id": "g", "to": {"anyone": True}, "role": "read"}]).public
    assert not view(grants=[{"id": "g", "to": {"peer": "alice"}, "role": "read"}]).public


def test_a_record_of_another_incarnation_is_ignored() -> None:
    record = {"bucket": B, "created": 99.0, "grants": [{"id": "g", "to": {"peer": "alice"}, "role": "write"}]}
    stale = compile_view(record, IDENT, B, frozenset(), "none", pab_default=False)
    assert not ok(stale, ALICE, PUT)
    fresh = compile_view({**record, "created": IDENT.created}, IDENT, B, frozenset(), "none", pab_default=False)
    assert ok(fresh, ALICE, PUT)


def test_a_deleted_groups_statements_match_nobody() -> None:
    record = {"bucket": B, "created": IDENT.created, "grants": [{"id": "g", "to": {"group": "ci"}, "role": "read"}]}
    assert ok(compile_view(record, IDENT, B, frozenset({"ci"}), "none", pab_default=False), BOB, GET)
    assert not ok(compile_view(record, IDENT, B, frozenset(), "none", pab_default=False), BOB, GET)


def test_statements_are_indexed_by_concrete_action() -> None:
    v = view(st(action="s3:Get*"), st(principal={"AWS": "bob"}, action=PUT), st("Deny", NotAction="s3:GetObject"))
    assert [s.source for s in v.allows[GET]] == ["policy#0"]
    assert [s.source for s in v.allows[PUT]] == ["policy#1"]
    assert GET not in v.denies and PUT in v.denies
    assert v.named_peers == {"alice", "bob"}


@pytest.mark.parametrize(
    ("v", "who", "shown"),
    [
        (view(), OWNER, True),
        (view(), ADMIN, True),
        (view(), CAROL, False),
        (view(default="read"), CAROL, True),
        (view(default="read"), ANONYMOUS, False),
        (view(st(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})), ALICE, True),  # conditions ignored
        (view(st(principal="*")), CAROL, False),  # "*" does not name carol
        (view(grants=[{"id": "g", "to": {"group": "ci"}, "role": "read"}]), BOB, True),
    ],
)
def test_visible(v: BucketView, who: Who, shown: bool) -> None:
    assert visible(v, who) is shown


def test_a_stored_policy_naming_a_vanished_peer_still_compiles() -> None:
    text = json.dumps({"Statement": [st(principal={"AWS": "gone"})]})
    parse_policy(text, B, None)
    record = {"bucket": B, "created": IDENT.created, "policy": text}
    v = compile_view(record, IDENT, B, frozenset(), "none", pab_default=False)
    assert v.policy_text == text and not ok(v, ALICE, GET)


def test_a_substituted_username_is_literal_text_never_a_wildcard() -> None:
    v = view(st(principal="*", resource=f"arn:aws:s3:::{B}/home/${{aws:username}}/*"))
    starry = Who("peer", "a*")
    assert ok(v, starry, GET, "home/a*/x")
    assert not ok(v, starry, GET, "home/abc/x")
    assert not ok(v, ANONYMOUS, GET, "home/a*/x")  # no username: the statement matches nothing


def test_object_tag_conditions() -> None:
    v = view(
        st(
            action=["s3:GetObject", "s3:GetObjectTagging"],
            Condition={"StringEquals": {"s3:ExistingObjectTag/security": "public"}},
        ),
        st(action=PUT, Condition={"StringEquals": {"s3:RequestObjectTag/team": "a"}}),
        st(
            action="s3:PutObjectTagging", Condition={"ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team"]}}
        ),
        st("Deny", "*", action="s3:GetObjectAcl", Condition={"StringEquals": {"s3:ExistingObjectTag/security": "x"}}),
        st(action="s3:GetObjectAcl"),
    )
    existing = {"s3:existingobjecttag/security"}
    assert v.object_key_actions == {
        "s3:GetObject",
        "s3:GetObjectTagging",
        PUT,
        "s3:PutObjectTagging",
        "s3:GetObjectAcl",
    }
    assert "s3:DeleteObject" not in v.object_key_actions

    def allowed(action: str, who: Who = ALICE, **ctx: tuple[str, ...]) -> bool:
        return decide(v, who, Ask(action, B, "k", ctx)).allowed

    def tag(prefix: str, tags: dict[str, str] | None) -> dict[str, tuple[str, ...]]:
        return object_tag_keys(tags, prefix, v.needed_keys)

    assert allowed(GET, **tag(EXISTING_TAG, {"security": "public", "foo": "bar"}))
    assert not allowed(GET, **tag(EXISTING_TAG, {"security": "private"}))
    assert not allowed(GET, **tag(EXISTING_TAG, {}))  # untagged
    assert not allowed(GET, CAROL, **tag(EXISTING_TAG, {"security": "public"}))  # another principal
    assert allowed(PUT, **tag(REQUEST_TAG, {"team": "a"}))
    assert not allowed(PUT, **tag(REQUEST_TAG, {"team": "b"}))
    assert not allowed(PUT, **tag(REQUEST_TAG, None))
    assert allowed("s3:PutObjectTagging", **tag(REQUEST_TAG, {"team": "b"}))
    assert not allowed("s3:PutObjectTagging", **tag(REQUEST_TAG, {"team": "b", "other": "c"}))
    # a Deny on an existing tag binds the owner too; without the tag the Allow speaks
    assert not allowed("s3:GetObjectAcl", OWNER, **tag(EXISTING_TAG, {"security": "x"}))
    assert allowed("s3:GetObjectAcl", **tag(EXISTING_TAG, {"security": "open"}))
    assert existing <= v.needed_keys


def test_a_view_without_object_conditions_defers_nothing() -> None:
    assert view(st(action="s3:*", Condition={"StringLike": {"s3:prefix": "a/*"}})).object_key_actions == frozenset()
    assert SYSTEM_VIEW.object_key_actions == frozenset()
