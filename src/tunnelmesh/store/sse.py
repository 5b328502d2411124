"""SSE-S3: the cipher of encrypted objects and the master key ring (docs/data-protection.md section 7).

Each object version has its own random 256-bit data key (DEK). A blob is encrypted under
HKDF-SHA256(DEK, info=b"tm-sse1" + blob id): blob ids are never reused, so the nonces can be chunk
counters, and a re-uploaded part (same DEK, new blob) never reuses a (key, nonce) pair. The plaintext is
cut in 64 KiB chunks; chunk i is AES-256-GCM with nonce 4 zero bytes || i (8 bytes, big-endian) and
additional data b"last" for the final chunk (b"" otherwise), stored as ciphertext + 16-byte tag with no
header (the format version lives in the row). So a truncated, reordered or altered blob fails
authentication, and the stored size is computable from the plaintext size (`stored_size`). An empty
body is one empty final chunk (its tag alone). An object kept in its row is one chunk under the key
derived with b"tm-sse1-inline".

The DEK is wrapped with AES-256-GCM under the active master key (a random 96-bit nonce, additional data
bucket + NUL + key: a row never changes bucket or key) and kept in the row as JSON
{"v": 1, "kid": ..., "nonce": ..., "dek": ...} (`ObjectRecord.sse`). The master keys live in the key file
(s3.sse_key_file), never in the store: {"active": "k1", "keys": {"k1": "<base64 of 32 bytes>"}}.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK = 64 * 1024
TAG = 16
FORMAT = 1
ALGORITHM = "AES256"  # what S3 calls SSE-S3, in headers and in bucket encryption configurations
_BLOB_INFO = b"tm-sse1"
_INLINE_INFO = b"tm-sse1-inline"
_LAST = b"last"
_KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class SseError(Exception):
    """Base of this module's errors."""


class KeyFileError(SseError):
    """The key file is missing, unsafe or malformed (a configuration error: the coordinator refuses to start)."""


class UnknownKey(SseError):
    """A row names a master key the key file does not hold."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"master key {kid!r} is not in the key file")
        self.kid = kid


class Tampered(SseError):
    """Authentication failed: the stored bytes (or the wrapped key) are not what was written."""


def stored_size(size: int) -> int:
    """How many bytes a blob holding `size` bytes of plaintext takes: one tag per chunk, at least one chunk."""
    return size + TAG * chunk_count(size)


def chunk_count(size: int) -> int:
    return max(1, -(-size // CHUNK))


def _nonce(i: int) -> bytes:
    return b"\0\0\0\0" + i.to_bytes(8, "big")


def aesgcm(key: bytes) -> AESGCM:
    """cryptography is imported at the first encrypted object, not at start: a coordinator without SSE never
    holds it (issue 17: memory; with s3.sse_key_file set, the supervisor loads it before forking, shared)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _derive(dek: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(dek)


def blob_key(dek: bytes, blob_id: str) -> bytes:
    """The AES key of one blob of an object version."""
    return _derive(dek, _BLOB_INFO + blob_id.encode())


def new_dek() -> bytes:
    return os.urandom(32)


class Encryptor:
    """Streams a blob's plaintext into its stored chunks: `update` as bytes arrive, `finish` once at the end.
    A full chunk is held back until more bytes come, since only then is it known not to be the last."""

    __slots__ = ("_aes", "_buf", "_i")

    def __init__(self, key: bytes) -> None:
        self._aes = aesgcm(key)
        self._buf = bytearray()
        self._i = 0

    def _seal(self, chunk: bytes | memoryview, last: bool) -> bytes:
        out = self._aes.encrypt(_nonce(self._i), chunk, _LAST if last else b"")
        self._i += 1
        return out

    def update(self, data: bytes | memoryview) -> list[bytes]:
        self._buf += data
        if len(self._buf) <= CHUNK:
            return []
        out: list[bytes] = []
        pos = 0
        with memoryview(self._buf) as view:
            while len(self._buf) - pos > CHUNK:
                out.append(self._seal(view[pos : pos + CHUNK], False))
                pos += CHUNK
        del self._buf[:pos]
        return out

    def finish(self) -> bytes:
        out = self._seal(bytes(self._buf), True)
        self._buf = bytearray()
        return out


class Sealer:
    """Encrypts a blob's body on its way to `write`, hashing the stored bytes (a segment's MD5 is of those, so
    that a scrub checks them without the key)."""

    __slots__ = ("_enc", "_md5", "_write")

    def __init__(self, key: bytes, write: Callable[[bytes], None]) -> None:
        self._enc = Encryptor(key)
        self._md5 = hashlib.md5()
        self._write = write

    def _out(self, piece: bytes) -> None:
        self._md5.update(piece)
        self._write(piece)

    def write(self, data: bytes | memoryview) -> None:
        for piece in self._enc.update(data):
            self._out(piece)

    def finish(self) -> str:
        """Seal the last chunk; the hex MD5 of every stored byte."""
        self._out(self._enc.finish())
        return self._md5.hexdigest()


def decrypt_chunk(aes: AESGCM, i: int, data: bytes, last: bool) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        return aes.decrypt(_nonce(i), data, _LAST if last else b"")
    except InvalidTag:
        raise Tampered(f"chunk {i} fails authentication") from None


def encrypt_blob(dek: bytes, blob_id: str, data: bytes) -> bytes:
    """A whole blob's stored bytes (tests and small bodies)."""
    enc = Encryptor(blob_key(dek, blob_id))
    return b"".join([*enc.update(data), enc.finish()])


def decrypt_blob(dek: bytes, blob_id: str, stored: bytes, size: int) -> bytes:
    """A whole blob's plaintext of `size` bytes; Tampered if it was altered, cut or reordered."""
    if len(stored) != stored_size(size):
        raise Tampered(f"the blob is {len(stored)} bytes, expected {stored_size(size)}")
    aes = aesgcm(blob_key(dek, blob_id))
    n = chunk_count(size)
    step = CHUNK + TAG
    return b"".join(decrypt_chunk(aes, i, stored[i * step : (i + 1) * step], i == n - 1) for i in range(n))


def encrypt_inline(dek: bytes, data: bytes) -> bytes:
    """An object kept in its metadata row: one chunk (it is at most content.INLINE_MAX, below CHUNK)."""
    return aesgcm(_derive(dek, _INLINE_INFO)).encrypt(_nonce(0), data, _LAST)


def decrypt_inline(dek: bytes, stored: bytes) -> bytes:
    return decrypt_chunk(aesgcm(_derive(dek, _INLINE_INFO)), 0, stored, True)


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """The chunks of one blob that hold plaintext bytes [first, first+length) of it (`size` bytes in all)."""

    first_chunk: int
    last_chunk: int  # inclusive
    chunks: int  # the blob's chunk count

    @property
    def stored_offset(self) -> int:
        return self.first_chunk * (CHUNK + TAG)


def chunk_span(first: int, length: int, size: int) -> ChunkSpan:
    last_byte = first + max(length, 1) - 1
    return ChunkSpan(first // CHUNK, min(last_byte // CHUNK, chunk_count(size) - 1), chunk_count(size))


def stored_chunk_len(i: int, size: int) -> int:
    return min(CHUNK, size - i * CHUNK) + TAG if size else TAG


# ---- the master key ring ---------------------------------------------------------------------


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _unb64(s: object, what: str, n: int | None = None) -> bytes:
    try:
        raw = base64.b64decode(str(s), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"{what}: not base64") from None
    if n is not None and len(raw) != n:
        raise KeyFileError(f"{what}: {len(raw)} bytes, expected {n}")
    return raw


def _aad(bucket: str, key: str) -> bytes:
    return (bucket + "\0" + key).encode("utf-8", "surrogatepass")


def kid_of(sealed: str) -> str:
    """The master key id a wrapped key (an `sse` column) names."""
    return str(json.loads(sealed)["kid"])


@dataclass(frozen=True)
class KeyRing:
    """The master keys: `active` wraps every new DEK; the others unwrap older ones."""

    active: str
    keys: dict[str, bytes]

    def new_object_key(self, bucket: str, key: str) -> tuple[bytes, str]:
        """A new version's DEK and its wrapped form (the row's `sse`)."""
        dek = new_dek()
        return dek, self.wrap(dek, bucket, key)

    def wrap(self, dek: bytes, bucket: str, key: str) -> str:
        nonce = os.urandom(12)
        sealed = aesgcm(self.keys[self.active]).encrypt(nonce, dek, _aad(bucket, key))
        return json.dumps({"v": FORMAT, "kid": self.active, "nonce": _b64(nonce), "dek": _b64(sealed)})

    def unwrap(self, sealed: str, bucket: str, key: str) -> bytes:
        """The DEK a row's `sse` holds; UnknownKey, or Tampered if it does not authenticate."""
        try:
            doc = json.loads(sealed)
            kid, nonce, wrapped = str(doc["kid"]), doc["nonce"], doc["dek"]
            if doc.get("v") != FORMAT:
                raise Tampered(f"unknown format {doc.get('v')!r}")
        except (ValueError, KeyError, TypeError):
            raise Tampered("the wrapped key is malformed") from None
        master = self.keys.get(kid)
        if master is None:
            raise UnknownKey(kid)
        from cryptography.exceptions import InvalidTag

        try:
            return aesgcm(master).decrypt(_unb64(nonce, "nonce", 12), _unb64(wrapped, "dek"), _aad(bucket, key))
        except (InvalidTag, KeyFileError):
            raise Tampered("the wrapped key fails authentication") from None

    def rewrap(self, sealed: str, bucket: str, key: str) -> str:
        """The same DEK wrapped under the active key."""
        return self.wrap(self.unwrap(sealed, bucket, key), bucket, key)

    def dumps(self) -> str:
        return json.dumps({"active": self.active, "keys": {k: _b64(v) for k, v in self.keys.items()}}, indent=2) + "\n"

    @staticmethod
    def parse(text: str, where: str = "the key file") -> KeyRing:
        try:
            doc = json.loads(text)
        except ValueError:
            raise KeyFileError(f"{where}: not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), dict) or not doc["keys"]:
            raise KeyFileError(f'{where}: expected {{"active": KID, "keys": {{KID: BASE64, ...}}}}')
        keys: dict[str, bytes] = {}
        for kid, value in doc["keys"].items():
            if not _KID.fullmatch(kid):
                raise KeyFileError(f"{where}: key id {kid!r} is not 1-64 of A-Z a-z 0-9 _ . -")
            keys[kid] = _unb64(value, f"{where}: key {kid}", 32)
        active = doc.get("active")
        if not isinstance(active, str) or active not in keys:
            raise KeyFileError(f"{where}: the active key {active!r} is not among its keys")
        return KeyRing(active, keys)

    @staticmethod
    def load(path: Path) -> KeyRing:
        """Read the key file; refused unless it is a regular file only its owner (this user) can read or write."""
        try:
            # a symlink is followed (secret mounts are symlinks): the file it reaches is the one checked, and
            # config.parse_sse_key_file resolved it when checking that it is outside the data and blob dirs
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise KeyFileError(f"{path}: no such file (create it with `tunnelmesh sse init`)") from None
        except OSError as e:
            raise KeyFileError(f"{path}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise KeyFileError(f"{path}: not a regular file")
            if st.st_mode & 0o077:
                raise KeyFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (owner only)")
            if st.st_uid != os.getuid():
                raise KeyFileError(f"{path}: owned by uid {st.st_uid}, not this user")
            return KeyRing.parse(f.read().decode("utf-8", "replace"), str(path))

    def next_kid(self) -> str:
        taken = [int(k[1:]) for k in self.keys if re.fullmatch(r"k[0-9]+", k)]
        return f"k{max(taken, default=0) + 1}"


def new_ring() -> KeyRing:
    return KeyRing("k1", {"k1": new_dek()})


def write_key_file(path: Path, ring: KeyRing, replace: bool) -> None:
    """Write the ring with mode 0600: atomically over an existing file (`replace`), else only if none is there."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ring.dumps())
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: never overwrite keys by accident
            os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def iter_chunks(stored: bytes, size: int) -> Iterator[bytes]:
    """A whole blob's stored chunks, in order (tests)."""
    step = CHUNK + TAG
    for i in range(chunk_count(size)):
        yield stored[i * step : (i + 1) * step]
