"""Hostile input, (a): mutated SigV4 requests against a real coordinator.

A signed PutObject, DeleteObject or DeleteObjects request, sent raw, is mutated (a byte flipped,
inserted or deleted in its path, query, a signed header, the body or the Authorization header). The
property: a mutated signed request is refused with a 4xx and changes nothing. The shared harness and
the error-document check (e) are in helpers.py.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes, urlsplit

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from .helpers import (
    CASES,
    HYPOTHESIS,
    S3_NS,
    assert_no_process_died,
    check_reply,
    exchange,
    http_request,
    md5_b64,
    mutate,
    new_bucket,
    object_exists,
)

_URI_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%")


def target_is_http_valid(target: bytes) -> bool:
    """RFC 9112 origin-form: RFC 3986 characters only (no space, controls, `"<>\\^`{|}` or fragment)."""
    return all(b in _URI_CHARS for b in target)


def header_value_is_http_valid(value: bytes) -> bool:
    """field-value: HTAB, SP, VCHAR and obs-text; no CR, LF, NUL or other controls."""
    return all(b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80 for b in value)


# --- (a) mutated SigV4 requests ------------------------------------------------------------------------


@dataclass
class RawRequest:
    method: bytes
    path: bytes
    query: bytes
    headers: list[tuple[str, bytes]]
    body: bytes
    port: int
    prefix_len: int  # length of the endpoint's path prefix ("/s3" or "")

    @property
    def target(self) -> bytes:
        return self.path + (b"?" + self.query if self.query else b"")

    def to_bytes(self) -> bytes:
        return http_request(self.method, self.target, self.headers, self.body)

    def header(self, name: str) -> bytes:
        return next(v for k, v in self.headers if k.lower() == name)

    def signed_header_names(self) -> list[str]:
        m = re.search(rb"SignedHeaders=([^,\s]+)", self.header("authorization"))
        assert m
        return m.group(1).decode().split(";")


def sigv4_request(
    coordinator, endpoint: str, method: str, path: str, query: str, headers: dict, body: bytes
) -> RawRequest:
    base = coordinator.endpoint if endpoint == "prefix" else coordinator.root_endpoint
    url = base + path + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    S3SigV4Auth(Credentials("admin", coordinator.token), "s3", "us-east-1").add_auth(req)
    parts = urlsplit(url)
    hdrs = [("Host", parts.netloc.encode())] + [(k, v.encode("latin-1")) for k, v in req.headers.items()]
    assert req.headers["X-Amz-Content-SHA256"] == hashlib.sha256(body).hexdigest()  # the payload is signed
    return RawRequest(
        method.encode(), parts.path.encode(), parts.query.encode(), hdrs, body, parts.port, len(urlsplit(base).path)
    )


DELETE_DOC = '<Delete xmlns="{ns}"><Object><Key>{key}</Key></Object></Delete>'


def build_kind(coordinator, endpoint: str, kind: str, bucket: str, key: str) -> RawRequest:
    if kind == "put":
        return sigv4_request(
            coordinator,
            endpoint,
            "PUT",
            f"/{bucket}/{quote(key)}",
            "x-id=PutObject&note=hostile%20input",
            {"Content-Type": "text/plain", "x-amz-meta-origin": "fuzz"},
            b"a payload that must never be stored\n" * 3,
        )
    if kind == "delete":
        return sigv4_request(coordinator, endpoint, "DELETE", f"/{bucket}/{quote(key)}", "x-id=DeleteObject", {}, b"")
    assert kind == "delete-objects"
    doc = DELETE_DOC.format(ns=S3_NS, key=key).encode()
    return sigv4_request(
        coordinator,
        endpoint,
        "POST",
        f"/{bucket}",
        "delete",
        {"Content-Type": "application/xml", "Content-MD5": md5_b64(doc).decode()},
        doc,
    )


def canonical_query(q: bytes) -> list[tuple[str, str]]:
    """SigV4's view of a query: parameters decoded, re-encoded per RFC 3986, sorted; empty ones dropped."""
    out = []
    for part in q.split(b"&"):
        if not part:
            continue
        n, _, v = part.partition(b"=")
        out.append((quote_from_bytes(unquote_to_bytes(n), "-_.~"), quote_from_bytes(unquote_to_bytes(v), "-_.~")))
    return sorted(out)


def canonical_value(v: bytes) -> bytes:
    """SigV4 trims a header value and folds runs of spaces; HTTP optional white space is SP and HTAB."""
    return re.sub(rb"[ \t]+", b" ", v).strip(b" \t")


_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential\s*=\s*([^,\s]+)\s*,\s*SignedHeaders\s*=\s*([^,\s]+)\s*,\s*"
    r"Signature\s*=\s*([0-9a-fA-F]+)\s*$"
)


def auth_meaning(v: bytes) -> tuple[str, str, str] | None:
    """What an Authorization header says (white space between its parts and hex case do not matter)."""
    m = _AUTH_RE.match(v.decode("latin-1").strip())
    return None if m is None else (m.group(1), m.group(2).lower(), m.group(3).lower())


def apply_mutation(req: RawRequest, where: str, op: str, pos: int, byte: int, which: int) -> tuple[RawRequest, bool]:
    """The mutated request and whether it still means the same thing as the signed original."""
    m = RawRequest(req.method, req.path, req.query, list(req.headers), req.body, req.port, req.prefix_len)
    if where == "path":
        keep = req.prefix_len + 1  # mutate after "<prefix>/": elsewhere it is not an S3 request at all
        m.path = req.path[:keep] + mutate(req.path[keep:], op, pos, byte)
    elif where == "query":
        m.query = mutate(req.query, op, pos, byte)
    elif where == "body":
        m.body = mutate(req.body, op, pos, byte)
        return m, False  # any change of a signed payload is a different request
    elif where == "signed-header":
        names = req.signed_header_names()
        name = names[which % len(names)]
        i = next(i for i, (k, _) in enumerate(m.headers) if k.lower() == name)
        k, v = m.headers[i]
        m.headers[i] = (k, mutate(v, op, pos, byte))
        return m, canonical_value(m.headers[i][1]) == canonical_value(v)
    elif where == "authorization":
        i = next(i for i, (k, _) in enumerate(m.headers) if k.lower() == "authorization")
        k, v = m.headers[i]
        m.headers[i] = (k, mutate(v, op, pos, byte))
        meaning = auth_meaning(m.headers[i][1])
        return m, meaning is not None and meaning == auth_meaning(v)
    # a fragment is not sent to the resource: compare what is left without it
    eff = m.target.split(b"#", 1)[0]
    path, _, query = eff.partition(b"?")
    return m, path == req.path and canonical_query(query) == canonical_query(req.query)


def http_layer_rejects(req: RawRequest) -> bool:
    return not (target_is_http_valid(req.target) and all(header_value_is_http_valid(v) for _, v in req.headers))


def store_snapshot(s3, bucket: str) -> tuple:
    names = sorted(b["Name"] for b in s3.list_buckets()["Buckets"])
    objs = sorted((o["Key"], o["ETag"], o["Size"]) for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    try:
        sentinel = s3.head_object(Bucket=bucket, Key="sentinel")
    except ClientError as e:
        return names, objs, e.response["ResponseMetadata"]["HTTPStatusCode"]
    return names, objs, sentinel["ETag"], sentinel["Metadata"], sentinel["ContentType"]


@pytest.fixture(scope="module")
def sig_bucket(s3) -> str:
    return new_bucket(s3, "sig")


@pytest.mark.parametrize("where", ["path", "query", "signed-header", "body", "authorization"])
@pytest.mark.parametrize("kind", ["put", "delete", "delete-objects"])
def test_a_mutated_sigv4_request_is_refused_with_4xx_and_changes_nothing(
    coordinator, s3, sig_bucket: str, kind: str, where: str, processes: set[int]
) -> None:
    bucket = sig_bucket
    s3.put_object(Bucket=bucket, Key="sentinel", Body=b"sentinel", Metadata={"origin": "setup"})

    # control: the same request, unmutated and sent the same raw way, is accepted on both endpoints;
    # so the refusals below are caused by the mutations, not by the harness
    for endpoint in ("prefix", "root"):
        ck = f"control/{kind}/{endpoint}"
        if kind != "put":
            s3.put_object(Bucket=bucket, Key=ck, Body=b"to be deleted")
        ctl = build_kind(coordinator, endpoint, kind, bucket, ck)
        r = exchange(ctl.port, ctl.to_bytes())
        check_reply(r, coordinator.token)
        assert r.status in (200, 204), r.raw[:1000]
        assert object_exists(s3, bucket, ck) == (kind == "put")
        s3.delete_object(Bucket=bucket, Key=ck)

    target_key = "sentinel" if kind != "put" else "mutated/put-target"
    signed = build_kind(coordinator, "prefix", kind, bucket, target_key).signed_header_names()
    host, last = signed.index("host"), len(signed) - 1

    @settings(HYPOTHESIS, max_examples=25)
    @given(
        endpoint=st.sampled_from(["prefix", "root"]),
        op=st.sampled_from(["flip", "insert", "delete"]),
        pos=st.integers(-1, 4096),
        byte=st.integers(1, 255),
        which=st.integers(0, 16),
    )
    # white space by Unicode's definition, not by HTTP's: NO-BREAK SPACE and NEXT LINE (latin-1 bytes)
    # appended to a signed value make a different value, so they must break the signature
    @example(endpoint="prefix", op="insert", pos=-1, byte=0xA0, which=host)
    @example(endpoint="root", op="insert", pos=-1, byte=0x85, which=last)
    @example(endpoint="prefix", op="insert", pos=0, byte=0xA0, which=last)
    # a byte added to an empty signed payload
    @example(endpoint="prefix", op="insert", pos=0, byte=0x41, which=0)
    def run(endpoint: str, op: str, pos: int, byte: int, which: int) -> None:
        original = build_kind(coordinator, endpoint, kind, bucket, target_key)
        mutated, same_meaning = apply_mutation(original, where, op, pos, byte, which)
        assume(not same_meaning)
        before = store_snapshot(s3, bucket)
        reply = exchange(mutated.port, mutated.to_bytes())
        CASES[f"sigv4 mutation ({where})"] += 1
        http_bad = http_layer_rejects(mutated)
        check_reply(reply, coordinator.token, http_layer_ok=http_bad, close_ok=http_bad)
        assert reply.status is None or 400 <= reply.status < 500, (
            f"mutated request accepted: {mutated.to_bytes()[:1500]!r}\n-> {reply.raw[:600]!r}"
        )
        assert store_snapshot(s3, bucket) == before, f"state changed by {mutated.to_bytes()[:1500]!r}"

    run()
    assert_no_process_died(coordinator, processes)
