"""Hostile input against a real coordinator: mutated SigV4 requests, garbage and malicious XML,
path-traversal and odd-Unicode keys, header floods, absurd lengths, stalled and truncated bodies.

Everything is sent over raw sockets (or boto3 where the point is a faithful client) so that no
client library quietly repairs the input. Hypothesis runs derandomized (fixed examples every run).

The properties:
  * a mutated signed request is refused with a 4xx and changes nothing;
  * broken request documents get a 400 S3 error, never a 5xx, never file contents;
  * any key either round-trips exactly or is refused cleanly, and no file appears outside the store;
  * floods, absurd lengths, stalls and truncated aws-chunked bodies fail cleanly and the server keeps
    serving everyone else;
  * every error the S3 layer sends is a well-formed S3 XML error document with no traceback and no
    secret in it. (Rejections made by the HTTP server itself before the request reaches the S3 layer,
    for bytes HTTP does not allow or for limits such as 431, carry no body; they are accepted only
    for such requests.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import socket
import time
import uuid
import xml.parsers.expat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes, urlsplit
from xml.etree import ElementTree as ET

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import descendants
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

# --- bookkeeping ------------------------------------------------------------------------------------

CASES: Counter[str] = Counter()  # cases tried, by kind (Hypothesis shrinking re-runs count too)
CHECKED: Counter[str] = Counter()  # responses checked against (e), by status

HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
PASSWD = Path("/etc/passwd").read_bytes()
PASSWD_LINES = [line for line in PASSWD.splitlines() if len(line) >= 8]
# what path traversal would reach: a file this module owns beside the data dir (the machine's
# /etc/passwd changes whenever anything adds a user, so the tests do not compare it)
SENTINEL = f"tunnelmesh test sentinel {uuid.uuid4().hex}: outside the data dir\n".encode()
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module", autouse=True)
def case_report(request: pytest.FixtureRequest):
    CASES.clear()
    CHECKED.clear()
    yield
    total = sum(CASES.values())
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items()))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(CHECKED.items(), key=lambda kv: str(kv[0])))
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[hostile-input] {total} cases tried ({detail})")
        print(f"[hostile-input] {sum(CHECKED.values())} responses checked, by status ({statuses})")


# --- raw HTTP ---------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int | None  # None: the connection closed (or was reset) without a response
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    raw: bytes = b""

    @property
    def from_s3_layer(self) -> bool:
        """Responses of the S3 layer carry a request id; the HTTP server's own rejections do not."""
        return "x-amz-request-id" in self.headers


def parse_reply(buf: bytes) -> Reply:
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return Reply(None, raw=buf)
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    n = int(headers.get("content-length", len(rest)))
    return Reply(status, headers, rest[:n], buf)


def _complete(buf: bytes, head_only: bool) -> bool:
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    if head_only:
        return True
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    return m is not None and len(rest) >= int(m.group(1))


def exchange(port: int, data: bytes, *, timeout: float = 20.0, half_close: bool = False, head: bool = False) -> Reply:
    """Send bytes on a fresh connection and read one response (or the connection closing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered early and closed; its answer may still be readable
        buf = b""
        while not _complete(buf, head):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                raise AssertionError(f"no response within {timeout}s; got {buf[:300]!r}") from None
            if not chunk:
                break
            buf += chunk
    return parse_reply(buf)


def http_request(
    method: str | bytes,
    target: bytes,
    headers: list[tuple[str, bytes]],
    body: bytes = b"",
    *,
    length: int | None = None,
) -> bytes:
    m = method.encode() if isinstance(method, str) else method
    out = [m + b" " + target + b" HTTP/1.1"]
    out += [k.encode() + b": " + v for k, v in headers]
    out.append(b"Content-Length: %d" % (len(body) if length is None else length))
    out.append(b"Connection: close")
    return b"\r\n".join(out) + b"\r\n\r\n" + body


def basic(token: str) -> tuple[str, bytes]:
    return ("Authorization", b"Basic " + base64.b64encode(f"admin:{token}".encode()))


def md5_b64(data: bytes) -> bytes:
    return base64.b64encode(hashlib.md5(data).digest())


_URI_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@/?%")


def target_is_http_valid(target: bytes) -> bool:
    """RFC 9112 origin-form: RFC 3986 characters only (no space, controls, `"<>\\^`{|}` or fragment)."""
    return all(b in _URI_CHARS for b in target)


def header_value_is_http_valid(value: bytes) -> bool:
    """field-value: HTAB, SP, VCHAR and obs-text; no CR, LF, NUL or other controls."""
    return all(b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80 for b in value)


def check_reply(
    reply: Reply,
    token: str,
    *,
    http_layer_ok: bool = False,
    close_ok: bool = False,
    head: bool = False,
    not_implemented_ok: bool = False,
) -> None:
    """(e): never 5xx; S3-layer errors are S3 XML error documents; nothing secret or sensitive leaks."""
    CHECKED["closed" if reply.status is None else reply.status] += 1
    assert b"Traceback" not in reply.raw, reply.raw[:2000]
    assert token.encode() not in reply.raw
    assert SENTINEL not in reply.raw, "a file outside the data dir was served"
    for line in PASSWD_LINES:
        assert line not in reply.raw, f"/etc/passwd content in a response: {line!r}"
    if reply.status is None:
        assert close_ok, f"the connection closed without a response: {reply.raw[:300]!r}"
        return
    if not (not_implemented_ok and reply.status == 501):  # S3's answer to a feature it does not offer
        assert reply.status < 500, (reply.status, reply.raw[:2000])
    if not reply.from_s3_layer:
        # the HTTP server refused it before the application saw it: only for requests HTTP itself rejects
        assert http_layer_ok, f"response without an S3 request id: {reply.raw[:500]!r}"
        assert 400 <= reply.status < 500 and reply.body == b"", reply.raw[:500]
        return
    if reply.status >= 400 and not head and reply.status != 304:
        root = assert_s3_error_document(reply)
        if reply.status == 501:
            assert root.findtext("Code") == "NotImplemented", reply.body[:500]


def assert_s3_error_document(reply: Reply) -> ET.Element:
    assert reply.headers.get("content-type", "").startswith("application/xml"), reply.headers
    try:
        root = ET.fromstring(reply.body)
    except ET.ParseError as e:
        raise AssertionError(f"error body is not well-formed XML ({e}): {reply.body[:1000]!r}") from None
    assert root.tag == "Error", reply.body[:500]
    assert root.findtext("Code"), reply.body[:500]
    assert root.find("Message") is not None, reply.body[:500]
    assert root.findtext("RequestId") == reply.headers["x-amz-request-id"]
    return root


def error_code(reply: Reply) -> str:
    return ET.fromstring(reply.body).findtext("Code") or ""


def assert_serving(s3, bucket: str) -> None:
    """A normal client still gets normal service."""
    key = f"alive-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=key, Body=b"still here")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"still here"
    s3.delete_object(Bucket=bucket, Key=key)


@pytest.fixture(scope="module", autouse=True)
def processes(coordinator) -> set[int]:
    return set(descendants(coordinator.proc.pid))


def assert_no_process_died(coordinator, processes: set[int]) -> None:
    """No worker crashed (and was quietly respawned): the process tree is the one the module started with."""
    assert coordinator.proc.poll() is None
    assert set(descendants(coordinator.proc.pid)) == processes


def object_exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
        return False
    return True


def wait_for_empty_tmp(data_dir: Path, deadline_s: float = 30.0) -> list[str]:
    """Names left in <data_dir>/tmp once the server had a while to clean up (eventual, not timed)."""
    end = time.monotonic() + deadline_s
    while True:
        left = sorted(p.name for p in (data_dir / "tmp").iterdir())
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.1)


def new_bucket(s3, tag: str) -> str:
    name = f"hm-{tag}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


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


def mutate(data: bytes, op: str, pos: int, byte: int) -> bytes:
    """Flip (xor with `byte`), insert `byte`, or delete at `pos` (wrapped; -1 is the end)."""
    if op == "insert":
        i = len(data) if pos < 0 else pos % (len(data) + 1)
        return data[:i] + bytes([byte]) + data[i:]
    if not data:
        return bytes([byte])  # nothing to flip or delete: insert instead
    i = len(data) - 1 if pos < 0 else pos % len(data)
    if op == "flip":
        return data[:i] + bytes([data[i] ^ byte]) + data[i + 1 :]
    return data[:i] + data[i + 1 :]


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


# --- (b) garbage and malicious XML documents -------------------------------------------------------------

ENTITY_INNER = {
    "Delete": "<Object><Key>{v}</Key></Object>",
    "CompleteMultipartUpload": "<Part><PartNumber>1</PartNumber><ETag>{v}</ETag></Part>",
}

HOSTILE_TEMPLATES = [
    # external entities (XXE): local file, network, parameter entities, external DTD subset
    '<?xml version="1.0"?><!DOCTYPE R [<!ENTITY x SYSTEM "file:///etc/passwd">]><R>{inner:&x;}</R>',
    '<?xml version="1.0"?><!DOCTYPE R [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><R>{inner:&x;}</R>',
    '<?xml version="1.0"?><!DOCTYPE R [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><R>{inner:x}</R>',
    '<?xml version="1.0"?><!DOCTYPE R SYSTEM "file:///etc/passwd"><R>{inner:x}</R>',
    '<!DOCTYPE R PUBLIC "-//x//y" "file:///etc/passwd"><R>{inner:x}</R>',
    # entity expansion: billion laughs, quadratic blow-up, a harmless-looking internal entity
    '<?xml version="1.0"?><!DOCTYPE R [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">'
    '<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">'
    '<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;"><!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">]>'
    "<R>{inner:&h;}</R>",
    '<!DOCTYPE R [<!ENTITY q "' + "Q" * 20000 + '">]><R>{inner:' + "&q;" * 500 + "}</R>",
    '<!DOCTYPE R [<!ENTITY k "plain">]><R>{inner:&k;}</R>',
    '<!DOCTYPE R [<!ELEMENT R ANY><!ATTLIST R a CDATA "x">]><R>{inner:x}</R>',
    # XInclude and stylesheets pointing at local files
    '<R xmlns:xi="http://www.w3.org/2001/XInclude">{inner:<xi:include href="file:///etc/passwd" parse="text"/>}</R>',
    '<?xml-stylesheet type="text/xsl" href="file:///etc/passwd"?><R>{inner:x}</R>',
    # encodings: unknown, wrong, multi-byte, codecs that are not text encodings
    '<?xml version="1.0" encoding="x-unknown-charset"?><R>{inner:x}</R>',
    '<?xml version="1.0" encoding="rot13"?><R>{inner:x}</R>',
    '<?xml version="1.0" encoding="hex"?><R>{inner:x}</R>',
    '<?xml version="1.0" encoding="idna"?><R>{inner:x}</R>',
    '<?xml version="1.0" encoding="utf-16"?><R>{inner:x}</R>',
    '<?xml version="1.0" encoding="utf-32"?><R>{inner:x}</R>',
    '<?xml version="1.0" encoding="base64"?><R>{inner:x}</R>',
    '<?xml version="1.1"?><R>{inner:&#x1;}</R>',
    "<R>{inner:&#0;}</R>",
    "<R>{inner:&#xFFFE;}</R>",
    "<R>{inner:&undefined;}</R>",
    # structure: wrong or prefixed roots, unclosed, CDATA, comments, processing instructions
    "<NotTheRoot>{inner:x}</NotTheRoot>",
    '<s3:R xmlns:s3="' + S3_NS + '">{inner:x}</s3:R>',
    "<R>{inner:x}",
    "<R>{inner:<![CDATA[x]]>}</R><R/>",
    "<R><!-- {inner:x} --></R>",
    "<?pi {inner:x}?><R/>",
    "<R>" + "<Object>" * 3000 + "</Object>" * 3000 + "</R>",
    "<R " + " ".join(f'a{i}="{i}"' for i in range(2000)) + ">{inner:x}</R>",
    "<R>{inner:" + "k" * 100000 + "}</R>",
]


def render_template(t: str, root: str) -> bytes:
    inner = ENTITY_INNER[root]
    t = re.sub(r"\{inner:(.*?)\}", lambda m: inner.format(v=m.group(1)), t, flags=re.S)
    return t.replace("<R", "<" + root).replace("</R>", f"</{root}>").replace("DOCTYPE R", f"DOCTYPE {root}").encode()


FRAGMENTS = [
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3\x28",
    b"<",
    b">",
    b"&",
    b"&amp",
    b"]]>",
    b"<!DOCTYPE x>",
    b'<!ENTITY x SYSTEM "file:///etc/passwd">',
    b"&x;",
    b"<Object>",
    b"</Object>",
    b"<Part>",
    b"<PartNumber>99999999999999999999</PartNumber>",
    b"<PartNumber>-1</PartNumber>",
    b"<Key></Key>",
    b"<Quiet>true</Quiet>",
    b'<?xml version="1.0"?>',
    b"\r\n",
]


def hostile_documents(root: str, valid: bytes) -> st.SearchStrategy[bytes]:
    mutated = st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10**6), st.integers(1, 255)).map(
        lambda m: mutate(valid, *m)
    )
    spliced = st.tuples(st.integers(0, len(valid)), st.sampled_from(FRAGMENTS)).map(
        lambda t: valid[: t[0]] + t[1] + valid[t[0] :]
    )
    truncated = st.integers(0, len(valid) - 1).map(lambda n: valid[:n])
    templates = st.sampled_from(HOSTILE_TEMPLATES).map(lambda t: render_template(t, root))
    return st.one_of(
        st.binary(max_size=300),
        st.text(max_size=120).map(lambda s: s.encode("utf-8", "surrogatepass")),
        mutated,
        spliced,
        truncated,
        templates,
    )


class _Doctype(Exception):
    pass


def reference_root(body: bytes) -> str | None:
    """The local name of the root if `body` is a well-formed document without a DTD, else None.

    (The documented S3 behaviour: request documents are plain XML; DTDs and entities are refused.)
    """
    p = xml.parsers.expat.ParserCreate(namespace_separator="}")
    roots: list[str] = []

    def doctype(*_: object) -> None:
        raise _Doctype

    def start(name: str, _attrs: object) -> None:
        if not roots:
            roots.append(name.rsplit("}", 1)[-1])

    p.StartDoctypeDeclHandler = doctype
    p.StartElementHandler = start
    try:
        p.Parse(body, True)
    except Exception:
        return None
    return roots[0] if roots else None


def check_document_reply(reply: Reply, body: bytes, root: str, token: str) -> None:
    # the request itself is valid HTTP: the S3 layer must answer it
    check_reply(reply, token)
    assert reply.status in (200, 400), (reply.status, body[:300], reply.raw[:800])
    if reference_root(body) != root:
        assert reply.status == 400, f"not a well-formed DTD-free {root} document, but accepted: {body[:300]!r}"
        assert error_code(reply) == "MalformedXML", reply.body[:500]
    if reply.status == 200:
        doc = ET.fromstring(reply.body)
        assert doc.tag.endswith("Result"), reply.body[:500]


def test_b_garbage_and_malicious_delete_objects_documents_get_400_malformed_xml(
    coordinator, s3, processes: set[int]
) -> None:
    bucket = new_bucket(s3, "xmldel")
    canary = f"canary-{uuid.uuid4().hex}"
    s3.put_object(Bucket=bucket, Key=canary, Body=b"canary")
    valid = (
        f'<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="{S3_NS}"><Quiet>false</Quiet>'
        "<Object><Key>absent/one</Key></Object><Object><Key>absent/two</Key></Object></Delete>"
    ).encode()
    auth = basic(coordinator.token)

    def post(body: bytes) -> Reply:
        hdrs = [("Host", b"127.0.0.1"), auth, ("Content-MD5", md5_b64(body)), ("Content-Type", b"application/xml")]
        return exchange(coordinator.port, http_request("POST", f"/s3/{bucket}?delete".encode(), hdrs, body))

    # control: the valid document is accepted
    ok = post(valid)
    assert ok.status == 200 and b"<Deleted><Key>absent/one</Key></Deleted>" in ok.body, ok.raw[:800]

    def attempt(body: bytes) -> None:
        reply = post(body)
        CASES["xml DeleteObjects"] += 1
        check_document_reply(reply, body, "Delete", coordinator.token)
        assert object_exists(s3, bucket, canary)

    run = given(body=hostile_documents("Delete", valid))(attempt)
    for body in [*(render_template(t, "Delete") for t in HOSTILE_TEMPLATES), b"", b"   \n "]:
        run = example(body=body)(run)  # every named attack is always tried
    settings(HYPOTHESIS, max_examples=80)(run)()
    assert_no_process_died(coordinator, processes)


def test_b_garbage_and_malicious_complete_multipart_documents_get_400_malformed_xml(
    coordinator, s3, processes: set[int]
) -> None:
    bucket = new_bucket(s3, "xmlmpu")
    key = "assembled"
    auth = basic(coordinator.token)
    state: dict[str, str] = {}

    def fresh_upload() -> None:
        up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=b"part one")["ETag"]
        state.update(upload=up, etag=etag)

    def valid_doc() -> bytes:
        return (
            f'<CompleteMultipartUpload xmlns="{S3_NS}"><Part><PartNumber>1</PartNumber>'
            f"<ETag>{state['etag']}</ETag></Part></CompleteMultipartUpload>"
        ).encode()

    def post(body: bytes) -> Reply:
        hdrs = [("Host", b"127.0.0.1"), auth, ("Content-Type", b"application/xml")]
        target = f"/s3/{bucket}/{key}?uploadId={quote(state['upload'], safe='')}".encode()
        return exchange(coordinator.port, http_request("POST", target, hdrs, body))

    # control: a valid document completes the upload
    fresh_upload()
    ok = post(valid_doc())
    assert ok.status == 200, ok.raw[:800]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"part one"
    fresh_upload()
    template_valid = valid_doc()  # the strategy mutates this one (same ETag for every upload: same bytes)

    def attempt(body: bytes) -> None:
        reply = post(body)
        CASES["xml CompleteMultipartUpload"] += 1
        check_document_reply(reply, body, "CompleteMultipartUpload", coordinator.token)
        if reply.status == 200:
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"part one"
            fresh_upload()

    run = given(body=hostile_documents("CompleteMultipartUpload", template_valid))(attempt)
    for body in [
        *(render_template(t, "CompleteMultipartUpload") for t in HOSTILE_TEMPLATES),
        b"<CompleteMultipartUpload/>",
    ]:
        run = example(body=body)(run)
    settings(HYPOTHESIS, max_examples=60)(run)()
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize(
    "encoding", ["x-unknown-charset", "UTF-9", "rot13", "hex", "base64", "idna", "utf-16", "utf-32", "latin-1", "ascii"]
)
def test_b_an_xml_declaration_naming_an_unknown_or_unusable_encoding_gets_400_not_500(
    coordinator, s3, encoding: str
) -> None:
    bucket = new_bucket(s3, "xmlenc")
    body = f'<?xml version="1.0" encoding="{encoding}"?><Delete><Object><Key>k</Key></Object></Delete>'.encode()
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token), ("Content-MD5", md5_b64(body))]
    reply = exchange(coordinator.port, http_request("POST", f"/s3/{bucket}?delete".encode(), hdrs, body))
    CASES["xml encodings"] += 1
    check_document_reply(reply, body, "Delete", coordinator.token)
    # the single-byte encodings Python knows read this ASCII document as written
    assert reply.status == (200 if encoding in ("latin-1", "ascii") else 400), reply.raw[:600]


def test_b_an_oversized_delete_objects_document_is_refused_and_the_server_keeps_serving(coordinator, s3) -> None:
    bucket = new_bucket(s3, "xmlbig")
    body = b"<Delete>" + b" " * (3 * 1024 * 1024) + b"</Delete>"
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token), ("Content-MD5", md5_b64(body))]
    reply = exchange(coordinator.port, http_request("POST", f"/s3/{bucket}?delete".encode(), hdrs, body))
    CASES["xml oversized"] += 1
    check_reply(reply, coordinator.token, close_ok=True)  # refused mid-body: the answer may be lost to a reset
    assert reply.status in (None, 400), reply.raw[:500]
    assert_serving(s3, bucket)


# --- (c) hostile keys ---------------------------------------------------------------------------------

NAMED_KEYS = [
    "..",
    ".",
    "../../etc/passwd",
    "../../../../../../../../etc/passwd",
    "/../../etc/passwd",
    "a/../../b",
    "./x",
    "x/./.",
    "..\\..\\windows\\win.ini",
    "../meta.sqlite3",
    "../tmp/x",
    "../blobs/00/" + "0" * 32,
    "\x00",
    "a\x00b",
    "%00",
    "a%00b",
    "\x01\x02\x03\x1f",
    "\x7f",
    "\r\n",
    "\t",
    " ",
    "  lead",
    "trail  ",
    "a\u0301\u0301\u0301",
    "\u0301",
    "\u202eevil\u202cgnp.exe",
    "\u200b",
    "\ufeff",
    "\U0001f600",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "\uffff",
    "\ufffe",
    "\U0010ffff",
    "x" * 1024,
    "x" * 1025,
    "\u00e9" * 512,
    "\u00e9" * 513,
    "\U0001f600" * 256,
    "\U0001f600" * 257,
    "a//b",
    "/lead",
    "?x=1",
    "#frag",
    "%2e%2e/%2e%2e/etc/passwd",
    "~",
    "a" + "/" * 50,
]

SEGMENTS = [
    "..",
    ".",
    "",
    "etc",
    "passwd",
    "\x00",
    "%00",
    "blobs",
    "tmp",
    "meta.sqlite3",
    "\U0001f600",
    "\u0301",
    "\u202e",
    "\uffff",
    "\\",
]


def long_key(args: tuple[str, int]) -> str:
    ch, nbytes = args
    return ch * max(1, nbytes // len(ch.encode()))


hostile_keys = st.one_of(
    st.sampled_from(NAMED_KEYS),
    st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=8).map("/".join),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40),
    st.tuples(st.sampled_from(["x", "\u00e9", "\u20ac", "\U0001f600", "a\u0301"]), st.integers(1000, 1100)).map(
        long_key
    ),
).filter(bool)

ALLOWED_STORE_FILE = re.compile(
    r"^(blobs/[0-9a-f]{2}/[0-9a-f]{32}|tmp/\d+\.[0-9a-f]{32}|meta\.sqlite3(-wal|-shm|-journal|\.writer-lock)?"
    r"|\.clean-shutdown|\.upload-expiry-lock|admin\.token|coordinator\.lock|scrub-state\.json)$"
)
ALLOWED_STORE_DIR = re.compile(r"^(blobs|tmp|blobs/[0-9a-f]{2})$")


def store_layout_problems(data_dir: Path) -> list[str]:
    bad = []
    for p in data_dir.rglob("*"):
        rel = p.relative_to(data_dir).as_posix()
        if p.is_dir() and not p.is_symlink():
            if not ALLOWED_STORE_DIR.match(rel):
                bad.append(f"unexpected directory {rel!r}")
        elif not ALLOWED_STORE_FILE.match(rel):
            bad.append(f"unexpected file {rel!r}")
    return bad


@pytest.fixture(scope="module")
def sentinel(coordinator) -> Path:
    """<data_dir>/../etc/passwd: where `../../etc/passwd` lands if a key is ever joined onto <data_dir>/<bucket>."""
    path = coordinator.data_dir.parent / "etc" / "passwd"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(SENTINEL)
    return path


def traversal_keys(data_dir: Path, target: Path) -> list[str]:
    """Keys that reach `target` from every directory a key could be joined onto, and its absolute path."""
    rel = target.relative_to(data_dir.parent).as_posix()
    keys = [str(target)]
    for depth in range(1, 5):  # <data_dir>, <data_dir>/<bucket> or tmp, <data_dir>/blobs/xx, one more
        keys += ["../" * depth + rel, "..%2f" * depth + rel.replace("/", "%2f"), "..\\" * depth + rel]
    return keys


def assert_sentinel_untouched(path: Path) -> None:
    assert path.read_bytes() == SENTINEL, "a file outside the data dir was written"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a file appeared outside the data dir"


def test_c_hostile_keys_round_trip_exactly_or_are_refused_and_never_touch_files_outside_the_store(
    coordinator, s3, processes: set[int], sentinel: Path
) -> None:
    bucket = new_bucket(s3, "keys")
    data_dir = coordinator.data_dir
    parent_before = sorted(p.name for p in data_dir.parent.iterdir())
    assert store_layout_problems(data_dir) == []

    def run(key: str) -> None:
        body = b"body of " + key.encode("utf-8") * 2 + b"\n" + b"#" * 40000  # > 32 KiB: a blob file
        CASES["hostile keys"] += 1
        too_long = len(key.encode("utf-8")) > 1024
        try:  # nothing stored yet: the key names no object, whatever file it might spell
            s3.get_object(Bucket=bucket, Key=key)
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 404), (key, e.response)
        else:
            raise AssertionError(f"GET {key!r} answered 200 before anything was stored under it")
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        except ClientError as e:
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            assert 400 <= status < 500, (key, e.response)
            assert e.response["Error"]["Code"] != "InternalError"
            if too_long:
                assert e.response["Error"]["Code"] == "KeyTooLongError"
            assert not object_exists(s3, bucket, key)
        else:
            assert not too_long, f"a {len(key.encode())}-byte key was accepted"
            got = s3.get_object(Bucket=bucket, Key=key)
            assert got["Body"].read() == body
            assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
            listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])]
            assert listed == [key], (key, listed)
            s3.delete_object(Bucket=bucket, Key=key)
            assert not object_exists(s3, bucket, key)
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
        assert store_layout_problems(data_dir) == []
        assert sorted(p.name for p in data_dir.parent.iterdir()) == parent_before
        assert_sentinel_untouched(sentinel)

    for key in traversal_keys(data_dir, sentinel):  # aimed at the sentinel, every time
        run(key)
    settings(HYPOTHESIS, max_examples=120)(given(key=hostile_keys)(run))()
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize(
    "raw_key",
    [
        b"../../etc/passwd",
        b"../../../../../../../../../../etc/passwd",
        b"..%2f..%2fetc%2fpasswd",
        b"%2e%2e/%2e%2e/etc/passwd",
        b"./../x",
        b"../etc/passwd",
        b"../../../etc/passwd",
    ],
)
def test_c_unencoded_dot_segments_in_the_path_are_key_bytes_not_file_paths(
    coordinator, s3, sentinel: Path, raw_key: bytes
) -> None:
    bucket = new_bucket(s3, "dots")
    auth = basic(coordinator.token)
    target = f"/s3/{bucket}/".encode() + raw_key
    body = b"stored as an object, not as a file"
    put = exchange(coordinator.port, http_request("PUT", target, [("Host", b"127.0.0.1"), auth], body))
    CASES["dot-segment paths"] += 1
    check_reply(put, coordinator.token)
    assert put.status in (200, 400), put.raw[:500]
    get = exchange(coordinator.port, http_request("GET", target, [("Host", b"127.0.0.1"), auth]))
    check_reply(get, coordinator.token)
    if put.status == 200:
        assert get.status == 200 and get.body == body
    else:
        assert get.status in (400, 404)
    assert store_layout_problems(coordinator.data_dir) == []
    assert_sentinel_untouched(sentinel)
    # the prefix itself cannot be climbed out of either
    up = exchange(coordinator.port, http_request("GET", b"/s3/../../etc/passwd", [("Host", b"127.0.0.1"), auth]))
    check_reply(up, coordinator.token)
    assert up.status == 404


# --- (d) floods, absurd lengths, stalls, truncated aws-chunked bodies ------------------------------------


@pytest.fixture(scope="module")
def edge_bucket(s3) -> str:
    return new_bucket(s3, "edge")


@pytest.mark.parametrize("n", [100, 500, 5000])
def test_d_a_flood_of_headers_is_refused_cleanly_and_the_server_keeps_serving(
    coordinator, s3, edge_bucket: str, processes: set[int], n: int
) -> None:
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token)] + [(f"x-flood-{i}", b"v" * 20) for i in range(n)]
    reply = exchange(coordinator.port, http_request("PUT", f"/s3/{edge_bucket}/flooded".encode(), hdrs, b"x"))
    CASES["header flood"] += 1
    check_reply(reply, coordinator.token, http_layer_ok=True, close_ok=True)
    assert reply.status in (None, 200) or 400 <= reply.status < 500
    assert object_exists(s3, edge_bucket, "flooded") == (reply.status == 200)
    assert_serving(s3, edge_bucket)
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize(
    ("name", "size", "meta"),
    [("x-junk", 64 * 1024, False), ("x-amz-meta-big", 64 * 1024, True), ("x-junk", 1024 * 1024, False)],
)
def test_d_a_huge_header_value_is_refused_or_ignored_cleanly(
    coordinator, s3, edge_bucket: str, processes: set[int], name: str, size: int, meta: bool
) -> None:
    key = f"big-header-{name}-{size}"
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token), (name, b"h" * size)]
    reply = exchange(coordinator.port, http_request("PUT", f"/s3/{edge_bucket}/{key}".encode(), hdrs, b"body"))
    CASES["huge header"] += 1
    check_reply(reply, coordinator.token, http_layer_ok=True, close_ok=True)
    if meta:
        # either the head is over limits.max_header_size (431 from the HTTP layer) or, under it,
        # the metadata is over S3's 2 KB (MetadataTooLarge)
        assert reply.status == 431 or (reply.status == 400 and error_code(reply) == "MetadataTooLarge"), reply.raw[:500]
    assert reply.status in (None, 200) or 400 <= reply.status < 500
    if reply.status == 200:
        assert s3.get_object(Bucket=edge_bucket, Key=key)["Body"].read() == b"body"
    else:
        assert not object_exists(s3, edge_bucket, key)
    assert_serving(s3, edge_bucket)
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize("declared", [10**15, 10**12, 6 * 1024**4, 2**63 - 1])
@pytest.mark.parametrize("op", ["PutObject", "UploadPart"])
def test_d_an_enormous_declared_content_length_with_a_tiny_body_is_refused_before_reading(
    coordinator, s3, edge_bucket: str, processes: set[int], declared: int, op: str
) -> None:
    key = f"enormous-{op}-{declared}"
    target = f"/s3/{edge_bucket}/{key}"
    if op == "UploadPart":
        up = s3.create_multipart_upload(Bucket=edge_bucket, Key=key)["UploadId"]
        target += f"?partNumber=1&uploadId={quote(up, safe='')}"
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token)]
    reply = exchange(coordinator.port, http_request("PUT", target.encode(), hdrs, b"tiny", length=declared), timeout=20)
    CASES["enormous content-length"] += 1
    check_reply(reply, coordinator.token)
    assert reply.status is not None and 400 <= reply.status < 500, reply.raw[:500]
    assert error_code(reply) in ("EntityTooLarge", "QuotaExceeded"), reply.body
    assert not object_exists(s3, edge_bucket, key)
    if op == "UploadPart":
        assert s3.list_parts(Bucket=edge_bucket, Key=key, UploadId=up).get("Parts", []) == []
        s3.abort_multipart_upload(Bucket=edge_bucket, Key=key, UploadId=up)
    assert_serving(s3, edge_bucket)
    assert_no_process_died(coordinator, processes)


def test_d_stalled_bodies_and_headers_do_not_block_other_clients_and_leave_nothing_behind(
    coordinator, s3, edge_bucket: str, processes: set[int]
) -> None:
    auth = basic(coordinator.token)
    stalled: list[socket.socket] = []
    keys = [f"stalled-{i}" for i in range(6)]
    try:
        for i, key in enumerate(keys):
            s = socket.create_connection(("127.0.0.1", coordinator.port), timeout=10)
            stalled.append(s)
            if i % 3 == 2:
                # stall inside the header block (slowloris)
                s.sendall(f"PUT /s3/{edge_bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode())
            else:
                head = http_request(
                    "PUT",
                    f"/s3/{edge_bucket}/{key}".encode(),
                    [("Host", b"127.0.0.1"), auth],
                    b"",
                    length=2 * 1024 * 1024,
                )
                s.sendall(head + b"p" * (100_000 if i % 3 == 0 else 10))
        CASES["stalled connections"] += len(stalled)
        # while all of them hang, everyone else is served, repeatedly, on both listeners
        for endpoint in (coordinator.endpoint, coordinator.root_endpoint):
            other = coordinator.client(endpoint=endpoint)
            for _ in range(3):
                assert_serving(other, edge_bucket)
    finally:
        for s in stalled:
            s.close()
    assert_serving(s3, edge_bucket)
    for key in keys:
        assert not object_exists(s3, edge_bucket, key)
    assert wait_for_empty_tmp(coordinator.data_dir) == []
    assert_no_process_died(coordinator, processes)


class StreamingAuth(S3SigV4Auth):
    def payload(self, request) -> str:
        return "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def signed_stream(coordinator, bucket: str, key: str, data: bytes, chunk: int) -> tuple[list[tuple[str, bytes]], bytes]:
    """Headers and the aws-chunked body of a SigV4 streaming upload, every chunk signed."""
    url = f"{coordinator.endpoint}/{bucket}/{key}"
    req = AWSRequest(
        method="PUT",
        url=url,
        data=b"",
        headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))},
    )
    StreamingAuth(Credentials("admin", coordinator.token), "s3", "us-east-1").add_auth(req)
    seed = re.search(r"Signature=([0-9a-f]{64})", req.headers["Authorization"]).group(1)
    amz_date = req.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    k = hmac.digest(("AWS4" + coordinator.token).encode(), amz_date[:8].encode(), "sha256")
    for part in ("us-east-1", "s3", "aws4_request"):
        k = hmac.digest(k, part.encode(), "sha256")
    body, prev = b"", seed
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        sts = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256, hashlib.sha256(piece).hexdigest()]
        )
        prev = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        body += f"{len(piece):x};chunk-signature={prev}\r\n".encode() + piece + b"\r\n"
    hdrs = [("Host", urlsplit(url).netloc.encode())] + [(n, v.encode()) for n, v in req.headers.items()]
    return hdrs, body


def test_d_truncated_aws_chunked_streams_fail_cleanly_and_store_nothing(
    coordinator, s3, edge_bucket: str, processes: set[int]
) -> None:
    data = bytes(range(256)) * 96  # 24 KiB
    chunk = 8 * 1024

    # control: the whole stream is accepted and stores exactly the data
    hdrs, body = signed_stream(coordinator, edge_bucket, "chunked-control", data, chunk)
    ok = exchange(coordinator.port, http_request("PUT", f"/s3/{edge_bucket}/chunked-control".encode(), hdrs, body))
    check_reply(ok, coordinator.token)
    assert ok.status == 200, ok.raw[:800]
    assert s3.get_object(Bucket=edge_bucket, Key="chunked-control")["Body"].read() == data
    full = len(body)
    header_len = body.index(b"\r\n") + 2
    boundaries = [
        0,
        1,
        header_len - 1,
        header_len,
        header_len + chunk,
        header_len + chunk + 2,
        full - 90,
        full - 3,
        full - 2,
        full - 1,
    ]

    def attempt(cut: int, half_close: bool) -> None:
        key = f"chunked-cut-{cut}-{half_close}"
        hdrs, body = signed_stream(coordinator, edge_bucket, key, data, chunk)
        assert len(body) == full
        sent = body[:cut]
        # either the HTTP body is complete but the framing inside it is cut short, or the client
        # promises the whole body, sends part of it and closes its side
        raw = http_request("PUT", f"/s3/{edge_bucket}/{key}".encode(), hdrs, sent, length=full if half_close else cut)
        reply = exchange(coordinator.port, raw, half_close=half_close)
        CASES["truncated aws-chunked"] += 1
        check_reply(reply, coordinator.token, close_ok=half_close)
        if cut == full - 2:
            # only the blank line after the final, signed zero-length chunk is missing: all data and
            # every signature arrived, so accepting it is allowed
            assert reply.status in (None, 200) or 400 <= reply.status < 500
        else:
            assert reply.status is None or 400 <= reply.status < 500, (cut, reply.raw[:500])
        stored = object_exists(s3, edge_bucket, key)
        if stored:
            assert cut == full - 2 and s3.get_object(Bucket=edge_bucket, Key=key)["Body"].read() == data
            s3.delete_object(Bucket=edge_bucket, Key=key)

    run = given(cut=st.integers(0, full - 1), half_close=st.booleans())(attempt)
    for b in boundaries:  # framing edges are always tried
        run = example(cut=b, half_close=False)(run)
        run = example(cut=b, half_close=True)(run)
    settings(HYPOTHESIS, max_examples=40)(run)()
    assert_serving(s3, edge_bucket)
    assert wait_for_empty_tmp(coordinator.data_dir) == []
    assert_no_process_died(coordinator, processes)


# --- (e) every error is an S3 XML error document ----------------------------------------------------------

QUERY_NAMES = [
    "acl", "uploads", "uploadId", "partNumber", "delete", "list-type", "versionId", "versions", "tagging",
    "location", "max-keys", "prefix", "delimiter", "encoding-type", "continuation-token", "start-after",
    "response-content-type", "x-id", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "Signature",
    "AWSAccessKeyId", "Expires", "marker", "max-uploads", "part-number-marker", "select", "restore",
]  # fmt: skip
HEADER_NAMES = [
    "Range", "If-Match", "If-None-Match", "If-Modified-Since", "x-amz-copy-source", "x-amz-copy-source-range",
    "Content-MD5", "x-amz-checksum-crc32", "x-amz-checksum-sha256", "x-amz-sdk-checksum-algorithm",
    "x-amz-trailer", "x-amz-content-sha256", "x-amz-decoded-content-length", "x-amz-date", "Date",
    "Content-Encoding", "x-amz-meta-a", "x-amz-checksum-algorithm", "x-amz-checksum-type", "Expect",
    "If-Unmodified-Since", "x-amz-copy-source-if-modified-since", "x-amz-copy-source-if-unmodified-since",
]  # fmt: skip
HEADER_VALUES = [
    "*", "bytes=0-1", "bytes=5-1", "bytes=-0", "bytes=99999999999999999999-", '"abc"', "0", "-1",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "UNSIGNED-PAYLOAD", "aws-chunked", "CRC32", "crc64nvme",
    "x-amz-checksum-crc32", "/other-bucket/key", "100-continue", "FULL_OBJECT", "AAAA", "====",
    "Tue, 15 Nov 1994 08:12:31 GMT", "20991231T235959Z",
    "bytes=" + "9" * 5000 + "-", "bytes=0-" + "9" * 5000, "bytes=-" + "9" * 5000, "9" * 5000,
    "Mon, 01 Jan 99999999 00:00:00 GMT", "Mon, 01 Jan 9999999999999999999999999 00:00:00 GMT",
    "Mon, 01 Jan 2020 00:00:00 +99999999999999999999", "99999999T000000Z",
]  # fmt: skip
header_values = st.one_of(
    st.sampled_from(HEADER_VALUES),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
)
huge_numbers = st.sampled_from(["9" * 5000, "9" * 4000, "9" * 30, "-" + "9" * 30])
auth_kinds = st.sampled_from(["basic", "none", "bad-basic", "bad-bearer", "bad-sigv4", "garbage"])


def auth_header(kind: str, token: str) -> list[tuple[str, bytes]]:
    if kind == "basic":
        return [basic(token)]
    if kind == "none":
        return []
    if kind == "bad-basic":
        return [("Authorization", b"Basic " + base64.b64encode(f"admin:{token[:-1]}x".encode()))]
    if kind == "bad-bearer":
        return [("Authorization", f"Bearer {token[:-2]}zz".encode())]
    if kind == "bad-sigv4":
        return [
            ("Authorization", b"AWS4-HMAC-SHA256 Credential=admin/20000101/us-east-1/s3/aws4_request, "
             b"SignedHeaders=host, Signature=" + b"0" * 64),
            ("x-amz-date", b"20000101T000000Z"),
            ("x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
        ]  # fmt: skip
    return [("Authorization", b"\x01garbage")]


def test_e_every_error_response_is_an_s3_xml_error_document_without_traceback_or_secret(
    coordinator, s3, processes: set[int]
) -> None:
    bucket = new_bucket(s3, "errs")
    s3.put_object(Bucket=bucket, Key="exists", Body=b"0123456789")
    token = coordinator.token

    @settings(HYPOTHESIS, max_examples=150)
    @given(
        method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]),
        bucket_part=st.sampled_from([bucket, "no-such-bucket-here", "Bad_Name", "", "_tunnelmesh", "a"]),
        key=st.one_of(st.just(""), st.just("exists"), hostile_keys),
        query=st.lists(
            st.tuples(st.sampled_from(QUERY_NAMES), st.one_of(st.text(max_size=12), huge_numbers)), max_size=3
        ),
        headers=st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=3),
        auth=auth_kinds,
        body=st.binary(max_size=64),
        endpoint=st.sampled_from(["prefix", "root"]),
    )
    def run(method, bucket_part, key, query, headers, auth, body, endpoint) -> None:
        prefix, port = ("/s3", coordinator.port) if endpoint == "prefix" else ("", coordinator.s3_port)
        path = f"{prefix}/{bucket_part}" + (f"/{quote(key, safe='/')}" if key else "")
        qs = "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in query)
        target = (path + (f"?{qs}" if qs else "")).encode()
        hdrs = [("Host", b"127.0.0.1")] + auth_header(auth, token) + [(n, v.encode()) for n, v in headers]
        reply = exchange(port, http_request(method, target, hdrs, body), head=method == "HEAD", timeout=20)
        CASES["error documents"] += 1
        # the Authorization value "garbage" holds a control byte HTTP refuses; everything else is valid HTTP
        check_reply(reply, token, http_layer_ok=auth == "garbage", head=method == "HEAD", not_implemented_ok=True)
        # whatever the request said, the secret's neighbours (a wrong token one byte off) are not echoed
        assert token[:-1].encode() not in reply.raw and token[:-2].encode() not in reply.raw

    run()
    assert_no_process_died(coordinator, processes)


@pytest.mark.parametrize(
    ("method", "target", "extra", "code"),
    [
        ("GET", "/s3/{bucket}/missing%01key", [], "NoSuchKey"),
        ("GET", "/s3/{bucket}/missing%00key", [], "NoSuchKey"),
        ("GET", "/s3/{bucket}/missing%EF%BF%BFkey", [], "NoSuchKey"),
        ("GET", "/s3/no%01such-bucket/key", [], "NoSuchBucket"),
        ("GET", "/s3/{bucket}/exists?versionId=%01", [], "InvalidArgument"),
        ("PUT", "/s3/{bucket}/copy-dst", [("x-amz-copy-source", b"/{bucket}/missing%01source")], "NoSuchKey"),
        ("PUT", "/s3/bad%01bucket-name", [], "InvalidBucketName"),
    ],
)
def test_e_error_documents_stay_well_formed_xml_when_they_echo_characters_xml_cannot_hold(
    coordinator, s3, method: str, target: str, extra: list, code: str
) -> None:
    """Keys, bucket names and arguments may hold U+0000-U+001F or U+FFFF; XML 1.0 cannot, so an error
    document that names them must not carry them raw."""
    bucket = new_bucket(s3, "xmlchars")
    s3.put_object(Bucket=bucket, Key="exists", Body=b"x")
    hdrs = [("Host", b"127.0.0.1"), basic(coordinator.token)] + [
        (n, v.replace(b"{bucket}", bucket.encode())) for n, v in extra
    ]
    reply = exchange(coordinator.port, http_request(method, target.format(bucket=bucket).encode(), hdrs))
    CASES["xml-illegal echoes"] += 1
    check_reply(reply, coordinator.token)
    assert 400 <= reply.status < 500
    assert error_code(reply) == code


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
