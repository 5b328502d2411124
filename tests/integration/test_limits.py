"""Configurable limits: object size, header size, stalled bodies; one slow client cannot starve others."""

from __future__ import annotations

import base64
import socket

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import Coordinator, start_coordinator

LIMITS = """limits:
  max_object_size: 1MiB
  max_header_size: 16KiB
  body_timeout: 2
  header_timeout: 2
"""


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    c = start_coordinator(tmp_path_factory.mktemp("limited"), extra_yaml=LIMITS)
    c.client().create_bucket(Bucket="limited")
    yield c
    c.stop()


def test_object_over_max_object_size_is_entity_too_large_and_stores_nothing(limited: Coordinator) -> None:
    s3 = limited.client()
    s3.put_object(Bucket="limited", Key="fits", Body=b"x" * (1024 * 1024))
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="limited", Key="too-big", Body=b"x" * (1024 * 1024 + 1))
    assert e.value.response["Error"]["Code"] == "EntityTooLarge"
    with pytest.raises(ClientError):
        s3.head_object(Bucket="limited", Key="too-big")


def test_oversized_headers_are_refused_and_the_server_keeps_serving(limited: Coordinator) -> None:
    auth = ("admin", limited.token)
    r = requests.get(f"{limited.endpoint}/limited", auth=auth, headers={"x-amz-meta-big": "v" * 32 * 1024})
    assert r.status_code == 431
    assert requests.get(f"{limited.endpoint}/limited", auth=auth).status_code == 200


@pytest.mark.parametrize("listener", ["main", "s3"])
@pytest.mark.parametrize("where", ["header", "query", "method"])
def test_a_head_over_max_header_size_is_refused_on_both_listeners_and_stores_nothing(
    limited: Coordinator, listener: str, where: str
) -> None:
    """The HTTP server's read buffer is larger than the head's limit (it also sizes body chunks): the limit is
    the application's, answered as the HTTP layer would (431, and the connection closes)."""
    port, prefix = (limited.port, "/s3") if listener == "main" else (limited.s3_port, "")
    big = "v" * 20 * 1024  # over 16KiB, far under the read buffer
    target = f"{prefix}/limited/head-{where}-{listener}" + (f"?x-junk={big}" if where == "query" else "")
    extra = f"x-amz-meta-big: {big}\r\n" if where == "header" else ""
    method = "P" * len(big) if where == "method" else "PUT"  # a method is a token of any length
    cred = base64.b64encode(f"admin:{limited.token}".encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {cred}\r\n{extra}"
            "Content-Length: 5\r\n\r\nhello".encode()
        )
        reply = b""
        while chunk := sock.recv(65536):  # the server closes the connection after its answer
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:300]
    auth = ("admin", limited.token)
    assert requests.head(f"{limited.endpoint}/limited/head-{where}-{listener}", auth=auth).status_code == 404
    assert requests.get(f"http://127.0.0.1:{port}{prefix}/limited", auth=auth).status_code == 200


def test_a_head_just_under_max_header_size_is_served(limited: Coordinator) -> None:
    auth = ("admin", limited.token)
    r = requests.put(
        f"{limited.endpoint}/limited/near-limit", auth=auth, data=b"x", headers={"x-junk": "v" * 14 * 1024}
    )
    assert r.status_code == 200, r.text


def _stalled_put(c: Coordinator) -> socket.socket:
    """Headers and half of the body, then silence."""
    sock = socket.create_connection(("127.0.0.1", c.port))
    import base64

    cred = base64.b64encode(f"admin:{c.token}".encode()).decode()
    sock.sendall(
        (
            f"PUT /s3/limited/stalled HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {cred}\r\n"
            "Content-Length: 100000\r\n\r\n"
        ).encode()
        + b"x" * 50_000
    )
    return sock


def test_a_stalled_body_times_out_with_request_timeout_and_stores_nothing(limited: Coordinator) -> None:
    sock = _stalled_put(limited)
    sock.settimeout(30)
    response = b""
    while b"</Error>" not in response:
        chunk = sock.recv(65536)
        if not chunk:
            break
        response += chunk
    sock.close()
    assert b" 400 " in response.split(b"\r\n", 1)[0]
    assert b"<Code>RequestTimeout</Code>" in response
    with pytest.raises(ClientError):
        limited.client().head_object(Bucket="limited", Key="stalled")


def test_stalled_clients_do_not_starve_the_others(limited: Coordinator) -> None:
    stalled = [_stalled_put(limited) for _ in range(20)]
    try:
        s3 = limited.client()
        for i in range(20):
            s3.put_object(Bucket="limited", Key=f"busy-{i}", Body=b"ok")
            assert s3.get_object(Bucket="limited", Key=f"busy-{i}")["Body"].read() == b"ok"
    finally:
        for s in stalled:
            s.close()


def test_a_slow_request_head_is_cut_off(limited: Coordinator) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"GET /s3/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes the head
    # header_timeout is 2 s: the server gives up on the head (closing, or answering with an error);
    # if it waited for ever, recv would raise TimeoutError after 30 s and fail the test
    sock.settimeout(30)
    data = sock.recv(65536)
    sock.close()
    assert data == b"" or data.startswith(b"HTTP/1.1 4")
