"""GetObjectAttributes: what HeadObject and ListParts tell of an object, in one XML document.

`x-amz-object-attributes` names the elements wanted; only those come back, always in S3's order
(some SDKs parse them in that order). A read like GetObject: same lookup, same conditionals.
"""

from __future__ import annotations

from tunnelmesh.s3 import checksums, xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import MAX_PART_NUMBER, Context, lookup_object, read_version_header
from tunnelmesh.s3.ops.objects import not_modified, parts_count
from tunnelmesh.s3.request import Request
from tunnelmesh.s3.response import Response, http_date, xml_response
from tunnelmesh.store.records import ObjectRecord

# the attributes S3 knows, in the order its response lists them
ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
MAX_PARTS = 1000


def requested_attributes(req: Request) -> set[str]:
    """The attribute names of x-amz-object-attributes (comma-separated; a repeated header arrives joined)."""
    names = {n.strip() for n in req.header("x-amz-object-attributes").split(",")} - {""}
    if not names:
        raise S3Error(
            "InvalidRequest",
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
        )
    for name in sorted(names):
        if name not in ATTRIBUTES:
            raise S3Error(
                "InvalidArgument",
                "Invalid attribute name specified.",
                ArgumentName="x-amz-object-attributes",
                ArgumentValue=name,
            )
    return names


def _max_parts(req: Request) -> int:
    # S3 ignores a value that is not a count rather than refusing the request
    value = req.header("x-amz-max-parts").strip()
    if not (value.isascii() and value.isdigit()):
        return MAX_PARTS
    digits = value.lstrip("0") or "0"
    return MAX_PARTS if len(digits) > 4 else min(int(digits), MAX_PARTS)


def _part_number_marker(req: Request) -> int:
    value = req.header("x-amz-part-number-marker").strip()
    if not value:
        return 0
    digits = value.lstrip("0") or "0"
    # ASCII digits only and bounded: int() would take "١" or "1_0", and a 5000-digit string is a 500
    if not (value.isascii() and value.isdigit()) or len(digits) > 5:
        raise S3Error(
            "InvalidArgument",
            "Part number marker must be an integer between 0 and 10000, inclusive",
            ArgumentName="x-amz-part-number-marker",
            ArgumentValue=value,
        )
    return min(int(digits), MAX_PART_NUMBER)


def _checksum(obj: ObjectRecord) -> str:
    """The object's checksum and type. A COMPOSITE value is given without the "-N" part count that
    HeadObject shows (S3's own answer here)."""
    if not obj.checksums:
        return ""
    values = "".join(xml.element(f"Checksum{a.upper()}", v.partition("-")[0]) for a, v in obj.checksums.items())
    ctype = checksums.checksum_type(next(iter(obj.checksums.values())))
    return f"<Checksum>{values}{xml.element('ChecksumType', ctype)}</Checksum>"


def _composite(obj: ObjectRecord) -> bool:
    return any(checksums.checksum_type(v) == checksums.COMPOSITE for v in obj.checksums.values())


def _object_parts(req: Request, obj: ObjectRecord, count: int) -> str:
    """PartsCount; and, for an object whose checksum is made of its parts' (COMPOSITE), a page of its
    parts with their checksums. S3 lists the parts of no other object: a FULL_OBJECT or checksum-less
    multipart object answers with its count alone."""
    head = xml.element("PartsCount", count)
    if not _composite(obj):
        return f"<ObjectParts>{head}</ObjectParts>"
    max_parts = _max_parts(req)
    marker = _part_number_marker(req)
    numbers = list(range(marker + 1, count + 1))
    page, truncated = numbers[:max_parts], len(numbers) > max_parts
    parts = ""
    for n in page:
        seg = obj.segments[n - 1]
        sums = "".join(xml.element(f"Checksum{a.upper()}", v) for a, v in seg.checksums.items())
        parts += f"<Part>{xml.element('PartNumber', n)}{xml.element('Size', seg.size)}{sums}</Part>"
    return (
        f"<ObjectParts>{head}{xml.element('PartNumberMarker', marker)}"
        f"{xml.element('NextPartNumberMarker', page[-1] if page else marker)}{xml.element('MaxParts', max_parts)}"
        f"{xml.element('IsTruncated', 'true' if truncated else 'false')}{parts}</ObjectParts>"
    )


async def get_object_attributes(ctx: Context, call: Call) -> Response:
    req = call.req
    wanted = requested_attributes(req)
    obj = await lookup_object(ctx, call)
    if (unchanged := not_modified(req, obj)) is not None:
        return unchanged
    count = parts_count(obj)
    body: list[str] = []
    if "ETag" in wanted:
        body.append(xml.element("ETag", obj.etag))
    if "Checksum" in wanted:
        body.append(_checksum(obj))
    if "ObjectParts" in wanted and count is not None:
        body.append(_object_parts(req, obj, count))
    if "StorageClass" in wanted:
        body.append(xml.element("StorageClass", "STANDARD"))
    if "ObjectSize" in wanted:
        body.append(xml.element("ObjectSize", obj.size))
    resp = xml_response(xml.document("GetObjectAttributesResponse", body))
    resp.headers.append(("last-modified", http_date(obj.mtime)))
    resp.headers.extend(read_version_header(req, obj))
    return resp
