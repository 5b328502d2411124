"""Grants (`bucket grant B --peer P --role R --prefix P`) as the Allow statements they stand for (section 2.3)."""

from __future__ import annotations

from dataclasses import dataclass

from tunnelmesh.access.actions import ACTIONS, ROLES, Kind
from tunnelmesh.access.conditions import Condition
from tunnelmesh.access.glob import STAR, Pattern
from tunnelmesh.access.policy import PrincipalSet, Statement
from tunnelmesh.access.variables import Template

LISTINGS = frozenset({"s3:ListBucket", "s3:ListBucketVersions", "s3:ListBucketMultipartUploads"})
ALWAYS = frozenset({"s3:GetBucketLocation"})  # a prefix-limited grantee still finds the bucket's region


class BadGrant(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    role: str  # read | write | admin
    prefix: str = ""
    peer: str | None = None
    group: str | None = None
    anyone: bool = False

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise BadGrant(f"unknown role {self.role!r}")
        if sum((self.peer is not None, self.group is not None, self.anyone)) != 1:
            raise BadGrant("a grant is to one peer, one group, or anyone")
        if self.role == "admin" and self.prefix:
            raise BadGrant("an admin grant covers the whole bucket: no prefix")
        if any(c in self.prefix for c in "*?\0"):
            raise BadGrant("a prefix may not hold '*', '?' or NUL (IAM globs have no escape)")


def _literal(text: str) -> tuple[str, ...]:
    return tuple(text)  # one character per token: never a wildcard


def grant_statements(grant: Grant, bucket: str) -> tuple[Statement, ...]:
    who = PrincipalSet(
        peers=frozenset({grant.peer}) if grant.peer is not None else frozenset(),
        groups=frozenset({grant.group}) if grant.group is not None else frozenset(),
        anyone=grant.anyone,
    )
    role = ROLES[grant.role]
    source = f"grant:{grant.id}"

    def allow(actions: frozenset[str], resource: Template, conditions: tuple[Condition, ...] = ()) -> Statement:
        return Statement(grant.id, True, who, False, actions, False, (resource,), False, conditions, source)

    objects = frozenset(a for a in role if ACTIONS[a] is Kind.OBJECT)
    bucket_actions = frozenset(a for a in role if ACTIONS[a] is Kind.BUCKET)
    # the bucket and prefix are literal text; only the trailing `*` is a wildcard
    object_res = _fixed(_literal(f"{bucket}/{grant.prefix}") + (STAR,))
    bucket_res = _fixed(_literal(bucket))
    out = [allow(objects, object_res)]
    if not grant.prefix:
        out.append(allow(bucket_actions, bucket_res))
        return tuple(out)
    like = Condition.parse("StringLike", "s3:prefix", grant.prefix + "*", substitute=False)
    out.append(allow(bucket_actions & LISTINGS, bucket_res, (like,)))
    if bucket_actions & ALWAYS:
        out.append(allow(bucket_actions & ALWAYS, bucket_res))
    return tuple(out)


def _fixed(toks: tuple[str, ...]) -> Template:
    return Template(toks, Pattern.compile(toks))
