"""Stale-upload expiry never kills an upload whose part is still streaming: the part restarts the
upload's clock while it streams, so a slow but legitimate part outlives s3.stale_upload_expiry
many times over, while an idle upload still expires."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import start_coordinator

EXPIRY = 3  # seconds
EXPIRED = r"expired (\d+) stale multipart uploads \((\d+) bytes\)"
FIRST_PART = 5 * 1024 * 1024  # the minimum size of a part that is not the last
SLOW_CHUNK = 1024
SLOW_CHUNKS = 8  # one a second: the part streams for about 8 s, well past the expiry
# the slow part is legitimate: a second between chunks is well inside body_timeout, and 1 KiB a
# second is min_body_rate
LIMITS = "limits:\n  body_timeout: 5\n  min_body_rate: 1KiB\n"


def _slow_part(port: int, token: str, bucket: str, key: str, upload_id: str, body: bytes) -> bytes:
    """Upload part 2 a chunk a second; the server's whole answer."""
    auth = base64.b64encode(f"admin:{token}".encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(
            f"PUT /s3/{bucket}/{key}?partNumber=2&uploadId={upload_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Basic {auth}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(0, len(body), SLOW_CHUNK):
            s.sendall(body[i : i + SLOW_CHUNK])
            time.sleep(1)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_part_streaming_slowly_keeps_its_upload_alive_and_an_idle_one_expires(tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, extra_yaml=f"  stale_upload_expiry: {EXPIRY}s\n{LIMITS}")
    try:
        s3 = c.client()
        name = f"x-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)
        idle = s3.create_multipart_upload(Bucket=name, Key="idle")["UploadId"]
        busy = s3.create_multipart_upload(Bucket=name, Key="busy")["UploadId"]
        first = os.urandom(FIRST_PART)
        e1 = s3.upload_part(Bucket=name, Key="busy", UploadId=busy, PartNumber=1, Body=first)["ETag"]
        second = os.urandom(SLOW_CHUNK * SLOW_CHUNKS)
        answer = _slow_part(c.port, c.token, name, "busy", busy, second)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:600]
        e2 = f'"{hashlib.md5(second).hexdigest()}"'
        assert e2.encode() in answer

        # the idle upload expired meanwhile (it has no parts, so no bytes were freed)
        m = c.wait_for_log(EXPIRED)
        assert (int(m.group(1)), int(m.group(2))) == (1, 0)
        with pytest.raises(ClientError) as e:
            s3.list_parts(Bucket=name, Key="idle", UploadId=idle)
        assert e.value.response["Error"]["Code"] == "NoSuchUpload"

        parts = [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]
        s3.complete_multipart_upload(Bucket=name, Key="busy", UploadId=busy, MultipartUpload={"Parts": parts})
        assert s3.get_object(Bucket=name, Key="busy")["Body"].read() == first + second
    finally:
        c.stop()
