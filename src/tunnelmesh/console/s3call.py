"""In-process calls of the S3 and admin APIs as the console's signed-in principal (docs/operations.md 1.4).

The same `S3Api.handle` / `AdminApi.handle` a client reaches, with the principal under CONSOLE_PRINCIPAL:
the same router, authorizer, quotas, audit and access log decide. The console request holds a slot of
`in_flight`; these inner calls take none (an inner acquire could deadlock when every slot is taken).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from tunnelmesh.admin.api import AdminApi
from tunnelmesh.s3.app import S3Api
from tunnelmesh.s3.auth.presign import encode_path
from tunnelmesh.s3.request import CONSOLE_PRINCIPAL, Principal

S3_PREFIX = "/s3"


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def ok(self) -> bool:
        return self.status < 300

    def header(self, name: str, default: str = "") -> str:
        return next((v for k, v in self.headers if k == name), default)

    def xml(self) -> ET.Element:
        """The XML document with its namespaces dropped (our own S3 responses, never a client's input)."""
        root = ET.fromstring(self.body)
        for el in root.iter():
            el.tag = el.tag.rpartition("}")[2]
        return root

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> str:
        """The error's code and message, for the page that reports it."""
        try:
            if self.header("content-type").startswith("application/json"):
                doc = self.json()
                return f"{doc.get('error', '')}: {doc.get('message', '')}"
            root = self.xml()
            return f"{root.findtext('Code', '')}: {root.findtext('Message', '')}"
        except (ValueError, ET.ParseError):
            return f"HTTP {self.status}"


def _query(items: Iterable[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" if v != "" else quote(k) for k, v in items)


class Calls:
    def __init__(self, api: S3Api, admin: AdminApi) -> None:
        self.api = api
        self.admin_api = admin

    async def s3(
        self,
        principal: Principal,
        method: str,
        bucket: str = "",
        key: str = "",
        query: Iterable[tuple[str, str]] = (),
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        client: str = "",
    ) -> Answer:
        path = S3_PREFIX + "/" + encode_path(bucket + ("/" + key if key else ""))
        scope = _scope(principal, method, path, _query(query), headers, body, client)
        return await exchange(lambda receive, send: self.api.handle(scope, receive, send, S3_PREFIX), body)

    async def admin(self, principal: Principal, method: str, path: str, doc: Any = None, client: str = "") -> Answer:
        """`path` under /api/ (encoded), `doc` the JSON body if any."""
        body = b"" if doc is None else json.dumps(doc).encode()
        target, _, q = path.partition("?")
        headers = [("content-type", "application/json")] if body else []
        scope = _scope(principal, method, target, q, headers, body, client)
        return await exchange(lambda receive, send: self.admin_api.handle(scope, receive, send), body)


def _scope(
    principal: Principal,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    client: str,
) -> dict[str, Any]:
    head = [(b"host", b"console.local"), *((k.encode(), v.encode()) for k, v in headers)]
    if body or method in ("PUT", "POST"):
        head.append((b"content-length", str(len(body)).encode()))
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": head,
        "client": (client, 0),
        CONSOLE_PRINCIPAL: principal,
    }


async def exchange(call: Any, body: bytes) -> Answer:
    """One request through an ASGI callable `call(receive, send)`, its whole `body` sent at once, in process."""
    sent = False
    out = Answer(0, [], b"")
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message["headers"]]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await call(receive, send)
    out.body = b"".join(chunks)
    return out
