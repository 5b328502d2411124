"""The component tier: the S3 operations and the store in one process, on every metadata backend, with
no sockets. A request is signed with SigV4 by botocore, as a client signs it, and handed to the S3
ASGI application as the HTTP server would; the store underneath is a real Store with real blob files,
its metadata in SQLite or in memory. Integration tests (tests/integration) keep running real
coordinator processes over HTTP; this tier is for running every operation on every backend quickly."""

from __future__ import annotations

import asyncio
import urllib.parse
from dataclasses import dataclass
from typing import Any

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tunnelmesh.console.s3call import exchange
from tunnelmesh.s3.app import S3Api
from tunnelmesh.store.engine import Store

REGION = "us-east-1"
HOST = "s3.component.test"
ADMIN = "admin"
TOKEN = "component-tier-admin-token"
MAX_SIZE = 1 << 30


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class InProcessS3:
    """A signed S3 request to the ASGI app, answered without a socket."""

    def __init__(self, api: S3Api, store: Store, loop: asyncio.AbstractEventLoop) -> None:
        self.api = api
        self.store = store
        self.loop = loop
        self.creds = Credentials(ADMIN, TOKEN)

    def __call__(
        self, method: str, path: str, query: str = "", body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Reply:
        url = f"http://{HOST}{urllib.parse.quote(path)}" + (f"?{query}" if query else "")
        aws = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
        aws.headers["host"] = HOST
        aws.headers["content-length"] = str(len(body))  # as an HTTP client sends it, for every method
        S3SigV4Auth(self.creds, "s3", REGION).add_auth(aws)
        prepared = aws.prepare()
        split = urllib.parse.urlsplit(prepared.url)
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": urllib.parse.unquote(split.path),
            "raw_path": split.path.encode(),
            "query_string": split.query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in prepared.headers.items()],
            "server": ("127.0.0.1", 9000),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
        }
        return self.loop.run_until_complete(self._exchange(scope, body))

    async def _exchange(self, scope: dict[str, Any], body: bytes) -> Reply:
        answer = await exchange(lambda receive, send: self.api.handle(scope, receive, send, ""), body)
        return Reply(answer.status, dict(answer.headers), answer.body)
