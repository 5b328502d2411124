"""The reserved bucket _tunnelmesh: created at start-up, written only by the coordinator."""

from __future__ import annotations

import json

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import start_coordinator

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


# ---- a full store never locks the admin out ----------------------------------------------------


def _peer_s3(c, peer: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        aws_access_key_id=peer["peer_id"],
        aws_secret_access_key=peer["token"],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def _ok(res) -> str:
    assert res.returncode == 0, res.stderr
    return res.stdout


def _add_peer(c, name: str) -> dict[str, str]:
    return json.loads(_ok(c.cli("peer", "add", name, "--json")))


def test_a_peer_that_fills_max_size_can_still_be_revoked_and_the_admin_keeps_managing(tmp_path) -> None:
    c = start_coordinator(tmp_path, extra_yaml="  max_size: 1MB\n")
    try:
        hog = _add_peer(c, "hog")
        hog_s3 = _peer_s3(c, hog)
        hog_s3.create_bucket(Bucket="hoard")
        stored = 0
        for i in range(20):  # 100 KB each: the tenth fills the store exactly
            try:
                hog_s3.put_object(Bucket="hoard", Key=f"k{i}", Body=b"h" * 100_000)
                stored += 1
            except ClientError as e:
                assert e.response["Error"]["Code"] == "QuotaExceeded"
                break
        # the coordinator's own records (the hog's peer record) do not count against max_size
        assert stored == 10
        status = json.loads(_ok(c.cli("storage", "status", "--json")))
        assert status["used"] == 1_000_000 == status["max_size"]
        assert status["system_used"] > 0

        # every admin action that writes the coordinator's state still succeeds on the full store
        _ok(c.cli("peer", "revoke", hog["peer_id"]))
        with pytest.raises(ClientError) as refused:
            hog_s3.list_buckets()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError):
            hog_s3.put_object(Bucket="hoard", Key="more", Body=b"x")
        newcomer = _add_peer(c, "newcomer")
        assert "Buckets" in _peer_s3(c, newcomer).list_buckets()
        _ok(c.cli("network", "set", "mesh_name", "still-managed"))
        _ok(c.cli("share", "add", "hoard-share", "--bucket", "hoard", "--peer", newcomer["peer_id"]))
        assert json.loads(_ok(c.cli("network", "show", "--json")))["mesh_name"] == "still-managed"
        assert "hoard-share" in _ok(c.cli("share", "list"))

        # max_size still holds for everyone else's data, and the state's size is reported apart
        with pytest.raises(ClientError) as full:
            c.client().put_object(Bucket="hoard", Key="admin-extra", Body=b"x" * 10)
        assert full.value.response["Error"]["Code"] == "QuotaExceeded"
        after = json.loads(_ok(c.cli("storage", "status", "--json")))
        assert after["used"] == 1_000_000
        assert after["system_used"] > status["system_used"]
        system_row = next(b for b in after["buckets"] if b["name"] == SYSTEM)
        assert after["system_used"] == system_row["used"] + system_row["multipart_used"]
        text = _ok(c.cli("storage", "status"))
        assert "coordinator state" in text and "not counted in max_size" in text
        assert _ok(c.cli("storage", "verify"))
    finally:
        c.stop()


def test_the_system_bucket_cannot_be_given_a_quota(coordinator) -> None:
    res = coordinator.cli("bucket", "quota", "set", SYSTEM, "1KB")
    assert res.returncode != 0
    assert "InvalidArgument" in res.stderr and "cannot have a quota" in res.stderr
    assert "Traceback" not in res.stderr
    r = requests.put(
        f"http://127.0.0.1:{coordinator.port}/api/buckets/{SYSTEM}/quota",
        json={"quota": 1},
        auth=("admin", coordinator.token),
    )
    assert r.status_code == 400
    assert r.json() == {"error": "InvalidArgument", "message": "The coordinator's own bucket cannot have a quota."}
    usage = json.loads(_ok(coordinator.cli("bucket", "usage", SYSTEM, "--json")))
    assert usage["quota"] is None
    # the coordinator's writes go on (a new peer is a record in the system bucket)
    assert _add_peer(coordinator, "after-refused-quota")["peer_id"]
