"""The local side of `object get/put/cat`: where downloaded bytes go, where uploaded bytes come from,
progress on a terminal, and the walk of a directory tree.

A download lands whole or not at all when its target is a regular file (or nothing yet): it is written to
a temporary file beside it and renamed over it. Anything else (`-`, a symlink such as /dev/stdout, a
character device, a FIFO) is opened and written in place: renaming over it would replace the link or the
device node with a regular file, which is how `object get B/K /dev/stdout` once broke a root shell's
/dev/stdout.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol
from xml.sax.saxutils import escape

import click
from defusedxml import ElementTree

from tunnelmesh.cli.client import NS, CliError, Coordinator, object_url, s3_error, shown

STDIO = "-"
PART_SIZE = 16 * 1024 * 1024  # parts of a stream of unknown length; one part is all that is ever held in memory
MAX_PARTS = 10000  # S3's limit: a stream may be up to PART_SIZE * MAX_PARTS (156 GiB)
CHUNK = 1024 * 1024


# ---- progress --------------------------------------------------------------------------------------


class Task(Protocol):
    def advance(self, n: int) -> None: ...


class _Silent:
    def advance(self, n: int) -> None:
        pass


class _RichTask:
    def __init__(self, progress: Any, task_id: Any) -> None:
        self.progress, self.task_id = progress, task_id

    def advance(self, n: int) -> None:
        self.progress.advance(self.task_id, n)


class Meter:
    """Progress bars (bytes, speed, ETA) on stderr while it is a terminal; nothing at all otherwise, so a
    pipe or a log file never receives escape codes."""

    def __init__(self) -> None:
        self._progress: Any = None

    def __enter__(self) -> Meter:
        if sys.stderr.isatty():
            # imported only for a terminal: a scripted call does not pay for rich's import
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                # markup off: a key such as `p/m[/]x` is a name, not rich markup (which raised on it)
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def echo(self, line: str) -> None:
        """A report line on stdout that does not tear the bars: on a terminal shared with them, printed
        above them by rich."""
        line = shown(line)
        if self._progress is not None and sys.stdout.isatty():
            self._progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            click.echo(line)

    def task(self, label: str, total: int | None) -> Task:
        if self._progress is None:
            return _Silent()
        return _RichTask(self._progress, self._progress.add_task(shown(label), total=total))


# ---- downloads -------------------------------------------------------------------------------------


def _in_place(path: str) -> bool:
    """Whether `path` must be written where it is (never renamed over): anything but a regular file or
    nothing. lstat, so a symlink counts as a symlink whatever it points to."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CliError(f"{path} is a directory (to download a prefix into it, use -r)")
    return not stat.S_ISREG(st.st_mode)


def same_as(path: str, stream: IO[Any]) -> bool:
    """Whether `path` is the file `stream` already has open (/dev/stdout, /proc/self/fd/1)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(stream.fileno()))
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def open_target(path: str, follow: bool = True) -> Iterator[IO[bytes]]:
    """A file to write a download to. `-`: stdout. A regular file or a missing path: a temporary file
    beside it, renamed over it (after an fsync) only when the block ends without an error, and removed
    otherwise. Anything else (a symlink, a character device, a FIFO): opened and written in place.
    `follow=False` (recursive downloads, where the names come from the server) refuses that last case."""
    if path == STDIO or same_as(path, sys.stdout):
        # /dev/stdout too: reopening it would truncate a file stdout appends to, or be refused on a pipe
        # that belongs to another user
        out = sys.stdout.buffer
        yield out
        out.flush()
        return
    if _in_place(path):
        if not follow:
            raise CliError(f"{path} exists and is not a regular file; not writing through it")
        try:
            f = open(path, "wb")  # noqa: SIM115 - closed below, after the caller's block
        except OSError as e:
            raise CliError(f"{path}: {e.strerror}") from None
        with f:
            yield f
        return
    target = Path(path)
    # short, whatever the target's name: `.{name}...` would pass NAME_MAX for a name near 255 bytes
    tmp = target.with_name(f".tm-{secrets.token_hex(4)}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # an overwritten file keeps its mode, as with cp
            os.replace(tmp, target)
        except OSError as e:  # a name too long for this file system, a directory that went away
            raise CliError(f"{path}: {e.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def safe_relative(key: str, prefix: str) -> str:
    """The relative path a key under `prefix` is downloaded to, or CliError when it could leave the
    directory: a `..` or `.` segment, an absolute path, a NUL."""
    rel = key[len(prefix) :]
    if "\0" in rel:
        raise CliError(f"refusing key {key!r}: it holds a NUL byte")
    if rel.startswith("/"):
        raise CliError(f"refusing key {key!r}: it would be an absolute path")
    parts = [p for p in rel.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise CliError(f"refusing key {key!r}: it has a '.' or '..' segment")
    if not parts:
        raise CliError(f"refusing key {key!r}: it names no file")
    return "/".join(parts)


def inside(root: Path, rel: str) -> Path:
    """`root/rel`, its directories created one at a time below `root`, each checked (lstat) before
    anything is made inside it: a symlink or a non-directory already in the tree refuses the key before
    any directory is created through it (mkdir -p would create them wherever the link points)."""
    *dirs, name = rel.split("/")
    d = root
    for part in dirs:
        d = d / part
        try:
            os.mkdir(d)
            continue
        except FileExistsError:
            pass
        except OSError as e:
            raise CliError(f"{d}: {e.strerror}") from None
        mode = os.lstat(d).st_mode
        if stat.S_ISLNK(mode):
            raise CliError(f"refusing {rel!r}: {d} is a symlink, which could lead outside {root}")
        if not stat.S_ISDIR(mode):
            raise CliError(f"refusing {rel!r}: {d} exists and is not a directory")
    dest = d / name
    try:
        mode = os.lstat(dest).st_mode
    except FileNotFoundError:
        return dest
    except OSError as e:  # a name too long for this file system
        raise CliError(f"{dest}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        raise CliError(f"refusing {rel!r}: {dest} exists and is not a regular file")
    return dest


# ---- uploads ---------------------------------------------------------------------------------------


@dataclass
class Source:
    """What an upload reads: `f`, and its length when it is known up front (a regular file)."""

    f: IO[bytes]
    size: int | None
    name: str


@contextlib.contextmanager
def open_source(path: str) -> Iterator[Source]:
    """`-` is stdin; a regular file has a length; anything else (/dev/stdin, a FIFO, a device) is a
    stream of unknown length, read until its end."""
    if path == STDIO or same_as(path, sys.stdin):
        yield Source(sys.stdin.buffer, None, "stdin")
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the caller's block
    except IsADirectoryError:
        raise CliError(f"{path} is a directory (to upload a tree, use -r)") from None
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    with f:
        st = os.fstat(f.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise CliError(f"{path} is a directory (to upload a tree, use -r)")
        yield Source(f, st.st_size if stat.S_ISREG(st.st_mode) else None, path)


def read_into(f: Any, buf: bytearray, what: str) -> int:
    """Fill `buf` from `f` (a buffered binary file); fewer bytes only at the end of the stream (a pipe or
    a terminal returns short reads). The one buffer is reused for every part: memory stays one part."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        try:
            n = f.readinto(view[got:])
        except OSError as e:
            raise CliError(f"reading {what}: {e.strerror}") from None
        if not n:
            break
        got += n
    return got


class CountingReader:
    """A regular file as a streamed request body: read in chunks, each reported to the progress task."""

    def __init__(self, f: IO[bytes], size: int, task: Task) -> None:
        self.f, self.size, self.task = f, size, task

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        left = self.size
        while left > 0:
            chunk = self.f.read(min(CHUNK, left))
            if not chunk:
                raise CliError(f"the file shrank while it was being uploaded ({left} bytes missing)")
            left -= len(chunk)
            self.task.advance(len(chunk))
            yield chunk


class PartBody:
    """A part held in memory as a request body, sent in chunks so that progress moves while it goes."""

    def __init__(self, data: memoryview, task: Task) -> None:
        self.data, self.task = data, task

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[memoryview]:
        for i in range(0, len(self.data), CHUNK):
            chunk = self.data[i : i + CHUNK]
            yield chunk
            self.task.advance(len(chunk))


def walk(root: Path, skipped: list[str]) -> Iterator[tuple[Path, str]]:
    """Every regular file under `root` (symlinks to files followed, to directories not: no loops) with
    its path relative to `root` in `/` form, in a stable order; anything else is added to `skipped`."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                regular = stat.S_ISREG(os.stat(p).st_mode)
            except OSError:
                regular = False
            if regular:
                yield p, p.relative_to(root).as_posix()
            else:
                skipped.append(str(p))


# ---- over HTTP -------------------------------------------------------------------------------------


def download(c: Coordinator, b: str, k: str, target: str, meter: Meter, follow: bool = True) -> int:
    """GET B/K into `target` (see open_target); the bytes as stored, whatever their Content-Encoding.
    Returns the number of bytes written; a transfer cut short is an error, never a short file."""
    import urllib3

    r = c.request("GET", object_url(c, b, k), stream=True)
    try:
        if r.status_code != 200:
            raise s3_error(r)
        length = r.headers.get("content-length")
        size = int(length) if length is not None and length.isdigit() else None
        task = meter.task(k, size)
        n = 0
        try:
            with open_target(target, follow) as f:
                # raw: requests would undo a stored Content-Encoding (gzip), and the object is its bytes
                for chunk in r.raw.stream(CHUNK, decode_content=False):
                    f.write(chunk)
                    n += len(chunk)
                    task.advance(len(chunk))
                if size is not None and n != size:
                    raise CliError(f"the download of {b}/{k} broke off after {n} of {size} bytes")
        except urllib3.exceptions.HTTPError as e:
            raise CliError(f"the download of {b}/{k} broke off after {n} bytes: {e.__class__.__name__}") from None
        except BrokenPipeError:
            # the reader went away (`object cat B/K | head`): stop quietly, as cat does
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        return n
    finally:
        r.close()


def upload(c: Coordinator, b: str, k: str, src: Source, meter: Meter) -> int:
    """PUT `src` to B/K. A file of known length goes as one streamed PUT; a stream of unknown length as
    one PUT if it ends within PART_SIZE bytes, else as a multipart upload of PART_SIZE parts."""
    url = object_url(c, b, k)
    if src.size is not None:
        task = meter.task(k, src.size)
        body: Any = CountingReader(src.f, src.size, task) if src.size else b""
        r = c.request("PUT", url, data=body, headers={"content-length": str(src.size)})
        if r.status_code != 200:
            raise s3_error(r)
        return src.size
    task = meter.task(k, None)
    buf = bytearray(PART_SIZE)
    n = read_into(src.f, buf, src.name)
    if n < PART_SIZE:
        # the stream ended within one part (an empty stream only if it really was empty: a read error raised)
        data = bytes(buf[:n])
        r = c.request("PUT", url, data=data, headers={"content-md5": _md5(data)})
        if r.status_code != 200:
            raise s3_error(r)
        task.advance(n)
        return n
    return _multipart(c, url, buf, src, task)


def _md5(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def _multipart(c: Coordinator, url: str, buf: bytearray, src: Source, task: Task) -> int:
    """A multipart upload of the stream, `buf` (full) its first part; aborted on any failure."""
    r = c.request("POST", url, params={"uploads": ""})
    if r.status_code != 200:
        raise s3_error(r)
    upload_id = ElementTree.fromstring(r.content).findtext(f"{NS}UploadId")
    if not upload_id:
        raise CliError("the coordinator answered CreateMultipartUpload without an UploadId")
    parts: list[tuple[int, str]] = []
    total = 0
    try:
        n = len(buf)
        while n:
            number = len(parts) + 1
            if number > MAX_PARTS:
                raise CliError(f"the stream is longer than {MAX_PARTS} parts of {PART_SIZE} bytes")
            data = memoryview(buf)[:n]
            r = c.request(
                "PUT",
                url,
                params={"partNumber": str(number), "uploadId": upload_id},
                data=PartBody(data, task),
                headers={"content-md5": _md5(data)},  # the coordinator refuses a part that changed on the way
            )
            if r.status_code != 200:
                raise s3_error(r)
            parts.append((number, r.headers["etag"]))
            total += n
            n = read_into(src.f, buf, src.name)
        doc = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(e)}</ETag></Part>" for n, e in parts)
        r = c.request(
            "POST",
            url,
            params={"uploadId": upload_id},
            data=f"<CompleteMultipartUpload>{doc}</CompleteMultipartUpload>".encode(),
            timeout=600,  # the coordinator assembles the parts before it answers
        )
        # CompleteMultipartUpload may fail after its 200 status line, with an <Error> body
        if r.status_code != 200 or ElementTree.fromstring(r.content).tag == "Error":
            raise s3_error(r)
    except BaseException:
        with contextlib.suppress(Exception):
            c.request("DELETE", url, params={"uploadId": upload_id})
        raise
    return total
