"""Object browsing pages (docs/operations.md 1.5): ListObjectsV2 pages of 200 with the delimiter, the
continuation token in the page URL (the S3 API's own token, round-tripped), next / previous / first with
a bounded stack of previous tokens, folders as common prefixes, and the prefix filter."""

from __future__ import annotations

import concurrent.futures
import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Coordinator, start_coordinator
from support.console import ConsoleClient, signed_in

KEYS = [f"k-{i:04d}" for i in range(450)]
SUB = [f"sub/{c}" for c in "abcde"]
BUCKET = "paging"


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("console-paging"), workers=1)
    s3 = c.client()
    s3.create_bucket(Bucket=BUCKET)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=b"x"), [*KEYS, *SUB, "zz/x"]))
    yield c
    c.stop()


def _page(console: ConsoleClient, path_and_query: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(object names, folder names, {link id: console path}) of one listing page."""
    r = console.http.get(console.base + path_and_query, allow_redirects=False, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    objects = re.findall(r'<tr class="object">.*?<a href="[^"]*">([^<]*)</a>', r.text, re.S)
    folders = re.findall(r'<tr class="folder">.*?<a href="[^"]*">([^<]*)</a>', r.text, re.S)
    links = {m[1]: html.unescape(m[0]) for m in re.findall(r'<a href="([^"]*)" id="(next|previous|first)">', r.text)}
    return [html.unescape(o) for o in objects], [html.unescape(f) for f in folders], links


def test_next_previous_and_first_walk_the_pages_in_order(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    start = f"/console/b/{BUCKET}/"
    p1, f1, l1 = _page(console, start)
    assert p1 == KEYS[:200] and f1 == [] and set(l1) == {"next"}
    p2, f2, l2 = _page(console, l1["next"])
    assert p2 == KEYS[200:400] and f2 == [] and set(l2) == {"next", "previous", "first"}
    p3, f3, l3 = _page(console, l2["next"])
    # common prefixes count toward a page's 200, as in S3
    assert p3 == KEYS[400:] and f3 == ["sub/", "zz/"] and set(l3) == {"previous", "first"}
    back2 = _page(console, l3["previous"])
    assert back2[0] == p2
    back1 = _page(console, back2[2]["previous"])
    assert back1[0] == p1 and "previous" not in back1[2]
    assert _page(console, l3["first"])[0] == p1


def test_the_page_token_is_the_s3_apis_own_continuation_token(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    _, _, links = _page(console, f"/console/b/{BUCKET}/")
    s3_page = coord.client().list_objects_v2(Bucket=BUCKET, Delimiter="/", MaxKeys=200)
    query = parse_qs(urlsplit(links["next"]).query, keep_blank_values=True)
    assert query["page"] == [s3_page["NextContinuationToken"]]
    assert query["back"] == [""]  # the first page's own (empty) token, for "previous"


def test_the_stack_of_previous_pages_is_bounded(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    token = coord.client().list_objects_v2(Bucket=BUCKET, Delimiter="/", MaxKeys=200)["NextContinuationToken"]
    many = "".join(f"&back={i}" for i in range(30))
    _, _, links = _page(console, f"/console/b/{BUCKET}/?page={token}{many}")
    back = parse_qs(urlsplit(links["next"]).query, keep_blank_values=True)["back"]
    assert len(back) == 20 and back[-1] == token and back[0] == "11"
    previous = parse_qs(urlsplit(links["previous"]).query, keep_blank_values=True)
    assert previous["page"] == ["29"] and len(previous["back"]) == 19


def test_the_prefix_filter_lists_under_the_prefix_only(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    objects, folders, links = _page(console, f"/console/b/{BUCKET}/?prefix=k-04")
    assert objects == KEYS[400:] and folders == [] and links == {}
    objects, folders, _ = _page(console, f"/console/b/{BUCKET}/?prefix=sub/")
    assert objects == list("abcde") and folders == []
    objects, folders, _ = _page(console, f"/console/b/{BUCKET}/?prefix=nothing-here")
    assert objects == [] and folders == []
