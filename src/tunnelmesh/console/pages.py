"""The console's pages: handlers that call the S3 and admin APIs in process and render templates."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunnelmesh.console.web import Reply, Req, Route, route

if TYPE_CHECKING:
    from tunnelmesh.console.app import Console


async def home(console: Console, req: Req) -> Reply:
    return console.templates.page(req, "home.html", buckets=[])


ROUTES: list[Route] = [
    route("GET", "/", home),
]
