"""Immutable blob files named by random ids: the only code that writes object bytes to disk.

A blob is written to tmp/<pid>/<id>, fsynced, and renamed into blobs/<xx>/<id>; the directory is
fsynced so the name survives power loss. Object keys never become file names, so no key can reach
a path outside the store.

Each process writes its temporaries in its own directory (store/datadir.py), so the temporaries of
a process that died can be removed while the others keep writing theirs (`remove_tmp_of`); all of
them only at start-up, when no process writes (`sweep_tmp`). tmp/ must be on the blobs' file
system (the seal is a rename).

A blob id is 32 hex digits: 24 random ones, then the 8-digit tag of the process that wrote it (its
"writer tag"). The supervisor claims each worker's tag in the metadata before it starts the worker
(`engine.claim_writer_tags`), so no other process of any coordinator sharing the metadata ever has
it, and once a worker has died, the blobs bearing its tag that no commit names can never be named
by anyone: the supervisor removes them while the others serve (`blob_ids_tagged`). The tag comes
last so that the first two digits, which pick the subdirectory, stay random: one worker's blobs
are spread over all 256 directories like everyone's, and ids from before the tags still resolve.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import sys
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Protocol

from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.errors import DiskFull, WriteFailed

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


TAG_HEX = 8
_HEX = frozenset("0123456789abcdef")


def new_writer_tag() -> str:
    return secrets.token_hex(TAG_HEX // 2)


_writer_tag = new_writer_tag()


def writer_tag() -> str:
    """The tag this process puts in the ids of the blobs it writes."""
    return _writer_tag


def set_writer_tag(tag: str) -> None:
    """Take the tag the supervisor chose for this worker (before it writes any blob)."""
    global _writer_tag
    if len(tag) != TAG_HEX or not _HEX.issuperset(tag):
        raise ValueError(f"a writer tag is {TAG_HEX} lowercase hex digits")
    _writer_tag = tag


def _new_tag_after_fork() -> None:
    # a forked child never writes under its parent's tag: the parent may go on writing, or die
    # and have its tag swept while the child lives
    global _writer_tag
    _writer_tag = new_writer_tag()


os.register_at_fork(after_in_child=_new_tag_after_fork)


def new_blob_id() -> str:
    return secrets.token_hex((32 - TAG_HEX) // 2) + _writer_tag


def _sync_file_range() -> Callable[[int, int, int], None] | None:
    """Linux's sync_file_range(2) with SYNC_FILE_RANGE_WRITE: start writing a range back without waiting
    for it; None where the C library has no such call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, length: int) -> None:
        # advisory: a failure here is the seal's fsync's to report
        call(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start_writeback


_SYNC_FILE_RANGE_WRITE = 2
_start_writeback = _sync_file_range() if sys.platform == "linux" else None
# how much of a blob may sit dirty in the page cache before its writeback is started: the seal's fsync
# then waits for the last few MiB, not for the whole blob
WRITE_BEHIND = 8 * 1024 * 1024


class BlobWriter:
    """A blob being written. Not visible to anyone until the metadata commit names it."""

    __slots__ = ("_store", "blob_id", "_tmp", "_fd", "size", "_flushed", "plain_size", "md5")

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.blob_id = new_blob_id()
        self._tmp = store.tmp_dir / self.blob_id
        self._fd: int | None = os.open(self._tmp, _WRITE_FLAGS, 0o600)
        self.size = 0  # the bytes written (stored)
        self._flushed = 0  # the bytes whose writeback has been started
        # of an encrypted blob (Store.ingest): its plaintext's size, and the hex MD5 of its stored bytes
        self.plain_size = 0
        self.md5 = ""

    def write(self, data: bytes | memoryview) -> None:
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
                self.size += n
        except OSError as e:
            raise _disk_error(e) from e
        if _start_writeback is not None and self.size - self._flushed >= WRITE_BEHIND:
            _start_writeback(self._fd, self._flushed, self.size - self._flushed)
            self._flushed = self.size

    def seal(self) -> str:
        """fsync and move into place (blocking: call from a worker thread). Returns the blob id."""
        assert self._fd is not None
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            final = self._store.path(self.blob_id)
            os.rename(self._tmp, final)
            self._store.fsync_dir(final.parent)
        except OSError as e:
            self.abort()
            raise _disk_error(e) from e
        return self.blob_id

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _disk_error(e: OSError) -> DiskFull | WriteFailed:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull()
    return WriteFailed("object")


class Blobs(Protocol):
    """What the engine asks of the place that holds blob bytes: a local directory today (BlobStore),
    any file system every coordinator mounts later. Blobs are immutable and named by ids nobody
    reuses, so this needs no transactions: a blob exists once sealed, and only a commit makes it
    reachable (store/engine.py)."""

    @property
    def tmp_dir(self) -> Path:
        """This process's own directory for temporaries, on the blobs' file system."""
        ...

    def writer(self) -> BlobWriter:
        """A new blob, written and then sealed (or aborted)."""
        ...

    def path(self, blob_id: str) -> Path:
        """Where a sealed blob can be opened (or handed to the HTTP server to send)."""
        ...

    def open(self, blob_id: str) -> int:
        """A read-only file descriptor of a sealed blob; FileNotFoundError if it is gone."""
        ...

    def unlink(self, blob_ids: list[str]) -> int: ...

    def blob_ids_older_than(self, t: float) -> Iterator[str]: ...

    def blob_ids_tagged(self, tags: Collection[str]) -> Iterator[str]: ...

    def disk_free(self) -> int: ...

    def close(self) -> None: ...


def _is_fanout(name: str) -> bool:
    """One of the 256 blob directories (a shared blob dir also holds every node's tmp/)."""
    return len(name) == 2 and _HEX.issuperset(name)


class BlobStore:
    """Blobs in a directory: the data dir's blobs/, or the blob dir shared by several coordinators
    (`layout`, store/datadir.py)."""

    def __init__(self, root: Path, layout: DataDir | None = None) -> None:
        self.root = root
        self.dir = layout if layout is not None else DataDir(root)
        self.blob_dir = self.dir.blobs
        self._tmp_of: int | None = None  # the pid whose tmp dir exists (a forked child makes its own)
        self._dir_fds: dict[Path, int] = {}

    def prepare(self) -> None:
        self.dir.tmp.mkdir(parents=True, exist_ok=True)
        for i in range(256):
            (self.blob_dir / f"{i:02x}").mkdir(parents=True, exist_ok=True)

    @property
    def tmp_dir(self) -> Path:
        """This process's temporary directory (made on first use, on the blobs' file system)."""
        pid = os.getpid()
        path = self.dir.process_tmp(pid)
        if self._tmp_of != pid:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._tmp_of = pid
        return path

    def path(self, blob_id: str) -> Path:
        return self.dir.blob_path(blob_id)

    def writer(self) -> BlobWriter:
        try:
            try:
                return BlobWriter(self)
            except FileNotFoundError:
                # this process's directory is gone: another node took this one over while it was silent
                # (docs/scale-out.md, 5); made again, writes go on (their commits answer for the tag)
                self._tmp_of = None
                return BlobWriter(self)
        except OSError as e:
            raise _disk_error(e) from e

    def fsync_dir(self, d: Path) -> None:
        fd = self._dir_fds.get(d)
        if fd is None:
            fd = self._dir_fds[d] = os.open(d, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        os.fsync(fd)

    def close(self) -> None:
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()

    def open(self, blob_id: str) -> int:
        return os.open(self.path(blob_id), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    def unlink(self, blob_ids: list[str]) -> int:
        """Remove these blobs; returns how many were there to remove."""
        n = 0
        for b in blob_ids:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path(b))
                n += 1
        return n

    def sweep_tmp(self) -> int:
        """Remove temporaries left by a crash mid-upload. Only safe while no other process that
        wrote here runs (at start-up, under the data-dir lock); returns how many files."""
        return self.dir.remove_tmp_except(())

    def remove_tmp_of(self, pid: int) -> int:
        """Remove the temporaries of a process that has exited (and been reaped, so that its pid
        cannot have been given to a process writing here yet); returns how many."""
        return self.dir.remove_tmp_of(pid)

    def blob_ids_older_than(self, t: float) -> Iterator[str]:
        for sub in os.scandir(self.blob_dir):
            if not _is_fanout(sub.name) or not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                if entry.stat().st_mtime < t:
                    yield entry.name

    def blob_ids_tagged(self, tags: Collection[str]) -> Iterator[str]:
        """The blobs written by the processes that had these tags (every directory is listed:
        the tag does not pick one). Names only, no stat: cheap per entry."""
        wanted = set(tags)
        for sub in os.scandir(self.blob_dir):
            if not _is_fanout(sub.name) or not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                if len(entry.name) == 32 and entry.name[-TAG_HEX:] in wanted:
                    yield entry.name

    def disk_free(self) -> int:
        # the file system the blobs are written to, a shared one included
        st = os.statvfs(self.dir.shared_blobs or self.root)
        return st.f_bavail * st.f_frsize
