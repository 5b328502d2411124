"""Tag sets (docs/data-protection.md section 6), as Put/GetObjectTagging, Put/GetBucketTagging
(s3/ops/tagging.py) and the writes that carry one (x-amz-tagging on PutObject, CreateMultipartUpload and
CopyObject, the `tagging` field of a form upload) read and answer them.

A tag set is checked here, once, against AWS's limits, and handed to the store as a dict sorted by key
(what GetObjectTagging answers). Every write that sets tags first passes the rolling-upgrade gate: an
older coordinator sharing the metadata would keep a replaced object's tags on its overwrite
(docs/scale-out.md, "Upgrading a mesh"), so tags wait until no live node runs an older release.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_to_bytes

from tunnelmesh.s3 import xml
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.request import Request
from tunnelmesh.s3.response import Response, xml_response

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256
RESERVED_PREFIX = "aws:"

Tags = dict[str, str]
_MALFORMED_HEADER = (
    "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without "
    "tag name duplicates."
)


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidTag", message)


def check_tags(pairs: list[tuple[str, str]], limit: int, what: str) -> Tags:
    """AWS's rules for one tag set; returns it sorted by key."""
    if len(pairs) > limit:
        raise S3Error("InvalidTag", f"{what} tags cannot be greater than {limit}")
    tags: Tags = {}
    for key, value in pairs:
        if "\x00" in key + value:  # PostgreSQL's text cannot hold one (s3/ops/common.py refuse_nul)
            raise _invalid("A tag must not contain a NUL character.")
        if not 1 <= len(key) <= MAX_KEY_CHARS:
            raise _invalid(f"The TagKey you have provided is invalid: 1 to {MAX_KEY_CHARS} characters")
        if len(value) > MAX_VALUE_CHARS:
            raise _invalid(f"The TagValue you have provided is too long, max {MAX_VALUE_CHARS}")
        if key.lower().startswith(RESERVED_PREFIX):
            raise _invalid("Your TagKey cannot be prefixed with aws:")
        if key in tags:
            raise _invalid("Cannot provide multiple Tags with the same key")
        tags[key] = value
    return dict(sorted(tags.items()))


def _unquote(part: str) -> str:
    # a header arrives as latin-1 text of its bytes: the percent-escapes are of UTF-8 bytes
    return unquote_to_bytes(part.encode("latin-1").replace(b"+", b" ")).decode("utf-8")


def parse_query(value: str, limit: int = MAX_OBJECT_TAGS) -> Tags:
    """x-amz-tagging: URL-query encoded pairs (`a=1&b`: a pair with no `=` has an empty value)."""
    pairs: list[tuple[str, str]] = []
    for field in value.split("&"):
        if not field:
            continue
        name, eq, rest = field.partition("=")
        if "=" in rest:  # an unescaped `=` in a value: no query encoder writes one
            raise S3Error("BadRequest", _MALFORMED_HEADER)
        try:
            pairs.append((_unquote(name), _unquote(rest) if eq else ""))
        except (UnicodeError, ValueError):
            raise S3Error("BadRequest", _MALFORMED_HEADER) from None
    return check_tags(pairs, limit, "Object")


def encode_query(tags: Tags) -> str:
    """The x-amz-tagging form of a checked tag set (kept with a multipart upload until its Complete)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in tags.items())


def parse_document(body: bytes, limit: int, what: str) -> Tags:
    """A Tagging document: <Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>."""
    doc = xml.parse(body, "Tagging")
    tagset = doc.find("TagSet")
    if tagset is None or len(doc) != 1:
        raise S3Error("MalformedXML")
    pairs: list[tuple[str, str]] = []
    for tag in tagset:
        key, value = xml.text(tag, "Key"), xml.text(tag, "Value")
        if tag.tag != "Tag" or key is None or value is None:
            raise S3Error("MalformedXML")
        pairs.append((key, value))
    return check_tags(pairs, limit, what)


def document(tags: Tags | None) -> Response:
    parts = [
        "<TagSet>",
        *(f"<Tag>{xml.element('Key', k)}{xml.element('Value', v)}</Tag>" for k, v in (tags or {}).items()),
        "</TagSet>",
    ]
    return xml_response(xml.document("Tagging", parts))


def header_tags(req: Request) -> Tags | None:
    """The tag set x-amz-tagging asks for (None: no header, or an empty one)."""
    raw = req.headers.get("x-amz-tagging")
    return (parse_query(raw) or None) if raw is not None else None


async def require_current_nodes(ctx: Context, what: str) -> None:
    """The rolling-upgrade gate (see the module docstring): 503 while a live node runs an older release."""
    await ctx.store.require_current_nodes(what, ctx.node_timeout)
