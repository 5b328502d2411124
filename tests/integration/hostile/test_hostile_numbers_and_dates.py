"""Hostile input, (f): absurd numbers and dates against a real coordinator.

Ranges, list and part markers, part numbers, conditional and signature dates, and presigned expiries
with thousands of digits or years that overflow. The property: they are ignored where HTTP says so,
refused with a 4xx otherwise, never a 5xx. The shared harness and the error-document check (e) are in
helpers.py.
"""

from __future__ import annotations

import base64

import pytest

from .helpers import (
    CASES,
    EMPTY_SHA256,
    basic,
    check_reply,
    error_code,
    exchange,
    http_request,
    new_bucket,
)

# --- (f) absurd numbers and dates: ignored where HTTP says so, a 4xx otherwise, never a 5xx -----------------

HUGE = "9" * 5000  # past int()'s 4300-digit limit
YEAR_TOO_BIG = "Mon, 01 Jan 99999999 00:00:00 GMT"  # datetime refuses the year (ValueError)
YEAR_OVERFLOW = "Mon, 01 Jan 9999999999999999999999999 00:00:00 GMT"  # the year overflows a C long
ZONE_OVERFLOW = "Mon, 01 Jan 2020 00:00:00 +99999999999999999999"  # the zone offset overflows a C int
BAD_DATES = [YEAR_TOO_BIG, YEAR_OVERFLOW, ZONE_OVERFLOW]

# (name, method, path under /s3/{bucket}, query, headers, expected status, expected error code or None)
ABSURD_CASES = [
    ("range start past int()", "GET", "/obj", "", [("Range", f"bytes={HUGE}-")], 416, "InvalidRange"),
    ("range start and end huge", "GET", "/obj", "", [("Range", f"bytes={HUGE}-{HUGE}9")], 416, "InvalidRange"),
    ("range end huge", "GET", "/obj", "", [("Range", f"bytes=0-{HUGE}")], 206, None),
    ("range start 30 digits", "GET", "/obj", "", [("Range", "bytes=" + "9" * 30 + "-")], 416, "InvalidRange"),
    ("suffix range huge", "GET", "/obj", "", [("Range", f"bytes=-{HUGE}")], 206, None),
    ("range in other digits", "GET", "/obj", "", [("Range", "bytes=\u0661-\u0662")], 200, None),
    # found in review: a line break in a response-* override made the HTTP server refuse the head (500)
    *[
        (f"response override {name} {ch!r}", "GET", "/obj", f"response-{name}=a{ch}b", [], 400, "InvalidArgument")
        for name in ("content-type", "content-disposition", "cache-control")
        for ch in ("%0d%0aSet-Cookie:%20x=1", "%00", "%0a")
    ],
    *[(f"If-Modified-Since {d}", "GET", "/obj", "", [("If-Modified-Since", d)], 200, None) for d in BAD_DATES],
    *[(f"If-Unmodified-Since {d}", "GET", "/obj", "", [("If-Unmodified-Since", d)], 200, None) for d in BAD_DATES],
    *[
        (f"copy {h} {d}", "PUT", "/copy-dst", "", [("x-amz-copy-source", "{bucket}/obj"), (h, d)], 200, None)
        for h in ("x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since")
        for d in BAD_DATES
    ],
    ("max-keys huge", "GET", "", f"max-keys={HUGE}", [], 400, "InvalidArgument"),
    ("max-keys 30 digits", "GET", "", "max-keys=" + "9" * 30, [], 200, None),
    ("part-number-marker huge", "GET", "/up", "uploadId={upload}&part-number-marker=" + HUGE, [], 400, None),
    ("part-number-marker 4000", "GET", "/up", "uploadId={upload}&part-number-marker=" + "9" * 4000, [], 200, None),
    ("part-number-marker 30 digits", "GET", "/up", "uploadId={upload}&part-number-marker=" + "9" * 30, [], 200, None),
    ("upload part number huge", "PUT", "/up", f"uploadId={{upload}}&partNumber={HUGE}", [], 400, "InvalidArgument"),
    *[
        (
            "copy range " + r.replace(HUGE, "<5000 digits>"),
            "PUT",
            "/up",
            "uploadId={upload}&partNumber=1",
            [("x-amz-copy-source", "{bucket}/obj"), ("x-amz-copy-source-range", r)],
            status,
            code,
        )
        for r, status, code in (
            (f"bytes=0-{HUGE}", 416, "InvalidRange"),
            (f"bytes={HUGE}-{HUGE}", 416, "InvalidRange"),
            (f"bytes={HUGE}-1", 400, "InvalidArgument"),
            (f"bytes=0-{HUGE}x", 400, "InvalidArgument"),
            (f"bytes={HUGE}-", 400, "InvalidArgument"),
            ("bytes=\u0660-\u0661", 400, "InvalidArgument"),
        )
    ],
]  # fmt: skip


@pytest.fixture(scope="module")
def absurd_bucket(s3) -> tuple[str, str]:
    bucket = new_bucket(s3, "absurd")
    s3.put_object(Bucket=bucket, Key="obj", Body=b"0123456789")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="up")["UploadId"]
    return bucket, upload


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "status", "code"),
    [c[1:] for c in ABSURD_CASES],
    ids=[c[0] for c in ABSURD_CASES],
)
def test_f_absurd_numbers_and_dates_are_ignored_or_refused_with_4xx_never_5xx(
    coordinator,
    absurd_bucket: tuple[str, str],
    method: str,
    path: str,
    query: str,
    headers: list,
    status: int,
    code: str | None,
) -> None:
    bucket, upload = absurd_bucket
    target = f"/s3/{bucket}{path}" + ("?" + query.format(upload=upload) if query else "")
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token)] + [
        (n, v.format(bucket=bucket).encode()) for n, v in headers
    ]
    reply = exchange(coordinator.port, http_request(method, target.encode(), hdrs))
    CASES["absurd numbers and dates"] += 1
    check_reply(reply, coordinator.token)
    assert reply.status == status, reply.raw[:1000]
    if code is not None:
        assert error_code(reply) == code
    if status == 206:
        assert reply.body == b"0123456789"
    if status == 200 and method == "GET" and path == "/obj":
        assert reply.body == b"0123456789"


SIGV4_DATE_ONLY = (
    b"AWS4-HMAC-SHA256 Credential=admin/20200101/us-east-1/s3/aws4_request, SignedHeaders=date;host, Signature="
    + b"0" * 64
)


@pytest.mark.parametrize(
    "date", [*BAD_DATES, "Mon, 01 Jan " + HUGE + " 00:00:00 GMT"], ids=["year", "year-overflow", "zone", "year-5000"]
)
@pytest.mark.parametrize("scheme", ["sigv4-date", "sigv2-date", "sigv2-x-amz-date"])
def test_f_an_absurd_signature_date_is_refused_with_403_before_authentication(
    coordinator, absurd_bucket: tuple[str, str], scheme: str, date: str
) -> None:
    bucket, _ = absurd_bucket
    if scheme == "sigv4-date":
        hdrs = [("Authorization", SIGV4_DATE_ONLY), ("x-amz-content-sha256", EMPTY_SHA256.encode())]
        hdrs.append(("Date", date.encode()))
    else:
        hdrs = [("Authorization", b"AWS admin:" + base64.b64encode(b"0" * 20))]
        hdrs.append(("Date" if scheme == "sigv2-date" else "x-amz-date", date.encode()))
    reply = exchange(
        coordinator.port, http_request("GET", f"/s3/{bucket}/obj".encode(), [("Host", b"127.0.0.1"), *hdrs])
    )
    CASES["absurd signature dates"] += 1
    check_reply(reply, coordinator.token)
    assert reply.status == 403 and error_code(reply) == "AccessDenied", reply.raw[:1000]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=admin%2F20200101%2Fus-east-1%2Fs3%2Faws4_request"
         "&X-Amz-Date=20200101T000000Z&X-Amz-Expires=" + HUGE + "&X-Amz-SignedHeaders=host&X-Amz-Signature=" + "0" * 64,
         "AuthorizationQueryParametersError"),
        ("AWSAccessKeyId=admin&Expires=" + HUGE + "&Signature=AAAA", "AccessDenied"),
        ("AWSAccessKeyId=admin&Expires=" + "9" * 4000 + "&Signature=AAAA", "SignatureDoesNotMatch"),
    ],
    ids=["sigv4-expires", "sigv2-expires-5000", "sigv2-expires-4000"],
)  # fmt: skip
def test_f_an_absurd_presigned_expiry_is_a_4xx(
    coordinator, absurd_bucket: tuple[str, str], query: str, code: str
) -> None:
    bucket, _ = absurd_bucket
    reply = exchange(
        coordinator.port, http_request("GET", f"/s3/{bucket}/obj?{query}".encode(), [("Host", b"127.0.0.1")])
    )
    CASES["absurd presigned expiry"] += 1
    check_reply(reply, coordinator.token)
    assert 400 <= reply.status < 500 and error_code(reply) == code, reply.raw[:1000]
