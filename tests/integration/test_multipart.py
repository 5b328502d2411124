"""Multipart upload: parts, Complete validation, ETags, ListParts, ListMultipartUploads, UploadPartCopy."""

from __future__ import annotations

import io
import os

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from conftest import md5_etag

MIB = 1024 * 1024


def test_sparse_part_numbers_reuploaded_part_and_md5_of_parts_etag(s3, bucket) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    p2, p3, p3b, p6 = os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1000)
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=p2)["ETag"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=3, Body=p3)
    e3 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=3, Body=p3b)["ETag"]
    e6 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=6, Body=p6)["ETag"]
    listed = s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)
    assert [p["PartNumber"] for p in listed["Parts"]] == [2, 3, 6]
    assert [p["ETag"] for p in listed["Parts"]] == [e2, e3, e6]
    # the upload is invisible until completed
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="mp")
    parts = [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 3, "ETag": e3}, {"PartNumber": 6, "ETag": e6}]
    res = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    assert res["ETag"] == md5_etag([p2, p3b, p6])
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["ETag"] == res["ETag"]
    assert got["Body"].read() == p2 + p3b + p6
    # a retried Complete (lost response) answers the same
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
    assert again["ETag"] == res["ETag"]
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"] == res["ETag"]


def test_ranged_read_across_part_boundaries(s3, bucket) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    a, b = os.urandom(5 * MIB), os.urandom(100)
    ea = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=a)["ETag"]
    eb = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=b)["ETag"]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": ea}, {"PartNumber": 2, "ETag": eb}]},
    )
    whole = a + b
    start = 5 * MIB - 10
    got = s3.get_object(Bucket=bucket, Key="mp", Range=f"bytes={start}-{start + 49}")["Body"].read()
    assert got == whole[start : start + 50]


def test_complete_rejects_small_parts_wrong_etags_bad_order_and_empty_list(s3, bucket) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"small")["ETag"]
    e2 = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=b"last")["ETag"]

    def complete(parts):
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
        return e.value.response["Error"]["Code"]

    assert complete([{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]) == "EntityTooSmall"
    assert complete([{"PartNumber": 1, "ETag": '"deadbeef"'}]) == "InvalidPart"
    assert complete([{"PartNumber": 9, "ETag": e1}]) == "InvalidPart"
    assert complete([{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]) == "InvalidPartOrder"
    assert complete([]) == "MalformedXML"
    # a single small last part is fine
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}]}
    )
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"last"


def test_part_number_out_of_range_is_invalid_argument(s3, bucket) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=10001, Body=b"x")
    assert e.value.response["Error"]["Code"] == "InvalidArgument"


def test_abort_discards_upload_and_unknown_upload_is_no_such_upload(s3, bucket) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up)
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=up)
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId="bogus", PartNumber=1, Body=b"x")
    assert e.value.response["Error"]["Code"] == "NoSuchUpload"


def test_list_parts_paginates(s3, bucket) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    for n in range(1, 6):
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=n, Body=b"x")
    numbers = []
    for page in s3.get_paginator("list_parts").paginate(
        Bucket=bucket, Key="mp", UploadId=up, PaginationConfig={"PageSize": 2}
    ):
        numbers += [p["PartNumber"] for p in page.get("Parts", [])]
    assert numbers == [1, 2, 3, 4, 5]


def test_list_multipart_uploads_paginates_and_filters(s3, bucket) -> None:
    ids = {}
    for key in ["a/1", "a/2", "b/1", "c"]:
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    seen = []
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}):
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
    assert seen == sorted(ids.items())
    res = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")
    assert [u["Key"] for u in res["Uploads"]] == ["a/1", "a/2"]
    res = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["a/", "b/"]
    assert [u["Key"] for u in res["Uploads"]] == ["c"]


def test_upload_part_copy_with_ranges(s3, bucket) -> None:
    src = os.urandom(6 * MIB + 123)
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    up = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    src_ref = {"Bucket": bucket, "Key": "src"}
    r1 = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=up,
        PartNumber=1,
        CopySource=src_ref,
        CopySourceRange=f"bytes=0-{5 * MIB - 1}",
    )
    r2 = s3.upload_part_copy(
        Bucket=bucket,
        Key="dst",
        UploadId=up,
        PartNumber=2,
        CopySource=src_ref,
        CopySourceRange=f"bytes={5 * MIB}-{len(src) - 1}",
    )
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key="dst",
        UploadId=up,
        MultipartUpload={
            "Parts": [
                {"PartNumber": 1, "ETag": r1["CopyPartResult"]["ETag"]},
                {"PartNumber": 2, "ETag": r2["CopyPartResult"]["ETag"]},
            ]
        },
    )
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == src
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="dst2",
            UploadId=s3.create_multipart_upload(Bucket=bucket, Key="dst2")["UploadId"],
            PartNumber=1,
            CopySource=src_ref,
            CopySourceRange="bytes=0-",
        )
    assert e.value.response["Error"]["Code"] == "InvalidArgument"


def test_transfer_manager_multipart_with_crc32_roundtrips(s3, bucket) -> None:
    data = os.urandom(17 * MIB + 5)
    cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="big", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"')
    buf = io.BytesIO()
    s3.download_fileobj(bucket, "big", buf, Config=cfg)
    assert buf.getvalue() == data


def test_multipart_copy_by_transfer_manager(s3, bucket) -> None:
    data = os.urandom(9 * MIB)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    cfg = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    s3.copy({"Bucket": bucket, "Key": "src"}, bucket, "dst", Config=cfg)
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == data


def test_complete_with_if_none_match_star_refuses_existing_key(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"existing")
    up = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    e1 = s3.upload_part(Bucket=bucket, Key="k", UploadId=up, PartNumber=1, Body=b"new")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="k",
            UploadId=up,
            IfNoneMatch="*",
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}]},
        )
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"existing"
