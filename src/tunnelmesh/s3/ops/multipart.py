"""Multipart upload: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts, ListMultipartUploads.

Parts are blobs of their own; Complete is a metadata-only commit that makes the chosen parts the
object's segments, so completing a 5 TB upload copies nothing.
"""

from __future__ import annotations

import functools
import secrets
import time

from tunnelmesh.s3 import checksums, conditions, xml
from tunnelmesh.s3.call import Call
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.integrity import UploadDigest
from tunnelmesh.s3.ops import encryption
from tunnelmesh.s3.ops import lock as locks
from tunnelmesh.s3.ops import tags as tagsets
from tunnelmesh.s3.ops.common import (
    MIN_PART_SIZE,
    Context,
    object_headers_from_request,
    part_number,
    require_no_framing,
    validate_key,
    version_header,
)
from tunnelmesh.s3.ops.copy import copy_bytes, copy_source, source_version_header
from tunnelmesh.s3.ops.listing import encoder, max_keys_param
from tunnelmesh.s3.ops.objects import store_body, upload_length, write_conditions
from tunnelmesh.s3.ops.unsupported import refuse_unsupported
from tunnelmesh.s3.request import Request, read_small_body
from tunnelmesh.s3.response import Response, xml_response
from tunnelmesh.store import expiry
from tunnelmesh.store.errors import InvalidPart, NoSuchUpload, StoreError
from tunnelmesh.store.records import ObjectRecord, Part, Segment, Upload

# the upload's tag set among its stored headers (an object's own headers never hold this name)
TAGGING = "x-amz-tagging"


async def create_upload(ctx: Context, call: Call) -> Response:
    req = call.req
    assert req.principal is not None
    refuse_unsupported(req)
    require_no_framing(req)
    validate_key(req.key)
    await call.bucket()
    alg = req.header("x-amz-checksum-algorithm")
    algorithm = checksums.upload_algorithm(alg) if alg else None
    ctype = checksums.multipart_type(algorithm, req.header("x-amz-checksum-type").upper())
    stored = object_headers_from_request(req)
    tags = tagsets.header_tags(req)
    if tags:
        await tagsets.require_current_nodes(ctx, "x-amz-tagging")
        # kept with the upload, checked and in one form, until Complete gives them to the object
        stored[TAGGING] = tagsets.encode_query(tags)
    locks.keep_lock(await locks.request_lock(ctx, call), stored)
    # the data key of the object to be: every part is encrypted under it (a blob key of its own each)
    _, sealed = await encryption.data_key(ctx, req, await encryption.wanted(ctx, call, req))
    up = Upload(
        upload_id=secrets.token_urlsafe(24),
        bucket=req.bucket,
        key=req.key,
        initiated=time.time(),
        owner=req.writer,
        headers=stored,
        checksum_algorithm=algorithm,
        checksum_type=ctype,
        sse=sealed,
    )
    await ctx.store.create_upload(up)
    headers = encryption.response_headers(up.sse)
    if algorithm and ctype:
        headers += [("x-amz-checksum-algorithm", algorithm.upper()), ("x-amz-checksum-type", ctype)]
    body = xml.document(
        "InitiateMultipartUploadResult",
        [xml.element("Bucket", req.bucket), xml.element("Key", req.key), xml.element("UploadId", up.upload_id)],
    )
    resp = xml_response(body)
    resp.headers.extend(headers)
    return resp


async def upload_part(ctx: Context, call: Call) -> Response:
    req = call.req
    refuse_unsupported(req)
    number = part_number(req)
    up = await ctx.store.require_upload(req.bucket, req.key, call.upload_id)
    declared = upload_length(req, ctx.max_part_size)
    digest = UploadDigest(req, up.checksum_algorithm)
    admit = functools.partial(ctx.store.admit_part, req.bucket, up.upload_id, number)
    dek = _upload_key(ctx, up)
    async with expiry.part_in_flight(ctx.store, up.upload_id):
        blob, _ = await store_body(ctx.store, req, digest, declared, ctx.max_part_size, req.bucket, admit, dek)
        part = Part(number, digest.size, digest.md5_hex, time.time(), blob, digest.checksums)
        await ctx.store.put_part(req.bucket, req.key, up.upload_id, part)
    out = [("etag", f'"{part.etag}"')]
    out.extend((f"x-amz-checksum-{a}", v) for a, v in part.checksums.items())
    out.extend(encryption.response_headers(up.sse))
    return Response(200, out)


def _upload_key(ctx: Context, up: Upload) -> bytes | None:
    """The data key an encrypted upload's parts are stored under (None: a plaintext upload)."""
    return ctx.store.data_key(up.sse, up.bucket, up.key) if up.sse is not None else None


async def upload_part_copy(ctx: Context, call: Call) -> Response:
    req = call.req
    refuse_unsupported(req)
    require_no_framing(req)
    number = part_number(req)
    up = await ctx.store.require_upload(req.bucket, req.key, call.upload_id)
    await call.bucket()
    src = await copy_source(ctx, req)
    rng = req.header("x-amz-copy-source-range")
    first, last = conditions.parse_copy_range(rng, src.size) if rng else (0, src.size - 1)
    length = last - first + 1 if src.size else 0
    if length > ctx.max_part_size:
        raise S3Error("InvalidRequest", "The specified copy range is larger than the maximum part size.")
    # a replaced part's bytes are freed by the same commit: at a full quota, replacing still fits
    await ctx.store.admit_part(req.bucket, up.upload_id, number, length)
    algorithms = [up.checksum_algorithm] if up.checksum_algorithm else []
    dek = _upload_key(ctx, up)
    async with expiry.part_in_flight(ctx.store, up.upload_id):
        copied = await copy_bytes(ctx, src, first, length, algorithms, False, dek)
        assert copied.blob is not None
        part = Part(number, copied.size, copied.md5_hex, time.time(), copied.blob, copied.checksums)
        await ctx.store.put_part(req.bucket, req.key, up.upload_id, part)
    body = [xml.element("LastModified", xml.iso8601(part.mtime)), f"<ETag>&quot;{part.etag}&quot;</ETag>"]
    body.extend(xml.element(f"Checksum{a.upper()}", v) for a, v in part.checksums.items())
    resp = xml_response(xml.document("CopyPartResult", body))
    resp.headers.extend(source_version_header(req, src))
    resp.headers.extend(encryption.response_headers(up.sse))
    return resp


def _complete_result(
    req: Request, etag: str, sums: dict[str, str], version_id: str | None, sealed: str | None = None
) -> Response:
    extra = [xml.element(f"Checksum{a.upper()}", v) for a, v in sums.items()]
    extra.extend(xml.element("ChecksumType", checksums.checksum_type(v)) for v in sums.values())
    resp = xml_response(
        xml.document(
            "CompleteMultipartUploadResult",
            [
                xml.element("Location", f"/{req.bucket}/{req.key}"),
                xml.element("Bucket", req.bucket),
                xml.element("Key", req.key),
                f"<ETag>&quot;{xml.e(etag)}&quot;</ETag>",
                *extra,
            ],
        )
    )
    resp.headers.extend(version_header(version_id))
    resp.headers.extend(encryption.response_headers(sealed))
    return resp


async def complete_upload(ctx: Context, call: Call) -> Response:
    req = call.req
    assert req.principal is not None
    require_no_framing(req)
    upload_id = call.upload_id
    doc = xml.parse(await read_small_body(req), "CompleteMultipartUpload")
    requested: list[tuple[int, str]] = []
    listed: list[dict[str, str]] = []  # each part's Checksum<ALG> elements
    for p in doc.findall("Part"):
        try:
            num = int(xml.text(p, "PartNumber", "") or "")
        except ValueError:
            raise S3Error("MalformedXML", "PartNumber must be an integer.") from None
        requested.append((num, (xml.text(p, "ETag", "") or "").strip().strip('"')))
        listed.append({a: v.strip() for el, a in _PART_CHECKSUMS.items() if (v := xml.text(p, el)) is not None})
    if not requested:
        raise S3Error("MalformedXML", "You must specify at least one part.")
    signature = ",".join(f"{n}:{e}" for n, e in requested)
    try:
        return await _complete(ctx, req, upload_id, requested, listed, signature)
    except (S3Error, StoreError) as e:
        # InvalidPart is the store's (a part changed under the commit) or ours (a part not found)
        if not isinstance(e, NoSuchUpload | InvalidPart) and not (isinstance(e, S3Error) and e.code == "InvalidPart"):
            raise
        # the upload (or its parts) vanished: if an identical Complete made it the object, this is
        # a retry after a lost response or a twin racing it, and both get the first one's answer
        done = await ctx.store.completed_upload(req.bucket, req.key, upload_id)
        if done is not None and done.parts_sig == signature:
            return _complete_result(req, done.etag, done.checksums, done.version_id)
        raise


_PART_CHECKSUMS = {f"Checksum{a.upper()}": a for a in checksums.ALGORITHMS}
_NOT_ALGORITHMS = {"mode", "algorithm", "type"}


def _object_checksum_header(req: Request, up: Upload) -> str | None:
    """The whole-object checksum a Complete asks the object to have, if any: refused unless it is of
    the upload's algorithm and type (S3's answers), unchecked against the parts yet."""
    ctype = req.header("x-amz-checksum-type").strip().upper()
    if ctype and ctype != up.checksum_type:
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using the {up.checksum_type or 'null'} checksum mode. "
            "The complete request must use the same checksum mode.",
        )
    given = {
        name[len("x-amz-checksum-") :]: value
        for name, value in req.headers.items()
        if name.startswith("x-amz-checksum-") and name[len("x-amz-checksum-") :] not in _NOT_ALGORITHMS
    }
    if len(given) > 1:
        raise S3Error(
            "InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    if not given:
        return None
    alg, value = next(iter(given.items()))
    if alg != up.checksum_algorithm:
        raise S3Error(
            "InvalidRequest",
            f"Checksum Type mismatch occurred, expected checksum Type: {up.checksum_algorithm or 'null'}, "
            f"actual checksum Type: {alg}",
        )
    value = value.strip()
    digest, _, count = value.partition("-") if up.checksum_type == checksums.COMPOSITE else (value, "", "1")
    try:
        checksums.check_b64(alg, digest)
        well_formed = count.isdigit()
    except S3Error:
        well_formed = False
    # S3 answers a malformed value with BadDigest here, and before it looks at the parts
    if not well_formed:
        raise S3Error("BadDigest", f"The {alg} you specified did not match the calculated checksum.")
    return value


def _check_part_checksums(up: Upload, part: Part, listed: dict[str, str]) -> None:
    """A checksum the Complete lists for a part must be the part's; a COMPOSITE upload's Complete must
    list each part's (the object checksum is made of them), a FULL_OBJECT one's may."""
    alg = up.checksum_algorithm
    if alg and up.checksum_type == checksums.COMPOSITE and alg not in listed:
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using a {alg} checksum. The complete request must include the checksum "
            f"for each part. It was missing for part {part.part_number} in the request.",
        )
    for a, value in listed.items():
        if part.checksums.get(a) != value:
            raise S3Error("InvalidPart", PartNumber=str(part.part_number), ETag=part.etag)


def _object_checksums(up: Upload, chosen: list[Part], expected: str | None) -> dict[str, str]:
    """The object's checksum, made from its parts' without reading their data; BadDigest if the
    Complete named another."""
    alg = up.checksum_algorithm
    if not alg or not all(alg in p.checksums for p in chosen):
        return {}
    if up.checksum_type == checksums.FULL_OBJECT:
        value = checksums.full_object(alg, [(p.checksums[alg], p.size) for p in chosen])
    else:
        value = checksums.composite(alg, [p.checksums[alg] for p in chosen])
    if expected is not None and expected != value:
        raise S3Error("BadDigest", f"The {alg} you specified did not match the calculated checksum.")
    return {alg: value}


async def _complete(
    ctx: Context,
    req: Request,
    upload_id: str,
    requested: list[tuple[int, str]],
    listed: list[dict[str, str]],
    signature: str,
) -> Response:
    assert req.principal is not None
    up = await ctx.store.require_upload(req.bucket, req.key, upload_id)
    expected = _object_checksum_header(req, up)
    for (a, _), (b, _) in zip(requested, requested[1:], strict=False):
        if b <= a:
            raise S3Error("InvalidPartOrder")
    stored = {p.part_number: p for p in await ctx.store.parts(upload_id)}
    chosen: list[Part] = []
    for i, (num, etag) in enumerate(requested):
        part = stored.get(num)
        if part is None or part.etag != etag:
            raise S3Error("InvalidPart", PartNumber=str(num), ETag=etag)
        if i < len(requested) - 1 and part.size < MIN_PART_SIZE:
            raise S3Error(
                "EntityTooSmall",
                ProposedSize=str(part.size),
                MinSizeAllowed=str(MIN_PART_SIZE),
                PartNumber=str(num),
                ETag=etag,
            )
        _check_part_checksums(up, part, listed[i])
        chosen.append(part)
    total = sum(p.size for p in chosen)
    if total > ctx.max_object_size:
        raise S3Error("EntityTooLarge", ProposedSize=str(total), MaxSizeAllowed=str(ctx.max_object_size))
    etag = checksums.md5_of_parts([p.etag for p in chosen])
    sums = _object_checksums(up, chosen, expected)
    headers = dict(up.headers)
    tagging = headers.pop(TAGGING, None)
    lock = locks.take_lock(headers)
    tags = tagsets.parse_query(tagging) or None if tagging else None
    if tags:
        await tagsets.require_current_nodes(ctx, "x-amz-tagging")
    rec = ObjectRecord(
        bucket=req.bucket,
        key=req.key,
        size=sum(p.size for p in chosen),
        etag=etag,
        mtime=time.time(),
        headers=headers,
        checksums=sums,
        segments=[Segment(p.blob, p.size, p.etag) for p in chosen],
        owner=req.writer,
        tags=tags,
        lock=lock,
        sse=up.sse,
    )
    used = [p.part_number for p in chosen]
    vid = await ctx.store.complete_upload(upload_id, rec, used, signature, write_conditions(req))
    return _complete_result(req, etag, sums, vid, up.sse)


async def abort_upload(ctx: Context, call: Call) -> Response:
    req = call.req
    await ctx.store.abort_upload(req.bucket, req.key, call.upload_id)
    return Response(204)


async def list_parts(ctx: Context, call: Call) -> Response:
    req = call.req
    up = await ctx.store.require_upload(req.bucket, req.key, call.upload_id)
    max_parts = max_keys_param(req, "max-parts")
    marker_text = req.query.get("part-number-marker", "0") or "0"
    try:
        marker = int(marker_text)
    except ValueError:
        raise S3Error("InvalidArgument", "part-number-marker must be an integer.") from None
    # part numbers end at 10000; an unbounded marker would overflow SQLite's 64-bit INTEGER (a 500)
    parts = await ctx.store.parts(up.upload_id, min(max(marker, 0), 10000), max_parts + 1)
    truncated = len(parts) > max_parts
    parts = parts[:max_parts]
    body = [
        xml.element("Bucket", req.bucket),
        xml.element("Key", req.key),
        xml.element("UploadId", up.upload_id),
        f"<Initiator><ID>{xml.e(up.owner)}</ID><DisplayName>{xml.e(up.owner)}</DisplayName></Initiator>",
        f"<Owner><ID>{xml.e(up.owner)}</ID><DisplayName>{xml.e(up.owner)}</DisplayName></Owner>",
        "<StorageClass>STANDARD</StorageClass>",
        xml.element("PartNumberMarker", marker),
        xml.element("NextPartNumberMarker", parts[-1].part_number if parts else marker),
        xml.element("MaxParts", max_parts),
        xml.element("IsTruncated", "true" if truncated else "false"),
    ]
    if up.checksum_algorithm:
        body.append(xml.element("ChecksumAlgorithm", up.checksum_algorithm.upper()))
        body.append(xml.element("ChecksumType", up.checksum_type))
    for p in parts:
        sums = "".join(xml.element(f"Checksum{a.upper()}", v) for a, v in p.checksums.items())
        body.append(
            f"<Part><PartNumber>{p.part_number}</PartNumber><LastModified>{xml.iso8601(p.mtime)}</LastModified>"
            f"<ETag>&quot;{p.etag}&quot;</ETag><Size>{p.size}</Size>{sums}</Part>"
        )
    return xml_response(xml.document("ListPartsResult", body))


def _upload_checksum(up: Upload) -> str:
    if not up.checksum_algorithm:
        return ""
    return xml.element("ChecksumAlgorithm", up.checksum_algorithm.upper()) + xml.element(
        "ChecksumType", up.checksum_type
    )


async def list_uploads(ctx: Context, call: Call) -> Response:
    req = call.req
    await call.bucket()
    enc_name, enc = encoder(req)
    max_uploads = max_keys_param(req, "max-uploads")
    prefix = req.query.get("prefix", "")
    delimiter = req.query.get("delimiter", "")
    key_marker = req.query.get("key-marker", "")
    id_marker = req.query.get("upload-id-marker", "") if key_marker else ""
    entries: list[str] = []
    prefixes: list[str] = []
    truncated = False
    next_key = next_id = ""
    pos_key, pos_id = key_marker, id_marker
    count = 0
    while count <= max_uploads:
        batch = await ctx.store.list_uploads(req.bucket, prefix, pos_key, pos_id, max_uploads + 1)
        if not batch:
            break
        for up in batch:
            cp = None
            if delimiter:
                i = up.key.find(delimiter, len(prefix))
                if i >= 0:
                    cp = up.key[: i + len(delimiter)]
            if cp is not None and prefixes and prefixes[-1] == cp:
                pos_key, pos_id = up.key, up.upload_id
                continue
            if count == max_uploads:
                truncated = True
                break
            count += 1
            if cp is not None:
                prefixes.append(cp)
                entries.append(f"<CommonPrefixes><Prefix>{xml.e(enc(cp))}</Prefix></CommonPrefixes>")
                next_key, next_id = up.key, up.upload_id
            else:
                entries.append(
                    f"<Upload><Key>{xml.e(enc(up.key))}</Key><UploadId>{xml.e(up.upload_id)}</UploadId>"
                    f"<Initiator><ID>{xml.e(up.owner)}</ID><DisplayName>{xml.e(up.owner)}</DisplayName></Initiator>"
                    f"<Owner><ID>{xml.e(up.owner)}</ID><DisplayName>{xml.e(up.owner)}</DisplayName></Owner>"
                    f"<StorageClass>STANDARD</StorageClass><Initiated>{xml.iso8601(up.initiated)}</Initiated>"
                    f"{_upload_checksum(up)}</Upload>"
                )
                next_key, next_id = up.key, up.upload_id
            pos_key, pos_id = up.key, up.upload_id
        if truncated or len(batch) <= max_uploads:
            break
    head = [
        xml.element("Bucket", req.bucket),
        xml.element("KeyMarker", enc(key_marker)),
        xml.element("UploadIdMarker", id_marker),
        xml.element("Prefix", enc(prefix)),
        xml.element("MaxUploads", max_uploads),
        xml.element("IsTruncated", "true" if truncated else "false"),
    ]
    if delimiter:
        head.append(xml.element("Delimiter", enc(delimiter)))
    if enc_name:
        head.append(xml.element("EncodingType", enc_name))
    if truncated:
        head.append(xml.element("NextKeyMarker", enc(next_key)))
        head.append(xml.element("NextUploadIdMarker", next_id))
    return xml_response(xml.document("ListMultipartUploadsResult", head + entries))
