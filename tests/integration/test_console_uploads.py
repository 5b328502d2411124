"""The console's upload API without a browser (docs/operations.md 1.4): JSON endpoints under
/console/api/uploads that start, complete and abort uploads in process as the signed-in principal and hand
out presigned URLs that work with any HTTP client; refused like every state-changing console request without
the CSRF token or from another origin; a peer without write rights refused exactly as S3 refuses it."""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Coordinator, md5_etag, start_coordinator
from support.console import ConsoleClient, signed_in
from support.peers import add_peer, err

MiB = 1024 * 1024
API = "/api/uploads"


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("console-uploads"), workers=1)
    yield c
    c.stop()


@pytest.fixture
def admin_bucket(coord: Coordinator) -> str:
    name = f"up-{uuid.uuid4().hex[:12]}"
    coord.client().create_bucket(Bucket=name)
    return name


def call(console: ConsoleClient, path: str, doc: Any, token: str | None = None, **kw: Any) -> requests.Response:
    """A JSON POST as console.js sends it: the console's Origin and the session's token in X-CSRF-Token."""
    headers = {"X-CSRF-Token": console.csrf() if token is None else token, **kw.pop("headers", {})}
    return console.post(API + path, json=doc, headers=headers, **kw)


def put(console: ConsoleClient, url: str, body: bytes, **headers: str) -> requests.Response:
    assert url.startswith("/s3/")
    return requests.put(console.base + url, data=body, headers=headers, timeout=60)


def pending(coord: Coordinator, bucket: str) -> list[Any]:
    return coord.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_multipart_upload_through_the_urls(coord: Coordinator, admin_bucket: str) -> None:
    console = signed_in(coord.port, token=coord.token)
    data = os.urandom(40 * MiB + 123)
    r = call(console, "", {"bucket": admin_bucket, "key": "big/file.bin", "size": len(data), "type": "video/mp4"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert coord.token not in r.text  # the URLs are signed with the secret, never carry it
    plan = r.json()
    assert plan["part_size"] == 16 * MiB and plan["parts"] == 3 and sorted(plan["urls"]) == ["1", "2", "3"]
    assert [u["UploadId"] for u in pending(coord, admin_bucket)] == [plan["upload_id"]]
    # "more on request": a fresh batch from part 2 on, used for parts 2 and 3
    more = call(
        console,
        "/urls",
        {
            "bucket": admin_bucket,
            "key": "big/file.bin",
            "upload_id": plan["upload_id"],
            "first": 2,
            "parts": plan["parts"],
        },
    )
    assert more.status_code == 200 and sorted(more.json()["urls"]) == ["2", "3"], more.text
    urls = {**plan["urls"], **more.json()["urls"]}
    chunks = [data[i : i + plan["part_size"]] for i in range(0, len(data), plan["part_size"])]
    etags = []
    for n, chunk in enumerate(chunks, 1):
        r = put(console, urls[str(n)], chunk)
        assert r.status_code == 200, r.text
        etags.append(r.headers["etag"])
    parts = coord.client().list_parts(Bucket=admin_bucket, Key="big/file.bin", UploadId=plan["upload_id"])["Parts"]
    assert [p["Size"] for p in parts] == [len(c) for c in chunks]

    # a wrong ETag: S3's own InvalidPart, and the upload is still there to complete
    wrong = [{"part": 1, "etag": '"' + "0" * 32 + '"'}, {"part": 2, "etag": etags[1]}, {"part": 3, "etag": etags[2]}]
    r = call(
        console,
        "/complete",
        {"bucket": admin_bucket, "key": "big/file.bin", "upload_id": plan["upload_id"], "parts": wrong},
    )
    assert r.status_code == 400 and r.json()["error"] == "InvalidPart", r.text

    listed = [{"part": n, "etag": e} for n, e in enumerate(etags, 1)]
    r = call(
        console,
        "/complete",
        {"bucket": admin_bucket, "key": "big/file.bin", "upload_id": plan["upload_id"], "parts": listed},
    )
    assert r.status_code == 200, r.text
    assert r.json()["etag"] == md5_etag(chunks)
    got = coord.client().get_object(Bucket=admin_bucket, Key="big/file.bin")
    assert got["Body"].read() == data and got["ContentType"] == "video/mp4"
    assert pending(coord, admin_bucket) == []


def test_small_file_is_one_presigned_put(coord: Coordinator, admin_bucket: str) -> None:
    console = signed_in(coord.port, token=coord.token)
    data = os.urandom(16 * MiB - 1)
    r = call(console, "", {"bucket": admin_bucket, "key": "notes/ä b+c.txt", "size": len(data), "type": "text/plain"})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["upload_id"] is None and list(plan["urls"]) == ["1"]
    assert "X-Amz-Expires=3600" in plan["urls"]["1"]
    assert pending(coord, admin_bucket) == []  # nothing started on the server: nothing to clean up
    # the browser sends the file's own type, unsigned: only host is signed
    r = put(console, plan["urls"]["1"], data, **{"Content-Type": "text/plain"})
    assert r.status_code == 200, r.text
    got = coord.client().get_object(Bucket=admin_bucket, Key="notes/ä b+c.txt")
    assert got["Body"].read() == data and got["ContentType"] == "text/plain"


def test_part_size_grows_past_10000_parts(coord: Coordinator, admin_bucket: str) -> None:
    console = signed_in(coord.port, token=coord.token)
    size = 200 * 1024**3 + 7  # 200 GiB: 16 MiB parts would be 12,800 of them
    r = call(console, "", {"bucket": admin_bucket, "key": "huge", "size": size})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["part_size"] == max(16 * MiB, math.ceil(size / 10_000)) > 16 * MiB
    assert plan["parts"] == math.ceil(size / plan["part_size"]) <= 10_000
    assert sorted(plan["urls"], key=int) == [str(n) for n in range(1, 33)]  # the first 32, more on request
    r = call(console, "/abort", {"bucket": admin_bucket, "key": "huge", "upload_id": plan["upload_id"]})
    assert r.status_code == 200, r.text
    assert pending(coord, admin_bucket) == []


def test_abort_removes_the_upload_and_its_parts(coord: Coordinator, admin_bucket: str) -> None:
    console = signed_in(coord.port, token=coord.token)
    r = call(console, "", {"bucket": admin_bucket, "key": "gone", "size": 32 * MiB})
    plan = r.json()
    assert put(console, plan["urls"]["1"], os.urandom(16 * MiB)).status_code == 200
    assert len(pending(coord, admin_bucket)) == 1
    r = call(console, "/abort", {"bucket": admin_bucket, "key": "gone", "upload_id": plan["upload_id"]})
    assert r.status_code == 200, r.text
    assert pending(coord, admin_bucket) == []
    # a second abort (a cancel racing a failure) finds nothing left to clean: fine; a missing bucket is not
    r = call(console, "/abort", {"bucket": admin_bucket, "key": "gone", "upload_id": plan["upload_id"]})
    assert r.status_code == 200, r.text
    r = call(console, "/abort", {"bucket": "no-such-bucket-here", "key": "gone", "upload_id": plan["upload_id"]})
    assert (r.status_code, r.json()["error"]) == (404, "NoSuchBucket")
    # the URLs of the aborted upload now fail as S3 says
    r = put(console, plan["urls"]["2"], os.urandom(16 * MiB))
    assert r.status_code == 404 and b"NoSuchUpload" in r.content


def test_csrf_and_origin_refused_and_nothing_started(coord: Coordinator, admin_bucket: str) -> None:
    console = signed_in(coord.port, token=coord.token)
    token = console.csrf()
    doc = {"bucket": admin_bucket, "key": "k", "size": 20 * MiB}
    cases: list[tuple[str, dict[str, str], str | None]] = [
        ("no token", {}, ""),
        ("wrong token", {}, token[:-2] + "xx"),
        ("foreign Origin", {"Origin": "http://evil.example"}, token),
        ("the S3 listener's origin", {"Origin": f"http://127.0.0.1:{coord.s3_port}"}, token),
        ("Origin null", {"Origin": "null"}, token),
        ("Sec-Fetch-Site cross-site", {"Sec-Fetch-Site": "cross-site"}, token),
    ]
    for what, headers, sent in cases:
        for path in ("", "/complete", "/abort", "/urls"):
            r = call(console, path, doc, token=sent, headers=headers)
            assert r.status_code == 403, (what, path, r.status_code)
            assert "X-Amz-Signature" not in r.text, (what, path)
    r = console.post(API, json=doc, origin=None, headers={"X-CSRF-Token": token})
    assert r.status_code == 403
    assert pending(coord, admin_bucket) == []
    # the same request with the token from the console's origin is the one that starts an upload
    assert call(console, "", doc).status_code == 200
    assert len(pending(coord, admin_bucket)) == 1


def test_peer_without_write_rights_refused_as_s3_refuses_it(coord: Coordinator, admin_bucket: str) -> None:
    peer = add_peer(coord, f"reader-{uuid.uuid4().hex[:6]}")
    # a policy that names the peer for reading only: the mesh default (which lets any peer write) no longer
    # applies to it in this bucket
    read_only = {
        "Effect": "Allow",
        "Principal": {"AWS": peer.id},
        "Action": ["s3:GetObject", "s3:ListBucket"],
        "Resource": [f"arn:aws:s3:::{admin_bucket}", f"arn:aws:s3:::{admin_bucket}/*"],
    }
    coord.client().put_bucket_policy(Bucket=admin_bucket, Policy=json.dumps({"Statement": [read_only]}))
    console = signed_in(coord.port, token=peer.token)

    # multipart: the in-process CreateMultipartUpload is refused with S3's own status and code
    expected = err(lambda: peer.s3.create_multipart_upload(Bucket=admin_bucket, Key="k"))
    r = call(console, "", {"bucket": admin_bucket, "key": "k", "size": 20 * MiB})
    assert (r.status_code, r.json()["error"]) == expected == (403, "AccessDenied")
    # small: the URL is signed as the peer, so S3 refuses the PUT itself, as it refuses the peer's PutObject
    expected = err(lambda: peer.s3.put_object(Bucket=admin_bucket, Key="k", Body=b"x"))
    r = call(console, "", {"bucket": admin_bucket, "key": "k", "size": 1})
    assert r.status_code == 200
    refused = put(console, r.json()["urls"]["1"], b"x")
    assert (refused.status_code, _code(refused.content)) == expected
    # another principal's upload: neither aborted nor completed by this peer
    upload_id = coord.client().create_multipart_upload(Bucket=admin_bucket, Key="k")["UploadId"]
    expected = err(lambda: peer.s3.abort_multipart_upload(Bucket=admin_bucket, Key="k", UploadId=upload_id))
    r = call(console, "/abort", {"bucket": admin_bucket, "key": "k", "upload_id": upload_id})
    assert (r.status_code, r.json()["error"]) == expected
    r = call(
        console,
        "/complete",
        {"bucket": admin_bucket, "key": "k", "upload_id": upload_id, "parts": [{"part": 1, "etag": '"x"'}]},
    )
    assert (r.status_code, r.json()["error"]) == (403, "AccessDenied")
    assert [u["UploadId"] for u in pending(coord, admin_bucket)] == [upload_id]
    assert coord.client().list_objects_v2(Bucket=admin_bucket).get("KeyCount") == 0


def _code(body: bytes) -> str:
    text = body.decode()
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("", b"not json"),
        ("", b"[1, 2]"),
        ("", b'{"bucket": "b", "key": "k"}'),
        ("", b'{"bucket": "b", "key": "", "size": 1}'),
        ("", b'{"bucket": "../x", "key": "k", "size": 1}'),
        ("", b'{"bucket": "b", "key": "k", "size": -1}'),
        ("", b'{"bucket": "b", "key": "k", "size": true}'),
        ("/urls", b'{"bucket": "b", "key": "k", "upload_id": "u", "first": 0, "parts": 2}'),
        ("/complete", b'{"bucket": "b", "key": "k", "upload_id": "u", "parts": []}'),
        ("/complete", b'{"bucket": "b", "key": "k", "upload_id": "u", "parts": [{"part": "1", "etag": "e"}]}'),
        ("/complete", b'{"bucket": "b", "key": "k", "upload_id": "u", "parts": [7]}'),
        ("/abort", b'{"bucket": "b", "key": "k"}'),
    ],
)
def test_bad_input_is_a_clear_400(coord: Coordinator, path: str, body: bytes) -> None:
    console = signed_in(coord.port, token=coord.token)
    r = console.post(
        API + path, data=body, headers={"X-CSRF-Token": console.csrf(), "Content-Type": "application/json"}
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["error"] == "InvalidRequest" and r.json()["message"]
