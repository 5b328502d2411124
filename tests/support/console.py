"""A console client for integration tests: real HTTP (requests) to /console/, as a browser sends it."""

from __future__ import annotations

import re
from typing import Any

import requests

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class ConsoleClient:
    """A requests session that sends the console's own Origin on every POST, like a browser on its page."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.origin = self.base
        self.http = requests.Session()

    def url(self, path: str) -> str:
        return f"{self.base}/console{path}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.http.get(self.url(path), allow_redirects=False, timeout=30, **kw)

    def post(self, path: str, data: Any = None, origin: str | None = "", **kw: Any) -> requests.Response:
        """`origin`: "" sends the console's own, None sends none."""
        headers = dict(kw.pop("headers", {}))
        if origin is not None:
            headers.setdefault("Origin", origin or self.origin)
        return self.http.post(self.url(path), data=data, headers=headers, allow_redirects=False, timeout=30, **kw)

    def sign_in(self, token: str = "", access_key: str = "", secret: str = "") -> requests.Response:
        return self.post("/login", {"token": token, "access_key": access_key, "secret": secret})

    def csrf(self, path: str = "/") -> str:
        r = self.get(path)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        m = CSRF.search(r.text)
        assert m, r.text[:2000]
        return m.group(1)

    def act(self, path: str, data: dict[str, Any] | None = None, page: str = "/") -> requests.Response:
        """A POST as the console's own form sends it: Origin and the session's CSRF token."""
        return self.post(path, {**(data or {}), "csrf": self.csrf(page)})


def signed_in(port: int, token: str = "", access_key: str = "", secret: str = "") -> ConsoleClient:
    c = ConsoleClient(port)
    r = c.sign_in(token, access_key, secret)
    assert r.status_code == 303 and r.headers["location"] == "/console/", (r.status_code, r.text[:500])
    return c
