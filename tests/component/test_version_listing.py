"""ListObjectVersions (s3/ops/listing.py over store/listing.py list_versions), in process, on every metadata
backend: a bucket never versioned, where every object is its one null version, and a version history built with
the store's primitives (the versioning write rules are tested where they are written)."""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

from tunnelmesh.store.metadata import MetaTx
from tunnelmesh.store.records import ObjectRecord, new_version_id

from .inprocess import InProcessS3

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

# (element, key, version id, is latest)
Shown = tuple[str, str, str, str]


def shown(body: bytes) -> list[Shown]:
    """The page's versions and delete markers, in the order the answer gives them."""
    root = ET.fromstring(body)
    fields = ("Key", "VersionId", "IsLatest")
    return [
        (e.tag.removeprefix(NS), *(e.findtext(NS + f) or "" for f in fields))
        for e in root
        if e.tag in (NS + "Version", NS + "DeleteMarker")
    ]


def field(body: bytes, name: str) -> str | None:
    return ET.fromstring(body).findtext(NS + name)


def prefixes(body: bytes) -> list[str]:
    return [p.findtext(NS + "Prefix") or "" for p in ET.fromstring(body).iter(NS + "CommonPrefixes")]


def code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def walk(s3: InProcessS3, query: str, max_keys: int) -> list[Shown]:
    """Every page, each resumed at the NextKeyMarker and NextVersionIdMarker of the one before."""
    seen: list[Shown] = []
    markers = ""
    for _ in range(50):
        r = s3("GET", "/bkt", f"versions&max-keys={max_keys}{query}{markers}")
        assert r.status == 200, r.body
        page = shown(r.body)
        assert 0 < len(page) <= max_keys or field(r.body, "IsTruncated") == "false"
        seen += page
        if field(r.body, "IsTruncated") == "false":
            assert field(r.body, "NextKeyMarker") is None
            return seen
        key, vid = field(r.body, "NextKeyMarker"), field(r.body, "NextVersionIdMarker")
        assert (key, vid) == page[-1][1:3]  # the last version shown
        markers = f"&key-marker={urllib.parse.quote(key or '', safe='')}&version-id-marker={vid}"
    raise AssertionError("still truncated after 50 pages")


def test_a_bucket_never_versioned_lists_each_object_as_its_latest_null_version(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    keys = ["a/1", "a/2", "b", "c d", "é"]
    for k in keys:
        assert s3("PUT", f"/bkt/{k}", body=k.encode()).status == 200
    r = s3("GET", "/bkt", "versions")
    assert r.status == 200, r.body
    assert shown(r.body) == [("Version", k, "null", "true") for k in keys]
    root = ET.fromstring(r.body)
    sizes = [v.findtext(NS + "Size") for v in root.iter(NS + "Version")]
    assert sizes == [str(len(k.encode())) for k in keys]
    assert all(v.findtext(NS + "ETag", "").startswith('"') for v in root.iter(NS + "Version"))
    assert field(r.body, "IsTruncated") == "false"
    assert walk(s3, "", 2) == [("Version", k, "null", "true") for k in keys]
    grouped = s3("GET", "/bkt", "versions&delimiter=%2F")
    assert [k for _, k, _, _ in shown(grouped.body)] == ["b", "c d", "é"]
    assert [p.findtext(NS + "Prefix") for p in ET.fromstring(grouped.body).iter(NS + "CommonPrefixes")] == ["a/"]
    # after the null version of "b", as a client resumes; keys and markers URL-encoded when asked
    r = s3("GET", "/bkt", "versions&key-marker=b&version-id-marker=null&encoding-type=url&max-keys=1")
    assert shown(r.body) == [("Version", "c+d", "null", "true")]
    assert (field(r.body, "KeyMarker"), field(r.body, "NextKeyMarker"), field(r.body, "NextVersionIdMarker")) == (
        "b",
        "c+d",
        "null",
    )
    # a version id of ours that names no version here is a place to resume from, not an error
    after_a1 = s3("GET", "/bkt", f"versions&key-marker=a%2F1&version-id-marker={new_version_id(1, 0)}")
    assert after_a1.status == 200 and [k for _, k, _, _ in shown(after_a1.body)] == keys[1:]


def test_bad_version_id_markers_are_invalid_arguments(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    for query in (
        "versions&version-id-marker=null",  # no key marker
        "versions&key-marker=k&version-id-marker=3HL4kqtJlcpXroDTDmJ%2BrmSpXd3dIbrHY",  # not one of ours
        "versions&key-marker=k&version-id-marker=0000000000000001000000000",  # 25 hex digits
        "versions&key-marker=k&version-id-marker=NULL",
    ):
        r = s3("GET", "/bkt", query)
        assert (r.status, code(r.body)) == (400, "InvalidArgument"), query
    assert s3("GET", "/nope", "versions").status == 404


def _rec(key: str, seq: int, vid: str | None, marker: bool = False) -> ObjectRecord:
    size = 0 if marker else seq % 100
    data = None if marker else b"x" * size
    etag = "" if marker else f"etag{seq}"
    return ObjectRecord(
        "bkt", key, size, etag, seq / 1e6, {}, {}, [], "peer", data, version_id=vid, seq=seq, marker=marker
    )


def test_versions_and_delete_markers_by_key_newest_first_with_their_ids(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    assert s3("PUT", "/bkt/k", body=b"now").status == 200  # the current null version, seq from its mtime
    ids = {n: new_version_id(n, n) for n in (100, 200, 300, 400, 500, 600)}

    def history(tx: MetaTx) -> None:
        tx.put_version(_rec("j", 500, ids[500], marker=True), True, 1.0)  # j's latest is a delete marker
        tx.put_version(_rec("j", 400, ids[400]), False, 1.0)
        tx.put_version(_rec("k", 200, ids[200]), False, 1.0)
        tx.put_version(_rec("k", 100, ids[100], marker=True), True, 1.0)
        tx.put_object(_rec("l/x", 300, ids[300]))
        tx.put_object(_rec("m", 600, ids[600]))

    s3.loop.run_until_complete(s3.store.meta.write(history))
    everything = [
        ("DeleteMarker", "j", ids[500], "true"),
        ("Version", "j", ids[400], "false"),
        ("Version", "k", "null", "true"),
        ("Version", "k", ids[200], "false"),
        ("DeleteMarker", "k", ids[100], "false"),
        ("Version", "l/x", ids[300], "true"),
        ("Version", "m", ids[600], "true"),
    ]
    r = s3("GET", "/bkt", "versions")
    assert shown(r.body) == everything
    root = ET.fromstring(r.body)
    marker = next(root.iter(NS + "DeleteMarker"))
    assert [c.tag.removeprefix(NS) for c in marker] == ["Key", "VersionId", "IsLatest", "LastModified", "Owner"]
    old = [v for v in root.iter(NS + "Version") if v.findtext(NS + "VersionId") == ids[200]][0]
    assert (old.findtext(NS + "ETag"), old.findtext(NS + "Size")) == ('"etag200"', "0")
    for n in (1, 2, 4):
        assert walk(s3, "", n) == everything
    # inside a key, after one of its versions: the rest of it, none of them its latest
    r = s3("GET", "/bkt", "versions&key-marker=k&version-id-marker=null&max-keys=1")
    assert shown(r.body) == [("Version", "k", ids[200], "false")]
    assert (field(r.body, "NextKeyMarker"), field(r.body, "NextVersionIdMarker")) == ("k", ids[200])
    assert (field(r.body, "KeyMarker"), field(r.body, "VersionIdMarker")) == ("k", "null")
    # a common prefix counts once; a page that ends on it resumes past it
    r = s3("GET", "/bkt", "versions&delimiter=%2F&key-marker=k&max-keys=1")
    assert shown(r.body) == [] and prefixes(r.body) == ["l/"] and field(r.body, "IsTruncated") == "true"
    assert (field(r.body, "NextKeyMarker"), field(r.body, "NextVersionIdMarker")) == ("l/", None)
    r = s3("GET", "/bkt", "versions&delimiter=%2F&key-marker=l%2F")
    assert shown(r.body) == everything[-1:] and prefixes(r.body) == []
    r = s3("GET", "/bkt", "versions&delimiter=%2F&key-marker=k&version-id-marker=null&max-keys=2")
    assert shown(r.body) == everything[3:5] and field(r.body, "IsTruncated") == "true"
    assert (field(r.body, "NextKeyMarker"), field(r.body, "NextVersionIdMarker")) == ("k", ids[100])
    r = s3("GET", "/bkt", f"versions&delimiter=%2F&key-marker=k&version-id-marker={ids[100]}")
    assert shown(r.body) == everything[-1:] and prefixes(r.body) == ["l/"]
    # each version counts toward max-keys, the common prefix once
    r = s3("GET", "/bkt", "versions&delimiter=%2F&max-keys=6")
    assert len(shown(r.body)) + len(prefixes(r.body)) == 6 and field(r.body, "IsTruncated") == "true"
    r = s3("GET", "/bkt", "versions&delimiter=%2F&max-keys=7")
    assert len(shown(r.body)) == 6 and prefixes(r.body) == ["l/"] and field(r.body, "IsTruncated") == "false"
    # max-keys=0: no version, and not truncated
    r = s3("GET", "/bkt", "versions&prefix=l%2F&encoding-type=url&max-keys=0")
    assert (field(r.body, "Prefix"), shown(r.body), field(r.body, "IsTruncated")) == ("l/", [], "false")
