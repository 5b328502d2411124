"""GetObjectAttributes (GET ?attributes) against a real coordinator, with boto3 and raw HTTP.

What S3 answers: only the attributes named in x-amz-object-attributes; the ETag unquoted; a COMPOSITE
checksum without its "-N"; ObjectParts as PartsCount, plus a page of parts with their checksums only
for a COMPOSITE multipart object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from xml.etree import ElementTree

import pytest
import requests
from botocore.exceptions import ClientError

MIB = 1024 * 1024
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def error(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def multipart(s3, bucket: str, key: str, chunks: list[bytes], algorithm: str | None = None, ctype: str | None = None):
    """Upload `chunks` as parts (with the algorithm's checksum, listed in the Complete) and complete."""
    extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    if ctype:
        extra["ChecksumType"] = ctype
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    parts = []
    for n, chunk in enumerate(chunks, 1):
        kw = {"ChecksumAlgorithm": algorithm} if algorithm else {}
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=n, Body=chunk, **kw)
        part = {"PartNumber": n, "ETag": r["ETag"]}
        if algorithm:
            part[f"Checksum{algorithm}"] = r[f"Checksum{algorithm}"]
        parts.append(part)
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up, MultipartUpload={"Parts": parts})


def attrs(s3, bucket: str, key: str, wanted: list[str] | None = None, **kw: object) -> dict:
    return s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=wanted or ALL, **kw)


def raw_get(coordinator, path: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{coordinator.endpoint}/{path}", headers=headers, auth=("admin", coordinator.token))


def test_a_single_put_object_has_its_etag_checksum_size_and_no_parts(s3, bucket) -> None:
    body = os.urandom(1000)
    put = s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumAlgorithm="SHA256")
    got = attrs(s3, bucket, "one")
    assert got["ETag"] == put["ETag"].strip('"') == hashlib.md5(body).hexdigest()
    assert got["Checksum"] == {"ChecksumSHA256": sha256_b64(body), "ChecksumType": "FULL_OBJECT"}
    assert got["StorageClass"] == "STANDARD"
    assert got["ObjectSize"] == 1000
    assert "ObjectParts" not in got
    head = s3.head_object(Bucket=bucket, Key="one")
    assert got["LastModified"] == head["LastModified"]


def test_only_the_requested_attributes_come_back(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"abc")
    got = attrs(s3, bucket, "k", ["ObjectSize"])
    assert got["ObjectSize"] == 3
    assert not {"ETag", "Checksum", "StorageClass", "ObjectParts"} & got.keys()
    got = attrs(s3, bucket, "k", ["ETag", "StorageClass"])
    assert got["ETag"] == hashlib.md5(b"abc").hexdigest() and got["StorageClass"] == "STANDARD"
    assert not {"ObjectSize", "Checksum"} & got.keys()


def test_a_composite_multipart_object_lists_its_parts_with_their_checksums(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB + 3), os.urandom(777)]
    done = multipart(s3, bucket, "mp", chunks, "SHA256")
    assert done["ChecksumSHA256"].endswith("-3")
    got = attrs(s3, bucket, "mp")
    assert got["ETag"] == done["ETag"].strip('"')
    # the value HeadObject gives, without the part count
    assert got["Checksum"] == {"ChecksumSHA256": done["ChecksumSHA256"][: -len("-3")], "ChecksumType": "COMPOSITE"}
    assert got["ObjectSize"] == sum(map(len, chunks))
    parts = got["ObjectParts"]
    assert (parts["TotalPartsCount"], parts["PartNumberMarker"], parts["NextPartNumberMarker"]) == (3, 0, 3)
    assert (parts["MaxParts"], parts["IsTruncated"]) == (1000, False)
    assert parts["Parts"] == [
        {"PartNumber": n, "Size": len(c), "ChecksumSHA256": sha256_b64(c)} for n, c in enumerate(chunks, 1)
    ]


def test_object_parts_are_paged_by_max_parts_and_part_number_marker(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(5 * MIB), b"tail"]
    multipart(s3, bucket, "paged", chunks, "CRC32", "COMPOSITE")
    first = attrs(s3, bucket, "paged", ["ObjectParts"], MaxParts=2)["ObjectParts"]
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert (first["IsTruncated"], first["NextPartNumberMarker"], first["MaxParts"]) == (True, 2, 2)
    second = attrs(s3, bucket, "paged", ["ObjectParts"], MaxParts=2, PartNumberMarker=2)["ObjectParts"]
    assert second["Parts"] == [
        {"PartNumber": 3, "Size": 5 * MIB, "ChecksumCRC32": crc32_b64(chunks[2])},
        {"PartNumber": 4, "Size": 4, "ChecksumCRC32": crc32_b64(b"tail")},
    ]
    assert (second["PartNumberMarker"], second["IsTruncated"], second["NextPartNumberMarker"]) == (2, False, 4)
    past = attrs(s3, bucket, "paged", ["ObjectParts"], PartNumberMarker=4)["ObjectParts"]
    assert "Parts" not in past and past["IsTruncated"] is False and past["TotalPartsCount"] == 4


def test_a_full_object_multipart_object_gives_its_parts_count_only(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(100)]
    done = multipart(s3, bucket, "full", chunks, "CRC32", "FULL_OBJECT")
    got = attrs(s3, bucket, "full")
    assert got["Checksum"] == {"ChecksumCRC32": crc32_b64(b"".join(chunks)), "ChecksumType": "FULL_OBJECT"}
    assert got["Checksum"]["ChecksumCRC32"] == done["ChecksumCRC32"]
    assert got["ObjectParts"] == {"TotalPartsCount": 2}
    assert got["ETag"].endswith("-2")


def test_a_multipart_object_without_checksum_gives_its_parts_count_only(s3, bucket) -> None:
    multipart(s3, bucket, "plain", [os.urandom(5 * MIB), os.urandom(10)])
    got = attrs(s3, bucket, "plain")
    assert got["ObjectParts"] == {"TotalPartsCount": 2}
    assert "Checksum" not in got
    assert got["ObjectSize"] == 5 * MIB + 10


def test_a_copy_of_a_multipart_object_is_one_part_with_a_full_object_checksum(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(1000)]
    multipart(s3, bucket, "src", chunks, "SHA256")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    got = attrs(s3, bucket, "dst")
    whole = b"".join(chunks)
    assert got["ETag"] == copied["CopyObjectResult"]["ETag"].strip('"') == hashlib.md5(whole).hexdigest()
    assert got["Checksum"] == {"ChecksumSHA256": sha256_b64(whole), "ChecksumType": "FULL_OBJECT"}
    assert "ObjectParts" not in got
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == whole


def test_the_response_is_in_s3s_element_order_with_parts_count_and_flat_parts(coordinator, s3, bucket) -> None:
    multipart(s3, bucket, "order", [os.urandom(5 * MIB), b"x"], "CRC32")
    # the order asked for does not matter, and the names may carry spaces
    r = raw_get(
        coordinator,
        f"{bucket}/order?attributes",
        {"x-amz-object-attributes": "ObjectSize, ETag,Checksum ,ObjectParts,StorageClass"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["last-modified"].endswith(" GMT")
    root = ElementTree.fromstring(r.content)
    assert root.tag == f"{NS}GetObjectAttributesResponse"
    assert [e.tag.removeprefix(NS) for e in root] == ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
    parts = root.find(f"{NS}ObjectParts")
    assert parts is not None
    assert [e.tag.removeprefix(NS) for e in parts] == [
        "PartsCount", "PartNumberMarker", "NextPartNumberMarker", "MaxParts", "IsTruncated", "Part", "Part",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("header", "status", "code", "argument"),
    [
        ("ETag,Bogus", 400, "InvalidArgument", "Bogus"),
        ("etag", 400, "InvalidArgument", "etag"),
        ("", 400, "InvalidRequest", None),
        (",,", 400, "InvalidRequest", None),
        (None, 400, "InvalidRequest", None),
    ],
)
def test_bad_attribute_names_are_refused(coordinator, s3, bucket, header, status, code, argument) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = raw_get(coordinator, f"{bucket}/k?attributes", {} if header is None else {"x-amz-object-attributes": header})
    assert r.status_code == status
    err = {e.tag: e.text for e in ElementTree.fromstring(r.content)}
    assert err["Code"] == code
    if argument is not None:
        assert (err["ArgumentName"], err["ArgumentValue"]) == ("x-amz-object-attributes", argument)


def test_a_bad_max_parts_is_ignored_and_a_bad_part_number_marker_refused(coordinator, s3, bucket) -> None:
    multipart(s3, bucket, "mp", [os.urandom(5 * MIB), b"x"], "SHA1")
    head = {"x-amz-object-attributes": "ObjectParts"}
    r = raw_get(coordinator, f"{bucket}/mp?attributes", {**head, "x-amz-max-parts": "lots"})
    assert r.status_code == 200 and "<MaxParts>1000</MaxParts>" in r.text and r.text.count("<Part>") == 2
    r = raw_get(coordinator, f"{bucket}/mp?attributes", {**head, "x-amz-max-parts": "9" * 40})
    assert r.status_code == 200 and "<MaxParts>1000</MaxParts>" in r.text
    for marker in ("x", "-1", "9" * 40):
        r = raw_get(coordinator, f"{bucket}/mp?attributes", {**head, "x-amz-part-number-marker": marker})
        assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, marker


def test_a_missing_key_bucket_or_version(s3, bucket) -> None:
    with pytest.raises(ClientError) as e:
        attrs(s3, bucket, "nope")
    assert error(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        attrs(s3, "no-such-bucket-here", "k")
    assert error(e) == (404, "NoSuchBucket")
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert attrs(s3, bucket, "k", ["ObjectSize"], VersionId="null")["ObjectSize"] == 1
    with pytest.raises(ClientError) as e:
        attrs(s3, bucket, "k", VersionId="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert error(e) == (400, "InvalidArgument")


def test_conditional_headers_apply_as_on_get(coordinator, s3, bucket) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ETag"]
    head = {"x-amz-object-attributes": "ETag"}
    assert raw_get(coordinator, f"{bucket}/k?attributes", {**head, "If-Match": etag}).status_code == 200
    assert raw_get(coordinator, f"{bucket}/k?attributes", {**head, "If-Match": '"0"'}).status_code == 412
    r = raw_get(coordinator, f"{bucket}/k?attributes", {**head, "If-None-Match": etag})
    assert r.status_code == 304 and r.headers["etag"] == etag


def test_the_system_bucket_is_readable_by_the_admin_only(coordinator) -> None:
    added = coordinator.cli("peer", "add", "attrs-reader", "--json")
    assert added.returncode == 0, added.stderr
    listing = requests.get(f"{coordinator.endpoint}/_tunnelmesh?list-type=2", auth=("admin", coordinator.token))
    key = ElementTree.fromstring(listing.content).find(f"{NS}Contents/{NS}Key")
    assert key is not None and key.text
    head = {"x-amz-object-attributes": "ObjectSize"}
    r = raw_get(coordinator, f"_tunnelmesh/{key.text}?attributes", head)
    assert r.status_code == 200 and "<ObjectSize>" in r.text
    peer = json.loads(added.stdout)
    r = requests.get(
        f"{coordinator.endpoint}/_tunnelmesh/{key.text}?attributes",
        headers=head,
        auth=(peer["peer_id"], peer["token"]),
    )
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
