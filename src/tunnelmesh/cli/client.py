"""How the CLI reaches a running coordinator: its base URL and an admin token."""

from __future__ import annotations

import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import click
from defusedxml import ElementTree

from tunnelmesh import config
from tunnelmesh.server import ADMIN_TOKEN_ENV
from tunnelmesh.store.datadir import DataDir

# C0 controls, DEL and the C1 controls: a key or a metadata value holding them (ESC, or U+009B, the
# one-character CSI) would drive the terminal it is printed on
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def shown(text: str) -> str:
    """`text` as printed for a human: every control character as \\xNN, the rest as it is."""
    return text.translate(_CONTROLS)


class CliError(click.ClickException):
    """One line on stderr, a non-zero exit code, never a traceback."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"tunnelmesh: {shown(self.message)}", err=True)


# with no connection flags, the CLI looks for the coordinator's config where the coordinator runs
LOCAL_CONFIG = Path("coordinator.yaml")
NO_COORDINATOR = "pass --endpoint and --token, set TUNNELMESH_ENDPOINT/TUNNELMESH_TOKEN, or --config"
LOCAL_REFUSED = "pass --config ./coordinator.yaml if you trust it, or --endpoint and --token"
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@dataclass
class Coordinator:
    endpoint: str  # e.g. http://127.0.0.1:8080
    token: str
    # one connection pool for the whole command: a recursive copy of many files reuses its connections
    _session: Any = field(default=None, repr=False, compare=False)

    @property
    def s3(self) -> str:
        return self.endpoint.rstrip("/") + "/s3"

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def request(self, method: str, url: str, **kw: Any) -> Any:
        # imported here: the coordinator process never needs an HTTP client (and saves its memory)
        import requests

        if self._session is None:
            self._session = requests.Session()
        try:
            timeout = kw.pop("timeout", 60)
            r = self._session.request(
                method, url, headers={**self._headers(), **kw.pop("headers", {})}, timeout=timeout, **kw
            )
        except requests.ConnectionError:
            raise CliError(f"cannot reach the coordinator at {self.endpoint}") from None
        except requests.Timeout:
            raise CliError(f"the coordinator at {self.endpoint} did not answer in time") from None
        return r

    def api(self, method: str, path: str, json: Any = None, **kw: Any) -> Any:
        r = self.request(method, f"{self.endpoint.rstrip('/')}/api/{path}", json=json, **kw)
        if r.status_code >= 400:
            try:
                doc = r.json()
                message = f"{doc.get('error')}: {doc.get('message')}"
            except ValueError:
                message = f"HTTP {r.status_code}"
            raise CliError(message)
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.content


def object_url(c: Coordinator, b: str, k: str = "") -> str:
    return f"{c.s3}/{quote(b, safe='')}" + (f"/{quote(k, safe='/')}" if k else "")


def s3_error(r: Any) -> CliError:
    """The S3 error of a response in one line (Code: Message), or its status when it has no XML body."""
    try:
        doc = ElementTree.fromstring(r.content)
        return CliError(f"{doc.findtext('Code')}: {doc.findtext('Message')}")
    except Exception:
        return CliError(f"HTTP {r.status_code}")


def _private(path: Path, what: str, secret: bool = False) -> str | None:
    """Why `path` (lstat: a symlink is refused) may not be trusted as the current user's own, or None: it
    must be ours and writable by nobody else; a secret must also be unreadable by others."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"{what} {path}: {e.strerror}"
    if stat.S_ISLNK(st.st_mode):
        return f"{what} {path} is a symlink"
    if st.st_uid != os.geteuid():
        return f"{what} {path} is not owned by you (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"{what} {path} is writable by group or others"
    if secret and st.st_mode & 0o077:
        return f"{what} {path} is readable by group or others"
    return None


def _local_address(host: str) -> bool:
    """Whether `host` is an address of this machine: a coordinator can only listen there, so an endpoint
    elsewhere in a coordinator.yaml nobody passed is not this host's coordinator."""
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        return False
    for family, kind, proto, _name, addr in infos:
        with socket.socket(family, kind, proto) as s:
            try:
                s.bind(addr)
            except OSError:
                return False
    return bool(infos)


def _endpoint_of(settings: config.Settings) -> str:
    host = settings.listen.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    scheme = "https" if settings.tls is not None else "http"
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{settings.listen.port}"


def _load(config_path: Path) -> config.Settings:
    try:
        return config.load(config_path, allow_public=True)
    except config.ConfigError as e:
        raise CliError(f"configuration error: {e}") from None


def _from_local_config() -> Coordinator:
    """./coordinator.yaml, found rather than passed: anyone able to leave a file in a directory could
    name an endpoint in it, so it is used only when it and its directory are the user's own and writable
    by nobody else, its endpoint is an address of this host, and the token sent there is the one in its
    own data dir (never one from a flag or the environment)."""
    refusal = _private(Path.cwd(), "its directory") or _private(LOCAL_CONFIG, "the file")
    if refusal:
        raise CliError(f"not using ./coordinator.yaml: {refusal}; {LOCAL_REFUSED}")
    settings = _load(LOCAL_CONFIG)
    endpoint = _endpoint_of(settings)
    if not _local_address(settings.listen.host):
        raise CliError(f"not using ./coordinator.yaml: its listen address is not on this host; {LOCAL_REFUSED}")
    path = DataDir(settings.data_dir).admin_token
    refusal = _private(settings.data_dir, "its data dir") or _private(path, "the admin token", secret=True)
    if refusal:
        raise CliError(f"not using ./coordinator.yaml: {refusal}; {LOCAL_REFUSED}")
    try:
        # O_NOFOLLOW: the file checked above, not a symlink put in its place since
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW)) as f:
            token = f.read().strip()  # a file written by hand may end in a newline
    except OSError as e:
        raise CliError(f"not using ./coordinator.yaml: {path}: {e.strerror}; {LOCAL_REFUSED}") from None
    if not token:
        raise CliError(f"not using ./coordinator.yaml: {path} is empty; {LOCAL_REFUSED}")
    click.echo(f"using ./coordinator.yaml: {endpoint}", err=True)
    return Coordinator(endpoint, token)


def resolve(endpoint: str | None, token: str | None, config_path: Path | None) -> Coordinator:
    """--endpoint/--token (or their environment variables), else --config on the coordinator host, else
    ./coordinator.yaml when the CLI runs in the coordinator's directory (see _from_local_config)."""
    if config_path is None and not endpoint and LOCAL_CONFIG.is_file():
        if token:
            raise CliError(
                "not sending the token of --token/TUNNELMESH_TOKEN to the endpoint of ./coordinator.yaml: "
                "pass --endpoint too (or --config ./coordinator.yaml)"
            )
        return _from_local_config()
    if config_path is not None:
        settings = _load(config_path)
        endpoint = endpoint or _endpoint_of(settings)
        if not token:
            token = os.environ.get(ADMIN_TOKEN_ENV)
        if not token:
            path = DataDir(settings.data_dir).admin_token
            try:
                token = path.read_text().strip()  # a file written by hand (or by an older release) may end in a newline
            except OSError:
                raise CliError(f"no admin token: set {ADMIN_TOKEN_ENV} or make {path} readable") from None
    if not endpoint:
        raise CliError(NO_COORDINATOR)
    if not endpoint.startswith(("http://", "https://")):
        raise CliError(f"the endpoint must be a URL such as http://10.0.0.1:8080, not {endpoint!r}")
    parts = urlsplit(endpoint)
    if parts.path.rstrip("/").endswith("/s3"):
        base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')[: -len('/s3')]}"
        raise CliError(f"{endpoint} is the S3 endpoint: pass the coordinator's base URL ({base}), not its S3 endpoint")
    if not token:
        raise CliError("no admin token: pass --token (or set TUNNELMESH_TOKEN)")
    return Coordinator(endpoint, token)
