"""The harness shared by the hostile-input suite (tests/integration/hostile/test_hostile_*.py).

Everything is sent over raw sockets (or boto3 where the point is a faithful client) so that no
client library quietly repairs the input. Hypothesis runs derandomized (fixed examples every run).

The property every file checks, (e): every error the S3 layer sends is a well-formed S3 XML error
document with no traceback and no secret in it (`check_reply`). (Rejections made by the HTTP server
itself before the request reaches the S3 layer, for bytes HTTP does not allow or for limits such as
431, carry no body; they are accepted only for such requests.)

The fixtures every module shares (`case_report`, `processes`, `sentinel`) are in the package's conftest.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

from botocore.exceptions import ClientError
from conftest import descendants
from hypothesis import HealthCheck, settings
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


def new_bucket(s3, tag: str) -> str:
    name = f"hm-{tag}-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


# --- mutation (of signed requests and of request documents) ---------------------------------------


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


# --- hostile keys (stored by test_hostile_keys.py, sent by test_hostile_error_documents.py) -----------

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
