"""The admin API against hostile documents: every JSON body is checked by a strict schema (wrong types,
unknown or missing fields, nested junk, huge strings, deep nesting) and refused with a 400 that names
the field, never a 500, changing nothing; and a restore archive that inflates to far more than it
weighs (a gzip bomb) is refused without the coordinator's memory growing by it."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from botocore.auth import HmacV1Auth, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from conftest import start_coordinator, tree_rss

DEEP = 100_000  # far past any recursion limit of a recursive-descent parser
HUGE = "x" * 200_000


@pytest.fixture(scope="module")
def target(coordinator) -> dict[str, str]:
    """A bucket and a peer the endpoints with a name in their path act on."""
    bucket = f"h-{uuid.uuid4().hex[:12]}"
    coordinator.client().create_bucket(Bucket=bucket)
    res = coordinator.cli("peer", "add", "target", "--json")
    assert res.returncode == 0, res.stderr
    return {"bucket": bucket, "peer": json.loads(res.stdout)["peer_id"]}


def call(coordinator, method: str, path: str, body: bytes) -> requests.Response:
    return requests.request(
        method,
        f"http://127.0.0.1:{coordinator.port}/api/{path}",
        data=body,
        headers={"content-type": "application/json"},
        auth=("admin", coordinator.token),
        timeout=60,
    )


def snapshot(coordinator) -> dict:
    auth = ("admin", coordinator.token)
    base = f"http://127.0.0.1:{coordinator.port}/api"
    return {
        "peers": requests.get(f"{base}/peers", auth=auth).json(),
        "buckets": sorted(
            (b["name"], b["quota"]) for b in requests.get(f"{base}/buckets", auth=auth).json()["buckets"]
        ),
        "network": requests.get(f"{base}/network", auth=auth).json(),
        "shares": requests.get(f"{base}/shares", auth=auth).json(),
    }


# endpoint -> (method, path template, a valid document, bad documents with the field the error must name)
ENDPOINTS: dict[str, tuple[str, str]] = {
    "add peer": ("POST", "peers"),
    "create bucket": ("POST", "buckets"),
    "set quota": ("PUT", "buckets/{bucket}/quota"),
    "set network": ("PUT", "network"),
    "add share": ("POST", "shares"),
    "revoke peer": ("POST", "peers/{peer}/revoke"),
    "scrub": ("POST", "storage/scrub"),
}

BAD: list[tuple[str, object, str]] = [
    # (endpoint, document, what the message must name)
    ("add peer", {"name": "sneaky", "admin": "false"}, "admin"),
    ("add peer", {"name": "sneaky", "admin": 1}, "admin"),
    ("add peer", {"name": 12}, "name"),
    ("add peer", {"admin": True}, "name"),
    ("add peer", {"name": "sneaky", "role": "admin"}, "role"),
    ("add peer", {"name": ["sneaky"]}, "name"),
    ("add peer", {"name": {"a": {"b": [1, 2, {"c": None}]}}}, "name"),
    ("add peer", {"name": HUGE}, "name"),
    ("add peer", {"name": "line\nforged"}, "name"),
    ("add peer", {"name": ""}, "name"),
    ("create bucket", {"name": 5}, "name"),
    ("create bucket", {}, "name"),
    ("create bucket", {"name": "ok-name", "acl": "public"}, "acl"),
    ("create bucket", {"name": HUGE}, "name"),
    ("set quota", {"quota": "1000"}, "quota"),
    ("set quota", {"quota": True}, "quota"),
    ("set quota", {"quota": 1.5}, "quota"),
    ("set quota", {"quota": -1}, "quota"),
    ("set quota", {"quota": 2**70}, "quota"),
    ("set quota", {}, "quota"),
    ("set quota", {"quota": 10, "hard": True}, "hard"),
    ("set network", {"key": "mesh_name"}, "value"),
    ("set network", {"key": "mesh_name", "value": 7}, "value"),
    ("set network", {"key": ["mesh_name"], "value": "x"}, "key"),
    ("set network", {"key": "mesh_name", "value": HUGE}, "value"),
    ("set network", {"key": "mesh_name", "value": "x", "force": True}, "force"),
    ("add share", {"name": "s", "bucket": "b", "peers": "peer-1"}, "peers"),
    ("add share", {"name": "s", "bucket": "b", "peers": [1]}, "peers.0"),
    ("add share", {"name": "s", "bucket": "b", "read_only": "yes"}, "read_only"),
    ("add share", {"name": "s"}, "bucket"),
    ("add share", {"name": "s", "bucket": "b", "path": {"deep": [[["x"]]]}}, "path"),
    ("add share", {"name": "s", "bucket": "b", "peers": ["p"] * 5000}, "peers"),
    ("revoke peer", {"really": True}, "really"),
    ("scrub", {"repair": True}, "repair"),
]


def _assert_refused(r: requests.Response, field: str | None, before: dict, coordinator) -> None:
    assert r.status_code == 400, (r.status_code, r.text[:500])
    doc = r.json()
    assert doc["error"] in ("InvalidRequest", "MalformedJSON"), doc
    if field is not None:
        assert doc["message"].startswith(f"{field}: "), doc
    assert len(doc["message"]) < 300, "the error must not echo the document back"
    assert snapshot(coordinator) == before


@pytest.mark.parametrize(("endpoint", "doc", "field"), BAD, ids=[f"{e}-{f}-{i}" for i, (e, _, f) in enumerate(BAD)])
def test_a_body_that_breaks_the_schema_is_a_400_naming_the_field(coordinator, target, endpoint, doc, field) -> None:
    method, path = ENDPOINTS[endpoint]
    before = snapshot(coordinator)
    r = call(coordinator, method, path.format(**target), json.dumps(doc).encode())
    _assert_refused(r, field, before, coordinator)


def test_admin_false_as_a_string_creates_no_admin_and_no_peer(coordinator) -> None:
    name = f"string-false-{uuid.uuid4().hex[:6]}"
    r = call(coordinator, "POST", "peers", json.dumps({"name": name, "admin": "false"}).encode())
    assert r.status_code == 400
    assert r.json() == {"error": "InvalidRequest", "message": "admin: Input should be a valid boolean"}
    assert "token" not in r.text
    listed = requests.get(f"http://127.0.0.1:{coordinator.port}/api/peers", auth=("admin", coordinator.token))
    assert name not in listed.text
    # the real boolean still works, and makes an ordinary peer
    r = call(coordinator, "POST", "peers", json.dumps({"name": name, "admin": False}).encode())
    assert r.status_code == 201 and r.json()["role"] == "peer"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize(
    "body",
    [
        b"[" * DEEP + b"]" * DEEP,
        b'{"name": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        b'{"a":' * DEEP + b"1" + b"}" * DEEP,
        b"{not json",
        b"\xff\xfe",
        b'["a list", "not an object"]',
        b"42",
        b"null",
    ],
    ids=["deep-list", "deep-in-field", "deep-object", "broken", "not-utf8", "list", "number", "null"],
)
def test_malformed_or_deeply_nested_json_is_a_400_never_a_500(coordinator, target, endpoint, body) -> None:
    method, path = ENDPOINTS[endpoint]
    before = snapshot(coordinator)
    r = call(coordinator, method, path.format(**target), body)
    _assert_refused(r, None, before, coordinator)


def test_a_body_past_the_size_limit_is_refused_with_400(coordinator) -> None:
    before = snapshot(coordinator)
    r = call(coordinator, "POST", "peers", json.dumps({"name": "x" * (2 * 1024 * 1024)}).encode())
    assert r.status_code == 400 and r.json()["error"] == "EntityTooLarge"
    assert snapshot(coordinator) == before


def test_no_hostile_document_reached_a_handler_as_an_internal_error(coordinator) -> None:
    # runs after the tests above in this module: not one of them was logged as a failure
    assert "InternalError" not in coordinator.log()
    assert "Traceback" not in coordinator.log()
    assert "RecursionError" not in coordinator.log()


# ---- a gzip bomb given to restore ---------------------------------------------------------------


class _Zeros:
    """A file-like source of `size` zero bytes, so the test never holds them in memory."""

    def __init__(self, size: int) -> None:
        self.left = size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"\0" * n


def _bomb(path: Path, member_size: int) -> None:
    manifest = {
        "format": 1,
        "bucket": "_tunnelmesh",
        "created": time.time(),
        "objects": [{"key": "peers/bomb.json", "member": "objects/000001", "size": member_size, "sha256": "0" * 64}],
    }
    with tarfile.open(path, "w:gz", compresslevel=9) as tar:
        info = tarfile.TarInfo("objects/000001")
        info.size = member_size
        tar.addfile(info, _Zeros(member_size))
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, _Ball(data))


class _Ball:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out


def _peak_during(root: int, run) -> tuple[int, object]:
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(root))
            time.sleep(0.01)

    t = threading.Thread(target=sample)
    t.start()
    try:
        result = run()
    finally:
        done.set()
        t.join()
    return peak[0], result


def test_restore_of_a_gzip_bomb_is_refused_without_inflating_it_in_memory(coordinator, tmp_path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    _bomb(archive, 400 * 1024 * 1024)
    assert archive.stat().st_size < 1024 * 1024  # 400 MB of zeros in well under 1 MB
    before = snapshot(coordinator)
    baseline = tree_rss(coordinator.proc.pid)
    peak, res = _peak_during(coordinator.proc.pid, lambda: coordinator.cli("system", "restore", str(archive)))
    grew = peak - baseline
    print(f"RSS baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB, grew {grew / 2**20:.1f} MiB")
    assert grew < 64 * 1024 * 1024, f"the coordinator grew by {grew / 2**20:.0f} MiB while refusing the bomb"
    assert res.returncode != 0
    assert "InvalidArchive" in res.stderr and "Nothing was changed" in res.stderr
    assert "inflates to more than 256 MiB" in res.stderr  # it names the cap that was crossed
    assert "Traceback" not in res.stderr
    assert snapshot(coordinator) == before


def test_restore_refuses_a_member_past_the_member_cap_even_when_the_total_is_small(coordinator, tmp_path) -> None:
    archive = tmp_path / "big-member.tar.gz"
    _bomb(archive, 17 * 1024 * 1024)
    before = snapshot(coordinator)
    res = coordinator.cli("system", "restore", str(archive))
    assert res.returncode != 0
    assert "InvalidArchive" in res.stderr and "larger than 16 MiB" in res.stderr
    assert snapshot(coordinator) == before


def test_restore_refuses_tar_extension_headers_before_reading_them(coordinator, tmp_path) -> None:
    # tarfile reads a pax header whole into memory; the archive is refused before it gets the chance
    archive = tmp_path / "pax.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.pax_headers = {"comment": "z" * 2_000_000}
        data = b"{}"
        info.size = len(data)
        tar.addfile(info, _Ball(data))
    before = snapshot(coordinator)
    res = coordinator.cli("system", "restore", str(archive))
    assert res.returncode != 0
    assert "InvalidArchive" in res.stderr and "not a plain file" in res.stderr
    assert snapshot(coordinator) == before


# ---- only requests whose credential covers them whole reach the admin API -------------------------


def _peer_names(coordinator) -> set[str]:
    r = requests.get(f"http://127.0.0.1:{coordinator.port}/api/peers", auth=("admin", coordinator.token), timeout=30)
    return {p["name"] for p in r.json()["peers"]}


def _sigv4_headers(coordinator, method: str, url: str, body: bytes, signed_payload: bool) -> dict:
    req = AWSRequest(method=method, url=url, data=body)
    req.context["client_config"] = Config(s3={"payload_signing_enabled": signed_payload})
    S3SigV4Auth(Credentials("admin", coordinator.token), "s3", "us-east-1").add_auth(req)
    assert (req.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD") != signed_payload
    return dict(req.headers.items())


def test_a_presigned_s3_link_replayed_on_the_admin_api_creates_no_admin(coordinator) -> None:
    """Found in review: an admin's presigned link for bucket `api` (CreateMultipartUpload of key
    `peers` is `/api/peers?uploads...` on the root listener) sent to the main listener with a body of
    the holder's choosing made the holder a new admin: presigned bodies are unsigned."""
    root = coordinator.client(endpoint=coordinator.root_endpoint)
    body = json.dumps({"name": "evil", "admin": True}).encode()
    before = _peer_names(coordinator)
    for link in (
        root.generate_presigned_url("create_multipart_upload", Params={"Bucket": "api", "Key": "peers"}),
        coordinator.client(endpoint=coordinator.root_endpoint, signature_version="s3v4").generate_presigned_url(
            "create_multipart_upload", Params={"Bucket": "api", "Key": "peers"}
        ),
    ):
        path_and_query = link.split(str(coordinator.s3_port), 1)[1]
        r = requests.post(f"http://127.0.0.1:{coordinator.port}{path_and_query}", data=body, timeout=30)
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "AccessDenied"
    backup = coordinator.client(endpoint=coordinator.root_endpoint, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": "api", "Key": "system/backup"}
    )
    path_and_query = backup.split(str(coordinator.s3_port), 1)[1]
    r = requests.get(f"http://127.0.0.1:{coordinator.port}{path_and_query}", timeout=30)
    assert r.status_code == 403 and coordinator.token not in r.text
    assert _peer_names(coordinator) == before


@pytest.mark.parametrize(
    ("scheme", "allowed"),
    [("sigv4-signed-payload", True), ("sigv4-unsigned-payload", False), ("sigv2", False), ("bearer", True)],
)
def test_the_admin_api_takes_only_credentials_that_cover_the_whole_request(
    coordinator, scheme: str, allowed: bool
) -> None:
    url = f"http://127.0.0.1:{coordinator.port}/api/peers"
    body = json.dumps({"name": f"scheme-{uuid.uuid4().hex[:8]}"}).encode()
    if scheme == "sigv4-signed-payload":
        headers = _sigv4_headers(coordinator, "POST", url, body, signed_payload=True)
    elif scheme == "sigv4-unsigned-payload":
        headers = _sigv4_headers(coordinator, "POST", url, body, signed_payload=False)
    elif scheme == "sigv2":
        req = AWSRequest(method="POST", url=url, data=body)
        HmacV1Auth(Credentials("admin", coordinator.token)).add_auth(req)
        headers = dict(req.headers.items())
    else:
        headers = {"Authorization": f"Bearer {coordinator.token}"}
    r = requests.post(url, data=body, headers=headers, timeout=30)
    if allowed:
        assert r.status_code == 201, r.text
    else:
        assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), r.text
        assert json.loads(body)["name"] not in _peer_names(coordinator)


def _archive(path: Path, records: dict[str, bytes]) -> None:
    """A backup archive in the coordinator's own format holding exactly `records`."""
    entries = []
    with tarfile.open(path, "w:gz") as tar:
        for i, (key, data) in enumerate(records.items(), start=1):
            info = tarfile.TarInfo(f"objects/{i:06d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            entries.append(
                {"key": key, "member": info.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            )
        manifest = json.dumps({"format": 1, "bucket": "_tunnelmesh", "created": 0, "objects": entries}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))


def test_a_restored_archive_with_malformed_records_never_stops_the_coordinator(tmp_path) -> None:
    """Found in review: a network record whose `extra` was a string made /api/network answer 500 and
    the coordinator refuse to start again, with no way back but editing the database by hand."""
    c = start_coordinator(tmp_path)
    try:
        archive = tmp_path / "odd.tgz"
        _archive(
            archive,
            {
                "network/config.json": json.dumps({"mesh_name": ["not", "a", "string"], "extra": "ab"}).encode(),
                "shares/odd.json": b"[1, 2, 3]",
                "peers/peer-000000000001.json": json.dumps({"id": "peer-000000000001"}).encode(),
                "peers/peer-000000000002.json": b"{not json",
            },
        )
        assert c.cli("system", "restore", str(archive)).returncode == 0
        for path in ("network", "shares", "peers"):
            r = requests.get(f"http://127.0.0.1:{c.port}/api/{path}", auth=("admin", c.token), timeout=30)
            assert r.status_code == 200, (path, r.text)
        assert requests.get(f"http://127.0.0.1:{c.port}/api/network", auth=("admin", c.token), timeout=30).json() == {
            "mesh_name": None,
            "cidr": None,
            "coordinator_ip": None,
            "dns_name": None,
            "default_bucket_access": None,
            "default_public_access_block": None,
            "extra": {},
        }
        assert c.cli("network", "set", "mesh_name", "recovered").returncode == 0
    finally:
        c.stop()
    c = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        r = requests.get(f"http://127.0.0.1:{c.port}/api/network", auth=("admin", c.token), timeout=30)
        assert r.json()["mesh_name"] == "recovered"
    finally:
        c.stop()
