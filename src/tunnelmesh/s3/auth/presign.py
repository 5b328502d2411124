"""SigV4 query presigning: the URLs the CLI (`object presign`) and the console (downloads, uploads,
share links) hand out. Pure: the caller gives the clock, so the same inputs give the same URL.

The coordinator verifies these with `sigv4.presigned_request`/`verify`, the code that checks any SDK's
presigned URL, so a URL made here is exactly as good as one made by botocore.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable
from urllib.parse import quote

from tunnelmesh.s3.auth.sigv4 import ALGORITHM, MAX_PRESIGNED_SECONDS, SERVICE, sign, signing_key, uri_encode

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def encode_path(path: str) -> str:
    """A path in the form to send and to sign (the server signs the raw path as sent): each byte
    percent-encoded but for RFC 3986's unreserved characters and the slashes."""
    return quote(path, safe="/-_.~")


def presign_v4(
    method: str,
    host: str,
    path: str,
    query: Iterable[tuple[str, str]],
    access_key: str,
    secret: str,
    region: str,
    expires: int,
    now: float | None = None,
) -> str:
    """The query string (signature included) of a presigned `method` request for `path`, an encoded
    path as `encode_path` gives. Only `host` is signed: the bearer of the URL sends no other header
    that must match, and the payload is UNSIGNED-PAYLOAD (the body is checked by its own checksums).
    """
    if not 1 <= expires <= MAX_PRESIGNED_SECONDS:
        raise ValueError(f"expires must be 1..{MAX_PRESIGNED_SECONDS} seconds, not {expires}")
    t = time.gmtime(time.time() if now is None else now)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", t)
    date = amz_date[:8]
    scope = f"{date}/{region}/{SERVICE}/aws4_request"
    params = [
        *query,
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", f"{access_key}/{scope}"),
        ("X-Amz-Date", amz_date),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", "host"),
    ]
    canonical = "&".join(f"{n}={v}" for n, v in sorted((uri_encode(n), uri_encode(v)) for n, v in params))
    creq = "\n".join((method, path, canonical, f"host:{host}\n", "host", UNSIGNED_PAYLOAD))
    to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(creq.encode()).hexdigest()}"
    signature = sign(signing_key(secret, date, region, SERVICE), to_sign)
    return f"{canonical}&X-Amz-Signature={signature}"
