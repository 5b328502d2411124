"""Paging stays one page of reads at any depth (docs/operations.md 1.5): 100 000 keys written directly through
the Store, the console's own ASGI app walked in process from page 1 to page 400 by its "next" links; page 1
and page 400 each read the same one page of rows from the metadata backend (counted on its scan)."""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import html
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# the in-process app counts its requests into prometheus-client's multiprocess files, as a worker does
# (obs/metrics.py refuses to load without the dir the supervisor prepares): a dir of this module's own
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="tm-deep-pages-metrics-"))
atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

from tunnelmesh.asgi import Apps, build  # noqa: E402
from tunnelmesh.config import load  # noqa: E402
from tunnelmesh.store.engine import ensure_system_bucket  # noqa: E402
from tunnelmesh.store.records import ObjectRecord, WriteConditions  # noqa: E402

KEYS = 100_000
PAGE = 200
TOKEN = "deep-pages-admin-token-0123456789"
HOST = "127.0.0.1:9000"


class CountingReads:
    """The backend's own reads, passed through; counts the rows its ordered object scan yields."""

    def __init__(self, reads: Any, counter: list[int]) -> None:
        self._reads = reads
        self._counter = counter

    def scan_objects(self, *args: Any, **kw: Any) -> Iterator[Any]:
        for row in self._reads.scan_objects(*args, **kw):
            self._counter[0] += 1
            yield row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reads, name)


async def _fill(apps: Apps) -> None:
    store = apps.store
    await store.create_bucket("big", "admin", "us-east-1")
    slots = asyncio.Semaphore(64)  # concurrent writers share group commits: about 20 s for 100 000 here

    async def one(i: int) -> None:
        async with slots:
            rec = ObjectRecord(
                bucket="big",
                key=f"k/{i:06d}",
                size=1,
                etag=hashlib.md5(b"x").hexdigest(),
                mtime=time.time(),
                headers={"content-type": "text/plain"},
                checksums={},
                segments=[],
                owner="admin",
                data=b"x",
            )
            await store.put_object(rec, WriteConditions())

    await asyncio.gather(*(one(i) for i in range(KEYS)))


async def _call(app: Callable[..., Any], method: str, target: str, body: bytes = b"", cookie: str = "") -> tuple:
    path, _, query = target.partition("?")
    headers = [(b"host", HOST.encode()), (b"content-length", str(len(body)).encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    if method == "POST":
        headers += [(b"origin", f"http://{HOST}".encode()), (b"content-type", b"application/x-www-form-urlencoded")]
    scope = {
        "type": "http",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 50000),
    }
    sent = False
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return out["status"], out["headers"], out["body"].decode()


def _objects_and_next(page: str) -> tuple[list[str], str | None]:
    names = re.findall(r'<tr class="object">.*?<a href="[^"]*">([^<]*)</a>', page, re.S)
    nxt = re.search(r'<a href="([^"]*)" id="next">', page)
    return [html.unescape(n) for n in names], html.unescape(nxt.group(1)) if nxt else None


def test_page_400_of_100_000_keys_reads_one_page_of_rows(tmp_path: Path) -> None:
    config = tmp_path / "coordinator.yaml"
    config.write_text(f"listen: 127.0.0.1:0\ns3:\n  data_dir: {tmp_path / 'data'}\n  listen: 127.0.0.1:0\n")
    settings = load(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        apps = loop.run_until_complete(_build(settings))
        loop.run_until_complete(_fill(apps))
        rows = [0]
        real_read = apps.store.meta.read

        async def counting_read(fn: Callable[[Any], Any], snapshot: bool = False) -> Any:
            return await real_read(lambda r: fn(CountingReads(r, rows)), snapshot=snapshot)

        apps.store.meta.read = counting_read  # type: ignore[method-assign]
        status, headers, _ = loop.run_until_complete(
            _call(apps.main, "POST", "/console/login", f"token={TOKEN}".encode())
        )
        assert status == 303, status
        cookie = headers["set-cookie"].split(";")[0]
        target: str | None = "/console/b/big/?prefix=k/"
        read_on: dict[int, int] = {}
        for number in range(1, 401):
            assert target is not None, f"no page {number}"
            rows[0] = 0
            status, _, page = loop.run_until_complete(_call(apps.main, "GET", target, cookie=cookie))
            assert status == 200, (number, status)
            names, target = _objects_and_next(page)
            first = (number - 1) * PAGE
            assert names == [f"{i:06d}" for i in range(first, first + PAGE)], number
            read_on[number] = rows[0]
        # a page reads max-keys + 1 rows (the one more says whether the listing goes on), however deep it is
        assert read_on[1] == read_on[400] == PAGE + 1, read_on
    finally:
        apps.store.close()
        loop.close()
        asyncio.set_event_loop(None)


async def _build(settings: Any) -> Apps:
    apps = build(settings, TOKEN)
    apps.store.blobs.prepare()
    await apps.store.meta.write(lambda tx: ensure_system_bucket(tx, time.time()))
    return apps
