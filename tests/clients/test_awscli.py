"""The AWS CLI v1 (`aws s3 ...` and `aws s3api ...`) against a real coordinator.

The CLI runs as a subprocess configured only through environment variables; the developer's
~/.aws is never read (AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE point at empty files).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
import requests
from awscrt import checksums as crt_checksums
from conftest import bucket_exists

MiB = 1024 * 1024


def new_bucket_name() -> str:
    return f"cli-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory: pytest.TempPathFactory, coordinator) -> dict[str, str]:
    home = tmp_path_factory.mktemp("awscli-home")
    config_file = home / "config"
    credentials_file = home / "credentials"
    config_file.write_text("")
    credentials_file.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="admin",
        AWS_SECRET_ACCESS_KEY=coordinator.token,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=str(config_file),
        AWS_SHARED_CREDENTIALS_FILE=str(credentials_file),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_PAGER="",
        HOME=str(home),
    )
    return env


@pytest.fixture(scope="module")
def aws(coordinator, aws_env):
    """Run `aws --endpoint-url <endpoint> ARGS...`; returns the CompletedProcess (text mode)."""

    def run(
        *args: str,
        endpoint: str | None = None,
        check: bool = True,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "awscli", "--endpoint-url", endpoint or coordinator.endpoint, *args]
        proc = subprocess.run(cmd, env={**aws_env, **(env or {})}, capture_output=True, text=True, timeout=300, cwd=cwd)
        if check:
            assert proc.returncode == 0, (
                f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
                f"\ncoordinator log tail:\n{coordinator.log()[-4000:]}"
            )
        return proc

    run.endpoint = coordinator.endpoint
    run.env = aws_env
    return run


def result_lines(stdout: str, prefix: str) -> list[str]:
    """The CLI's per-file result lines, without the interleaved progress lines."""
    lines = stdout.replace("\r", "\n").splitlines()
    return [line for line in lines if line.startswith(prefix)]


def list_keys(s3, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


def test_s3_ls_lists_an_existing_bucket(aws, bucket: str) -> None:
    out = aws("s3", "ls").stdout
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert bucket in names


def test_s3_mb_creates_a_bucket_and_rb_removes_it(aws, s3) -> None:
    name = new_bucket_name()
    proc = aws("s3", "mb", f"s3://{name}")
    assert proc.stdout.strip() == f"make_bucket: {name}"
    assert bucket_exists(s3, name)
    assert name in aws("s3", "ls").stdout

    proc = aws("s3", "rb", f"s3://{name}")
    assert proc.stdout.strip() == f"remove_bucket: {name}"
    assert not bucket_exists(s3, name)
    assert name not in aws("s3", "ls").stdout


def test_s3_mb_of_a_bucket_you_own_succeeds_in_us_east_1(aws, s3, bucket: str) -> None:
    """As on AWS in us-east-1 (its legacy answer); the bucket and its objects are untouched."""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"kept")
    proc = aws("s3", "mb", f"s3://{bucket}")
    assert proc.stdout.strip() == f"make_bucket: {bucket}"
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"kept"


def test_s3_cp_45mb_file_uploads_multipart_and_downloads_identical_bytes(aws, s3, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    data = os.urandom(45 * MiB)
    src.write_bytes(data)

    proc = aws("s3", "cp", "--no-progress", "big.bin", f"s3://{bucket}/dir/big.bin", cwd=tmp_path)
    assert proc.stdout.strip() == f"upload: ./big.bin to s3://{bucket}/dir/big.bin"

    head = s3.head_object(Bucket=bucket, Key="dir/big.bin")
    assert head["ContentLength"] == len(data)
    # 45 MiB in the CLI's default 8 MiB parts -> a 6-part multipart ETag
    assert head["ETag"].strip('"').endswith("-6"), head["ETag"]

    listing = aws("s3", "ls", f"s3://{bucket}/").stdout
    assert "PRE dir/" in listing
    listing = aws("s3", "ls", f"s3://{bucket}/dir/").stdout
    fields = listing.split()
    assert fields[-1] == "big.bin"
    assert fields[-2] == str(len(data))

    dst = tmp_path / "back.bin"
    proc = aws("s3", "cp", "--no-progress", f"s3://{bucket}/dir/big.bin", "back.bin", cwd=tmp_path)
    assert proc.stdout.strip() == f"download: s3://{bucket}/dir/big.bin to ./back.bin"
    assert dst.stat().st_size == len(data)
    assert dst.read_bytes() == data

    # S3 -> S3 above the multipart threshold: CreateMultipartUpload + UploadPartCopy + Complete.
    proc = aws("s3", "cp", "--no-progress", f"s3://{bucket}/dir/big.bin", f"s3://{bucket}/dir/copy.bin")
    assert proc.stdout.strip() == f"copy: s3://{bucket}/dir/big.bin to s3://{bucket}/dir/copy.bin"
    copy_head = s3.head_object(Bucket=bucket, Key="dir/copy.bin")
    assert copy_head["ContentLength"] == len(data)
    assert copy_head["ETag"].strip('"').endswith("-6"), copy_head["ETag"]
    assert s3.get_object(Bucket=bucket, Key="dir/copy.bin")["Body"].read() == data


def test_s3_cp_small_file_round_trips_through_root_listener(aws, coordinator, s3, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "small.txt"
    data = os.urandom(300 * 1024)
    src.write_bytes(data)

    aws("s3", "cp", str(src), f"s3://{bucket}/small.txt", endpoint=coordinator.root_endpoint)
    assert s3.get_object(Bucket=bucket, Key="small.txt")["Body"].read() == data

    dst = tmp_path / "small.back"
    aws("s3", "cp", f"s3://{bucket}/small.txt", str(dst), endpoint=coordinator.root_endpoint)
    assert dst.read_bytes() == data


def test_s3_cp_between_buckets_copies_object_server_side(aws, s3, bucket: str) -> None:
    other = new_bucket_name()
    aws("s3", "mb", f"s3://{other}")
    data = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="orig.bin", Body=data)

    proc = aws("s3", "cp", "--no-progress", f"s3://{bucket}/orig.bin", f"s3://{other}/copy.bin")
    assert proc.stdout.strip() == f"copy: s3://{bucket}/orig.bin to s3://{other}/copy.bin"
    assert s3.get_object(Bucket=other, Key="copy.bin")["Body"].read() == data
    assert s3.get_object(Bucket=bucket, Key="orig.bin")["Body"].read() == data

    aws("s3", "rb", "--force", f"s3://{other}")
    assert not bucket_exists(s3, other)


def test_s3_cp_streams_from_stdin_as_multipart_and_to_stdout(aws, s3, bucket: str) -> None:
    data = os.urandom(20 * MiB + 11)
    cmd_up = ("s3", "cp", "-", f"s3://{bucket}/piped.bin")
    up = subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", aws.endpoint, *cmd_up],
        env=aws.env,
        input=data,
        capture_output=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr.decode(errors="replace")

    head = s3.head_object(Bucket=bucket, Key="piped.bin")
    assert head["ContentLength"] == len(data)
    # Unknown size: the CLI streams 8 MiB parts -> 3 parts.
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]

    down = subprocess.run(
        [sys.executable, "-m", "awscli", "--endpoint-url", aws.endpoint, "s3", "cp", f"s3://{bucket}/piped.bin", "-"],
        env=aws.env,
        capture_output=True,
        timeout=300,
    )
    assert down.returncode == 0, down.stderr.decode(errors="replace")
    assert down.stdout == data


def test_s3_cp_with_metadata_content_type_and_cache_control(aws, s3, bucket: str, tmp_path: Path) -> None:
    (tmp_path / "page.html").write_bytes(b"<html></html>")
    aws(
        "s3",
        "cp",
        "--no-progress",
        "page.html",
        f"s3://{bucket}/site/page.html",
        "--metadata",
        "owner=peer-7,build=42",
        "--content-type",
        "text/html; charset=utf-8",
        "--cache-control",
        "max-age=60",
        cwd=tmp_path,
    )
    head = s3.head_object(Bucket=bucket, Key="site/page.html")
    assert head["ContentType"] == "text/html; charset=utf-8"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"owner": "peer-7", "build": "42"}


def test_s3_mv_moves_local_file_up_and_object_between_keys(aws, s3, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(4096)
    (tmp_path / "moving.bin").write_bytes(data)

    proc = aws("s3", "mv", "--no-progress", "moving.bin", f"s3://{bucket}/first.bin", cwd=tmp_path)
    assert proc.stdout.strip() == f"move: ./moving.bin to s3://{bucket}/first.bin"
    assert not (tmp_path / "moving.bin").exists()

    proc = aws("s3", "mv", "--no-progress", f"s3://{bucket}/first.bin", f"s3://{bucket}/second.bin")
    assert proc.stdout.strip() == f"move: s3://{bucket}/first.bin to s3://{bucket}/second.bin"
    assert list_keys(s3, bucket) == ["second.bin"]
    assert s3.get_object(Bucket=bucket, Key="second.bin")["Body"].read() == data


def test_s3_cp_round_trips_with_checksums_only_when_required(aws, s3, bucket: str, tmp_path: Path) -> None:
    when_required = {
        "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
        "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED",
    }
    small = os.urandom(1000)
    big = os.urandom(9 * MiB)
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)

    for name, data in (("small.bin", small), ("big.bin", big)):
        aws("s3", "cp", "--no-progress", name, f"s3://{bucket}/{name}", cwd=tmp_path, env=when_required)
        assert s3.get_object(Bucket=bucket, Key=name)["Body"].read() == data
        aws("s3", "cp", "--no-progress", f"s3://{bucket}/{name}", f"{name}.back", cwd=tmp_path, env=when_required)
        assert (tmp_path / f"{name}.back").read_bytes() == data
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"].strip('"').endswith("-2")

    proc = aws("s3", "rm", "--recursive", f"s3://{bucket}/", env=when_required)
    assert sorted(result_lines(proc.stdout, "delete: ")) == [
        f"delete: s3://{bucket}/big.bin",
        f"delete: s3://{bucket}/small.bin",
    ]
    assert list_keys(s3, bucket) == []


def _crc_b64(fn, data: bytes) -> str:
    return base64.b64encode(fn(data).to_bytes(4, "big")).decode()


CHECKSUMS = {
    "CRC32": lambda data: _crc_b64(zlib.crc32, data),
    "CRC32C": lambda data: _crc_b64(crt_checksums.crc32c, data),
    "SHA1": lambda data: base64.b64encode(hashlib.sha1(data).digest()).decode(),
    "SHA256": lambda data: base64.b64encode(hashlib.sha256(data).digest()).decode(),
}


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_s3_cp_with_checksum_algorithm_stores_full_and_composite_checksums(
    aws, bucket: str, tmp_path: Path, algorithm: str
) -> None:
    checksum = CHECKSUMS[algorithm]
    small = os.urandom(100_000)
    big = os.urandom(17 * MiB)
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)

    for name in ("small.bin", "big.bin"):
        aws("s3", "cp", "--no-progress", "--checksum-algorithm", algorithm, name, f"s3://{bucket}/{name}", cwd=tmp_path)

    head = json.loads(
        aws("s3api", "head-object", "--bucket", bucket, "--key", "small.bin", "--checksum-mode", "ENABLED").stdout
    )
    assert head[f"Checksum{algorithm}"] == checksum(small)

    # 17 MiB in 8 MiB parts: the object checksum is the checksum of the part checksums, "-3".
    parts = [big[i : i + 8 * MiB] for i in range(0, len(big), 8 * MiB)]
    part_digests = b"".join(base64.b64decode(checksum(p)) for p in parts)
    head = json.loads(
        aws("s3api", "head-object", "--bucket", bucket, "--key", "big.bin", "--checksum-mode", "ENABLED").stdout
    )
    assert head[f"Checksum{algorithm}"] == f"{checksum(part_digests)}-3"
    assert head["ContentLength"] == len(big)

    aws("s3", "cp", "--no-progress", f"s3://{bucket}/big.bin", "back.bin", cwd=tmp_path)
    assert (tmp_path / "back.bin").read_bytes() == big


SYNC_FILES = {
    "plain.txt": b"plain file\n",
    "with space.txt": b"a key with a space\n",
    "plus+sign.txt": b"a key with a plus\n",
    "sub dir/both + here.bin": bytes(range(256)) * 40,
    "sub dir/nested/deep.txt": b"deep\n",
}


def test_s3_sync_uploads_directory_with_space_and_plus_names_then_rm_recursive_and_rb(aws, s3, tmp_path: Path) -> None:
    name = new_bucket_name()
    aws("s3", "mb", f"s3://{name}")

    src = tmp_path / "src"
    for rel, content in SYNC_FILES.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)

    proc = aws("s3", "sync", "--no-progress", "src", f"s3://{name}/tree", cwd=tmp_path)
    assert sorted(proc.stdout.splitlines()) == sorted(
        f"upload: src/{rel} to s3://{name}/tree/{rel}" for rel in SYNC_FILES
    )

    assert sorted(list_keys(s3, name)) == sorted(f"tree/{rel}" for rel in SYNC_FILES)
    for rel, content in SYNC_FILES.items():
        assert s3.get_object(Bucket=name, Key=f"tree/{rel}")["Body"].read() == content

    # Nothing changed: a second sync transfers nothing.
    proc = aws("s3", "sync", "--no-progress", "src", f"s3://{name}/tree", cwd=tmp_path)
    assert proc.stdout.strip() == ""

    # `aws s3 ls --recursive` shows the exact keys, spaces and plus signs included.
    listing = aws("s3", "ls", "--recursive", f"s3://{name}/").stdout
    for rel, content in SYNC_FILES.items():
        assert any(line.endswith(f" tree/{rel}") and f" {len(content)} " in line for line in listing.splitlines()), (
            rel,
            listing,
        )

    # And back down into an empty directory.
    dst = tmp_path / "dst"
    dst.mkdir()
    proc = aws("s3", "sync", "--no-progress", f"s3://{name}/tree", "dst", cwd=tmp_path)
    assert sorted(proc.stdout.splitlines()) == sorted(
        f"download: s3://{name}/tree/{rel} to dst/{rel}" for rel in SYNC_FILES
    )
    for rel, content in SYNC_FILES.items():
        assert (dst / rel).read_bytes() == content
    downloaded = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert downloaded == sorted(SYNC_FILES)

    proc = aws("s3", "rm", "--recursive", f"s3://{name}/")
    assert sorted(result_lines(proc.stdout, "delete: ")) == sorted(
        f"delete: s3://{name}/tree/{rel}" for rel in SYNC_FILES
    )
    assert list_keys(s3, name) == []

    proc = aws("s3", "rb", f"s3://{name}")
    assert proc.stdout.strip() == f"remove_bucket: {name}"
    assert not bucket_exists(s3, name)


def test_s3_sync_delete_removes_remote_objects_missing_locally(aws, s3, bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep.txt").write_bytes(b"keep")
    (src / "drop me.txt").write_bytes(b"drop")
    aws("s3", "sync", "--no-progress", "src", f"s3://{bucket}/", cwd=tmp_path)
    assert sorted(list_keys(s3, bucket)) == ["drop me.txt", "keep.txt"]

    (src / "drop me.txt").unlink()
    (src / "keep.txt").write_bytes(b"keep, but longer now")
    proc = aws("s3", "sync", "--no-progress", "--delete", "src", f"s3://{bucket}/", cwd=tmp_path)
    assert sorted(proc.stdout.splitlines()) == [
        f"delete: s3://{bucket}/drop me.txt",
        f"upload: src/keep.txt to s3://{bucket}/keep.txt",
    ]
    assert list_keys(s3, bucket) == ["keep.txt"]
    assert s3.get_object(Bucket=bucket, Key="keep.txt")["Body"].read() == b"keep, but longer now"


def test_s3_ls_follows_continuation_tokens_across_keys_and_prefixes(aws, s3, bucket: str) -> None:
    prefixes = [f"d{i:02d}/" for i in range(12)]
    plain = [f"d{i:02d}" for i in range(0, 12, 3)] + ["a", "z z+"]  # "d03" sorts just before "d03/"
    for key in [p + "inner" for p in prefixes] + [p + "more/deep" for p in prefixes[:3]] + plain:
        s3.put_object(Bucket=bucket, Key=key, Body=b"12345")

    # --page-size 5 makes every ListObjectsV2 page end somewhere inside the keys and prefixes.
    listing = aws("s3", "ls", "--page-size", "5", f"s3://{bucket}/").stdout.splitlines()
    pres = [line.split()[-1] for line in listing if line.split()[0] == "PRE"]
    objs = [line[line.index(" 5 ") + 3 :] for line in listing if line.split()[0] != "PRE"]
    assert pres == prefixes
    assert sorted(objs) == sorted(plain)

    recursive = aws("s3", "ls", "--recursive", "--page-size", "4", f"s3://{bucket}/").stdout.splitlines()
    expected = sorted([p + "inner" for p in prefixes] + [p + "more/deep" for p in prefixes[:3]] + plain)
    assert [line[line.index(" 5 ") + 3 :] for line in recursive] == expected


def test_s3_rb_refuses_a_non_empty_bucket_unless_forced(aws, s3) -> None:
    name = new_bucket_name()
    aws("s3", "mb", f"s3://{name}")
    s3.put_object(Bucket=name, Key="keep.txt", Body=b"x")

    proc = aws("s3", "rb", f"s3://{name}", check=False)
    assert proc.returncode != 0
    assert "BucketNotEmpty" in proc.stderr
    assert bucket_exists(s3, name)

    proc = aws("s3", "rb", "--force", f"s3://{name}")
    assert f"delete: s3://{name}/keep.txt" in proc.stdout
    assert f"remove_bucket: {name}" in proc.stdout
    assert not bucket_exists(s3, name)


PRESIGN_STYLES = {
    # AWS CLI v1 presigns S3 URLs with SigV2 query authentication unless told otherwise.
    "default-sigv2": ("", "Signature="),
    "s3v4": ("[default]\ns3 =\n    signature_version = s3v4\n", "X-Amz-Signature="),
}


def presign(aws, tmp_path: Path, style: str, url: str, *args: str) -> str:
    config_text, sig_param = PRESIGN_STYLES[style]
    config_file = tmp_path / f"aws-config-{style}"
    config_file.write_text(config_text)
    out = aws("s3", "presign", url, *args, env={"AWS_CONFIG_FILE": str(config_file)}).stdout.strip()
    assert out.startswith("http://127.0.0.1:"), out
    assert f"&{sig_param}" in out or f"?{sig_param}" in out, out
    return out


@pytest.mark.parametrize("style", sorted(PRESIGN_STYLES))
@pytest.mark.parametrize("key", ["presigned.bin", "dir/with space + plus.bin"])
def test_s3_presign_url_downloads_object_bytes_with_requests(
    aws, s3, bucket: str, key: str, style: str, tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    s3.put_object(Bucket=bucket, Key=key, Body=data)

    url = presign(aws, tmp_path, style, f"s3://{bucket}/{key}", "--expires-in", "600")

    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.content == data
    assert resp.headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize("style", sorted(PRESIGN_STYLES))
def test_s3_presign_url_with_tampered_signature_is_rejected(aws, s3, bucket: str, style: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=bucket, Key="secret.bin", Body=b"secret")
    url = presign(aws, tmp_path, style, f"s3://{bucket}/secret.bin")
    sig_param = PRESIGN_STYLES[style][1]
    # Change one digit of the signature (a digit, so neither case nor URL-escaping can undo it).
    sig_start = url.index(sig_param) + len(sig_param)
    pos = next(i for i in range(sig_start, len(url)) if url[i].isdigit())
    bad = url[:pos] + str((int(url[pos]) + 1) % 10) + url[pos + 1 :]

    resp = requests.get(bad, timeout=30)
    assert resp.status_code == 403, resp.text
    assert b"<Code>SignatureDoesNotMatch</Code>" in resp.content
    assert resp.content != b"secret"


def test_s3api_put_head_list_get_delete_object(aws, bucket: str, tmp_path: Path) -> None:
    body = tmp_path / "body.bin"
    data = os.urandom(12_345)
    body.write_bytes(data)

    put = json.loads(
        aws(
            "s3api",
            "put-object",
            "--bucket",
            bucket,
            "--key",
            "api/one.bin",
            "--body",
            str(body),
            "--content-type",
            "application/x-test",
            "--metadata",
            "color=blue,shape=round",
        ).stdout
    )
    assert put["ETag"].startswith('"') and put["ETag"].endswith('"')
    etag = put["ETag"]

    head = json.loads(aws("s3api", "head-object", "--bucket", bucket, "--key", "api/one.bin").stdout)
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == etag
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"] == {"color": "blue", "shape": "round"}
    assert "LastModified" in head

    aws("s3api", "put-object", "--bucket", bucket, "--key", "api/two.txt", "--body", str(body))
    aws("s3api", "put-object", "--bucket", bucket, "--key", "other.txt", "--body", str(body))

    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "api/").stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["api/one.bin", "api/two.txt"]
    assert listed["Contents"][0]["Size"] == len(data)
    assert listed["Contents"][0]["ETag"] == etag

    single = json.loads(aws("s3api", "list-objects-v2", "--no-paginate", "--bucket", bucket, "--prefix", "api/").stdout)
    assert single["KeyCount"] == 2
    assert single["IsTruncated"] is False

    # One key per page: the CLI follows continuation tokens and merges the pages.
    paged = json.loads(aws("s3api", "list-objects-v2", "--page-size", "1", "--bucket", bucket).stdout)
    assert [o["Key"] for o in paged["Contents"]] == ["api/one.bin", "api/two.txt", "other.txt"]

    delimited = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--delimiter", "/").stdout)
    assert [p["Prefix"] for p in delimited["CommonPrefixes"]] == ["api/"]
    assert [o["Key"] for o in delimited["Contents"]] == ["other.txt"]

    out = tmp_path / "out.bin"
    got = json.loads(aws("s3api", "get-object", "--bucket", bucket, "--key", "api/one.bin", str(out)).stdout)
    assert got["ContentLength"] == len(data)
    assert got["ETag"] == etag
    assert got["Metadata"] == {"color": "blue", "shape": "round"}
    assert out.read_bytes() == data

    ranged_out = tmp_path / "range.bin"
    ranged = json.loads(
        aws(
            "s3api",
            "get-object",
            "--bucket",
            bucket,
            "--key",
            "api/one.bin",
            "--range",
            "bytes=100-199",
            str(ranged_out),
        ).stdout
    )
    assert ranged["ContentLength"] == 100
    assert ranged["ContentRange"] == f"bytes 100-199/{len(data)}"
    assert ranged_out.read_bytes() == data[100:200]

    aws("s3api", "delete-object", "--bucket", bucket, "--key", "api/one.bin")
    proc = aws("s3api", "head-object", "--bucket", bucket, "--key", "api/one.bin", check=False)
    assert proc.returncode != 0
    assert "404" in proc.stderr or "Not Found" in proc.stderr

    listed = json.loads(aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", "api/").stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["api/two.txt"]


def test_s3api_get_object_of_missing_key_reports_no_such_key(aws, bucket: str, tmp_path: Path) -> None:
    proc = aws("s3api", "get-object", "--bucket", bucket, "--key", "absent", str(tmp_path / "x"), check=False)
    assert proc.returncode != 0
    assert "NoSuchKey" in proc.stderr
