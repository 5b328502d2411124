"""Slow clients cannot hold the coordinator: a peer dripping request bodies or never reading its
responses does not starve the admin API of request slots, and its own slots are freed after the
limits (body_timeout in both directions, min_body_rate for the body's average)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import select
import socket
import threading
import time
from pathlib import Path

from conftest import Coordinator, start_coordinator

ANSWER_WITHIN = 5.0  # a generous failure bound for one answer, not a performance claim
FREED_WITHIN = 60.0  # generous: the limits below end a hostile request after about ten seconds
SLOTS = 4
RANGE = 20_000_000  # far more than the kernel and the server buffer between them


def _basic(c: Coordinator) -> str:
    return "Basic " + base64.b64encode(f"admin:{c.token}".encode()).decode()


def _admin_peers(c: Coordinator) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=ANSWER_WITHIN)
    try:
        conn.request("GET", "/api/peers", headers={"Authorization": _basic(c)})
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = bytearray()
    while chunk := sock.recv(1 << 20):
        data += chunk
    return bytes(data)


def _probe(c: Coordinator) -> socket.socket:
    """An S3 request (unsigned, so refused at once) that needs a request slot to be answered."""
    s = socket.create_connection(("127.0.0.1", c.port), timeout=FREED_WITHIN)
    s.sendall(b"GET /s3/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return s


def _unanswered(s: socket.socket) -> bool:
    readable, _, _ = select.select([s], [], [], 0)
    return not readable


class _Drip(threading.Thread):
    """Uploads that send one body byte every `every` seconds until they are answered."""

    def __init__(self, socks: list[socket.socket], every: float) -> None:
        super().__init__(daemon=True)
        self.socks = socks
        self.every = every
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            for s in self.socks:
                # once answered and closed by the server the send fails: the test reads the answer
                with contextlib.suppress(OSError):
                    s.send(b"x")


def test_dripping_uploads_do_not_starve_the_admin_api_and_are_ended_by_the_minimum_rate(tmp_path: Path) -> None:
    # a byte every 1.5 s never stalls for body_timeout (3 s), but averages below min_body_rate (1 B/s):
    # each drip is ended once its waits pass 3 s + 1 s per byte, after about 9 s
    c = start_coordinator(
        tmp_path,
        extra_yaml=f"limits:\n  max_requests: {SLOTS}\n  body_timeout: 3\n  min_body_rate: 1\n",
        workers=1,
    )
    drips: list[socket.socket] = []
    drip = _Drip(drips, every=1.5)
    probe: socket.socket | None = None
    try:
        c.client().create_bucket(Bucket="slow")
        for i in range(SLOTS):
            s = socket.create_connection(("127.0.0.1", c.port), timeout=FREED_WITHIN)
            drips.append(s)
            s.sendall(
                f"PUT /s3/slow/drip{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {_basic(c)}\r\n"
                "Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            # the server asks for the body once the request runs: from then on it holds a slot
            assert _read_head(s).startswith(b"HTTP/1.1 100 Continue")
        drip.start()
        probe = _probe(c)

        assert _admin_peers(c) == 200
        # answered while every slot was still held: the drips and the S3 request waiting for a slot
        # had no answer yet
        assert all(_unanswered(s) for s in drips), "a drip was answered before the admin request"
        assert _unanswered(probe), "the S3 probe was answered while four drips held every slot"

        for i, s in enumerate(drips):
            answer = _read_until_closed(s, FREED_WITHIN)
            assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 400 Bad Request", f"drip {i}: {answer[:200]!r}"
            assert b"<Code>RequestTimeout</Code>" in answer, f"drip {i}: {answer[:400]!r}"
        # the freed slots serve the waiting request
        assert _read_head(probe).startswith(b"HTTP/1.1 403")
    finally:
        drip.stop.set()
        for s in drips:
            s.close()
        if probe is not None:
            probe.close()
        c.stop()


def test_unread_ranged_downloads_do_not_starve_the_admin_api_and_are_cut_off(tmp_path: Path) -> None:
    # a download whose client takes nothing is cut off once a send has waited body_timeout (8 s)
    c = start_coordinator(tmp_path, extra_yaml=f"limits:\n  max_requests: {SLOTS}\n  body_timeout: 8\n", workers=1)
    readers: list[socket.socket] = []
    probe: socket.socket | None = None
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="slow")
        s3.put_object(Bucket="slow", Key="big", Body=b"z" * (RANGE + 1024))
        for _ in range(SLOTS):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
            s.connect(("127.0.0.1", c.port))
            readers.append(s)
            s.sendall(
                f"GET /s3/slow/big HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {_basic(c)}\r\n"
                f"Range: bytes=1-{RANGE}\r\n\r\n".encode()
            )
        # the response starts: each request runs and holds a slot, and nobody reads on
        for s in readers:
            s.settimeout(ANSWER_WITHIN)
            assert s.recv(15) == b"HTTP/1.1 206 Pa"
        probe = _probe(c)

        assert _admin_peers(c) == 200
        assert _unanswered(probe), "the S3 probe was answered while four downloads held every slot"

        # after the deadline the downloads are cut off and their slots serve the waiting request
        assert _read_head(probe).startswith(b"HTTP/1.1 403")
        for i, s in enumerate(readers):
            received = len(_read_until_closed(s, FREED_WITHIN))
            assert received < RANGE, f"download {i} was not cut off ({received} bytes)"
        c.wait_for_log("the client stopped reading the response; cut off")
    finally:
        for s in readers:
            s.close()
        if probe is not None:
            probe.close()
        c.stop()


def test_a_slow_reader_above_the_minimum_gets_its_whole_download(tmp_path: Path) -> None:
    # 256 KiB every half second is slow, but far above a piece (256 KiB) per body_timeout (3 s)
    c = start_coordinator(tmp_path, extra_yaml="limits:\n  body_timeout: 3\n", workers=1)
    try:
        s3 = c.client()
        s3.create_bucket(Bucket="slow")
        body = os.urandom(4 * 2**20)
        s3.put_object(Bucket="slow", Key="obj", Body=body)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with s:
            s.connect(("127.0.0.1", c.port))
            s.sendall(
                f"GET /s3/slow/obj HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {_basic(c)}\r\n"
                f"Range: bytes=1-{len(body) - 1}\r\nConnection: close\r\n\r\n".encode()
            )
            s.settimeout(FREED_WITHIN)
            data = bytearray()
            while True:
                time.sleep(0.5)
                want = 256 * 1024
                while want > 0 and (chunk := s.recv(min(want, 65536))):
                    data += chunk
                    want -= len(chunk)
                if want > 0:  # the server closed the connection
                    break
        head, _, got = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 206 "), head
        assert got == body[1:]
        assert "the client stopped reading" not in c.log()
    finally:
        c.stop()
