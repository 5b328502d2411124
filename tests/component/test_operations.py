"""Every kind of S3 operation, in process, on each metadata backend (see conftest.py)."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

from tunnelmesh.store.content import INLINE_MAX

from .inprocess import InProcessS3

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def texts(body: bytes, path: str) -> list[str]:
    return [e.text or "" for e in ET.fromstring(body).iter(NS + path)]


def code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def test_buckets_are_made_listed_and_deleted_only_when_empty(s3: InProcessS3) -> None:
    assert s3("PUT", "/bk1").status == 200
    assert s3("PUT", "/bk2").status == 200
    assert texts(s3("GET", "/").body, "Name") == ["_tunnelmesh", "bk1", "bk2"]  # an admin sees the coordinator's own
    assert s3("HEAD", "/bk1").status == 200
    assert s3("PUT", "/bk1/k", body=b"x").status == 200
    r = s3("DELETE", "/bk1")
    assert (r.status, code(r.body)) == (409, "BucketNotEmpty")
    assert s3("DELETE", "/bk1/k").status == 204
    assert s3("DELETE", "/bk1").status == 204
    r = s3("GET", "/bk1", "list-type=2")
    assert (r.status, code(r.body)) == (404, "NoSuchBucket")


def test_objects_inline_and_in_blobs_read_back_whole_and_in_ranges(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    small, large = b"s" * 100, bytes(range(256)) * ((INLINE_MAX // 256) + 40)
    for key, data in (("small", small), ("large", large)):
        r = s3("PUT", f"/bkt/{key}", body=data, headers={"content-type": "text/plain", "x-amz-meta-who": key})
        assert (r.status, r.headers["etag"]) == (200, f'"{hashlib.md5(data).hexdigest()}"')
        got = s3("GET", f"/bkt/{key}")
        assert (got.status, got.body, got.headers["x-amz-meta-who"]) == (200, data, key)
        head = s3("HEAD", f"/bkt/{key}")
        assert (head.status, head.headers["content-length"]) == (200, str(len(data)))
        part = s3("GET", f"/bkt/{key}", headers={"range": "bytes=10-49"})
        assert (part.status, part.body) == (206, data[10:50])
    r = s3("GET", "/bkt/missing")
    assert (r.status, code(r.body)) == (404, "NoSuchKey")
    assert s3("DELETE", "/bkt/large").status == 204
    assert s3("GET", "/bkt/large").status == 404


def test_conditional_writes_are_decided_at_the_commit(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    assert s3("PUT", "/bkt/k", body=b"one", headers={"if-none-match": "*"}).status == 200
    r = s3("PUT", "/bkt/k", body=b"two", headers={"if-none-match": "*"})
    assert (r.status, code(r.body)) == (412, "PreconditionFailed")
    etag = s3("HEAD", "/bkt/k").headers["etag"]
    assert s3("PUT", "/bkt/k", body=b"three", headers={"if-match": etag}).status == 200
    assert s3("PUT", "/bkt/k", body=b"four", headers={"if-match": etag}).status == 412
    assert s3("GET", "/bkt/k").body == b"three"
    assert s3("GET", "/bkt/k", headers={"if-none-match": s3("HEAD", "/bkt/k").headers["etag"]}).status == 304


def test_listing_pages_prefixes_and_delimiters(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    keys = ["a/1", "a/2", "b", "c/x/1", "c/y", "é", "😀"]
    for k in keys:
        s3("PUT", f"/bkt/{k}", body=k.encode())
    r = s3("GET", "/bkt", "delimiter=%2F&list-type=2")
    assert texts(r.body, "Key") == ["b", "é", "😀"]
    assert texts(r.body, "Prefix")[1:] == ["a/", "c/"]  # the first is the request's own (empty) Prefix
    seen: list[str] = []
    token = ""
    for _ in range(len(keys)):
        q = "list-type=2&max-keys=2" + (f"&continuation-token={token}" if token else "")
        page = s3("GET", "/bkt", q)
        seen += texts(page.body, "Key")
        tokens = texts(page.body, "NextContinuationToken")
        if not tokens:
            break
        token = tokens[0].replace("=", "%3D").replace("+", "%2B").replace("/", "%2F")
    assert seen == keys
    r = s3("GET", "/bkt", "list-type=2&prefix=c%2F&delimiter=%2F")
    assert (texts(r.body, "Key"), texts(r.body, "Prefix")[1:]) == (["c/y"], ["c/x/"])


def test_multipart_upload_completes_lists_and_aborts(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    r = s3("POST", "/bkt/big", "uploads=")
    (upload_id,) = texts(r.body, "UploadId")
    one, two = b"1" * (5 << 20), b"2" * 1000
    etags = []
    for n, data in ((1, one), (2, two)):
        r = s3("PUT", "/bkt/big", f"partNumber={n}&uploadId={upload_id}", body=data)
        assert r.status == 200
        etags.append(r.headers["etag"])
    listed = s3("GET", "/bkt/big", f"uploadId={upload_id}")
    assert texts(listed.body, "PartNumber") == ["1", "2"]
    assert texts(s3("GET", "/bkt", "uploads=").body, "UploadId") == [upload_id]
    doc = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in enumerate(etags, 1))
    r = s3(
        "POST",
        "/bkt/big",
        f"uploadId={upload_id}",
        body=f"<CompleteMultipartUpload>{doc}</CompleteMultipartUpload>".encode(),
    )
    assert r.status == 200, r.body
    assert texts(r.body, "ETag")[0].endswith('-2"')
    assert s3("GET", "/bkt/big").body == one + two
    assert s3("GET", "/bkt/big", "partNumber=2").body == two
    # an aborted upload leaves nothing behind
    (other,) = texts(s3("POST", "/bkt/gone", "uploads=").body, "UploadId")
    s3("PUT", "/bkt/gone", f"partNumber=1&uploadId={other}", body=b"x" * 10)
    assert s3("DELETE", "/bkt/gone", f"uploadId={other}").status == 204
    assert texts(s3("GET", "/bkt", "uploads=").body, "UploadId") == []
    r = s3("GET", "/bkt/gone", f"uploadId={other}")
    assert (r.status, code(r.body)) == (404, "NoSuchUpload")


def test_copy_and_batch_delete(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/src", body=b"copied bytes", headers={"x-amz-meta-a": "1"})
    r = s3("PUT", "/bkt/dst", headers={"x-amz-copy-source": "/bkt/src"})
    assert r.status == 200, r.body
    got = s3("GET", "/bkt/dst")
    assert (got.body, got.headers["x-amz-meta-a"]) == (b"copied bytes", "1")
    doc = (
        b"<Delete>" + b"".join(b"<Object><Key>%s</Key></Object>" % k for k in (b"src", b"dst", b"none")) + b"</Delete>"
    )
    md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
    r = s3("POST", "/bkt", "delete=", body=doc, headers={"content-md5": md5})
    assert r.status == 200
    assert sorted(texts(r.body, "Key")) == ["dst", "none", "src"]
    assert texts(s3("GET", "/bkt", "list-type=2").body, "Key") == []


def test_a_quota_refuses_the_write_that_would_pass_it_and_keeps_the_old_object(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    s3.loop.run_until_complete(s3.store.set_quota("bkt", 1000))
    assert s3("PUT", "/bkt/k", body=b"a" * 600).status == 200
    r = s3("PUT", "/bkt/k2", body=b"b" * 600)
    assert (r.status, code(r.body)) == (403, "QuotaExceeded")
    assert s3("PUT", "/bkt/k", body=b"c" * 900).status == 200  # an overwrite counts only its growth
    bucket = s3.loop.run_until_complete(s3.store.bucket("bkt"))
    assert bucket is not None and (bucket.used, bucket.objects) == (900, 1)


def test_a_nul_in_a_key_or_a_key_parameter_is_answered_alike_on_every_engine(s3: InProcessS3) -> None:
    """No key can hold a NUL (XML 1.0 could not list it, PostgreSQL's text cannot store it): a write of
    one and a query parameter holding one are refused as bad input, a read of one finds nothing; the
    same on every engine, never a 500."""
    s3("PUT", "/bkt")
    s3("PUT", "/bkt/a", body=b"x")
    for method, path, query, headers, status, code_ in [
        ("PUT", "/bkt/a\x00b", "", {}, 400, "InvalidArgument"),
        ("POST", "/bkt/a\x00b", "uploads=", {}, 400, "InvalidArgument"),
        ("GET", "/bkt/a\x00b", "", {}, 404, "NoSuchKey"),
        ("HEAD", "/bkt/a\x00b", "", {}, 404, ""),
        ("DELETE", "/bkt/a\x00b", "", {}, 204, ""),
        ("PUT", "/bkt/c", "", {"x-amz-copy-source": "/bkt/a%00"}, 404, "NoSuchKey"),
        ("GET", "/bkt", "list-type=2&prefix=a%00", {}, 400, "InvalidArgument"),
        ("GET", "/bkt", "list-type=2&start-after=a%00", {}, 400, "InvalidArgument"),
        ("GET", "/bkt", "marker=a%00", {}, 400, "InvalidArgument"),
        ("GET", "/bkt", "uploads=&key-marker=%00", {}, 400, "InvalidArgument"),
        ("GET", "/bkt/a", "uploadId=x%00y", {}, 400, "InvalidArgument"),
    ]:
        body = b"x" if method == "PUT" and not headers else b""
        r = s3(method, path, query, body=body, headers=headers)
        assert r.status == status, (method, path, query, r.status, r.body)
        if code_:
            assert code(r.body) == code_, (method, path, query, r.body)
    assert s3("GET", "/bkt/a").body == b"x"
    assert texts(s3("GET", "/bkt", "list-type=2").body, "Key") == ["a"]
