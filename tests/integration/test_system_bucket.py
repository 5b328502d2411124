"""The reserved bucket _tunnelmesh: created at start-up, written only by the coordinator."""

from __future__ import annotations

import pytest
import requests
from botocore.exceptions import ClientError

SYSTEM = "_tunnelmesh"


def test_system_bucket_exists_and_admin_sees_and_lists_it(coordinator) -> None:
    # botocore refuses names with "_" client-side only for some operations; use raw HTTP with Basic
    auth = ("admin", coordinator.token)
    assert SYSTEM in requests.get(coordinator.endpoint + "/", auth=auth).text
    r = requests.get(f"{coordinator.endpoint}/{SYSTEM}?list-type=2", auth=auth)
    assert r.status_code == 200 and "<ListBucketResult" in r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/_tunnelmesh/peers/x.json"),
        ("DELETE", "/_tunnelmesh/peers/x.json"),
        ("DELETE", "/_tunnelmesh"),
        ("PUT", "/_tunnelmesh"),
        ("POST", "/_tunnelmesh/k?uploads"),
    ],
)
def test_admin_cannot_write_or_delete_the_system_bucket(coordinator, method, path) -> None:
    r = requests.request(method, coordinator.endpoint + path, data=b"x", auth=("admin", coordinator.token))
    assert r.status_code == 403
    assert "<Code>AccessDenied</Code>" in r.text


def test_system_bucket_cannot_be_a_copy_destination(coordinator, s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    r = requests.put(
        f"{coordinator.endpoint}/{SYSTEM}/stolen",
        auth=("admin", coordinator.token),
        headers={"x-amz-copy-source": f"/{bucket}/k"},
    )
    assert r.status_code == 403


def test_creating_a_bucket_named_like_the_system_bucket_is_refused(s3) -> None:
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=SYSTEM)
    assert e.value.response["Error"]["Code"] == "AccessDenied"
