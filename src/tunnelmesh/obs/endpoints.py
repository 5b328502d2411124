"""The ASGI handlers of `/healthz` and `/readyz` on the main listener (obs/health.py says what they mean).

Unauthenticated and outside the S3 API's request slots: a probe must answer while every slot is taken by
slow uploads, and must not take one a client needs.
"""

from __future__ import annotations

from typing import Any

from tunnelmesh.obs.health import HEALTHY, Readiness

HEALTHZ = b"/healthz"
READYZ = b"/readyz"
PATHS = (HEALTHZ, READYZ)


METHODS = ("GET", "HEAD")


async def healthz(scope: dict[str, Any], send: Any) -> None:
    # answered here, on the event loop, touching nothing else: that the loop answers is what it says
    if scope["method"] not in METHODS:
        await _reply(scope, send, 405, "method not allowed")
        return
    await _reply(scope, send, 200, HEALTHY)


async def readyz(scope: dict[str, Any], send: Any, readiness: Readiness) -> None:
    if scope["method"] not in METHODS:
        await _reply(scope, send, 405, "method not allowed")
        return
    reason = await readiness.reason()
    await _reply(scope, send, 200 if reason is None else 503, HEALTHY if reason is None else reason)


async def _reply(scope: dict[str, Any], send: Any, status: int, text: str) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),  # a cached "ok" would hide an outage from the next probe
    ]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
