"""The console's admin pages in a real browser (Debian's chromium through Playwright): an admin adds a peer,
sees its token once and copies it, revokes it, and the token is refused from then on; quotas with bars;
a non-admin gets 403 and no admin links. Screenshots of every admin page go to $TUNNELMESH_SHOTS."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Coordinator

from .conftest import sign_in

ADMIN_PAGES = ["peers", "keys", "quotas", "storage", "network", "shares"]
# what Chromium does on a plain-HTTP origin that is not loopback (a mesh address without TLS): no Clipboard API
NO_CLIPBOARD = "Object.defineProperty(Navigator.prototype, 'clipboard', { get: () => undefined });"


@pytest.fixture
def open_page(browser: Any, console_coord: Coordinator) -> Iterator[Callable[..., Any]]:
    """Pages in contexts of their own (cookies, permissions); any CSP violation or script error fails the test."""
    contexts: list[Any] = []
    problems: list[str] = []
    errors: list[str] = []

    def make(permissions: list[str] | None = None, init_script: str | None = None) -> Any:
        context = browser.new_context(base_url=f"http://127.0.0.1:{console_coord.port}", permissions=permissions or [])
        if init_script:
            context.add_init_script(init_script)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        return page

    yield make
    for context in contexts:
        context.close()
    # status lines of refused loads (403, 401) are expected here; a CSP refusal or a script error is not
    assert not [m for m in problems if "Content Security Policy" in m or "Refused to" in m], problems
    assert not errors, errors


def _add_peer(page: Any, name: str) -> tuple[str, str]:
    """Adds a peer on the peers page; (its id, the token the answer page shows)."""
    page.goto("/console/admin/peers")
    page.fill("#peer-name", name)
    page.click("#add")
    page.wait_for_selector("#secret")
    peer_id = re.search(r"/admin/peers/([^/]+)/new", page.url)
    assert peer_id, page.url
    return peer_id.group(1), page.input_value("#secret")


def test_admin_adds_a_peer_copies_its_token_once_and_revokes_it(
    open_page: Callable[..., Any], console_coord: Coordinator, shots: Path
) -> None:
    admin = open_page(permissions=["clipboard-read", "clipboard-write"])
    sign_in(admin, console_coord.token)
    assert admin.locator("a.admin-nav").all_inner_texts() == ["Peers", "Keys", "Quotas", "Storage", "Network", "Shares"]
    admin.click("a.admin-nav:text('Peers')")
    admin.wait_for_selector("#add-peer")

    name = f"laptop-{uuid.uuid4().hex[:6]}"
    peer_id, token = _add_peer(admin, name)
    assert len(token) >= 40 and token not in admin.url
    assert admin.locator("#once").is_visible()
    admin.click("#copy")
    admin.wait_for_selector("#copy:text('Copied')")
    assert admin.evaluate("navigator.clipboard.readText()") == token
    admin.screenshot(path=str(shots / "admin-peer-token.png"), full_page=True)
    # a reload shows it no more
    admin.reload()
    assert admin.locator("#secret").count() == 0
    assert admin.locator("#shown-once").is_visible()
    assert token not in admin.content()

    # the token signs in, as a peer that sees no admin link and gets 403 on every admin page
    peer = open_page()
    sign_in(peer, token)
    assert peer.locator("a.admin-nav").count() == 0
    for name_ in ADMIN_PAGES:
        response = peer.goto(f"/console/admin/{name_}")
        assert response is not None and response.status == 403, name_
        assert "admin" in peer.locator("#error").inner_text()
    peer.screenshot(path=str(shots / "admin-forbidden.png"), full_page=True)

    # revoke, through the confirmation page
    admin.goto("/console/admin/peers")
    admin.click(f"tr[data-peer='{peer_id}'] a.revoke")
    admin.wait_for_selector("#confirm")
    assert peer_id in admin.locator("h1").inner_text()
    admin.screenshot(path=str(shots / "admin-revoke-confirm.png"), full_page=True)
    admin.click("#confirm")
    admin.wait_for_selector("#notice")
    assert admin.locator(f"tr[data-peer='{peer_id}'].revoked").count() == 1
    assert admin.locator(f"tr[data-peer='{peer_id}'] a.revoke").count() == 0
    admin.screenshot(path=str(shots / "admin-peers.png"), full_page=True)

    # its session is over, and the token no longer signs in
    peer.goto("/console/")
    assert peer.url.endswith("/console/login")
    again = open_page()
    again.goto("/console/login")
    again.fill("#token", token)
    again.click("#sign-in")
    assert again.locator("#refused").inner_text() == "Sign-in refused."
    assert again.context.cookies() == []


def test_copy_without_clipboard_api_selects_the_token(
    open_page: Callable[..., Any], console_coord: Coordinator
) -> None:
    admin = open_page(init_script=NO_CLIPBOARD)
    sign_in(admin, console_coord.token)
    _, token = _add_peer(admin, f"desk-{uuid.uuid4().hex[:6]}")
    admin.click("#copy")
    admin.wait_for_selector("#copy:text('Press Ctrl+C')")
    selected = admin.evaluate(
        "(() => { const e = document.getElementById('secret');"
        " return document.activeElement === e ? e.value.substring(e.selectionStart, e.selectionEnd) : ''; })()"
    )
    assert selected == token


def test_quotas_page_shows_bars_and_sets_a_quota(
    open_page: Callable[..., Any], console_coord: Coordinator, shots: Path
) -> None:
    s3 = console_coord.client()
    bucket = f"quota-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    s3.put_object(Bucket=bucket, Key="a.bin", Body=b"x" * 3 * 1024 * 1024)  # type: ignore[attr-defined]
    admin = open_page()
    sign_in(admin, console_coord.token)
    admin.goto("/console/admin/quotas")
    row = admin.locator(f"tr[data-bucket='{bucket}']")
    assert row.locator("meter").count() == 0 and "no quota" in row.inner_text()
    row.locator("input[name=amount]").fill("4")
    row.locator("select[name=unit]").select_option("MiB")
    row.locator("button.set").click()
    admin.wait_for_selector("#notice")
    row = admin.locator(f"tr[data-bucket='{bucket}']")
    meter = row.locator("meter")
    assert int(meter.get_attribute("max") or 0) == 4 * 1024 * 1024
    assert int(meter.get_attribute("value") or 0) == 3 * 1024 * 1024
    assert "3.0 MiB of 4.0 MiB (75.0 %)" in row.inner_text()
    # the bar is drawn (the meter has a size under the stylesheet, not a collapsed box)
    box = meter.bounding_box()
    assert box is not None and box["width"] >= 100
    admin.screenshot(path=str(shots / "admin-quotas.png"), full_page=True)
    row.locator("button.clear").click()
    admin.wait_for_selector("#notice")
    assert admin.locator(f"tr[data-bucket='{bucket}'] meter").count() == 0


def test_storage_network_shares_and_keys_pages(
    open_page: Callable[..., Any], console_coord: Coordinator, shots: Path
) -> None:
    s3 = console_coord.client()
    bucket = f"media-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    s3.put_object(Bucket=bucket, Key="clip.bin", Body=b"y" * 4096)  # type: ignore[attr-defined]
    admin = open_page()
    sign_in(admin, console_coord.token)

    admin.goto("/console/admin/storage")
    admin.click("#scrub-now")
    admin.wait_for_selector("#scrub-result")
    assert re.search(r"Scrub finished: \d+ objects, .* verified, 0 rotten\.", admin.inner_text("#scrub-result"))
    admin.screenshot(path=str(shots / "admin-storage.png"), full_page=True)

    admin.goto("/console/admin/network")
    admin.locator("tr[data-key='mesh_name'] input[name=value]").fill("home-mesh")
    admin.locator("tr[data-key='mesh_name'] button").click()
    admin.wait_for_selector("#notice")
    assert admin.locator("tr[data-key='mesh_name'] td.value").inner_text() == "home-mesh"
    admin.screenshot(path=str(shots / "admin-network.png"), full_page=True)

    admin.goto("/console/admin/shares")
    admin.fill("#share-name", "media")
    admin.select_option("#share-bucket", bucket)
    admin.fill("#share-path", "video/")
    admin.check("#share-ro")
    admin.click("#add")
    admin.wait_for_selector("#notice")
    assert "read only" in admin.locator("tr[data-share='media']").inner_text()
    admin.screenshot(path=str(shots / "admin-shares.png"), full_page=True)
    admin.click("tr[data-share='media'] a.delete")
    admin.click("#confirm")
    admin.wait_for_selector("#notice")
    assert admin.locator("tr[data-share='media']").count() == 0

    peer_id, _ = _add_peer(admin, f"rclone-{uuid.uuid4().hex[:6]}")
    admin.goto("/console/admin/keys")
    admin.select_option("#key-peer", peer_id)
    admin.fill("#key-name", "rclone")
    admin.select_option("#key-bucket", bucket)
    admin.select_option("#key-role", "read")
    admin.fill("#key-days", "30")
    admin.click("#create")
    admin.wait_for_selector("#secret")
    admin.screenshot(path=str(shots / "admin-key-secret.png"), full_page=True)
    admin.goto("/console/admin/keys")
    assert f"read on {bucket}" in admin.locator("#keys").inner_text()
    admin.screenshot(path=str(shots / "admin-keys.png"), full_page=True)
