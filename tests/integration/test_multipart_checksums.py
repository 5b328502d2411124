"""Multipart checksums as S3 has them: COMPOSITE and FULL_OBJECT types, the whole-object checksum a
CompleteMultipartUpload names, per-part checksums in its list, and the same answer for a retried Complete."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zlib
from collections.abc import Callable

import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from conftest import start_coordinator

MIB = 1024 * 1024
CRCS: dict[str, tuple[Callable[[bytes], int], int]] = {
    "CRC32": (zlib.crc32, 4),
    "CRC32C": (crt.crc32c, 4),
    "CRC64NVME": (crt.crc64nvme, 8),
}


def crc_b64(algorithm: str, data: bytes) -> str:
    fn, width = CRCS[algorithm]
    return base64.b64encode(fn(data).to_bytes(width, "big")).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def error(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def upload_parts(s3, bucket: str, key: str, upload_id: str, algorithm: str, chunks: list[bytes]) -> list[dict]:
    """Upload each chunk as a part; the Complete list with each part's checksum, as s3transfer makes it."""
    parts = []
    for n, chunk in enumerate(chunks, 1):
        r = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=chunk, ChecksumAlgorithm=algorithm
        )
        parts.append({"PartNumber": n, "ETag": r["ETag"], f"Checksum{algorithm}": r[f"Checksum{algorithm}"]})
    return parts


@pytest.mark.parametrize("algorithm", sorted(CRCS))
def test_full_object_checksum_is_the_crc_of_the_whole_object(s3, bucket, algorithm: str) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1234)]
    whole = b"".join(chunks)
    member = f"Checksum{algorithm}"
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT"
    )
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == (algorithm, "FULL_OBJECT")
    up = created["UploadId"]
    parts = upload_parts(s3, bucket, "k", up, algorithm, chunks)
    assert [p[member] for p in parts] == [crc_b64(algorithm, c) for c in chunks]

    listed = s3.list_parts(Bucket=bucket, Key="k", UploadId=up)
    assert (listed["ChecksumAlgorithm"], listed["ChecksumType"]) == (algorithm, "FULL_OBJECT")
    assert [p[member] for p in listed["Parts"]] == [p[member] for p in parts]
    uploads = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert [(u["ChecksumAlgorithm"], u["ChecksumType"]) for u in uploads] == [(algorithm, "FULL_OBJECT")]

    expected = crc_b64(algorithm, whole)
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="k",
        UploadId=up,
        MultipartUpload={"Parts": parts},
        ChecksumType="FULL_OBJECT",
        **{member: expected},
    )
    assert (done[member], done["ChecksumType"]) == (expected, "FULL_OBJECT")

    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head[member], head["ChecksumType"]) == (expected, "FULL_OBJECT")
    assert member not in s3.head_object(Bucket=bucket, Key="k")
    # boto3 checks a full-object checksum on GET against the bytes it read
    got = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (got[member], got["ChecksumType"]) == (expected, "FULL_OBJECT")
    assert got["Body"].read() == whole

    # a retried Complete (its answer was lost) answers what the first one did, checksum included
    again = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": parts})
    assert (again["ETag"], again[member], again["ChecksumType"]) == (done["ETag"], expected, "FULL_OBJECT")


def test_crc64nvme_upload_is_full_object_by_default_and_parts_need_no_checksum_in_complete(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(10)]
    created = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC64NVME")
    assert created["ChecksumType"] == "FULL_OBJECT"
    up = created["UploadId"]
    parts = upload_parts(s3, bucket, "k", up, "CRC64NVME", chunks)
    bare = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": bare})
    assert (done["ChecksumCRC64NVME"], done["ChecksumType"]) == (crc_b64("CRC64NVME", b"".join(chunks)), "FULL_OBJECT")


def test_transfer_manager_uploads_with_full_object_and_default_checksums(s3, bucket) -> None:
    data = os.urandom(17 * MIB + 5)
    cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)
    # a checksum of the whole file given by the caller: s3transfer makes the upload FULL_OBJECT
    s3.upload_fileobj(
        io.BytesIO(data), bucket, "given", Config=cfg, ExtraArgs={"ChecksumCRC32": crc_b64("CRC32", data)}
    )
    head = s3.head_object(Bucket=bucket, Key="given", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (crc_b64("CRC32", data), "FULL_OBJECT")
    assert head["ETag"].endswith('-3"')

    s3.upload_fileobj(io.BytesIO(data), bucket, "nvme", Config=cfg, ExtraArgs={"ChecksumAlgorithm": "CRC64NVME"})
    head = s3.head_object(Bucket=bucket, Key="nvme", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (crc_b64("CRC64NVME", data), "FULL_OBJECT")

    # the default (when_supported): CRC32 per part, a COMPOSITE object checksum of the part checksums
    s3.upload_fileobj(io.BytesIO(data), bucket, "default", Config=cfg)
    head = s3.head_object(Bucket=bucket, Key="default", ChecksumMode="ENABLED")
    chunks = [data[i : i + 8 * MIB] for i in range(0, len(data), 8 * MIB)]
    digests = b"".join(base64.b64decode(crc_b64("CRC32", c)) for c in chunks)
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (f"{crc_b64('CRC32', digests)}-3", "COMPOSITE")
    for key in ("given", "nvme", "default"):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_complete_refuses_a_wrong_whole_object_checksum_and_stays_completable(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(100)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT")[
        "UploadId"
    ]
    parts = upload_parts(s3, bucket, "k", up, "CRC32C", chunks)
    right = crc_b64("CRC32C", b"".join(chunks))
    wrong_part = [parts[0], {**parts[1], "ChecksumCRC32C": crc_b64("CRC32C", b"other")}]
    refused: list[tuple[dict, tuple[int, str]]] = [
        ({"ChecksumCRC32C": crc_b64("CRC32C", b"other")}, (400, "BadDigest")),
        ({"ChecksumCRC32C": "bad"}, (400, "BadDigest")),
        ({"ChecksumCRC32C": f"{right}-2"}, (400, "BadDigest")),
        ({"ChecksumCRC32": crc_b64("CRC32", b"".join(chunks))}, (400, "InvalidRequest")),
        ({"ChecksumSHA256": sha256_b64(b"".join(chunks))}, (400, "InvalidRequest")),
        ({"ChecksumCRC32C": right, "ChecksumType": "COMPOSITE"}, (400, "InvalidRequest")),
        ({"ChecksumCRC32C": right, "MultipartUpload": {"Parts": wrong_part}}, (400, "InvalidPart")),
    ]
    for extra, expected in refused:
        args = {"MultipartUpload": {"Parts": parts}, **extra}
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, **args)
        assert error(e) == expected, extra
    # nothing was made of it: the upload is as it was
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")
    assert len(s3.list_parts(Bucket=bucket, Key="k", UploadId=up)["Parts"]) == 2
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": parts}, ChecksumCRC32C=right
    )
    assert done["ChecksumCRC32C"] == right


def test_composite_checksum_is_checked_and_needs_each_part_checksum(s3, bucket) -> None:
    chunks = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(7)]
    created = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256")
    assert (created["ChecksumAlgorithm"], created["ChecksumType"]) == ("SHA256", "COMPOSITE")
    up = created["UploadId"]
    parts = upload_parts(s3, bucket, "k", up, "SHA256", chunks)
    digests = b"".join(hashlib.sha256(c).digest() for c in chunks)
    composite = f"{sha256_b64(digests)}-3"
    bare = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]
    refused: list[tuple[dict, tuple[int, str]]] = [
        ({"MultipartUpload": {"Parts": bare}}, (400, "InvalidRequest")),
        ({"ChecksumSHA256": sha256_b64(b"".join(chunks))}, (400, "BadDigest")),
        ({"ChecksumSHA256": f"{sha256_b64(digests)}-2"}, (400, "BadDigest")),
        ({"ChecksumType": "FULL_OBJECT"}, (400, "InvalidRequest")),
    ]
    for extra, expected in refused:
        args = {"MultipartUpload": {"Parts": parts}, **extra}
        with pytest.raises(ClientError) as e:
            s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, **args)
        assert error(e) == expected, extra
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": parts}, ChecksumSHA256=composite
    )
    assert (done["ChecksumSHA256"], done["ChecksumType"]) == (composite, "COMPOSITE")
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head["ChecksumSHA256"], head["ChecksumType"]) == (composite, "COMPOSITE")
    again = s3.complete_multipart_upload(Bucket=bucket, Key="k", UploadId=up, MultipartUpload={"Parts": parts})
    assert (again["ChecksumSHA256"], again["ChecksumType"]) == (composite, "COMPOSITE")


@pytest.mark.parametrize(
    ("algorithm", "ctype"),
    [("SHA256", "FULL_OBJECT"), ("SHA1", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE"), (None, "FULL_OBJECT")],
)
def test_create_refuses_a_checksum_type_the_algorithm_does_not_have(s3, bucket, algorithm, ctype) -> None:
    args = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumType=ctype, **args)
    assert error(e) == (400, "InvalidRequest")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_single_put_checksum_is_full_object(s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data", ChecksumAlgorithm="CRC32C")
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC32C"], head["ChecksumType"]) == (crc_b64("CRC32C", b"data"), "FULL_OBJECT")


def test_checksum_type_and_retry_answer_survive_a_restart(tmp_path) -> None:
    c = start_coordinator(tmp_path)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="restart-bucket")
        chunks = [os.urandom(5 * MIB), os.urandom(3)]
        up = s3.create_multipart_upload(
            Bucket="restart-bucket", Key="k", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT"
        )["UploadId"]
        parts = upload_parts(s3, "restart-bucket", "k", up, "CRC32", chunks)
    finally:
        c.stop()
    c = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        s3 = c.client()
        assert s3.list_parts(Bucket="restart-bucket", Key="k", UploadId=up)["ChecksumType"] == "FULL_OBJECT"
        done = s3.complete_multipart_upload(
            Bucket="restart-bucket", Key="k", UploadId=up, MultipartUpload={"Parts": parts}
        )
        assert (done["ChecksumCRC32"], done["ChecksumType"]) == (crc_b64("CRC32", b"".join(chunks)), "FULL_OBJECT")
    finally:
        c.stop()
    c = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        s3 = c.client()
        again = s3.complete_multipart_upload(
            Bucket="restart-bucket", Key="k", UploadId=up, MultipartUpload={"Parts": parts}
        )
        assert (again["ETag"], again["ChecksumCRC32"], again["ChecksumType"]) == (
            done["ETag"],
            done["ChecksumCRC32"],
            "FULL_OBJECT",
        )
        head = s3.head_object(Bucket="restart-bucket", Key="k", ChecksumMode="ENABLED")
        assert (head["ChecksumCRC32"], head["ChecksumType"]) == (done["ChecksumCRC32"], "FULL_OBJECT")
    finally:
        c.stop()
