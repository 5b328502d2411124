"""Backup and restore of the `_tunnelmesh` bucket as one tar.gz archive with a checksummed manifest.

The manifest lists every key with its size and SHA-256; objects are stored under index names
(`objects/000001`), so no key ever becomes a path. Restore verifies the whole archive against the
manifest before it changes anything, then replaces the bucket's content in ONE metadata commit, so
a crash at any instant leaves either the old state or the archive's, never a mix. The checksums
catch corruption and truncation; an archive is not signed, and it holds the peers' tokens: keep
backups as secret as the coordinator.

An archive is untrusted input, and gzip compresses zeros 1000:1, so verification never holds a
member in memory: it inflates into a temporary file with a cap on the total, walks the tar headers
itself with caps on the member count and each member's size (before `tarfile` reads any of them),
then hashes each member in chunks.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import pydantic

from tunnelmesh.admin.schemas import Manifest, ManifestEntry
from tunnelmesh.coordinator.errors import InvalidArchive
from tunnelmesh.coordinator.state import COORDINATOR, SystemState
from tunnelmesh.store.engine import SYSTEM_BUCKET
from tunnelmesh.store.records import ObjectRecord, Segment

FORMAT = 1
MiB = 1024 * 1024
# Records are small JSON documents (a peer, a share, the network config: a few hundred bytes each).
# The caps leave room for 10^4-10^5 of them while bounding what a hostile archive can cost:
MAX_MEMBER = 16 * MiB  # one record (or the manifest) uncompressed
MAX_TOTAL = 256 * MiB  # the whole uncompressed tar, spilled to a temporary file, never to memory
MAX_MEMBERS = 100_000
# inline records are built in memory before the one commit; past this budget they go to blobs
INLINE_BUDGET = 32 * MiB
CHUNK = MiB
_BLOCK = 512
_REGULAR = (tarfile.REGTYPE, tarfile.AREGTYPE)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


async def write_backup(state: SystemState, out: IO[bytes]) -> int:
    """Write the archive to `out`; returns the number of objects."""
    entries = []
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for i, key in enumerate(await state.keys(""), start=1):
            rec = await state.store.get_object(SYSTEM_BUCKET, key)
            if rec is None:  # deleted while we were listing
                continue
            data = await state.record_bytes(key, rec)  # a damaged record fails the backup, naming it
            member = f"objects/{i:06d}"
            _add(tar, member, data, rec.mtime)
            entries.append(
                {
                    "key": key,
                    "member": member,
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "content_type": rec.headers.get("content-type", "application/octet-stream"),
                }
            )
        manifest = {"format": FORMAT, "bucket": SYSTEM_BUCKET, "created": time.time(), "objects": entries}
        _add(tar, "manifest.json", json.dumps(manifest, indent=2).encode(), time.time())
    return len(entries)


class VerifiedArchive:
    """A checked archive, inflated in a temporary file; its members are read in chunks, on demand."""

    def __init__(self, plain: IO[bytes], tar: tarfile.TarFile, objects: list[tuple[ManifestEntry, tarfile.TarInfo]]):
        self._plain = plain
        self._tar = tar
        self.objects = objects

    def chunks(self, member: tarfile.TarInfo) -> Iterator[bytes]:
        f = self._tar.extractfile(member)
        assert f is not None
        while chunk := f.read(CHUNK):
            yield chunk

    def read(self, member: tarfile.TarInfo) -> bytes:
        return b"".join(self.chunks(member))

    def close(self) -> None:
        self._tar.close()
        self._plain.close()


def _inflate(archive: IO[bytes], out: IO[bytes]) -> None:
    total = 0
    with gzip.GzipFile(fileobj=archive, mode="rb") as gz:
        while chunk := gz.read(CHUNK):
            total += len(chunk)
            if total > MAX_TOTAL:
                raise InvalidArchive(f"it inflates to more than {MAX_TOTAL // MiB} MiB")
            out.write(chunk)


def _scan_headers(plain: IO[bytes]) -> None:
    """Walk the tar headers before `tarfile` does: it reads extension headers (pax, GNU long
    names) whole into memory, so only plain files and directories are accepted, each member
    within MAX_MEMBER, at most MAX_MEMBERS of them. `write_backup` never writes anything else."""
    end = plain.seek(0, io.SEEK_END)
    pos = count = 0
    while pos + _BLOCK <= end:
        plain.seek(pos)
        header = plain.read(_BLOCK)
        if header == b"\0" * _BLOCK:  # end of archive, where tarfile stops too
            return
        count += 1
        if count > MAX_MEMBERS:
            raise InvalidArchive(f"it has more than {MAX_MEMBERS} members")
        kind = header[156:157]
        size = tarfile.nti(header[124:136])  # type: ignore[attr-defined]  # tarfile's own number rules
        if kind not in (*_REGULAR, tarfile.DIRTYPE):
            raise InvalidArchive("it holds a tar entry that is not a plain file")
        if size < 0 or size > MAX_MEMBER:
            raise InvalidArchive(f"a member is larger than {MAX_MEMBER // MiB} MiB")
        pos += _BLOCK + -(-size // _BLOCK) * _BLOCK


def _sha256(archive: VerifiedArchive, member: tarfile.TarInfo) -> str:
    h = hashlib.sha256()
    for chunk in archive.chunks(member):
        h.update(chunk)
    return h.hexdigest()


def verify_backup(archive: IO[bytes], tmp_dir: Path) -> VerifiedArchive:
    """Check the whole archive; raise before anything is changed if any check fails. Blocking:
    run it in a thread. The caller closes the result."""
    plain = tempfile.TemporaryFile(dir=tmp_dir)  # noqa: SIM115 - handed to the caller in the result
    try:
        return _verify(archive, plain)
    except pydantic.ValidationError as e:  # before ValueError, which it is
        plain.close()
        first = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(map(str, first["loc"])) or "manifest"
        raise InvalidArchive(f"its manifest is invalid ({where}: {first['msg']})") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error) as e:
        plain.close()
        raise InvalidArchive(f"it is not a readable backup ({e.__class__.__name__})") from None
    except BaseException:
        plain.close()
        raise


def _verify(archive: IO[bytes], plain: IO[bytes]) -> VerifiedArchive:
    _inflate(archive, plain)
    _scan_headers(plain)
    plain.seek(0)
    tar = tarfile.open(fileobj=plain, mode="r:")  # noqa: SIM115 - closed by VerifiedArchive.close
    verified = VerifiedArchive(plain, tar, [])
    members = {m.name: m for m in tar.getmembers() if m.isfile()}
    if "manifest.json" not in members:
        raise InvalidArchive("it has no manifest.json")
    manifest = Manifest.model_validate_json(verified.read(members["manifest.json"]))
    if manifest.format != FORMAT or manifest.bucket != SYSTEM_BUCKET:
        raise InvalidArchive("unknown archive format")
    if len({e.key for e in manifest.objects}) != len(manifest.objects):
        raise InvalidArchive("the manifest lists a key twice")
    if len({e.member for e in manifest.objects}) != len(manifest.objects):
        raise InvalidArchive("the manifest names a member twice")
    for entry in manifest.objects:
        m = members.get(entry.member)
        if m is None or entry.member == "manifest.json":
            raise InvalidArchive(f"{entry.key} is listed but missing")
        if m.size != entry.size or _sha256(verified, m) != entry.sha256:
            raise InvalidArchive(f"the checksum of {entry.key} does not match")
        verified.objects.append((entry, m))
    if set(members) - {e.member for e in manifest.objects} - {"manifest.json"}:
        raise InvalidArchive("it holds files the manifest does not list")
    return verified


async def _hashing(chunks: Iterator[bytes], md5: hashlib._Hash) -> AsyncIterator[bytes]:
    for chunk in chunks:
        md5.update(chunk)
        yield chunk


async def apply_backup(state: SystemState, archive: VerifiedArchive) -> int:
    """Make `_tunnelmesh` hold exactly the archive's objects, in one commit."""
    store = state.store
    records: list[ObjectRecord] = []
    ingested: list[str] = []
    budget = INLINE_BUDGET
    now = time.time()
    try:
        for entry, member in archive.objects:
            md5 = hashlib.md5()
            segments: list[Segment] = []
            data: bytes | None = None
            if store.keeps_inline(entry.size) and entry.size <= budget:
                data = archive.read(member)
                md5.update(data)
                budget -= entry.size
            else:
                # bigger records, or inline ones past the memory budget, become sealed blobs that
                # nothing names until the commit; a crash before it leaves orphans the sweep removes
                writer = await store.ingest(_hashing(archive.chunks(member), md5), entry.size)
                ingested.append(writer.blob_id)
                segments = [Segment(writer.blob_id, entry.size, md5.hexdigest())]
            records.append(
                ObjectRecord(
                    bucket=SYSTEM_BUCKET,
                    key=entry.key,
                    size=entry.size,
                    etag=md5.hexdigest(),
                    mtime=now,
                    headers={"content-type": entry.content_type},
                    checksums={},
                    segments=segments,
                    owner=COORDINATOR,
                    data=data,
                )
            )
    except BaseException:
        store.discard(ingested)
        raise
    # the commit discards the ingested blobs itself if it fails
    await store.replace_bucket(SYSTEM_BUCKET, records)
    return len(records)
