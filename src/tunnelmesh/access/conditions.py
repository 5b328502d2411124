"""Condition operators and keys (section 2.2), each condition parsed and checked once, at put time.

A request's context maps lower-case key names to their values (a tuple: some keys are multi-valued);
a key missing from the mapping is absent from the request.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tunnelmesh.access.variables import BadVariable, Template

Context = Mapping[str, tuple[str, ...]]
Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadCondition(ValueError):
    """A condition we refuse; the message is the client's."""


# keys we supply, lower-cased (condition keys are case-insensitive in IAM)
def _lower_set(text: str) -> frozenset[str]:
    return frozenset(k.lower() for k in text.split())


S3_KEYS = _lower_set(
    "s3:prefix s3:delimiter s3:max-keys s3:x-amz-copy-source s3:x-amz-metadata-directive "
    "s3:x-amz-server-side-encryption s3:x-amz-acl s3:VersionId s3:authType s3:signatureversion"
)
AWS_KEYS = _lower_set(
    "aws:SourceIp aws:SecureTransport aws:CurrentTime aws:EpochTime aws:username aws:userid aws:Referer aws:UserAgent"
)
MESH_KEYS = frozenset({"tunnelmesh:principalgroup"})
# object-dependent keys (section 8 step 8): a tag's key follows the slash and keeps its case (S3 tag keys are
# case-sensitive, so `Security` and `security` are two tags); only the key's name is lower-cased
EXISTING_TAG = "s3:existingobjecttag/"  # the tags of the object the request names, known once it is looked up
REQUEST_TAG = "s3:requestobjecttag/"  # the tags the request writes (x-amz-tagging, a Tagging body, a form's field)
REQUEST_TAG_KEYS = "s3:requestobjecttagkeys"  # multi-valued: the keys of those tags
_TAG_PREFIXES = (EXISTING_TAG, REQUEST_TAG)
MAX_TAG_KEY = 128  # S3's longest tag key: a longer one could never be present

Family = Literal["string", "numeric", "date", "bool", "ip", "null"]
_STRING_OPS = {
    "stringequals": (False, False, False),  # (negated, ignore case, like)
    "stringnotequals": (True, False, False),
    "stringequalsignorecase": (False, True, False),
    "stringnotequalsignorecase": (True, True, False),
    "stringlike": (False, False, True),
    "stringnotlike": (True, False, True),
}
_COMPARE: dict[str, tuple[bool, Callable[[float, float], bool]]] = {
    "equals": (False, lambda a, b: a == b),
    "notequals": (True, lambda a, b: a == b),
    "lessthan": (False, lambda a, b: a < b),
    "lessthanequals": (False, lambda a, b: a <= b),
    "greaterthan": (False, lambda a, b: a > b),
    "greaterthanequals": (False, lambda a, b: a >= b),
}


@functools.lru_cache(maxsize=1024)
def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A request's source address, parsed once per distinct value (a mesh has few clients, and parsing one
    cost as much as the rest of a 20-statement decision). A dual-stack listener shows an IPv4 client as
    ::ffff:a.b.c.d: it is the IPv4 address all the same."""
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _unmapped(net: Net) -> Net:
    """An IPv4-mapped IPv6 range (::ffff:a.b.c.d/n, n >= 96) as the IPv4 range it is; addresses are compared
    the same way, so neither form escapes a condition written in the other."""
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.network_address.ipv4_mapped is not None:
        return ipaddress.ip_network(f"{net.network_address.ipv4_mapped}/{net.prefixlen - 96}")
    return net


def check_key(key: str) -> str:
    low = key.lower()
    if low in S3_KEYS or low in MESH_KEYS or low == REQUEST_TAG_KEYS or low.startswith("aws:"):
        return low  # an unknown aws: key is accepted and simply never present
    for prefix in _TAG_PREFIXES:
        if low.startswith(prefix) and 1 <= len(key) - len(prefix) <= MAX_TAG_KEY:
            return prefix + key[len(prefix) :]
    raise BadCondition("Policy has an invalid condition key")


def object_tag_keys(tags: Mapping[str, str] | None, prefix: str, needed: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The `prefix` (EXISTING_TAG or REQUEST_TAG) keys of `needed` that `tags` holds (None: no object or
    no tags asked for), each with its tag's value; REQUEST_TAG_KEYS too for the request's tags."""
    if tags is None:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for name in needed:
        if name.startswith(prefix) and name[len(prefix) :] in tags:
            out[name] = (tags[name[len(prefix) :]],)
    if prefix == REQUEST_TAG and REQUEST_TAG_KEYS in needed and tags:
        out[REQUEST_TAG_KEYS] = tuple(tags)
    return out


def reads_object_keys(keys: Iterable[str]) -> bool:
    """Whether conditions on `keys` need what only the operation knows: the object's tags, or a body's."""
    return any(k.startswith(_TAG_PREFIXES) or k == REQUEST_TAG_KEYS for k in keys)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _date(text: str) -> float | None:
    """ISO 8601 (a zone-less one is UTC) or epoch seconds, as a timestamp."""
    num = _number(text)
    if num is not None:
        return num
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _bool(text: str) -> bool | None:
    low = text.lower()
    return True if low == "true" else False if low == "false" else None


@dataclass(frozen=True, slots=True)
class Condition:
    """One operator over one key with its alternative values (OR); a statement ANDs its conditions."""

    operator: str  # as written, for messages and is_public
    family: Family
    key: str  # lower-case
    values: tuple[str, ...]
    templates: tuple[Template, ...]  # string family: values with variables resolved per caller
    numbers: tuple[float, ...]  # numeric, date, bool (1.0 / 0.0) and null (1.0 = "must be absent")
    nets: tuple[Net, ...]
    negated: bool
    ignore_case: bool
    like: bool
    if_exists: bool
    qualifier: Literal["", "any", "all"]
    compare: Callable[[float, float], bool] | None

    @staticmethod
    def parse(operator: str, key: str, raw: object, substitute: bool) -> Condition:
        name = operator
        qualifier: Literal["", "any", "all"] = ""
        low = name.lower()
        if low.startswith("foranyvalue:"):
            qualifier, low = "any", low[len("foranyvalue:") :]
        elif low.startswith("forallvalues:"):
            qualifier, low = "all", low[len("forallvalues:") :]
        if_exists = low.endswith("ifexists")
        if if_exists:
            low = low[: -len("ifexists")]
        values = _values(raw)
        ckey = check_key(key)
        negated = ignore_case = like = False
        compare: Callable[[float, float], bool] | None = None
        templates: tuple[Template, ...] = ()
        numbers: tuple[float, ...] = ()
        nets: tuple[Net, ...] = ()
        family: Family
        if low in _STRING_OPS:
            family = "string"
            negated, ignore_case, like = _STRING_OPS[low]
            try:
                templates = tuple(Template.parse(v, substitute) for v in values)
            except BadVariable as e:
                raise BadCondition(f"Policy has an invalid variable: ${{{e}}}") from None
        elif low.startswith("numeric") and low[7:] in _COMPARE:
            family = "numeric"
            negated, compare = _COMPARE[low[7:]]
            numbers = _parsed(values, _number, "number")
        elif low.startswith("date") and low[4:] in _COMPARE:
            family = "date"
            negated, compare = _COMPARE[low[4:]]
            numbers = _parsed(values, _date, "date")
        elif low == "bool":
            family = "bool"
            numbers = _parsed(values, lambda v: None if _bool(v) is None else float(bool(_bool(v))), "boolean")
        elif low in ("ipaddress", "notipaddress"):
            family, negated = "ip", low == "notipaddress"
            try:
                nets = tuple(_unmapped(ipaddress.ip_network(v.strip(), strict=False)) for v in values)
            except ValueError:
                raise BadCondition(f"Invalid IP address or CIDR in {operator}") from None
        elif low == "null" and not qualifier and not if_exists:
            family = "null"
            numbers = _parsed(values, lambda v: None if _bool(v) is None else float(bool(_bool(v))), "boolean")
        else:
            raise BadCondition(f"Policy has an invalid condition operator: {operator}")
        return Condition(
            name, family, ckey, values, templates, numbers, nets, negated, ignore_case, like, if_exists, qualifier,
            compare,
        )  # fmt: skip

    def holds(self, ctx: Context) -> bool:
        present = ctx.get(self.key)
        if self.family == "null":
            return any((not present) == bool(n) for n in self.numbers)
        if not present:
            if self.qualifier == "all":
                return True  # IAM: ForAllValues over an empty set is true
            if self.qualifier == "any":
                return False
            return self.if_exists or self.negated
        if self.qualifier == "all":
            return all(self._one(v, ctx) for v in present)
        if self.qualifier == "any":
            return any(self._one(v, ctx) for v in present)
        # no qualifier: a negated operator holds only if no value of the request matches
        if self.negated:
            return all(self._one(v, ctx) for v in present)
        return any(self._one(v, ctx) for v in present)

    def _one(self, value: str, ctx: Context) -> bool:
        """The operator on one request value (negation included)."""
        return self._matches(value, ctx) != self.negated

    def _matches(self, value: str, ctx: Context) -> bool:
        if self.family == "string":
            for tpl in self.templates:
                if self.like:
                    pat = tpl.pattern(ctx)
                    if pat is not None and pat.matches(value):
                        return True
                    continue
                text = tpl.literal(ctx)
                if text is None:
                    continue
                if (value.lower() == text.lower()) if self.ignore_case else (value == text):
                    return True
            return False
        if self.family == "ip":
            addr = _address(value)
            return addr is not None and any(addr.version == net.version and addr in net for net in self.nets)
        if self.family == "bool":
            got = _bool(value)
            return got is not None and any(float(got) == n for n in self.numbers)
        parse = _number if self.family == "numeric" else _date
        got_num = parse(value)
        if got_num is None or self.compare is None:
            return False
        return any(self.compare(got_num, n) for n in self.numbers)


def _values(raw: object) -> tuple[str, ...]:
    items = raw if isinstance(raw, list) else [raw]
    out: list[str] = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise BadCondition("Policy has an invalid condition value")
    if not out:
        raise BadCondition("Policy has an invalid condition value")
    return tuple(out)


def _parsed(values: tuple[str, ...], parse: Callable[[str], float | None], what: str) -> tuple[float, ...]:
    out: list[float] = []
    for v in values:
        got = parse(v)
        if got is None:
            raise BadCondition(f"Policy has an invalid {what} in a condition: {v}")
        out.append(got)
    return tuple(out)


def now_keys(now: float) -> dict[str, tuple[str, ...]]:
    """aws:CurrentTime and aws:EpochTime for a decision made at `now`."""
    iso = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"aws:currenttime": (iso,), "aws:epochtime": (str(int(now)),)}
