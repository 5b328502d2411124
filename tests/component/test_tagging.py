"""Object and bucket tagging (docs/data-protection.md section 6), in process, on every metadata backend: the
operations, AWS's limits, the tag sets writes carry, and the rolling-upgrade gate."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import pytest

from .inprocess import InProcessS3

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def tagging(pairs: list[tuple[str, str]]) -> bytes:
    tags = "".join(f"<Tag><Key>{escape(k)}</Key><Value>{escape(v)}</Value></Tag>" for k, v in pairs)
    return f"<Tagging><TagSet>{tags}</TagSet></Tagging>".encode()


def md5(body: bytes) -> dict[str, str]:
    return {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def tag_set(s3: InProcessS3, path: str) -> list[tuple[str, str]]:
    r = s3("GET", path, "tagging")
    assert r.status == 200, r.body
    return [
        (t.findtext(NS + "Key") or "", t.findtext(NS + "Value") or "") for t in ET.fromstring(r.body).iter(NS + "Tag")
    ]


def put_tags(s3: InProcessS3, path: str, pairs: list[tuple[str, str]]) -> tuple[int, str]:
    body = tagging(pairs)
    r = s3("PUT", path, "tagging", body=body, headers=md5(body))
    return r.status, code(r.body) if r.body else ""


def test_object_tags_are_put_read_counted_and_deleted(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/k", body=b"data")
    assert tag_set(s3, "/bkt/k") == []
    assert "x-amz-tagging-count" not in s3("HEAD", "/bkt/k").headers
    assert put_tags(s3, "/bkt/k", [("zeta", "1"), ("alpha", ""), ("ключ", "значение")]) == (200, "")
    assert tag_set(s3, "/bkt/k") == [("alpha", ""), ("zeta", "1"), ("ключ", "значение")]  # sorted by key
    assert s3("GET", "/bkt/k").headers["x-amz-tagging-count"] == "3"
    assert s3("HEAD", "/bkt/k").headers["x-amz-tagging-count"] == "3"
    assert put_tags(s3, "/bkt/k", [("only", "one")]) == (200, "")  # a put replaces the whole set
    assert tag_set(s3, "/bkt/k") == [("only", "one")]
    assert s3("GET", "/bkt/k").body == b"data"  # the object itself is untouched
    assert s3("DELETE", "/bkt/k", "tagging").status == 204
    assert tag_set(s3, "/bkt/k") == []
    assert "x-amz-tagging-count" not in s3("GET", "/bkt/k").headers


def test_tagging_answers_for_absent_objects_buckets_and_versions(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/k", body=b"data")
    for method in ("GET", "PUT", "DELETE"):
        body = tagging([("a", "b")]) if method == "PUT" else b""
        r = s3(method, "/bkt/absent", "tagging", body=body)
        assert (r.status, code(r.body)) == (404, "NoSuchKey"), method
        r = s3(method, "/nobucket/k", "tagging", body=body)
        assert (r.status, code(r.body)) == (404, "NoSuchBucket"), method
    assert s3("PUT", "/bkt/k", "tagging&versionId=null", body=tagging([("a", "b")])).status == 200
    assert tag_set(s3, "/bkt/k") == [("a", "b")]
    r = s3("PUT", "/bkt/k", "tagging&versionId=abc", body=tagging([("c", "d")]))
    assert (r.status, code(r.body)) == (400, "InvalidArgument")
    assert tag_set(s3, "/bkt/k") == [("a", "b")]


BAD_SETS = {
    "eleven tags": [(str(i), "v") for i in range(11)],
    "a key of 129 characters": [("k" * 129, "v")],
    "an empty key": [("", "v")],
    "a value of 257 characters": [("k", "v" * 257)],
    "the aws: prefix": [("aws:owner", "me")],
    "the AWS: prefix in capitals": [("AWS:owner", "me")],
    "a key twice": [("k", "1"), ("k", "2")],
}


@pytest.mark.parametrize("pairs", list(BAD_SETS.values()), ids=list(BAD_SETS))
def test_a_tag_set_past_aws_limits_is_invalid_tag_and_changes_nothing(s3: InProcessS3, pairs) -> None:
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/k", body=b"data")
    put_tags(s3, "/bkt/k", [("kept", "yes")])
    assert put_tags(s3, "/bkt/k", pairs) == (400, "InvalidTag")
    assert tag_set(s3, "/bkt/k") == [("kept", "yes")]
    r = s3("PUT", "/bkt/new", body=b"x", headers={"x-amz-tagging": "&".join(f"{k}={v}" for k, v in pairs)})
    assert (r.status, code(r.body)) == (400, "InvalidTag")
    assert s3("HEAD", "/bkt/new").status == 404


def test_the_largest_tag_sets_aws_allows_are_kept(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/k", body=b"data")
    # 128 and 256 characters, not bytes: each of these is 2 UTF-8 bytes
    most = [(f"{i}" + "é" * 127, "ü" * 256) for i in range(10)]
    assert put_tags(s3, "/bkt/k", most) == (200, "")
    assert tag_set(s3, "/bkt/k") == most
    fifty = [(f"t{i:02d}", str(i)) for i in range(50)]
    body = tagging(fifty)
    assert s3("PUT", "/bkt", "tagging", body=body).status == 204
    assert tag_set(s3, "/bkt") == fifty
    body = tagging([*fifty, ("t50", "x")])
    r = s3("PUT", "/bkt", "tagging", body=body)
    assert (r.status, code(r.body)) == (400, "InvalidTag")
    assert tag_set(s3, "/bkt") == fifty


@pytest.mark.parametrize(
    "body",
    [
        b"<Tagging><TagSet><Tag><Key>a</Key>",
        b"<Tagging/>",
        b"<Other><TagSet/></Other>",
        b"",
        b"<Tagging><TagSet><Tag><Key>a</Key></Tag></TagSet></Tagging>",
        b"<Tagging><TagSet><Nope><Key>a</Key><Value>b</Value></Nope></TagSet></Tagging>",
    ],
)
def test_a_malformed_tagging_document_is_malformed_xml(s3: InProcessS3, body: bytes) -> None:
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/k", body=b"data")
    for path, query in (("/bkt/k", "tagging"), ("/bkt", "tagging")):
        r = s3("PUT", path, query, body=body)
        assert (r.status, code(r.body)) == (400, "MalformedXML"), path


@pytest.mark.parametrize("header", ["a=%ff", "a=b=c", "%e2%82=x"])
def test_a_malformed_x_amz_tagging_is_bad_request(s3: InProcessS3, header: str) -> None:
    s3("PUT", "/bkt")
    r = s3("PUT", "/bkt/k", body=b"x", headers={"x-amz-tagging": header})
    assert (r.status, code(r.body)) == (400, "BadRequest")
    r = s3("POST", "/bkt/k", "uploads", headers={"x-amz-tagging": header})
    assert (r.status, code(r.body)) == (400, "BadRequest")


def test_a_put_carries_tags_and_an_overwrite_without_them_clears_them(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    r = s3("PUT", "/bkt/k", body=b"one", headers={"x-amz-tagging": "foo=bar&bar&sp%20ace=a+b"})
    assert r.status == 200
    assert tag_set(s3, "/bkt/k") == [("bar", ""), ("foo", "bar"), ("sp ace", "a b")]
    assert s3("HEAD", "/bkt/k").headers["x-amz-tagging-count"] == "3"
    assert s3("PUT", "/bkt/k", body=b"two").status == 200
    assert tag_set(s3, "/bkt/k") == []
    assert "x-amz-tagging-count" not in s3("HEAD", "/bkt/k").headers


def test_a_copy_keeps_the_source_tags_or_replaces_them(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/src", body=b"source", headers={"x-amz-tagging": "a=1&b=2"})
    src = {"x-amz-copy-source": "/bkt/src"}
    assert s3("PUT", "/bkt/copy", headers=src).status == 200
    assert tag_set(s3, "/bkt/copy") == [("a", "1"), ("b", "2")]
    # COPY ignores x-amz-tagging, as S3 does
    assert (
        s3("PUT", "/bkt/copy2", headers={**src, "x-amz-tagging-directive": "COPY", "x-amz-tagging": "z=9"}).status
        == 200
    )
    assert tag_set(s3, "/bkt/copy2") == [("a", "1"), ("b", "2")]
    replace = {**src, "x-amz-tagging-directive": "REPLACE", "x-amz-tagging": "z=9"}
    assert s3("PUT", "/bkt/copy3", headers=replace).status == 200
    assert tag_set(s3, "/bkt/copy3") == [("z", "9")]
    assert s3("PUT", "/bkt/copy4", headers={**src, "x-amz-tagging-directive": "REPLACE"}).status == 200
    assert tag_set(s3, "/bkt/copy4") == []
    r = s3("PUT", "/bkt/copy5", headers={**src, "x-amz-tagging-directive": "MOVE"})
    assert (r.status, code(r.body)) == (400, "InvalidArgument")


def test_a_multipart_upload_keeps_its_tags_until_complete(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    r = s3("POST", "/bkt/mp", "uploads", headers={"x-amz-tagging": "b=2&a=1", "x-amz-meta-m": "v"})
    upload_id = ET.fromstring(r.body).findtext(NS + "UploadId")
    assert r.status == 200 and upload_id
    part = s3("PUT", "/bkt/mp", f"partNumber=1&uploadId={upload_id}", body=b"part one")
    etag = part.headers["etag"]
    done = (
        f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    )
    assert s3("POST", "/bkt/mp", f"uploadId={upload_id}", body=done.encode()).status == 200
    assert tag_set(s3, "/bkt/mp") == [("a", "1"), ("b", "2")]
    got = s3("GET", "/bkt/mp")
    assert (got.body, got.headers["x-amz-tagging-count"], got.headers["x-amz-meta-m"]) == (b"part one", "2", "v")
    assert "x-amz-tagging" not in got.headers  # kept with the upload, never an object header


def test_bucket_tags_are_put_read_and_deleted(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    r = s3("GET", "/bkt", "tagging")
    assert (r.status, code(r.body)) == (404, "NoSuchTagSet")
    assert s3("PUT", "/bkt", "tagging", body=tagging([("Hello", "World")])).status == 204
    assert tag_set(s3, "/bkt") == [("Hello", "World")]
    assert s3("DELETE", "/bkt", "tagging").status == 204
    r = s3("GET", "/bkt", "tagging")
    assert (r.status, code(r.body)) == (404, "NoSuchTagSet")
    r = s3("GET", "/nobucket", "tagging")
    assert (r.status, code(r.body)) == (404, "NoSuchBucket")
    r = s3("PUT", "/nobucket", "tagging", body=tagging([("a", "b")]))
    assert (r.status, code(r.body)) == (404, "NoSuchBucket")


def test_a_tagging_write_waits_while_a_node_of_an_older_release_may_write(s3: InProcessS3) -> None:
    """docs/scale-out.md, "Upgrading a mesh": an older node's overwrite would keep the replaced row's tags."""
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/k", body=b"data")
    meta = s3.store.meta
    run = s3.loop.run_until_complete
    run(meta.write(lambda tx: tx.claim_node("never-beat", "dir-0", 1.0)))  # a node from before heartbeats
    assert put_tags(s3, "/bkt/k", [("a", "1")]) == (200, "")
    run(meta.write(lambda tx: tx.claim_node("old-node", "dir-1", 1.0)))
    run(meta.write(lambda tx: tx.beat("old-node", "there", 1.0, 5.0)))
    assert put_tags(s3, "/bkt/k", [("a", "2")]) == (200, "")  # it beats this code's release: not older
    # this code is now one schema newer than the live node's stamp
    meta.release = meta.release + 1  # type: ignore[misc]
    refused = {
        "PutObjectTagging": lambda: s3("PUT", "/bkt/k", "tagging", body=tagging([("a", "3")])),
        "PutBucketTagging": lambda: s3("PUT", "/bkt", "tagging", body=tagging([("a", "3")])),
        "PutObject": lambda: s3("PUT", "/bkt/k2", body=b"x", headers={"x-amz-tagging": "a=3"}),
        "CreateMultipartUpload": lambda: s3("POST", "/bkt/k3", "uploads", headers={"x-amz-tagging": "a=3"}),
        "CopyObject": lambda: s3("PUT", "/bkt/k4", headers={"x-amz-copy-source": "/bkt/k"}),
    }
    for name, request in refused.items():
        r = request()
        assert (r.status, code(r.body)) == (503, "ServiceUnavailable"), name
        assert b"old-node" in r.body, name
    assert tag_set(s3, "/bkt/k") == [("a", "2")]
    assert s3("HEAD", "/bkt/k2").status == 404
    # untagged writes, reads and removals do not wait
    assert s3("PUT", "/bkt/k5", body=b"x").status == 200
    assert s3("DELETE", "/bkt/k", "tagging").status == 204
    assert s3("PUT", "/bkt/k4", headers={"x-amz-copy-source": "/bkt/k"}).status == 200  # the source has no tags now
    # a node silent for longer than the node timeout no longer holds tags back, if it left no writer tag to
    # sweep (it stopped cleanly, or was taken over); one that did may be paused and come back
    s3.api.ctx.node_timeout = 0.0
    run(meta.write(lambda tx: tx.claim_writer_tag("0a0b0c0d", "old-node")))
    r = s3("PUT", "/bkt/k", "tagging", body=tagging([("a", "4")]))
    assert (r.status, code(r.body)) == (503, "ServiceUnavailable")
    run(meta.write(lambda tx: (tx.retire_writer_tags(["0a0b0c0d"]), tx.tags_swept(["0a0b0c0d"]))))
    assert put_tags(s3, "/bkt/k", [("a", "4")]) == (200, "")
    assert tag_set(s3, "/bkt/k") == [("a", "4")]
