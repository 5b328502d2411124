"""Every S3 response, on /s3 and on s3.listen, is sandboxed (docs/operations.md 1.1 point 1).

The console shares the main listener's origin, so an HTML object a peer uploads and an admin opens must run
no script there: `Content-Security-Policy: sandbox` (an opaque origin, no script) and
`X-Content-Type-Options: nosniff`, on objects, presigned GETs (with a `response-content-type=text/html`
override too), errors, listings, HEAD, 304, 501 and preflights, each header exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import requests

from tests.conftest import Coordinator

HTML = b"<!doctype html><script>document.title='ran'</script><p>hi</p>"
BIG = b"x" * (300 * 1024)  # above the 256 KiB a response sends in one piece: the streamed/zero-copy path


@pytest.fixture(params=["prefix", "root"])
def endpoint(request: pytest.FixtureRequest, coordinator: Coordinator) -> str:
    return coordinator.endpoint if request.param == "prefix" else coordinator.root_endpoint


@pytest.fixture
def objects(coordinator: Coordinator, endpoint: str):
    s3 = coordinator.client(endpoint)
    b = f"csp-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="page.html", Body=HTML, ContentType="text/html")
    s3.put_object(Bucket=b, Key="big.txt", Body=BIG, ContentType="text/plain")
    return s3, b


def assert_sandboxed(headers: requests.structures.CaseInsensitiveDict | dict[str, str], what: str) -> None:
    # one header each: a second copy would be joined into "sandbox, sandbox" here
    assert headers.get("content-security-policy") == "sandbox", (what, dict(headers))
    assert headers.get("x-content-type-options") == "nosniff", (what, dict(headers))


def test_signed_requests_are_sandboxed(objects) -> None:
    s3, b = objects
    got = s3.get_object(Bucket=b, Key="page.html")
    assert got["Body"].read() == HTML and got["ContentType"] == "text/html"
    assert_sandboxed(got["ResponseMetadata"]["HTTPHeaders"], "GetObject")
    overridden = s3.get_object(Bucket=b, Key="big.txt", ResponseContentType="text/html")
    assert overridden["ContentType"] == "text/html" and overridden["Body"].read() == BIG
    assert_sandboxed(overridden["ResponseMetadata"]["HTTPHeaders"], "GetObject streamed, text/html override")
    calls: list[tuple[str, Callable[[], dict]]] = [
        ("HeadObject", lambda: s3.head_object(Bucket=b, Key="page.html")),
        ("ListObjectsV2", lambda: s3.list_objects_v2(Bucket=b)),
        ("ListBuckets", lambda: s3.list_buckets()),
        ("PutObject", lambda: s3.put_object(Bucket=b, Key="again.html", Body=HTML, ContentType="text/html")),
        ("DeleteObject", lambda: s3.delete_object(Bucket=b, Key="again.html")),
        ("HeadBucket", lambda: s3.head_bucket(Bucket=b)),
    ]
    for name, call in calls:
        assert_sandboxed(call()["ResponseMetadata"]["HTTPHeaders"], name)


@pytest.mark.parametrize("version", ["s3", "s3v4"])
def test_presigned_get_with_html_override_is_sandboxed(
    coordinator: Coordinator, endpoint: str, objects, version
) -> None:
    _, b = objects
    s3 = coordinator.client(endpoint, signature_version=version)
    for key in ("page.html", "big.txt"):
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": b, "Key": key, "ResponseContentType": "text/html"}, ExpiresIn=300
        )
        assert ("X-Amz-Signature=" in url) == (version == "s3v4")
        r = requests.get(url, timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "text/html", r.text[:300]
        assert_sandboxed(r.headers, f"presigned GET {key}")
        etag = r.headers["etag"]
        r = requests.get(url, headers={"If-None-Match": etag}, timeout=30)
        assert r.status_code == 304 and r.content == b""
        assert_sandboxed(r.headers, f"304 {key}")
    head = s3.generate_presigned_url("head_object", Params={"Bucket": b, "Key": "page.html"}, ExpiresIn=300)
    r = requests.head(head, timeout=30)
    assert r.status_code == 200
    assert_sandboxed(r.headers, "presigned HEAD")
    listing = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": b}, ExpiresIn=300)
    r = requests.get(listing, timeout=30)
    assert r.status_code == 200 and b"page.html" in r.content
    assert_sandboxed(r.headers, "presigned listing")


def test_errors_are_sandboxed(objects, endpoint: str) -> None:
    s3, b = objects
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "nope.html"}, ExpiresIn=300)
    cases = [
        ("NoSuchKey", requests.get(missing, timeout=30), 404),
        ("anonymous AccessDenied", requests.get(f"{endpoint}/{b}/page.html", timeout=30), 403),
        ("anonymous HEAD", requests.head(f"{endpoint}/{b}/page.html", timeout=30), 403),
        ("bad signature", requests.get(missing.replace("Signature=", "Signature=A"), timeout=30), 403),
        ("NotImplemented", requests.get(f"{endpoint}/{b}?logging", auth=("admin", "x" * 20), timeout=30), 403),
        ("InvalidURI", requests.get(f"{endpoint}/{b}/%ff", timeout=30), 400),
        ("MethodNotAllowed", requests.request("PATCH", f"{endpoint}/{b}/page.html", timeout=30), 405),
        ("bad preflight", requests.options(f"{endpoint}/{b}/page.html", timeout=30), 400),
    ]
    for name, r, status in cases:
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        assert_sandboxed(r.headers, name)


def test_not_implemented_is_sandboxed(coordinator: Coordinator, objects, endpoint: str) -> None:
    s3, b = objects
    r = requests.get(f"{endpoint}/{b}?logging", auth=("admin", coordinator.token), timeout=30)
    assert r.status_code == 501 and b"NotImplemented" in r.content
    assert_sandboxed(r.headers, "GetBucketLogging")


def test_the_admin_api_and_the_main_listeners_404_are_sandboxed(coordinator: Coordinator) -> None:
    base = f"http://127.0.0.1:{coordinator.port}"
    cases = [
        ("admin answer", requests.get(f"{base}/api/peers", auth=("admin", coordinator.token), timeout=30), 200),
        ("admin refusal", requests.get(f"{base}/api/peers", timeout=30), 403),
        ("404 outside the APIs", requests.get(f"{base}/elsewhere", timeout=30), 404),
    ]
    for name, r, status in cases:
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        assert_sandboxed(r.headers, name)
