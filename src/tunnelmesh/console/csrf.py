"""The checks every state-changing console request passes (docs/operations.md 1.1, layer 3): the browser says
the request comes from the console's own origin, and it carries the session's CSRF token."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

SAFE_METHODS = ("GET", "HEAD")


def origin_refusal(headers: Mapping[str, str], own_origin: str) -> str | None:
    """Why the request does not come from the console's own page, or None. An absent or `null` Origin is
    refused: every browser this console supports sends Origin on a POST (a page on `s3.listen`, another
    port of the same host, is same-site, so SameSite cookies alone would not stop it)."""
    origin = headers.get("origin")
    if not origin or origin == "null":
        return "no Origin"
    if origin != own_origin:
        return "foreign Origin"
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"Sec-Fetch-Site {site}"
    return None


def token_ok(expected: str, sent: str) -> bool:
    return bool(sent) and hmac.compare_digest(expected.encode(), sent.encode())
