"""access.cors (rules, preflight and actual answers) and s3/ops/cors_xml (the CORSConfiguration document).

The request/answer tables are ceph/s3-tests' (`test_cors_origin_response`, `test_cors_origin_wildcard`,
`test_cors_header_option`, `_test_cors_options_presigned_method`, `test_set_cors`), replayed against the pure
functions the way the edge will call them (`edge_options`, `edge_actual` below). Their statuses for non-OPTIONS
requests (200, 403, 404) come from the object and its access, not from CORS; the CORS headers must be the
same whatever that status is, which is what these rows check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tunnelmesh.access.cors import (
    MISSING_ORIGIN,
    CorsAnswer,
    CorsRule,
    Refusal,
    actual,
    bad_preflight,
    parse_request_headers,
    preflight,
    rules_from_json,
    rules_to_json,
)
from tunnelmesh.access.view import BucketIdent, compile_view
from tunnelmesh.s3 import xml
from tunnelmesh.s3.errors import MESSAGE, STATUS, S3Error
from tunnelmesh.s3.ops.cors_xml import MAX_DOCUMENT_BYTES, cors_configuration_xml, parse_cors_configuration

CORS_PY = Path(__file__).resolve().parents[2] / "src" / "tunnelmesh" / "access" / "cors.py"
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"

Headers = dict[str, str]


def edge_options(rules: tuple[CorsRule, ...] | None, headers: Headers) -> tuple[int, str | None, str | None]:
    """What the edge answers to OPTIONS: status, Access-Control-Allow-Origin, Access-Control-Allow-Methods."""
    origin, method = headers.get("Origin"), headers.get("Access-Control-Request-Method")
    if bad_preflight(origin, method) is not None:
        return 400, None, None
    assert origin is not None and method is not None
    answer = preflight(rules, origin, method, parse_request_headers(headers.get("Access-Control-Request-Headers")))
    if not answer.allowed:
        return 403, None, None
    got = dict(answer.headers)
    return 200, got.get("Access-Control-Allow-Origin"), got.get("Access-Control-Allow-Methods")


def edge_actual(rules: tuple[CorsRule, ...] | None, method: str, headers: Headers) -> tuple[str | None, str | None]:
    """The CORS headers the edge adds to any other response: ACRM if sent, else the request's own method."""
    got = dict(actual(rules, headers.get("Origin"), headers.get("Access-Control-Request-Method", method)))
    return got.get("Access-Control-Allow-Origin"), got.get("Access-Control-Allow-Methods")


def boto3_document(rules: list[dict[str, list[str]]]) -> bytes:
    """The document boto3's put_bucket_cors sends for `CORSRules` (elements in its model's member order)."""
    names = [
        ("AllowedHeaders", "AllowedHeader"),
        ("AllowedMethods", "AllowedMethod"),
        ("AllowedOrigins", "AllowedOrigin"),
        ("ExposeHeaders", "ExposeHeader"),
    ]
    parts = []
    for r in rules:
        inner = [xml.element(el, v) for key, el in names for v in r.get(key, [])]
        parts.append(f"<CORSRule>{''.join(inner)}</CORSRule>")
    return xml.document("CORSConfiguration", parts)


# ---- test_cors_origin_response ------------------------------------------------------------------------------

ORIGIN_RESPONSE = parse_cors_configuration(
    boto3_document(
        [
            {"AllowedMethods": ["GET"], "AllowedOrigins": ["*suffix"]},
            {"AllowedMethods": ["GET"], "AllowedOrigins": ["start*end"]},
            {"AllowedMethods": ["GET"], "AllowedOrigins": ["prefix*"]},
            {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*.put"]},
        ]
    )
)


def test_the_origin_response_rules_parse_as_written() -> None:
    rules = ORIGIN_RESPONSE
    assert rules == (
        CorsRule(None, ("*suffix",), ("GET",)),
        CorsRule(None, ("start*end",), ("GET",)),
        CorsRule(None, ("prefix*",), ("GET",)),
        CorsRule(None, ("*.put",), ("PUT",)),
    )


@pytest.mark.parametrize(
    ("method", "headers", "allow_origin", "allow_methods"),
    [
        ("GET", {}, None, None),
        ("GET", {"Origin": "foo.suffix"}, "foo.suffix", "GET"),
        ("GET", {"Origin": "foo.bar"}, None, None),
        ("GET", {"Origin": "foo.suffix.get"}, None, None),
        ("GET", {"Origin": "startend"}, "startend", "GET"),
        ("GET", {"Origin": "start1end"}, "start1end", "GET"),
        ("GET", {"Origin": "start12end"}, "start12end", "GET"),
        ("GET", {"Origin": "0start12end"}, None, None),
        ("GET", {"Origin": "prefix"}, "prefix", "GET"),
        ("GET", {"Origin": "prefix.suffix"}, "prefix.suffix", "GET"),
        ("GET", {"Origin": "bla.prefix"}, None, None),
        # on the object (404 NoSuchKey, 403 for the anonymous PUTs): the headers ride on the error
        ("GET", {"Origin": "foo.suffix"}, "foo.suffix", "GET"),
        ("PUT", {"Origin": "foo.suffix", "Access-Control-Request-Method": "GET"}, "foo.suffix", "GET"),
        ("PUT", {"Origin": "foo.suffix", "Access-Control-Request-Method": "PUT"}, None, None),
        ("PUT", {"Origin": "foo.suffix", "Access-Control-Request-Method": "DELETE"}, None, None),
        ("PUT", {"Origin": "foo.suffix"}, None, None),
        ("PUT", {"Origin": "foo.put"}, "foo.put", "PUT"),
    ],
)
def test_origin_response_actual_requests(
    method: str, headers: Headers, allow_origin: str | None, allow_methods: str | None
) -> None:
    assert edge_actual(ORIGIN_RESPONSE, method, headers) == (allow_origin, allow_methods)


@pytest.mark.parametrize(
    ("headers", "status", "allow_origin", "allow_methods"),
    [
        ({}, 400, None, None),
        ({"Origin": "foo.suffix"}, 400, None, None),
        ({"Origin": "bla"}, 400, None, None),
        ({"Origin": "foo.suffix", "Access-Control-Request-Method": "GET"}, 200, "foo.suffix", "GET"),
        ({"Origin": "foo.bar", "Access-Control-Request-Method": "GET"}, 403, None, None),
        ({"Origin": "foo.suffix.get", "Access-Control-Request-Method": "GET"}, 403, None, None),
        ({"Origin": "startend", "Access-Control-Request-Method": "GET"}, 200, "startend", "GET"),
        ({"Origin": "start1end", "Access-Control-Request-Method": "GET"}, 200, "start1end", "GET"),
        ({"Origin": "start12end", "Access-Control-Request-Method": "GET"}, 200, "start12end", "GET"),
        ({"Origin": "0start12end", "Access-Control-Request-Method": "GET"}, 403, None, None),
        ({"Origin": "prefix", "Access-Control-Request-Method": "GET"}, 200, "prefix", "GET"),
        ({"Origin": "prefix.suffix", "Access-Control-Request-Method": "GET"}, 200, "prefix.suffix", "GET"),
        ({"Origin": "bla.prefix", "Access-Control-Request-Method": "GET"}, 403, None, None),
        ({"Origin": "foo.put", "Access-Control-Request-Method": "GET"}, 403, None, None),
        ({"Origin": "foo.put", "Access-Control-Request-Method": "PUT"}, 200, "foo.put", "PUT"),
    ],
)
def test_origin_response_preflights(
    headers: Headers, status: int, allow_origin: str | None, allow_methods: str | None
) -> None:
    assert edge_options(ORIGIN_RESPONSE, headers) == (status, allow_origin, allow_methods)


# ---- test_cors_origin_wildcard, test_cors_header_option, the presigned ones ------------------------------------

WILDCARD = parse_cors_configuration(boto3_document([{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]))
HEADER_OPTION = parse_cors_configuration(
    boto3_document([{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "ExposeHeaders": ["x-amz-meta-header1"]}])
)


def test_origin_wildcard() -> None:
    assert edge_actual(WILDCARD, "GET", {}) == (None, None)
    assert edge_actual(WILDCARD, "GET", {"Origin": "example.origin"}) == ("*", "GET")


def test_header_option_refuses_a_header_no_rule_allows() -> None:
    headers = {
        "Origin": "example.origin",
        "Access-Control-Request-Headers": "x-amz-meta-header2",
        "Access-Control-Request-Method": "GET",
    }
    assert edge_options(HEADER_OPTION, headers) == (403, None, None)
    assert preflight(HEADER_OPTION, "example.origin", "GET", ("x-amz-meta-header2",)).refusal is Refusal.NOT_ALLOWED


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_presigned_preflight(method: str) -> None:
    rules = parse_cors_configuration(boto3_document([{"AllowedMethods": [method], "AllowedOrigins": ["example"]}]))
    # before the configuration: a bare OPTIONS of the presigned URL is a 400, whatever the bucket holds
    assert edge_options(None, {}) == (400, None, None)
    assert edge_options(rules, {}) == (400, None, None)
    assert edge_options(rules, {"Origin": "example", "Access-Control-Request-Method": method}) == (
        200,
        "example",
        method,
    )


def test_set_cors_round_trips_through_get() -> None:
    rules = parse_cors_configuration(
        boto3_document([{"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["*.get", "*.put"]}])
    )
    back = parse_cors_configuration(cors_configuration_xml(rules))
    assert back == rules
    assert (back[0].allowed_methods, back[0].allowed_origins) == (("GET", "PUT"), ("*.get", "*.put"))


# ---- the answers in full ---------------------------------------------------------------------------------------

FULL = CorsRule(
    "r1",
    ("https://app.mesh", "*"),
    ("GET", "PUT"),
    ("x-amz-meta-*", "Content-Type"),
    ("ETag", "x-amz-version-id"),
    3000,
)


def test_a_preflight_answer_carries_every_header_in_order() -> None:
    answer = preflight((FULL,), "https://app.mesh", "PUT", parse_request_headers(" Content-Type ,X-Amz-Meta-A,, "))
    assert answer == CorsAnswer(
        headers=(
            ("Access-Control-Allow-Origin", "https://app.mesh"),
            ("Access-Control-Allow-Methods", "GET, PUT"),
            ("Access-Control-Allow-Headers", "content-type, x-amz-meta-a"),
            ("Access-Control-Expose-Headers", "ETag, x-amz-version-id"),
            ("Access-Control-Max-Age", "3000"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", VARY),
        )
    )
    assert answer.allowed and answer.refusal is None


def test_a_star_origin_answers_star_without_credentials() -> None:
    # the rule's first origin does not match, its `*` does: the answer is `*`, and no credentials
    got = dict(preflight((FULL,), "https://other", "GET").headers)
    assert got["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in got
    assert "Access-Control-Allow-Headers" not in got  # none requested


def test_an_origin_with_a_star_elsewhere_is_echoed_with_credentials() -> None:
    got = dict(preflight((CorsRule(None, ("https://*.mesh",), ("GET",)),), "https://a.mesh", "GET").headers)
    assert (got["Access-Control-Allow-Origin"], got["Access-Control-Allow-Credentials"]) == ("https://a.mesh", "true")


def test_max_age_and_expose_headers_only_when_set() -> None:
    got = dict(preflight((CorsRule(None, ("o",), ("GET",)),), "o", "GET").headers)
    assert "Access-Control-Max-Age" not in got and "Access-Control-Expose-Headers" not in got
    zero = dict(preflight((CorsRule(None, ("o",), ("GET",), max_age=0),), "o", "GET").headers)
    assert zero["Access-Control-Max-Age"] == "0"


def test_actual_adds_everything_but_allow_headers() -> None:
    assert actual((FULL,), "https://app.mesh", "GET") == [
        ("Access-Control-Allow-Origin", "https://app.mesh"),
        ("Access-Control-Allow-Methods", "GET, PUT"),
        ("Access-Control-Expose-Headers", "ETag, x-amz-version-id"),
        ("Access-Control-Max-Age", "3000"),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", VARY),
    ]


def test_actual_varies_by_origin_even_unmatched_and_says_nothing_without_origin_or_rules() -> None:
    assert actual((FULL,), "https://app.mesh", "DELETE") == [("Vary", VARY)]
    assert actual((FULL,), None, "GET") == []
    assert actual((FULL,), "", "GET") == []
    assert actual((), "https://app.mesh", "GET") == []
    assert actual(None, "https://app.mesh", "GET") == []


def test_the_first_matching_rule_wins() -> None:
    rules = (
        CorsRule("narrow", ("https://a",), ("GET",), expose_headers=("ETag",)),
        CorsRule("wide", ("*",), ("GET", "PUT")),
    )
    assert dict(preflight(rules, "https://a", "GET").headers)["Access-Control-Expose-Headers"] == "ETag"
    # a rule failing on the method or a header passes the turn to the next one
    assert dict(preflight(rules, "https://a", "PUT").headers)["Access-Control-Allow-Origin"] == "*"
    first_lacks_header = (CorsRule("h", ("https://a",), ("GET",)), CorsRule("w", ("https://a",), ("GET",), ("*",)))
    assert dict(preflight(first_lacks_header, "https://a", "GET", ("x-foo",)).headers)["Access-Control-Allow-Headers"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.mesh", True),
        ("https://APP.mesh", False),  # origins are case-sensitive, as S3's
        ("https://app.mesh.evil", False),
        ("http://app.mesh", False),
    ],
)
def test_origin_matching_is_case_sensitive_and_whole(origin: str, allowed: bool) -> None:
    assert preflight((CorsRule(None, ("https://app.mesh",), ("GET",)),), origin, "GET").allowed is allowed


@pytest.mark.parametrize(
    ("patterns", "requested", "allowed"),
    [
        ((), (), True),  # no header asked for: no AllowedHeader needed
        ((), ("x-a",), False),
        (("*",), ("x-a", "content-type"), True),
        (("X-Amz-Meta-*",), ("x-amz-meta-color",), True),  # patterns compared lower-cased
        (("x-amz-meta-*",), ("x-amz-meta-color", "x-amz-date"), False),  # every header must be allowed
        (("Content-Type", "x-amz-*"), ("content-type", "x-amz-date"), True),
        (("x-?",), ("x-a",), False),  # `?` is no wildcard in CORS
        (("x-?",), ("x-?",), True),
    ],
)
def test_requested_headers_match_allowed_header_patterns_case_insensitively(
    patterns: tuple[str, ...], requested: tuple[str, ...], allowed: bool
) -> None:
    rule = CorsRule(None, ("o",), ("GET",), patterns)
    assert preflight((rule,), "o", "GET", requested).allowed is allowed


def test_methods_match_exactly() -> None:
    rule = CorsRule(None, ("o",), ("GET",))
    assert preflight((rule,), "o", "GET").allowed
    assert preflight((rule,), "o", "get").refusal is Refusal.NOT_ALLOWED
    assert preflight((rule,), "o", "HEAD").refusal is Refusal.NOT_ALLOWED


def test_the_two_refusals_and_their_messages() -> None:
    assert preflight(None, "o", "GET") == CorsAnswer(refusal=Refusal.NO_CONFIG)
    assert preflight((), "o", "GET").refusal is Refusal.NO_CONFIG
    refused = preflight((CorsRule(None, ("o",), ("GET",)),), "p", "GET")
    assert (refused.allowed, refused.headers, refused.refusal) == (False, (), Refusal.NOT_ALLOWED)
    assert Refusal.NO_CONFIG.message == "CORSResponse: CORS is not enabled for this bucket."
    assert Refusal.NOT_ALLOWED.message == "CORSResponse: This CORS request is not allowed."
    # an empty origin can never be allowed, even by `*` (the edge answers 400 before; this is the backstop)
    assert preflight((CorsRule(None, ("*",), ("GET",)),), "", "GET").refusal is Refusal.NOT_ALLOWED


@pytest.mark.parametrize(
    ("origin", "method", "message"),
    [
        (None, "GET", MISSING_ORIGIN),
        ("", "GET", MISSING_ORIGIN),
        ("o", None, "Invalid Access-Control-Request-Method: null"),
        ("o", "", "Invalid Access-Control-Request-Method: null"),
        ("o", "PATCH", "Invalid Access-Control-Request-Method: PATCH"),
        ("o", "GET", None),
        ("o", "DELETE", None),
    ],
)
def test_bad_preflight_names_the_400s(origin: str | None, method: str | None, message: str | None) -> None:
    assert bad_preflight(origin, method) == message


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (None, ()),
        ("", ()),
        ("X-Amz-Date", ("x-amz-date",)),
        (" Content-Type , x-amz-meta-A ", ("content-type", "x-amz-meta-a")),
        ("a,,b, ,", ("a", "b")),
    ],
)
def test_parse_request_headers(value: str | None, parsed: tuple[str, ...]) -> None:
    assert parse_request_headers(value) == parsed


def test_a_hostile_origin_pattern_from_a_record_is_matched_without_backtracking() -> None:
    # a restored record is not re-validated: even a many-star pattern must answer (and correctly)
    hostile = rules_from_json([{"allowed_origins": ["a*" * 30 + "b"], "allowed_methods": ["GET"]}])
    assert len(hostile) == 1
    assert not preflight(hostile, "a" * 5000, "GET").allowed
    assert preflight(hostile, "a" * 5000 + "b", "GET").allowed


def test_the_module_is_pure_and_uses_no_regex() -> None:
    tree = ast.parse(CORS_PY.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "re" not in imported
    assert not [m for m in imported if m.startswith(("tunnelmesh.s3", "tunnelmesh.store"))]
    assert "tunnelmesh.access.glob" in imported


# ---- the record form -------------------------------------------------------------------------------------------


def test_rules_round_trip_through_the_record_form() -> None:
    rules = (FULL, CorsRule(None, ("o",), ("DELETE",)))
    assert rules_to_json(rules) == [
        {
            "id": "r1",
            "allowed_origins": ["https://app.mesh", "*"],
            "allowed_methods": ["GET", "PUT"],
            "allowed_headers": ["x-amz-meta-*", "Content-Type"],
            "expose_headers": ["ETag", "x-amz-version-id"],
            "max_age": 3000,
        },
        {
            "id": None,
            "allowed_origins": ["o"],
            "allowed_methods": ["DELETE"],
            "allowed_headers": [],
            "expose_headers": [],
            "max_age": None,
        },
    ]
    assert rules_from_json(rules_to_json(rules)) == rules


def test_the_record_example_of_the_design_reads() -> None:
    record = [
        {
            "id": "r1",
            "allowed_origins": ["https://app.mesh"],
            "allowed_methods": ["GET", "PUT"],
            "allowed_headers": ["*"],
            "expose_headers": ["ETag"],
            "max_age": 3000,
        }
    ]
    assert rules_from_json(record) == (CorsRule("r1", ("https://app.mesh",), ("GET", "PUT"), ("*",), ("ETag",), 3000),)


GOOD = {"allowed_origins": ["o"], "allowed_methods": ["GET"]}


@pytest.mark.parametrize(
    "bad",
    [
        "not a rule",
        None,
        {},
        {"allowed_methods": ["GET"]},
        {"allowed_origins": ["o"]},
        {"allowed_origins": [], "allowed_methods": ["GET"]},
        {"allowed_origins": ["o"], "allowed_methods": []},
        {"allowed_origins": "o", "allowed_methods": ["GET"]},
        {"allowed_origins": ["o", 3], "allowed_methods": ["GET"]},
        {"allowed_origins": ["o"], "allowed_methods": ["PATCH"]},
        {**GOOD, "allowed_headers": "x"},
        {**GOOD, "expose_headers": [None]},
        {**GOOD, "id": 7},
        {**GOOD, "max_age": -1},
        {**GOOD, "max_age": "30"},
        {**GOOD, "max_age": True},
        {**GOOD, "max_age": 1.5},
    ],
)
def test_a_damaged_rule_is_skipped_and_the_others_kept(bad: object) -> None:
    assert rules_from_json([GOOD, bad, GOOD]) == (CorsRule(None, ("o",), ("GET",)),) * 2


@pytest.mark.parametrize("raw", [None, {}, "x", 3, {"cors": []}])
def test_a_record_that_is_not_a_list_has_no_rules(raw: object) -> None:
    assert rules_from_json(raw) == ()


# ---- the CORSConfiguration document ----------------------------------------------------------------------------


def test_get_renders_every_element_in_aws_order() -> None:
    doc = cors_configuration_xml((FULL, CorsRule(None, ("o",), ("GET",))))
    assert doc == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<CORSRule><ID>r1</ID><AllowedHeader>x-amz-meta-*</AllowedHeader><AllowedHeader>Content-Type</AllowedHeader>"
        b"<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>"
        b"<AllowedOrigin>https://app.mesh</AllowedOrigin><AllowedOrigin>*</AllowedOrigin>"
        b"<ExposeHeader>ETag</ExposeHeader><ExposeHeader>x-amz-version-id</ExposeHeader>"
        b"<MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule>"
        b"<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>o</AllowedOrigin></CORSRule>"
        b"</CORSConfiguration>"
    )
    assert parse_cors_configuration(doc) == (FULL, CorsRule(None, ("o",), ("GET",)))


def test_text_is_escaped_and_read_back() -> None:
    rule = CorsRule("<&>", ("https://a&b",), ("GET",))
    assert parse_cors_configuration(cors_configuration_xml((rule,))) == (rule,)


def test_a_document_without_namespace_and_with_whitespace_parses() -> None:
    body = b"""<CORSConfiguration>
      <CORSRule>
        <AllowedOrigin> https://a </AllowedOrigin>
        <AllowedMethod>GET</AllowedMethod>
        <MaxAgeSeconds> 0 </MaxAgeSeconds>
        <ID></ID>
      </CORSRule>
    </CORSConfiguration>"""
    assert parse_cors_configuration(body) == (CorsRule("", ("https://a",), ("GET",), max_age=0),)


def test_a_hundred_rules_are_accepted() -> None:
    rules = tuple(CorsRule(f"r{i}", (f"https://{i}",), ("GET",)) for i in range(100))
    assert parse_cors_configuration(cors_configuration_xml(rules)) == rules


def _doc(*rules: str) -> bytes:
    return f"<CORSConfiguration>{''.join(f'<CORSRule>{r}</CORSRule>' for r in rules)}</CORSConfiguration>".encode()


RULE = "<AllowedOrigin>o</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
UNSUPPORTED = "Found unsupported HTTP method in CORS config. Unsupported method is "


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (b"", "MalformedXML", "not well-formed"),
        (b"<CORSConfiguration>", "MalformedXML", "not well-formed"),
        (b"<CORSConfiguration/>", "MalformedXML", "between 1 and 100"),
        (b"<LifecycleConfiguration/>", "MalformedXML", "Expected a CORSConfiguration"),
        (b'<!DOCTYPE x [<!ENTITY e "o">]><CORSConfiguration/>', "MalformedXML", "not well-formed"),
        (_doc(*[RULE] * 101), "MalformedXML", "between 1 and 100"),
        (_doc("<AllowedMethod>GET</AllowedMethod>"), "MalformedXML", "at least one AllowedOrigin"),
        (_doc("<AllowedOrigin>o</AllowedOrigin>"), "MalformedXML", "at least one AllowedOrigin"),
        (
            _doc("<AllowedOrigin></AllowedOrigin><AllowedMethod>GET</AllowedMethod>"),
            "MalformedXML",
            "AllowedOrigin is empty",
        ),
        (_doc(RULE + "<ID>" + "i" * 256 + "</ID>"), "MalformedXML", "at most 255"),
        # a CR/LF (or any control character) would end a response header: refused, never stored
        (_doc(RULE + "<ExposeHeader>ETag&#13;&#10;Set-Cookie: x=1</ExposeHeader>"), "MalformedXML", "cannot carry"),
        (_doc(RULE + "<AllowedHeader>a&#10;b</AllowedHeader>"), "MalformedXML", "cannot carry"),
        (
            _doc("<AllowedOrigin>https://a&#9;b</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"),
            "MalformedXML",
            "cannot carry",
        ),
        (_doc(RULE + "<ID>a</ID><ID>b</ID>"), "MalformedXML", "ID is given more than once"),
        (_doc(RULE + "<MaxAgeSeconds>-1</MaxAgeSeconds>"), "MalformedXML", "MaxAgeSeconds must"),
        (_doc(RULE + "<MaxAgeSeconds>1.5</MaxAgeSeconds>"), "MalformedXML", "MaxAgeSeconds must"),
        (_doc(RULE + "<MaxAgeSeconds>ten</MaxAgeSeconds>"), "MalformedXML", "MaxAgeSeconds must"),
        (_doc(RULE + "<MaxAgeSeconds></MaxAgeSeconds>"), "MalformedXML", "MaxAgeSeconds must"),
        (_doc(RULE + "<MaxAgeSeconds>+5</MaxAgeSeconds>"), "MalformedXML", "MaxAgeSeconds must"),
        (
            _doc(RULE + "<MaxAgeSeconds>\u0665</MaxAgeSeconds>"),
            "MalformedXML",
            "MaxAgeSeconds must",
        ),  # an Arabic-Indic 5
        (_doc(RULE + "<MaxAgeSeconds>2147483648</MaxAgeSeconds>"), "MalformedXML", "MaxAgeSeconds must"),
        (
            _doc(RULE + "<MaxAgeSeconds>1</MaxAgeSeconds><MaxAgeSeconds>2</MaxAgeSeconds>"),
            "MalformedXML",
            "MaxAgeSeconds is given more than once",
        ),
        (
            _doc("<AllowedOrigin>*.a.*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"),
            "MalformedXML",
            "more than one wildcard",
        ),
        (_doc(RULE + "<AllowedHeader>x-*-*</AllowedHeader>"), "MalformedXML", "more than one wildcard"),
        (_doc(RULE + "<Unknown>1</Unknown>"), "MalformedXML", "Unknown element"),
        (_doc(RULE + "<AllowedOrigin><x/></AllowedOrigin>"), "MalformedXML", "text only"),
        (
            b"<CORSConfiguration><CORSRule>" + RULE.encode() + b"</CORSRule><Other/></CORSConfiguration>",
            "MalformedXML",
            "CORSRule elements only",
        ),
        (
            _doc("<AllowedOrigin>o</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>"),
            "InvalidRequest",
            UNSUPPORTED + "PATCH",
        ),
        (
            _doc("<AllowedOrigin>o</AllowedOrigin><AllowedMethod>get</AllowedMethod>"),
            "InvalidRequest",
            UNSUPPORTED + "get",
        ),
        (
            _doc(RULE, "<AllowedOrigin>o</AllowedOrigin><AllowedMethod>OPTIONS</AllowedMethod>"),
            "InvalidRequest",
            UNSUPPORTED + "OPTIONS",
        ),
        (b"<CORSConfiguration>" + b" " * MAX_DOCUMENT_BYTES + _doc(RULE)[19:], "MalformedXML", "too large"),
    ],
)
def test_a_bad_document_is_refused(body: bytes, code: str, message: str) -> None:
    with pytest.raises(S3Error) as err:
        parse_cors_configuration(body)
    assert (err.value.code, err.value.status) == (code, 400)
    assert message in err.value.message


def test_one_star_per_origin_and_header_is_fine() -> None:
    body = _doc(
        "<AllowedOrigin>https://*.mesh</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
        "<AllowedHeader>x-amz-*</AllowedHeader><AllowedHeader>*</AllowedHeader>"
    )
    assert parse_cors_configuration(body) == (CorsRule(None, ("https://*.mesh",), ("GET",), ("x-amz-*", "*")),)


@pytest.mark.parametrize(
    ("code", "status"), [("AccessForbidden", 403), ("NoSuchCORSConfiguration", 404), ("BadRequest", 400)]
)
def test_the_error_codes_the_edge_needs_exist(code: str, status: int) -> None:
    assert STATUS[code] == status and MESSAGE[code]
    assert S3Error("AccessForbidden", Refusal.NO_CONFIG.message).status == 403


# ---- the compiled view carries the rules (the edge reads them there, never from a read of its own) ------------


def test_the_view_carries_the_records_rules() -> None:
    ident = BucketIdent("alice", 12.5)
    rules = (CorsRule("r1", ("https://app.mesh",), ("GET", "PUT"), ("*",), ("ETag",), 3000),)
    record = {"bucket": "b", "created": 12.5, "cors": rules_to_json(rules)}
    assert compile_view(record, ident, "b", frozenset(), "none", False).cors == rules
    # none set, one of another incarnation (deleted and re-created), one whose every rule is damaged: none
    assert compile_view({"bucket": "b", "created": 12.5}, ident, "b", frozenset(), "none", False).cors is None
    assert compile_view(None, ident, "b", frozenset(), "none", False).cors is None
    assert compile_view({**record, "created": 1.0}, ident, "b", frozenset(), "none", False).cors is None
    damaged = {**record, "cors": [{"allowed_origins": "*", "allowed_methods": ["GET"]}]}
    assert compile_view(damaged, ident, "b", frozenset(), "none", False).cors is None
