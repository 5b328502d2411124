"""A bucket's compiled view: every statement that speaks for it, indexed by concrete action (section 2)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tunnelmesh.access.actions import ROLES
from tunnelmesh.access.conditions import reads_object_keys
from tunnelmesh.access.cors import CorsRule, rules_from_json
from tunnelmesh.access.grants import Grant, grant_statements
from tunnelmesh.access.policy import BUILTIN_GROUPS, PolicyDoc, PrincipalSet, Statement, is_public, parse_policy
from tunnelmesh.access.variables import CALLER_VARS

SYSTEM_BUCKET = "_tunnelmesh"  # the store's own name for it; repeated here so this package stays pure
DEFAULTS: dict[str, frozenset[str]] = {"read-write": ROLES["write"], "read": ROLES["read"], "none": frozenset()}


@dataclass(frozen=True, slots=True)
class PublicAccessBlock:
    block_public_acls: bool = True
    ignore_public_acls: bool = True
    block_public_policy: bool = True
    restrict_public_buckets: bool = True


@dataclass(frozen=True, slots=True)
class BucketIdent:
    owner: str
    created: float


@dataclass(frozen=True, slots=True)
class PeerIndex:
    by_peer: Mapping[str, tuple[Statement, ...]]
    rest: tuple[Statement, ...]

    def candidates(self, peer: str | None) -> tuple[Statement, ...]:
        """The statements that may apply to `peer` (None: anonymous, whom no peer statement names)."""
        own = self.by_peer.get(peer, ()) if peer is not None else ()
        return own + self.rest if own else self.rest


def _index(by_action: Mapping[str, tuple[Statement, ...]]) -> dict[str, PeerIndex]:
    out: dict[str, PeerIndex] = {}
    for action, sts in by_action.items():
        by_peer: dict[str, list[Statement]] = {}
        rest: list[Statement] = []
        for st in sts:
            ps = st.principals
            if st.not_principal or ps.anyone or ps.groups or not ps.peers:
                rest.append(st)
            else:
                for peer in ps.peers:
                    by_peer.setdefault(peer, []).append(st)
        out[action] = PeerIndex({p: tuple(v) for p, v in by_peer.items()}, tuple(rest))
    return out


@dataclass(frozen=True, slots=True)
class BucketView:
    bucket: str
    owner: str
    created: float
    allows: Mapping[str, tuple[Statement, ...]]
    denies: Mapping[str, tuple[Statement, ...]]
    named_peers: frozenset[str]
    named_groups: frozenset[str]
    default: frozenset[str]
    default_name: str
    pab: PublicAccessBlock | None
    public: bool
    needed_keys: frozenset[str]
    policy_text: str | None
    system: bool = False
    statements: tuple[Statement, ...] = field(default=(), repr=False)
    # the bucket's CORS rules (None: no configuration); the edge answers preflights and adds the actual
    # responses' headers from the cached view, never from a read of its own
    cors: tuple[CorsRule, ...] | None = field(default=None, repr=False)
    # the actions some statement of which reads an object-dependent key (s3:ExistingObjectTag/*,
    # s3:RequestObjectTag*): the edge leaves those asks to the operation that knows the tags (most views: none)
    object_key_actions: frozenset[str] = frozenset()
    # allows and denies of each action again, split by principal: the statements naming just some peers, by
    # peer, and the rest (anyone, groups, NotPrincipal). A decision looks at its caller's and the rest only:
    # a policy naming twenty peers costs one of them twenty statements' work no more (PeerIndex.candidates)
    allow_index: Mapping[str, PeerIndex] = field(default_factory=dict, repr=False)
    deny_index: Mapping[str, PeerIndex] = field(default_factory=dict, repr=False)


def build_view(
    bucket: str,
    ident: BucketIdent,
    statements: Iterable[Statement],
    default: str,
    pab: PublicAccessBlock | None,
    public: bool,
    policy_text: str | None = None,
    cors: tuple[CorsRule, ...] | None = None,
) -> BucketView:
    if default not in DEFAULTS:
        raise ValueError(f"unknown default_bucket_access {default!r}")
    allows: dict[str, list[Statement]] = {}
    denies: dict[str, list[Statement]] = {}
    peers: set[str] = set()
    groups: set[str] = set()
    keys: set[str] = set()
    object_actions: set[str] = set()
    sts = tuple(statements)
    for st in sts:
        index = allows if st.allow else denies
        for action in st.effective_actions():
            index.setdefault(action, []).append(st)
        if st.allow:
            peers |= st.principals.peers
            groups |= st.principals.groups
        keys |= {c.key for c in st.conditions}
        if reads_object_keys(c.key for c in st.conditions):
            object_actions |= st.effective_actions()
        if any(tpl.fixed is None for tpl in st.resources):
            keys |= set(CALLER_VARS.values())
    allow_map = {a: tuple(s) for a, s in allows.items()}
    deny_map = {a: tuple(s) for a, s in denies.items()}
    return BucketView(
        bucket=bucket,
        owner=ident.owner,
        created=ident.created,
        allows=allow_map,
        denies=deny_map,
        named_peers=frozenset(peers),
        named_groups=frozenset(groups),
        default=DEFAULTS[default],
        default_name=default,
        pab=pab,
        public=public,
        needed_keys=frozenset(keys),
        policy_text=policy_text,
        statements=sts,
        cors=cors,
        object_key_actions=frozenset(object_actions),
        allow_index=_index(allow_map),
        deny_index=_index(deny_map),
    )


def _pab(record: Mapping[str, Any], pab_default: bool) -> PublicAccessBlock | None:
    if "public_access_block" not in record:
        return PublicAccessBlock() if pab_default else None  # never set: the mesh default
    raw = record["public_access_block"]
    if raw is None:
        return None  # deleted: NoSuchPublicAccessBlockConfiguration, nothing blocked
    return PublicAccessBlock(
        bool(raw.get("BlockPublicAcls", False)),
        bool(raw.get("IgnorePublicAcls", False)),
        bool(raw.get("BlockPublicPolicy", False)),
        bool(raw.get("RestrictPublicBuckets", False)),
    )


def _grant(raw: Mapping[str, Any]) -> Grant:
    to = raw.get("to", {})
    return Grant(
        id=str(raw["id"]),
        role=str(raw["role"]),
        prefix=str(raw.get("prefix", "")),
        peer=to.get("peer"),
        group=to.get("group"),
        anyone=bool(to.get("anyone", False)),
    )


def _drop_missing_groups(st: Statement, groups: frozenset[str]) -> Statement:
    """A deleted group's statements stay but match nobody: its name leaves the principal set."""
    kept = st.principals.groups & (groups | BUILTIN_GROUPS)
    if kept == st.principals.groups:
        return st
    ps = PrincipalSet(st.principals.peers, kept, st.principals.anyone)
    return Statement(
        st.sid, st.allow, ps, st.not_principal, st.actions, st.not_action, st.resources, st.not_resource,
        st.conditions, st.source,
    )  # fmt: skip


def compile_view(
    record: Mapping[str, Any] | None,
    ident: BucketIdent,
    bucket: str,
    groups: frozenset[str],
    default: str,
    pab_default: bool,
    incarnations: Mapping[str, str] | None = None,
) -> BucketView:
    """The view of `bucket` from its access record (section 3); a record of another incarnation is ignored.
    `incarnations`: each group's incarnation, which a grant to a group must carry to apply."""
    if record is not None and record.get("created") != ident.created:
        record = None  # the bucket was deleted and re-created: its old grants and policy never apply
    record = record or {}
    statements: list[Statement] = []
    for raw in record.get("grants", ()):
        grant = _grant(raw)
        of_group = grant.group is not None and grant.group not in BUILTIN_GROUPS and incarnations is not None
        if of_group and raw.get("group_incarnation") != incarnations.get(str(grant.group)):  # type: ignore[union-attr]
            continue  # made for a group since deleted (its name maybe re-created): it grants nobody
        statements.extend(grant_statements(grant, bucket))
    text = record.get("policy")
    doc: PolicyDoc | None = parse_policy(text, bucket, None) if text is not None else None
    if doc is not None:
        statements.extend(doc.statements)
    statements = [_drop_missing_groups(st, groups) for st in statements]
    pab = _pab(record, pab_default)
    public = any(st.allow and st.principals.anyone for st in statements if st.source.startswith("grant:"))
    # a configuration whose every rule is damaged allows nothing: the same answers as none
    cors = rules_from_json(record["cors"]) if record.get("cors") is not None else None
    return build_view(bucket, ident, statements, default, pab, public or is_public(doc), text, cors or None)


SYSTEM_VIEW = BucketView(
    bucket=SYSTEM_BUCKET,
    owner="",
    created=0.0,
    allows={},
    denies={},
    named_peers=frozenset(),
    named_groups=frozenset(),
    default=frozenset(),
    default_name="none",
    pab=PublicAccessBlock(),
    public=False,
    needed_keys=frozenset(),
    policy_text=None,
    system=True,
)
