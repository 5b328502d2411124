"""The data dir's names (store/datadir.py) and the per-process temporaries recovery removes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tunnelmesh.store.blobs import BlobStore
from tunnelmesh.store.datadir import DataDir
from tunnelmesh.store.engine import prepare_data_dir

# a process that starts writing a blob and exits without sealing or aborting it (as if killed)
_DIE_MID_WRITE = """
import os, sys
from pathlib import Path
from tunnelmesh.store.blobs import BlobStore
w = BlobStore(Path(sys.argv[1])).writer()
w.write(b"partial")
print(os.getpid(), flush=True)
os._exit(0)
"""


def _gone_writer(root: Path) -> int:
    """The pid of a process that left a temporary behind and has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", _DIE_MID_WRITE, str(root)], capture_output=True, text=True, check=True)
    return int(done.stdout)


def _tmp_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root / "tmp")) for p in (root / "tmp").rglob("*") if p.is_file())


def test_every_name_is_under_the_root_and_distinct(tmp_path: Path) -> None:
    d = DataDir(tmp_path)
    names = {n: getattr(d, n) for n in dir(DataDir) if isinstance(getattr(DataDir, n, None), property)}
    names |= {
        "process_tmp": d.process_tmp(1234),
        "blob_path": d.blob_path("ab" + "0" * 30),
        "replacement": d.replacement(d.admin_token, 1234),
    }
    assert len(names) >= 14, sorted(names)
    for name, path in names.items():
        assert isinstance(path, Path) and path.parent != path, name
        assert path.is_relative_to(tmp_path) and path != tmp_path, (name, path)
    assert len(set(names.values())) == len(names), "two names for one file"
    # what existing data dirs (and tests/fixtures/) hold must keep its names
    assert d.meta_db == tmp_path / "meta.sqlite3"
    assert d.blob_path("ab" + "0" * 30) == tmp_path / "blobs" / "ab" / ("ab" + "0" * 30)
    assert d.process_tmp(1234).parent == d.tmp
    assert d.process_tmp(1234).parent.parent == d.blobs.parent  # beside blobs/: a seal is a rename


def test_a_blob_is_written_in_its_process_tmp_dir_and_sealed_into_blobs(tmp_path: Path) -> None:
    prepare_data_dir(tmp_path)
    blobs = BlobStore(tmp_path)
    w = blobs.writer()
    w.write(b"hello")
    assert _tmp_files(tmp_path) == [f"{os.getpid()}/{w.blob_id}"]
    blob_id = w.seal()
    assert _tmp_files(tmp_path) == []
    assert DataDir(tmp_path).blob_path(blob_id).read_bytes() == b"hello"
    blobs.close()


def test_recovery_removes_the_temporaries_of_gone_processes_only(tmp_path: Path) -> None:
    prepare_data_dir(tmp_path)
    d = DataDir(tmp_path)
    gone = [_gone_writer(tmp_path), _gone_writer(tmp_path)]
    live = BlobStore(tmp_path).writer()  # this process, still writing
    live.write(b"in flight")
    mine = f"{os.getpid()}/{live.blob_id}"
    assert len(_tmp_files(tmp_path)) == 3 and mine in _tmp_files(tmp_path)

    # a dead worker: the supervisor removes that one's temporaries while the others write
    assert d.remove_tmp_of(gone[0]) == 1
    assert [f.split("/")[0] for f in _tmp_files(tmp_path)] == sorted([str(gone[1]), str(os.getpid())])

    # after a whole-coordinator crash: everything but the live processes' (here: this one's),
    # including a temporary of the layout before per-process dirs
    (d.tmp / f"{gone[0]}.{'c' * 32}").write_bytes(b"old layout")
    assert d.remove_tmp_except([os.getpid()]) == 2
    assert _tmp_files(tmp_path) == [mine]

    live.seal()  # the live writer never noticed
    assert _tmp_files(tmp_path) == []


def test_start_up_removes_every_temporary(tmp_path: Path) -> None:
    prepare_data_dir(tmp_path)
    _gone_writer(tmp_path)
    (DataDir(tmp_path).tmp / "leftover").write_bytes(b"old layout")
    assert len(_tmp_files(tmp_path)) == 2
    prepare_data_dir(tmp_path)  # the data-dir lock is held: every earlier process is gone
    assert _tmp_files(tmp_path) == []
