"""AWS Signature Version 4: Authorization header and presigned query strings.

S3 signs the path exactly as sent (no normalisation, no double encoding), the query re-encoded
with RFC 3986 and sorted, and the signed headers with runs of white space folded.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from calendar import timegm
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 15 * 60
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# SigV4 folds only spaces and tabs; \s would also fold U+0085 and U+00A0, letting unsigned bytes in
_WS = re.compile(r"[ \t]+")
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential\s*=\s*([^,\s]+)\s*,\s*SignedHeaders\s*=\s*([^,\s]+)\s*,\s*"
    r"Signature\s*=\s*([0-9a-fA-F]+)\s*$"
)


@dataclass(slots=True)
class Scope:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def text(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


@dataclass(slots=True)
class SignedRequest:
    scope: Scope
    signed_headers: list[str]
    signature: str
    amz_date: str
    presigned: bool


def parse_scope(credential: str) -> Scope:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not re.fullmatch(r"\d{8}", parts[1]):
        raise S3Error(
            "AuthorizationHeaderMalformed", "The authorization header is malformed; the Credential is mal-formed."
        )
    return Scope(parts[0], parts[1], parts[2], parts[3])


def parse_header(value: str) -> SignedRequest:
    m = _AUTH_RE.match(value.strip())
    if not m:
        raise S3Error("AuthorizationHeaderMalformed", "The authorization header is malformed.")
    return SignedRequest(parse_scope(m.group(1)), m.group(2).lower().split(";"), m.group(3).lower(), "", False)


def uri_encode(s: str) -> str:
    return quote(s, safe="-_.~")


def canonical_query(req: Request, drop_signature: bool) -> str:
    pairs = [
        (uri_encode(name), uri_encode(value))
        for name, value, _, _ in req.query_items
        if not (drop_signature and name == "X-Amz-Signature")
    ]
    pairs.sort()
    return "&".join(f"{n}={v}" for n, v in pairs)


def canonical_headers(req: Request, names: list[str]) -> str:
    lines = []
    for name in names:
        value = req.headers.get(name)
        if value is None:
            raise S3Error("SignatureDoesNotMatch", f"Signed header {name} is missing from the request.")
        folded = _WS.sub(" ", value.strip(" \t"))
        lines.append(f"{name}:{folded}\n")
    return "".join(lines)


def canonical_request(req: Request, sr: SignedRequest, payload_hash: str) -> str:
    return "\n".join(
        (
            req.method,
            req.raw_path,
            canonical_query(req, sr.presigned),
            canonical_headers(req, sr.signed_headers),
            ";".join(sr.signed_headers),
            payload_hash,
        )
    )


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    k = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    k = hmac.digest(k, region.encode(), "sha256")
    k = hmac.digest(k, service.encode(), "sha256")
    return hmac.digest(k, b"aws4_request", "sha256")


def string_to_sign(amz_date: str, scope: Scope, creq: str) -> str:
    # header values arrive as latin-1 text; encoding them back gives the exact bytes the client signed
    try:
        raw = creq.encode("latin-1")
    except UnicodeEncodeError:
        raw = creq.encode()
    return f"{ALGORITHM}\n{amz_date}\n{scope.text}\n{hashlib.sha256(raw).hexdigest()}"


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


_AMZ_DATE = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z", re.ASCII)


def parse_amz_date(value: str) -> float:
    # by hand: time.strptime took about 15 us of a 4 KiB PUT's CPU
    m = _AMZ_DATE.fullmatch(value)
    fields = tuple(map(int, m.groups())) if m else ()
    if not fields or not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] <= 23 and fields[4] <= 59):
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
    return float(timegm(fields + (0, 0, 0)))


def check_skew(req_time: float, amz_date: str) -> None:
    now = time.time()
    if abs(now - req_time) > MAX_SKEW_SECONDS:
        raise S3Error(
            "RequestTimeTooSkewed",
            "The difference between the request time and the server's time is too large.",
            RequestTime=amz_date,
            ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000),
        )


def header_request(req: Request) -> SignedRequest:
    sr = parse_header(req.header("authorization"))
    amz_date = req.header("x-amz-date")
    if amz_date:
        t = parse_amz_date(amz_date)
    else:
        # x-amz-date wins over Date; a Date header must then be in RFC 1123 form
        from email.utils import parsedate_to_datetime

        try:
            dt = parsedate_to_datetime(req.header("date"))
        except (TypeError, ValueError, OverflowError):  # OverflowError: a year of 25 digits
            raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date header") from None
        t = dt.timestamp()
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
    if amz_date[:8] != sr.scope.date:
        raise S3Error("SignatureDoesNotMatch", "The credential scope date does not match the request date.")
    check_skew(t, amz_date)
    if "host" not in sr.signed_headers:
        raise S3Error("AuthorizationHeaderMalformed", "The host header must be signed.")
    sr.amz_date = amz_date
    return sr


def presigned_request(req: Request) -> SignedRequest:
    q = req.query
    if q.get("X-Amz-Algorithm") != ALGORITHM:
        raise S3Error("AuthorizationQueryParametersError", 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    for name in ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if not q.get(name):
            raise S3Error("AuthorizationQueryParametersError", f"Query-string authentication requires {name}.")
    scope = parse_scope(q["X-Amz-Credential"])
    amz_date = q["X-Amz-Date"]
    t = parse_amz_date(amz_date)
    if amz_date[:8] != scope.date:
        raise S3Error("SignatureDoesNotMatch", "The credential scope date does not match X-Amz-Date.")
    try:
        expires = int(q["X-Amz-Expires"])
    except ValueError:
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires should be a number") from None
    if not 1 <= expires <= 604800:
        raise S3Error(
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be between 1 and 604800 seconds (seven days).",
        )
    now = time.time()
    if t - now > MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request is not valid yet")
    if now > t + expires:
        raise S3Error("AccessDenied", "Request has expired", Expires=str(expires))
    sr = SignedRequest(scope, q["X-Amz-SignedHeaders"].lower().split(";"), q["X-Amz-Signature"].lower(), amz_date, True)
    if "host" not in sr.signed_headers:
        raise S3Error("AuthorizationQueryParametersError", "The host header must be signed.")
    return sr


def verify(req: Request, sr: SignedRequest, secret: str, payload_hash: str) -> bytes:
    """Check the signature; returns the signing key (the seed for chunk signatures)."""
    key = signing_key(secret, sr.scope.date, sr.scope.region, sr.scope.service)
    creq = canonical_request(req, sr, payload_hash)
    expected = sign(key, string_to_sign(sr.amz_date, sr.scope, creq))
    if not hmac.compare_digest(expected, sr.signature):
        raise S3Error(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your key and signing method.",
            AWSAccessKeyId=sr.scope.access_key,
        )
    return key
