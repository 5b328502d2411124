"""Object and bucket tagging against a real coordinator, with boto3 (docs/data-protection.md section 6):
PutObjectTagging and its twins, the tag sets PutObject, multipart uploads, CopyObject and form uploads
carry, x-amz-tagging-count, every AWS limit, and an overwrite clearing the tags."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError


def tag_set(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in pairs]}


def tags_of(s3, bucket: str, key: str) -> list[tuple[str, str]]:
    return [(t["Key"], t["Value"]) for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]]


def error(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = info.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def new_key() -> str:
    return f"tag-{uuid.uuid4().hex[:10]}"


def test_object_tags_are_put_read_and_deleted(s3, bucket) -> None:
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"data")
    assert tags_of(s3, bucket, key) == []
    assert "x-amz-tagging-count" not in s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]
    r = s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tag_set([("b", "2"), ("a", "1")]))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert tags_of(s3, bucket, key) == [("a", "1"), ("b", "2")]
    assert s3.get_object(Bucket=bucket, Key=key)["TagCount"] == 2
    assert s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    r = s3.delete_object_tagging(Bucket=bucket, Key=key)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert tags_of(s3, bucket, key) == []
    assert "TagCount" not in s3.get_object(Bucket=bucket, Key=key)
    with pytest.raises(ClientError) as info:
        s3.put_object_tagging(Bucket=bucket, Key="absent", Tagging=tag_set([("a", "1")]))
    assert error(info) == (404, "NoSuchKey")


def test_a_put_with_x_amz_tagging_is_tagged_and_an_overwrite_clears_the_tags(s3, bucket) -> None:
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"one", Tagging="foo=bar&bar&k%C3%A9y=v%20w")
    assert tags_of(s3, bucket, key) == [("bar", ""), ("foo", "bar"), ("kéy", "v w")]
    assert s3.get_object(Bucket=bucket, Key=key)["TagCount"] == 3
    s3.put_object(Bucket=bucket, Key=key, Body=b"two")
    assert tags_of(s3, bucket, key) == []
    assert "x-amz-tagging-count" not in s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]


def test_a_multipart_upload_is_tagged_at_its_complete(s3, bucket) -> None:
    key = new_key()
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, Tagging="Hello=World&foo=bar")
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=b"p" * 1000)
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert tags_of(s3, bucket, key) == [("Hello", "World"), ("foo", "bar")]
    got = s3.get_object(Bucket=bucket, Key=key)
    assert (got["Body"].read(), got["TagCount"]) == (b"p" * 1000, 2)


def test_a_copy_keeps_the_source_tags_or_replaces_them(s3, bucket) -> None:
    src = new_key()
    s3.put_object(Bucket=bucket, Key=src, Body=b"source", Tagging="a=1&b=2")
    source = {"Bucket": bucket, "Key": src}
    s3.copy_object(Bucket=bucket, Key=f"{src}-default", CopySource=source)
    assert tags_of(s3, bucket, f"{src}-default") == [("a", "1"), ("b", "2")]
    s3.copy_object(Bucket=bucket, Key=f"{src}-copy", CopySource=source, TaggingDirective="COPY", Tagging="z=9")
    assert tags_of(s3, bucket, f"{src}-copy") == [("a", "1"), ("b", "2")]
    s3.copy_object(Bucket=bucket, Key=f"{src}-replace", CopySource=source, TaggingDirective="REPLACE", Tagging="z=9")
    assert tags_of(s3, bucket, f"{src}-replace") == [("z", "9")]
    s3.copy_object(Bucket=bucket, Key=f"{src}-none", CopySource=source, TaggingDirective="REPLACE")
    assert tags_of(s3, bucket, f"{src}-none") == []


def test_a_form_upload_is_tagged_by_its_tagging_field(coordinator, s3, bucket) -> None:
    key = new_key()
    tags = "<Tag><Key>0</Key><Value>0</Value></Tag><Tag><Key>1</Key><Value>1</Value></Tag>"
    doc = f"<Tagging><TagSet>{tags}</TagSet></Tagging>"
    form = coordinator.client(signature_version="s3v4").generate_presigned_post(
        bucket, key, Fields={"tagging": doc}, Conditions=[{"tagging": doc}]
    )
    parts = [(n, (None, v)) for n, v in form["fields"].items()] + [("file", ("f", b"posted", "text/plain"))]
    r = requests.post(form["url"], files=parts, timeout=60)
    assert r.status_code == 204, r.text
    assert tags_of(s3, bucket, key) == [("0", "0"), ("1", "1")]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"posted"


def test_bucket_tags_are_put_read_and_deleted(s3, bucket) -> None:
    with pytest.raises(ClientError) as info:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error(info) == (404, "NoSuchTagSet")
    r = s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set([("Hello", "World")]))
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "Hello", "Value": "World"}]
    fifty = [(f"t{i:02d}", str(i)) for i in range(50)]
    s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set(fifty))
    assert len(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]) == 50
    with pytest.raises(ClientError) as info:
        s3.put_bucket_tagging(Bucket=bucket, Tagging=tag_set([*fifty, ("t50", "x")]))
    assert error(info) == (400, "InvalidTag")
    assert s3.delete_bucket_tagging(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as info:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error(info) == (404, "NoSuchTagSet")


LIMITS = {
    "11 tags": [(str(i), str(i)) for i in range(11)],
    "key of 129": [("k" * 129, "v")],
    "value of 257": [("k", "v" * 257)],
    "aws: prefix": [("aws:tag", "v")],
    "duplicate key": [("k", "1"), ("k", "2")],
}


@pytest.mark.parametrize("pairs", list(LIMITS.values()), ids=list(LIMITS))
def test_every_limit_is_invalid_tag_and_keeps_the_tags(s3, bucket, pairs: list[tuple[str, str]]) -> None:
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"data", Tagging="kept=yes")
    with pytest.raises(ClientError) as info:
        s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tag_set(pairs))
    assert error(info) == (400, "InvalidTag")
    assert tags_of(s3, bucket, key) == [("kept", "yes")]
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key=key, Body=b"new", Tagging="&".join(f"{k}={v}" for k, v in pairs))
    assert error(info) == (400, "InvalidTag")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"data"


def test_the_largest_tags_aws_allows_are_kept(s3, bucket) -> None:
    key = new_key()
    s3.put_object(Bucket=bucket, Key=key, Body=b"data")
    most = [(f"{i}" + "é" * 127, "ü" * 256) for i in range(10)]  # characters, not bytes
    s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tag_set(most))
    assert tags_of(s3, bucket, key) == most


def test_a_malformed_x_amz_tagging_or_document_is_refused(s3, bucket) -> None:
    key = new_key()
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x", Tagging="a=%ff")
    assert error(info) == (400, "BadRequest")
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")

    def broken(request, **_: Any) -> None:
        request.data = b"<Tagging><TagSet><Tag><Key>a</Key>"
        # the body's digests were computed for the document botocore built
        for name in [
            n for n in request.headers if n.lower() == "content-md5" or n.lower().startswith("x-amz-checksum-")
        ]:
            del request.headers[name]

    s3.meta.events.register_first("before-sign.s3.PutObjectTagging", broken)
    try:
        with pytest.raises(ClientError) as info:
            s3.put_object_tagging(Bucket=bucket, Key=key, Tagging=tag_set([("a", "1")]))
    finally:
        s3.meta.events.unregister("before-sign.s3.PutObjectTagging", broken)
    assert error(info) == (400, "MalformedXML")
    assert tags_of(s3, bucket, key) == []
