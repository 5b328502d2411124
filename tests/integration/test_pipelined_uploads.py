"""Large bodies, hashed and written on threads batch by batch (tunnelmesh/lanes.py), still verified before
anything is stored: a wrong SHA-256, Content-MD5 or x-amz-checksum stores nothing and leaves no temporary,
and a right one stores exactly the body under its MD5 ETag. The sizes span several 1 MiB batches with a
short last one, so every lane hands pieces to its thread."""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests
from awscrt import checksums as crt
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SIZE = 5 * 1024 * 1024 + 3
WRONG = hashlib.sha256(b"not the body").hexdigest()


class _FixedPayload(S3SigV4Auth):
    def __init__(self, secret: str, payload_hash: str) -> None:
        super().__init__(Credentials("admin", secret), "s3", "us-east-1")
        self._payload_hash = payload_hash

    def payload(self, request: AWSRequest) -> str:
        return self._payload_hash


def _signed_put(url: str, secret: str, body: bytes, payload_hash: str, **headers: str) -> requests.Response:
    req = AWSRequest(method="PUT", url=url, data=b"", headers=dict(headers))
    _FixedPayload(secret, payload_hash).add_auth(req)
    return requests.put(url, data=body, headers=dict(req.headers.items()), timeout=120)


def _error_code(resp: requests.Response) -> str:
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    return ET.fromstring(resp.content).findtext("Code") or ""


def _tmp_files(data_dir: Path, deadline_s: float = 30.0) -> list[str]:
    """The temporaries left once the server had a while to finish (a lane's thread may still be closing)."""
    end = time.monotonic() + deadline_s
    while True:
        left = sorted(p.name for p in (data_dir / "tmp").rglob("*") if p.is_file())
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


@pytest.fixture(scope="module")
def body() -> bytes:
    return os.urandom(SIZE)


def _url(coordinator, bucket: str) -> str:
    return f"{coordinator.endpoint}/{bucket}/big-{uuid.uuid4().hex[:10]}"


def _absent(coordinator, url: str) -> bool:
    return requests.head(url, auth=("admin", coordinator.token), timeout=30).status_code == 404


def test_a_signed_large_put_is_stored_whole_under_its_md5(coordinator, bucket, body: bytes) -> None:
    url = _url(coordinator, bucket)
    crc = base64.b64encode(crt.crc32c(body).to_bytes(4, "big")).decode()
    resp = _signed_put(url, coordinator.token, body, hashlib.sha256(body).hexdigest(), **{"x-amz-checksum-crc32c": crc})
    assert resp.status_code == 200, resp.text
    assert resp.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert resp.headers["x-amz-checksum-crc32c"] == crc
    got = requests.get(url, auth=("admin", coordinator.token), timeout=60)
    assert got.content == body


@pytest.mark.parametrize("wrong", ["sha256", "content-md5", "checksum"])
def test_a_large_put_that_fails_verification_stores_nothing(coordinator, bucket, body: bytes, wrong: str) -> None:
    url = _url(coordinator, bucket)
    sha = WRONG if wrong == "sha256" else hashlib.sha256(body).hexdigest()
    headers: dict[str, str] = {}
    if wrong == "content-md5":
        headers["content-md5"] = base64.b64encode(hashlib.md5(body[:-1]).digest()).decode()
    if wrong == "checksum":
        headers["x-amz-checksum-crc32c"] = base64.b64encode(crt.crc32c(body[1:]).to_bytes(4, "big")).decode()
    resp = _signed_put(url, coordinator.token, body, sha, **headers)
    expected = "XAmzContentSHA256Mismatch" if wrong == "sha256" else "BadDigest"
    assert _error_code(resp) == expected, resp.text
    assert _absent(coordinator, url)
    assert _tmp_files(coordinator.data_dir) == []


def test_a_large_part_that_fails_verification_is_not_listed(coordinator, s3, bucket, body: bytes) -> None:
    key = f"mp-{uuid.uuid4().hex[:10]}"
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    base = f"{coordinator.endpoint}/{bucket}/{key}"
    bad = _signed_put(f"{base}?partNumber=1&uploadId={up}", coordinator.token, body, WRONG)
    assert _error_code(bad) == "XAmzContentSHA256Mismatch"
    assert s3.list_parts(Bucket=bucket, Key=key, UploadId=up).get("Parts", []) == []
    good = _signed_put(f"{base}?partNumber=1&uploadId={up}", coordinator.token, body, hashlib.sha256(body).hexdigest())
    assert good.status_code == 200, good.text
    assert good.headers["etag"] == f'"{hashlib.md5(body).hexdigest()}"'
    parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, SIZE)]
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up)
    assert _tmp_files(coordinator.data_dir) == []
