"""The console's admin pages over plain HTTP (docs/operations.md step 10): each POST handler does what it says
through the admin API, answers with a redirect to a GET page, refuses a missing CSRF token or a foreign Origin,
and refuses a non-admin (a peer's token or an admin's access key). A new peer's token and a new key's secret
are shown once: never again on a reload, on any other page, or in the coordinator's log."""

from __future__ import annotations

import io
import json
import re
import tarfile
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import Coordinator, start_coordinator
from support.console import ConsoleClient, signed_in

PAGES = ["/admin/peers", "/admin/keys", "/admin/quotas", "/admin/storage", "/admin/network", "/admin/shares"]


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("console-admin"), workers=1)
    yield c
    c.stop()


def _api(coord: Coordinator, method: str, path: str, doc: Any = None, token: str | None = None) -> Any:
    r = requests.request(
        method,
        f"http://127.0.0.1:{coord.port}{path}",
        json=doc,
        headers={"Authorization": f"Bearer {token or coord.token}"},
        timeout=30,
    )
    assert r.status_code < 300, (method, path, r.status_code, r.text)
    return r.json()


def _peers(coord: Coordinator) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in _api(coord, "GET", "/api/peers")["peers"]}


def _bucket(coord: Coordinator) -> str:
    name = f"adm-{uuid.uuid4().hex[:8]}"
    _api(coord, "POST", "/api/buckets", {"name": name})
    return name


def _redirected(r: requests.Response, path: str) -> dict[str, list[str]]:
    """The redirect's query, after checking that it goes to `path` (POST-redirect-GET)."""
    assert r.status_code == 303, (r.status_code, r.text[:1000])
    where = urlsplit(r.headers["location"])
    assert where.path == "/console" + path, r.headers["location"]
    return parse_qs(where.query)


def test_add_peer_shows_its_token_once(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    name = f"laptop-{uuid.uuid4().hex[:6]}"
    r = console.act("/admin/peers", {"name": name}, page="/admin/peers")
    assert r.status_code == 303
    new = [p for p in _peers(coord).values() if p["name"] == name]
    assert len(new) == 1 and new[0]["role"] == "peer" and new[0]["revoked"] is None
    peer_id = new[0]["id"]
    location = r.headers["location"]
    assert location.startswith(f"/console/admin/peers/{peer_id}/new?reveal=")

    shown = console.get(location[len("/console") :])
    assert shown.status_code == 200
    token = re.search(r'id="secret" value="([^"]+)"', shown.text)
    assert token, shown.text[:2000]
    token_text = token.group(1)
    assert shown.headers["cache-control"] == "no-store"
    assert 'data-copy="secret"' in shown.text
    # the token shown is the peer's: it signs in
    assert signed_in(coord.port, token=token_text).get("/").status_code == 200
    # it is not in the redirect's URL, and a reload (or another page) never shows it again
    assert token_text not in location
    again = console.get(location[len("/console") :])
    assert again.status_code == 200 and token_text not in again.text and 'id="shown-once"' in again.text
    for page in PAGES:
        answer = console.get(page)
        assert answer.status_code == 200, page
        assert token_text not in answer.text, page
    # another admin session with the same URL gets nothing either (the reveal is gone, and was not its own)
    other = signed_in(coord.port, token=coord.token)
    assert token_text not in other.get(location[len("/console") :]).text
    assert token_text not in coord.log()
    assert token_text not in console.get("/").text


def test_reveal_belongs_to_the_session_that_added(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    r = console.act("/admin/peers", {"name": "another", "admin": "on"}, page="/admin/peers")
    location = r.headers["location"][len("/console") :]
    peer_id = location.split("/")[3]
    assert _peers(coord)[peer_id]["role"] == "admin"
    # a second admin who learns the URL first does not see the token, and spends the reveal
    other = signed_in(coord.port, token=coord.token)
    assert 'id="secret"' not in other.get(location).text
    assert 'id="shown-once"' in console.get(location).text


def _system_records(coord: Coordinator) -> dict[str, bytes]:
    """Every record of `_tunnelmesh` by key, from a backup archive of it."""
    r = requests.get(
        f"http://127.0.0.1:{coord.port}/api/system/backup",
        headers={"Authorization": f"Bearer {coord.token}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text[:500]
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    manifest = json.loads(members["manifest.json"])
    return {e["key"]: members[e["member"]] for e in manifest["objects"]}


def test_a_pending_reveal_holds_no_secret(coord: Coordinator) -> None:
    """The one-shot record that lets the answer page show a token holds ids and digests, never the token."""
    console = signed_in(coord.port, token=coord.token)
    r = console.act("/admin/peers", {"name": "unseen"}, page="/admin/peers")
    peer_id = r.headers["location"].split("/")[4]
    listed = next(p for p in _api(coord, "GET", "/api/peers")["peers"] if p["id"] == peer_id)
    assert "token" not in listed  # the listing never has it; the reveal page takes it from the peer's record
    records = _system_records(coord)
    reveals = {k: v for k, v in records.items() if k.startswith("console-reveals/")}
    assert len(reveals) == 1
    (doc,) = [json.loads(v) for v in reveals.values()]
    assert set(doc) == {"kind", "id", "session", "expires"} and doc["id"] == peer_id
    peer_record = json.loads(records[f"peers/{peer_id}.json"])
    assert peer_record["token"].encode() not in next(iter(reveals.values()))
    # viewing it spends it
    assert 'id="secret"' in console.get(r.headers["location"][len("/console") :]).text
    assert not [k for k in _system_records(coord) if k.startswith("console-reveals/")]


def test_revoke_peer_needs_confirmation_and_ends_the_token(coord: Coordinator) -> None:
    peer = _api(coord, "POST", "/api/peers", {"name": "to-revoke"})
    console = signed_in(coord.port, token=coord.token)
    victim = signed_in(coord.port, token=peer["token"])
    confirm = console.get(f"/admin/peers/{peer['peer_id']}/revoke")
    assert confirm.status_code == 200 and 'name="confirm" value="yes"' in confirm.text
    assert _peers(coord)[peer["peer_id"]]["revoked"] is None  # the GET changed nothing
    # a POST without the confirmation is refused
    r = console.act(f"/admin/peers/{peer['peer_id']}/revoke", {}, page="/admin/peers")
    assert r.status_code == 400 and _peers(coord)[peer["peer_id"]]["revoked"] is None
    r = console.act(f"/admin/peers/{peer['peer_id']}/revoke", {"confirm": "yes"}, page="/admin/peers")
    _redirected(r, "/admin/peers")
    assert _peers(coord)[peer["peer_id"]]["revoked"] is not None
    assert victim.get("/").status_code == 303  # its session is over
    assert ConsoleClient(coord.port).sign_in(token=peer["token"]).status_code == 401


def test_quota_set_and_clear(coord: Coordinator) -> None:
    bucket = _bucket(coord)
    console = signed_in(coord.port, token=coord.token)
    r = console.act(f"/admin/quotas/{bucket}", {"amount": "1.5", "unit": "GiB"}, page="/admin/quotas")
    assert _redirected(r, "/admin/quotas") == {"done": ["quota"]}
    assert _api(coord, "GET", f"/api/buckets/{bucket}/usage")["quota"] == 3 * 1024**3 // 2
    page = console.get("/admin/quotas").text
    assert re.search(rf'<tr data-bucket="{bucket}">.*?<meter class="bar"[^>]*max="{3 * 1024**3 // 2}"', page, re.S)
    assert 'data-bucket="_tunnelmesh"' not in page  # the coordinator's own bucket has no quota
    for bad in ({"amount": "-1", "unit": "GiB"}, {"amount": "x", "unit": "GiB"}, {"amount": "1", "unit": "PiB"}):
        assert console.act(f"/admin/quotas/{bucket}", bad, page="/admin/quotas").status_code == 400, bad
    r = console.act(f"/admin/quotas/{bucket}", {"clear": "yes"}, page="/admin/quotas")
    assert _redirected(r, "/admin/quotas") == {"done": ["quota-cleared"]}
    assert _api(coord, "GET", f"/api/buckets/{bucket}/usage")["quota"] is None


def test_storage_page_and_scrub_now(coord: Coordinator) -> None:
    bucket = _bucket(coord)
    s3 = coord.client()
    s3.put_object(Bucket=bucket, Key="a.txt", Body=b"hello")  # type: ignore[attr-defined]
    console = signed_in(coord.port, token=coord.token)
    page = console.get("/admin/storage")
    assert page.status_code == 200 and 'id="disk-free"' in page.text and 'id="scrub-now"' in page.text
    r = console.act("/admin/storage/scrub", {}, page="/admin/storage")
    query = _redirected(r, "/admin/storage")
    assert query["done"] == ["scrub"] and query["rotten"] == ["0"] and int(query["objects"][0]) >= 1
    shown = console.get(r.headers["location"][len("/console") :])
    assert "Scrub finished:" in shown.text and "0 rotten" in shown.text


def test_network_settings(coord: Coordinator) -> None:
    console = signed_in(coord.port, token=coord.token)
    r = console.act("/admin/network", {"key": "mesh_name", "value": "home-mesh"}, page="/admin/network")
    _redirected(r, "/admin/network")
    r = console.act("/admin/network", {"key": "extra", "name": "site", "value": "attic"}, page="/admin/network")
    _redirected(r, "/admin/network")
    doc = _api(coord, "GET", "/api/network")
    assert doc["mesh_name"] == "home-mesh" and doc["extra"]["site"] == "attic"
    page = console.get("/admin/network").text
    assert "home-mesh" in page and "extra.site" in page
    # the admin API's own validation decides, and its refusal is shown (never a 500)
    r = console.act("/admin/network", {"key": "cidr", "value": "not-a-network"}, page="/admin/network")
    assert r.status_code == 400 and "cidr" in r.text
    r = console.act("/admin/network", {"key": "no_such_key", "value": "x"}, page="/admin/network")
    assert r.status_code == 400 and _api(coord, "GET", "/api/network").get("no_such_key") is None


def test_shares_add_and_delete(coord: Coordinator) -> None:
    bucket = _bucket(coord)
    console = signed_in(coord.port, token=coord.token)
    form = {"name": "photos", "bucket": bucket, "path": "2026/", "peers": "peer-a, peer-b", "read_only": "on"}
    _redirected(console.act("/admin/shares", form, page="/admin/shares"), "/admin/shares")
    shares = {s["name"]: s for s in _api(coord, "GET", "/api/shares")["shares"]}
    assert shares["photos"] == {
        "name": "photos",
        "bucket": bucket,
        "path": "2026",
        "peers": ["peer-a", "peer-b"],
        "read_only": True,
    }
    assert 'data-share="photos"' in console.get("/admin/shares").text
    assert console.get("/admin/shares/photos/delete").status_code == 200
    assert console.act("/admin/shares/photos/delete", {}, page="/admin/shares").status_code == 400
    r = console.act("/admin/shares/photos/delete", {"confirm": "yes"}, page="/admin/shares")
    _redirected(r, "/admin/shares")
    assert "photos" not in {s["name"] for s in _api(coord, "GET", "/api/shares")["shares"]}
    r = console.act("/admin/shares", {**form, "bucket": "no-such-bucket-x"}, page="/admin/shares")
    assert r.status_code in (400, 404) and "Not done" in r.text


def test_access_key_created_secret_shown_once_then_revoked(coord: Coordinator) -> None:
    bucket = _bucket(coord)
    peer = _api(coord, "POST", "/api/peers", {"name": "rclone-host"})
    console = signed_in(coord.port, token=coord.token)
    form = {"peer": peer["peer_id"], "name": "rclone", "bucket": bucket, "role": "read", "prefix": "", "days": "7"}
    r = console.act("/admin/keys", form, page="/admin/keys")
    keys = _api(coord, "GET", f"/api/keys?peer={peer['peer_id']}")
    assert len(keys) == 1 and keys[0]["scope"] == [{"bucket": bucket, "role": "read", "prefix": ""}]
    key_id = keys[0]["id"]
    assert r.status_code == 303 and r.headers["location"].startswith(f"/console/admin/keys/{key_id}/new?reveal=")
    shown = console.get(r.headers["location"][len("/console") :])
    secret = re.search(r'id="secret" value="([^"]+)"', shown.text)
    assert secret, shown.text[:2000]
    # the secret shown is the key's: it signs in to the console
    assert signed_in(coord.port, access_key=key_id, secret=secret.group(1)).get("/").status_code == 200
    assert secret.group(1) not in console.get(r.headers["location"][len("/console") :]).text
    assert secret.group(1) not in console.get("/admin/keys").text and secret.group(1) not in coord.log()
    r = console.act(f"/admin/keys/{key_id}/revoke", {"confirm": "yes"}, page="/admin/keys")
    _redirected(r, "/admin/keys")
    assert _api(coord, "GET", f"/api/keys?peer={peer['peer_id']}")[0]["revoked"] is not None


@pytest.mark.parametrize("days", ["inf", "1e308", "nan", "seven"])
def test_a_key_lifetime_that_is_no_number_of_days_is_a_400(coord: Coordinator, days: str) -> None:
    bucket = _bucket(coord)
    peer = _api(coord, "POST", "/api/peers", {"name": f"odd-{len(days)}"})
    console = signed_in(coord.port, token=coord.token)
    form = {"peer": peer["peer_id"], "name": "k", "bucket": bucket, "role": "read", "prefix": "", "days": days}
    r = console.act("/admin/keys", form, page="/admin/keys")
    assert r.status_code == 400 and "number of days" in r.text, (r.status_code, r.text[:300])
    assert _api(coord, "GET", f"/api/keys?peer={peer['peer_id']}") == []


def test_a_share_link_made_with_a_key_ends_with_the_key(coord: Coordinator) -> None:
    """A link signed with an access key works only while the key does: its lifetime and the page say so."""
    bucket = _bucket(coord)
    coord.client().put_object(Bucket=bucket, Key="shared.txt", Body=b"s")
    peer = _api(coord, "POST", "/api/peers", {"name": "sharer"})
    key = _api(coord, "POST", "/api/keys", {"peer": peer["peer_id"], "name": "short", "expires_in": 3600})
    _api(coord, "POST", f"/api/buckets/{bucket}/grants", {"peer": peer["peer_id"], "role": "read"})
    console = signed_in(coord.port, access_key=key["id"], secret=key["secret"])
    r = console.act(f"/b/{bucket}/share", {"key": "shared.txt", "expires": "604800"}, page=f"/b/{bucket}/")
    assert r.status_code == 200, r.text[:500]
    expires = int(re.search(r"X-Amz-Expires=(\d+)", r.text).group(1))
    assert 3500 < expires <= 3600
    assert "until the access key you signed in with expires" in r.text


def test_console_calls_are_logged_as_such(coord: Coordinator) -> None:
    assert signed_in(coord.port, token=coord.token).get("/").status_code == 200
    coord.wait_for_log(r"op=ListBuckets status=200 .*auth=console")


def _post_cases(bucket: str, target: str) -> list[tuple[str, dict[str, str]]]:
    """Every admin POST with a form that an admin's session would have carried out."""
    return [
        ("/admin/peers", {"name": "csrf-victim"}),
        ("/admin/keys", {"peer": target, "name": "csrf-key"}),
        (f"/admin/quotas/{bucket}", {"amount": "1", "unit": "MiB"}),
        ("/admin/storage/scrub", {}),
        ("/admin/network", {"key": "mesh_name", "value": "hijacked"}),
        ("/admin/shares", {"name": "csrf-share", "bucket": bucket}),
        ("/admin/shares/kept/delete", {"confirm": "yes"}),
        (f"/admin/peers/{target}/revoke", {"confirm": "yes"}),
    ]


def _setup(coord: Coordinator) -> tuple[str, str]:
    """A bucket with no quota, a share of it named `kept`, and a live peer: what the refused POSTs would change."""
    bucket = _bucket(coord)
    _api(coord, "POST", "/api/shares", {"name": "kept", "bucket": bucket})
    return bucket, _api(coord, "POST", "/api/peers", {"name": "target"})["peer_id"]


def _unchanged(coord: Coordinator, bucket: str, target: str) -> None:
    names = {p["name"] for p in _peers(coord).values()}
    assert "csrf-victim" not in names and _peers(coord)[target]["revoked"] is None
    assert not any(k["name"] == "csrf-key" for k in _api(coord, "GET", "/api/keys"))
    assert _api(coord, "GET", f"/api/buckets/{bucket}/usage")["quota"] is None
    assert _api(coord, "GET", "/api/network")["mesh_name"] != "hijacked"
    shares = {s["name"] for s in _api(coord, "GET", "/api/shares")["shares"]}
    assert "csrf-share" not in shares and "kept" in shares


def test_admin_posts_without_csrf_token_or_from_another_origin_are_refused(coord: Coordinator) -> None:
    bucket, target = _setup(coord)
    console = signed_in(coord.port, token=coord.token)
    token = console.csrf("/admin/peers")
    for path, form in _post_cases(bucket, target):
        assert console.post(path, form).status_code == 403, path  # no token
        assert console.post(path, {**form, "csrf": token[:-2] + "xx"}).status_code == 403, path
        assert console.post(path, {**form, "csrf": token}, origin="http://evil.example").status_code == 403, path
        assert console.post(path, {**form, "csrf": token}, origin=None).status_code == 403, path
    _unchanged(coord, bucket, target)


def test_non_admins_get_403_and_no_admin_links(coord: Coordinator) -> None:
    bucket, target = _setup(coord)
    peer = _api(coord, "POST", "/api/peers", {"name": "plain-peer"})
    admin = _api(coord, "POST", "/api/peers", {"name": "second-admin", "admin": True})
    # an admin's own access key: still no admin pages (the admin API refuses keys)
    key = _api(coord, "POST", "/api/keys", {"name": "admin-key"}, token=admin["token"])
    for who in (
        signed_in(coord.port, token=peer["token"]),
        signed_in(coord.port, access_key=key["id"], secret=key["secret"]),
    ):
        home = who.get("/")
        assert home.status_code == 200 and "/console/admin/" not in home.text and "admin-nav" not in home.text
        for page in [*PAGES, f"/admin/peers/{target}/revoke", "/admin/shares/kept/delete"]:
            r = who.get(page)
            assert r.status_code == 403, (page, r.status_code)
            assert "Not done" in r.text
        token = who.csrf("/")
        for path, form in _post_cases(bucket, target):
            r = who.post(path, {**form, "csrf": token})
            assert r.status_code == 403, (path, r.status_code)
    _unchanged(coord, bucket, target)
    admin_home = signed_in(coord.port, token=coord.token).get("/").text
    assert all(f'href="/console{p}"' in admin_home for p in PAGES)
