"""The browser harness: Playwright's sync API driving Debian's chromium, never a browser of Playwright's own.

No chromium: as root, it is installed here (apt-get), so the README's test command sets up everything on a
fresh Debian machine; otherwise the run fails saying what to install. A browser test never skips: a skip
is turned into a failure, so CI cannot go green without having driven a browser.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Coordinator, start_coordinator
from support.debian import debian_program

# Playwright must never fetch a browser: it drives the system's chromium
os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    return debian_program("chromium", "chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped:
        report.outcome = "failed"
        report.longrepr = f"a browser test must run, never skip: {report.longrepr}"


# package, not session: while Playwright's sync API is open it runs an event loop in this thread, and every
# later test that calls asyncio.run (tests/component, after tests/browser) would fail
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def console_coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("console-browser"), workers=1)
    yield c
    c.stop()


@pytest.fixture
def page(browser: Any, console_coord: Coordinator) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the console; any CSP violation or script error fails the test."""
    context = browser.new_context(base_url=f"http://127.0.0.1:{console_coord.port}", accept_downloads=True)
    p = context.new_page()
    problems: list[str] = []
    p.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    p.on("pageerror", lambda e: problems.append(str(e)))
    p.problems = problems
    yield p
    context.close()
    assert not [m for m in problems if "Content Security Policy" in m or "Refused to" in m], problems


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: $TUNNELMESH_SHOTS (for the note) or the test's own tmp dir."""
    where = Path(os.environ.get("TUNNELMESH_SHOTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def sign_in(page: Any, token: str) -> None:
    page.goto("/console/")
    page.fill("#token", token)
    page.click("#sign-in")
    page.wait_for_selector("#logout")
