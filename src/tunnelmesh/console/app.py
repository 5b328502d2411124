"""The console's ASGI edge at /console/: routing, sign-in state, the CSRF checks, security headers, static files.

Every page module lists its routes (`ROUTES`); they are registered in one place, `PAGES` below.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from tunnelmesh.console import admin_pages, auth, csrf, pages, uploads
from tunnelmesh.console.s3call import Calls
from tunnelmesh.console.sessions import Sessions
from tunnelmesh.console.web import PREFIX, Refused, Reply, Req, Route, Static, Templates, redirect, route
from tunnelmesh.coordinator.peers import PeerRegistry
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import new_request_id

log = logging.getLogger("tunnelmesh.console")

# a form or small JSON document; object bodies never come here (they go straight to /s3, presigned)
MAX_BODY = 1024 * 1024
# what anyone may send before a session holds: the sign-in form (an id, a token or a secret)
MAX_SIGN_IN_BODY = 4096
# expired sessions nobody came back to are removed this often (each is also removed when met)
SWEEP_INTERVAL = 3600.0
COOKIE = "tm_console"
FAILED_SIGN_IN_DELAY = 0.5
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    # not no-referrer: with it, a browser sends `Origin: null` on the console's own POSTs, which the Origin
    # check must refuse. same-origin sends no Referer to any other origin (share links never leak).
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
]


class Console:
    def __init__(
        self,
        peers: PeerRegistry,
        sessions: Sessions,
        calls: Calls,
        region: str,
        on_refused_sign_in: Callable[[], None] = lambda: None,
    ) -> None:
        self.peers = peers
        # counted by the caller (asgi.py: the auth-failure metric), so the console imports no metrics
        self.on_refused_sign_in = on_refused_sign_in
        self.sessions = sessions
        self.calls = calls
        self.region = region
        self.static = Static()
        self.templates = Templates(self.static)
        self.routes: list[Route] = [*SIGN_IN, *PAGES]
        self._swept_at = float("-inf")

    async def handle(
        self, scope: dict[str, Any], receive: Any, send: Any, admit: Callable[[bool], Awaitable[None]]
    ) -> None:
        """`admit(signed_in)` takes the request's slot (asgi.py): an S3 one for a signed-in page, one of a
        small pool of its own for anyone else's; awaited once the session is known, before any body is read."""
        started = time.perf_counter()
        request_id = new_request_id()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        req = Req(
            method=scope["method"],
            path="",
            query=parse_qs((scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=True),
            headers=headers,
            origin=f"{scope.get('scheme') or 'http'}://{headers.get('host', '')}",
            client=(scope.get("client") or ("",))[0] or "",
        )
        try:
            req.path = unquote(raw[len(PREFIX) :], errors="strict")
            reply = await self._answer(req, receive, admit)
        except Refused as e:
            reply = self.templates.page(req, "error.html", e.status, message=e.message)
        except UnicodeDecodeError:
            reply = self.templates.page(req, "error.html", 400, message="The URL is not valid UTF-8.")
        except Exception:
            log.exception("console request %s %s failed", req.method, raw)
            reply = self.templates.page(req, "error.html", 500, message="Internal error: see the coordinator's log.")
        reply.headers.append(("x-request-id", request_id))
        await _send(send, req, reply)
        # the path only: a query may carry a prefix or key, never a secret, but keep the line short
        log.info(
            "console id=%s %s %r status=%d peer=%s ms=%.1f",
            request_id,
            req.method,
            req.path,
            reply.status,
            req.ident.principal.peer_id if req.ident else "-",
            (time.perf_counter() - started) * 1000,
        )

    async def _answer(self, req: Req, receive: Any, admit: Callable[[bool], Awaitable[None]]) -> Reply:
        if req.path == "":
            return redirect(PREFIX + "/")
        if req.path.startswith("/static/"):
            return self._static(req)
        now = time.monotonic()
        if now - self._swept_at >= SWEEP_INTERVAL:
            self._swept_at = now
            asyncio.get_running_loop().create_task(self._sweep())
        found = self._route(req)
        safe = req.method in csrf.SAFE_METHODS
        if not safe:
            refusal = csrf.origin_refusal(req.headers, req.origin)
            if refusal is not None:
                log.info("console %s %r refused: %s", req.method, req.path, refusal)
                raise Refused(403, "Refused: this request did not come from the console's own page.")
        # the session before the body: a request nobody is known for is answered from its headers alone, so
        # a client that never sends the body it announced holds nothing but its place in the small pool
        req.sid = _cookie(req.headers.get("cookie", ""), cookie_name(req))
        if req.sid:
            req.session = await self.sessions.load(req.sid)
            if req.session is not None:
                req.ident = await auth.reload(self.peers, req.session)
                if req.ident is None:
                    await self.sessions.end(req.sid)
                    req.session = None
        if found.signed_in and req.ident is None:
            reply = redirect(PREFIX + "/login")
            if req.sid:
                reply.headers.append(("set-cookie", clear_cookie(req)))
            return reply
        await admit(req.ident is not None)
        if not safe:
            req.body = await _read_body(receive, MAX_BODY if req.ident is not None else MAX_SIGN_IN_BODY)
            if req.headers.get("content-type", "").split(";")[0].strip() == "application/x-www-form-urlencoded":
                try:
                    req.form = parse_qs(req.body.decode(), keep_blank_values=True, strict_parsing=False)
                except UnicodeDecodeError:
                    raise Refused(400, "The form is not valid UTF-8.") from None
        if not safe and found.signed_in:
            sent = req.headers.get("x-csrf-token") or req.field("csrf")
            if not csrf.token_ok(req.csrf, sent):
                log.info("console %s %r refused: CSRF token", req.method, req.path)
                raise Refused(403, "Refused: the form's CSRF token is missing or wrong. Reload the page.")
        return await found.handler(self, req)

    def _route(self, req: Req) -> Route:
        methods = set()
        for r in self.routes:
            m = r.pattern.fullmatch(req.path)
            if m is None:
                continue
            if r.method == req.method or (r.method == "GET" and req.method == "HEAD"):
                req.params = {k: v for k, v in m.groupdict().items() if v is not None}
                return r
            methods.add(r.method)
        if methods:
            raise Refused(405, f"{req.method} is not allowed here.")
        raise Refused(404, "No such page.")

    def _static(self, req: Req) -> Reply:
        if req.method not in csrf.SAFE_METHODS:
            raise Refused(405, f"{req.method} is not allowed here.")
        found = self.static.files.get(req.path[len("/static/") :])
        if found is None:
            raise Refused(404, "No such file.")
        data, ctype = found
        return Reply(200, data, ctype, cache="public, max-age=31536000, immutable")

    async def _sweep(self) -> None:
        try:
            n = await self.sessions.sweep()
            if n:
                log.info("console: %d expired sessions removed", n)
        except Exception:
            log.exception("console session sweep failed")


def cookie_name(req: Req) -> str:
    # __Host- (Secure, Path=/, no Domain: no other host or plain-HTTP page can set it) where there is TLS
    return "__Host-" + COOKIE if req.origin.startswith("https:") else COOKIE


def session_cookie(req: Req, sid: str, max_age: int) -> str:
    if req.origin.startswith("https:"):
        return f"{cookie_name(req)}={sid}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Strict"
    return f"{cookie_name(req)}={sid}; Max-Age={max_age}; Path={PREFIX}/; HttpOnly; SameSite=Strict"


def clear_cookie(req: Req) -> str:
    return session_cookie(req, "", 0)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v
    return None


async def _read_body(receive: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        try:
            message = await receive()
        except S3Error as e:  # the client guard's RequestTimeout: a body that stopped coming
            raise Refused(e.status, "The request body did not arrive in time.") from None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, "The request body is too large.")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Any, req: Req, reply: Reply) -> None:
    body = b"" if req.method == "HEAD" else reply.body
    headers = [
        ("content-type", reply.content_type),
        ("content-length", str(len(reply.body))),
        ("cache-control", reply.cache),
        *SECURITY_HEADERS,
        *reply.headers,
    ]
    raw = [(k.encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# ---- sign-in and sign-out ---------------------------------------------------------------------------


async def login_form(console: Console, req: Req) -> Reply:
    if req.ident is not None:
        return redirect(PREFIX + "/")
    return console.templates.page(req, "login.html")


async def login(console: Console, req: Req) -> Reply:
    token, key = req.field("token").strip(), req.field("access_key").strip()
    ident = await auth.sign_in(console.peers, token, key, req.field("secret"))
    if ident is None:
        log.info("console sign-in refused from %s", req.client)
        console.on_refused_sign_in()
        await asyncio.sleep(FAILED_SIGN_IN_DELAY)  # a guess costs time, on top of the token's 192 bits
        return console.templates.page(req, "login.html", 401, refused=True)
    p = ident.principal
    if req.sid:  # a sign-in over a live session replaces it: one browser, one session
        await console.sessions.end(req.sid)
    sid, session = await console.sessions.create(p.peer_id, p.key_id, ident.secret)
    log.info("console sign-in by %s%s from %s", p.peer_id, f" (key {p.key_id})" if p.key_id else "", req.client)
    reply = redirect(PREFIX + "/")
    reply.headers.append(("set-cookie", session_cookie(req, sid, int(session.expires - session.created))))
    return reply


async def logout(console: Console, req: Req) -> Reply:
    if req.sid:
        await console.sessions.end(req.sid)
    reply = redirect(PREFIX + "/logout")
    reply.headers.append(("set-cookie", clear_cookie(req)))
    return reply


async def logged_out(console: Console, req: Req) -> Reply:
    return console.templates.page(req, "logout.html")


SIGN_IN = [
    route("GET", "/login", login_form, signed_in=False),
    route("POST", "/login", login, signed_in=False),
    route("POST", "/logout", logout),
    route("GET", "/logout", logged_out, signed_in=False),
]
# every page module's routes: add a module's ROUTES here (the first pattern that matches a path wins)
PAGES: list[Route] = [*pages.ROUTES, *uploads.ROUTES, *admin_pages.ROUTES]
