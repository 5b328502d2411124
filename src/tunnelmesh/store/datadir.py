"""The names of the files in a coordinator's data dir: the one place that spells them.

Node-local files belong to the one coordinator holding `lock_file` (docs/architecture.md,
invariant 5); only `blobs` is meant to be shared by several coordinators. `tmp` must stay on the
blobs' file system: a blob is sealed by renaming its temporary into `blobs`.

Each process writes its temporaries in its own directory, `tmp/<pid>/`, so that recovery removes
only the temporaries of processes that are gone: the supervisor removes a child's once it has
reaped it (a reaped pid is given to no new child before that), and the start-up removes them all
(the lock is held, so no earlier process of this data dir still runs). The pid, not the writer
tag, names the directory: the supervisor reaps every child by pid, workers and jobs alike, while
only workers get a tag it knows.

With a shared blob dir (`s3.blob_dir` set, PostgreSQL metadata: docs/scale-out.md) the blobs are
`<blob_dir>/<xx>/<id>` and this node's temporaries `<blob_dir>/tmp/<node>/<pid>/`: on the blobs' file
system (a seal stays a rename), and apart from every other node's, so a node's recovery, which holds
only its own data-dir lock, removes only its own (`tmp` is this node's directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

_META_DB = "meta.sqlite3"


@dataclass(frozen=True, slots=True)
class DataDir:
    root: Path
    # the blob dir every coordinator mounts, or None for the data dir's own blobs/ (the default)
    shared_blobs: Path | None = None
    node: str = ""  # this coordinator's node id: names its temporaries in a shared blob dir

    # -- node-local: owned by the coordinator that holds lock_file ---------------------------

    @property
    def lock_file(self) -> Path:
        """flock held by the supervisor (inherited by every child) for the coordinator's life; holds its pid."""
        return self.root / "coordinator.lock"

    @property
    def meta_db(self) -> Path:
        """The embedded SQLite metadata (with its -wal and -shm files beside it)."""
        return self.root / _META_DB

    @property
    def writer_lock(self) -> Path:
        """flock the group writers of all workers take in turn around each commit."""
        return self.root / f"{_META_DB}.writer-lock"

    @property
    def expiry_lock(self) -> Path:
        """flock of the one worker that runs stale multipart upload expiry passes."""
        return self.root / ".upload-expiry-lock"

    @property
    def lifecycle_lock(self) -> Path:
        """flock of the one worker that runs lifecycle passes (store/lifecycle.py)."""
        return self.root / ".lifecycle-lock"

    @property
    def rewrap_lock(self) -> Path:
        """flock of the one worker that runs the sse-rewrap duty (store/rewrap.py)."""
        return self.root / ".sse-rewrap-lock"

    @property
    def admin_token(self) -> Path:
        """The bootstrap admin secret, written once by the supervisor."""
        return self.root / "admin.token"

    @property
    def clean_shutdown_marker(self) -> Path:
        """Left by a clean stop; its absence makes the next start sweep for orphan blobs."""
        return self.root / ".clean-shutdown"

    @property
    def metadata_backend(self) -> Path:
        """Which metadata engine this data dir's records are in ("sqlite" or "postgresql"), written at the
        first start: a start on the other one is refused (store/backends.py)."""
        return self.root / "metadata-backend"

    @property
    def scrub_state(self) -> Path:
        """When the scheduled scrub last ran and what it found (written by the scrub job)."""
        return self.root / "scrub-state.json"

    @property
    def quarantine(self) -> Path:
        """Rotten blobs moved aside by `storage scrub --repair`."""
        return self.root / "quarantine"

    @property
    def metrics(self) -> Path:
        """The workers' metric files (obs/multiproc.py), when neither metrics.dir nor systemd's runtime dir
        names another place: emptied at each start, so a crash leaves nothing that grows."""
        return self.root / "metrics"

    @property
    def write_probe(self) -> Path:
        """Created and removed at start-up to prove the data dir is writable."""
        return self.root / ".write-test"

    def replacement(self, path: Path, pid: int) -> Path:
        """The temporary beside `path` (one of this data dir's files) that process `pid` writes and
        renames over it, so a reader sees the old file or the new one."""
        return path.with_name(f".{path.name}.{pid}")

    @property
    def tmp(self) -> Path:
        """This node's per-process temporary directories (node-local; on the blobs' file system)."""
        if self.shared_blobs is not None:
            return self.shared_blobs / "tmp" / self.node
        return self.root / "tmp"

    def process_tmp(self, pid: int) -> Path:
        """Process `pid`'s temporaries (blobs being written, admin uploads being checked)."""
        return self.tmp / str(pid)

    # -- shareable between coordinators -------------------------------------------------------

    @property
    def blobs(self) -> Path:
        """Immutable object bytes, blobs/<first two hex digits of the id>/<id> (or the shared blob dir)."""
        return self.shared_blobs if self.shared_blobs is not None else self.root / "blobs"

    def blob_path(self, blob_id: str) -> Path:
        return self.blobs / blob_id[:2] / blob_id

    # -- recovery -----------------------------------------------------------------------------

    def remove_tmp_of(self, pid: int) -> int:
        """Remove the temporaries of process `pid`, which has exited (and been reaped, so its pid
        cannot have been given to a process writing here yet); returns how many files."""
        return self._remove(self.process_tmp(pid))

    def remove_node_tmp(self, node: str) -> int:
        """Remove another node's temporaries in the shared blob dir (that node was taken over: its writer
        tags are retired, so nothing it still writes there can be committed); returns how many files."""
        if self.shared_blobs is None or not node or "/" in node or node in (".", "..") or node == self.node:
            return 0
        return self._remove(self.shared_blobs / "tmp" / node)

    def remove_tmp_except(self, live: Collection[int]) -> int:
        """Remove the temporaries of every process but the `live` ones; returns how many files.
        Right only when every other process that wrote here is gone (at start-up, under the lock).
        Loose files are removed too: the layout before per-process dirs was tmp/<pid>.<blob id>."""
        keep = {str(pid) for pid in live}
        n = 0
        if not self.tmp.is_dir():
            return 0
        with os.scandir(self.tmp) as entries:
            for entry in entries:
                if entry.name not in keep:
                    n += self._remove(Path(entry.path))
        return n

    @staticmethod
    def _remove(path: Path) -> int:
        if path.is_dir() and not path.is_symlink():
            n = sum(len(files) for _, _, files in os.walk(path))
            shutil.rmtree(path, ignore_errors=True)
            return n
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            return 1
        return 0
