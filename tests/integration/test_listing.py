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


def test_v1_echoes_the_prefix_plain_under_url_encoding(coordinator, s3, bucket) -> None:
    """botocore decodes v1's Marker and Delimiter but not its Prefix, so S3 leaves that one plain:
    encoding it showed callers `%0A` for a newline."""
    import requests

    prefix = "line\nbreak/"
    s3.put_object(Bucket=bucket, Key=prefix + "k", Body=b"x")
    got = s3.list_objects(Bucket=bucket, Prefix=prefix)
    assert got["Prefix"] == prefix and [o["Key"] for o in got["Contents"]] == [prefix + "k"]
    auth = ("admin", coordinator.token)
    raw = requests.get(f"{coordinator.endpoint}/{bucket}?prefix=a%20b%2F&encoding-type=url", auth=auth).text
    assert "<Prefix>a b/</Prefix>" in raw, raw
    v2 = requests.get(f"{coordinator.endpoint}/{bucket}?list-type=2&prefix=a%20b%2F&encoding-type=url", auth=auth).text
    assert "<Prefix>a+b/</Prefix>" in v2, v2


def test_v2_empty_continuation_token_is_the_first_page(s3, filled) -> None:
    got = s3.list_objects_v2(Bucket=filled, ContinuationToken="")
    assert got["ContinuationToken"] == "" and not got["IsTruncated"]
    assert [o["Key"] for o in got["Contents"]] == sorted(KEYS)


def test_list_object_versions_shows_each_object_as_its_null_version(s3, filled) -> None:
    """No versioning here: every object is its one `null` version, the latest, as on a bucket that was
    never versioned; paging by key marker, prefix and delimiter work as in ListObjects."""
    got = s3.list_object_versions(Bucket=filled)
    assert [(v["Key"], v["VersionId"], v["IsLatest"]) for v in got["Versions"]] == [
        (k, "null", True) for k in sorted(KEYS)
    ]
    assert "DeleteMarkers" not in got and not got["IsTruncated"]
    seen, kw = [], {}
    while True:
        page = s3.list_object_versions(Bucket=filled, MaxKeys=2, **kw)
        seen += [v["Key"] for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert seen == sorted(KEYS)
    grouped = s3.list_object_versions(Bucket=filled, Prefix="a/", Delimiter="/")
    assert [v["Key"] for v in grouped["Versions"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["a/b/"]
    with pytest.raises(ClientError) as e:
        s3.list_object_versions(Bucket=filled, KeyMarker="a/1", VersionIdMarker="3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert e.value.response["Error"]["Code"] == "InvalidArgument"
    # what nuke-a-bucket tools do next: delete every listed version
    s3.delete_objects(
        Bucket=filled, Delete={"Objects": [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in got["Versions"]]}
    )
    assert "Versions" not in s3.list_object_versions(Bucket=filled)
