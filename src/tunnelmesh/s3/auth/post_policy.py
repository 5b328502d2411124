"""Browser form uploads (POST Object): the signed policy document, its signature and its conditions.

A form carries no signed headers: the signature covers only the base64 policy, and the policy says
which form fields, with which values, and which file sizes the signer allows. So every field the
form sends must be named by a condition, and every condition must hold; otherwise anyone holding a
signed form could add fields (metadata, a redirect, another bucket) the signer never saw.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tunnelmesh.s3.auth import sigv4
from tunnelmesh.s3.auth.credentials import Credentials, Identity, require_identity
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Request

# fields the policy need not (and cannot usefully) name: the signature and what it covers, the file
EXEMPT_FIELDS = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})
IGNORED_PREFIX = "x-ignore-"
_SIGV4_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
_SIGV2_FIELDS = ("awsaccesskeyid", "signature")
_EXPIRATION = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,9})?Z", re.ASCII)
_TOP_LEVEL = frozenset({"expiration", "conditions"})


@dataclass(frozen=True, slots=True)
class Condition:
    op: str  # "eq" or "starts-with"
    field: str  # lower-cased, without the "$"
    value: str
    text: str  # the condition as the policy gave it, for the error message


@dataclass(slots=True)
class Policy:
    expiration: float
    conditions: list[Condition] = field(default_factory=list)
    # content-length-range, the intersection of all given; None: no bound
    min_size: int = 0
    max_size: int | None = None


def is_form_upload(req: Request) -> bool:
    """A POST to a bucket URL with a multipart/form-data body: credentials travel in the form."""
    ctype = req.header("content-type").split(";", 1)[0].strip().lower()
    return (
        req.method == "POST"
        and bool(req.bucket)
        and not req.key
        and not req.raw_query
        and ctype == ("multipart/form-data")
    )


async def authenticate(req: Request, fields: Mapping[str, str], creds: Credentials, region: str) -> Policy:
    """Verify the form's signature over its policy; sets req.principal and returns the parsed policy.

    `fields` are the form fields before the file, by lower-cased name. The conditions are checked
    separately (`check`), once the key's ${filename} is known.
    """
    v4 = any(name in fields for name in ("x-amz-signature", "x-amz-credential", "x-amz-algorithm"))
    v2 = any(name in fields for name in _SIGV2_FIELDS)
    policy_b64 = fields.get("policy")
    if not v4 and not v2 and policy_b64 is None:
        raise S3Error("AccessDenied", "Access Denied. Anonymous requests are not allowed.")
    if v4 and v2:
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; the form has x-amz-signature and Signature.")
    if policy_b64 is None:
        raise _missing("policy")
    ident = await _verify_v4(fields, policy_b64, creds, region) if v4 else await _verify_v2(fields, policy_b64, creds)
    policy = parse(policy_b64)
    req.principal = ident.principal
    return policy


def _missing(name: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields.",
        ArgumentName=name,
        ArgumentValue="",
    )


def _signature_mismatch(access_key: str) -> S3Error:
    return S3Error("SignatureDoesNotMatch", AWSAccessKeyId=access_key)


async def _verify_v4(fields: Mapping[str, str], policy_b64: str, creds: Credentials, region: str) -> Identity:
    for name in _SIGV4_FIELDS:
        if not fields.get(name):
            raise _missing(name)
    if fields["x-amz-algorithm"] != sigv4.ALGORITHM:
        raise S3Error(
            "InvalidArgument",
            f"x-amz-algorithm only supports {sigv4.ALGORITHM}",
            ArgumentName="x-amz-algorithm",
            ArgumentValue=fields["x-amz-algorithm"],
        )
    try:
        scope = sigv4.parse_scope(fields["x-amz-credential"])
    except S3Error:
        raise S3Error(
            "InvalidArgument",
            "Invalid argument: x-amz-credential is not <key>/<date>/<region>/<service>/aws4_request.",
            ArgumentName="x-amz-credential",
            ArgumentValue=fields["x-amz-credential"],
        ) from None
    sigv4.check_scope(scope, region, presigned=True)
    amz_date = fields["x-amz-date"]
    try:
        sigv4.parse_amz_date(amz_date)
    except S3Error:
        raise S3Error(
            "InvalidArgument", "x-amz-date must be of the form YYYYMMDDTHHMMSSZ.", ArgumentName="x-amz-date"
        ) from None
    if amz_date[:8] != scope.date:
        raise S3Error("SignatureDoesNotMatch", "The credential scope date does not match x-amz-date.")
    ident = await require_identity(creds, scope.access_key)
    key = sigv4.signing_key(ident.secret, scope.date, scope.region, scope.service)
    expected = hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), fields["x-amz-signature"].strip().lower().encode()):
        raise _signature_mismatch(scope.access_key)
    return ident


async def _verify_v2(fields: Mapping[str, str], policy_b64: str, creds: Credentials) -> Identity:
    for name, label in (("awsaccesskeyid", "AWSAccessKeyId"), ("signature", "Signature")):
        if not fields.get(name):
            raise _missing(label)
    access_key = fields["awsaccesskeyid"]
    ident = await require_identity(creds, access_key)
    expected = base64.b64encode(hmac.digest(ident.secret.encode(), policy_b64.encode(), hashlib.sha1))
    if not hmac.compare_digest(expected, fields["signature"].strip().encode()):
        raise _signature_mismatch(access_key)
    return ident


def _invalid(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {detail}")


def parse(policy_b64: str) -> Policy:
    """The policy document: {"expiration": ISO 8601 UTC, "conditions": [...]}, both required."""
    try:
        raw = base64.b64decode("".join(policy_b64.split()), validate=True)
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):  # ValueError: not base64, not UTF-8 or not JSON
        raise _invalid("Invalid JSON.") from None
    except RecursionError:
        raise _invalid("Invalid JSON.") from None
    if not isinstance(doc, dict):
        raise _invalid("Invalid JSON.")
    unknown = sorted(set(doc) - _TOP_LEVEL)
    if unknown:
        raise _invalid(f"Unexpected field '{unknown[0]}'.")
    if "expiration" not in doc:
        raise _invalid("Policy missing expiration.")
    if "conditions" not in doc:
        raise _invalid("Policy missing conditions.")
    policy = Policy(_expiration(doc["expiration"]))
    if not isinstance(doc["conditions"], list):
        raise _invalid("Invalid 'conditions' value: it must be a list.")
    for cond in doc["conditions"]:
        _add_condition(policy, cond)
    return policy


def _expiration(value: object) -> float:
    m = _EXPIRATION.fullmatch(value) if isinstance(value, str) else None
    try:
        if m is None:
            raise ValueError
        y, mo, d, h, mi, s = (int(g) for g in m.groups())
        return datetime(y, mo, d, h, mi, s, tzinfo=UTC).timestamp()
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: '{value}'") from None


def _value(cond: object, value: object) -> str:
    # a number is taken as its decimal text ({"success_action_status": 201}); anything else is refused
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _invalid(f"Invalid Condition: {json.dumps(cond)}")


def _add_condition(policy: Policy, cond: object) -> None:
    text = json.dumps(cond)
    if isinstance(cond, dict):
        if len(cond) != 1:
            raise _invalid("Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.")
        ((name, value),) = cond.items()
        policy.conditions.append(Condition("eq", name.lower(), _value(cond, value), text))
        return
    if not isinstance(cond, list) or not cond or not isinstance(cond[0], str):
        raise _invalid(f"Invalid Condition: {text}")
    op = cond[0].lower()
    if op == "content-length-range":
        bounds = cond[1:]
        if len(bounds) != 2 or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 0 for b in bounds):
            raise _invalid(f"Invalid content-length-range: {text}")
        low, high = bounds
        if low > high:
            raise _invalid(f"Invalid content-length-range: {text}")
        policy.min_size = max(policy.min_size, low)
        policy.max_size = high if policy.max_size is None else min(policy.max_size, high)
        return
    if op not in ("eq", "starts-with"):
        raise _invalid(f"Invalid Condition: unknown operation in {text}")
    if len(cond) != 3 or not isinstance(cond[1], str) or not cond[1].startswith("$"):
        raise _invalid(f"Invalid Condition: {text}")
    policy.conditions.append(Condition(op, cond[1][1:].lower(), _value(cond, cond[2]), text))


def check(policy: Policy, fields: Mapping[str, str], now: float | None = None) -> None:
    """The form must be within the policy: unexpired, no field it does not name, every condition met.

    `fields` are the form's fields by lower-cased name, with `bucket` (the URL's) and `key` (after
    ${filename}) filled in. A condition on a field the form lacks is checked against "". Values
    compare case-sensitively; field names do not.
    """
    now = time.time() if now is None else now
    if policy.expiration <= now:
        raise _denied("Policy expired.")
    if policy.expiration > now + sigv4.MAX_PRESIGNED_SECONDS + sigv4.MAX_SKEW_SECONDS:
        # AWS sets no bound; presigned URLs here live at most seven days, and so does a signed form
        raise _denied("Policy expiration must be within seven days.")
    named = {c.field for c in policy.conditions}
    for name in fields:
        if name not in named and name not in EXEMPT_FIELDS and not name.startswith(IGNORED_PREFIX):
            raise _denied(f"Extra input fields: {name}")
    for c in policy.conditions:
        value = fields.get(c.field, "")
        if not (value == c.value if c.op == "eq" else value.startswith(c.value)):
            raise _denied(f"Policy Condition failed: {c.text}")


def _denied(detail: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {detail}")
