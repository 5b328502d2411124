"""Backup and restore of the `_tunnelmesh` bucket as one tar.gz archive with a checksummed manifest.

The manifest lists every key with its size and SHA-256; objects are stored under index names
(`objects/000001`), so no key ever becomes a path. Restore verifies the whole archive against the
manifest before it changes anything. The checksums catch corruption and truncation; an archive
is not signed, and it holds the peers' tokens: keep backups as secret as the coordinator.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass
from typing import IO

from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.store.engine import SYSTEM_BUCKET

FORMAT = 1


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def write_backup(state: SystemState, out: IO[bytes]) -> int:
    """Write the archive to `out`; returns the number of objects."""
    entries = []
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for i, key in enumerate(state.keys(""), start=1):
            rec = state.store.get_object(SYSTEM_BUCKET, key)
            if rec is None:  # deleted while we were listing
                continue
            data = state.store.read_all(rec)
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


@dataclass
class VerifiedArchive:
    objects: list[tuple[str, str, bytes]]  # key, content type, data


def verify_backup(archive: IO[bytes]) -> VerifiedArchive:
    """Read and check the whole archive; raise before anything is changed if any check fails."""

    def bad(why: str) -> S3Error:
        return S3Error("InvalidArchive", f"The backup archive was refused: {why}. Nothing was changed.", status=400)

    try:
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            if "manifest.json" not in members:
                raise bad("it has no manifest.json")
            manifest = json.loads(tar.extractfile(members["manifest.json"]).read())  # type: ignore[union-attr]
            if manifest.get("format") != FORMAT or manifest.get("bucket") != SYSTEM_BUCKET:
                raise bad("unknown archive format")
            objects = []
            for entry in manifest["objects"]:
                m = members.get(entry["member"])
                if m is None:
                    raise bad(f"{entry['key']} is listed but missing")
                data = tar.extractfile(m).read()  # type: ignore[union-attr]
                if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise bad(f"the checksum of {entry['key']} does not match")
                objects.append((str(entry["key"]), str(entry.get("content_type", "application/json")), data))
            listed = {e["member"] for e in manifest["objects"]} | {"manifest.json"}
            if set(members) - listed:
                raise bad("it holds files the manifest does not list")
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise bad(f"it is not a readable backup ({e.__class__.__name__})") from None
    return VerifiedArchive(objects)


async def apply_backup(state: SystemState, archive: VerifiedArchive) -> int:
    """Make `_tunnelmesh` hold exactly the archive's objects."""
    wanted = {key for key, _, _ in archive.objects}
    for key, content_type, data in archive.objects:
        await state.put_bytes(key, data, content_type)
    extra = [k for k in state.keys("") if k not in wanted]
    if extra:
        await state.delete(extra)
    return len(archive.objects)
