"""presign_v4 makes the URL botocore makes, and the coordinator's own verifier accepts it."""

from __future__ import annotations

import time
from urllib.parse import parse_qs

import botocore.session
import pytest
from botocore.config import Config

from tunnelmesh.s3.auth import sigv4
from tunnelmesh.s3.auth.presign import encode_path, presign_v4
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request, parse_query

HOST = "127.0.0.1:9000"


def botocore_url(method: str, key: str, params: dict[str, str], expires: int) -> tuple[str, float]:
    """botocore's URL, and the time it signed it at (its X-Amz-Date): ours is made for the same instant."""
    session = botocore.session.get_session()
    client = session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=f"http://{HOST}",
        aws_access_key_id="peer-a",
        aws_secret_access_key="s3cr3t",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    op = {"GET": "get_object", "PUT": "put_object"}[method]
    url = client.generate_presigned_url(op, Params={"Bucket": "b", "Key": key, **params}, ExpiresIn=expires)
    return url, sigv4.parse_amz_date(parse_qs(url.partition("?")[2])["X-Amz-Date"][0])


def split(url: str) -> tuple[str, list[str]]:
    path, _, query = url.partition("?")
    return path.removeprefix(f"http://{HOST}"), sorted(query.split("&"))


@pytest.mark.parametrize("key", ["plain.txt", "dir/sub/file name+é&=.bin", "~tilde/(x)!'*"])
def test_same_url_as_botocore(key: str) -> None:
    path = encode_path(f"/b/{key}")
    theirs, now = botocore_url("GET", key, {}, 900)
    ours = presign_v4("GET", HOST, path, [], "peer-a", "s3cr3t", "us-east-1", 900, now=now)
    assert split(f"http://{HOST}{path}?{ours}") == split(theirs)


def test_same_url_as_botocore_with_a_response_override() -> None:
    path = encode_path("/b/k")
    q = [("response-content-disposition", 'attachment; filename="k"')]
    theirs, now = botocore_url("GET", "k", {"ResponseContentDisposition": 'attachment; filename="k"'}, 3600)
    ours = presign_v4("GET", HOST, path, q, "peer-a", "s3cr3t", "us-east-1", 3600, now=now)
    assert split(f"http://{HOST}{path}?{ours}") == split(theirs)


def verify_with_coordinator_code(method: str, path: str, query: str, secret: str) -> None:
    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    req = Request(method=method, raw_path=path, raw_query=query, headers={"host": HOST}, receive=receive, prefix="")
    req.query_items = parse_query(query)
    req.query = {n: v for n, v, _, _ in req.query_items}
    sr = sigv4.presigned_request(req)
    sigv4.verify(req, sr, secret, "UNSIGNED-PAYLOAD")


def test_the_coordinator_verifies_it() -> None:
    path = encode_path("/b/a key/ü")
    query = presign_v4(
        "PUT", HOST, path, [("partNumber", "2"), ("uploadId", "u/1")], "peer-a", "s3cr3t", "us-east-1", 600
    )
    verify_with_coordinator_code("PUT", path, query, "s3cr3t")
    with pytest.raises(S3Error) as e:
        verify_with_coordinator_code("PUT", path, query, "other")
    assert e.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error) as e:
        verify_with_coordinator_code("GET", path, query, "s3cr3t")
    assert e.value.code == "SignatureDoesNotMatch"


def test_expired_and_out_of_range() -> None:
    path = encode_path("/b/k")
    old = presign_v4("GET", HOST, path, [], "peer-a", "s3cr3t", "us-east-1", 60, now=time.time() - 3600)
    with pytest.raises(S3Error) as e:
        verify_with_coordinator_code("GET", path, old, "s3cr3t")
    assert e.value.message == "Request has expired"
    for bad in (0, sigv4.MAX_PRESIGNED_SECONDS + 1):
        with pytest.raises(ValueError):
            presign_v4("GET", HOST, path, [], "peer-a", "s3cr3t", "us-east-1", bad)
