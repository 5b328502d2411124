"""Bucket policy documents: the grammar, every refusal of section 2.1, and `is_public` (section 5)."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from tunnelmesh.access.actions import ACTIONS, Kind, UnknownAction, expand
from tunnelmesh.access.conditions import BadCondition, Condition
from tunnelmesh.access.glob import STAR, Pattern
from tunnelmesh.access.variables import BadVariable, Template

MAX_POLICY_BYTES = 20_480  # AWS's limit, counted without insignificant whitespace
BUILTIN_GROUPS = frozenset({"peers"})  # every non-revoked peer
_VERSIONS = ("2012-10-17", "2008-10-17")
_TOP = ("Version", "Id", "Statement")
_FIELDS = ("Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition")
_ARN = "arn:aws:s3:::"


class MalformedPolicy(ValueError):
    """The document is refused (400 MalformedPolicy); str(e) is the client's message."""


@dataclass(frozen=True, slots=True)
class Known:
    """The mesh's peers and groups when the policy is put (a principal must name one that exists)."""

    peers: frozenset[str]
    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    peers: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    anyone: bool = False


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str
    allow: bool
    principals: PrincipalSet
    not_principal: bool
    actions: frozenset[str]  # catalogue names, wildcards expanded; with not_action, the ones excluded
    not_action: bool
    resources: tuple[Template, ...]  # "bucket" or "bucket/key" globs (the ARN prefix dropped)
    not_resource: bool
    conditions: tuple[Condition, ...]
    source: str  # "policy#2", "policy:Sid", "grant:g-5f3a", "scope#0"

    def effective_actions(self) -> frozenset[str]:
        """The concrete actions this statement speaks for: what a view indexes it under."""
        return frozenset(ACTIONS) - self.actions if self.not_action else self.actions


@dataclass(frozen=True, slots=True)
class PolicyDoc:
    version: str | None
    statements: tuple[Statement, ...]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            # what we evaluate must be what a reader of the document sees: no "last one wins"
            raise MalformedPolicy(f"This policy contains invalid Json: duplicate key {k}")
        out[k] = v
    return out


def _not_json(name: str) -> Any:
    raise MalformedPolicy(f"This policy contains invalid Json: {name}")  # NaN, Infinity: Python's, not JSON's


def parse_policy(text: str, bucket: str, known: Known | None) -> PolicyDoc:
    """Parse and validate a bucket policy; `known=None` (compiling a stored policy) skips existence checks."""
    if not text.lstrip().startswith("{"):
        raise MalformedPolicy("Policies must be valid JSON and the first byte must be '{'")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_not_json)
    except (ValueError, RecursionError) as e:
        if isinstance(e, MalformedPolicy):
            raise
        raise MalformedPolicy("This policy contains invalid Json") from None
    if not isinstance(doc, dict):
        raise MalformedPolicy("Policies must be valid JSON and the first byte must be '{'")
    compact = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    try:
        size = len(compact.encode())
    except UnicodeEncodeError:  # a lone surrogate (\ud800) JSON lets through: no text of ours holds one
        raise MalformedPolicy("This policy contains invalid Json") from None
    if size > MAX_POLICY_BYTES:
        raise MalformedPolicy("Policy exceeds the maximum allowed document size.")
    for field in doc:
        if field not in _TOP:
            raise MalformedPolicy(f"Unknown field {field}")
    if not isinstance(doc.get("Id", ""), str):
        raise MalformedPolicy("Invalid value for field Id")
    version = doc.get("Version")
    if version is not None and version not in _VERSIONS:
        raise MalformedPolicy("The policy must contain a valid version string")
    if "Statement" not in doc:
        raise MalformedPolicy("Missing required field Statement")
    raw = doc["Statement"]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise MalformedPolicy("Could not parse the policy: Statement is empty!")
    substitute = version == "2012-10-17"  # only 2012 substitutes variables
    statements = tuple(_statement(item, i, bucket, known, substitute) for i, item in enumerate(items))
    return PolicyDoc(version, statements)


def _strings(value: object, field: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise MalformedPolicy(f"Invalid value for field {field}")
    return [str(v) for v in items]


def _one_of(st: dict[str, Any], field: str) -> tuple[object, bool]:
    neg = "Not" + field
    if field in st and neg in st:
        raise MalformedPolicy(f"Statement has both {field} and {neg}")
    if field not in st and neg not in st:
        raise MalformedPolicy(f"Missing required field {field}")
    return (st[neg], True) if neg in st else (st[field], False)


def _statement(st: object, index: int, bucket: str, known: Known | None, substitute: bool) -> Statement:
    if not isinstance(st, dict):
        raise MalformedPolicy("Statement must be an object")
    for field in st:
        if field not in _FIELDS:
            raise MalformedPolicy(f"Unknown field {field}")
    sid = st.get("Sid", "")
    if not isinstance(sid, str):
        raise MalformedPolicy("Invalid value for field Sid")
    if "Effect" not in st:
        raise MalformedPolicy("Missing required field Effect")
    if st["Effect"] not in ("Allow", "Deny"):
        raise MalformedPolicy("Invalid effect: " + str(st["Effect"]))
    allow = st["Effect"] == "Allow"
    raw_principal, not_principal = _one_of(st, "Principal")
    if not_principal and allow:
        raise MalformedPolicy("NotPrincipal is allowed only with Effect Deny")
    principals = _principals(raw_principal, known)
    raw_action, not_action = _one_of(st, "Action")
    raw_resource, not_resource = _one_of(st, "Resource")
    resources = tuple(_resource(r, bucket, substitute) for r in _strings(raw_resource, "Resource"))
    actions = _actions(_strings(raw_action, "Action"), resources, check_kinds=not (not_action or not_resource))
    conditions = _conditions(st.get("Condition"), substitute)
    source = f"policy:{sid}" if sid else f"policy#{index}"
    return Statement(
        sid, allow, principals, not_principal, actions, not_action, resources, not_resource, conditions, source
    )


def _principals(raw: object, known: Known | None) -> PrincipalSet:
    if raw == "*":
        return PrincipalSet(anyone=True)
    if not isinstance(raw, dict) or not raw:
        raise MalformedPolicy("Invalid principal in policy")
    peers: set[str] = set()
    groups: set[str] = set()
    anyone = False
    for kind, value in raw.items():
        if kind not in ("AWS", "CanonicalUser"):
            raise MalformedPolicy("Invalid principal in policy")  # Service, Federated: not in a mesh
        for name in _strings(value, "Principal"):
            if name == "*" and kind == "AWS":
                anyone = True
            elif name.startswith("arn:aws:iam::") and kind == "AWS":
                account, _, rest = name[len("arn:aws:iam::") :].partition(":")
                if rest == "root":
                    # an account is a peer if it exists, else inert (s3-tests name "s3tenant1")
                    if known is None or account in known.peers:
                        peers.add(account)
                elif rest.startswith("user/") and rest[5:]:
                    peers.add(_peer(rest[5:], known))
                elif account == "mesh" and rest.startswith("group/") and rest[6:]:
                    group = rest[6:]
                    if known is not None and group not in known.groups and group not in BUILTIN_GROUPS:
                        raise MalformedPolicy("Invalid principal in policy")
                    groups.add(group)
                else:
                    raise MalformedPolicy("Invalid principal in policy")
            else:
                peers.add(_peer(name, known))
    return PrincipalSet(frozenset(peers), frozenset(groups), anyone)


def _peer(name: str, known: Known | None) -> str:
    if known is not None and name not in known.peers:
        raise MalformedPolicy("Invalid principal in policy")
    return name


def _resource(raw: str, bucket: str, substitute: bool) -> Template:
    if not raw.startswith(_ARN) or len(raw) == len(_ARN):
        raise MalformedPolicy("Policy has invalid resource")
    path = raw[len(_ARN) :]
    try:
        tpl = Template.parse(path, substitute)
    except BadVariable:
        raise MalformedPolicy("Policy has invalid resource") from None
    head = path.partition("/")[0]
    if "${" not in head:
        bucket_glob = Pattern.of(head)
        if "/" not in path and bucket_glob.has_star:
            # `arn:aws:s3:::my*` also covers `my-bucket/key`: only the part before its first `*` must fit
            bucket_glob = Pattern.of(head[: head.index("*") + 1])
        if not bucket_glob.matches(bucket):
            raise MalformedPolicy("Policy has invalid resource")
    return tpl


def _kinds(resources: tuple[Template, ...]) -> set[Kind]:
    kinds: set[Kind] = set()
    for tpl in resources:
        if "/" in tpl.toks:
            kinds.add(Kind.OBJECT)
        else:
            kinds.add(Kind.BUCKET)
            if STAR in tpl.toks:
                kinds.add(Kind.OBJECT)  # a `*` spans `/`
    return kinds


def _actions(raw: list[str], resources: tuple[Template, ...], check_kinds: bool) -> frozenset[str]:
    kinds = _kinds(resources)
    out: set[str] = set()
    for name in raw:
        try:
            found = expand(name)
        except UnknownAction:
            raise MalformedPolicy("Policy has invalid action") from None
        if not check_kinds:
            out |= found
            continue
        fitting = {a for a in found if ACTIONS[a] in kinds}
        if not fitting:
            raise MalformedPolicy("Action does not apply to any resource(s) in statement")
        out |= fitting  # a wildcard keeps only the actions its resources can name
    return frozenset(out)


def _conditions(raw: object, substitute: bool) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise MalformedPolicy("Invalid value for field Condition")
    out: list[Condition] = []
    for operator, block in raw.items():
        if not isinstance(block, dict) or not block:
            raise MalformedPolicy(f"Invalid value for condition operator {operator}")
        for key, values in block.items():
            try:
                out.append(Condition.parse(operator, key, values, substitute))
            except BadCondition as e:
                raise MalformedPolicy(str(e)) from None
    return tuple(out)


# how narrow a SourceIp range must be to make a "*" statement not public. AWS says /8 (IPv4) and /32 (IPv6),
# but on a mesh one /8 (10/8) holds every host: only a range of at most 256 addresses (a /64 for IPv6) names
# fixed sources here, and a range holding a loopback address never does (behind a local proxy, everyone
# comes from 127.0.0.1)
_NARROW = {4: 24, 6: 64}


def _narrow(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    loopback = ipaddress.ip_network("127.0.0.0/8") if net.version == 4 else ipaddress.ip_network("::1/128")
    return net.prefixlen >= _NARROW[net.version] and not net.overlaps(loopback)


def _limits_to_fixed_sources(cond: Condition) -> bool:
    """The "not public" conditions: narrow SourceIp ranges (see _NARROW), or fixed user ids/names."""
    low = cond.operator.lower()
    if low == "ipaddress" and cond.key == "aws:sourceip":
        return all(_narrow(n) for n in cond.nets)
    if low == "stringequals" and cond.key in ("aws:userid", "aws:username"):
        return all(len(t) == 1 for tpl in cond.templates for t in tpl.toks)
    return False


def is_public(doc: PolicyDoc | None) -> bool:
    """True if an Allow statement lets anyone in, unlimited by a fixed-source condition."""
    if doc is None:
        return False
    for st in doc.statements:
        if st.allow and st.principals.anyone and not any(_limits_to_fixed_sources(c) for c in st.conditions):
            return True
    return False
