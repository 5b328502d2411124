"""The console's request and reply, its templates and its hashed static files: what every page module uses."""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape

from tunnelmesh.s3.auth.credentials import Identity

if TYPE_CHECKING:
    from tunnelmesh.console.sessions import Session

PREFIX = "/console"


@dataclass
class Req:
    method: str
    path: str  # decoded, below /console (starts with "/")
    query: dict[str, list[str]]
    headers: dict[str, str]
    origin: str  # the console's own origin, scheme://host as the browser addressed it
    client: str
    form: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)  # the route's named groups
    sid: str | None = None
    session: Session | None = None
    ident: Identity | None = None

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default

    def field(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[0] if values else default

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


class Refused(Exception):
    """A console request refused with `status` and a message shown on the error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    cache: str = "no-store"


Handler = Callable[[Any, Req], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    signed_in: bool = True  # False: the sign-in pages themselves


def route(method: str, pattern: str, handler: Handler, signed_in: bool = True) -> Route:
    return Route(method, re.compile(pattern), handler, signed_in)


def redirect(location: str) -> Reply:
    return Reply(303, headers=[("location", location)])


def url(path: str, **query: str | list[str]) -> str:
    """A console URL: `path` below /console, with its query (lists become repeated parameters)."""
    q = urlencode([(k, v) for k, vs in query.items() for v in ([vs] if isinstance(vs, str) else vs)])
    return PREFIX + quote(path, safe="/") + ("?" + q if q else "")


class Static:
    """console.css and console.js under content-hashed names: cached for good, replaced by a new name."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}  # hashed name -> (content, type)
        self.names: dict[str, str] = {}  # plain name -> hashed name
        for entry in resources.files("tunnelmesh.console").joinpath("static").iterdir():
            if not entry.is_file():
                continue
            data = entry.read_bytes()
            stem, dot, ext = entry.name.rpartition(".")
            hashed = f"{stem}.{hashlib.sha256(data).hexdigest()[:8]}{dot}{ext}"
            guessed = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            ctype = "text/javascript" if ext == "js" else guessed
            self.files[hashed] = (data, ctype)
            self.names[entry.name] = hashed

    def url(self, name: str) -> str:
        return f"{PREFIX}/static/{self.names[name]}"


class Templates:
    def __init__(self, static: Static) -> None:
        self.env = Environment(
            loader=PackageLoader("tunnelmesh.console", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["static"] = static.url
        self.env.globals["url"] = url
        self.env.filters["size"] = human_size

    def page(self, req: Req, name: str, status: int = 200, **ctx: Any) -> Reply:
        principal = req.ident.principal if req.ident else None
        html = self.env.get_template(name).render(req=req, principal=principal, csrf=req.csrf, **ctx)
        return Reply(status, html.encode())


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
