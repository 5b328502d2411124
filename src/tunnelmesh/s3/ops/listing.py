"""ListObjects (v1, markers) and ListObjectsV2 (continuation tokens), sharing one page engine; ListObjectVersions."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote_plus

from tunnelmesh.s3 import xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.request import Request
from tunnelmesh.s3.response import Response, xml_response
from tunnelmesh.store.records import Listing, VersionEntry, VersionListing, version_seq

# how a listing writes keys and prefixes: as they are, or URL-encoded (encoding-type=url)
Encode = Callable[[str], str]
# what quote_plus(s, safe="/") leaves as it is: a page of such keys (one match over them all) is not quoted
_URL_PLAIN = re.compile(r"[A-Za-z0-9_.\-~/]*")


def _url(s: str) -> str:
    return quote_plus(s, safe="/")


def _as_is(s: str) -> str:
    return s


def max_keys_param(req: Request, name: str = "max-keys", cap: int = 1000) -> int:
    value = req.query.get(name)
    if value is None:
        return cap
    try:
        n = int(value)
    except ValueError:
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            ArgumentName=name,
            ArgumentValue=value,
        ) from None
    if n < 0:
        raise S3Error(
            "InvalidArgument",
            f"Argument {name} must be an integer between 0 and 2147483647",
            ArgumentName=name,
            ArgumentValue=value,
        )
    return min(n, cap)


def encoder(req: Request) -> tuple[str | None, Encode]:
    et = req.query.get("encoding-type")
    if et is None:
        return None, _as_is
    if et.lower() != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            ArgumentName="encoding-type",
            ArgumentValue=et,
        )
    return "url", _url


def texts(values: list[str], enc: Encode) -> list[str]:
    """Each value encoded as `enc` says and escaped for XML, as xml.e(enc(value)) but at a page's pace: nothing
    done to a page that needs nothing done (the common case), else only to the values that need it."""
    if enc is _url:
        if not _URL_PLAIN.fullmatch("".join(values)):
            plain = _URL_PLAIN.fullmatch
            values = [v if plain(v) else _url(v) for v in values]
        return values  # URL-encoded: ASCII letters, digits and "%+-._~/" only, nothing to escape
    return xml.texts([enc(v) for v in values] if enc is not _as_is else values)


def _owners(owners: Iterable[str]) -> dict[str, str]:
    """The <Owner> element of each owner: a page's objects have few owners between them."""
    return {o: _owner(o) for o in set(owners)}


def _body(page: Listing, enc: Encode, owner: bool) -> list[str]:
    objects = page.objects
    keys = texts([o.key for o in objects], enc)
    iso = xml.iso8601
    if owner:
        own = _owners(o.owner for o in objects)
        parts = [
            f"<Contents><Key>{k}</Key><LastModified>{iso(mtime)}</LastModified><ETag>&quot;{etag}&quot;</ETag>"
            f"<Size>{size}</Size>{own[who]}<StorageClass>STANDARD</StorageClass></Contents>"
            for k, (_, size, etag, mtime, who) in zip(keys, objects, strict=True)
        ]
    else:
        parts = [
            f"<Contents><Key>{k}</Key><LastModified>{iso(mtime)}</LastModified><ETag>&quot;{etag}&quot;</ETag>"
            f"<Size>{size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
            for k, (_, size, etag, mtime, _) in zip(keys, objects, strict=True)
        ]
    parts.extend(_prefixes(page.prefixes, enc))
    return parts


def _prefixes(prefixes: list[str], enc: Encode) -> list[str]:
    return [f"<CommonPrefixes><Prefix>{p}</Prefix></CommonPrefixes>" for p in texts(prefixes, enc)]


async def _page(ctx: Context, call: Call, after: str | None, after_is_prefix: bool, max_keys: int) -> Listing:
    req = call.req
    await call.bucket()
    if max_keys == 0:
        return Listing([], [], False, None, False)
    return await ctx.store.list_objects(
        req.bucket, req.query.get("prefix", ""), req.query.get("delimiter", ""), after, after_is_prefix, max_keys
    )


async def list_objects_v1(ctx: Context, call: Call) -> Response:
    req = call.req
    enc_name, enc = encoder(req)
    max_keys = max_keys_param(req)
    marker = req.query.get("marker", "")
    delimiter = req.query.get("delimiter", "")
    page = await _page(ctx, call, marker or None, False, max_keys)
    head = [
        xml.element("Name", req.bucket),
        # v1 leaves the echoed prefix plain even under encoding-type=url (botocore decodes v1's
        # Marker, NextMarker and Delimiter but not its Prefix; v2 encodes and decodes all four)
        xml.element("Prefix", req.query.get("prefix", "")),
        xml.element("Marker", enc(marker)),
        xml.element("MaxKeys", max_keys),
    ]
    head += _shared_tail(delimiter, enc, enc_name, page.truncated)
    if page.truncated and delimiter and page.last is not None:
        head.append(xml.element("NextMarker", enc(page.last)))
    return xml_response(xml.document("ListBucketResult", head + _body(page, enc, owner=True)))


def _shared_tail(delimiter: str, enc: Encode, enc_name: str | None, truncated: bool) -> list[str]:
    """The elements every listing answer ends its head with, in S3's order."""
    out = [xml.element("Delimiter", enc(delimiter))] if delimiter else []
    if enc_name:
        out.append(xml.element("EncodingType", enc_name))
    return [*out, xml.element("IsTruncated", "true" if truncated else "false")]


def _token(last: str, is_prefix: bool) -> str:
    return base64.urlsafe_b64encode((("p" if is_prefix else "k") + last).encode()).decode()


def _untoken(token: str) -> tuple[str, bool]:
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw or raw[0] not in "kp" or "\x00" in raw:
        raise S3Error(
            "InvalidArgument", "The continuation token provided is incorrect", ArgumentName="continuation-token"
        )
    return raw[1:], raw[0] == "p"


async def list_objects_v2(ctx: Context, call: Call) -> Response:
    req = call.req
    enc_name, enc = encoder(req)
    max_keys = max_keys_param(req)
    token = req.query.get("continuation-token")
    start_after = req.query.get("start-after", "")
    delimiter = req.query.get("delimiter", "")
    after: str | None
    if token:
        after, after_is_prefix = _untoken(token)
    else:
        after, after_is_prefix = (start_after or None), False
    page = await _page(ctx, call, after, after_is_prefix, max_keys)
    head = [
        xml.element("Name", req.bucket),
        xml.element("Prefix", enc(req.query.get("prefix", ""))),
        xml.element("MaxKeys", max_keys),
        xml.element("KeyCount", len(page.objects) + len(page.prefixes)),
    ]
    head += _shared_tail(delimiter, enc, enc_name, page.truncated)
    if token is not None:
        head.append(xml.element("ContinuationToken", token))
    if page.truncated and page.last is not None:
        head.append(xml.element("NextContinuationToken", _token(page.last, page.last_is_prefix)))
    if start_after:
        head.append(xml.element("StartAfter", enc(start_after)))
    owner = req.query.get("fetch-owner", "").lower() == "true"
    return xml_response(xml.document("ListBucketResult", head + _body(page, enc, owner)))


def _owner(owner: str) -> str:
    return f"<Owner><ID>{xml.e(owner)}</ID><DisplayName>{xml.e(owner)}</DisplayName></Owner>"


def _versions(entries: list[VersionEntry], enc: Encode) -> list[str]:
    keys = texts([v.key for v in entries], enc)
    own = _owners(v.owner for v in entries)
    iso = xml.iso8601
    out = []
    for k, v in zip(keys, entries, strict=True):
        head = (  # a version id is ours: hex digits, nothing to escape
            f"<Key>{k}</Key><VersionId>{v.version_id or 'null'}</VersionId>"
            f"<IsLatest>{'true' if v.is_latest else 'false'}</IsLatest><LastModified>{iso(v.mtime)}</LastModified>"
        )
        if v.marker:
            out.append(f"<DeleteMarker>{head}{own[v.owner]}</DeleteMarker>")
        else:
            out.append(
                f"<Version>{head}<ETag>&quot;{v.etag}&quot;</ETag><Size>{v.size}</Size>{own[v.owner]}"
                "<StorageClass>STANDARD</StorageClass></Version>"
            )
    return out


async def list_object_versions(ctx: Context, call: Call) -> Response:
    """ListObjectVersions: every version and delete marker, by key and newest first, from the version store
    (docs/data-protection.md section 3). In a bucket never versioned each object is its one `null` version,
    the latest, as on AWS: tools that list versions to empty a bucket (s3-tests, rclone's `--s3-versions`,
    Terraform's force_destroy) work the same on either kind of bucket."""
    req = call.req
    enc_name, enc = encoder(req)
    max_keys = max_keys_param(req)
    key_marker = req.query.get("key-marker", "")
    vid_marker = req.query.get("version-id-marker", "")
    if vid_marker and not key_marker:
        raise S3Error(
            "InvalidArgument",
            "A version-id marker cannot be specified without a key marker.",
            ArgumentName="version-id-marker",
            ArgumentValue=vid_marker,
        )
    if vid_marker and vid_marker != "null" and version_seq(vid_marker) is None:
        raise S3Error(
            "InvalidArgument",
            "Invalid version id specified",
            ArgumentName="version-id-marker",
            ArgumentValue=vid_marker,
        )
    delimiter = req.query.get("delimiter", "")
    await call.bucket()
    page = VersionListing([], [], False, None, None)
    if max_keys:
        page = await ctx.store.list_versions(
            req.bucket,
            req.query.get("prefix", ""),
            delimiter,
            key_marker or None,
            vid_marker or None,
            max_keys,
        )
    head = [
        xml.element("Name", req.bucket),
        xml.element("Prefix", enc(req.query.get("prefix", ""))),
        xml.element("KeyMarker", enc(key_marker)),
        xml.element("VersionIdMarker", vid_marker),
        xml.element("MaxKeys", max_keys),
    ]
    head += _shared_tail(delimiter, enc, enc_name, page.truncated)
    if page.truncated and page.next_key is not None:
        head.append(xml.element("NextKeyMarker", enc(page.next_key)))
        if page.next_version is not None:
            head.append(xml.element("NextVersionIdMarker", page.next_version))
    body = _versions(page.entries, enc) + _prefixes(page.prefixes, enc)
    return xml_response(xml.document("ListVersionsResult", head + body))
