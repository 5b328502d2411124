"""Held-open connections: 2,000 idle ones (silent, or keep-alive between requests) must not lock out the
next client, the server closes them after limits.idle_timeout, and requests in flight stay bounded."""

from __future__ import annotations

import base64
import http.client
import os
import resource
import select
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Coordinator, start_coordinator

HELD = 2000
# clients from several loopback addresses, as a crowd of peers would be
SOURCES = ["127.0.0.1", *(f"127.0.0.{i}" for i in range(2, 10))]
ANSWER_WITHIN = 5.0  # a generous failure bound for one request, not a performance claim
IDLE_TIMEOUT = 2


@pytest.fixture(scope="module", autouse=True)
def enough_files() -> Iterator[None]:
    """The test holds HELD sockets itself, so its soft open-file limit goes up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = HELD + 512
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard open-file limit {hard} is below the {needed} this test holds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@contextmanager
def _soft_file_limit(limit: int) -> Iterator[None]:
    """A coordinator started inside inherits this soft limit, the common default of a login shell."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response framed by Content-Length; b'' if the server closed without one."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _hold(c: Coordinator, count: int) -> list[socket.socket]:
    """`count` idle connections to the main listener: the first half silent (never a byte sent), the
    second half keep-alive ones that had one request answered and then say nothing more."""
    held: list[socket.socket] = []
    try:
        for i in range(count):
            s = socket.create_connection(
                ("127.0.0.1", c.port), timeout=ANSWER_WITHIN, source_address=(SOURCES[i % len(SOURCES)], 0)
            )
            held.append(s)
            if i >= count // 2:
                s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                try:
                    answer = _read_response(s)
                except TimeoutError:
                    answer = b"(no answer)"
                assert answer.startswith(b"HTTP/1.1 404"), f"connection {i} of {count}: {answer[:60]!r}"
    except BaseException:
        for s in held:
            s.close()
        raise
    return held


def _still_open(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # nothing to read and no end of stream
    except OSError:
        return False
    finally:
        s.settimeout(ANSWER_WITHIN)


def _admin_peers(c: Coordinator) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=ANSWER_WITHIN)
    try:
        auth = base64.b64encode(f"admin:{c.token}".encode()).decode()
        conn.request("GET", "/api/peers", headers={"Authorization": f"Basic {auth}"})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def _answered(c: Coordinator) -> None:
    """A new client's admin request and S3 requests on both listeners each get their answer. Several
    of each, because with more than one worker each takes its own share of the new connections."""
    for _ in range(4):
        assert _admin_peers(c) == 200
        for endpoint in (c.endpoint, c.root_endpoint):
            s3 = c.client(endpoint, connect_timeout=ANSWER_WITHIN, read_timeout=ANSWER_WITHIN)
            assert "Buckets" in s3.list_buckets()
            s3.close()


def test_new_clients_are_answered_while_2000_idle_connections_are_held(tmp_path: Path) -> None:
    # one worker takes all the connections, and it starts with the common soft limit of 1024 files,
    # so its limit must be raised first; a long idle timeout keeps every connection open meanwhile
    with _soft_file_limit(1024):
        c = start_coordinator(tmp_path, extra_yaml="limits:\n  idle_timeout: 600\n", workers=1)
    held: list[socket.socket] = []
    try:
        held = _hold(c, HELD)
        _answered(c)
        closed = [i for i, s in enumerate(held) if not _still_open(s)]
        assert not closed, f"{len(closed)} of the held connections were closed early, e.g. #{closed[:5]}"
    finally:
        for s in held:
            s.close()
        c.stop()


def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, extra_yaml=f"limits:\n  idle_timeout: {IDLE_TIMEOUT}\n")
    held: list[socket.socket] = []
    try:
        held = _hold(c, HELD)
        still_open = set(held)
        with selectors.DefaultSelector() as sel:  # epoll: select() stops at descriptor 1024
            for s in held:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            deadline = time.monotonic() + 60  # generous: the timeout is 2 s
            while still_open and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1.0):
                    s = key.fileobj
                    try:
                        ended = s.recv(65536) == b""
                    except ConnectionResetError:
                        ended = True
                    if ended:
                        sel.unregister(s)
                        still_open.discard(s)
        assert not still_open, (
            f"{len(still_open)} of {HELD} idle connections still open 60 s past a {IDLE_TIMEOUT} s idle timeout"
        )
        _answered(c)
    finally:
        for s in held:
            s.close()
        c.stop()


def test_requests_in_flight_beyond_max_requests_wait_for_a_free_slot(tmp_path: Path) -> None:
    c = start_coordinator(tmp_path, extra_yaml="limits:\n  max_requests: 2\n", workers=1)
    socks: list[socket.socket] = []
    try:
        c.client().create_bucket(Bucket="inflight")
        auth = base64.b64encode(f"admin:{c.token}".encode()).decode()
        for i in range(2):
            s = socket.create_connection(("127.0.0.1", c.port), timeout=30)
            socks.append(s)
            s.sendall(
                f"PUT /s3/inflight/k{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
                "Content-Length: 5\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            # the server asks for the body only once the request runs: then it holds a slot until
            # the test sends the body
            assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        probe = socket.create_connection(("127.0.0.1", c.port), timeout=30)
        socks.append(probe)
        probe.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # a request that ran would be answered at once (a 404); this one must wait
        readable, _, _ = select.select([probe], [], [], 1.0)
        assert not readable, "a third request ran while max_requests (2) were in flight"
        socks[0].sendall(b"hello")
        assert _read_response(socks[0]).startswith(b"HTTP/1.1 200")
        assert _read_response(probe).startswith(b"HTTP/1.1 404")  # the freed slot
    finally:
        for s in socks:
            s.close()
        c.stop()


def _worker_connection_limit(soft: int, hard: int, metrics_dir: Path) -> tuple[int, int]:
    """What a worker process started under these open-file limits allows per listener (two listeners,
    default limits), and its soft limit afterwards. (A worker's code imports the metrics, which need
    their multiprocess directory, as the supervisor gives it.)"""
    code = (
        "import resource\n"
        "from tunnelmesh.config import Limits\n"
        "from tunnelmesh.worker import _connection_limit\n"
        "print(_connection_limit(Limits(), 2), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    ).stdout.split()
    return int(out[0]), int(out[1])


def test_a_worker_raises_a_low_soft_file_limit_and_fits_its_connections_under_a_low_hard_one(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2 * 4096 + 256:
        pytest.skip(f"the hard open-file limit {hard} is below what the default limits need")
    connections, soft = _worker_connection_limit(1024, hard, tmp_path)
    assert connections == 4096 and soft >= 2 * 4096 + 256
    # beyond the hard limit the server could not accept at all, so the worker takes fewer connections
    assert _worker_connection_limit(1024, 1256, tmp_path) == ((1256 - 256) // 2, 1256)
