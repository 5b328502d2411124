"""A bucket's CORS rules and the answers they give (docs/access-control.md, section 5, **CORS**).

Pure: the S3 edge reads the rules from the bucket's access record (`rules_from_json`), asks `preflight` for an
OPTIONS request (before authentication: a browser sends no credentials with it) and `actual` for every other
request that carries `Origin`, and maps a refusal to 403 AccessForbidden with `Refusal.message`.

Matching follows S3: an origin is matched case-sensitively against AllowedOrigin patterns where `*` (the only
wildcard) spans any run; the method exactly; each requested header case-insensitively against AllowedHeader
patterns. The first rule that matches wins. The globs go through `access.glob`'s linear matcher, so a hostile
`*a*a*...` origin costs a bounded number of steps, never a backtracking regex's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from tunnelmesh.access.glob import STAR, Pattern

METHODS = frozenset({"GET", "PUT", "HEAD", "POST", "DELETE"})
VARY = ("Vary", "Origin, Access-Control-Request-Headers, Access-Control-Request-Method")
MISSING_ORIGIN = "Insufficient information. Origin request header needed."


def _pattern(text: str) -> Pattern:
    # `*` is CORS's one wildcard: a `?` in an origin or header pattern is a literal character
    return Pattern.compile(tuple(STAR if c == "*" else c for c in text))


@dataclass(frozen=True, slots=True)
class CorsRule:
    id: str | None
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    # compiled once per rule (a rule lives as long as its bucket's cached view), never compared or shown
    _origins: tuple[Pattern, ...] = field(init=False, compare=False, repr=False)
    _headers: tuple[Pattern, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_origins", tuple(_pattern(o) for o in self.allowed_origins))
        object.__setattr__(self, "_headers", tuple(_pattern(h.lower()) for h in self.allowed_headers))

    def origin_match(self, origin: str) -> str | None:
        """The first AllowedOrigin pattern matching `origin` (as written), or None."""
        for text, pat in zip(self.allowed_origins, self._origins, strict=True):
            if pat.matches(origin):
                return text
        return None

    def allows_headers(self, requested: Sequence[str]) -> bool:
        """Every requested header (already lower-cased) matches some AllowedHeader pattern."""
        return all(any(pat.matches(h) for pat in self._headers) for h in requested)


class Refusal(Enum):
    """Why a preflight is refused: the edge answers 403 AccessForbidden with the message."""

    NO_CONFIG = "CORSResponse: CORS is not enabled for this bucket."
    NOT_ALLOWED = "CORSResponse: This CORS request is not allowed."

    @property
    def message(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class CorsAnswer:
    """A preflight's outcome: the response headers when allowed, else the refusal."""

    headers: tuple[tuple[str, str], ...] = ()
    refusal: Refusal | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


# ---- the record form (access/buckets/<b>.json, "cors") ----------------------------------------------------------


def rules_to_json(rules: Sequence[CorsRule]) -> list[dict[str, Any]]:
    return [
        {
            "id": r.id,
            "allowed_origins": list(r.allowed_origins),
            "allowed_methods": list(r.allowed_methods),
            "allowed_headers": list(r.allowed_headers),
            "expose_headers": list(r.expose_headers),
            "max_age": r.max_age,
        }
        for r in rules
    ]


def _strings(raw: object, required: bool) -> tuple[str, ...] | None:
    """A list of strings (absent: empty unless required); None when malformed."""
    if raw is None:
        return None if required else ()
    if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
        return None
    if required and not raw:
        return None
    return tuple(raw)


def _rule_from_json(raw: object) -> CorsRule | None:
    if not isinstance(raw, dict):
        return None
    rule_id, max_age = raw.get("id"), raw.get("max_age")
    if rule_id is not None and not isinstance(rule_id, str):
        return None
    # bool is an int to Python; a `true` max age is a damaged record, not one second
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
        return None
    origins = _strings(raw.get("allowed_origins"), required=True)
    methods = _strings(raw.get("allowed_methods"), required=True)
    headers = _strings(raw.get("allowed_headers"), required=False)
    expose = _strings(raw.get("expose_headers"), required=False)
    if origins is None or methods is None or headers is None or expose is None:
        return None
    if not set(methods) <= METHODS or not all(map(header_safe, (*origins, *headers, *expose))):
        return None
    return CorsRule(rule_id, origins, methods, headers, expose, max_age)


def header_safe(value: str) -> bool:
    """Whether a rule's origin or header name may go into a response header as it is: visible ASCII only (a CR
    or LF would end the header; the HTTP server refuses such a response, failing every request that matches)."""
    return bool(value) and all("!" <= c <= "~" for c in value)


def rules_from_json(raw: object) -> tuple[CorsRule, ...]:
    """The rules of a stored record. A record restored from a backup is the admin's word: a damaged rule is
    skipped (it can only ever allow less), never a reason to fail every request to the bucket."""
    if not isinstance(raw, list):
        return ()
    return tuple(rule for rule in map(_rule_from_json, raw) if rule is not None)


# ---- answers ----------------------------------------------------------------------------------------------------


def parse_request_headers(value: str | None) -> tuple[str, ...]:
    """Access-Control-Request-Headers: comma-separated names, trimmed, lower-cased, empty items dropped."""
    if not value:
        return ()
    return tuple(h for h in (part.strip().lower() for part in value.split(",")) if h)


def bad_preflight(origin: str | None, method: str | None) -> str | None:
    """The message of the edge's 400 BadRequest for an OPTIONS request, or None when it is a preflight.

    A method no rule can ever allow is a malformed preflight, not a refused one; the wording (a missing header
    reads `null`) is Scality cloudserver's and Huawei OBS's, AWS documents none."""
    if not origin:
        return MISSING_ORIGIN
    if method not in METHODS:
        return f"Invalid Access-Control-Request-Method: {method or 'null'}"
    return None


def _first(
    rules: Sequence[CorsRule], origin: str, method: str, requested: Sequence[str]
) -> tuple[CorsRule, str] | None:
    for rule in rules:
        if method not in rule.allowed_methods:
            continue  # the cheap test first; the answer is the same
        matched = rule.origin_match(origin)
        if matched is not None and rule.allows_headers(requested):
            return rule, matched
    return None


def _headers(rule: CorsRule, matched: str, origin: str, requested: Sequence[str]) -> list[tuple[str, str]]:
    anyone = matched == "*"
    out = [
        ("Access-Control-Allow-Origin", "*" if anyone else origin),
        ("Access-Control-Allow-Methods", ", ".join(rule.allowed_methods)),
    ]
    if requested:
        out.append(("Access-Control-Allow-Headers", ", ".join(requested)))
    if rule.expose_headers:
        out.append(("Access-Control-Expose-Headers", ", ".join(rule.expose_headers)))
    if rule.max_age is not None:
        out.append(("Access-Control-Max-Age", str(rule.max_age)))
    if not anyone:
        # a `*` answer is for any page, credentials or not: browsers refuse credentials with `*` anyway
        out.append(("Access-Control-Allow-Credentials", "true"))
    out.append(VARY)
    return out


def preflight(
    rules: Sequence[CorsRule] | None, origin: str, method: str, request_headers: Sequence[str] = ()
) -> CorsAnswer:
    """The answer to `OPTIONS` with this Origin, Access-Control-Request-Method and (parsed, lower-cased)
    Access-Control-Request-Headers; the edge has already answered the 400 cases (`bad_preflight`)."""
    if not rules:
        return CorsAnswer(refusal=Refusal.NO_CONFIG)
    found = _first(rules, origin, method, request_headers) if origin else None
    if found is None:
        return CorsAnswer(refusal=Refusal.NOT_ALLOWED)
    rule, matched = found
    return CorsAnswer(headers=tuple(_headers(rule, matched, origin, request_headers)))


def actual(rules: Sequence[CorsRule] | None, origin: str | None, method: str) -> list[tuple[str, str]]:
    """Headers to add to a non-OPTIONS response, errors included (a browser must be able to read a 403 or 404).

    `method` is the request's Access-Control-Request-Method if it sent one, else its own method. With rules and
    an Origin the answer always varies by origin, matched or not (as S3), so a shared cache never hands one
    origin's answer to another; without either the response is not a CORS one and gets nothing."""
    if not rules or not origin:
        return []
    found = _first(rules, origin, method, ())
    if found is None:
        return [VARY]
    rule, matched = found
    return _headers(rule, matched, origin, ())
