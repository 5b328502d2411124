"""Process start-up: prepare the data dir, resolve the admin credential, run the listeners.

The coordinator process is a small supervisor. It validates everything first, then runs one
granian server per listener (the main one serves the S3 API under /s3, the second one serves it
at the root for clients that cannot take an endpoint path). Each server runs worker processes
that share the SQLite metadata and the blob directory.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tunnelmesh.config import ConfigError, Listen, Settings
from tunnelmesh.store.engine import mark_clean_shutdown, prepare_data_dir

log = logging.getLogger("tunnelmesh")

ADMIN_ACCESS_KEY = "admin"
ADMIN_TOKEN_ENV = "TUNNELMESH_ADMIN_TOKEN"
ADMIN_TOKEN_FILE = "admin.token"
SETTINGS_ENV = "TUNNELMESH_SETTINGS"
LISTENER_ENV = "TUNNELMESH_LISTENER"


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def check_data_dir(data_dir: Path) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"s3.data_dir: {data_dir} is not writable: {e.strerror}") from None


def admin_token(data_dir: Path, create: bool) -> tuple[str, str]:
    """The bootstrap admin secret and where it came from (never the secret itself)."""
    env = os.environ.get(ADMIN_TOKEN_ENV)
    if env:
        return env, f"${ADMIN_TOKEN_ENV}"
    path = data_dir / ADMIN_TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), str(path)
    if not create:
        raise RuntimeError(f"no admin token in ${ADMIN_TOKEN_ENV} or {path}")
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    return token, f"{path} (generated)"


def report_state(settings: Settings, token: str) -> None:
    """Load the coordinator's records from _tunnelmesh (and only from there) and say what was found.

    A corrupt record is reported by key and skipped; the others load.
    """
    from tunnelmesh.coordinator.network import NetworkConfig
    from tunnelmesh.coordinator.peers import PeerRegistry
    from tunnelmesh.coordinator.shares import Shares
    from tunnelmesh.coordinator.state import CorruptRecord, SystemState
    from tunnelmesh.s3.auth.credentials import Identity
    from tunnelmesh.s3.request import Principal
    from tunnelmesh.store.engine import Store

    store = Store(settings.data_dir, settings.max_size)
    try:
        state = SystemState(store)
        peers = PeerRegistry(state, Identity(Principal(ADMIN_ACCESS_KEY, is_admin=True), token)).peers()
        try:
            network = NetworkConfig(state).show()
        except CorruptRecord as e:
            log.warning("%s", e)
            network = {}
        shares = Shares(state).list()
        log.info(
            "state from _tunnelmesh: %d peers (%d revoked), %d shares, network %s",
            len(peers),
            sum(1 for p in peers if p.revoked),
            len(shares),
            network.get("mesh_name") or "(unset)",
        )
    finally:
        store.close()


def _granian_cmd(listen: Listen, workers: int, log_level: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--no-ws",
        "--host",
        listen.host,
        "--port",
        str(listen.port),
        "--workers",
        str(workers),
        "--log-level",
        "warning" if log_level == "info" else log_level,
        "--respawn-failed-workers",
        "tunnelmesh.asgi:create_app",
    ]


def run(settings: Settings) -> int:
    """Start the coordinator and block until it is stopped. Returns the exit code."""
    check_data_dir(settings.data_dir)
    prepare_data_dir(settings.data_dir)
    token, source = admin_token(settings.data_dir, create=True)
    report_state(settings, token)
    workers = settings.workers or (os.cpu_count() or 1)
    env = dict(os.environ, **{SETTINGS_ENV: settings.to_json()})
    listeners: list[tuple[str, Listen, str]] = [("main", settings.listen, f"http://{settings.listen}/s3")]
    if settings.s3_listen is not None:
        listeners.append(("s3", settings.s3_listen, f"http://{settings.s3_listen}"))
    children: list[subprocess.Popen[bytes]] = []
    for name, listen, _ in listeners:
        children.append(
            subprocess.Popen(_granian_cmd(listen, workers, settings.log_level), env=dict(env, **{LISTENER_ENV: name}))
        )
    log.info("admin credential: access key %r, secret from %s", ADMIN_ACCESS_KEY, source)
    for _, _, url in listeners:
        log.info("S3 API at %s", url)
    log.info("data in %s, max_size %d bytes", settings.data_dir.resolve(), settings.max_size)

    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        for c in children:
            rc = c.poll()
            if rc is not None:
                log.error("a listener exited with code %s (is the port in use?); stopping", rc)
                stopping, code = True, 1
                break
        time.sleep(0.2)
    for c in children:
        if c.poll() is None:
            c.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    clean = True
    for c in children:
        try:
            c.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.kill()
            clean = False
    if clean and code == 0:
        mark_clean_shutdown(settings.data_dir)
    return code
