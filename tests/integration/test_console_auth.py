"""Console sign-in (docs/operations.md 1.3): by peer token, by access key or peer id with its secret; the
cookie's flags; a wrong credential refused without a cookie; a revoked peer or key, or a logout on one
worker, ends the session on every worker at its next request; no secret in any page, log line or record."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import requests
from conftest import Coordinator, start_coordinator
from support.console import ConsoleClient, signed_in
from support.peers import add_peer, cli_ok

LOGIN = "/console/login"


@pytest.fixture(scope="module")
def coord(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    c = start_coordinator(tmp_path_factory.mktemp("console-auth"), workers=2)
    yield c
    c.stop()


def _worker(r: requests.Response) -> str:
    """Which worker process answered: the per-process prefix of the request id."""
    return r.headers["x-request-id"][:8]


def _fresh_get(port: int, cookie: str, path: str = "/console/") -> requests.Response:
    """A GET on a new connection (SO_REUSEPORT hands each connection to any worker)."""
    return requests.get(
        f"http://127.0.0.1:{port}{path}",
        headers={"Cookie": cookie, "Connection": "close"},
        allow_redirects=False,
        timeout=30,
    )


def test_sign_in_by_token_sets_a_strict_http_only_cookie(coord: Coordinator) -> None:
    c = ConsoleClient(coord.port)
    r = c.sign_in(token=coord.token)
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"]
    parts = [p.strip() for p in cookie.split(";")]
    name, _, sid = parts[0].partition("=")
    assert name == "tm_console" and len(sid) >= 43
    assert "HttpOnly" in parts and "SameSite=Strict" in parts and "Path=/console/" in parts
    assert "Secure" not in parts  # plain HTTP here: a Secure cookie would never come back
    home = c.get("/")
    assert home.status_code == 200 and "admin" in home.text and 'id="logout"' in home.text


def test_sign_in_by_peer_id_and_token_and_by_access_key(coord: Coordinator) -> None:
    peer = add_peer(coord, f"console-{uuid.uuid4().hex[:6]}")
    by_id = signed_in(coord.port, access_key=peer.id, secret=peer.token)
    assert peer.id in by_id.get("/").text
    key = json.loads(cli_ok(coord, "key", "create", "--peer", peer.id, "--json"))
    by_key = signed_in(coord.port, access_key=key["id"], secret=key["secret"])
    page = by_key.get("/").text
    assert key["id"] in page and peer.id in page
    assert key["secret"] not in page and peer.token not in page


@pytest.mark.parametrize(
    "form",
    [
        {"token": "not-a-token-of-anyone-0123456789"},
        {"access_key": "admin", "secret": "wrong-secret-0123456789"},
        {"access_key": "no-such-peer", "secret": "wrong-secret-0123456789"},
        {"access_key": "", "secret": ""},
    ],
)
def test_a_wrong_credential_is_refused_without_a_cookie(coord: Coordinator, form: dict[str, str]) -> None:
    c = ConsoleClient(coord.port)
    r = c.post("/login", form)
    assert r.status_code == 401
    assert "set-cookie" not in r.headers
    assert "Sign-in refused" in r.text
    for value in form.values():
        if value:
            assert value not in r.text
    assert c.get("/").status_code == 303


def test_revoking_the_peer_ends_its_session(coord: Coordinator) -> None:
    peer = add_peer(coord, f"revoked-{uuid.uuid4().hex[:6]}")
    c = signed_in(coord.port, token=peer.token)
    assert c.get("/").status_code == 200
    cli_ok(coord, "peer", "revoke", peer.id)
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    # and it stays ended: the record is gone, signing in again is refused
    assert c.get("/").status_code == 303
    assert ConsoleClient(coord.port).sign_in(token=peer.token).status_code == 401


def test_revoking_the_key_ends_its_session_not_the_peers(coord: Coordinator) -> None:
    peer = add_peer(coord, f"keyed-{uuid.uuid4().hex[:6]}")
    key = json.loads(cli_ok(coord, "key", "create", "--peer", peer.id, "--json"))
    by_key = signed_in(coord.port, access_key=key["id"], secret=key["secret"])
    by_token = signed_in(coord.port, token=peer.token)
    cli_ok(coord, "key", "revoke", key["id"])
    r = by_key.get("/")
    assert r.status_code == 303 and r.headers["location"] == LOGIN
    assert by_token.get("/").status_code == 200


def test_logout_on_one_worker_ends_the_session_on_every_worker(coord: Coordinator) -> None:
    r = ConsoleClient(coord.port).sign_in(token=coord.token)
    cookie = r.headers["set-cookie"].split(";")[0]
    seen: set[str] = set()
    for _ in range(200):
        r = _fresh_get(coord.port, cookie)
        assert r.status_code == 200
        seen.add(_worker(r))
        if len(seen) == 2:
            break
    assert len(seen) == 2, "both workers must have served the session"
    page = _fresh_get(coord.port, cookie)
    csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    out = requests.post(
        f"http://127.0.0.1:{coord.port}/console/logout",
        data={"csrf": csrf},
        headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{coord.port}", "Connection": "close"},
        allow_redirects=False,
        timeout=30,
    )
    assert out.status_code == 303 and out.headers["location"] == "/console/logout"
    assert "Max-Age=0" in out.headers["set-cookie"]
    ended_on = _worker(out)
    others = 0
    for _ in range(200):
        r = _fresh_get(coord.port, cookie)
        assert r.status_code == 303 and r.headers["location"] == LOGIN
        if _worker(r) != ended_on:
            others += 1
            if others == 3:
                break
    assert others == 3, "the other worker must have been asked too"


def test_no_secret_in_any_page_log_line_or_session_record(coord: Coordinator) -> None:
    peer = add_peer(coord, f"secret-{uuid.uuid4().hex[:6]}")
    key = json.loads(cli_ok(coord, "key", "create", "--peer", peer.id, "--json"))
    clients = [
        signed_in(coord.port, token=coord.token),
        signed_in(coord.port, token=peer.token),
        signed_in(coord.port, access_key=key["id"], secret=key["secret"]),
    ]
    sids = [c.http.cookies["tm_console"] for c in clients]
    secrets_ = [coord.token, peer.token, key["secret"], *sids]
    pages = [c.get(p).text for c in clients for p in ("/", "/login", "/logout")]
    s3 = coord.client()
    records = s3.list_objects_v2(Bucket="_tunnelmesh", Prefix="console-sessions/").get("Contents", [])
    assert len(records) >= 3
    bodies = [s3.get_object(Bucket="_tunnelmesh", Key=o["Key"])["Body"].read().decode() for o in records]
    for body in bodies:
        assert set(json.loads(body)) == {"peer", "key_id", "token_digest", "csrf", "created", "expires"}
    log = coord.log()
    for secret in secrets_:
        assert all(secret not in p for p in pages)
        assert secret not in log
        assert all(secret not in b for b in bodies)
        assert all(secret not in o["Key"] for o in records)


def test_signing_in_again_ends_the_session_the_browser_had(coord: Coordinator) -> None:
    c = signed_in(coord.port, coord.token)
    first = c.http.cookies["tm_console"]
    again = c.sign_in(coord.token)
    assert again.status_code == 303
    assert c.http.cookies["tm_console"] != first
    assert _fresh_get(coord.port, f"tm_console={first}").status_code == 303  # back to the sign-in page


def test_a_sign_in_form_is_small(coord: Coordinator) -> None:
    """Before any session holds, a body is read only up to the size of an id and a secret."""
    r = ConsoleClient(coord.port).post("/login", {"token": "x" * 5000})
    assert r.status_code == 413
