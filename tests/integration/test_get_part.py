"""GET and HEAD ?partNumber=N: one part of a multipart object, as a ranged read, against a real coordinator."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import uuid
import zlib
from dataclasses import dataclass
from urllib.parse import quote
from xml.etree import ElementTree

import pytest
from botocore.exceptions import ClientError
from conftest import Coordinator

MIB = 1024 * 1024


@dataclass
class Multipart:
    bucket: str
    key: str
    etag: str
    parts: list[bytes]

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.parts)

    def span(self, number: int) -> tuple[int, int]:
        first = sum(len(p) for p in self.parts[: number - 1])
        return first, first + len(self.parts[number - 1]) - 1


@pytest.fixture(scope="module")
def multipart(s3) -> Multipart:
    """Three parts of different sizes, the last one short, each with bytes of its own."""
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    key = "dir/multi part"
    parts = [os.urandom(5 * MIB + 1), os.urandom(5 * MIB + 77), os.urandom(1000)]
    up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    done = [
        {"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=p)["ETag"]}
        for n, p in enumerate(parts, 1)
    ]
    etag = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": done})["ETag"]
    return Multipart(bucket, key, etag, parts)


def raw(c: Coordinator, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """A request with a query boto3 would not send (partNumber=abc); the response is read in full."""
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
    token = base64.b64encode(f"admin:{c.token}".encode()).decode()
    conn.request(method, f"/s3/{path}", headers={"Authorization": f"Basic {token}", **(headers or {})})
    r = conn.getresponse()
    r.body = r.read()  # type: ignore[attr-defined]
    conn.close()
    return r


def error_of(r: http.client.HTTPResponse) -> dict[str, str]:
    return {e.tag: e.text or "" for e in ElementTree.fromstring(r.body)}  # type: ignore[attr-defined]


def status(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    return exc.value.response["ResponseMetadata"]["HTTPStatusCode"], exc.value.response["Error"]["Code"]


def test_each_part_of_a_multipart_object_is_served_as_a_ranged_206(s3, multipart) -> None:
    m = multipart
    for n, data in enumerate(m.parts, 1):
        first, last = m.span(n)
        got = s3.get_object(Bucket=m.bucket, Key=m.key, PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["Body"].read() == data
        assert got["ContentLength"] == len(data)
        assert got["ContentRange"] == f"bytes {first}-{last}/{m.size}"
        assert got["PartsCount"] == 3
        assert got["ETag"] == m.etag  # the whole object's, not the part's
        head = s3.head_object(Bucket=m.bucket, Key=m.key, PartNumber=n)
        assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert head["ContentLength"] == len(data)
        assert head["ResponseMetadata"]["HTTPHeaders"]["content-range"] == f"bytes {first}-{last}/{m.size}"
        assert head["PartsCount"] == 3
        assert head["ETag"] == m.etag


def test_a_plain_get_of_a_multipart_object_has_no_parts_count(s3, multipart) -> None:
    got = s3.get_object(Bucket=multipart.bucket, Key=multipart.key)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "PartsCount" not in got and "ContentRange" not in got
    assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(b"".join(multipart.parts)).digest()


def test_a_part_number_past_the_last_part_is_416_invalid_part_number(coordinator, multipart) -> None:
    m = multipart
    r = raw(coordinator, "GET", f"{m.bucket}/{quote(m.key)}?partNumber=4")
    assert r.status == 416
    err = error_of(r)
    assert err["Code"] == "InvalidPartNumber"
    assert err["Message"] == "The requested partnumber is not satisfiable"
    assert (err["PartNumberRequested"], err["ActualPartCount"]) == ("4", "3")
    assert raw(coordinator, "HEAD", f"{m.bucket}/{quote(m.key)}?partNumber=10000").status == 416


@pytest.mark.parametrize(
    "value", ["0", "10001", "-1", "abc", "", "1.5", " 1", "٣", pytest.param("9" * 5000, id="5000-digits")]
)
def test_a_part_number_not_in_1_to_10000_is_400_invalid_argument(coordinator, multipart, value) -> None:
    m = multipart
    r = raw(coordinator, "GET", f"{m.bucket}/{quote(m.key)}?partNumber={quote(value)}")
    assert r.status == 400
    err = error_of(r)
    assert (err["Code"], err["ArgumentName"], err["ArgumentValue"]) == ("InvalidArgument", "partNumber", value)
    assert raw(coordinator, "HEAD", f"{m.bucket}/{quote(m.key)}?partNumber={quote(value)}").status == 400


def test_range_with_part_number_is_400_invalid_request(s3, multipart) -> None:
    m = multipart
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=m.bucket, Key=m.key, PartNumber=1, Range="bytes=0-9")
    assert status(e) == (400, "InvalidRequest")
    assert e.value.response["Error"]["Message"] == "Cannot specify both Range header and partNumber query parameter"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=m.bucket, Key=m.key, PartNumber=1, Range="bytes=0-9")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_conditionals_apply_to_a_part_read_as_to_a_plain_get(s3, multipart) -> None:
    m = multipart
    got = s3.get_object(Bucket=m.bucket, Key=m.key, PartNumber=3, IfMatch=m.etag)
    assert got["Body"].read() == m.parts[2]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=m.bucket, Key=m.key, PartNumber=3, IfMatch='"0123"')
    assert status(e) == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=m.bucket, Key=m.key, PartNumber=3, IfNoneMatch=m.etag)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


@pytest.mark.parametrize("size", [4, 40 * 1024], ids=["inline", "blob"])
def test_an_object_not_uploaded_in_parts_is_one_part(s3, bucket, size) -> None:
    body = os.urandom(size)
    etag = s3.put_object(Bucket=bucket, Key="single", Body=body)["ETag"]
    got = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == body
    assert got["ContentRange"] == f"bytes 0-{size - 1}/{size}"
    assert got["ContentLength"] == size and got["ETag"] == etag
    assert "PartsCount" not in got  # only objects uploaded in parts have a count
    head = s3.head_object(Bucket=bucket, Key="single", PartNumber=1)
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206 and head["ContentLength"] == size
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert status(e) == (416, "InvalidPartNumber")
    assert e.value.response["Error"]["ActualPartCount"] == "1"


def test_a_one_part_multipart_object_has_a_parts_count_of_one(s3, bucket) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="one")["UploadId"]
    with pytest.raises(ClientError) as e:  # not an object until completed
        s3.get_object(Bucket=bucket, Key="one", PartNumber=1)
    assert status(e) == (404, "NoSuchKey")
    tag = s3.upload_part(Bucket=bucket, Key="one", UploadId=up, PartNumber=1, Body=b"only")["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket, Key="one", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": tag}]}
    )
    got = s3.get_object(Bucket=bucket, Key="one", PartNumber=1)
    assert got["Body"].read() == b"only" and got["PartsCount"] == 1 and got["ContentRange"] == "bytes 0-3/4"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="one", PartNumber=2)
    assert status(e) == (416, "InvalidPartNumber")


def test_parts_made_by_upload_part_copy_are_the_parts_served(s3, bucket) -> None:
    big, small = os.urandom(6 * MIB), os.urandom(300)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    s3.put_object(Bucket=bucket, Key="small", Body=small)
    up = s3.create_multipart_upload(Bucket=bucket, Key="copied")["UploadId"]
    sources = [
        ({"Bucket": bucket, "Key": "big"}, f"bytes=7-{5 * MIB + 6}"),
        ({"Bucket": bucket, "Key": "big"}, f"bytes={MIB}-{6 * MIB - 1}"),
        ({"Bucket": bucket, "Key": "small"}, None),
    ]
    done = []
    for n, (src, rng) in enumerate(sources, 1):
        extra = {"CopySourceRange": rng} if rng else {}
        res = s3.upload_part_copy(Bucket=bucket, Key="copied", UploadId=up, PartNumber=n, CopySource=src, **extra)
        done.append({"PartNumber": n, "ETag": res["CopyPartResult"]["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="copied", UploadId=up, MultipartUpload={"Parts": done})
    expected = [big[7 : 5 * MIB + 7], big[MIB : 6 * MIB], small]
    offset = 0
    for n, data in enumerate(expected, 1):
        got = s3.get_object(Bucket=bucket, Key="copied", PartNumber=n)
        assert got["Body"].read() == data
        assert got["ContentRange"] == f"bytes {offset}-{offset + len(data) - 1}/{sum(map(len, expected))}"
        assert got["PartsCount"] == 3
        offset += len(data)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_a_part_of_a_composite_object_is_read_with_its_own_checksum(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), b"tail"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="summed", ChecksumAlgorithm="CRC32")["UploadId"]
    parts = []
    for n, body in enumerate(chunks, 1):
        res = s3.upload_part(
            Bucket=bucket, Key="summed", UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32"
        )
        parts.append({"PartNumber": n, "ETag": res["ETag"], "ChecksumCRC32": res["ChecksumCRC32"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="summed", UploadId=up, MultipartUpload={"Parts": parts})
    assert s3.head_object(Bucket=bucket, Key="summed", ChecksumMode="ENABLED")["ChecksumCRC32"].endswith("-2")
    for n, body in enumerate(chunks, 1):
        head = s3.head_object(Bucket=bucket, Key="summed", PartNumber=n, ChecksumMode="ENABLED")
        assert head["ContentLength"] == len(body) and head["PartsCount"] == 2
        assert (head["ChecksumCRC32"], head["ChecksumType"]) == (crc32_b64(body), "COMPOSITE")
        got = s3.get_object(Bucket=bucket, Key="summed", PartNumber=n, ChecksumMode="ENABLED")
        assert (got["ChecksumCRC32"], got["ChecksumType"]) == (crc32_b64(body), "COMPOSITE")
        assert got["Body"].read() == body  # botocore checks the body against that header too
    # without checksum mode, none
    assert "ChecksumCRC32" not in s3.head_object(Bucket=bucket, Key="summed", PartNumber=1)


def test_a_part_of_a_full_object_object_has_a_checksum_only_when_it_is_the_whole_object(s3, bucket) -> None:
    # S3's answer: a FULL_OBJECT checksum covers the object, and no part has a value of it
    for key, chunks in (("two", [os.urandom(5 * MIB), b"tail"]), ("one", [b"only part"])):
        up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")[
            "UploadId"
        ]
        parts = []
        for n, body in enumerate(chunks, 1):
            res = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32"
            )
            parts.append({"PartNumber": n, "ETag": res["ETag"]})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})
    head = s3.head_object(Bucket=bucket, Key="two", PartNumber=2, ChecksumMode="ENABLED")
    assert head["PartsCount"] == 2 and "ChecksumCRC32" not in head and "ChecksumType" not in head
    head = s3.head_object(Bucket=bucket, Key="one", PartNumber=1, ChecksumMode="ENABLED")
    assert head["PartsCount"] == 1
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (crc32_b64(b"only part"), "FULL_OBJECT")


def test_an_empty_part_is_an_empty_200_not_an_error(s3, bucket) -> None:
    # an empty byte range has no Content-Range to name, so the answer is a plain, empty 200
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty", PartNumber=1)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == b"" and got["ContentLength"] == 0 and "ContentRange" not in got
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="CRC32")["UploadId"]
    parts = []
    for n, body in enumerate([os.urandom(5 * MIB), b""], 1):
        res = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": res["ETag"], "ChecksumCRC32": res["ChecksumCRC32"]})
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=2)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == b"" and got["ContentLength"] == 0 and got["PartsCount"] == 2
    assert s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")["ChecksumCRC32"].endswith("-2")
    empty_part = s3.head_object(Bucket=bucket, Key="mp", PartNumber=2, ChecksumMode="ENABLED")
    assert empty_part["ChecksumCRC32"] == crc32_b64(b"")
