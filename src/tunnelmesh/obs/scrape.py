"""GET /metrics on the main listener: who may scrape, and one scrape at a time per worker.

Access (docs/operations.md 1.6): `metrics.public`, or the bearer `metrics.token` (a credential good for this
page only, so a Prometheus server needs no admin secret), or any admin credential `authenticate()` takes.
Scrapes take no slot of the S3 requests' `in_flight`: a saturated coordinator is exactly when they matter.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from tunnelmesh.obs import metrics
from tunnelmesh.obs.auth_reasons import refused_credential
from tunnelmesh.s3.auth import authenticate
from tunnelmesh.s3.auth.credentials import Credentials
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import from_scope
from tunnelmesh.store.engine import Store

log = logging.getLogger("tunnelmesh.metrics")

PATH = b"/metrics"


class MetricsEndpoint:
    def __init__(
        self,
        store: Store,
        credentials: Credentials,
        region: str,
        token: str | None,
        public: bool,
        max_bucket_series: int,
    ) -> None:
        self.store = store
        self.credentials = credentials
        self.region = region
        self.token = token.encode() if token is not None else None
        self.public = public
        self.max_bucket_series = max_bucket_series
        # a scrape reads every worker's files and the bucket rows: two at once in one worker only double that
        self._one_at_a_time = asyncio.Semaphore(1)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(send, 405, b"method not allowed: /metrics takes GET\n", [(b"allow", b"GET, HEAD")])
            return
        refusal = await self._refusal(scope, receive)
        if refusal is not None:
            status, text = refusal
            extra = [(b"www-authenticate", b'Bearer realm="tunnelmesh metrics"')] if status == 401 else []
            await _plain(send, status, text, extra)
            return
        try:
            async with self._one_at_a_time:
                body = await metrics.render(self.store, self.max_bucket_series)
        except Exception:  # a damaged metric file, or the metadata gone: one line and a clear 500, never a crash
            log.exception("metrics: the scrape failed")
            await _plain(send, 500, b"metrics unavailable: see the coordinator's log\n", [])
            return
        await _plain(send, 200, b"" if scope["method"] == "HEAD" else body, [], CONTENT_TYPE_LATEST.encode())

    async def _refusal(self, scope: dict[str, Any], receive: Any) -> tuple[int, bytes] | None:
        """None if the caller may scrape, else the status and the text to answer with."""
        if self.public:
            return None
        auth = next((v for k, v in scope["headers"] if k.lower() == b"authorization"), b"")
        scheme, _, presented = auth.partition(b" ")
        bearer = scheme.lower() == b"bearer"
        if self.token is not None and bearer and hmac.compare_digest(self.token, presented.strip()):
            return None
        req = from_scope(scope, receive, "")
        if not auth and not any(k in req.query for k in ("X-Amz-Signature", "Signature")):
            return 401, b"/metrics needs metrics.token or an admin credential\n"
        try:
            await authenticate(req, self.credentials, self.region)
        except S3Error as err:
            # a bearer here is most likely a scraper's metrics token gone stale
            reason = "metrics_token" if bearer else refused_credential(req, err)
            if reason is not None:
                metrics.auth_failure(reason)
            return 401, b"/metrics: the credential was refused\n"
        principal = req.principal
        if principal is None or not principal.is_admin or principal.key_id is not None:
            return 403, b"/metrics: only an admin credential or metrics.token may scrape\n"
        return None


async def _plain(
    send: Any, status: int, body: bytes, extra: list[tuple[bytes, bytes]], ctype: bytes = b"text/plain; charset=utf-8"
) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
