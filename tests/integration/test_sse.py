"""SSE-S3 against real coordinators (docs/data-protection.md section 7): encrypted PUT, GET, ranged GET,
multipart, copies and bucket default encryption with boto3; what lands on disk; damaged blobs; the key file
(`tunnelmesh sse init/rotate/status`), its placement and mode, a rotation then a restart, and a key id the
metadata names but the key file lacks."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError, IncompleteReadError, ResponseStreamingError

from tests.conftest import Coordinator, start_coordinator, tunnelmesh_exe, wait_until
from tests.integration.test_admin_crash_campaign import kill_coordinator
from tunnelmesh.store.blobs import BlobStore
from tunnelmesh.store.rewrap import HOLD_ENV

MiB = 1024 * 1024
CHUNK = 64 * 1024
AES = "AES256"


def error(info: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = info.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


def body(n: int, seed: str = "x") -> bytes:
    """Recognisable, non-repeating bytes: a plaintext fragment of them must not show up on disk."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}-{i}".encode()).hexdigest().encode()
        i += 1
    return bytes(out[:n])


def sse_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
    return subprocess.run([tunnelmesh_exe(), "sse", *args], capture_output=True, text=True, timeout=60, env=env)


def new_key_file(d: Path) -> Path:
    d.mkdir(mode=0o700, exist_ok=True)
    path = d / "sse-keys.json"
    r = sse_cli("init", "--key-file", str(path))
    assert r.returncode == 0, r.stderr
    assert (path.stat().st_mode & 0o777) == 0o600
    return path


def with_keys(path: Path) -> str:
    return f"  sse_key_file: {path}\n"


def row(c: Coordinator, bucket: str, key: str) -> tuple[bytes | None, list, str | None, str | None]:
    """The object's row as stored: inline data, segments, wrapped key, key id."""
    return row_of(c.data_dir, bucket, key)


def row_of(data_dir: Path, bucket: str, key: str) -> tuple[bytes | None, list, str | None, str | None]:
    db = sqlite3.connect(f"file:{data_dir / 'meta.sqlite3'}?mode=ro", uri=True)
    try:
        r = db.execute("SELECT data, segments, sse, sse_kid FROM objects WHERE bucket=? AND key=?", (bucket, key))
        found = r.fetchone()
    finally:
        db.close()
    assert found is not None, (bucket, key)
    return found[0], json.loads(found[1]), found[2], found[3]


def pg_row(uri: str, bucket: str, key: str) -> tuple[bytes | None, list, str | None, str | None]:
    import psycopg

    with psycopg.connect(uri) as conn:
        r = conn.execute("SELECT data, segments, sse, sse_kid FROM objects WHERE bucket=%s AND key=%s", (bucket, key))
        found = r.fetchone()
    assert found is not None, (bucket, key)
    return found[0], json.loads(found[1]), found[2], found[3]


def stored_bytes(c: Coordinator, bucket: str, key: str) -> bytes:
    """Everything stored for the object: its row's data and every blob of it."""
    return stored_bytes_of(c.data_dir, bucket, key)


def stored_bytes_of(data_dir: Path, bucket: str, key: str, uri: str | None = None) -> bytes:
    data, segments, _, _ = row_of(data_dir, bucket, key) if uri is None else pg_row(uri, bucket, key)
    blobs = BlobStore(data_dir)
    return (data or b"") + b"".join(blobs.path(s[0]).read_bytes() for s in segments)


def sse_header(resp: dict) -> str | None:
    return resp["ResponseMetadata"]["HTTPHeaders"].get("x-amz-server-side-encryption")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    tmp = tmp_path_factory.mktemp("sse")
    c = start_coordinator(tmp, extra_yaml=with_keys(new_key_file(tmp / "keys")))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def s3k(keyed: Coordinator):
    return keyed.client()


@pytest.fixture
def kbucket(s3k) -> str:
    name = f"sse-{uuid.uuid4().hex[:12]}"
    s3k.create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize("size", [0, 100, 32 * 1024, 32 * 1024 + 1, 3 * CHUNK, MiB + 7])
def test_an_encrypted_put_reads_back_and_is_not_plaintext_on_disk(keyed, s3k, kbucket, size: int) -> None:
    """Terraform's `server_side_encryption = "AES256"` on an aws_s3_object: a PUT with the header, then GETs."""
    data = body(size)
    put = s3k.put_object(Bucket=kbucket, Key="k", Body=data, ServerSideEncryption=AES)
    assert sse_header(put) == AES
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'  # the plaintext's MD5, as S3 for SSE-S3
    got = s3k.get_object(Bucket=kbucket, Key="k")
    assert (got["Body"].read(), got["ServerSideEncryption"], got["ContentLength"]) == (data, AES, size)
    head = s3k.head_object(Bucket=kbucket, Key="k")
    assert (head["ServerSideEncryption"], head["ContentLength"], head["ETag"]) == (AES, size, put["ETag"])
    _, _, sealed, kid = row(keyed, kbucket, "k")
    assert sealed is not None and kid == "k1" and json.loads(sealed)["kid"] == "k1"
    stored = stored_bytes(keyed, kbucket, "k")
    assert len(stored) == size + 16 * max(1, -(-size // CHUNK))
    assert size < 32 or data[:32] not in stored
    # a plaintext PUT of the same key answers no encryption and is stored as sent
    s3k.put_object(Bucket=kbucket, Key="k", Body=data)
    assert sse_header(s3k.head_object(Bucket=kbucket, Key="k")) is None
    assert row(keyed, kbucket, "k")[2:] == (None, None) and stored_bytes(keyed, kbucket, "k") == data


def test_ranged_gets_across_chunk_borders_read_the_plaintext(s3k, kbucket) -> None:
    data = body(5 * CHUNK + 123)
    s3k.put_object(Bucket=kbucket, Key="r", Body=data, ServerSideEncryption=AES)
    ranges = [(0, 0), (CHUNK - 1, CHUNK), (CHUNK - 5, 3 * CHUNK + 5), (CHUNK, 2 * CHUNK - 1), (5 * CHUNK, None)]
    ranges += [(0, None), (123, 4 * CHUNK + 1), (len(data) - 1, None)]
    for first, last in ranges:
        spec = f"bytes={first}-{'' if last is None else last}"
        got = s3k.get_object(Bucket=kbucket, Key="r", Range=spec)
        end = len(data) if last is None else last + 1
        assert got["Body"].read() == data[first:end], spec
        assert got["ContentRange"] == f"bytes {first}-{end - 1}/{len(data)}"
    got = s3k.get_object(Bucket=kbucket, Key="r", Range="bytes=-70000")
    assert got["Body"].read() == data[-70000:]


def test_an_encrypted_multipart_upload_encrypts_every_part(keyed, s3k, kbucket) -> None:
    parts = [body(5 * MiB, "p1"), body(CHUNK + 3, "p2")]
    up = s3k.create_multipart_upload(Bucket=kbucket, Key="mp", ServerSideEncryption=AES)
    assert up["ServerSideEncryption"] == AES
    done = []
    for i, p in enumerate(parts, 1):
        r = s3k.upload_part(Bucket=kbucket, Key="mp", UploadId=up["UploadId"], PartNumber=i, Body=p)
        assert r["ServerSideEncryption"] == AES and r["ETag"] == f'"{hashlib.md5(p).hexdigest()}"'
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    r = s3k.complete_multipart_upload(
        Bucket=kbucket, Key="mp", UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )
    assert r["ServerSideEncryption"] == AES
    whole = b"".join(parts)
    got = s3k.get_object(Bucket=kbucket, Key="mp")
    assert got["Body"].read() == whole and got["ServerSideEncryption"] == AES
    part2 = s3k.get_object(Bucket=kbucket, Key="mp", PartNumber=2)
    assert part2["Body"].read() == parts[1]
    across = s3k.get_object(Bucket=kbucket, Key="mp", Range=f"bytes={5 * MiB - 10}-{5 * MiB + CHUNK + 1}")
    assert across["Body"].read() == whole[5 * MiB - 10 : 5 * MiB + CHUNK + 2]
    stored = stored_bytes(keyed, kbucket, "mp")
    assert len(stored) == len(whole) + 16 * (80 + 2) and parts[0][:64] not in stored and parts[1][:64] not in stored


def test_copies_decrypt_the_source_and_take_the_destinations_encryption(keyed, s3k, kbucket) -> None:
    small, big = body(1000, "s"), body(3 * CHUNK + 1, "b")
    s3k.put_object(Bucket=kbucket, Key="plain", Body=big)
    s3k.put_object(Bucket=kbucket, Key="enc", Body=big, ServerSideEncryption=AES)
    s3k.put_object(Bucket=kbucket, Key="enc-small", Body=small, ServerSideEncryption=AES)
    src = {"Bucket": kbucket, "Key": "enc"}
    # encrypted -> plaintext (a copy never takes the source's encryption, as on S3)
    r = s3k.copy_object(Bucket=kbucket, Key="c1", CopySource=src)
    assert sse_header(r) is None and stored_bytes(keyed, kbucket, "c1") == big
    # plaintext -> encrypted, encrypted -> encrypted (a new data key), an inline one
    r = s3k.copy_object(
        Bucket=kbucket, Key="c2", CopySource={"Bucket": kbucket, "Key": "plain"}, ServerSideEncryption=AES
    )
    assert sse_header(r) == AES
    s3k.copy_object(Bucket=kbucket, Key="c3", CopySource=src, ServerSideEncryption=AES)
    s3k.copy_object(
        Bucket=kbucket, Key="c4", CopySource={"Bucket": kbucket, "Key": "enc-small"}, ServerSideEncryption=AES
    )
    for key, want in (("c2", big), ("c3", big), ("c4", small)):
        got = s3k.get_object(Bucket=kbucket, Key=key)
        assert (got["Body"].read(), got["ServerSideEncryption"]) == (want, AES), key
        assert want[:64] not in stored_bytes(keyed, kbucket, key)
    assert row(keyed, kbucket, "c3")[2] != row(keyed, kbucket, "enc")[2]  # its own wrapped key
    # an object copied onto itself to encrypt it in place (S3 allows this when the encryption is asked)
    s3k.copy_object(
        Bucket=kbucket, Key="plain", CopySource={"Bucket": kbucket, "Key": "plain"}, ServerSideEncryption=AES
    )
    assert s3k.head_object(Bucket=kbucket, Key="plain")["ServerSideEncryption"] == AES
    # UploadPartCopy: a range of an encrypted source into an encrypted upload, and into a plaintext one
    for enc in (True, False):
        extra = {"ServerSideEncryption": AES} if enc else {}
        up = s3k.create_multipart_upload(Bucket=kbucket, Key=f"upc-{enc}", **extra)
        r = s3k.upload_part_copy(
            Bucket=kbucket,
            Key=f"upc-{enc}",
            UploadId=up["UploadId"],
            PartNumber=1,
            CopySource=src,
            CopySourceRange=f"bytes={CHUNK - 3}-{2 * CHUNK + 2}",
        )
        s3k.complete_multipart_upload(
            Bucket=kbucket,
            Key=f"upc-{enc}",
            UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["CopyPartResult"]["ETag"]}]},
        )
        got = s3k.get_object(Bucket=kbucket, Key=f"upc-{enc}")
        assert got["Body"].read() == big[CHUNK - 3 : 2 * CHUNK + 3]
        assert got.get("ServerSideEncryption") == (AES if enc else None)
        assert (big[CHUNK : CHUNK + 64] in stored_bytes(keyed, kbucket, f"upc-{enc}")) is not enc


def test_bucket_default_encryption_encrypts_every_write(keyed, s3k, kbucket) -> None:
    with pytest.raises(ClientError) as e:
        s3k.get_bucket_encryption(Bucket=kbucket)
    assert error(e) == (404, "ServerSideEncryptionConfigurationNotFoundError")
    conf = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": AES}}]}
    s3k.put_bucket_encryption(Bucket=kbucket, ServerSideEncryptionConfiguration=conf)
    got = s3k.get_bucket_encryption(Bucket=kbucket)["ServerSideEncryptionConfiguration"]
    assert got["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == AES
    small, big = body(10, "d"), body(200_000, "d")
    assert sse_header(s3k.put_object(Bucket=kbucket, Key="small", Body=small)) == AES
    assert sse_header(s3k.put_object(Bucket=kbucket, Key="big", Body=big)) == AES
    up = s3k.create_multipart_upload(Bucket=kbucket, Key="mp")
    assert up["ServerSideEncryption"] == AES
    s3k.abort_multipart_upload(Bucket=kbucket, Key="mp", UploadId=up["UploadId"])
    for key, want in (("small", small), ("big", big)):
        got = s3k.get_object(Bucket=kbucket, Key=key)
        assert (got["Body"].read(), got["ServerSideEncryption"]) == (want, AES)
        assert row(keyed, kbucket, key)[3] == "k1"
    # a read sending the header is refused, as on S3 (the object is decrypted for every reader without it)
    r = requests.head(
        f"{keyed.endpoint}/{kbucket}/small", headers={"x-amz-server-side-encryption": AES}, auth=("admin", keyed.token)
    )
    assert r.status_code == 400
    s3k.delete_bucket_encryption(Bucket=kbucket)
    with pytest.raises(ClientError) as e:
        s3k.get_bucket_encryption(Bucket=kbucket)
    assert error(e)[1] == "ServerSideEncryptionConfigurationNotFoundError"
    assert sse_header(s3k.put_object(Bucket=kbucket, Key="after", Body=small)) is None
    # SSE-KMS stays refused, as a configuration and as a header; an unknown algorithm is a bad request
    kms = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}
    with pytest.raises(ClientError) as e:
        s3k.put_bucket_encryption(Bucket=kbucket, ServerSideEncryptionConfiguration=kms)
    assert error(e) == (501, "NotImplemented")
    with pytest.raises(ClientError) as e:
        s3k.put_object(Bucket=kbucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms")
    assert error(e) == (501, "NotImplemented")
    with pytest.raises(ClientError) as e:
        s3k.put_object(Bucket=kbucket, Key="odd", Body=b"x", ServerSideEncryption="AES128")  # type: ignore[arg-type]
    assert error(e) == (400, "InvalidArgument")
    names = [o["Key"] for o in s3k.list_objects_v2(Bucket=kbucket).get("Contents", [])]
    assert "kms" not in names and "odd" not in names


@pytest.mark.parametrize("where", ["field", "head", "default"])
@pytest.mark.parametrize("size", [100, 100_000])
def test_a_form_upload_is_encrypted_when_asked_or_by_default(keyed, s3k, kbucket, where: str, size: int) -> None:
    if where == "default":
        conf = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": AES}}]}
        s3k.put_bucket_encryption(Bucket=kbucket, ServerSideEncryptionConfiguration=conf)
    fields = {"x-amz-server-side-encryption": AES} if where == "field" else {}
    form = keyed.client(signature_version="s3v4").generate_presigned_post(
        kbucket, "form", Fields=fields, Conditions=[fields] if fields else []
    )
    data = body(size, "form")
    parts = [(n, (None, v)) for n, v in form["fields"].items()] + [("file", ("f", data, "text/plain"))]
    head = {"x-amz-server-side-encryption": AES} if where == "head" else {}
    r = requests.post(form["url"], files=parts, headers=head, timeout=60)
    assert r.status_code == 204, r.text
    assert r.headers.get("x-amz-server-side-encryption") == AES
    got = s3k.get_object(Bucket=kbucket, Key="form")
    assert (got["Body"].read(), got["ServerSideEncryption"]) == (data, AES)
    assert data[:64] not in stored_bytes(keyed, kbucket, "form")


@pytest.mark.parametrize("size", [100, 100_000, 2 * MiB])
def test_a_damaged_encrypted_object_is_never_served_and_is_logged(keyed, s3k, kbucket, size: int) -> None:
    """Up to 256 KiB the range is decrypted before the response starts: 500 InternalError. A larger one is
    checked chunk by chunk as it streams: the response is cut where the damage is (never a wrong byte)."""
    data = body(size, "t")
    s3k.put_object(Bucket=kbucket, Key="t", Body=data, ServerSideEncryption=AES)
    _, segments, _, _ = row(keyed, kbucket, "t")
    if segments:
        path = BlobStore(keyed.data_dir).path(segments[0][0])
        stored = bytearray(path.read_bytes())
        stored[-20] ^= 0x01  # in the last chunk
        os.chmod(path, 0o600)
        path.write_bytes(bytes(stored))
    else:
        db = sqlite3.connect(keyed.data_dir / "meta.sqlite3")
        db.execute("UPDATE objects SET data = substr(data, 1, length(data) - 1) WHERE bucket=? AND key='t'", (kbucket,))
        db.commit()
        db.close()
    if size <= 256 * 1024:
        with pytest.raises(ClientError) as e:
            s3k.get_object(Bucket=kbucket, Key="t")
        assert error(e) == (500, "InternalError")
    else:
        got = s3k.get_object(Bucket=kbucket, Key="t")
        assert got["ContentLength"] == size  # the first MiB of chunks is good: the response has started
        with pytest.raises((IncompleteReadError, ResponseStreamingError)):
            got["Body"].read()
        # the chunks before the damaged one are served: a range that ends before it reads fine
        ok = s3k.get_object(Bucket=kbucket, Key="t", Range="bytes=0-299999")["Body"].read()
        assert ok == data[:300_000]
    keyed.wait_for_log(rf"DAMAGED OBJECT '{kbucket}/t'")


def test_status_counts_rows_per_key_and_the_scrub_checks_encrypted_objects(keyed, s3k, kbucket) -> None:
    before = json.loads(keyed.cli("sse", "status", "--json").stdout)["rows"].get("k1", 0)
    for i, size in enumerate((10, 200_000)):
        s3k.put_object(Bucket=kbucket, Key=f"s{i}", Body=body(size), ServerSideEncryption=AES)
    up = s3k.create_multipart_upload(Bucket=kbucket, Key="pending", ServerSideEncryption=AES)
    r = keyed.cli("sse", "status", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["enabled"], d["active"], d["keys"]) == (True, "k1", ["k1"])
    assert d["rows"]["k1"] == before + 3
    assert "k1:" in keyed.cli("sse", "status").stdout
    s3k.abort_multipart_upload(Bucket=kbucket, Key="pending", UploadId=up["UploadId"])
    scrub = keyed.cli("storage", "scrub", "--json", timeout=300)
    rotten = [x for x in json.loads(scrub.stdout)["rotten"] if x["bucket"] == kbucket]
    assert rotten == [], rotten


# ---- the key file: placement, rotation, missing keys ----------------------------------------------


def test_without_a_key_file_an_encrypted_write_is_refused_and_nothing_is_stored(coordinator, s3, bucket) -> None:
    for size in (10, 100_000):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="k", Body=b"x" * size, ServerSideEncryption=AES)
        assert error(e) == (501, "NotImplemented")
        assert "sse_key_file" in e.value.response["Error"]["Message"]
    conf = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": AES}}]}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=conf)
    assert error(e) == (501, "NotImplemented")
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="k", ServerSideEncryption=AES)
    assert error(e) == (501, "NotImplemented")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    r = coordinator.cli("sse", "status")
    assert r.returncode == 0 and "server-side encryption: off" in r.stdout, r.stdout + r.stderr


def _refused(tmp: Path, extra: str, data_dir: Path | None = None) -> str:
    """Start a coordinator that must refuse to: its exit code 2 and its message."""
    with pytest.raises(RuntimeError) as e:
        start_coordinator(tmp, extra_yaml=extra, data_dir=data_dir).stop()
    assert "coordinator exited with 2" in str(e.value), str(e.value)
    return str(e.value)


def test_a_key_file_inside_the_data_dir_or_open_to_others_is_refused(tmp_path) -> None:
    inside = tmp_path / "data" / "keys.json"
    inside.parent.mkdir()
    assert "must not be inside the data dir" in _refused(tmp_path, with_keys(inside))
    r = sse_cli("init", "--key-file", str(inside), "--config", str(next(tmp_path.glob("coordinator-*.yaml"))))
    assert r.returncode == 2 and "must not be inside the data dir" in r.stderr and not inside.exists()
    keys = new_key_file(tmp_path / "keys")
    os.chmod(keys, 0o644)
    assert "it must be 0600" in _refused(tmp_path, with_keys(keys))
    assert "no such file" in _refused(tmp_path, with_keys(tmp_path / "none.json"))
    r = sse_cli("init", "--key-file", str(keys))
    assert r.returncode == 2 and "exists" in r.stderr


def test_rotation_restart_and_rewrap_then_the_old_key_can_leave_the_key_file(tmp_path) -> None:
    """Rotate; a restart reads the old objects (k1) and wraps new ones under k2; a key file without k1 is
    refused while rows need it (and `sse retire k1` too); the sse-rewrap duty moves every row (current,
    noncurrent, upload) to k2; then k1 is retired from the key file, which serves everything."""
    keys = new_key_file(tmp_path / "keys")
    data = {"inline": body(100, "o"), "blob": body(300_000, "o")}
    off = with_keys(keys) + "  sse_rewrap_interval: 0\n"
    c = start_coordinator(tmp_path, extra_yaml=off)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="rot")
        s3.put_bucket_versioning(Bucket="rot", VersioningConfiguration={"Status": "Enabled"})
        older = s3.put_object(Bucket="rot", Key="blob", Body=b"older", ServerSideEncryption=AES)["VersionId"]
        for key, value in data.items():
            s3.put_object(Bucket="rot", Key=key, Body=value, ServerSideEncryption=AES)
        up = s3.create_multipart_upload(Bucket="rot", Key="mp", ServerSideEncryption=AES)["UploadId"]
        part = body(5 * MiB, "mp")
        etag = s3.upload_part(Bucket="rot", Key="mp", UploadId=up, PartNumber=1, Body=part)["ETag"]
    finally:
        c.stop()
    old = json.loads(keys.read_text())
    r = sse_cli("rotate", "--key-file", str(keys))
    assert r.returncode == 0 and "k2" in r.stdout, r.stderr
    new = json.loads(keys.read_text())
    assert new["active"] == "k2" and new["keys"]["k1"] == old["keys"]["k1"] and (keys.stat().st_mode & 0o777) == 0o600
    c = start_coordinator(tmp_path, extra_yaml=off, data_dir=tmp_path / "data")
    try:
        c.wait_for_log(r"sse: key file .*active key k2; encrypted rows per key: k1: 4")
        s3 = c.client()
        for key, value in data.items():
            assert s3.get_object(Bucket="rot", Key=key)["Body"].read() == value
        s3.put_object(Bucket="rot", Key="later", Body=b"new", ServerSideEncryption=AES)
        assert row(c, "rot", "later")[3] == "k2" and row(c, "rot", "blob")[3] == "k1"
        assert json.loads(c.cli("sse", "status", "--json").stdout)["rows"] == {"k1": 4, "k2": 1}
        r = c.cli("sse", "retire", "k1", "--key-file", str(keys))
        assert r.returncode == 2 and "4 rows still use k1" in r.stderr, r.stdout + r.stderr
        r = c.cli("sse", "retire", "k2", "--key-file", str(keys))
        assert r.returncode == 2 and "active key" in r.stderr
        assert json.loads(keys.read_text()) == new
    finally:
        c.stop()
    # a key file that lost k1 (or none at all) refuses the start, naming the key and how many rows need it
    lost = tmp_path / "keys" / "lost.json"
    lost.write_text(json.dumps({"active": "k2", "keys": {"k2": new["keys"]["k2"]}}))
    os.chmod(lost, 0o600)
    msg = _refused(tmp_path, with_keys(lost), tmp_path / "data")
    assert "master keys missing here: k1 (4 rows); the key file" in msg
    assert "k1 (4 rows), k2 (1 rows)" in _refused(tmp_path, "", tmp_path / "data")
    # the duty re-wraps every k1 row (metadata only: the blobs are untouched)
    blob_before = stored_bytes_of(tmp_path / "data", "rot", "blob")
    c = start_coordinator(
        tmp_path, extra_yaml=with_keys(keys) + "  sse_rewrap_interval: 0.2\n", data_dir=tmp_path / "data"
    )
    try:
        c.wait_for_log(r"sse-rewrap: re-wrapped 4 data keys of master key k1 under k2")
        assert json.loads(c.cli("sse", "status", "--json").stdout)["rows"] == {"k2": 5}
        r = c.cli("sse", "retire", "k1", "--key-file", str(keys))
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(keys.read_text()) == {"active": "k2", "keys": {"k2": new["keys"]["k2"]}}
    finally:
        c.stop()
    assert stored_bytes_of(tmp_path / "data", "rot", "blob") == blob_before
    c = start_coordinator(tmp_path, extra_yaml=with_keys(keys), data_dir=tmp_path / "data")
    try:
        s3 = c.client()
        for key, value in {**data, "later": b"new"}.items():
            assert s3.get_object(Bucket="rot", Key=key)["Body"].read() == value
        assert s3.get_object(Bucket="rot", Key="blob", VersionId=older)["Body"].read() == b"older"
        s3.upload_part(Bucket="rot", Key="mp", UploadId=up, PartNumber=2, Body=b"tail")
        parts = [{"PartNumber": 1, "ETag": etag}, {"PartNumber": 2, "ETag": f'"{hashlib.md5(b"tail").hexdigest()}"'}]
        s3.complete_multipart_upload(Bucket="rot", Key="mp", UploadId=up, MultipartUpload={"Parts": parts})
        got = s3.get_object(Bucket="rot", Key="mp")
        assert (got["Body"].read(), got["ServerSideEncryption"]) == (part + b"tail", AES)
    finally:
        c.stop()


def test_an_encrypted_version_stays_readable_as_it_becomes_noncurrent_and_current_again(keyed, s3k, kbucket) -> None:
    s3k.put_bucket_versioning(Bucket=kbucket, VersioningConfiguration={"Status": "Enabled"})
    old, new = body(150_000, "v1"), b"plain v2"
    v1 = s3k.put_object(Bucket=kbucket, Key="v", Body=old, ServerSideEncryption=AES)["VersionId"]
    v2 = s3k.put_object(Bucket=kbucket, Key="v", Body=new)["VersionId"]
    got = s3k.get_object(Bucket=kbucket, Key="v", VersionId=v1)
    assert (got["Body"].read(), got["ServerSideEncryption"]) == (old, AES)
    assert (
        s3k.get_object(Bucket=kbucket, Key="v", Range="bytes=70000-70009", VersionId=v1)["Body"].read()
        == (old[70000:70010])
    )
    s3k.delete_object(Bucket=kbucket, Key="v", VersionId=v2)  # v1 is current again
    got = s3k.get_object(Bucket=kbucket, Key="v")
    assert (got["Body"].read(), got["ServerSideEncryption"], got["VersionId"]) == (old, AES, v1)


def test_a_rewrap_killed_between_pages_leaves_every_object_readable_and_finishes_after_a_restart(tmp_path) -> None:
    """SIGKILL (every process, as a power cut) after the duty's first page is committed: each row is under one
    key or the other, every object reads back, and the next start finishes the job."""
    keys = new_key_file(tmp_path / "keys")
    # one node id across the restarts (it is derived from the port otherwise): the duty's lease is the node's
    off = with_keys(keys) + "  node_id: n1\n  sse_rewrap_interval: 0\n"
    data = {f"o{i}": body(100 if i % 2 else 70_000, f"k{i}") for i in range(6)}
    c = start_coordinator(tmp_path, extra_yaml=off)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="kill")
        for key, value in data.items():
            s3.put_object(Bucket="kill", Key=key, Body=value, ServerSideEncryption=AES)
    finally:
        c.stop()
    assert sse_cli("rotate", "--key-file", str(keys)).returncode == 0
    hold = tmp_path / "hold"
    hold.mkdir()
    on = with_keys(keys) + "  node_id: n1\n  sse_rewrap_interval: 0.2\n"
    c = start_coordinator(tmp_path, extra_yaml=on, data_dir=tmp_path / "data", env={HOLD_ENV: str(hold)})
    wait_until("the first page re-wrapped", lambda: (hold / "page-1").exists())
    kill_coordinator(c)
    kids = [row_of(tmp_path / "data", "kill", k)[3] for k in data]
    assert sorted(kids) == ["k1"] * 4 + ["k2"] * 2  # one page of two rows committed, no more
    c = start_coordinator(tmp_path, extra_yaml=on, data_dir=tmp_path / "data")
    try:
        c.wait_for_log(r"sse-rewrap: re-wrapped 4 data keys of master key k1 under k2")
        s3 = c.client()
        for key, value in data.items():
            assert s3.get_object(Bucket="kill", Key=key)["Body"].read() == value
        assert json.loads(c.cli("sse", "status", "--json").stdout)["rows"] == {"k2": 6}
    finally:
        c.stop()


def test_sse_on_postgresql_metadata_rotates_and_rewraps(tmp_path) -> None:
    """The same on PostgreSQL metadata (its migration, the start-up key check, sealed rows and their reseal)."""
    from pg_server import PrivateServer

    server = PrivateServer()
    try:
        uri = server.database("tm_sse", "u_tm_sse", f"pw{uuid.uuid4().hex[:12]}")
        env = {"TUNNELMESH_S3_METADATA": uri}
        keys = new_key_file(tmp_path / "keys")
        base = with_keys(keys) + "  node_id: n1\n"
        data = {"inline": body(100, "pg"), "blob": body(200_000, "pg")}
        c = start_coordinator(tmp_path, extra_yaml=base + "  sse_rewrap_interval: 0\n", env=env)
        try:
            s3 = c.client()
            s3.create_bucket(Bucket="pgsse")
            for key, value in data.items():
                s3.put_object(Bucket="pgsse", Key=key, Body=value, ServerSideEncryption=AES)
                got = s3.get_object(Bucket="pgsse", Key=key)
                assert (got["Body"].read(), got["ServerSideEncryption"]) == (value, AES)
            assert data["blob"][:64] not in stored_bytes_of(c.data_dir, "pgsse", "blob", uri)
        finally:
            c.stop()
        assert sse_cli("rotate", "--key-file", str(keys)).returncode == 0
        lost = tmp_path / "keys" / "lost.json"
        ring = json.loads(keys.read_text())
        lost.write_text(json.dumps({"active": "k2", "keys": {"k2": ring["keys"]["k2"]}}))
        os.chmod(lost, 0o600)
        with pytest.raises(RuntimeError, match=r"exited with 2(.|\n)*k1 \(2 rows\)"):
            start_coordinator(tmp_path, extra_yaml=with_keys(lost) + "  node_id: n1\n", env=env).stop()
        c = start_coordinator(tmp_path, extra_yaml=base + "  sse_rewrap_interval: 0.2\n", env=env)
        try:
            c.wait_for_log(r"sse-rewrap: re-wrapped 2 data keys of master key k1 under k2")
            assert json.loads(c.cli("sse", "status", "--json").stdout)["rows"] == {"k2": 2}
            s3 = c.client()
            for key, value in data.items():
                assert s3.get_object(Bucket="pgsse", Key=key)["Body"].read() == value
        finally:
            c.stop()
    finally:
        server.close()
