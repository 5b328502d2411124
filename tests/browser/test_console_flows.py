"""The console in a real browser (Debian's chromium through Playwright): the flows of issue 16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import Coordinator

from .conftest import sign_in


def test_sign_in_wrong_token_refused_then_sign_out(page: Any, console_coord: Coordinator, shots: Path) -> None:
    page.goto("/console/")
    assert page.url.endswith("/console/login")
    page.screenshot(path=str(shots / "login.png"), full_page=True)
    page.fill("#token", "not-the-token-0123456789abcdef")
    page.click("#sign-in")
    assert page.locator("#refused").inner_text() == "Sign-in refused."
    assert page.context.cookies() == []
    page.screenshot(path=str(shots / "login-refused.png"), full_page=True)

    sign_in(page, console_coord.token)
    assert page.url.endswith("/console/")
    assert "admin" in page.locator(".who").inner_text()
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console/"
    # the script cannot read the session cookie, and the page's own assets loaded under the strict CSP
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("document.documentElement.dataset.console") == "ready"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(245, 246, 248)"
    page.screenshot(path=str(shots / "home.png"), full_page=True)

    page.click("#logout")
    page.wait_for_selector("#signed-out")
    assert page.context.cookies() == []
    page.screenshot(path=str(shots / "logout.png"), full_page=True)
    page.goto("/console/")
    assert page.url.endswith("/console/login")
