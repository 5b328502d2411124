"""The framework floor: the coordinator's HTTP stack with nothing behind it.

One forked process per core, each an embedded granian server on the same port (SO_REUSEPORT), as
the coordinator's workers are, serving an ASGI app that reads the request body and answers 200.
What the load generator gets from it is the most any S3 server built on this stack could do on
this machine; the benchmark reports it as the limit for small PUTs.

With a directory, it also does the work no signed, durable PUT can skip: MD5 (the ETag) and
SHA-256 (the signed payload) of the body, written to a file and fsynced. That is the ceiling
for large PUTs on this stack.

    python bench/null_server.py PORT [DIR]
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from typing import Any

from granian.constants import Interfaces
from granian.log import LogLevels
from granian.server.embed import Server


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await _ok(send)


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


async def _ok(send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def serve(port: int, asgi: Any) -> None:
    server = Server(
        asgi, address="127.0.0.1", port=port, interface=Interfaces.ASGINL, websockets=False, log_level=LogLevels.error
    )
    asyncio.run(server.serve())


def main() -> None:
    port = int(sys.argv[1])
    asgi = hashing_app(sys.argv[2]) if len(sys.argv) > 2 else app
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
