"""HTTPS per listener (`tls:` for listen, `s3.tls:` for s3.listen): the supervisor's check that each
certificate and key make a pair before any worker starts. granian loads them again in every worker
(worker.py); a bad pair found there would kill each worker at start and exhaust the respawn limit with
five tracebacks instead of one line."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

from tunnelmesh.config import ConfigError, Settings, Tls


def listeners(settings: Settings) -> list[tuple[str, Tls]]:
    """The listeners with a certificate, by the key that configures it."""
    pairs = [("tls", settings.tls)] + ([("s3.tls", settings.s3_tls)] if settings.s3_listen is not None else [])
    return [(key, tls) for key, tls in pairs if tls is not None]


def scheme(tls: Tls | None) -> str:
    return "https" if tls is not None else "http"


def check(settings: Settings) -> None:
    for key, tls in listeners(settings):
        check_pair(key, tls)


def check_pair(key: str, tls: Tls) -> None:
    """Both files readable regular files, the key the owner's alone (like s3.sse_key_file: it is the
    listener's identity), and the key the certificate's own."""
    for name, path in (("cert", tls.cert), ("key", tls.key)):
        try:
            st = path.stat()
        except OSError as e:
            raise ConfigError(f"{key}.{name}: cannot read {path}: {e.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{key}.{name}: {path} is not a file")
        if name == "key" and st.st_mode & 0o077:
            raise ConfigError(f"{key}.key: {path}: mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 (owner only)")
    if _encrypted(tls.key):
        # granian 2.8.7 takes ssl_key_password but cannot decrypt a PKCS#8 key (EC or RSA, any cipher): its
        # worker panics and aborts, respawn after respawn
        raise ConfigError(
            f"{key}.key: {tls.key} is encrypted, which the HTTPS server cannot open; "
            "store it decrypted, mode 0600 (e.g. openssl pkey -in KEY -out KEY.plain)"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # an empty password, not None: None would ask on the terminal, where a service has no one to answer
        context.load_cert_chain(os.fspath(tls.cert), os.fspath(tls.key), "")
    except ssl.SSLError as e:
        reason = e.reason or str(e).splitlines()[0]
        raise ConfigError(
            f"{key}: {tls.cert} and {tls.key} are not a certificate and its private key ({reason})"
        ) from None
    except OSError as e:
        raise ConfigError(f"{key}: cannot load {tls.cert} and {tls.key}: {e.strerror or e}") from None


def _encrypted(path: Path) -> bool:
    """A PEM key under a password (PKCS#8 `ENCRYPTED PRIVATE KEY`, or the older `Proc-Type: 4,ENCRYPTED`)."""
    try:
        return b"ENCRYPTED" in path.read_bytes()
    except OSError:
        return False
