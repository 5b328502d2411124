"""One coordinator per data dir: a second one refuses to start and disturbs nothing of the first."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import free_port, start_coordinator, tunnelmesh_exe

MIB = 1024 * 1024


def test_second_coordinator_on_the_same_data_dir_exits_naming_the_first_and_its_upload_completes(
    tmp_path: Path,
) -> None:
    c = start_coordinator(tmp_path, workers=2)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="lock")
        # an upload in flight: its first half is in a temporary file when the second one starts
        data = os.urandom(2 * MIB)
        auth = base64.b64encode(f"admin:{c.token}".encode()).decode()
        sock = socket.create_connection(("127.0.0.1", c.port), timeout=60)
        sock.sendall(
            f"PUT /s3/lock/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data[:MIB]
        )
        tmp = c.data_dir / "tmp"
        deadline = time.monotonic() + 60
        while not any(tmp.iterdir()):
            assert time.monotonic() < deadline, "the upload never reached the store"
            time.sleep(0.05)

        cfg = tmp_path / "second.yaml"
        cfg.write_text(
            f"listen: 127.0.0.1:{free_port()}\ns3:\n  data_dir: {c.data_dir}\n  listen: 127.0.0.1:{free_port()}\n"
        )
        second = subprocess.Popen(
            [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, TUNNELMESH_ADMIN_TOKEN="t" * 32),
        )
        try:
            out, err = second.communicate(timeout=30)
        finally:
            if second.poll() is None:  # the old code runs a second coordinator
                second.kill()
                second.communicate()
        assert second.returncode == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, err
        assert f"s3.data_dir {c.data_dir.resolve()} is in use by another coordinator (pid {c.proc.pid})" in lines[0]
        assert "Traceback" not in err and out == ""

        sock.sendall(data[MIB:])
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        sock.close()
        assert response.startswith(b"HTTP/1.1 200"), response[:500]
        got = s3.get_object(Bucket="lock", Key="slow")["Body"].read()
        assert hashlib.md5(got).hexdigest() == hashlib.md5(data).hexdigest()

        # a CLI on the coordinator host (--config: the token file, then HTTP) is not locked out
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
        (c.data_dir / "admin.token").write_text(c.token + "\n")
        res = subprocess.run(
            [tunnelmesh_exe(), "bucket", "list", "--config", str(c.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert res.returncode == 0 and "lock" in res.stdout, res.stderr
    finally:
        c.stop()
    # the lock goes with the coordinator: the next one starts
    c2 = start_coordinator(tmp_path, token=c.token, data_dir=c.data_dir)
    try:
        assert c2.client().head_object(Bucket="lock", Key="slow")["ContentLength"] == 2 * MIB
    finally:
        c2.stop()
