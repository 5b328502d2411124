"""s3cmd 2.4.0 against the root S3 listener of a real coordinator.

s3cmd runs as a subprocess with its own config file (path-style: host_bucket has no %(bucket)s).
It runs with --debug so each test can check which signature version was actually used: s3cmd
silently retries with SigV2 after some SigV4 failures, which would otherwise hide SigV4 bugs.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import bucket_exists

MiB = 1024 * 1024
S3CMD = Path(sys.executable).with_name("s3cmd")


def new_bucket_name() -> str:
    return f"s3cmd-{uuid.uuid4().hex[:16]}"


def write_config(path: Path, coordinator, signature_v2: bool) -> Path:
    host = f"127.0.0.1:{coordinator.s3_port}"
    path.write_text(
        "[default]\n"
        "access_key = admin\n"
        f"secret_key = {coordinator.token}\n"
        f"host_base = {host}\n"
        f"host_bucket = {host}\n"
        "use_https = False\n"
        f"signature_v2 = {signature_v2}\n"
        "bucket_location = us-east-1\n"
        "progress_meter = False\n"
    )
    return path


class S3cmd:
    def __init__(self, coordinator, home: Path, signature_v2: bool) -> None:
        self.coordinator = coordinator
        self.home = home
        self.signature_v2 = signature_v2
        self.config = write_config(home / f"s3cfg-v{'2' if signature_v2 else '4'}", coordinator, signature_v2)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3CMD_"))}
        self.env["HOME"] = str(home)

    def __call__(self, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
        cmd = [sys.executable, str(S3CMD), "-c", str(self.config), "--debug", *args]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=300, cwd=cwd)
        if check:
            assert proc.returncode == 0, (
                f"s3cmd {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                f"stderr (tail):\n{proc.stderr[-6000:]}\ncoordinator log tail:\n{self.coordinator.log()[-4000:]}"
            )
        # The signature version actually used: never a silent fallback from v4 to v2.
        assert "Falling back to signature v2" not in proc.stderr
        if self.signature_v2:
            assert "Using signature v4" not in proc.stderr
        else:
            assert "Using signature v2" not in proc.stderr
        return proc


@pytest.fixture(scope="module")
def s3cmd(coordinator, tmp_path_factory: pytest.TempPathFactory) -> S3cmd:
    return S3cmd(coordinator, tmp_path_factory.mktemp("s3cmd-home"), signature_v2=False)


@pytest.fixture(scope="module")
def s3cmd_v2(coordinator, tmp_path_factory: pytest.TempPathFactory) -> S3cmd:
    return S3cmd(coordinator, tmp_path_factory.mktemp("s3cmd-home-v2"), signature_v2=True)


def ls_lines(stdout: str) -> list[list[str]]:
    """`s3cmd ls` lines as fields; the last field is the whole s3:// URI even if the key has spaces."""
    rows = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        uri_at = line.index("s3://")
        rows.append([*line[:uri_at].split(), line[uri_at:]])
    return rows


def info_fields(stdout: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stdout.splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip()] = value.strip()
    return fields


def test_mb_creates_bucket_listed_by_ls_and_rb_removes_it(s3cmd: S3cmd, s3) -> None:
    name = new_bucket_name()
    proc = s3cmd("mb", f"s3://{name}")
    assert f"Bucket 's3://{name}/' created" in proc.stdout
    assert bucket_exists(s3, name)

    listed = [fields[-1] for fields in ls_lines(s3cmd("ls").stdout)]
    assert f"s3://{name}" in listed

    proc = s3cmd("rb", f"s3://{name}")
    assert f"Bucket 's3://{name}/' removed" in proc.stdout
    assert not bucket_exists(s3, name)
    assert f"s3://{name}" not in [fields[-1] for fields in ls_lines(s3cmd("ls").stdout)]


def test_put_small_file_then_ls_get_info_del(s3cmd: S3cmd, s3, tmp_path: Path) -> None:
    name = new_bucket_name()
    s3cmd("mb", f"s3://{name}")
    data = os.urandom(100_000)
    (tmp_path / "small.bin").write_bytes(data)

    proc = s3cmd("put", "small.bin", f"s3://{name}/docs/small.bin", cwd=tmp_path)
    assert f"'small.bin' -> 's3://{name}/docs/small.bin'" in proc.stdout
    head = s3.head_object(Bucket=name, Key="docs/small.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert "s3cmd-attrs" in head["Metadata"]

    top = ls_lines(s3cmd("ls", f"s3://{name}").stdout)
    assert top == [["DIR", f"s3://{name}/docs/"]]
    inner = ls_lines(s3cmd("ls", f"s3://{name}/docs/").stdout)
    assert len(inner) == 1
    assert inner[0][-1] == f"s3://{name}/docs/small.bin"
    assert inner[0][-2] == str(len(data))
    recursive = ls_lines(s3cmd("ls", "--recursive", f"s3://{name}").stdout)
    assert [fields[-1] for fields in recursive] == [f"s3://{name}/docs/small.bin"]

    proc = s3cmd("get", f"s3://{name}/docs/small.bin", "back.bin", cwd=tmp_path)
    assert f"'s3://{name}/docs/small.bin' -> 'back.bin'" in proc.stdout
    assert (tmp_path / "back.bin").read_bytes() == data

    info = info_fields(s3cmd("info", f"s3://{name}/docs/small.bin").stdout)
    assert info["File size"] == str(len(data))
    assert info["MD5 sum"] == hashlib.md5(data).hexdigest()
    assert "Last mod" in info

    proc = s3cmd("del", f"s3://{name}/docs/small.bin")
    assert f"delete: 's3://{name}/docs/small.bin'" in proc.stdout
    assert ls_lines(s3cmd("ls", "--recursive", f"s3://{name}").stdout) == []
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0

    s3cmd("rb", f"s3://{name}")
    assert not bucket_exists(s3, name)


def test_put_20mb_file_uploads_in_15mb_multipart_chunks_and_gets_back_identical(
    s3cmd: S3cmd, s3, tmp_path: Path
) -> None:
    name = new_bucket_name()
    s3cmd("mb", f"s3://{name}")
    data = os.urandom(20 * MiB)
    (tmp_path / "big.bin").write_bytes(data)

    proc = s3cmd("put", "big.bin", f"s3://{name}/big.bin", cwd=tmp_path)
    assert f"'big.bin' -> 's3://{name}/big.bin'" in proc.stdout
    assert "UploadId" in proc.stderr  # the debug log shows the multipart upload being initiated

    head = s3.head_object(Bucket=name, Key="big.bin")
    assert head["ContentLength"] == len(data)
    part_md5s = hashlib.md5(data[: 15 * MiB]).digest() + hashlib.md5(data[15 * MiB :]).digest()
    assert head["ETag"] == f'"{hashlib.md5(part_md5s).hexdigest()}-2"'

    proc = s3cmd("get", f"s3://{name}/big.bin", "back.bin", cwd=tmp_path)
    assert f"'s3://{name}/big.bin' -> 'back.bin'" in proc.stdout
    assert "MD5 signatures do not match" not in proc.stderr
    assert (tmp_path / "back.bin").read_bytes() == data

    info = info_fields(s3cmd("info", f"s3://{name}/big.bin").stdout)
    assert info["File size"] == str(len(data))
    # s3cmd stored the whole-file MD5 in x-amz-meta-s3cmd-attrs and reports it from there.
    assert info["MD5 sum"] == hashlib.md5(data).hexdigest()

    s3cmd("del", f"s3://{name}/big.bin")
    s3cmd("rb", f"s3://{name}")
    assert not bucket_exists(s3, name)


def test_put_and_get_keys_with_space_and_plus(s3cmd: S3cmd, s3, tmp_path: Path) -> None:
    name = new_bucket_name()
    s3cmd("mb", f"s3://{name}")
    data = b"odd key\n"
    (tmp_path / "f.txt").write_bytes(data)

    s3cmd("put", "f.txt", f"s3://{name}/a b+c.txt", cwd=tmp_path)
    assert s3.get_object(Bucket=name, Key="a b+c.txt")["Body"].read() == data
    assert [fields[-1] for fields in ls_lines(s3cmd("ls", f"s3://{name}").stdout)] == [f"s3://{name}/a b+c.txt"]

    s3cmd("get", f"s3://{name}/a b+c.txt", "out.txt", cwd=tmp_path)
    assert (tmp_path / "out.txt").read_bytes() == data

    s3cmd("del", f"s3://{name}/a b+c.txt")
    s3cmd("rb", f"s3://{name}")
    assert not bucket_exists(s3, name)


def test_info_on_bucket_reports_us_east_1_location(s3cmd: S3cmd) -> None:
    name = new_bucket_name()
    s3cmd("mb", f"s3://{name}")
    proc = s3cmd("info", f"s3://{name}")
    assert f"s3://{name}/ (bucket)" in proc.stdout
    assert info_fields(proc.stdout)["Location"] == "us-east-1"
    s3cmd("rb", f"s3://{name}")


def test_rb_of_non_empty_bucket_fails_with_bucket_not_empty(s3cmd: S3cmd, s3, tmp_path: Path) -> None:
    name = new_bucket_name()
    s3cmd("mb", f"s3://{name}")
    s3.put_object(Bucket=name, Key="keep", Body=b"x")

    proc = s3cmd("rb", f"s3://{name}", check=False)
    assert proc.returncode != 0
    assert "BucketNotEmpty" in proc.stderr
    assert bucket_exists(s3, name)

    s3cmd("del", f"s3://{name}/keep")
    s3cmd("rb", f"s3://{name}")
    assert not bucket_exists(s3, name)


def test_signature_v2_ls_put_get_round_trip(s3cmd_v2: S3cmd, s3, tmp_path: Path) -> None:
    name = new_bucket_name()
    s3.create_bucket(Bucket=name)
    data = os.urandom(50_000)
    (tmp_path / "v2.bin").write_bytes(data)

    assert f"s3://{name}" in [fields[-1] for fields in ls_lines(s3cmd_v2("ls").stdout)]

    proc = s3cmd_v2("put", "v2.bin", f"s3://{name}/sig v2+key.bin", cwd=tmp_path)
    assert "Using signature v2" in proc.stderr
    assert s3.get_object(Bucket=name, Key="sig v2+key.bin")["Body"].read() == data

    listed = ls_lines(s3cmd_v2("ls", f"s3://{name}").stdout)
    assert [fields[-1] for fields in listed] == [f"s3://{name}/sig v2+key.bin"]
    assert listed[0][-2] == str(len(data))

    s3cmd_v2("get", f"s3://{name}/sig v2+key.bin", "back.bin", cwd=tmp_path)
    assert (tmp_path / "back.bin").read_bytes() == data

    s3cmd_v2("del", f"s3://{name}/sig v2+key.bin")
    s3cmd_v2("rb", f"s3://{name}")
    assert not bucket_exists(s3, name)


def test_signature_v2_multipart_put_of_20mb_file_round_trips(s3cmd_v2: S3cmd, s3, tmp_path: Path) -> None:
    name = new_bucket_name()
    s3cmd_v2("mb", f"s3://{name}")
    data = os.urandom(20 * MiB)
    (tmp_path / "big.bin").write_bytes(data)

    s3cmd_v2("put", "big.bin", f"s3://{name}/v2 big+.bin", cwd=tmp_path)
    head = s3.head_object(Bucket=name, Key="v2 big+.bin")
    part_md5s = hashlib.md5(data[: 15 * MiB]).digest() + hashlib.md5(data[15 * MiB :]).digest()
    assert head["ETag"] == f'"{hashlib.md5(part_md5s).hexdigest()}-2"'

    s3cmd_v2("get", f"s3://{name}/v2 big+.bin", "back.bin", cwd=tmp_path)
    assert (tmp_path / "back.bin").read_bytes() == data

    info = info_fields(s3cmd_v2("info", f"s3://{name}/v2 big+.bin").stdout)
    assert info["File size"] == str(len(data))
    assert info["MD5 sum"] == hashlib.md5(data).hexdigest()

    s3cmd_v2("del", "--recursive", "--force", f"s3://{name}")
    s3cmd_v2("rb", f"s3://{name}")
    assert not bucket_exists(s3, name)


@pytest.mark.parametrize("signature_v2", [False, True], ids=["sigv4", "sigv2"])
def test_sync_cp_mv_modify_du_and_recursive_del(coordinator, s3, tmp_path: Path, signature_v2: bool) -> None:
    s3cmd = S3cmd(coordinator, tmp_path, signature_v2=signature_v2)
    name = new_bucket_name()
    s3cmd("mb", f"s3://{name}")
    tree = {"a b.txt": b"a", "sub/c+d.txt": b"cd", "sub/deeper/e.bin": os.urandom(3000)}
    src = tmp_path / "tree"
    for rel, content in tree.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(content)

    proc = s3cmd("sync", "tree/", f"s3://{name}/tree/", cwd=tmp_path)
    for rel in tree:
        assert f"'tree/{rel}' -> 's3://{name}/tree/{rel}'" in proc.stdout
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"]) == sorted(f"tree/{r}" for r in tree)

    proc = s3cmd("sync", "tree/", f"s3://{name}/tree/", cwd=tmp_path)
    assert "upload:" not in proc.stdout
    assert "0 local files to upload" in proc.stderr

    proc = s3cmd("cp", f"s3://{name}/tree/a b.txt", f"s3://{name}/copy of a.txt")
    assert f"remote copy: 's3://{name}/tree/a b.txt' -> 's3://{name}/copy of a.txt'" in proc.stdout
    assert s3.get_object(Bucket=name, Key="copy of a.txt")["Body"].read() == b"a"

    proc = s3cmd("mv", f"s3://{name}/copy of a.txt", f"s3://{name}/moved a.txt")
    assert f"move: 's3://{name}/copy of a.txt' -> 's3://{name}/moved a.txt'" in proc.stdout
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=name)["Contents"])
    assert "copy of a.txt" not in keys
    assert "moved a.txt" in keys

    # modify = copy onto itself with REPLACE and the new header.
    s3cmd("modify", "--add-header=x-amz-meta-label:blue", f"s3://{name}/moved a.txt")
    head = s3.head_object(Bucket=name, Key="moved a.txt")
    assert head["Metadata"]["label"] == "blue"
    assert s3.get_object(Bucket=name, Key="moved a.txt")["Body"].read() == b"a"

    du = s3cmd("du", f"s3://{name}").stdout.split()
    total = sum(len(c) for c in tree.values()) + 1
    assert du[:3] == [str(total), "4", "objects"]

    proc = s3cmd("del", "--recursive", "--force", f"s3://{name}")
    assert sorted(line for line in proc.stdout.splitlines() if line.startswith("delete:")) == sorted(
        f"delete: 's3://{name}/{k}'" for k in keys
    )
    assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
    s3cmd("rb", f"s3://{name}")
    assert not bucket_exists(s3, name)


def test_signurl_presigned_sigv2_url_serves_object_to_requests(s3cmd: S3cmd, s3, bucket: str) -> None:
    data = os.urandom(2048)
    s3.put_object(Bucket=bucket, Key="shared file+1.bin", Body=data)
    url = s3cmd("signurl", f"s3://{bucket}/shared file+1.bin", "+600").stdout.strip()
    assert "Signature=" in url and "Expires=" in url

    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == data

    tampered = url.replace("Expires=", "Expires=1")  # a different expiry than the one signed
    resp = requests.get(tampered, timeout=30)
    assert resp.status_code == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in resp.content


def test_default_bucket_location_us_discovers_region_with_get_bucket_location(
    coordinator, s3, tmp_path: Path, bucket: str
) -> None:
    s3cmd = S3cmd(coordinator, tmp_path, signature_v2=False)
    s3cmd.config.write_text(s3cmd.config.read_text().replace("bucket_location = us-east-1", "bucket_location = US"))
    lookups_before = coordinator.log().count("op=GetBucketLocation status=200")
    (tmp_path / "f.txt").write_bytes(b"via US")

    s3cmd("put", "f.txt", f"s3://{bucket}/f.txt", cwd=tmp_path)
    assert s3.get_object(Bucket=bucket, Key="f.txt")["Body"].read() == b"via US"
    assert [r[-1] for r in ls_lines(s3cmd("ls", f"s3://{bucket}").stdout)] == [f"s3://{bucket}/f.txt"]
    assert coordinator.log().count("op=GetBucketLocation status=200") > lookups_before


def test_ls_pages_through_more_than_one_thousand_keys_and_prefixes(s3cmd: S3cmd, s3) -> None:
    name = new_bucket_name()
    s3.create_bucket(Bucket=name)
    prefixes = [f"p{i:04d}/" for i in range(1003)]
    plain = ["a-first", "p0500", "zz last"]  # "p0500" sorts just before the prefix "p0500/"
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=name, Key=k, Body=b""), [p + "x" for p in prefixes] + plain))

    # Non-recursive: ListObjects v1 with delimiter over several pages (marker / NextMarker).
    rows = ls_lines(s3cmd("ls", f"s3://{name}/").stdout)
    dirs = [r[-1] for r in rows if r[0] == "DIR"]
    files = [r[-1] for r in rows if r[0] != "DIR"]
    assert dirs == [f"s3://{name}/{p}" for p in prefixes]
    assert sorted(files) == sorted(f"s3://{name}/{k}" for k in plain)

    recursive = [r[-1] for r in ls_lines(s3cmd("ls", "--recursive", f"s3://{name}").stdout)]
    assert recursive == sorted(f"s3://{name}/{k}" for k in [p + "x" for p in prefixes] + plain)


@pytest.mark.parametrize("signature_v2", [False, True], ids=["sigv4", "sigv2"])
def test_wrong_secret_is_rejected_with_signature_does_not_match(
    coordinator, tmp_path: Path, bucket: str, signature_v2: bool
) -> None:
    bad = S3cmd(coordinator, tmp_path, signature_v2=signature_v2)
    bad.config.write_text(bad.config.read_text().replace(coordinator.token, "not-the-secret"))
    proc = bad("ls", f"s3://{bucket}", check=False)
    assert proc.returncode != 0
    assert "S3 error: 403 (SignatureDoesNotMatch)" in proc.stderr
