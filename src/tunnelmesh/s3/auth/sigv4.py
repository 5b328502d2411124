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
SERVICE = "s3"
# what most tools sign with when no region is configured; accepted beside the coordinator's own
DEFAULT_REGION = "us-east-1"
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGNED_SECONDS = 7 * 24 * 3600
# the query parameters of presigned-URL authentication itself; any other x-amz-* parameter is a
# header carried in the query (SDK presigners put x-amz-meta-*, checksums, ... there)
AUTH_QUERY_PARAMS = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-content-sha256",
    }
)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# SigV4 folds only spaces and tabs; \s would also fold U+0085 and U+00A0, letting unsigned bytes in
_WS = re.compile(r"[ \t]+")
_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential\s*=\s*([^,\s]+)\s*,\s*SignedHeaders\s*=\s*([^,\s]+)\s*,\s*"
    r"Signature\s*=\s*([0-9a-fA-F]+)\s*$"
)


@dataclass(slots=True, frozen=True)
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


_SCOPE_DATE = re.compile(r"\d{8}")


@lru_cache(maxsize=256)
def parse_scope(credential: str) -> Scope:
    # a client signs with the same credential scope all day: parsed once (Scope is frozen; errors are not cached)
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not _SCOPE_DATE.fullmatch(parts[1]):
        raise S3Error(
            "AuthorizationHeaderMalformed", "The authorization header is malformed; the Credential is mal-formed."
        )
    return Scope(parts[0], parts[1], parts[2], parts[3])


def check_scope(scope: Scope, region: str, presigned: bool) -> None:
    """The signature must be made for this service and for a region this coordinator answers for.

    A wrong region names the expected one in <Region>: botocore, s3cmd and minio-go read it and retry.
    """
    code = "AuthorizationQueryParametersError" if presigned else "AuthorizationHeaderMalformed"
    what = "Error parsing the X-Amz-Credential parameter;" if presigned else "The authorization header is malformed;"
    if scope.service != SERVICE:
        raise S3Error(code, f"{what} incorrect service '{scope.service}'. This endpoint belongs to '{SERVICE}'.")
    if scope.region not in (region, DEFAULT_REGION):
        raise S3Error(code, f"{what} the region '{scope.region}' is wrong; expecting '{region}'", Region=region)


def check_headers_signed(req: Request, sr: SignedRequest) -> None:
    """Every x-amz-* header present must be signed, as AWS demands: an unsigned one would widen what
    the signer allowed (x-amz-copy-source turns a presigned PUT into a copy run as the signer)."""
    signed = set(sr.signed_headers)
    unsigned = sorted(name for name in req.headers if name.startswith("x-amz-") and name not in signed)
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            HeadersNotSigned=", ".join(unsigned),
        )


def query_headers(req: Request) -> dict[str, str]:
    """The x-amz-* parameters of a presigned URL that stand for headers, by lower-cased header name.
    They are covered by the signature (the canonical query holds every parameter)."""
    out: dict[str, str] = {}
    for name, value, _, _ in req.query_items:
        lname = name.lower()
        if lname.startswith("x-amz-") and lname not in AUTH_QUERY_PARAMS:
            out[lname] = f"{out[lname]},{value}" if lname in out else value
    return out


def apply_query_headers(req: Request) -> None:
    """Make a verified presigned URL's header parameters visible to the operations as headers, so
    they are honoured (x-amz-meta-*) and refused (unsupported features) exactly like headers."""
    for name, value in query_headers(req).items():
        present = req.headers.get(name)
        if present is not None and present != value:
            raise S3Error(
                "InvalidArgument",
                f"{name} is given both as a header and as a query parameter, with different values.",
                ArgumentName=name,
            )
        req.headers[name] = value


def parse_header(value: str) -> SignedRequest:
    m = _AUTH_RE.match(value.strip())
    if not m:
        raise S3Error("AuthorizationHeaderMalformed")
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
        folded = value.strip(" \t")
        if "  " in folded or "\t" in folded:  # most values have no run to fold: no regex for them
            folded = _WS.sub(" ", folded)
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
    return hmac.digest(key, text.encode(), "sha256").hex()  # one C call: hmac.new builds a Python HMAC object


_AMZ_DATE = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z", re.ASCII)


@lru_cache(maxsize=64)  # one value per second of requests
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
            RequestTime=amz_date,
            ServerTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000),
        )


def header_request(req: Request) -> SignedRequest:
    sr = parse_header(req.header("authorization"))
    amz_date = req.header("x-amz-date")
    if "x-amz-date" in req.headers:  # present but empty is malformed, not absent
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
    if expires < 0:
        # AWS's status for this one is 403, unlike the other malformed-parameter errors
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires must be non-negative", status=403)
    if expires > MAX_PRESIGNED_SECONDS:
        raise S3Error(
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires must be "
            "less than 604800 seconds",
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
        raise S3Error("SignatureDoesNotMatch", AWSAccessKeyId=sr.scope.access_key)
    return key
