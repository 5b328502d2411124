"""The route table: which operation each (method, path level, query sub-resources, copy header) reaches."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from tunnelmesh.access.actions import ACTIONS, ROLES, Kind
from tunnelmesh.access.evaluate import Ask, Who, decide
from tunnelmesh.access.view import SYSTEM_VIEW
from tunnelmesh.s3.authz import DEFERS
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request, parse_query, split_path
from tunnelmesh.s3.router import BUCKET, OBJECT, ROUTES, SERVICE, SUBRESOURCES, Route, route

COPY = {"x-amz-copy-source": "/src/key"}


def request(method: str, target: str, headers: dict[str, str] | None = None) -> Request:
    """A Request parsed as S3Api._dispatch parses one: path and query split, unquoted, bucket and key set."""
    raw_path, _, raw_query = target.partition("?")

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    req = Request(
        method=method, raw_path=raw_path, raw_query=raw_query, headers=dict(headers or {}), receive=receive, prefix=""
    )
    req.query_items = parse_query(raw_query)
    req.query = {name: value for name, value, _, _ in req.query_items}
    req.bucket, req.key = split_path(unquote(raw_path or "/", errors="strict"))
    return req


# one line per row of ROUTES, in its order, with the operation each must reach
TABLE: list[tuple[str, str, dict[str, str], str]] = [
    ("GET", "/", {}, "ListBuckets"),
    ("GET", "/b?location", {}, "GetBucketLocation"),
    ("GET", "/b?acl", {}, "GetBucketAcl"),
    ("GET", "/b?versioning", {}, "GetBucketVersioning"),
    ("PUT", "/b?versioning", {}, "PutBucketVersioning"),
    ("GET", "/b?tagging", {}, "GetBucketTagging"),
    ("GET", "/b?lifecycle", {}, "GetBucketLifecycleConfiguration"),
    ("PUT", "/b?lifecycle", {}, "PutBucketLifecycleConfiguration"),
    ("DELETE", "/b?lifecycle", {}, "DeleteBucketLifecycle"),
    ("GET", "/b?cors", {}, "GetBucketCors"),
    ("PUT", "/b?cors", {}, "PutBucketCors"),
    ("DELETE", "/b?cors", {}, "DeleteBucketCors"),
    ("GET", "/b?encryption", {}, "GetBucketEncryption"),
    ("GET", "/b?object-lock", {}, "GetObjectLockConfiguration"),
    ("PUT", "/b?object-lock", {}, "PutObjectLockConfiguration"),
    ("PUT", "/b?tagging", {}, "PutBucketTagging"),
    ("DELETE", "/b?tagging", {}, "DeleteBucketTagging"),
    ("PUT", "/b?encryption", {}, "PutBucketEncryption"),
    ("DELETE", "/b?encryption", {}, "DeleteBucketEncryption"),
    ("PUT", "/b?acl", {}, "PutBucketAcl"),
    ("GET", "/b?policy", {}, "GetBucketPolicy"),
    ("PUT", "/b?policy", {}, "PutBucketPolicy"),
    ("DELETE", "/b?policy", {}, "DeleteBucketPolicy"),
    ("GET", "/b?policyStatus", {}, "GetBucketPolicyStatus"),
    ("GET", "/b?publicAccessBlock", {}, "GetPublicAccessBlock"),
    ("PUT", "/b?publicAccessBlock", {}, "PutPublicAccessBlock"),
    ("DELETE", "/b?publicAccessBlock", {}, "DeletePublicAccessBlock"),
    ("GET", "/b?uploads", {}, "ListMultipartUploads"),
    ("GET", "/b?list-type=2", {}, "ListObjectsV2"),
    ("GET", "/b?versions", {}, "ListObjectVersions"),
    ("GET", "/b", {}, "ListObjects"),
    ("HEAD", "/b", {}, "HeadBucket"),
    ("PUT", "/b", {}, "CreateBucket"),
    ("DELETE", "/b", {}, "DeleteBucket"),
    ("POST", "/b?delete", {}, "DeleteObjects"),
    ("POST", "/b", {}, "PostObject"),
    ("GET", "/b/k?uploadId=u", {}, "ListParts"),
    ("GET", "/b/k?acl", {}, "GetObjectAcl"),
    ("GET", "/b/k?attributes", {}, "GetObjectAttributes"),
    ("GET", "/b/k?tagging", {}, "GetObjectTagging"),
    ("PUT", "/b/k?tagging", {}, "PutObjectTagging"),
    ("DELETE", "/b/k?tagging", {}, "DeleteObjectTagging"),
    ("GET", "/b/k?retention", {}, "GetObjectRetention"),
    ("PUT", "/b/k?retention", {}, "PutObjectRetention"),
    ("GET", "/b/k?legal-hold", {}, "GetObjectLegalHold"),
    ("PUT", "/b/k?legal-hold", {}, "PutObjectLegalHold"),
    ("GET", "/b/k?partNumber=1", {}, "GetObject"),
    ("GET", "/b/k", {}, "GetObject"),
    ("HEAD", "/b/k?partNumber=1", {}, "HeadObject"),
    ("HEAD", "/b/k", {}, "HeadObject"),
    ("PUT", "/b/k?partNumber=1&uploadId=u", COPY, "UploadPartCopy"),
    ("PUT", "/b/k?partNumber=1&uploadId=u", {}, "UploadPart"),
    ("PUT", "/b/k", COPY, "CopyObject"),
    ("PUT", "/b/k", {}, "PutObject"),
    ("DELETE", "/b/k?uploadId=u", {}, "AbortMultipartUpload"),
    ("DELETE", "/b/k", {}, "DeleteObject"),
    ("POST", "/b/k?uploads", {}, "CreateMultipartUpload"),
    ("POST", "/b/k?uploadId=u", {}, "CompleteMultipartUpload"),
]


@pytest.mark.parametrize(("index", "method", "target", "headers", "name"), [(i, *row) for i, row in enumerate(TABLE)])
def test_each_row_of_the_table_is_reached_by_its_request(
    index: int, method: str, target: str, headers: dict[str, str], name: str
) -> None:
    r = route(request(method, target, headers))
    assert r.name == name
    assert r is ROUTES[index]


def test_the_table_above_covers_every_route() -> None:
    assert len(TABLE) == len(ROUTES)
    assert [(r.method, r.name) for r in ROUTES] == [(m, n) for m, _, _, n in TABLE]


def _canonical(r: Route) -> Request:
    """The plainest request for a route: its method and level, its markers and nothing else."""
    path = {SERVICE: "/", BUCKET: "/b", OBJECT: "/b/k"}[r.level]
    query = "&".join(f"{m}=1" for m in r.markers)
    return request(r.method, f"{path}?{query}" if query else path, COPY if r.copy_source else {})


@pytest.mark.parametrize("r", ROUTES, ids=[f"{r.method}-{r.level}-{r.name}-{'+'.join(r.markers)}" for r in ROUTES])
def test_no_route_is_shadowed_by_an_earlier_one(r: Route) -> None:
    assert route(_canonical(r)) is r


def test_route_keys_are_distinct_and_markers_are_sub_resources() -> None:
    keys = [(r.method, r.level, frozenset(r.markers), r.copy_source) for r in ROUTES]
    assert len(set(keys)) == len(keys)
    assert all(set(r.markers) <= SUBRESOURCES for r in ROUTES)


@pytest.mark.parametrize(
    ("method", "target", "headers", "name"),
    [
        # ordinary parameters select nothing
        ("GET", "/b?prefix=a&delimiter=/&max-keys=2&marker=x", {}, "ListObjects"),
        ("GET", "/b?list-type=2&continuation-token=abc&start-after=x", {}, "ListObjectsV2"),
        ("GET", "/b/k?versionId=null&response-content-type=text/plain", {}, "GetObject"),
        ("PUT", "/b/k?x-id=PutObject", {}, "PutObject"),
        ("GET", "/?prefix=a&max-buckets=3", {}, "ListBuckets"),
        # a marker with an empty value or none at all is still the marker
        ("GET", "/b?versioning=", {}, "GetBucketVersioning"),
        ("POST", "/b/k?uploads=", {}, "CreateMultipartUpload"),
        # the trailing slash of a bucket is not a key; a key keeps its slashes and its encoded "?"
        ("GET", "/b/", {}, "ListObjects"),
        ("GET", "/b/a/b/c/", {}, "GetObject"),
        ("GET", "/b/%3Facl", {}, "GetObject"),
        ("PUT", "/b/%3FpartNumber=1%26uploadId=u", {}, "PutObject"),
        # the copy header matters only to PUT
        ("GET", "/b/k", COPY, "GetObject"),
        ("DELETE", "/b/k", COPY, "DeleteObject"),
        # copy-source on a multipart marker order-independent
        ("PUT", "/b/k?uploadId=u&partNumber=3", COPY, "UploadPartCopy"),
    ],
)
def test_parameters_that_are_not_sub_resources_do_not_change_the_route(
    method: str, target: str, headers: dict[str, str], name: str
) -> None:
    assert route(request(method, target, headers)).name == name


@pytest.mark.parametrize(
    ("method", "target", "headers"),
    [
        ("GET", "/b?website", {}),
        ("PUT", "/b?logging", {}),
        ("GET", "/b/k?torrent", {}),
        ("DELETE", "/b/k?retention", {}),
        ("PUT", "/b/k?partNumber=1", {}),  # a part without its upload
        ("PUT", "/b/k?uploadId=u", {}),  # an upload without its part number
        ("PUT", "/b/k?partNumber=1", COPY),
        ("GET", "/b?delete", {}),  # DeleteObjects is a POST
        ("GET", "/?acl", {}),  # the service has no sub-resources
        ("GET", "/b?versioning&cors", {}),  # a known marker does not excuse an unknown one
        ("GET", "/b/k?uploadId=u&tagging", {}),
        ("GET", "/b/k?tagging&acl", {}),
        ("GET", "/b?list-type=2&versions", {}),
        ("POST", "/b/k?uploads&uploadId=u", {}),
        ("DELETE", "/b?replication", {}),
        ("PUT", "/b?policyStatus", {}),  # a status is only read
        ("POST", "/b/k?restore", {}),
        ("POST", "/b/k?select&select-type=2", {}),
        ("PUT", "/b/k?renameObject", {}),
        # a method S3 has, at a level where it has no operation
        ("PUT", "/", {}),
        ("DELETE", "/", {}),
        ("HEAD", "/", {}),
        ("POST", "/", {}),
        ("POST", "/b/k", {}),
    ],
)
def test_an_operation_this_server_does_not_have_is_not_implemented(
    method: str, target: str, headers: dict[str, str]
) -> None:
    with pytest.raises(S3Error) as e:
        route(request(method, target, headers))
    assert (e.value.code, e.value.status) == ("NotImplemented", 501)


@pytest.mark.parametrize(
    ("method", "target", "level"),
    [("PATCH", "/b/k", "OBJECT"), ("OPTIONS", "/b", "BUCKET"), ("TRACE", "/", "SERVICE"), ("get", "/b/k", "OBJECT")],
)
def test_a_method_s3_does_not_have_is_not_allowed(method: str, target: str, level: str) -> None:
    with pytest.raises(S3Error) as e:
        route(request(method, target))
    assert (e.value.code, e.value.status) == ("MethodNotAllowed", 405)
    assert e.value.fields == {"Method": method, "ResourceType": level}


KIND = {SERVICE: Kind.SERVICE, BUCKET: Kind.BUCKET, OBJECT: Kind.OBJECT}


@pytest.mark.parametrize("r", ROUTES, ids=lambda r: f"{r.method}-{r.name}")
def test_every_route_asks_a_catalogue_action_of_its_level(r: Route) -> None:
    # None only where the operation asks itself: per key (DeleteObjects), or once a form is authenticated
    if r.action is None:
        assert r.name in ("DeleteObjects", "PostObject")
        return
    for action in (r.action, r.version_action):
        if action is not None:
            assert ACTIONS[action] == KIND[r.level], (r.name, action)
    # a version action only where ?versionId= names one
    assert r.version_action is None or r.level == OBJECT


def test_the_system_bucket_rule_over_every_route() -> None:
    """`_tunnelmesh`: no peer may do anything, a mesh admin only what the read role names (no write of any
    kind, whatever the route): the coordinator alone writes its own records."""
    peer, admin = Who("peer", "peer-1"), Who("peer", "admin", is_admin=True)
    for r in ROUTES:
        for action in filter(None, (r.action, r.version_action)):
            ask = Ask(action, "_tunnelmesh", "k" if r.level == OBJECT else None)
            assert not decide(SYSTEM_VIEW, peer, ask).allowed, action
            assert decide(SYSTEM_VIEW, admin, ask).allowed == (action in ROLES["read"]), action


def test_the_routes_that_decide_object_tag_asks_exist_and_ask_object_actions() -> None:
    """s3/authz.py DEFERS names the routes whose operation settles an ask left for the object's tags: a name
    there that no route has would silently leave those keys absent."""
    by_name = {r.name: r for r in ROUTES}
    assert DEFERS.issubset(by_name)
    assert all(by_name[n].level == OBJECT and by_name[n].action for n in DEFERS)


def test_a_plain_request_routes_alike_first_and_again_between_others() -> None:
    """The route of a request without parameters is remembered (router._PLAIN): asked again, interleaved with
    requests that have sub-resources or a copy source, each still gets its own operation, and an unrouted method
    is refused every time."""
    asks = [
        ("GET", "/b/k", {}, "GetObject"),
        ("GET", "/b/k?tagging", {}, "GetObjectTagging"),
        ("PUT", "/b/k", {}, "PutObject"),
        ("PUT", "/b/k", COPY, "CopyObject"),
        ("HEAD", "/b/k", {}, "HeadObject"),
        ("GET", "/b", {}, "ListObjects"),
        ("GET", "/", {}, "ListBuckets"),
    ]
    for _ in range(2):
        for method, target, headers, name in asks:
            assert route(request(method, target, headers)).name == name, (method, target, headers)
        for method, target in (("POST", "/b/k"), ("PATCH", "/b/k")):
            with pytest.raises(S3Error):
                route(request(method, target))
