"""Why a request's credential was refused, as the fixed reasons of tunnelmesh_auth_failures_total.

Apart from obs/metrics.py (which loads prometheus_client): the S3 edge and the admin API classify the
error where they catch it and keep only the reason, never the exception (its traceback would keep the
request's frames, and with them the server's body channel, alive until the cyclic GC ran: the server
then held a connection it should have closed)."""

from __future__ import annotations

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request

AUTH_REASONS = ("signature", "unknown_key", "expired", "bearer", "console_signin", "metrics_token")


def refused_credential(req: Request, err: S3Error) -> str | None:
    """The reason, or None if no credential was refused (a malformed header, an anonymous refusal or an
    authorization denial are not failed sign-ins)."""
    if err.code == "SignatureDoesNotMatch":
        return "signature"
    if err.code == "InvalidAccessKeyId":
        return "unknown_key"
    if err.code == "AccessDenied":
        if "Expires" in err.fields:
            return "expired"
        scheme = req.header("authorization").split(" ", 1)[0].lower()
        if req.principal is None and scheme in ("bearer", "basic"):  # the peer token itself, refused
            return "bearer"
    return None
