"""Hostile input, (d): header floods, absurd lengths, stalls and truncated aws-chunked bodies.

The property: floods, absurd lengths, stalls and truncated aws-chunked bodies fail cleanly and the
server keeps serving everyone else. The shared harness and the error-document check (e) are in
helpers.py.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import socket
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import example, given, settings
from hypothesis import strategies as st

from .helpers import (
    CASES,
    EMPTY_SHA256,
    HYPOTHESIS,
    assert_no_process_died,
    assert_serving,
    basic,
    check_reply,
    error_code,
    exchange,
    http_request,
    new_bucket,
    object_exists,
)

# --- (d) floods, absurd lengths, stalls, truncated aws-chunked bodies ------------------------------------


def wait_for_empty_tmp(data_dir: Path, deadline_s: float = 30.0) -> list[str]:
    """Names left in <data_dir>/tmp once the server had a while to clean up (eventual, not timed)."""
    end = time.monotonic() + deadline_s
    while True:
        left = sorted(p.name for p in (data_dir / "tmp").rglob("*") if p.is_file())  # per process: tmp/<pid>/
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.1)


@pytest.fixture(scope="module")
def edge_bucket(s3) -> str:
    return new_bucket(s3, "edge")


@pytest.mark.parametrize("n", [100, 500, 5000])
def test_d_a_flood_of_headers_is_refused_cleanly_and_the_server_keeps_serving(
    coordinator, s3, edge_bucket: str, processes: set[int], n: int
) -> None:
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token)] + [(f"x-flood-{i}", b"v" * 20) for i in range(n)]
    reply = exchange(coordinator.port, http_request("PUT", f"/s3/{edge_bucket}/flooded".encode(), hdrs, b"x"))
    CASES["header flood"] += 1
    check_reply(reply, coordinator.token, http_layer_ok=True, close_ok=True)
    assert reply.status in (None, 200) or 400 <= reply.status < 500
    assert object_exists(s3, edge_bucket, "flooded") == (reply.status == 200)
    assert_serving(s3, edge_bucket)
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize(
    ("name", "size", "meta"),
    [("x-junk", 64 * 1024, False), ("x-amz-meta-big", 64 * 1024, True), ("x-junk", 1024 * 1024, False)],
)
def test_d_a_huge_header_value_is_refused_or_ignored_cleanly(
    coordinator, s3, edge_bucket: str, processes: set[int], name: str, size: int, meta: bool
) -> None:
    key = f"big-header-{name}-{size}"
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token), (name, b"h" * size)]
    reply = exchange(coordinator.port, http_request("PUT", f"/s3/{edge_bucket}/{key}".encode(), hdrs, b"body"))
    CASES["huge header"] += 1
    check_reply(reply, coordinator.token, http_layer_ok=True, close_ok=True)
    if meta:
        # either the head is over limits.max_header_size (431 from the HTTP layer) or, under it,
        # the metadata is over S3's 2 KB (MetadataTooLarge)
        assert reply.status == 431 or (reply.status == 400 and error_code(reply) == "MetadataTooLarge"), reply.raw[:500]
    assert reply.status in (None, 200) or 400 <= reply.status < 500
    if reply.status == 200:
        assert s3.get_object(Bucket=edge_bucket, Key=key)["Body"].read() == b"body"
    else:
        assert not object_exists(s3, edge_bucket, key)
    assert_serving(s3, edge_bucket)
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize("declared", [10**15, 10**12, 6 * 1024**4, 2**63 - 1])
@pytest.mark.parametrize("op", ["PutObject", "UploadPart"])
def test_d_an_enormous_declared_content_length_with_a_tiny_body_is_refused_before_reading(
    coordinator, s3, edge_bucket: str, processes: set[int], declared: int, op: str
) -> None:
    key = f"enormous-{op}-{declared}"
    target = f"/s3/{edge_bucket}/{key}"
    if op == "UploadPart":
        up = s3.create_multipart_upload(Bucket=edge_bucket, Key=key)["UploadId"]
        target += f"?partNumber=1&uploadId={quote(up, safe='')}"
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token)]
    reply = exchange(coordinator.port, http_request("PUT", target.encode(), hdrs, b"tiny", length=declared), timeout=20)
    CASES["enormous content-length"] += 1
    check_reply(reply, coordinator.token)
    assert reply.status is not None and 400 <= reply.status < 500, reply.raw[:500]
    assert error_code(reply) in ("EntityTooLarge", "QuotaExceeded"), reply.body
    assert not object_exists(s3, edge_bucket, key)
    if op == "UploadPart":
        assert s3.list_parts(Bucket=edge_bucket, Key=key, UploadId=up).get("Parts", []) == []
        s3.abort_multipart_upload(Bucket=edge_bucket, Key=key, UploadId=up)
    assert_serving(s3, edge_bucket)
    assert_no_process_died(coordinator, processes)


def test_d_stalled_bodies_and_headers_do_not_block_other_clients_and_leave_nothing_behind(
    coordinator, s3, edge_bucket: str, processes: set[int]
) -> None:
    auth = basic(coordinator.token)
    stalled: list[socket.socket] = []
    keys = [f"stalled-{i}" for i in range(6)]
    try:
        for i, key in enumerate(keys):
            s = socket.create_connection(("127.0.0.1", coordinator.port), timeout=10)
            stalled.append(s)
            if i % 3 == 2:
                # stall inside the header block (slowloris)
                s.sendall(f"PUT /s3/{edge_bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
            else:
                head = http_request(
                    "PUT",
                    f"/s3/{edge_bucket}/{key}".encode(),
                    [("Host", b"127.0.0.1"), auth],
                    b"",
                    length=2 * 1024 * 1024,
                )
                s.sendall(head + b"p" * (100_000 if i % 3 == 0 else 10))
        CASES["stalled connections"] += len(stalled)
        # while all of them hang, everyone else is served, repeatedly, on both listeners
        for endpoint in (coordinator.endpoint, coordinator.root_endpoint):
            other = coordinator.client(endpoint=endpoint)
            for _ in range(3):
                assert_serving(other, edge_bucket)
    finally:
        for s in stalled:
            s.close()
    assert_serving(s3, edge_bucket)
    for key in keys:
        assert not object_exists(s3, edge_bucket, key)
    assert wait_for_empty_tmp(coordinator.data_dir) == []
    assert_no_process_died(coordinator, processes)


class StreamingAuth(S3SigV4Auth):
    def payload(self, request) -> str:
        return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def signed_stream(coordinator, bucket: str, key: str, data: bytes, chunk: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """Headers and the aws-chunked body of a SigV4 streaming upload, every chunk signed."""
    url = f"{coordinator.endpoint}/{bucket}/{key}"
    req = AWSRequest(
        method="PUT",
        url=url,
        data=b"",
        headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))},
    )
    StreamingAuth(Credentials("admin", coordinator.token), "s3", "us-east-1").add_auth(req)
    seed = re.search(r"Signature=([0-9a-f]{64})", req.headers["Authorization"]).group(1)
    amz_date = req.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    k = hmac.digest(("AWS4" + coordinator.token).encode(), amz_date[:8].encode(), "sha256")
    for part in ("us-east-1", "s3", "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    body, prev = b"", seed
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256, hashlib.sha256(piece).hexdigest()]
        )
        prev = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        body += f"{len(piece):x};chunk-signature={prev}\r\n".encode() + piece + b"\r\n"
    hdrs = [("Host", urlsplit(url).netloc.encode())] + [(n, v.encode()) for n, v in req.headers.items()]
    return hdrs, body


def test_d_truncated_aws_chunked_streams_fail_cleanly_and_store_nothing(
    coordinator, s3, edge_bucket: str, processes: set[int]
) -> None:
    data = bytes(range(256)) * 96  # 24 KiB
    chunk = 8 * 1024

    # control: the whole stream is accepted and stores exactly the data
    hdrs, body = signed_stream(coordinator, edge_bucket, "chunked-control", data, chunk)
    ok = exchange(coordinator.port, http_request("PUT", f"/s3/{edge_bucket}/chunked-control".encode(), hdrs, body))
    check_reply(ok, coordinator.token)
    assert ok.status == 200, ok.raw[:800]
    assert s3.get_object(Bucket=edge_bucket, Key="chunked-control")["Body"].read() == data
    full = len(body)
    header_len = body.index(b"\r\n") + 2
    boundaries = [
        0,
        1,
        header_len - 1,
        header_len,
        header_len + chunk,
        header_len + chunk + 2,
        full - 90,
        full - 3,
        full - 2,
        full - 1,
    ]

    def attempt(cut: int, half_close: bool) -> None:
        key = f"chunked-cut-{cut}-{half_close}"
        hdrs, body = signed_stream(coordinator, edge_bucket, key, data, chunk)
        assert len(body) == full
        sent = body[:cut]
        # either the HTTP body is complete but the framing inside it is cut short, or the client
        # promises the whole body, sends part of it and closes its side
        raw = http_request("PUT", f"/s3/{edge_bucket}/{key}".encode(), hdrs, sent, length=full if half_close else cut)
        reply = exchange(coordinator.port, raw, half_close=half_close)
        CASES["truncated aws-chunked"] += 1
        check_reply(reply, coordinator.token, close_ok=half_close)
        if cut == full - 2:
            # only the blank line after the final, signed zero-length chunk is missing: all data and
            # every signature arrived, so accepting it is allowed
            assert reply.status in (None, 200) or 400 <= reply.status < 500
        else:
            assert reply.status is None or 400 <= reply.status < 500, (cut, reply.raw[:500])
        stored = object_exists(s3, edge_bucket, key)
        if stored:
            assert cut == full - 2 and s3.get_object(Bucket=edge_bucket, Key=key)["Body"].read() == data
            s3.delete_object(Bucket=edge_bucket, Key=key)

    run = given(cut=st.integers(0, full - 1), half_close=st.booleans())(attempt)
    for b in boundaries:  # framing edges are always tried
        run = example(cut=b, half_close=False)(run)
        run = example(cut=b, half_close=True)(run)
    settings(HYPOTHESIS, max_examples=40)(run)()
    assert_serving(s3, edge_bucket)
    assert wait_for_empty_tmp(coordinator.data_dir) == []
    assert_no_process_died(coordinator, processes)
