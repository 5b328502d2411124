"""The admin API: JSON over HTTP under /api/ on the main listener, for the `tunnelmesh` CLI.

Authenticated exactly like the S3 API (SigV4, Basic, Bearer). Each route has its rule (docs/access-control.md
section 7): ADMIN (mesh admins only) or BUCKET (whoever the evaluator allows s3:PutBucketPolicy on the bucket:
its owner, a bucket-role admin, a mesh admin), so a bucket's owner manages its grants with its own token.

    GET    /api/peers                      list peers (never their tokens)
    POST   /api/peers                      {"name": str, "admin": bool} -> the peer with its token, once
    POST   /api/peers/{id}/revoke
    GET    /api/buckets                    buckets with usage
    POST   /api/buckets                    {"name": str}
    DELETE /api/buckets/{name}[?force=true]
    PUT    /api/buckets/{name}/quota       {"quota": bytes or null}
    GET    /api/buckets/{name}/usage       bytes used (current, noncurrent), objects, multipart bytes, quota
    GET    /api/storage                    the whole store against max_size, the disk's free space, per bucket
    GET    /api/storage/verify             recount usage from the metadata and report any difference
    POST   /api/storage/scrub[?repair=true] re-hash every object; with repair, quarantine the rotten ones
    GET    /api/storage/sse                SSE-S3: the key file's key ids (never the keys), rows per key id
    GET    /api/network                    network configuration
    PUT    /api/network                    {"key": str, "value": str}
    GET    /api/shares
    POST   /api/shares                     {"name", "bucket", "path", "peers": [..], "read_only": bool}
    DELETE /api/shares/{name}
    GET    /api/buckets/{name}/access      effective rights of each peer, group and anyone      (BUCKET)
    POST   /api/buckets/{name}/grants      {"peer"|"group"|"anyone", "role", "prefix"?}         (BUCKET)
    DELETE /api/buckets/{name}/grants      the same, role and prefix optional                   (BUCKET)
    GET    /api/groups
    POST   /api/groups                     {"name": str}
    DELETE /api/groups/{group}
    POST   /api/groups/{group}/members/{id}
    DELETE /api/groups/{group}/members/{id}
    GET    /api/audit?since=&until=&bucket=&actor=&event=&limit=   the audit records, oldest first
    GET    /api/keys[?peer=ID]             scoped access keys (never a secret)                  (SELF)
    POST   /api/keys                       {"peer"?, "name"?, "scope"?: [{bucket, role, prefix?}], "expires_in"?}
                                           -> the key with its secret, once                      (SELF)
    DELETE /api/keys/{id}                  revoke                                               (SELF)
    GET    /api/system/backup              tar.gz of the whole _tunnelmesh bucket
    POST   /api/system/restore             body: such an archive; verified before anything changes
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tunnelmesh.admin import access_report, backup, schemas
from tunnelmesh.admin.errors import admin_error
from tunnelmesh.coordinator import audit_query as audit_log
from tunnelmesh.coordinator.audit import Actor
from tunnelmesh.coordinator.errors import CoordinatorError, NoSuchAccessKey
from tunnelmesh.coordinator.grants import Grants, Groups, Target, public_grant
from tunnelmesh.coordinator.keys import Scope
from tunnelmesh.coordinator.network import NetworkConfig
from tunnelmesh.coordinator.peers import PeerRegistry
from tunnelmesh.coordinator.shares import Shares
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.obs.auth_reasons import refused_credential
from tunnelmesh.s3.app import CountedReceive, Outcome, close_after, log_access
from tunnelmesh.s3.auth import authenticate, require_whole_request_signed
from tunnelmesh.s3.authz import Authorizer
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.ops.common import validate_bucket_name
from tunnelmesh.s3.request import Request, from_scope, parse_target
from tunnelmesh.store.engine import SYSTEM_BUCKET
from tunnelmesh.store.errors import StoreError
from tunnelmesh.store.records import Bucket, NodeState

log = logging.getLogger("tunnelmesh.admin")
MAX_JSON = 1024 * 1024
# gzip never grows data by more than a fraction of a percent, so an archive larger than its
# uncompressed cap (with room for that) cannot be a valid one: refuse it before spooling it all
MAX_ARCHIVE = backup.MAX_TOTAL + backup.MAX_TOTAL // 64

Handler = Callable[["AdminApi", Request, dict[str, str]], Awaitable[tuple[int, Any]]]
# who may call a route: mesh admins; who may manage the bucket's policy; a peer for itself (its keys) or an admin
ADMIN, BUCKET, SELF = "admin", "bucket", "self"
# the network settings whose changes are access changes, audited (section 6)
AUDITED_NETWORK = frozenset({"default_bucket_access", "default_public_access_block"})


class AdminApi:
    def __init__(
        self,
        state: SystemState,
        peers: PeerRegistry,
        region: str,
        metadata: str = "",
        node: str = "",
        node_timeout: float = 60.0,
        authz: Authorizer | None = None,
    ) -> None:
        self.state = state
        # the worker's own authorizer (asgi.py), shared with the S3 edge: one view cache per worker
        self.authz = authz if authz is not None else Authorizer(state)
        self.grants = Grants(self.authz.records)
        self.groups = Groups(self.authz.records)
        # the metadata backend as `storage status` shows it (a PostgreSQL URI with its password redacted)
        self.metadata = metadata
        # which node answers, and how long a node may be silent before it counts as gone (store/heartbeat.py)
        self.node = node
        self.node_timeout = node_timeout
        self.store = state.store
        self.peers = peers
        self.network = NetworkConfig(state)
        self.shares = Shares(state)
        self.region = region

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> Outcome:
        started = time.perf_counter()
        counted = CountedReceive(receive)
        req = from_scope(scope, counted, "")
        status, body, ctype = 500, b"", "application/json"
        refused: str | None = None
        try:
            path = parse_target(req)
            require_whole_request_signed(req)
            await authenticate(req, self.peers, self.region)
            assert req.principal is not None
            handler, rule, params = self._route(req.method, path)
            # decided before any body is read: a refused caller cannot hold a worker on a slow upload
            await self._authorize(req, rule, params)
            req.operation = handler.__name__
            status, result = await handler(self, req, params)
            if isinstance(result, bytes):
                body, ctype = result, "application/gzip"
            else:
                body = (json.dumps(result, indent=2) + "\n").encode()
        except (S3Error, StoreError, CoordinatorError) as e:
            refused = refused_credential(req, e) if isinstance(e, S3Error) else None
            status, code, message = admin_error(e)
            body = (json.dumps({"error": code, "message": message}) + "\n").encode()
        except Exception:
            log.exception("admin request %s failed", req.request_id)
            status = 500
            body = (json.dumps({"error": "InternalError", "message": "internal error"}) + "\n").encode()
        headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", req.request_id.encode()),
            # as on every S3 response: no browser runs a JSON answer (or a backup archive) as a page or script
            (b"content-security-policy", b"sandbox"),
            (b"x-content-type-options", b"nosniff"),
        ]
        if close_after(req):
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        if log.isEnabledFor(logging.INFO):
            log_access(log, req, "admin", status, {"path": req.raw_path}, counted.n, len(body), started)
        return Outcome(req.operation, status, counted.n, len(body), refused)

    def _route(self, method: str, path: str) -> tuple[Handler, str, dict[str, str]]:
        for m, pattern, handler, rule in ROUTES:
            match = pattern.fullmatch(path)
            if match and m == method:
                return handler, rule, match.groupdict()
        raise S3Error("NotFound", f"No admin endpoint {method} {path}", status=404)

    async def _authorize(self, req: Request, rule: str, params: dict[str, str]) -> None:
        assert req.principal is not None
        if req.principal.key_id is not None:
            # a key is for S3 only: a leaked rclone.conf must not grant, make keys or read the audit trail
            raise S3Error("AccessDenied", "Access keys do not use the admin API: use the peer's token.")
        if rule == SELF:
            return  # the handler decides: a peer acts on its own keys, an admin on any
        if rule == BUCKET:
            # grants are policy changes: whoever may put the bucket's policy may change them (mesh admins
            # included, through the evaluator, which also keeps everyone off `_tunnelmesh`)
            decision, req.checked_bucket = await self.authz.ask(req, "s3:PutBucketPolicy", params["name"])
            req.authz = decision.why
            if not decision.allowed:
                raise S3Error("AccessDenied", "Only the bucket's owner, its admins and mesh admins manage its access.")
        elif not req.principal.is_admin:
            raise S3Error("AccessDenied", "The admin API is for admins only.")

    def _actor(self, req: Request) -> Actor:
        assert req.principal is not None
        via = "console" if req.auth_type == "console" else "admin-api"
        return Actor(req.principal.peer_id, req.principal.is_admin, via, None, req.request_id, req.client)

    # ---- peers ---------------------------------------------------------------------------

    async def list_peers(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        return 200, {"peers": [peer.public for peer in await self.peers.peers()]}

    async def add_peer(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        doc = await _json(req, schemas.AddPeer)
        peer = await self.peers.add(doc.name, doc.admin)
        await self.authz.audit.record("peer.add", self._actor(req), peer=peer.id, name=peer.name, role=peer.role)
        return 201, {"peer_id": peer.id, "token": peer.token, **peer.public}

    async def revoke_peer(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        await _json(req, schemas.NoBody)
        peer = await self.peers.revoke(p["id"])
        await self.authz.audit.record("peer.revoke", self._actor(req), peer=peer.id, name=peer.name)
        return 200, peer.public

    # ---- buckets -------------------------------------------------------------------------

    async def list_buckets(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        return 200, {"buckets": [_bucket_doc(b) for b in await self.store.buckets()]}

    async def create_bucket(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        name = (await _json(req, schemas.CreateBucket)).name
        if name == SYSTEM_BUCKET:
            raise S3Error("AccessDenied", "The bucket name is reserved for the coordinator.")
        validate_bucket_name(name)
        assert req.principal is not None
        await self.store.create_bucket(name, req.principal.peer_id, self.region)
        return 201, _bucket_doc(await self.store.require_bucket(name))

    async def delete_bucket(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        name = p["name"]
        if name == SYSTEM_BUCKET:
            raise S3Error("AccessDenied", "The coordinator's own bucket cannot be deleted.")
        row = await self.store.require_bucket(name)
        if req.query.get("force", "").lower() in ("1", "true", "yes"):
            await self.store.empty_bucket(name)
        await self.store.delete_bucket(name)
        # after the bucket: a crash in between leaves a stale record, which the incarnation rule ignores
        await self.authz.records.forget_bucket(row)
        return 200, {"deleted": name}

    async def set_quota(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        quota = (await _json(req, schemas.SetQuota)).quota
        if p["name"] == SYSTEM_BUCKET:
            raise S3Error("InvalidArgument", "The coordinator's own bucket cannot have a quota.")
        await self.store.set_quota(p["name"], quota)
        return 200, _bucket_doc(await self.store.require_bucket(p["name"]))

    async def bucket_usage(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        return 200, _bucket_doc(await self.store.require_bucket(p["name"]))

    async def storage_status(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        used = await self.store.store_used()
        system = await self.store.require_bucket(SYSTEM_BUCKET)
        pending = await self.store.pending_uploads()
        buckets = await self.store.buckets()
        docs = [
            # what unfinished multipart uploads hold (until completed, aborted or expired)
            _bucket_doc(b) | {"pending_uploads": pending.get(b.name, 0), "pending_bytes": b.mpu_used}
            for b in buckets
        ]
        return 200, {
            "metadata": self.metadata,
            "max_size": self.store.max_size,
            "used": used,  # what max_size limits: every bucket but the coordinator's own
            "system_used": system.used + system.mpu_used,
            "percent": round(100 * used / self.store.max_size, 2) if self.store.max_size else None,
            "disk_free": self.store.disk_free(),
            "pending_uploads": sum(pending.values()),
            "pending_bytes": sum(b.mpu_used for b in buckets),
            "buckets": docs,
            "scrub": self.store.scrub_status(),
            "node": self.node,
            "nodes": [self._node_doc(n) for n in await self.store.nodes()],
        }

    def _node_doc(self, n: NodeState) -> dict[str, Any]:
        return {
            "node": n.node,
            "listen": n.listen,
            "started": _iso(n.started_at),
            "last_seen": _iso(n.last_seen),
            "silent_for": None if n.silent_for is None else round(n.silent_for, 1),
            "live": n.silent_for is not None and n.silent_for < self.node_timeout,
        }

    async def storage_verify(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        rows = await self.store.verify_usage()
        return 200, {"ok": all(r["ok"] for r in rows), "buckets": rows}

    async def storage_sse(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        ring = self.store.sse
        return 200, {
            "enabled": ring is not None,
            "active": ring.active if ring is not None else None,
            "keys": sorted(ring.keys) if ring is not None else [],
            "rows": await self.store.sse_kids(),
        }

    async def storage_scrub(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        await _json(req, schemas.NoBody)
        repair = req.query.get("repair", "").lower() in ("1", "true", "yes")
        report = await self.store.scrub(repair)
        return 200, {
            "ok": not report.rotten,
            "objects": report.objects,
            "bytes": report.bytes,
            "rotten": [
                {"bucket": r.bucket, "key": r.key, "version_id": r.version_id, "problem": r.problem}
                | ({"outcome": r.outcome} if repair else {})
                for r in report.rotten
            ],
            "repaired": repair,
            "quarantined_blobs": report.quarantined,
        }

    # ---- network and shares --------------------------------------------------------------

    async def show_network(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        return 200, await self.network.show()

    async def set_network(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        doc = await _json(req, schemas.SetNetwork)
        if doc.key == "default_bucket_access" and doc.value != "read-write":
            # a node of an older release would go on letting every peer in: no rule in force on one node only
            await self.store.require_current_nodes("Access control", self.node_timeout)
        before = (await self.network.show()).get(doc.key) if doc.key in AUDITED_NETWORK else None
        result = await self.network.set(doc.key, doc.value)
        if doc.key in AUDITED_NETWORK:
            await self.authz.audit.record(
                "network.set", self._actor(req), key=doc.key, value=result.get(doc.key), previous=before
            )
        return 200, result

    # ---- scoped access keys (coordinator/keys.py) --------------------------------------------

    def _self_or_admin(self, req: Request, peer_id: str) -> None:
        assert req.principal is not None
        if not req.principal.is_admin and peer_id != req.principal.peer_id:
            raise S3Error("AccessDenied", "A peer manages its own access keys; an admin anyone's.")

    async def list_keys(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        assert req.principal is not None
        peer = req.query.get("peer") or (None if req.principal.is_admin else req.principal.peer_id)
        if peer is not None:
            self._self_or_admin(req, peer)
        now = time.time()
        return 200, [{**k.public, "expired": k.expired(now)} for k in await self.peers.keys(peer)]

    async def create_key(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        doc = await _json(req, schemas.CreateKey)
        assert req.principal is not None
        peer = doc.peer or req.principal.peer_id
        self._self_or_admin(req, peer)
        # a coordinator of an older release does not know keys: it would refuse them, never misuse them, but a
        # key must work on every node of the mesh once it is handed out
        await self.store.require_current_nodes("Access keys", self.node_timeout)
        scope = None if doc.scope is None else [Scope(s.bucket, s.role, s.prefix) for s in doc.scope]
        key, secret = await self.peers.create_key(peer, doc.name, scope, doc.expires_in, req.principal.peer_id)
        await self.authz.audit.record(
            "key.create", self._actor(req), key=key.id, peer=key.peer, scope=key.public["scope"], expires=key.expires
        )
        return 201, {**key.public, "secret": secret}

    async def revoke_key(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        key = await self.peers.key(p["id"])
        if key is None:
            raise NoSuchAccessKey(p["id"])
        self._self_or_admin(req, key.peer)
        revoked = await self.peers.revoke_key(key.id)
        await self.authz.audit.record("key.revoke", self._actor(req), key=key.id, peer=key.peer)
        return 200, revoked.public

    # ---- grants, groups, audit -----------------------------------------------------------

    async def bucket_access(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        view, row, groups = await self.authz.bucket_view(p["name"])
        grants = await self.grants.list(row)
        peers = [peer for peer in await self.peers.peers() if peer.revoked is None]
        assert req.principal is not None
        if not req.principal.is_admin:
            # a bucket's owner learns who has rights to it (the peers and groups its statements name, and their
            # members), not the mesh's peer directory or its other groups
            shown = {g: m for g, m in groups.items() if g in view.named_groups}
            named = view.named_peers.union({row.owner, req.principal.peer_id}, *shown.values())
            if "peers" not in view.named_groups:
                peers = [peer for peer in peers if peer.id in named]
            groups = shown
        return 200, access_report.report(view, grants, peers, groups)

    async def add_grant(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        doc = await _json(req, schemas.AddGrant)
        row = _checked(req)
        assert req.principal is not None
        await self.store.require_current_nodes("Access control", self.node_timeout)
        to = Target(doc.peer, doc.group, doc.anyone)
        grant, new = await self.grants.add(row, to, doc.role, doc.prefix, req.principal.peer_id)
        if new:
            await self.authz.audit.record("grant.add", self._actor(req), p["name"], grant=public_grant(grant))
        return (201 if new else 200), {"bucket": p["name"], "created": new, "grant": grant}

    async def remove_grant(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        doc = await _json(req, schemas.RemoveGrant)
        row = _checked(req)
        removed = await self.grants.remove(row, Target(doc.peer, doc.group, doc.anyone), doc.role, doc.prefix)
        await self.authz.audit.record(
            "grant.remove", self._actor(req), p["name"], grants=[public_grant(g) for g in removed]
        )
        return 200, {"bucket": p["name"], "removed": removed}

    async def list_groups(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        groups = await self.groups.list()
        return 200, {"groups": [{"name": name, **g} for name, g in sorted(groups.items()) if isinstance(g, dict)]}

    async def create_group(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        name = (await _json(req, schemas.CreateGroup)).name
        assert req.principal is not None
        group = await self.groups.create(name, req.principal.peer_id)
        await self.authz.audit.record("group.create", self._actor(req), group=name)
        return 201, {"name": name, **group}

    async def delete_group(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        await _json(req, schemas.NoBody)
        gone = await self.groups.delete(p["group"])
        await self.authz.audit.record("group.delete", self._actor(req), group=p["group"], members=gone.get("members"))
        return 200, {"deleted": p["group"]}

    async def add_member(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        await _json(req, schemas.NoBody)
        group = await self.groups.add(p["group"], p["id"])
        await self.authz.audit.record("group.add", self._actor(req), group=p["group"], peer=p["id"])
        return 200, {"name": p["group"], **group}

    async def remove_member(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        await _json(req, schemas.NoBody)
        group = await self.groups.remove(p["group"], p["id"])
        await self.authz.audit.record("group.remove", self._actor(req), group=p["group"], peer=p["id"])
        return 200, {"name": p["group"], **group}

    async def audit(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        q = req.query
        since, until = audit_log.parse_time(q.get("since"), "since"), audit_log.parse_time(q.get("until"), "until")
        limit = audit_log.parse_limit(q.get("limit"))
        records, truncated = await audit_log.search(
            self.state, since, until, q.get("bucket") or None, q.get("actor") or None, q.get("event") or None, limit
        )
        return 200, {"records": records, "truncated": truncated}

    async def list_shares(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        return 200, {"shares": await self.shares.list()}

    async def add_share(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        d = await _json(req, schemas.AddShare)
        share = await self.shares.add(d.name, d.bucket, d.path, list(d.peers), d.read_only)
        return 201, share

    async def remove_share(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        await self.shares.remove(p["name"])
        return 200, {"deleted": p["name"]}

    # ---- backup and restore --------------------------------------------------------------

    async def backup(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        # it holds every peer token: who took one is worth knowing. Recorded first, so the archive holds the
        # record too, and a restore of it (which replaces the trail with the archive's) keeps it
        await self.authz.audit.record("system.backup", self._actor(req))
        with self.store.spool() as f:
            await backup.write_backup(self.state, f)
            f.seek(0)
            return 200, f.read()

    async def restore(self, req: Request, p: dict[str, str]) -> tuple[int, Any]:
        assert req.body is not None
        with self.store.spool() as f:
            size = 0
            async for chunk in req.body:
                size += len(chunk)
                if size > MAX_ARCHIVE:
                    raise S3Error("EntityTooLarge", f"The archive is larger than {MAX_ARCHIVE} bytes.")
                f.write(chunk)
            f.seek(0)
            loop = asyncio.get_running_loop()
            verified = await loop.run_in_executor(None, backup.verify_backup, f, self.store.spool_dir)
        try:
            restored = await backup.apply_backup(self.state, verified)
        finally:
            verified.close()
        await self.peers.reindex()  # the archive may predate the token index
        log.info("restored %d records of %s from an archive", restored, SYSTEM_BUCKET)
        # after the restore, which replaced the trail with the archive's: this record says it happened
        await self.authz.audit.record("system.restore", self._actor(req), records=restored)
        return 200, {"restored": restored}


def _bucket_doc(b: Any) -> dict[str, Any]:
    total = b.used + b.mpu_used
    return {
        "name": b.name,
        "owner": b.owner,
        "created": b.created,
        "objects": b.objects,
        "used": b.used,  # every version's bytes, current and noncurrent: what the quota counts
        "current_used": b.used - b.nc_used,
        "noncurrent_used": b.nc_used,
        "noncurrent_versions": b.nc_objects,  # noncurrent versions and delete markers
        "versioning": b.versioning,
        "multipart_used": b.mpu_used,
        "quota": b.quota,
        "percent": round(100 * total / b.quota, 2) if b.quota else None,
    }


async def _json(req: Request, model: type[schemas.M]) -> schemas.M:
    """The body, read up to MAX_JSON and validated against `model` (400 naming the field otherwise)."""
    assert req.body is not None
    buf = bytearray()
    async for chunk in req.body:
        buf += chunk
        if len(buf) > MAX_JSON:
            raise S3Error("EntityTooLarge", f"The request document is larger than {MAX_JSON} bytes.")
    return schemas.parse(model, bytes(buf))


_ID = r"(?P<id>[A-Za-z0-9_.-]+)"
_NAME = r"(?P<name>[^/]+)"
_GROUP = r"(?P<group>[^/]+)"


def _rule(h: Handler) -> str:
    if h in (AdminApi.list_keys, AdminApi.create_key, AdminApi.revoke_key):
        return SELF
    return BUCKET if h in (AdminApi.bucket_access, AdminApi.add_grant, AdminApi.remove_grant) else ADMIN


ROUTES: list[tuple[str, re.Pattern[str], Handler, str]] = [
    (m, re.compile(path), h, _rule(h))
    for m, path, h in [
        ("GET", r"/api/peers", AdminApi.list_peers),
        ("POST", r"/api/peers", AdminApi.add_peer),
        ("POST", rf"/api/peers/{_ID}/revoke", AdminApi.revoke_peer),
        ("GET", r"/api/buckets", AdminApi.list_buckets),
        ("POST", r"/api/buckets", AdminApi.create_bucket),
        ("DELETE", rf"/api/buckets/{_NAME}", AdminApi.delete_bucket),
        ("PUT", rf"/api/buckets/{_NAME}/quota", AdminApi.set_quota),
        ("GET", rf"/api/buckets/{_NAME}/usage", AdminApi.bucket_usage),
        ("GET", r"/api/storage", AdminApi.storage_status),
        ("GET", r"/api/storage/verify", AdminApi.storage_verify),
        ("POST", r"/api/storage/scrub", AdminApi.storage_scrub),
        ("GET", r"/api/storage/sse", AdminApi.storage_sse),
        ("GET", r"/api/network", AdminApi.show_network),
        ("PUT", r"/api/network", AdminApi.set_network),
        ("GET", r"/api/shares", AdminApi.list_shares),
        ("POST", r"/api/shares", AdminApi.add_share),
        ("DELETE", rf"/api/shares/{_NAME}", AdminApi.remove_share),
        ("GET", rf"/api/buckets/{_NAME}/access", AdminApi.bucket_access),
        ("POST", rf"/api/buckets/{_NAME}/grants", AdminApi.add_grant),
        ("DELETE", rf"/api/buckets/{_NAME}/grants", AdminApi.remove_grant),
        ("GET", r"/api/groups", AdminApi.list_groups),
        ("POST", r"/api/groups", AdminApi.create_group),
        ("DELETE", rf"/api/groups/{_GROUP}", AdminApi.delete_group),
        ("POST", rf"/api/groups/{_GROUP}/members/{_ID}", AdminApi.add_member),
        ("DELETE", rf"/api/groups/{_GROUP}/members/{_ID}", AdminApi.remove_member),
        ("GET", r"/api/audit", AdminApi.audit),
        ("GET", r"/api/keys", AdminApi.list_keys),
        ("POST", r"/api/keys", AdminApi.create_key),
        ("DELETE", rf"/api/keys/{_ID}", AdminApi.revoke_key),
        ("GET", r"/api/system/backup", AdminApi.backup),
        ("POST", r"/api/system/restore", AdminApi.restore),
    ]
]


def _iso(t: float | None) -> str | None:
    return None if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _checked(req: Request) -> Bucket:
    """The bucket incarnation the BUCKET rule's check held for: a change goes to it, never to a bucket of the
    same name re-created since (which may be another peer's)."""
    if req.checked_bucket is None:
        raise S3Error("AccessDenied")  # `_tunnelmesh`: no access record, nobody manages it
    return req.checked_bucket
