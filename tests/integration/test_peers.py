"""Peers against a real coordinator: a peer added with `tunnelmesh peer add` authenticates to the S3 API
with boto3 (SigV4), the AWS CLI v1, and curl/requests (Basic and Bearer); it may not touch the
`_tunnelmesh` system bucket in any way; after `peer revoke` every request it makes fails, presigned
URLs it signed earlier included; and the admin API is refused to it unless it was added with --admin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from conftest import bucket_exists

SYSTEM = "_tunnelmesh"
REGION = "us-east-1"


# ---- helpers -----------------------------------------------------------------------------------


def tm(coordinator, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `tunnelmesh` executable against `coordinator` with an explicit endpoint and token."""
    return coordinator.cli(*args, token=token, timeout=60)


def add_peer(coordinator, name: str, admin: bool = False) -> dict[str, str]:
    res = tm(coordinator, "peer", "add", name, "--json", *(["--admin"] if admin else []))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert set(doc) == {"peer_id", "token"}
    return doc


def peer_client(endpoint: str, peer: dict[str, str]):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=peer["peer_id"],
        aws_secret_access_key=peer["token"],
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


def basic(peer: dict[str, str]) -> tuple[str, str]:
    return (peer["peer_id"], peer["token"])


def bearer(peer: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {peer['token']}"}


def error_code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return e.value.response["Error"]["Code"]


def http_status(e: pytest.ExceptionInfo[ClientError]) -> int:
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"]


def new_bucket() -> str:
    return f"p-{uuid.uuid4().hex[:16]}"


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer(coordinator) -> dict[str, str]:
    """An ordinary (non-admin) peer, added with the CLI."""
    return add_peer(coordinator, "laptop")


@pytest.fixture(scope="module")
def peer_s3(coordinator, peer):
    return peer_client(coordinator.endpoint, peer)


@pytest.fixture(scope="module")
def peer_bucket(peer_s3) -> str:
    name = new_bucket()
    peer_s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory, peer) -> dict[str, str]:
    home = tmp_path_factory.mktemp("aws-peer-home")
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=peer["peer_id"],
        AWS_SECRET_ACCESS_KEY=peer["token"],
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(home / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        HOME=str(home),
    )
    return env


def aws(endpoint: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", endpoint, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# ---- a peer authenticates --------------------------------------------------------------------


def test_peer_added_with_cli_writes_reads_lists_and_deletes_with_boto3_sigv4(peer_s3, peer_bucket) -> None:
    peer_s3.put_object(Bucket=peer_bucket, Key="notes/a.txt", Body=b"hello from a peer")
    assert peer_s3.get_object(Bucket=peer_bucket, Key="notes/a.txt")["Body"].read() == b"hello from a peer"
    listed = peer_s3.list_objects_v2(Bucket=peer_bucket, Prefix="notes/")
    assert [o["Key"] for o in listed["Contents"]] == ["notes/a.txt"]
    assert peer_bucket in [b["Name"] for b in peer_s3.list_buckets()["Buckets"]]
    peer_s3.delete_object(Bucket=peer_bucket, Key="notes/a.txt")
    assert peer_s3.list_objects_v2(Bucket=peer_bucket, Prefix="notes/").get("KeyCount") == 0


def test_bucket_created_by_a_peer_is_owned_by_that_peer(coordinator, peer_s3, peer) -> None:
    name = new_bucket()
    peer_s3.create_bucket(Bucket=name)
    res = tm(coordinator, "bucket", "list", "--json")
    assert res.returncode == 0, res.stderr
    owners = {b["name"]: b["owner"] for b in json.loads(res.stdout)["buckets"]}
    assert owners[name] == peer["peer_id"]


def test_peer_works_on_the_root_s3_listener_too(coordinator, peer, peer_bucket) -> None:
    s3 = peer_client(coordinator.root_endpoint, peer)
    s3.put_object(Bucket=peer_bucket, Key="root-listener", Body=b"r")
    assert s3.get_object(Bucket=peer_bucket, Key="root-listener")["Body"].read() == b"r"


def test_peer_works_with_the_aws_cli(coordinator, aws_env, peer_bucket, tmp_path) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(os.urandom(5000))
    res = aws(coordinator.endpoint, aws_env, "s3", "cp", str(src), f"s3://{peer_bucket}/cli/up.bin")
    assert res.returncode == 0, res.stderr
    res = aws(coordinator.endpoint, aws_env, "s3", "ls", f"s3://{peer_bucket}/cli/")
    assert res.returncode == 0, res.stderr
    assert "up.bin" in res.stdout and "5000" in res.stdout
    dst = tmp_path / "down.bin"
    res = aws(coordinator.endpoint, aws_env, "s3", "cp", f"s3://{peer_bucket}/cli/up.bin", str(dst))
    assert res.returncode == 0, res.stderr
    assert dst.read_bytes() == src.read_bytes()
    res = aws(coordinator.endpoint, aws_env, "s3api", "list-objects-v2", "--bucket", peer_bucket, "--prefix", "cli/")
    assert res.returncode == 0, res.stderr
    assert [o["Key"] for o in json.loads(res.stdout)["Contents"]] == ["cli/up.bin"]


def test_peer_authenticates_with_curl_basic_and_bearer(coordinator, peer, peer_s3, peer_bucket, tmp_path) -> None:
    url = f"{coordinator.endpoint}/{peer_bucket}/curl.txt"
    body = tmp_path / "curl.txt"
    body.write_bytes(b"via curl basic")
    put = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", f"{peer['peer_id']}:{peer['token']}",
         "-T", str(body), url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert put.stdout == "200", put.stderr
    get = subprocess.run(
        ["curl", "-sS", "-f", "-H", f"Authorization: Bearer {peer['token']}", url],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert get.returncode == 0, get.stderr
    assert get.stdout == b"via curl basic"
    assert peer_s3.get_object(Bucket=peer_bucket, Key="curl.txt")["Body"].read() == b"via curl basic"


def test_peer_authenticates_with_requests_basic_and_bearer(coordinator, peer, peer_bucket) -> None:
    url = f"{coordinator.endpoint}/{peer_bucket}/req.txt"
    assert requests.put(url, data=b"basic put", auth=basic(peer)).status_code == 200
    r = requests.get(url, headers=bearer(peer))
    assert r.status_code == 200 and r.content == b"basic put"
    assert requests.put(url, data=b"bearer put", headers=bearer(peer)).status_code == 200
    r = requests.get(url, auth=basic(peer))
    assert r.status_code == 200 and r.content == b"bearer put"
    r = requests.get(f"{coordinator.endpoint}/{peer_bucket}?list-type=2", headers=bearer(peer))
    assert r.status_code == 200 and "<Key>req.txt</Key>" in r.text


def test_peer_with_a_wrong_token_is_refused_by_every_scheme(coordinator, peer, peer_bucket) -> None:
    wrong = {"peer_id": peer["peer_id"], "token": peer["token"][:-2] + ("xx" if peer["token"][-2:] != "xx" else "yy")}
    url = f"{coordinator.endpoint}/{peer_bucket}/"
    r = requests.get(url, auth=basic(wrong))
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
    r = requests.get(url, headers=bearer(wrong))
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
    with pytest.raises(ClientError) as e:
        peer_client(coordinator.endpoint, wrong).list_objects_v2(Bucket=peer_bucket)
    assert error_code(e) == "SignatureDoesNotMatch"
    # a token is bound to its peer id: another id with this token fails Basic
    r = requests.get(url, auth=("peer-000000000000", peer["token"]))
    assert r.status_code == 403


# ---- the system bucket -----------------------------------------------------------------------


def _system_ops(peer_bucket: str, record_key: str) -> list[tuple[str, object]]:
    return [
        ("GetObject", lambda s3: s3.get_object(Bucket=SYSTEM, Key=record_key)),
        ("HeadObject", lambda s3: s3.head_object(Bucket=SYSTEM, Key=record_key)),
        ("PutObject new key", lambda s3: s3.put_object(Bucket=SYSTEM, Key="peers/evil.json", Body=b"{}")),
        ("PutObject over a record", lambda s3: s3.put_object(Bucket=SYSTEM, Key=record_key, Body=b"{}")),
        ("DeleteObject", lambda s3: s3.delete_object(Bucket=SYSTEM, Key=record_key)),
        ("DeleteObjects", lambda s3: s3.delete_objects(Bucket=SYSTEM, Delete={"Objects": [{"Key": record_key}]})),
        ("ListObjects", lambda s3: s3.list_objects(Bucket=SYSTEM)),
        ("ListObjectsV2", lambda s3: s3.list_objects_v2(Bucket=SYSTEM)),
        ("HeadBucket", lambda s3: s3.head_bucket(Bucket=SYSTEM)),
        ("GetBucketLocation", lambda s3: s3.get_bucket_location(Bucket=SYSTEM)),
        ("CreateMultipartUpload", lambda s3: s3.create_multipart_upload(Bucket=SYSTEM, Key="peers/evil.json")),
        ("ListMultipartUploads", lambda s3: s3.list_multipart_uploads(Bucket=SYSTEM)),
        ("DeleteBucket", lambda s3: s3.delete_bucket(Bucket=SYSTEM)),
        (
            "CopyObject out of the system bucket",
            lambda s3: s3.copy_object(
                Bucket=peer_bucket, Key="stolen.json", CopySource={"Bucket": SYSTEM, "Key": record_key}
            ),
        ),
        (
            "CopyObject into the system bucket",
            lambda s3: s3.copy_object(
                Bucket=SYSTEM, Key="peers/evil.json", CopySource={"Bucket": peer_bucket, "Key": "seed"}
            ),
        ),
    ]


def _system_keys(coordinator) -> dict[str, str]:
    """Every key of _tunnelmesh with its ETag, as the admin sees them."""
    s3 = coordinator.client()
    return {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=SYSTEM).get("Contents", [])}


def test_peer_gets_access_denied_on_every_operation_on_the_system_bucket(
    coordinator, peer, peer_s3, peer_bucket
) -> None:
    record_key = f"peers/{peer['peer_id']}.json"
    peer_s3.put_object(Bucket=peer_bucket, Key="seed", Body=b'{"id": "evil"}')
    before = _system_keys(coordinator)
    assert record_key in before  # the operations below target a key that exists
    for name, op in _system_ops(peer_bucket, record_key):
        with pytest.raises(ClientError) as e:
            op(peer_s3)
        assert http_status(e) == 403, name
        if not name.startswith("Head"):  # HEAD responses carry no error document
            assert error_code(e) == "AccessDenied", name
    # the second listener (S3 at the root) enforces the same
    root_s3 = peer_client(coordinator.root_endpoint, peer)
    for name, op in _system_ops(peer_bucket, record_key):
        with pytest.raises(ClientError) as e:
            op(root_s3)
        assert http_status(e) == 403, f"root listener: {name}"
    # a presigned URL the peer signs for the system bucket is refused too
    for method in ("get_object", "put_object"):
        url = peer_s3.generate_presigned_url(method, Params={"Bucket": SYSTEM, "Key": record_key})
        r = requests.request("GET" if method == "get_object" else "PUT", url, data=b"{}" if "put" in method else None)
        assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text
        assert peer["token"] not in r.text
    assert _system_keys(coordinator) == before
    with pytest.raises(ClientError):
        peer_s3.head_object(Bucket=peer_bucket, Key="stolen.json")
    # the peer still authenticates: its record was neither overwritten nor deleted
    assert peer_s3.list_objects_v2(Bucket=peer_bucket, Prefix="seed")["KeyCount"] == 1


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("GET", "/_tunnelmesh/peers/{id}.json", ""),
        ("HEAD", "/_tunnelmesh/peers/{id}.json", ""),
        ("PUT", "/_tunnelmesh/peers/evil.json", ""),
        ("DELETE", "/_tunnelmesh/peers/{id}.json", ""),
        ("GET", "/_tunnelmesh", ""),
        ("GET", "/_tunnelmesh", "list-type=2"),
        ("HEAD", "/_tunnelmesh", ""),
        ("GET", "/_tunnelmesh", "location"),
        ("POST", "/_tunnelmesh/peers/evil.json", "uploads"),
    ],
)
@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_peer_is_denied_the_system_bucket_over_basic_and_bearer(coordinator, peer, scheme, method, path, query):
    before = _system_keys(coordinator)
    url = coordinator.endpoint + path.format(id=peer["peer_id"]) + (f"?{query}" if query else "")
    kw = {"auth": basic(peer)} if scheme == "basic" else {"headers": bearer(peer)}
    r = requests.request(method, url, data=b"{}" if method in ("PUT", "POST") else None, **kw)
    assert r.status_code == 403
    if method != "HEAD":
        assert "<Code>AccessDenied</Code>" in r.text
        assert '"token"' not in r.text and peer["token"] not in r.text
    assert _system_keys(coordinator) == before


def test_list_buckets_hides_the_system_bucket_from_a_peer_but_shows_it_to_an_admin(
    coordinator, peer_s3, peer_bucket
) -> None:
    peer_names = [b["Name"] for b in peer_s3.list_buckets()["Buckets"]]
    assert peer_bucket in peer_names
    assert SYSTEM not in peer_names
    admin_names = [b["Name"] for b in coordinator.client().list_buckets()["Buckets"]]
    assert SYSTEM in admin_names and peer_bucket in admin_names


def test_peer_cannot_create_a_bucket_named_like_the_system_bucket(peer_s3) -> None:
    with pytest.raises(ClientError) as e:
        peer_s3.create_bucket(Bucket=SYSTEM)
    assert error_code(e) == "AccessDenied"


def test_aws_cli_as_a_peer_cannot_list_the_system_bucket_nor_see_it(coordinator, aws_env) -> None:
    res = aws(coordinator.endpoint, aws_env, "s3", "ls", f"s3://{SYSTEM}/")
    assert res.returncode != 0
    assert "AccessDenied" in res.stderr
    res = aws(coordinator.endpoint, aws_env, "s3", "ls")
    assert res.returncode == 0, res.stderr
    assert SYSTEM not in res.stdout


def test_admin_peer_may_read_but_not_write_the_system_bucket(coordinator) -> None:
    admin_peer = add_peer(coordinator, "ops", admin=True)
    s3 = peer_client(coordinator.endpoint, admin_peer)
    key = f"peers/{admin_peer['peer_id']}.json"
    assert SYSTEM in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    record = json.loads(s3.get_object(Bucket=SYSTEM, Key=key)["Body"].read())
    assert record["role"] == "admin"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=SYSTEM, Key=key, Body=b"{}")
    assert error_code(e) == "AccessDenied"
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=SYSTEM, Key=key)
    assert error_code(e) == "AccessDenied"


# ---- revocation ------------------------------------------------------------------------------


def test_after_revoke_every_request_of_the_peer_fails_including_earlier_presigned_urls(
    coordinator, aws_env, tmp_path
) -> None:
    victim = add_peer(coordinator, "stolen-laptop")
    s3 = peer_client(coordinator.endpoint, victim)
    name = new_bucket()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"secret")
    presigned_get = s3.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"}, ExpiresIn=3600)
    presigned_put = s3.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "p"}, ExpiresIn=3600)
    url = f"{coordinator.endpoint}/{name}/k"
    # everything works before the revocation
    assert requests.get(presigned_get).content == b"secret"
    assert requests.get(url, auth=basic(victim)).status_code == 200
    assert requests.get(url, headers=bearer(victim)).status_code == 200
    env = dict(aws_env, AWS_ACCESS_KEY_ID=victim["peer_id"], AWS_SECRET_ACCESS_KEY=victim["token"])
    assert aws(coordinator.endpoint, env, "s3", "ls", f"s3://{name}/").returncode == 0

    res = tm(coordinator, "peer", "revoke", victim["peer_id"])
    assert res.returncode == 0, res.stderr
    assert victim["peer_id"] in res.stdout

    for method, target in [("GET", url), ("PUT", url), ("DELETE", url), ("GET", f"{coordinator.endpoint}/")]:
        for kw in ({"auth": basic(victim)}, {"headers": bearer(victim)}):
            r = requests.request(method, target, data=b"x" if method == "PUT" else None, **kw)
            assert r.status_code == 403, (method, target, kw)
            assert "<Code>AccessDenied</Code>" in r.text
    r = requests.get(presigned_get)
    assert r.status_code == 403 and b"secret" not in r.content
    assert "<Code>InvalidAccessKeyId</Code>" in r.text
    assert requests.put(presigned_put, data=b"x").status_code == 403
    for op in (
        lambda: s3.get_object(Bucket=name, Key="k"),
        lambda: s3.put_object(Bucket=name, Key="k2", Body=b"x"),
        lambda: s3.list_objects_v2(Bucket=name),
        lambda: s3.list_buckets(),
        lambda: s3.delete_object(Bucket=name, Key="k"),
    ):
        with pytest.raises(ClientError) as e:
            op()
        assert error_code(e) == "InvalidAccessKeyId"
    res = aws(coordinator.endpoint, env, "s3", "ls", f"s3://{name}/")
    assert res.returncode != 0 and "InvalidAccessKeyId" in res.stderr
    # the root listener refuses it as well
    r = requests.get(f"{coordinator.root_endpoint}/{name}/k", headers=bearer(victim))
    assert r.status_code == 403
    # nothing the revoked peer tried was applied
    admin = coordinator.client()
    assert admin.get_object(Bucket=name, Key="k")["Body"].read() == b"secret"
    assert [o["Key"] for o in admin.list_objects_v2(Bucket=name)["Contents"]] == ["k"]


def test_revoked_peer_is_listed_with_its_revocation_time_and_other_peers_keep_working(
    coordinator, peer, peer_s3, peer_bucket
) -> None:
    gone = add_peer(coordinator, "gone")
    assert tm(coordinator, "peer", "revoke", gone["peer_id"]).returncode == 0
    res = tm(coordinator, "peer", "list", "--json")
    assert res.returncode == 0, res.stderr
    by_id = {p["id"]: p for p in json.loads(res.stdout)["peers"]}
    assert by_id[gone["peer_id"]]["revoked"]
    assert by_id[peer["peer_id"]]["revoked"] is None
    assert peer_s3.list_objects_v2(Bucket=peer_bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200


# ---- the admin API ---------------------------------------------------------------------------


ADMIN_ENDPOINTS: list[tuple[str, str, object]] = [
    ("GET", "/api/peers", None),
    ("POST", "/api/peers", {"name": "sneaky", "admin": True}),
    ("POST", "/api/peers/{id}/revoke", None),
    ("GET", "/api/buckets", None),
    ("POST", "/api/buckets", {"name": "sneaky-bucket"}),
    ("DELETE", "/api/buckets/{bucket}?force=true", None),
    ("GET", "/api/network", None),
    ("PUT", "/api/network", {"key": "mesh_name", "value": "hijacked"}),
    ("GET", "/api/shares", None),
    ("POST", "/api/shares", {"name": "sneaky", "bucket": "{bucket}", "path": "", "peers": [], "read_only": False}),
    ("DELETE", "/api/shares/anything", None),
    ("GET", "/api/system/backup", None),
    ("POST", "/api/system/restore", b"not an archive"),
]


def _admin_snapshot(coordinator) -> dict[str, object]:
    auth = ("admin", coordinator.token)
    base = f"http://127.0.0.1:{coordinator.port}/api"
    return {
        what: requests.get(f"{base}/{what}", auth=auth).json() for what in ("peers", "buckets", "network", "shares")
    }


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
def test_admin_api_refuses_a_non_admin_peer_with_403_and_changes_nothing(
    coordinator, peer, peer_bucket, scheme
) -> None:
    base = f"http://127.0.0.1:{coordinator.port}"
    kw = {"auth": basic(peer)} if scheme == "basic" else {"headers": bearer(peer)}
    before = _admin_snapshot(coordinator)
    for method, path, body in ADMIN_ENDPOINTS:
        url = base + path.format(id=peer["peer_id"], bucket=peer_bucket)
        if isinstance(body, dict):
            body = json.loads(json.dumps(body).replace("{bucket}", peer_bucket))
            r = requests.request(method, url, json=body, **kw)
        else:
            r = requests.request(method, url, data=body, **kw)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"] == "AccessDenied"
        assert peer["token"] not in r.text
    assert _admin_snapshot(coordinator) == before


def test_admin_api_refuses_a_peer_over_sigv4_too(coordinator, peer) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://127.0.0.1:{coordinator.port}/api/peers"
    req = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    SigV4Auth(Credentials(peer["peer_id"], peer["token"]), "s3", REGION).add_auth(req)
    r = requests.get(url, headers=dict(req.headers.items()))
    assert r.status_code == 403 and r.json()["error"] == "AccessDenied"


def test_cli_with_a_non_admin_peer_token_fails_with_one_line(coordinator, peer) -> None:
    res = tm(coordinator, "peer", "list", token=peer["token"])
    assert res.returncode != 0
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "AccessDenied" in lines[0]
    assert "Traceback" not in res.stderr


def test_peer_added_with_admin_may_call_the_admin_api(coordinator) -> None:
    ops = add_peer(coordinator, "ops-admin", admin=True)
    base = f"http://127.0.0.1:{coordinator.port}/api"
    r = requests.get(f"{base}/peers", headers=bearer(ops))
    assert r.status_code == 200
    assert ops["peer_id"] in [p["id"] for p in r.json()["peers"]]
    r = requests.get(f"{base}/network", auth=basic(ops))
    assert r.status_code == 200 and "mesh_name" in r.json()
    # and the CLI with its token manages the coordinator, e.g. adds a peer that then authenticates
    res = tm(coordinator, "peer", "add", "added-by-ops", "--json", token=ops["token"])
    assert res.returncode == 0, res.stderr
    child = json.loads(res.stdout)
    assert requests.get(f"{coordinator.endpoint}/", headers=bearer(child)).status_code == 200
    res = tm(coordinator, "peer", "list", "--json", token=ops["token"])
    assert res.returncode == 0, res.stderr
    listed = {p["id"]: p for p in json.loads(res.stdout)["peers"]}
    assert listed[ops["peer_id"]]["role"] == "admin"
    assert listed[child["peer_id"]]["role"] == "peer"


def test_a_peer_cannot_delete_a_bucket_it_did_not_create_nor_drop_a_quota_by_re_creating_it(
    coordinator,
    s3,
    peer_s3,
) -> None:
    """Found in the attacker's review: a peer deleted an admin's empty bucket and created it again,
    which dropped the quota the admin had set on it and made the peer its owner."""
    admins = new_bucket()
    s3.create_bucket(Bucket=admins)
    with pytest.raises(ClientError) as e:
        peer_s3.delete_bucket(Bucket=admins)
    assert (error_code(e), http_status(e)) == ("AccessDenied", 403)
    assert bucket_exists(s3, admins)

    # its own bucket, once an admin has set a quota on it, stays too
    own = new_bucket()
    peer_s3.create_bucket(Bucket=own)
    assert coordinator.cli("bucket", "quota", "set", own, "1000").returncode == 0
    with pytest.raises(ClientError) as e:
        peer_s3.delete_bucket(Bucket=own)
    assert error_code(e) == "AccessDenied"
    usage = json.loads(coordinator.cli("bucket", "usage", own, "--json").stdout)
    assert usage["quota"] == 1000

    # its own bucket without a quota it may delete, and an admin may delete any empty bucket
    mine = new_bucket()
    peer_s3.create_bucket(Bucket=mine)
    peer_s3.delete_bucket(Bucket=mine)
    assert not bucket_exists(s3, mine)
    s3.delete_bucket(Bucket=own)
    assert not bucket_exists(s3, own)
