"""The framework floor: the coordinator's HTTP stack with nothing behind it.

One forked process per core, each an embedded granian server on the same port (SO_REUSEPORT), as
the coordinator's workers are, serving an ASGI app that reads the request body and answers 200.
What the load generator gets from it is the most any S3 server built on this stack could do on
this machine; the benchmark reports it as the limit for small PUTs.

With a directory, it also does the work no signed, durable PUT can skip: MD5 (the ETag) and
SHA-256 (the signed payload) of the body, written to a file and fsynced. That is the ceiling
for large PUTs on this stack.

With NULL_SERVER_OVERLAP=1 the store mode works as the coordinator does (tunnelmesh/lanes.py): a body
message of 256 KiB or more passed on as it is, smaller ones joined into 512 KiB batches, MD5, SHA-256 and
the write each on a thread of their own while the next piece is received (at most one piece in flight per
lane), writeback started every 8 MiB, the final fsync kept.
NULL_SERVER_READ_BUFFER sets granian's read buffer (the most one body message carries; granian's default
when unset). Naive and overlapped ceilings side by side tell how much of a server's gain is the technique.

    python bench/null_server.py PORT [DIR]
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.log import LogLevels
from granian.server.embed import Server

SMALL = os.urandom(4096)
_bodies: dict[int, bytes] = {4096: SMALL}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads any body and answers 200: empty to a PUT; to a GET a body from memory, 4 KiB or as many bytes as
    `?bytes=N` asks (a listing page's size), announced but not sent to a HEAD."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["method"] not in ("GET", "HEAD"):
        await _ok(send)
        return
    query = scope.get("query_string", b"")
    size = int(query[6:]) if query.startswith(b"bytes=") else 4096
    body = _bodies.get(size)
    if body is None:
        body = _bodies[size] = b"x" * size
    headers = [(b"content-length", str(size).encode()), (b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})


def hashing_app(directory: str) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        path = os.path.join(directory, f"{os.getpid()}-{id(scope)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                msg = await receive()
                body = msg.get("body", b"")
                md5.update(body)
                sha256.update(body)
                os.write(fd, body)
                if not msg.get("more_body"):
                    break
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(path)
        await _ok(send)

    return app


BATCH = 512 * 1024  # tunnelmesh/lanes.py BATCH
OFFLOAD_MIN = 256 * 1024  # tunnelmesh/lanes.py OFFLOAD_MIN
WRITE_BEHIND = 8 * 1024 * 1024


def _start_writeback() -> Any:
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return lambda fd, offset, length: call(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE


def overlapped_app(directory: str) -> Any:
    pool = None
    writeback = _start_writeback()

    async def batches(receive: Any) -> Any:
        held: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            body = msg.get("body", b"")
            if len(body) >= OFFLOAD_MIN:  # passed on as it is, after what was held (s3/request.py raw_body)
                if held:
                    yield b"".join(held)
                    held, size = [], 0
                yield body
            elif body:
                held.append(body)
                size += len(body)
            if not msg.get("more_body"):
                if held:
                    yield b"".join(held)
                return
            if size >= BATCH:
                yield b"".join(held)
                held, size = [], 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal pool
        if scope["type"] != "http":
            return
        if pool is None:  # made in the forked child
            pool = ThreadPoolExecutor(max_workers=8)
        md5, sha256 = hashlib.md5(), hashlib.sha256()
        path = os.path.join(directory, f"{os.getpid()}-{id(scope)}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        written = [0, 0]  # bytes written, bytes whose writeback was started

        def write(data: bytes) -> None:
            os.write(fd, data)
            written[0] += len(data)
            if written[0] - written[1] >= WRITE_BEHIND:
                writeback(fd, written[1], written[0] - written[1])
                written[1] = written[0]

        lanes: list[Any] = [None, None, None]
        try:
            async for batch in batches(receive):
                for i, fn in enumerate((md5.update, sha256.update, write)):
                    if lanes[i] is not None:
                        await asyncio.wrap_future(lanes[i])
                    lanes[i] = pool.submit(fn, batch)
            for lane in lanes:
                if lane is not None:
                    await asyncio.wrap_future(lane)
            await asyncio.wrap_future(pool.submit(os.fsync, fd))
        finally:
            os.close(fd)
            os.unlink(path)
        await _ok(send)

    return app


async def _ok(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def serve(port: int, asgi: Any) -> None:
    buffer = os.environ.get("NULL_SERVER_READ_BUFFER")
    settings = {"http1_settings": HTTP1Settings(max_buffer_size=int(buffer))} if buffer else {}
    server = Server(
        asgi,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGINL,
        websockets=False,
        log_level=LogLevels.error,
        **settings,
    )
    asyncio.run(server.serve())


def main() -> None:
    port = int(sys.argv[1])
    if len(sys.argv) > 2:
        asgi = overlapped_app(sys.argv[2]) if os.environ.get("NULL_SERVER_OVERLAP") == "1" else hashing_app(sys.argv[2])
    else:
        asgi = app
    children = []
    for _ in range(os.cpu_count() or 1):
        pid = os.fork()
        if pid == 0:
            serve(port, asgi)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
