"""How the CLI reaches a running coordinator: its base URL and an admin token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click

from tunnelmesh import config
from tunnelmesh.server import ADMIN_TOKEN_ENV
from tunnelmesh.store.datadir import DataDir


class CliError(click.ClickException):
    """One line on stderr, a non-zero exit code, never a traceback."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"tunnelmesh: {self.message}", err=True)


@dataclass
class Coordinator:
    endpoint: str  # e.g. http://127.0.0.1:8080
    token: str

    @property
    def s3(self) -> str:
        return self.endpoint.rstrip("/") + "/s3"

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def request(self, method: str, url: str, **kw: Any) -> Any:
        # imported here: the coordinator process never needs an HTTP client (and saves its memory)
        import requests

        try:
            timeout = kw.pop("timeout", 60)
            r = requests.request(
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


def resolve(endpoint: str | None, token: str | None, config_path: Path | None) -> Coordinator:
    """--endpoint/--token (or their environment variables), else --config on the coordinator host."""
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
                token = path.read_text().strip()
            except OSError:
                raise CliError(f"no admin token: set {ADMIN_TOKEN_ENV} or make {path} readable") from None
    if not endpoint:
        raise CliError("no coordinator: pass --endpoint (or set TUNNELMESH_ENDPOINT), or --config")
    if not endpoint.startswith(("http://", "https://")):
        raise CliError(f"the endpoint must be a URL such as http://10.0.0.1:8080, not {endpoint!r}")
    if not token:
        raise CliError("no admin token: pass --token (or set TUNNELMESH_TOKEN)")
    return Coordinator(endpoint, token)


class ProgressReader:
    """A file wrapper that reports bytes read to a click progress bar."""

    def __init__(self, f: IO[bytes], bar: Any) -> None:
        self.f, self.bar = f, bar

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.bar.update(len(data))
        return data

    def __len__(self) -> int:
        return os.fstat(self.f.fileno()).st_size

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1024 * 1024):
            yield chunk
