"""The console's admin pages (docs/operations.md step 10): peers, scoped access keys, quotas, storage status
and scrub, network settings, shares.

Every read and change is an in-process call of the admin API as the signed-in principal (s3call.py), so the
admin API's own rules decide: mesh admins only, access keys refused. A refusal there is the same refusal
here (403 page). Forms POST, then redirect to a GET page (POST-redirect-GET); destructive actions go
through a confirmation page first. A new peer token or key secret is shown once (reveals.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tunnelmesh.console.reveals import Reveals
from tunnelmesh.console.s3call import Answer
from tunnelmesh.console.web import Refused, Reply, Req, Route, redirect, route, url
from tunnelmesh.coordinator.keys import derive_secret
from tunnelmesh.coordinator.network import BUCKET_ACCESS, FIELDS, PUBLIC_ACCESS_BLOCK
from tunnelmesh.s3.request import Principal
from tunnelmesh.store.engine import SYSTEM_BUCKET

if TYPE_CHECKING:
    from tunnelmesh.console.app import Console

ID = r"(?P<id>[A-Za-z0-9_.-]{1,64})"
SHARE = r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,62})"
BUCKET = r"(?P<bucket>[A-Za-z0-9][A-Za-z0-9._-]{0,254})"
UNITS = {"MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
CHOICES = {"default_bucket_access": BUCKET_ACCESS, "default_public_access_block": PUBLIC_ACCESS_BLOCK}
ROLES = ("read", "write", "admin")
MAX_ROT_SHOWN = 20  # rotten objects named in the redirect after a scrub (the count is always exact)
NOTICES = {
    "revoked": "Peer revoked: its token no longer works, and its console sessions are over.",
    "key-revoked": "Access key revoked.",
    "quota": "Quota set.",
    "quota-cleared": "Quota cleared.",
    "network": "Network setting changed.",
    "share-added": "Share added.",
    "share-deleted": "Share deleted.",
}


def _principal(req: Req) -> Principal:
    assert req.ident is not None
    return req.ident.principal


async def _buckets(console: Console, req: Req) -> list[dict[str, Any]]:
    """The buckets as GET /api/buckets gives them, less the coordinator's own (no quota, no share, no key
    scope: the storage page shows its size)."""
    rows = (await _admin(console, req, "GET", "/api/buckets")).json()["buckets"]
    return sorted((b for b in rows if b.get("name") != SYSTEM_BUCKET), key=lambda b: str(b.get("name")))


async def _admin(console: Console, req: Req, method: str, path: str, doc: Any = None) -> Answer:
    """An admin API call as the session's principal; its refusal becomes the console's own."""
    answer = await console.calls.admin(_principal(req), method, path, doc, client=req.client)
    if not answer.ok:
        raise Refused(answer.status if answer.status < 500 else 502, answer.error())
    return answer


def _page(console: Console, req: Req, name: str, **ctx: Any) -> Reply:
    return console.templates.page(req, name, notice=NOTICES.get(req.arg("done")), **ctx)


def _confirm(console: Console, req: Req, title: str, message: str, action: str, button: str, back: str) -> Reply:
    return console.templates.page(
        req, "admin_confirm.html", title=title, message=message, action=action, button=button, back=back
    )


def _confirmed(req: Req) -> None:
    if req.field("confirm") != "yes":
        raise Refused(400, "Not confirmed: use the confirmation page's button.")


# ---- peers -----------------------------------------------------------------------------------------


async def peers(console: Console, req: Req) -> Reply:
    rows = (await _admin(console, req, "GET", "/api/peers")).json()["peers"]
    rows.sort(key=lambda p: (p.get("revoked") is not None, p.get("name", ""), p.get("id", "")))
    return _page(console, req, "admin_peers.html", peers=rows)


async def add_peer(console: Console, req: Req) -> Reply:
    name = req.field("name").strip()
    if not name:
        raise Refused(400, "A peer needs a name.")
    doc = (await _admin(console, req, "POST", "/api/peers", {"name": name, "admin": req.field("admin") == "on"})).json()
    assert req.sid is not None
    nonce = await Reveals(console.sessions.state).create(req.sid, "peer", doc["peer_id"])
    return redirect(url(f"/admin/peers/{doc['peer_id']}/new", reveal=nonce))


async def new_peer(console: Console, req: Req) -> Reply:
    """The new peer's token, once: a reload (or anyone else with the URL) finds the reveal gone."""
    peer_id = req.params["id"]
    listed = (await _admin(console, req, "GET", "/api/peers")).json()["peers"]
    peer = next((p for p in listed if p.get("id") == peer_id), None)
    if peer is None:
        raise Refused(404, f"No peer {peer_id}.")
    assert req.sid is not None
    token = None
    if await Reveals(console.sessions.state).take(req.sid, req.arg("reveal"), "peer", peer_id):
        found = next((p for p in await console.peers.peers() if p.id == peer_id and p.revoked is None), None)
        token = found.token if found is not None else None
    return console.templates.page(req, "admin_secret.html", kind="peer", peer=peer, secret=token)


async def revoke_peer_confirm(console: Console, req: Req) -> Reply:
    peer_id = req.params["id"]
    listed = (await _admin(console, req, "GET", "/api/peers")).json()["peers"]
    peer = next((p for p in listed if p.get("id") == peer_id), None)
    if peer is None:
        raise Refused(404, f"No peer {peer_id}.")
    return _confirm(
        console,
        req,
        f"Revoke peer {peer['name']} ({peer_id})?",
        "Its token stops working at once, on S3, the admin API and the console, and so do its access keys. "
        "A revoked peer cannot be restored: add a new one instead.",
        url(f"/admin/peers/{peer_id}/revoke"),
        "Revoke peer",
        url("/admin/peers"),
    )


async def revoke_peer(console: Console, req: Req) -> Reply:
    _confirmed(req)
    await _admin(console, req, "POST", f"/api/peers/{quote(req.params['id'], safe='')}/revoke")
    return redirect(url("/admin/peers", done="revoked"))


# ---- scoped access keys ----------------------------------------------------------------------------


async def keys(console: Console, req: Req) -> Reply:
    rows = (await _admin(console, req, "GET", "/api/keys")).json()
    listed = (await _admin(console, req, "GET", "/api/peers")).json()["peers"]
    live = sorted((p for p in listed if p.get("revoked") is None), key=lambda p: p.get("name", ""))
    buckets = [b["name"] for b in await _buckets(console, req)]
    return _page(console, req, "admin_keys.html", keys=rows, peers=live, buckets=buckets, roles=ROLES)


async def create_key(console: Console, req: Req) -> Reply:
    doc: dict[str, Any] = {"peer": req.field("peer").strip(), "name": req.field("name").strip()}
    bucket = req.field("bucket").strip()
    if bucket:
        doc["scope"] = [{"bucket": bucket, "role": req.field("role"), "prefix": req.field("prefix")}]
    days = req.field("days").strip()
    if days:
        try:
            doc["expires_in"] = int(float(days) * 86400)
        except (ValueError, OverflowError):  # OverflowError: inf, 1e308
            raise Refused(400, "The lifetime is a number of days.") from None
    key = (await _admin(console, req, "POST", "/api/keys", doc)).json()
    assert req.sid is not None
    nonce = await Reveals(console.sessions.state).create(req.sid, "key", key["id"])
    return redirect(url(f"/admin/keys/{key['id']}/new", reveal=nonce))


async def new_key(console: Console, req: Req) -> Reply:
    key_id = req.params["id"]
    rows = (await _admin(console, req, "GET", "/api/keys")).json()
    key = next((k for k in rows if k.get("id") == key_id), None)
    if key is None:
        raise Refused(404, f"No access key {key_id}.")
    assert req.sid is not None
    secret = None
    if await Reveals(console.sessions.state).take(req.sid, req.arg("reveal"), "key", key_id):
        # the secret is derived, never stored (coordinator/keys.py): derived again here, for this one view
        record = await console.peers.key(key_id)
        owner = next((p for p in await console.peers.peers() if record and p.id == record.peer), None)
        if record is not None and owner is not None and owner.revoked is None and record.revoked is None:
            secret = derive_secret(owner.token, record.id, record.salt)
    return console.templates.page(req, "admin_secret.html", kind="key", key=key, secret=secret)


async def revoke_key_confirm(console: Console, req: Req) -> Reply:
    key_id = req.params["id"]
    rows = (await _admin(console, req, "GET", "/api/keys")).json()
    if not any(k.get("id") == key_id for k in rows):
        raise Refused(404, f"No access key {key_id}.")
    return _confirm(
        console,
        req,
        f"Revoke access key {key_id}?",
        "Every client using it (rclone, the AWS CLI, a console session) is refused from now on.",
        url(f"/admin/keys/{key_id}/revoke"),
        "Revoke key",
        url("/admin/keys"),
    )


async def revoke_key(console: Console, req: Req) -> Reply:
    _confirmed(req)
    await _admin(console, req, "DELETE", f"/api/keys/{quote(req.params['id'], safe='')}")
    return redirect(url("/admin/keys", done="key-revoked"))


# ---- quotas ----------------------------------------------------------------------------------------


async def quotas(console: Console, req: Req) -> Reply:
    rows = await _buckets(console, req)
    for b in rows:
        b["total"] = int(b["used"]) + int(b.get("multipart_used") or 0)  # what the quota counts
        b["amount"], b["unit"] = _in_units(b.get("quota"))
    return _page(console, req, "admin_quotas.html", buckets=rows, units=list(UNITS))


def _in_units(quota: int | None) -> tuple[str, str]:
    """The quota as the form shows it: in the largest unit it is at least one of."""
    if not quota:
        return "", "GiB"
    unit = next((u for u in reversed(UNITS) if quota >= UNITS[u]), "MiB")
    return f"{quota / UNITS[unit]:g}", unit


def _quota_bytes(amount: str, unit: str) -> int:
    try:
        value = float(amount)
    except ValueError:
        raise Refused(400, "A quota is a number.") from None
    if unit not in UNITS or not math.isfinite(value) or value <= 0:
        raise Refused(400, "A quota is a positive number of MiB, GiB or TiB.")
    return round(value * UNITS[unit])


async def set_quota(console: Console, req: Req) -> Reply:
    bucket = req.params["bucket"]
    clear = req.field("clear") == "yes"
    quota = None if clear else _quota_bytes(req.field("amount").strip(), req.field("unit"))
    await _admin(console, req, "PUT", f"/api/buckets/{quote(bucket, safe='')}/quota", {"quota": quota})
    return redirect(url("/admin/quotas", done="quota-cleared" if clear else "quota"))


# ---- storage and scrub -----------------------------------------------------------------------------


async def storage(console: Console, req: Req) -> Reply:
    status = (await _admin(console, req, "GET", "/api/storage")).json()
    scrubbed = None
    if req.arg("done") == "scrub":
        scrubbed = {
            "objects": req.arg("objects"),
            "bytes": int(req.arg("bytes") or 0) if req.arg("bytes").isdigit() else 0,
            "rotten": req.arg("rotten"),
            "rot": req.query.get("rot", []),
        }
    return console.templates.page(req, "admin_storage.html", s=status, scrubbed=scrubbed)


async def scrub(console: Console, req: Req) -> Reply:
    """Re-hash every object now (no repair: quarantining is for `tunnelmesh storage scrub --repair`, where an
    operator reads the report first); the outcome goes to the status page in its URL."""
    report = (await _admin(console, req, "POST", "/api/storage/scrub")).json()
    rot = [f"{r['bucket']}/{r['key']} ({r['problem']})" for r in report["rotten"][:MAX_ROT_SHOWN]]
    return redirect(
        url(
            "/admin/storage",
            done="scrub",
            objects=str(report["objects"]),
            bytes=str(report["bytes"]),
            rotten=str(len(report["rotten"])),
            rot=rot,
        )
    )


# ---- network ---------------------------------------------------------------------------------------


async def network(console: Console, req: Req) -> Reply:
    doc = (await _admin(console, req, "GET", "/api/network")).json()
    fields = [(f, doc.get(f), CHOICES.get(f)) for f in FIELDS]
    return _page(console, req, "admin_network.html", fields=fields, extra=sorted(doc.get("extra", {}).items()))


async def set_network(console: Console, req: Req) -> Reply:
    key = req.field("key").strip()
    if key == "extra":
        key = "extra." + req.field("name").strip()
    await _admin(console, req, "PUT", "/api/network", {"key": key, "value": req.field("value").strip()})
    return redirect(url("/admin/network", done="network"))


# ---- shares ----------------------------------------------------------------------------------------


async def shares(console: Console, req: Req) -> Reply:
    rows = (await _admin(console, req, "GET", "/api/shares")).json()["shares"]
    rows.sort(key=lambda s: str(s.get("name")))
    buckets = [b["name"] for b in await _buckets(console, req)]
    return _page(console, req, "admin_shares.html", shares=rows, buckets=buckets)


async def add_share(console: Console, req: Req) -> Reply:
    doc = {
        "name": req.field("name").strip(),
        "bucket": req.field("bucket").strip(),
        "path": req.field("path").strip(),
        "peers": [p for p in req.field("peers").replace(",", " ").split() if p],
        "read_only": req.field("read_only") == "on",
    }
    await _admin(console, req, "POST", "/api/shares", doc)
    return redirect(url("/admin/shares", done="share-added"))


async def delete_share_confirm(console: Console, req: Req) -> Reply:
    name = req.params["name"]
    rows = (await _admin(console, req, "GET", "/api/shares")).json()["shares"]
    share = next((s for s in rows if s.get("name") == name), None)
    if share is None:
        raise Refused(404, f"No share {name}.")
    return _confirm(
        console,
        req,
        f"Delete share {name}?",
        f"Peers lose the share of {share.get('bucket')}/{share.get('path') or ''}. The bucket and its objects stay.",
        url(f"/admin/shares/{name}/delete"),
        "Delete share",
        url("/admin/shares"),
    )


async def delete_share(console: Console, req: Req) -> Reply:
    _confirmed(req)
    await _admin(console, req, "DELETE", f"/api/shares/{quote(req.params['name'], safe='')}")
    return redirect(url("/admin/shares", done="share-deleted"))


async def home(console: Console, req: Req) -> Reply:
    return redirect(url("/admin/peers"))


ROUTES: list[Route] = [
    route("GET", "/admin/?", home),
    route("GET", "/admin/peers", peers),
    route("POST", "/admin/peers", add_peer),
    route("GET", f"/admin/peers/{ID}/new", new_peer),
    route("GET", f"/admin/peers/{ID}/revoke", revoke_peer_confirm),
    route("POST", f"/admin/peers/{ID}/revoke", revoke_peer),
    route("GET", "/admin/keys", keys),
    route("POST", "/admin/keys", create_key),
    route("GET", f"/admin/keys/{ID}/new", new_key),
    route("GET", f"/admin/keys/{ID}/revoke", revoke_key_confirm),
    route("POST", f"/admin/keys/{ID}/revoke", revoke_key),
    route("GET", "/admin/quotas", quotas),
    route("POST", f"/admin/quotas/{BUCKET}", set_quota),
    route("GET", "/admin/storage", storage),
    route("POST", "/admin/storage/scrub", scrub),
    route("GET", "/admin/network", network),
    route("POST", "/admin/network", set_network),
    route("GET", "/admin/shares", shares),
    route("POST", "/admin/shares", add_share),
    route("GET", f"/admin/shares/{SHARE}/delete", delete_share_confirm),
    route("POST", f"/admin/shares/{SHARE}/delete", delete_share),
]
