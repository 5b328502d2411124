"""`decide`: one ask against one bucket's view, in the order of section 1."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tunnelmesh.access.actions import BYPASS, POLICY_ACTIONS, ROLES
from tunnelmesh.access.conditions import Context
from tunnelmesh.access.policy import BUILTIN_GROUPS, Statement
from tunnelmesh.access.view import SYSTEM_BUCKET, BucketView, PeerIndex

# what mesh admins may do to `_tunnelmesh`: read it; nobody writes it but the coordinator itself
SYSTEM_READ = ROLES["read"]


@dataclass(frozen=True, slots=True)
class Who:
    kind: Literal["peer", "key", "anonymous"]
    peer_id: str = ""
    is_admin: bool = False
    groups: frozenset[str] = frozenset()
    key_id: str | None = None
    scope: tuple[Statement, ...] | None = None


ANONYMOUS = Who("anonymous")


@dataclass(frozen=True, slots=True)
class Ask:
    action: str
    bucket: str
    key: str | None = None
    ctx: Context = field(default_factory=dict)  # lower-case key names


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    why: str  # the request log's authz=... ("owner", "policy:Sid", "deny:policy#1", "implicit", ...)


def _groups(who: Who) -> frozenset[str]:
    return who.groups | BUILTIN_GROUPS if who.kind != "anonymous" else frozenset()


def _context(who: Who, ask: Ask) -> Context:
    if who.kind == "anonymous":
        return ask.ctx
    ctx = dict(ask.ctx)
    ctx.setdefault("aws:username", (who.peer_id,))
    ctx.setdefault("aws:userid", (who.peer_id,))
    ctx.setdefault("tunnelmesh:principalgroup", tuple(sorted(_groups(who))))
    return ctx


def _principal(st: Statement, who: Who) -> bool:
    ps = st.principals
    hit = ps.anyone or (
        who.kind != "anonymous"
        and (
            who.peer_id in ps.peers
            or (bool(ps.groups) and not (ps.groups.isdisjoint(who.groups) and ps.groups.isdisjoint(BUILTIN_GROUPS)))
        )
    )
    return hit != st.not_principal


def _resource(st: Statement, resource: str, ctx: Context) -> bool:
    hit = False
    for tpl in st.resources:
        pat = tpl.pattern(ctx)
        if pat is not None and pat.matches(resource):
            hit = True
            break
    return hit != st.not_resource


def _applies(st: Statement, who: Who | None, resource: str, ctx: Context) -> bool:
    """Principal (skipped when `who` is None: a key's own scope), resource, conditions: cheapest first."""
    if who is not None and not _principal(st, who):
        return False
    return _resource(st, resource, ctx) and all(c.holds(ctx) for c in st.conditions)


def _owner(view: BucketView, who: Who) -> bool:
    return who.kind != "anonymous" and bool(view.owner) and who.peer_id == view.owner


def _admin(who: Who) -> bool:
    return who.kind == "peer" and who.is_admin  # a key never carries its peer's admin power (section 4)


@dataclass(frozen=True, slots=True)
class Narrowed:
    """The Deny and Allow statements of one view's action whose principal and conditions hold for one caller and
    one set of request keys: what is left to decide per request is only their resources (see `decide`'s memo)."""

    view: BucketView  # kept so a memo entry is never taken for another view that reused an id
    denies: tuple[Statement, ...]
    allows: tuple[Statement, ...]


MEMO_CAP = 4096  # entries a memo holds before it starts over (a handful of callers x actions x sources)


def _narrow(view: BucketView, who: Who, action: str, ctx: Context, restrict: bool) -> Narrowed:
    def holds(st: Statement) -> bool:
        return _principal(st, who) and all(c.holds(ctx) for c in st.conditions)

    denies = tuple(filter(holds, _candidates(view.deny_index, view.denies, action, who)))
    allowed = (
        st for st in _candidates(view.allow_index, view.allows, action, who) if not (restrict and st.principals.anyone)
    )
    return Narrowed(view, denies, tuple(filter(holds, allowed)))


def _narrowed(
    view: BucketView, who: Who, action: str, ctx: Context, restrict: bool, memo: MutableMapping[Any, Narrowed]
) -> Narrowed:
    """`_narrow`, remembered: a decision is pure, so the same (view, caller, action, request keys) narrows the
    same way; only the resource, which differs per object, is left to check."""
    key = (
        id(view),
        who.kind,
        who.peer_id,
        who.is_admin,
        who.groups,
        who.key_id,
        action,
        restrict,
        tuple(sorted(ctx.items())),
    )
    hit = memo.get(key)
    if hit is None or hit.view is not view:
        if len(memo) >= MEMO_CAP:
            memo.clear()
        hit = memo[key] = _narrow(view, who, action, ctx, restrict)
    return hit


def decide(view: BucketView, who: Who, ask: Ask, memo: MutableMapping[Any, Narrowed] | None = None) -> Decision:
    """`memo`: the caller's own mapping, where the statements narrowed for a (view, caller, action, request
    keys) are kept, so that under a large policy a repeated ask checks only resources."""
    # 1. the system bucket: only its fixed rule, whatever view was passed
    if ask.bucket == SYSTEM_BUCKET or view.system:
        return Decision(_admin(who) and ask.action in SYSTEM_READ, "system")
    action = ask.action
    resource = ask.bucket if ask.key is None else f"{ask.bucket}/{ask.key}"
    # the caller's own keys are added only for views that read some: the common path builds nothing
    ctx = _context(who, ask) if view.needed_keys or who.scope else ask.ctx
    restrict = who.kind == "anonymous" and view.public and view.pab is not None and view.pab.restrict_public_buckets
    narrowed = _narrowed(view, who, action, ctx, restrict, memo) if memo is not None and view.statements else None
    # 2. explicit Deny binds everyone, but owner and admins may always manage the policy itself
    escape = action in POLICY_ACTIONS and (_admin(who) or _owner(view, who))
    if not escape:
        if narrowed is not None:
            for st in narrowed.denies:
                if _resource(st, resource, ctx):
                    return Decision(False, f"deny:{st.source}")
        else:
            for st in _candidates(view.deny_index, view.denies, action, who):
                if _applies(st, who, resource, ctx):
                    return Decision(False, f"deny:{st.source}")
    # 3. a scoped key: at most what its scope allows (an intersection, like a session policy)
    if (
        who.kind == "key"
        and who.scope is not None
        and not any(
            st.allow and action in st.effective_actions() and _applies(st, None, resource, ctx) for st in who.scope
        )
    ):
        return Decision(False, "key-scope")
    # 4. Allow
    if _admin(who):
        return Decision(True, "admin")
    if _owner(view, who) and action != BYPASS:
        return Decision(True, "owner")
    if narrowed is not None:
        for st in narrowed.allows:
            if _resource(st, resource, ctx):
                return Decision(True, st.source)
    else:
        for st in _candidates(view.allow_index, view.allows, action, who):
            if restrict and st.principals.anyone:
                continue
            if _applies(st, who, resource, ctx):
                return Decision(True, st.source)
    # 5. the mesh default, for peers no Allow statement names
    if who.kind != "anonymous" and action in view.default and not _named(view, who):
        return Decision(True, f"default:{view.default_name}")
    return Decision(False, "implicit")


def _candidates(
    index: Mapping[str, PeerIndex], plain: Mapping[str, tuple[Statement, ...]], action: str, who: Who
) -> tuple[Statement, ...]:
    """The statements of `action` that may name `who`: its own and those naming no peer alone (a view built
    without an index, as some tests make them, offers them all)."""
    entry = index.get(action)
    if entry is None:
        return plain.get(action, ())
    return entry.candidates(None if who.kind == "anonymous" else who.peer_id)


def _named(view: BucketView, who: Who) -> bool:
    return who.peer_id in view.named_peers or not view.named_groups.isdisjoint(_groups(who))


def visible(view: BucketView, who: Who) -> bool:
    """Whether ListBuckets shows this bucket to `who` (conditions are not evaluated)."""
    if view.system or view.bucket == SYSTEM_BUCKET:
        return _admin(who)
    if who.kind == "anonymous":
        return False
    if who.kind == "key" and who.scope is not None and not any(_resource(st, view.bucket, {}) for st in who.scope):
        return False  # a scoped key sees the buckets of its scope only (each grant has a bucket-level statement)
    if _admin(who) or _owner(view, who) or _named(view, who):
        return True
    return bool(view.default)
