"""Anyone may reach the console's sign-in: what they send before a session holds must never take the slots
S3 requests need (limits.max_requests), on either listener."""

from __future__ import annotations

import socket
from pathlib import Path

import requests
from conftest import start_coordinator


def idle_sign_in(port: int) -> socket.socket:
    """A sign-in form that announces a body and never sends it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    origin = f"http://127.0.0.1:{port}"
    s.sendall(
        f"POST /console/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: {origin}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n".encode()
    )
    return s


def test_idle_sign_ins_hold_no_s3_slot(tmp_path: Path) -> None:
    """Twice as many idle sign-ins as the worker has S3 slots: S3 requests on both listeners and a signed-in
    console page still answer (an idle sign-in holding an S3 slot would keep it for body_timeout, fifteen
    times the client's patience)."""
    c = start_coordinator(tmp_path, "limits:\n  max_requests: 4\n  body_timeout: 300\n  min_body_rate: 1\n", workers=1)
    console = f"http://127.0.0.1:{c.port}/console"
    session = requests.Session()
    signed_in = session.post(
        f"{console}/login", data={"token": c.token}, headers={"Origin": f"http://127.0.0.1:{c.port}"}, timeout=20
    )
    assert signed_in.status_code == 200 and "Sign out" in signed_in.text, signed_in.text
    held = [idle_sign_in(c.port) for _ in range(8)]
    try:
        for endpoint in (c.endpoint, c.root_endpoint):
            r = requests.get(f"{endpoint}/", auth=("admin", c.token), timeout=20)
            assert r.status_code == 200, r.text
        page = session.get(f"{console}/", timeout=20)
        assert page.status_code == 200 and "Sign out" in page.text, page.text
    finally:
        for s in held:
            s.close()
        c.stop()
