"""How the CLI reaches a running coordinator: its base URL and an admin token."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import click
from defusedxml import ElementTree

from tunnelmesh import config
from tunnelmesh.server import ADMIN_TOKEN_ENV
from tunnelmesh.store.datadir import DataDir


class CliError(click.ClickException):
    """One line on stderr, a non-zero exit code, never a traceback."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"tunnelmesh: {self.message}", err=True)


# with no connection flags, the CLI looks for the coordinator's config where the coordinator runs
LOCAL_CONFIG = Path("coordinator.yaml")
NO_COORDINATOR = "pass --endpoint and --token, set TUNNELMESH_ENDPOINT/TUNNELMESH_TOKEN, or --config"
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


def resolve(endpoint: str | None, token: str | None, config_path: Path | None) -> Coordinator:
    """--endpoint/--token (or their environment variables), else --config on the coordinator host, else
    ./coordinator.yaml when the CLI runs in the coordinator's directory."""
    if config_path is None and not endpoint and LOCAL_CONFIG.is_file():
        config_path = LOCAL_CONFIG
    if config_path is not None:
        try:
            settings = config.load(config_path, allow_public=True)
        except config.ConfigError as e:
            raise CliError(f"configuration error: {e}") from None
        host = settings.listen.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        scheme = "https" if settings.tls is not None else "http"
        endpoint = endpoint or f"{scheme}://{'[' + host + ']' if ':' in host else host}:{settings.listen.port}"
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
