"""The console's CSRF defences and headers (docs/operations.md 1.1 layer 3, 1.2): a state-changing request
without the session's token, or not from the console's own origin, is refused (403) and changes nothing;
no console response lets another origin read it; every response carries the strict CSP; no template has
inline script or style; static files are served under their content hash."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import Coordinator, start_coordinator
from support.console import ConsoleClient, signed_in

import tunnelmesh.console

CONSOLE_DIR = Path(tunnelmesh.console.__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("console-csrf"), workers=1)
    yield c
    c.stop()


def _cases(coord: Coordinator, console: ConsoleClient) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(what, extra headers, form) of requests that must be refused; each would sign out if accepted."""
    token = console.csrf()
    own = console.origin
    return [
        ("no token", {"Origin": own}, {}),
        ("wrong token", {"Origin": own}, {"csrf": token[:-2] + "xx"}),
        ("token in the wrong session", {"Origin": own}, {"csrf": signed_in(coord.port, token=coord.token).csrf()}),
        ("Origin null", {"Origin": "null"}, {"csrf": token}),
        ("no Origin", {}, {"csrf": token}),
        ("the S3 listener's origin", {"Origin": f"http://127.0.0.1:{coord.s3_port}"}, {"csrf": token}),
        ("a foreign origin", {"Origin": "http://evil.example"}, {"csrf": token}),
        ("Sec-Fetch-Site cross-site", {"Origin": own, "Sec-Fetch-Site": "cross-site"}, {"csrf": token}),
        ("Sec-Fetch-Site same-site", {"Origin": own, "Sec-Fetch-Site": "same-site"}, {"csrf": token}),
    ]


def test_refused_posts_change_nothing(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    for what, headers, form in _cases(coord, console):
        r = console.http.post(console.url("/logout"), data=form, headers=headers, allow_redirects=False, timeout=30)
        assert r.status_code == 403, (what, r.status_code)
        assert "set-cookie" not in r.headers, what
        assert console.get("/").status_code == 200, f"{what}: the session must still be there"
    # the same request with the token and the own origin does sign out: the refusals above were the checks'
    r = console.post("/logout", {"csrf": console.csrf()})
    assert r.status_code == 303
    assert console.get("/").status_code == 303


def test_sign_in_from_another_origin_is_refused(coord: Coordinator) -> None:
    console = ConsoleClient(coord.port)
    for origin in ("http://evil.example", f"http://127.0.0.1:{coord.s3_port}", "null", None):
        r = console.post("/login", {"token": coord.token}, origin=origin or None)
        assert r.status_code == 403 and "set-cookie" not in r.headers, origin
    assert console.get("/").status_code == 303


def test_every_console_response_has_the_strict_headers_and_no_cors(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    home = console.get("/")
    static = re.findall(r'(?:href|src)="(/console/static/[^"]+)"', home.text)
    assert len(static) == 2
    responses = [
        home,
        console.get("/login"),
        console.get("/logout"),
        console.get("/no-such-page"),
        ConsoleClient(coord.port).get("/"),  # a redirect to sign in
        console.http.options(console.url("/"), headers={"Origin": "http://evil.example"}, timeout=30),
        console.post("/logout", {}, origin="http://evil.example"),
        requests.get(f"http://127.0.0.1:{coord.port}/console", allow_redirects=False, timeout=30),
        *(requests.get(f"http://127.0.0.1:{coord.port}{path}", timeout=30) for path in static),
    ]
    for r in responses:
        assert r.headers.get("content-security-policy") == CSP, r.url
        assert r.headers.get("x-frame-options") == "DENY", r.url
        assert r.headers.get("x-content-type-options") == "nosniff", r.url
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (r.url, r.headers)
    for r in responses[:5]:
        assert r.headers["cache-control"] == "no-store", r.url


def test_static_files_are_served_under_their_content_hash(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    paths = re.findall(r'(?:href|src)="(/console/static/[^"]+)"', console.get("/").text)
    for path in paths:
        name = path.rsplit("/", 1)[1]
        stem, digest, ext = name.split(".")
        source = (CONSOLE_DIR / "static" / f"{stem}.{ext}").read_bytes()
        assert digest == hashlib.sha256(source).hexdigest()[:8]
        r = requests.get(f"http://127.0.0.1:{coord.port}{path}", timeout=30)
        assert r.status_code == 200 and r.content == source
        assert "immutable" in r.headers["cache-control"]
        assert r.headers["content-type"] == ("text/javascript" if ext == "js" else "text/css")
        stale = requests.get(f"http://127.0.0.1:{coord.port}/console/static/{stem}.00000000.{ext}", timeout=30)
        assert stale.status_code == 404


def test_no_inline_script_or_style_in_any_template_or_markup_from_script() -> None:
    templates = sorted((CONSOLE_DIR / "templates").glob("*.html"))
    assert templates
    for t in templates:
        html = t.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html, re.I):
            assert "src=" in tag, (t.name, tag)
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html, re.I), t.name
        assert not re.search(r"<style\b", html, re.I), t.name
        assert not re.search(r"\sstyle\s*=", html, re.I), t.name
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), t.name
        assert not re.search(r"javascript:", html, re.I), t.name
        assert "|safe" not in html and "autoescape false" not in html, t.name
    js = (CONSOLE_DIR / "static" / "console.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in js, sink
