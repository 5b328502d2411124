"""AWS Signature Version 2 (`Authorization: AWS key:sig` and `?AWSAccessKeyId=&Expires=&Signature=`).

Still produced by boto3's generate_presigned_url, `aws s3 presign` of CLI v1, s3fs and old s3cmd.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.utils import parsedate_to_datetime

from tunnelmesh.s3.auth.sigv4 import MAX_PRESIGNED_SECONDS, MAX_SKEW_SECONDS
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request

# query parameters that are part of the signed resource
SUBRESOURCES = frozenset(
    {
        "acl",
        "cors",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "notification",
        "partNumber",
        "policy",
        "requestPayment",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
        "restore",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        "object-lock",
        "retention",
        "legal-hold",
        "accelerate",
        "encryption",
        "replication",
        "inventory",
        "analytics",
        "metrics",
        "ownershipControls",
    }
)


def string_to_sign(req: Request, date_value: str, path: str) -> str:
    amz = sorted((name, value.strip()) for name, value in req.headers.items() if name.startswith("x-amz-"))
    amz_text = "".join(f"{n}:{v}\n" for n, v in amz)
    sub = sorted((name, value, raw_value) for name, value, _, raw_value in req.query_items if name in SUBRESOURCES)
    resource = path
    if sub:
        resource += "?" + "&".join(f"{n}={v}" if raw else n for n, v, raw in sub)
    return "\n".join(
        (req.method, req.header("content-md5"), req.header("content-type"), date_value, amz_text + resource)
    )


def _sign(secret: str, text: str) -> str:
    return base64.b64encode(hmac.digest(secret.encode(), text.encode("utf-8"), hashlib.sha1)).decode()


def verify(req: Request, secret: str, signature: str, date_value: str) -> None:
    # Clients sign the path they see; some (s3cmd) leave out the endpoint prefix.
    candidates = [req.raw_path]
    if req.prefix and req.raw_path.startswith(req.prefix + "/"):
        candidates.append(req.raw_path[len(req.prefix) :])
    # A bucket's canonical resource is `/<bucket>/` (botocore's HmacV1 signs it so) even when the
    # request line says `/<bucket>`
    if req.bucket and not req.key:
        candidates += [p + "/" for p in candidates if not p.endswith("/")]
    ok = False
    for path in candidates:
        if hmac.compare_digest(_sign(secret, string_to_sign(req, date_value, path)), signature):
            ok = True
    if not ok:
        raise S3Error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )


def header_date(req: Request) -> str:
    """The Date line of the string to sign; x-amz-date, when present, replaces it (and is signed as amz header)."""
    if "x-amz-date" in req.headers:  # present but empty is malformed, not absent
        value = req.header("x-amz-date")
        line = ""
    else:
        value = req.header("date")
        line = value
    try:
        t = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year of 25 digits
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header") from None
    if abs(time.time() - t) > MAX_SKEW_SECONDS:
        raise S3Error(
            "RequestTimeTooSkewed",
            RequestTime=value,
            ServerTime=time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
            MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000),
        )
    return line


def query_expires(req: Request) -> str:
    expires = req.query.get("Expires", "")
    try:
        t = int(expires)
    except ValueError:
        raise S3Error("AccessDenied", "Query-string authentication requires the Expires parameter") from None
    if time.time() > t:
        raise S3Error("AccessDenied", "Request has expired", Expires=expires)
    return expires


def check_lifetime(expires: str) -> None:
    """AWS takes any Expires for SigV2; capping it at 7 days like SigV4 keeps a leaked URL from working
    for years. Checked after the signature, so a tampered Expires is reported as the tampering it is;
    the skew allowance lets through a 7-day URL from a client whose clock runs a little ahead."""
    if int(expires) - time.time() > MAX_PRESIGNED_SECONDS + MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request has expired", Expires=expires)
