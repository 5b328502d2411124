"""S3 operations we do not serve: each row of router.UNSERVED is reached (a 501 that names it), none shadows a
served route, and a request S3 has no operation for either is `unknown` (docs/operations.md 1.10)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request, parse_query, split_path
from tunnelmesh.s3.router import BUCKET, OBJECT, ROUTES, SUBRESOURCES, UNSERVED, route

PATHS = {BUCKET: "/b", OBJECT: "/b/k"}


def request(method: str, target: str) -> Request:
    raw_path, _, raw_query = target.partition("?")

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    req = Request(method=method, raw_path=raw_path, raw_query=raw_query, headers={}, receive=receive, prefix="")
    req.query_items = parse_query(raw_query)
    req.query = {name: value for name, value, _, _ in req.query_items}
    req.bucket, req.key = split_path(unquote(raw_path))
    return req


@pytest.mark.parametrize(("method", "level", "markers", "name"), UNSERVED, ids=[row[3] for row in UNSERVED])
def test_each_unserved_operation_is_named_by_its_501(method: str, level: str, markers: tuple[str, ...], name: str):
    assert markers[0] in SUBRESOURCES  # otherwise the request would reach a served route instead
    assert name not in {r.name for r in ROUTES}
    req = request(method, PATHS[level] + "?" + "&".join(f"{m}=x" if m == "id" else m for m in markers))
    with pytest.raises(S3Error) as e:
        route(req)
    assert (e.value.code, e.value.status, req.operation) == ("NotImplemented", 501, name)


@pytest.mark.parametrize(
    ("method", "target"),
    [("POST", "/b/k"), ("HEAD", "/"), ("POST", "/b?cors"), ("GET", "/b/k?website"), ("PATCH", "/b/k")],
)
def test_no_such_s3_operation_is_unknown(method: str, target: str) -> None:
    req = request(method, target)
    with pytest.raises(S3Error) as e:
        route(req)
    assert e.value.code in ("NotImplemented", "MethodNotAllowed") and req.operation == "unknown"


def test_list_or_get_by_id() -> None:
    listed, one = request("GET", "/b?inventory"), request("GET", "/b?inventory&id=weekly")
    for req in (listed, one):
        with pytest.raises(S3Error):
            route(req)
    assert (listed.operation, one.operation) == ("ListBucketInventoryConfigurations", "GetBucketInventoryConfiguration")
