"""The directory prometheus-client's multiprocess mode keeps the workers' metric files in.

Kept apart from obs/metrics.py because the supervisor must prepare it and set PROMETHEUS_MULTIPROC_DIR
before anything imports prometheus_client (which picks its value class at import): this module does not
import it, and tests/unit/test_obs_imports.py keeps tunnelmesh.server free of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from tunnelmesh.config import ConfigError, Settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK = ".lock"


def default_dir(settings: Settings) -> Path:
    """`$RUNTIME_DIRECTORY/metrics` under systemd (RuntimeDirectory=, a tmpfs), else `<data_dir>/metrics`."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(runtime) / "metrics" if runtime else settings.files.metrics


@contextlib.contextmanager
def prepared(settings: Settings) -> Iterator[Path]:
    """The metrics dir for this coordinator's life: created, flocked, emptied of a previous run's files and
    named in the environment (so every worker forked from here inherits it). Two coordinators must not
    share one: the sums would mix their workers."""
    path = settings.metrics_dir or default_dir(settings)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _check_ours(path)
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as e:
        raise ConfigError(f"metrics.dir: cannot use {path}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"metrics.dir: {path} is in use by another coordinator") from None
        # a previous run's files (a crash leaves them): its counters would be summed into ours
        for old in path.glob("*.db"):
            old.unlink()
        os.environ[ENV] = str(path)
        try:
            yield path
        finally:
            os.environ.pop(ENV, None)
    finally:
        os.close(fd)


def _check_ours(path: Path) -> None:
    """The workers write their files here by predictable names (`counter_<pid>.db`, opened following
    symlinks) and a scrape parses whatever `*.db` it finds, and a start deletes them: so the directory must
    be this user's own, writable by nobody else, and not a symlink to somewhere else."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"metrics.dir: {path} is not a directory (a symlink is refused: name the directory itself)")
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise ConfigError(
            f"metrics.dir: {path} must be a directory of this user's own (uid {os.geteuid()}), "
            "writable by no one else (chmod 700)"
        )


def mark_dead(pid: int) -> None:
    """A reaped worker's live gauges (requests in flight) stop counting; its counters and histograms stay, so
    totals never go backwards. Imported here, in the supervisor, only once the environment names the dir."""
    if ENV not in os.environ:
        return
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid)
