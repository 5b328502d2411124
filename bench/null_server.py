"""The framework floor: the coordinator's HTTP stack with nothing behind it.

One forked process per core, each an embedded granian server on the same port (SO_REUSEPORT), as
the coordinator's workers are, serving an ASGI app that reads the request body and answers 200.
What the load generator gets from it is the most any S3 server built on this stack could do on
this machine; the benchmark reports it as the limit for small PUTs.

    python bench/null_server.py PORT
"""

from __future__ import annotations

import asyncio
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
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def serve(port: int) -> None:
    server = Server(
        app, address="127.0.0.1", port=port, interface=Interfaces.ASGINL, websockets=False, log_level=LogLevels.error
    )
    asyncio.run(server.serve())


def main() -> None:
    port = int(sys.argv[1])
    children = []
    for _ in range(os.cpu_count() or 1):
        pid = os.fork()
        if pid == 0:
            serve(port)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
