"""`tunnelmesh object get/put/cat/stat/presign`, recursive copies, `version`, and how the CLI finds its
coordinator, run as the real installed executable against a real coordinator.

Downloads never rename over anything but a regular file (a symlink such as /dev/stdout stays what it is);
uploads of unknown length (a pipe, `-`, /dev/stdin) arrive whole; a recursive download keeps every file
inside its directory whatever the keys say.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import importlib.metadata
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import Coordinator, free_port, tunnelmesh_exe, wait_for_port

MiB = 1024 * 1024


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
    env.update(extra)
    return env


def tm(
    c: Coordinator, *args: str, stdin: bytes | None = None, token: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """The CLI with explicit flags; stdout and stderr as bytes (downloads write binary to stdout)."""
    return subprocess.run(
        c.cli_command(*args, token=token), input=stdin, capture_output=True, timeout=120, env=base_env(), cwd=cwd
    )


def ok(res: subprocess.CompletedProcess) -> bytes:
    err = res.stderr.decode(errors="replace")
    assert res.returncode == 0, f"exit {res.returncode}\nstderr: {err}"
    assert "Traceback" not in err
    return res.stdout


def one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode != 0, f"expected a failure\nstdout: {res.stdout!r}\nstderr: {res.stderr!r}"
    lines = [line for line in res.stderr.decode(errors="replace").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("tunnelmesh: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def filled(coordinator, s3) -> tuple[str, str, bytes]:
    """A bucket holding one 3 MiB + 5 byte object (more than one read chunk)."""
    name = f"x-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    payload = os.urandom(3 * MiB + 5)
    s3.put_object(Bucket=name, Key="dir/blob.bin", Body=payload, ContentType="application/x-test", Metadata={"a": "1"})
    return name, "dir/blob.bin", payload


# ---- downloads ---------------------------------------------------------------------------------------


def test_get_to_a_symlink_writes_through_it_and_leaves_the_symlink(coordinator, filled, tmp_path) -> None:
    name, key, payload = filled
    real = tmp_path / "real.bin"
    real.write_bytes(b"old contents")
    link = tmp_path / "link.bin"
    link.symlink_to(real)
    ok(tm(coordinator, "object", "get", f"{name}/{key}", str(link)))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == payload
    assert not list(tmp_path.glob(".*.part"))
    # a regular file is still replaced whole, keeping its mode
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    plain.chmod(0o640)
    ok(tm(coordinator, "object", "get", f"{name}/{key}", str(plain)))
    assert plain.read_bytes() == payload and (plain.stat().st_mode & 0o777) == 0o640


def test_get_to_dash_and_dev_stdout_writes_the_object_to_stdout(coordinator, filled, tmp_path) -> None:
    name, key, payload = filled
    assert ok(tm(coordinator, "object", "get", f"{name}/{key}", "-", cwd=tmp_path)) == payload
    assert not (tmp_path / "-").exists()
    # a link of /dev/stdout's own shape first: code that renames over /dev/stdout fails here, before the real
    # one (as root it would replace this machine's /dev/stdout with a regular file)
    stand_in = tmp_path / "stdout"
    stand_in.symlink_to("/proc/self/fd/1")
    assert ok(tm(coordinator, "object", "get", f"{name}/{key}", str(stand_in))) == payload
    assert stand_in.is_symlink() and os.readlink(stand_in) == "/proc/self/fd/1"
    assert ok(tm(coordinator, "object", "get", f"{name}/{key}", "/dev/stdout")) == payload
    assert os.path.islink("/dev/stdout")
    # stdout redirected to a file in append mode: appended to, not truncated by a reopen
    out = tmp_path / "appended"
    out.write_bytes(b"head:")
    with out.open("ab") as f:
        res = subprocess.run(
            coordinator.cli_command("object", "get", f"{name}/{key}", "/dev/stdout"),
            stdout=f,
            stderr=subprocess.PIPE,
            timeout=120,
            env=base_env(),
        )
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == b"head:" + payload


def test_cat_writes_exactly_the_object(coordinator, filled) -> None:
    name, key, payload = filled
    assert ok(tm(coordinator, "object", "cat", f"{name}/{key}")) == payload
    one_line_error(tm(coordinator, "object", "cat", f"{name}/missing"), "NoSuchKey")


def test_stat_json_describes_the_object(coordinator, s3, filled) -> None:
    name, key, payload = filled
    d = json.loads(ok(tm(coordinator, "object", "stat", f"{name}/{key}", "--json")))
    head = s3.head_object(Bucket=name, Key=key)
    assert d["bucket"] == name and d["key"] == key
    assert d["size"] == len(payload)
    assert d["etag"] == head["ETag"] == f'"{hashlib.md5(payload).hexdigest()}"'
    assert d["content_type"] == "application/x-test"
    assert d["metadata"] == {"a": "1"}
    text = ok(tm(coordinator, "object", "stat", f"{name}/{key}")).decode()
    assert f"size:          {len(payload)}" in text and "meta.a:" in text
    one_line_error(tm(coordinator, "object", "stat", f"{name}/missing"), "NoSuchKey")


# ---- uploads of unknown length -----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["-", "/dev/stdin"])
def test_20_mib_piped_into_put_arrives_whole(coordinator, s3, bucket, source) -> None:
    payload = os.urandom(20 * MiB + 123)  # more than one 16 MiB part: a multipart upload
    out = ok(tm(coordinator, "object", "put", f"{bucket}/piped", source, stdin=payload)).decode()
    assert f"({len(payload)} bytes)" in out
    got = s3.get_object(Bucket=bucket, Key="piped")
    body = got["Body"].read()
    assert len(body) == len(payload) and hashlib.md5(body).hexdigest() == hashlib.md5(payload).hexdigest()
    assert got["ETag"].endswith('-2"')  # two parts: 16 MiB and the rest
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_small_and_empty_pipes_upload_what_they_carry(coordinator, s3, bucket) -> None:
    ok(tm(coordinator, "object", "put", f"{bucket}/small", "/dev/stdin", stdin=b"hello"))
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"hello"
    ok(tm(coordinator, "object", "put", f"{bucket}/empty", "-", stdin=b""))
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0


def test_piped_upload_memory_stays_bounded(coordinator, s3, bucket, tmp_path) -> None:
    """The CLI holds one 16 MiB part, not the stream: 160 MiB through a pipe in a process whose peak RSS
    stays far below that (measured by a parent whose only child is the CLI)."""
    size = 160 * MiB
    probe = (
        "import resource, subprocess, sys\n"
        "gen = subprocess.Popen([sys.executable, '-c', "
        "'import sys\\nblock = bytes(range(256)) * 4096\\nfor _ in range(160): sys.stdout.buffer.write(block)'], "
        "stdout=subprocess.PIPE)\n"
        "cli = subprocess.Popen(sys.argv[1:], stdin=gen.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)\n"
        "gen.stdout.close()  # the CLI's alone: if it stops reading, the generator stops too\n"
        "out, err = cli.communicate()\n"
        "gen.wait()\n"
        "sys.stderr.buffer.write(err)\n"
        "print(cli.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe, *coordinator.cli_command("object", "put", f"{bucket}/big", "-")],
        capture_output=True,
        text=True,
        timeout=300,
        env=base_env(),
    )
    code, max_rss_kib = map(int, res.stdout.split())
    assert code == 0, res.stderr
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == size
    assert max_rss_kib * 1024 < 100 * MiB, f"peak RSS {max_rss_kib} KiB for a {size}-byte stream"


# ---- recursive copies --------------------------------------------------------------------------------


def test_recursive_put_and_get_round_trip_a_tree(coordinator, s3, bucket, tmp_path) -> None:
    src = tmp_path / "src"
    files = {
        "a.txt": b"alpha",
        "empty": b"",
        "sub/b.bin": os.urandom(2 * MiB + 7),
        "sub/deeper/ç é.txt": b"unicode name",
        "sub/deeper/z": b"zz",
    }
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    os.mkfifo(src / "a-fifo")  # not a regular file: skipped, and the walk does not block on it
    res = tm(coordinator, "object", "put", "-r", f"{bucket}/backup", str(src))
    ok(res)
    assert "skipped" in res.stderr.decode() and "a-fifo" in res.stderr.decode()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"backup/{rel}" for rel in files}

    dst = tmp_path / "dst"
    ok(tm(coordinator, "object", "get", "-r", f"{bucket}/backup/", str(dst)))
    got = {p.relative_to(dst).as_posix(): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    assert got == files


def test_recursive_get_refuses_keys_that_leave_the_directory(coordinator, s3, bucket, tmp_path) -> None:
    for key in ("p/good.txt", "p/../escape.txt", "p/a/../../escape2.txt", "p//etc/abs.txt", "p/ln/through.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    dst = tmp_path / "deep" / "dst"
    dst.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (dst / "ln").symlink_to(outside)  # a symlink already in the tree must not carry a download out of it
    res = tm(coordinator, "object", "get", "-r", f"{bucket}/p/", str(dst))
    assert res.returncode == 1
    err = res.stderr.decode()
    for refused in ("p/../escape.txt", "p/a/../../escape2.txt", "p//etc/abs.txt", "ln/through.txt"):
        assert refused in err, err
    assert (dst / "good.txt").read_bytes() == b"p/good.txt"
    every = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    assert every == {"deep", "deep/dst", "deep/dst/good.txt", "deep/dst/ln", "outside"}, every


def test_key_paths_refused_on_download() -> None:
    from tunnelmesh.cli.client import CliError
    from tunnelmesh.cli.transfer import safe_relative

    assert safe_relative("p/a/b.txt", "p/") == "a/b.txt"
    assert safe_relative("p/a//b.txt", "p/") == "a/b.txt"
    for key in ("p/../x", "p/a/..", "p/./x", "p//x", "p/a\0b", "p/"):
        with pytest.raises(CliError):
            safe_relative(key, "p/")


def test_recursive_get_creates_no_directory_through_a_symlink(coordinator, s3, bucket, tmp_path) -> None:
    s3.put_object(Bucket=bucket, Key="p/ln/newdir/deeper/x.txt", Body=b"x")
    s3.put_object(Bucket=bucket, Key="p/ok.txt", Body=b"ok")
    dst = tmp_path / "dst"
    dst.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dst / "ln").symlink_to(outside)
    res = tm(coordinator, "object", "get", "-r", f"{bucket}/p/", str(dst))
    assert res.returncode == 1
    assert "ln/newdir/deeper/x.txt" in res.stderr.decode()
    assert list(outside.iterdir()) == []  # refused before anything was made through the link
    assert (dst / "ok.txt").read_bytes() == b"ok"


def on_a_terminal(cmd: list[str], cwd: Path | None = None) -> tuple[int, bytes, str]:
    """`cmd` with its stderr on a pseudo-terminal (so the CLI draws its rich progress bars there), stdout
    a pipe: its exit code, its stdout, and what reached the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=base_env(), cwd=cwd
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=120)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_keys_that_look_like_rich_markup_download_on_a_terminal(coordinator, s3, bucket, tmp_path) -> None:
    key = "p/m[/]x"
    s3.put_object(Bucket=bucket, Key=key, Body=b"markup")
    s3.put_object(Bucket=bucket, Key="p/[bold]b[/bold]", Body=b"bold")
    code, _, term = on_a_terminal(coordinator.cli_command("object", "get", f"{bucket}/{key}", str(tmp_path / "one")))
    assert code == 0, term
    assert (tmp_path / "one").read_bytes() == b"markup"
    code, out, term = on_a_terminal(coordinator.cli_command("object", "get", "-r", f"{bucket}/p/", str(tmp_path / "t")))
    assert code == 0, term
    assert (tmp_path / "t" / "m[").is_dir() and (tmp_path / "t" / "m[" / "]x").read_bytes() == b"markup"
    assert (tmp_path / "t" / "[bold]b[").is_dir()
    assert "[bold]b[/bold]" in out.decode() + term  # printed as the name it is, not as markup
    assert "Traceback" not in term and "unexpected error" not in term


def test_recursive_get_downloads_every_key_it_can_and_names_the_rest(coordinator, s3, bucket, tmp_path) -> None:
    long_ok = "a" * 250  # a legal file name, too long for a temporary name of `.{name}.{8 hex}.part`
    too_long = "b" * 256  # longer than any file name may be: refused, the rest still downloaded
    control = "ctl\x01\x1b[2J\x9bname"  # control characters, C1 included: legal in a Linux file name
    keys = {f"q/{long_ok}": b"long", f"q/{too_long}": b"never", f"q/{control}": b"control", "q/ok.txt": b"ok"}
    for key, body in keys.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    dst = tmp_path / "dst"
    res = tm(coordinator, "object", "get", "-r", f"{bucket}/q/", str(dst))
    assert res.returncode == 1
    assert (dst / long_ok).read_bytes() == b"long"
    assert (dst / control).read_bytes() == b"control"
    assert (dst / "ok.txt").read_bytes() == b"ok"
    assert sorted(p.name for p in dst.iterdir()) == sorted([long_ok, control, "ok.txt"])  # no .part left
    err = res.stderr.decode()
    assert too_long in err and "File name too long" in err, err
    # what reaches a terminal: the control characters shown escaped, never as themselves
    out = res.stdout.decode()
    assert "ctl\\x01\\x1b[2J\\x9bname" in out, out
    for text in (out, err):
        assert not any(ord(ch) < 0x20 and ch != "\n" or 0x7F <= ord(ch) <= 0x9F for ch in text), repr(text)


def test_keys_and_metadata_with_control_characters_are_escaped_for_humans(coordinator, s3, bucket) -> None:
    key = "k\x1b]0;pwned\x07\x9b31m\x85end"
    s3.put_object(Bucket=bucket, Key=key, Body=b"c")

    def clean(text: str) -> None:
        assert not any(ord(ch) < 0x20 and ch != "\n" or 0x7F <= ord(ch) <= 0x9F for ch in text), repr(text)

    listed = ok(tm(coordinator, "object", "list", bucket)).decode()
    clean(listed)
    assert "k\\x1b]0;pwned\\x07\\x9b31m\\x85end" in listed
    # --json keeps the key exactly (JSON escapes it)
    assert [o["key"] for o in json.loads(ok(tm(coordinator, "object", "list", bucket, "--json")))["objects"]] == [key]
    for args in (("object", "versions", bucket), ("object", "stat", f"{bucket}/{key}")):
        text = ok(tm(coordinator, *args)).decode()
        clean(text)
        assert "\\x9b31m" in text, text
    res = tm(coordinator, "object", "stat", f"{bucket}/{key}x")
    clean(res.stderr.decode())
    assert res.returncode != 0 and "\\x9b31m" in res.stderr.decode()
    # metadata: a header value's bytes 0x9b 0x1b reach the CLI as those code points
    host = f"127.0.0.1:{coordinator.port}"
    r = requests.put(
        f"http://{host}/s3/{bucket}/meta",
        data=b"m",
        headers={"authorization": f"Bearer {coordinator.token}", "x-amz-meta-note": "a\x9b2Jb"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    stat_text = ok(tm(coordinator, "object", "stat", f"{bucket}/meta")).decode()
    clean(stat_text)
    assert "a\\x9b2Jb" in stat_text, stat_text


# ---- presign -----------------------------------------------------------------------------------------


def test_presigned_get_and_put_work_with_plain_requests(coordinator, s3, filled) -> None:
    name, key, payload = filled
    url = ok(tm(coordinator, "object", "presign", f"{name}/{key}")).decode().strip()
    assert "X-Amz-Credential=admin%2F" in url and "X-Amz-Expires=3600" in url
    assert coordinator.token not in url
    r = requests.get(url, timeout=60)
    assert r.status_code == 200 and r.content == payload

    put_url = ok(tm(coordinator, "object", "presign", f"{name}/up é+x.bin", "--put", "--expires", "15m")).decode()
    assert "X-Amz-Expires=900" in put_url
    r = requests.put(put_url.strip(), data=b"via presigned put", timeout=60)
    assert r.status_code == 200, r.text
    assert s3.get_object(Bucket=name, Key="up é+x.bin")["Body"].read() == b"via presigned put"
    # a GET URL does not authorise a PUT
    assert requests.put(url, data=b"nope", timeout=60).status_code == 403
    one_line_error(tm(coordinator, "object", "presign", f"{name}/{key}", "--expires", "8d"), "--expires")


def test_presign_with_a_peer_token_signs_as_that_peer(coordinator) -> None:
    peer = json.loads(ok(tm(coordinator, "peer", "add", f"presigner-{uuid.uuid4().hex[:6]}", "--json")))
    name = f"x-{uuid.uuid4().hex[:16]}"
    auth = {"Authorization": f"Bearer {peer['token']}"}
    assert requests.put(f"{coordinator.endpoint}/{name}", headers=auth, timeout=60).status_code == 200
    assert requests.put(f"{coordinator.endpoint}/{name}/k", data=b"peer data", headers=auth, timeout=60).ok
    url = ok(tm(coordinator, "object", "presign", f"{name}/k", token=peer["token"])).decode().strip()
    assert f"X-Amz-Credential={peer['peer_id']}%2F" in url
    r = requests.get(url, timeout=60)
    assert r.status_code == 200 and r.content == b"peer data"


# ---- version and finding the coordinator -------------------------------------------------------------


def test_version_command_and_flag() -> None:
    expected = f"tunnelmesh {importlib.metadata.version('tunnelmesh')}"
    for args in (["version"], ["--version"]):
        res = subprocess.run([tunnelmesh_exe(), *args], capture_output=True, text=True, timeout=60, env=base_env())
        assert res.returncode == 0 and res.stdout.strip() == expected, res


def test_the_s3_endpoint_gets_a_message_naming_the_base_url(coordinator) -> None:
    base = f"http://127.0.0.1:{coordinator.port}"
    for endpoint in (f"{base}/s3", f"{base}/s3/"):
        res = subprocess.run(
            [tunnelmesh_exe(), "bucket", "list", "--endpoint", endpoint, "--token", coordinator.token],
            capture_output=True,
            timeout=60,
            env=base_env(),
        )
        one_line_error(res, f"pass the coordinator's base URL ({base}), not its S3 endpoint")


def test_no_flags_in_the_coordinators_directory_works_and_elsewhere_says_what_to_pass(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port, s3_port = free_port(), free_port()
    (home / "coordinator.yaml").write_text(
        f"listen: 127.0.0.1:{port}\nworkers: 1\ns3:\n  data_dir: data\n  listen: 127.0.0.1:{s3_port}\n"
    )
    log = tmp_path / "log"
    # no TUNNELMESH_ADMIN_TOKEN: the coordinator generates data/admin.token, as on a fresh install
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", "coordinator.yaml"],
        cwd=home,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=base_env(),
    )
    try:
        wait_for_port(port, proc, log)
        assert (home / "data" / "admin.token").exists()

        def bare(*args: str, cwd: Path = home) -> subprocess.CompletedProcess:
            return subprocess.run([tunnelmesh_exe(), *args], capture_output=True, timeout=60, env=base_env(), cwd=cwd)

        name = f"x-{uuid.uuid4().hex[:16]}"
        created = bare("bucket", "create", name)
        ok(created)
        assert f"using ./coordinator.yaml: http://127.0.0.1:{port}" in created.stderr.decode()
        (home / "f.txt").write_bytes(b"no flags")
        ok(bare("object", "put", f"{name}/f.txt", "f.txt"))
        assert ok(bare("object", "cat", f"{name}/f.txt")) == b"no flags"
        assert name in {b["name"] for b in json.loads(ok(bare("bucket", "list", "--json")))["buckets"]}
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        line = one_line_error(bare("bucket", "list", cwd=elsewhere))
        assert line == "tunnelmesh: pass --endpoint and --token, set TUNNELMESH_ENDPOINT/TUNNELMESH_TOKEN, or --config"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def attacker() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server standing for a host that someone else controls: it records every Authorization
    header it is sent."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(self.headers.get("authorization", ""))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port, seen
    server.shutdown()
    server.server_close()


def test_a_coordinator_yaml_nobody_passed_never_gets_a_token_it_should_not(attacker, tmp_path) -> None:
    """./coordinator.yaml is found, not chosen: it is used only when it and its directory are the user's
    own and writable by nobody else, its listen address is on this host, and the token sent is the one in
    its own data dir (private); otherwise one line says why and what to pass, and nothing is sent."""
    port, seen = attacker
    here = tmp_path / "here"
    here.mkdir(mode=0o755)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    cfg = here / "coordinator.yaml"

    def plant(listen: str = f"127.0.0.1:{port}") -> None:
        cfg.write_text(f"listen: {listen}\nworkers: 1\ns3:\n  data_dir: {data}\n  listen: 127.0.0.1:{free_port()}\n")
        cfg.chmod(0o644)

    def refused(*needles: str, **env: str) -> None:
        res = subprocess.run(
            [tunnelmesh_exe(), "peer", "list"], capture_output=True, timeout=120, env=base_env(**env), cwd=here
        )
        one_line_error(res, *needles)
        assert seen == [], f"a token was sent to {port}: {res.stderr!r}"

    plant()
    # a token of the user's own, from the environment, never goes to an endpoint read from the file
    refused("not sending the token", "pass --endpoint", TUNNELMESH_TOKEN="operator-token-0123456789")
    # nor does the admin token of the environment: only the file's own data dir's admin.token
    refused("admin token", "pass --config ./coordinator.yaml", TUNNELMESH_ADMIN_TOKEN="admin-token-0123456789")
    token = data / "admin.token"
    token.write_text("the-data-dirs-own-admin-token")
    token.chmod(0o600)
    # a directory others may write to (a shared one, /tmp): anyone could have left the file there
    here.chmod(0o777)
    refused("its directory", "writable by group or others", "pass --config ./coordinator.yaml")
    here.chmod(0o755)
    cfg.chmod(0o666)
    refused("writable by group or others")
    cfg.chmod(0o644)
    token.chmod(0o644)
    refused("readable by group or others")
    token.chmod(0o600)
    data.chmod(0o777)
    refused("its data dir", "writable by group or others")
    data.chmod(0o700)
    if os.geteuid() == 0:  # as root the test can give the file to another user
        os.chown(cfg, 65534, 65534)
        refused("not owned by you")
        os.chown(cfg, 0, 0)
    plant(listen=f"192.0.2.1:{port}")  # TEST-NET-1: an address of no host here
    refused("not on this host")
    # all in order: used, and said so
    plant()
    res = subprocess.run([tunnelmesh_exe(), "peer", "list"], capture_output=True, timeout=120, env=base_env(), cwd=here)
    assert f"using ./coordinator.yaml: http://127.0.0.1:{port}" in res.stderr.decode()
    assert seen == ["Bearer the-data-dirs-own-admin-token"]
