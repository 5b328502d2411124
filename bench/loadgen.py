"""A small asyncio HTTP/1.1 load generator with keep-alive connections and SigV4 signing.

It speaks just enough HTTP for S3 benchmarks: one request at a time per connection, responses
framed by Content-Length. Signing keys are derived once; per request only the canonical request
is hashed, so the generator stays cheap next to the servers it measures.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass
class Signer:
    access_key: str
    secret: str
    region: str = "us-east-1"
    _keys: dict[str, bytes] = field(default_factory=dict)

    def key(self, date: str) -> bytes:
        k = self._keys.get(date)
        if k is None:
            k = hmac.digest(("AWS4" + self.secret).encode(), date.encode(), "sha256")
            for part in (self.region, "s3", "aws4_request"):
                k = hmac.digest(k, part.encode(), "sha256")
            self._keys[date] = k
        return k

    def headers(self, method: str, host: str, path: str, query: str, payload_hash: str) -> list[tuple[str, str]]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        date = amz_date[:8]
        scope = f"{date}/{self.region}/s3/aws4_request"
        canonical_query = "&".join(
            sorted(
                f"{quote(unquote(k), safe='-_.~')}={quote(unquote(v), safe='-_.~')}"
                for k, _, v in (p.partition("=") for p in query.split("&") if p)
            )
        )
        creq = (
            f"{method}\n{path}\n{canonical_query}\nhost:{host}\nx-amz-content-sha256:{payload_hash}\n"
            f"x-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{payload_hash}"
        )
        sts = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
        sig = hmac.new(self.key(date), sts.encode(), hashlib.sha256).hexdigest()
        return [
            ("x-amz-date", amz_date),
            ("x-amz-content-sha256", payload_hash),
            (
                "authorization",
                f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}",
            ),
        ]


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        body_file: tuple[int, int] | None = None,
        sink: bool = True,
    ) -> tuple[int, int]:
        """Returns (status, response body bytes). body_file streams (fd, size) without holding it in memory."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        assert self.reader is not None
        length = len(body) if body is not None else (body_file[1] if body_file else 0)
        head = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}", f"content-length: {length}"]
        head += [f"{k}: {v}" for k, v in headers]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        if body:
            self.writer.write(body)
        elif body_file:
            import os

            fd, size = body_file
            pos = 0
            while pos < size:
                chunk = os.pread(fd, min(1 << 20, size - pos), pos)
                pos += len(chunk)
                self.writer.write(chunk)
                await self.writer.drain()
        await self.writer.drain()
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        clen = 0
        chunked = False
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                clen = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and "close" in value.lower():
                close = True
        try:
            return await self._read_body(method, status, clen, chunked)
        finally:
            if close:
                self.close()

    async def _read_body(self, method: str, status: int, clen: int, chunked: bool) -> tuple[int, int]:
        assert self.reader is not None
        received = 0
        if method == "HEAD" or status in (204, 304):
            return status, 0
        if chunked:
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size:
                    await self.reader.readexactly(size)
                    received += size
                await self.reader.readline()
                if size == 0:
                    return status, received
        while received < clen:
            data = await self.reader.read(min(1 << 20, clen - received))
            if not data:
                raise ConnectionError("short body")
            received += len(data)
        return status, received

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class Result:
    ops: int
    seconds: float
    bytes: int
    latencies: list[float]
    errors: int

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        s = sorted(self.latencies)
        return s[min(len(s) - 1, int(p / 100 * len(s)))] * 1000


async def run_load(
    base_url: str,
    concurrency: int,
    make_request,
    total: int | None = None,
    duration: float | None = None,
) -> Result:
    """make_request(i) -> (method, path, query, headers, body, body_file, payload_bytes)."""
    u = urlsplit(base_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    latencies: list[float] = []
    counter = 0
    errors = 0
    moved = 0
    start = time.perf_counter()
    deadline = start + duration if duration else None

    async def worker() -> None:
        nonlocal counter, errors, moved
        conn = Connection(host, port)
        try:
            while True:
                if total is not None and counter >= total:
                    return
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                i = counter
                counter += 1
                method, path, headers, body, body_file, payload = make_request(i)
                t0 = time.perf_counter()
                try:
                    status, got = await conn.request(method, path, headers, body, body_file)
                except (ConnectionError, asyncio.IncompleteReadError):
                    errors += 1
                    conn.close()
                    continue
                latencies.append(time.perf_counter() - t0)
                if status >= 300:
                    errors += 1
                moved += payload + got
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    return Result(len(latencies), elapsed, moved, latencies, errors)
