"""ListObjects v1 and v2: prefixes, delimiters, pagination, url encoding."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

KEYS = ["a/1", "a/2", "a/b/3", "b", "c/1", "foo+1/x", "foo/x", "quux ab/x", "z"]


@pytest.fixture
def filled(s3, bucket) -> str:
    for k in KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    return bucket


def all_pages_v2(s3, bucket, **kw) -> tuple[list[str], list[str], int]:
    keys, prefixes, pages = [], [], 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **kw):
        pages += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes, pages


def all_pages_v1(s3, bucket, **kw) -> tuple[list[str], list[str], int]:
    keys, prefixes, pages = [], [], 0
    for page in s3.get_paginator("list_objects").paginate(Bucket=bucket, **kw):
        pages += 1
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes, pages


def test_keys_are_listed_in_utf8_byte_order(s3, filled) -> None:
    keys, _, _ = all_pages_v2(s3, filled)
    assert keys == sorted(KEYS, key=lambda k: k.encode())


def test_delimiter_groups_common_prefixes(s3, filled) -> None:
    res = s3.list_objects_v2(Bucket=filled, Delimiter="/")
    assert [o["Key"] for o in res["Contents"]] == ["b", "z"]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["a/", "c/", "foo+1/", "foo/", "quux ab/"]
    assert res["KeyCount"] == 7


def test_prefix_and_delimiter(s3, filled) -> None:
    res = s3.list_objects_v2(Bucket=filled, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in res["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["a/b/"]


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_v2_pagination_with_delimiter_never_repeats_or_skips(s3, filled, page_size) -> None:
    keys, prefixes, pages = all_pages_v2(s3, filled, Delimiter="/", PaginationConfig={"PageSize": page_size})
    assert keys == ["b", "z"]
    assert prefixes == ["a/", "c/", "foo+1/", "foo/", "quux ab/"]
    assert pages == -(-7 // page_size)


@pytest.mark.parametrize("page_size", [1, 2, 4])
def test_v1_pagination_with_and_without_delimiter(s3, filled, page_size) -> None:
    keys, prefixes, _ = all_pages_v1(s3, filled, Delimiter="/", PaginationConfig={"PageSize": page_size})
    assert keys == ["b", "z"]
    assert prefixes == ["a/", "c/", "foo+1/", "foo/", "quux ab/"]
    keys, _, _ = all_pages_v1(s3, filled, PaginationConfig={"PageSize": page_size})
    assert keys == sorted(KEYS)


def test_v1_next_marker_only_with_delimiter(s3, filled) -> None:
    res = s3.list_objects(Bucket=filled, MaxKeys=2)
    assert res["IsTruncated"] and "NextMarker" not in res
    res = s3.list_objects(Bucket=filled, MaxKeys=2, Delimiter="/")
    assert res["NextMarker"] == "b"  # the last entry returned: prefix "a/" then key "b"


def test_start_after(s3, filled) -> None:
    res = s3.list_objects_v2(Bucket=filled, StartAfter="c/1")
    assert [o["Key"] for o in res["Contents"]] == ["foo+1/x", "foo/x", "quux ab/x", "z"]
    assert res["StartAfter"] == "c/1"


def test_start_after_inside_a_prefix_group_still_returns_the_group(s3, filled) -> None:
    res = s3.list_objects_v2(Bucket=filled, StartAfter="a/1", Delimiter="/")
    assert [p["Prefix"] for p in res["CommonPrefixes"]][0] == "a/"


def test_max_keys_zero_is_an_empty_untruncated_page(s3, filled) -> None:
    res = s3.list_objects_v2(Bucket=filled, MaxKeys=0)
    assert res["KeyCount"] == 0 and res["IsTruncated"] is False


def test_max_keys_is_capped_at_1000(s3, filled) -> None:
    assert s3.list_objects_v2(Bucket=filled, MaxKeys=5000)["MaxKeys"] == 1000


def test_garbage_continuation_token_is_invalid_argument(s3, filled) -> None:
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=filled, ContinuationToken="!!!garbage")
    assert e.value.response["Error"]["Code"] == "InvalidArgument"


def test_url_encoding_roundtrips_special_keys(coordinator, s3, bucket) -> None:
    import requests

    keys = ["a b.txt", "a+b.txt", "100%.csv"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    # boto3 asks for encoding-type=url and decodes; the result must be the original keys
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(keys)
    assert sorted(o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]) == sorted(keys)
    raw = requests.get(
        f"{coordinator.endpoint}/{bucket}?list-type=2&encoding-type=url", auth=("admin", coordinator.token)
    ).text
    assert "<Key>a+b.txt</Key>" in raw and "<Key>a%2Bb.txt</Key>" in raw and "<Key>100%25.csv</Key>" in raw
    assert "<EncodingType>url</EncodingType>" in raw


def test_fetch_owner(s3, filled) -> None:
    assert "Owner" not in s3.list_objects_v2(Bucket=filled)["Contents"][0]
    assert s3.list_objects_v2(Bucket=filled, FetchOwner=True)["Contents"][0]["Owner"]["ID"] == "admin"


def test_listing_many_keys_pages_exactly(s3, bucket) -> None:
    from concurrent.futures import ThreadPoolExecutor

    names = [f"d{i % 7}/k{i:04d}" for i in range(1200)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), names))
    keys, _, pages = all_pages_v2(s3, bucket)
    assert keys == sorted(names) and pages == 2
    keys, prefixes, _ = all_pages_v2(s3, bucket, Delimiter="/", PaginationConfig={"PageSize": 3})
    assert keys == [] and prefixes == [f"d{i}/" for i in range(7)]
