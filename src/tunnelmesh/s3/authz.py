"""Who may do what: every request's asks, decided by the access evaluator over its bucket's view.

A route names the AWS action it asks (`Route.action`, `version_action` with `?versionId=`); some headers
ask more (`EXTRA_ASKS`); a copy also asks to read its source, DeleteObjects asks per key, ListBuckets
shows only what `visible` allows. Each ask is `access.evaluate.decide(view, who, ask)` (docs/access-control.md).

A bucket's view is compiled from records in `_tunnelmesh` (its access record, the groups, the network's
defaults) and kept per worker, keyed by those records' ETags and the bucket's (owner, created), which one
`Store.freshness` read per request returns: a change committed anywhere, on any worker or coordinator,
applies at the next request. No TTL: the scale-out cache rule (docs/scale-out.md, hazard 6).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunnelmesh.access.conditions import EXISTING_TAG, REQUEST_TAG, now_keys, object_tag_keys, reads_object_keys
from tunnelmesh.access.conditions import Context as AskContext
from tunnelmesh.access.cors import CorsRule
from tunnelmesh.access.evaluate import ANONYMOUS, Ask, Decision, Narrowed, Who, decide, visible
from tunnelmesh.access.policy import Known, MalformedPolicy, Statement
from tunnelmesh.access.view import SYSTEM_VIEW, BucketIdent, BucketView, build_view, compile_view
from tunnelmesh.coordinator.access_records import GROUPS_KEY, AccessRecords, bucket_key
from tunnelmesh.coordinator.audit import Actor, Audit
from tunnelmesh.coordinator.errors import CorruptRecord
from tunnelmesh.coordinator.network import KEY as NETWORK_KEY
from tunnelmesh.coordinator.network import access_defaults
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Principal, Request
from tunnelmesh.store.engine import SYSTEM_BUCKET
from tunnelmesh.store.errors import StoreError
from tunnelmesh.store.records import Bucket

if TYPE_CHECKING:
    from tunnelmesh.s3.router import Route

log = logging.getLogger("tunnelmesh.s3.authz")

BYPASS_HEADER = "x-amz-bypass-governance-retention"

# headers that ask an action of their own besides the route's (section 2.4): a PutObject with tags also
# needs PutObjectTagging, one with a lock PutObjectRetention / PutObjectLegalHold, as on AWS
EXTRA_ASKS: tuple[tuple[str, str], ...] = (
    ("x-amz-tagging", "s3:PutObjectTagging"),
    ("x-amz-object-lock-mode", "s3:PutObjectRetention"),
    ("x-amz-object-lock-retain-until-date", "s3:PutObjectRetention"),
    ("x-amz-object-lock-legal-hold", "s3:PutObjectLegalHold"),
)
# the routes whose request headers write an object's tags or lock
_WRITES_OBJECT = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload"})
# the routes that honour x-amz-bypass-governance-retention (DeleteObjects asks it per key)
_BYPASSES = frozenset({"DeleteObject", "PutObjectRetention"})
# the routes that look their object up before they return or change anything, and so can decide an ask whose
# conditions read the object's tags (s3:ExistingObjectTag/*) or a body's (PutObjectTagging's
# s3:RequestObjectTag*) once they know them (`Authorizer.settle`); elsewhere those keys are absent, as AWS
# supplies ExistingObjectTag to neither PutObject nor DeleteObject
DEFERS = frozenset(
    {
        "GetObject",
        "HeadObject",
        "GetObjectAttributes",
        "GetObjectTagging",
        "GetObjectAcl",
        "GetObjectRetention",
        "GetObjectLegalHold",
        "PutObjectTagging",
        "DeleteObjectTagging",
    }
)
_CAP = 10000  # cached views per worker: a bucket deleted leaves its entry until the cache is cleared
# the routes whose x-amz-acl / x-amz-grant-* headers BlockPublicAcls refuses when they make it public
_TAKES_ACL = frozenset({"PutObject", "CopyObject", "CreateMultipartUpload", "PutBucketAcl", "CreateBucket"})
PUBLIC_CANNED = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GROUPS = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)
PEERS_PREFIX = "peers/"  # coordinator/peers.py's records: a policy may name only peers that exist
BOOTSTRAP_ADMIN = "admin"  # server.py's ADMIN_ACCESS_KEY: a peer without a record


def actor(req: Request) -> Actor:
    """Who an S3 request's change is audited as."""
    assert req.principal is not None
    p = req.principal
    via = "console" if req.auth_type == "console" else "s3"
    return Actor("anonymous" if p.anonymous else p.peer_id, p.is_admin, via, p.key_id, req.request_id, req.client)


def public_acl_asked(req: Request) -> bool:
    """Whether the request's ACL headers would make its bucket or object public (what BlockPublicAcls
    refuses): a public canned ACL, or a grant to everyone or to every authenticated user."""
    if req.header("x-amz-acl").strip() in PUBLIC_CANNED:
        return True
    grants = (value for name, value in req.headers.items() if name.startswith("x-amz-grant-"))
    return any(group in value for value in grants for group in PUBLIC_GROUPS)


def bypass_asked(req: Request) -> bool:
    return req.header(BYPASS_HEADER).strip().lower() == "true"


@dataclass(frozen=True, slots=True)
class _Mesh:
    """The mesh-wide part of every view: the network's defaults and the groups."""

    default: str
    pab_default: bool
    groups: Mapping[str, frozenset[str]]  # group -> members
    names: frozenset[str]
    incarnations: Mapping[str, str]  # group -> its incarnation (a grant made for another one grants nothing)
    stamp: tuple[str | None, str | None] = (None, None)  # the ETags of the records it was read from


@dataclass(frozen=True, slots=True)
class Deferred:
    """An ask the edge left to the operation: its view's statements for the action read the object's tags."""

    view: BucketView
    mesh: _Mesh
    action: str
    key: str
    may_list: bool | None  # GetObject/HeadObject: whether the caller may list the key (the missing-key rule)


@dataclass(frozen=True, slots=True)
class _Entry:
    stamp: tuple[Any, ...]  # the ETags and bucket identity the view was compiled from
    view: BucketView


class Authorizer:
    """One per worker, shared by the S3 edge and (later) the admin API."""

    def __init__(self, state: SystemState) -> None:
        self.state = state
        self.records = AccessRecords(state)
        self.audit = Audit(state)  # asgi.py names the node
        self._mesh: _Mesh | None = None
        self._views: OrderedDict[str, _Entry] = OrderedDict()  # least recently used first
        # statements narrowed per (view, caller, action, request keys): under a large policy a repeated ask
        # checks only resources (access.evaluate.decide)
        self._memo: dict[Any, Narrowed] = {}

    # ---- the edge's questions -----------------------------------------------------------------------

    async def authorize(self, req: Request, route: Route) -> Bucket | None:
        """Decide the route's asks for `req` (authenticated, routed, with a bucket); raise AccessDenied or
        NoSuchBucket. Returns the bucket's row as the same read found it (None: CreateBucket, `_tunnelmesh`)."""
        bucket = req.bucket
        if route.name == "CreateBucket":
            # any peer may create a bucket it then owns (nobody owns what anonymous would create);
            # `_tunnelmesh` is the system rule's
            if bucket == SYSTEM_BUCKET:
                self._require(SYSTEM_VIEW, req, "s3:CreateBucket", None)
            if req.principal is not None and req.principal.anonymous:
                req.authz = "anonymous"
                raise S3Error("AccessDenied")
            if req.principal is not None and req.principal.scope is not None:
                # a scoped key acts within its buckets only: a new bucket (its peer's, on its quota) is outside
                req.authz = "key-scope"
                raise S3Error("AccessDenied")
            # the bucket does not exist yet: the mesh's default block is the one it would get
            if public_acl_asked(req) and await self.pab_default():
                req.authz = "deny:block-public-acls"
                raise S3Error("AccessDenied")
            return None
        if bucket == SYSTEM_BUCKET:
            view, row, mesh = SYSTEM_VIEW, None, _NO_MESH
        elif req.principal is None:
            return None  # a form upload: nothing is looked up for it before its signature held (post_object)
        else:
            view, row, mesh = await self._view(bucket)
        req.cors = view.cors  # the edge's CORS headers, errors included, come from this same view
        if row is not None:
            req.bucket_owner = row.owner
        action = route.action
        if route.version_action is not None and "versionId" in req.query:
            action = route.version_action
        if action is None and bucket == SYSTEM_BUCKET:
            action = "s3:DeleteObject"  # nobody deletes or writes there: refused whole, never key by key
        if action is None or req.principal is None:
            return row  # the operation asks (per key; a form once its signature held)
        key = req.key or None
        if key is not None and action in view.object_key_actions and route.name in DEFERS:
            # decided once the operation knows the tags (`settle`), before it returns or changes anything;
            # none of these routes asks EXTRA_ASKS, a bypass or an ACL
            may_list = None
            if route.name in ("GetObject", "HeadObject"):
                may_list = self._may_list(view, mesh, req, key)
            req.deferred = Deferred(view, mesh, action, key, may_list)
            req.authz = "deferred"
            return row
        decision = self.decide(view, mesh, req, action, key)
        # AWS: only a caller who may list the key learns that it is missing (404); one who may not gets 403
        # for a missing key whether or not it may read it, and one who may list but not read learns nothing
        # of a key that is there
        if route.name in ("GetObject", "HeadObject") and key is not None:
            if decision.allowed:
                req.list_rule = (view, mesh)  # asked only if the key turns out missing
            elif self._may_list(view, mesh, req, key):
                req.hide_existing = True
                req.authz = decision.why
                return row
        self._raise_unless(decision, req)
        if route.name in _WRITES_OBJECT:
            for header, extra in EXTRA_ASKS:
                if header in req.headers:
                    self._raise_unless(self.decide(view, mesh, req, extra, key), req)
        if route.name in _BYPASSES and bypass_asked(req):
            self._raise_unless(self.decide(view, mesh, req, "s3:BypassGovernanceRetention", key), req)
        if route.name in _TAKES_ACL and view.pab is not None and view.pab.block_public_acls and public_acl_asked(req):
            # before the handler's AccessControlListNotSupported: the block answers first, as on AWS
            req.authz = "deny:block-public-acls"
            raise S3Error("AccessDenied")
        return row

    async def require(self, req: Request, action: str, bucket: str, key: str | None) -> Bucket | None:
        """One more ask of a request, on another bucket (a copy's source) or at the operation's own point;
        returns the bucket's row as the same read found it (None: `_tunnelmesh`)."""
        decision, row = await self.ask(req, action, bucket, key)
        self._raise_unless(decision, req)
        return row

    async def require_source(self, req: Request, action: str, bucket: str, key: str, version: str | None) -> None:
        """A copy's read of its source (GetObject or GetObjectVersion on that bucket's view). When the view's
        statements for it read the source's tags (s3:ExistingObjectTag/*), those tags are read first: one more
        keyed read, for such views only; a Deny on a tag must not be passed round by copying the object."""
        view, _, mesh = await self._view_of(bucket)
        extra = None
        if action in view.object_key_actions:
            tags = await self._object_tags(bucket, key, version)
            extra = object_tag_keys(tags, EXISTING_TAG, view.needed_keys)
        self._raise_unless(self.decide(view, mesh, req, action, key, extra, bucket=bucket), req)

    async def _object_tags(self, bucket: str, key: str, version: str | None) -> Mapping[str, str] | None:
        """The tags of the object (the version) a request names; None if there is none (or a delete marker)."""
        try:
            if version is None:
                obj = await self.state.store.get_object(bucket, key)
            else:
                obj = await self.state.store.get_version(bucket, key, version)
        except StoreError:
            return None  # no such version: the operation answers that, once this ask is decided
        return None if obj is None or obj.marker else (obj.tags or {})

    async def ask(
        self, req: Request, action: str, bucket: str, key: str | None = None
    ) -> tuple[Decision, Bucket | None]:
        """One ask of `bucket`'s current view (the admin API's too); NoSuchBucket if it does not exist."""
        view, row, mesh = await self._view_of(bucket)
        return self.decide(view, mesh, req, action, key, bucket=bucket), row

    async def allowed_keys(self, req: Request, asks: Sequence[tuple[Sequence[str], str]]) -> list[bool]:
        """For each (actions, key) of the request's own bucket, whether every action is allowed on the key
        (DeleteObjects asks per key); one view for all of them."""
        view, _, mesh = await self._view_of(req.bucket)
        return [all(self.decide(view, mesh, req, a, key).allowed for a in actions) for actions, key in asks]

    async def cors_rules(self, bucket: str) -> tuple[CorsRule, ...] | None:
        """The bucket's CORS rules for a preflight, which carries no credentials (None: no configuration);
        NoSuchBucket if it does not exist. `_tunnelmesh` has none."""
        if bucket == SYSTEM_BUCKET:
            return None
        return (await self._view(bucket))[0].cors

    async def visible_buckets(self, principal: Principal, buckets: Sequence[Bucket]) -> list[Bucket]:
        """The buckets ListBuckets shows this caller (conditions are not evaluated: a conditional grant shows it).
        Anonymous callers never list buckets (no statement can grant ListAllMyBuckets to them)."""
        if principal.anonymous:
            raise S3Error("AccessDenied")
        if principal.is_admin:
            return list(buckets)
        mesh = await self._current_mesh()
        # the records that exist, with their ETags, from one listing: a read per bucket that has one, not per
        # bucket (most have none, and a bucket without a record is decided without compiling anything)
        etags = await self._record_etags()
        who = self._who(principal, mesh)
        shown = []
        for b in buckets:
            if b.name == SYSTEM_BUCKET:
                continue
            etag = etags.get(b.name)
            if etag is None:
                view = build_view(b.name, BucketIdent(b.owner, b.created), (), mesh.default, None, False)
            else:
                view = await self._compiled(b.name, b, etag, mesh)
            if visible(view, who):
                shown.append(b)
        return shown

    async def bucket_view(self, bucket: str) -> tuple[BucketView, Bucket, Mapping[str, frozenset[str]]]:
        """For the admin API: the bucket's current view, its row and the mesh's groups (group -> members),
        from the same records and cache as the S3 edge's; NoSuchBucket if the bucket does not exist."""
        if bucket == SYSTEM_BUCKET:
            return SYSTEM_VIEW, await self.state.store.require_bucket(bucket), {}
        view, row, mesh = await self._view(bucket)
        return view, row, mesh.groups

    async def view(self, bucket: str) -> BucketView:
        """The bucket's current view (for the operations that manage or report what it holds)."""
        return (await self._view_of(bucket))[0]

    async def pab_default(self) -> bool:
        """Whether the mesh's default public access block is on (a bucket whose record never set one)."""
        return (await self._current_mesh()).pab_default

    async def known(self) -> Known:
        """The peers and groups that exist now: what a policy put may name (section 2.1). The bootstrap admin
        has no record but is a peer all the same."""
        keys = await self.state.keys(PEERS_PREFIX)
        peers = {k[len(PEERS_PREFIX) : -len(".json")] for k in keys if k.endswith(".json")}
        groups = await self.records.groups()
        return Known(frozenset(peers | {BOOTSTRAP_ADMIN}), frozenset(groups))

    def settle(
        self, req: Request, existing: Mapping[str, str] | None, request: Mapping[str, str] | None = None
    ) -> None:
        """Decide the ask the edge deferred (`req.deferred`; nothing to do without one) now that the operation
        knows the object's tags (`existing`; None: no such object or version) and, for PutObjectTagging, the
        tags its body asks for; raise AccessDenied if refused. A GET/HEAD of a missing key gets the edge's
        missing-key rule (its flags, applied by `lookup_object`) instead."""
        d = req.deferred
        if d is None:
            return
        req.deferred = None
        if request is not None:
            req.request_tags = dict(request)
        extra = object_tag_keys(existing, EXISTING_TAG, d.view.needed_keys)
        decision = self.decide(d.view, d.mesh, req, d.action, d.key, extra)
        if existing is None and d.may_list is not None:
            if not decision.allowed and d.may_list:
                req.hide_existing = True  # missing, and the caller may list it: NoSuchKey
                req.authz = decision.why
                return
            if decision.allowed and not d.may_list:
                req.authz = "deny:missing-key-unlisted"
                raise S3Error("AccessDenied")
        self._raise_unless(decision, req)

    def may_list_missing(self, req: Request) -> bool:
        """Whether an allowed GET/HEAD of a key that turned out missing may say so (404): the caller may list
        it (AWS; else 403)."""
        if req.list_rule is None:
            return True
        view, mesh = req.list_rule
        return self._may_list(view, mesh, req, req.key)

    def _may_list(self, view: BucketView, mesh: _Mesh, req: Request, key: str) -> bool:
        return self.decide(view, mesh, req, "s3:ListBucket", None, {"s3:prefix": (key,)}).allowed

    # ---- deciding ------------------------------------------------------------------------------------

    def decide(
        self,
        view: BucketView,
        mesh: _Mesh,
        req: Request,
        action: str,
        key: str | None,
        extra: AskContext | None = None,
        bucket: str | None = None,
    ) -> Decision:
        """One ask, with the groups of the same mesh records the view was compiled from."""
        assert req.principal is not None
        who = self._who(req.principal, mesh)
        needed = view.needed_keys if who.scope is None else view.needed_keys | _keys_read(who.scope)
        ctx = request_context(req, needed, extra)
        return decide(view, who, Ask(action, bucket or req.bucket, key, ctx), self._memo)

    def _raise_unless(self, decision: Decision, req: Request) -> None:
        req.authz = decision.why
        if not decision.allowed:
            # the system bucket's refusal names it: a client told "no" there learns nothing it did not send
            if decision.why == "system":
                raise S3Error("AccessDenied", BucketName=SYSTEM_BUCKET)
            raise S3Error("AccessDenied")

    def _require(self, view: BucketView, req: Request, action: str, key: str | None) -> None:
        self._raise_unless(self.decide(view, _NO_MESH, req, action, key), req)

    @staticmethod
    def _who(principal: Principal, mesh: _Mesh) -> Who:
        if principal.anonymous:
            return ANONYMOUS
        groups = frozenset(g for g, members in mesh.groups.items() if principal.peer_id in members)
        if principal.key_id is not None:
            return Who("key", principal.peer_id, False, groups, principal.key_id, principal.scope)
        return Who("peer", principal.peer_id, principal.is_admin, groups)

    # ---- views and their records ---------------------------------------------------------------------

    async def _view_of(self, bucket: str) -> tuple[BucketView, Bucket | None, _Mesh]:
        if bucket == SYSTEM_BUCKET:
            return SYSTEM_VIEW, None, _NO_MESH
        return await self._view(bucket)

    async def _view(self, bucket: str) -> tuple[BucketView, Bucket, _Mesh]:
        """The bucket's current view, row and mesh, from one freshness read; NoSuchBucket if it does not exist."""
        rkey = bucket_key(bucket)
        fresh = await self.state.store.freshness([rkey, GROUPS_KEY, NETWORK_KEY], bucket)
        if fresh.bucket is None:
            raise S3Error("NoSuchBucket", BucketName=bucket)
        mesh = await self._mesh_of(fresh.etags.get(GROUPS_KEY), fresh.etags.get(NETWORK_KEY))
        return await self._compiled(bucket, fresh.bucket, fresh.etags.get(rkey), mesh), fresh.bucket, mesh

    async def _current_mesh(self) -> _Mesh:
        fresh = await self.state.store.freshness([GROUPS_KEY, NETWORK_KEY], None)
        return await self._mesh_of(fresh.etags.get(GROUPS_KEY), fresh.etags.get(NETWORK_KEY))

    async def _record_etags(self) -> dict[str, str]:
        """Bucket name -> the ETag of its access record, for every record there is (a listing, paged)."""
        prefix, out, after = bucket_key(""), {}, None
        while True:
            page = await self.state.store.list_objects(SYSTEM_BUCKET, prefix[: -len(".json")], "", after, False, 1000)
            for o in page.objects:
                if o.key.endswith(".json"):
                    out[o.key[len(prefix) - len(".json") : -len(".json")]] = o.etag
            if not page.truncated:
                return out
            after = page.last

    async def _compiled(self, bucket: str, row: Bucket, etag: str | None, mesh: _Mesh) -> BucketView:
        stamp = (etag, mesh.stamp, row.owner, row.created)
        entry = self._views.get(bucket)
        if entry is not None and entry.stamp == stamp:
            self._views.move_to_end(bucket)
            return entry.view
        ident = BucketIdent(row.owner, row.created)
        record: Any = None
        if etag is not None:
            found = await self._read(bucket_key(bucket))
            if found is not None:
                read_etag, record = found
                stamp = (read_etag, *stamp[1:])  # cached under the version actually read
        try:
            view = compile_view(
                record if isinstance(record, dict) else None,
                ident,
                bucket,
                mesh.names,
                mesh.default,
                mesh.pab_default,
                mesh.incarnations,
            )
        except (MalformedPolicy, ValueError, KeyError, TypeError) as e:
            # a record this coordinator cannot read (damaged, or restored from elsewhere) must not open the
            # bucket: nothing but the owner and admins, who can put it right
            log.error("access record of bucket %s is unusable, only its owner and admins may act: %s", bucket, e)
            view = build_view(bucket, ident, (), "none", None, False)
        self._views[bucket] = _Entry(stamp, view)
        self._views.move_to_end(bucket)
        if len(self._views) > _CAP:
            self._views.popitem(last=False)
        return view

    async def _mesh_of(self, groups_etag: str | None, network_etag: str | None) -> _Mesh:
        if self._mesh is not None and self._mesh.stamp == (groups_etag, network_etag):
            return self._mesh
        network = await self._read(NETWORK_KEY) if network_etag is not None else None
        groups = await self._read(GROUPS_KEY) if groups_etag is not None else None
        default, pab_default = access_defaults(network[1] if network else None)
        members, incarnations = _groups(groups[1] if groups else None)
        # kept under the ETags of the versions read, never those the freshness read saw: a record changed in
        # between (even back to an earlier content) is read again at the next request, never cached wrongly
        stamp = (groups[0] if groups else None, network[0] if network else None)
        mesh = _Mesh(default, pab_default, members, frozenset(members), incarnations, stamp)
        self._mesh = mesh
        return mesh

    async def _read(self, key: str) -> tuple[str, Any] | None:
        try:
            return await self.state.get_versioned(key)
        except CorruptRecord as e:
            log.error("%s", e)
            return None


# the mesh of `_tunnelmesh`'s fixed view (no default, no groups: the system rule needs neither)
_NO_MESH = _Mesh("none", True, {}, frozenset(), {})


def _keys_read(scope: tuple[Statement, ...]) -> frozenset[str]:
    """The condition keys a scoped key's statements read (a prefix-limited scope reads s3:prefix)."""
    return frozenset(c.key for st in scope for c in st.conditions)


def _groups(doc: Any) -> tuple[dict[str, frozenset[str]], dict[str, str]]:
    """Group -> members, and group -> incarnation, of `access/groups.json`, tolerant of a malformed record (a
    member list that is not a list of strings is an empty group: it then grants nobody anything)."""
    raw = doc.get("groups") if isinstance(doc, dict) else None
    if not isinstance(raw, dict):
        return {}, {}
    members: dict[str, frozenset[str]] = {}
    incarnations: dict[str, str] = {}
    for name, group in raw.items():
        listed = group.get("members") if isinstance(group, dict) else None
        ok = isinstance(listed, list) and all(isinstance(m, str) for m in listed)
        members[str(name)] = frozenset(listed) if ok and listed is not None else frozenset()
        incarnations[str(name)] = str(group.get("incarnation", "")) if isinstance(group, dict) else ""
    return members, incarnations


def request_context(req: Request, needed: Iterable[str], extra: AskContext | None = None) -> AskContext:
    """The condition keys a view's statements read, from the request (lower-case names, section 2.2);
    only those: most views read none, which keeps the common path free of this work."""
    ctx: dict[str, tuple[str, ...]] = dict(extra or {})
    if "aws:currenttime" in needed or "aws:epochtime" in needed:
        ctx.update(now_keys(time.time()))
    if needed and reads_object_keys(needed):  # most views read no key at all: not even this scan
        tags = req.request_tags if req.request_tags is not None else _header_tags(req)
        ctx.update(object_tag_keys(tags, REQUEST_TAG, needed))
    for name in needed:
        if name in ctx:
            continue
        value = _KEYS.get(name)
        if value is not None:
            got = value(req)
            if got is not None:
                ctx[name] = (got,)
    return ctx


def _header_tags(req: Request) -> Mapping[str, str] | None:
    """The tags x-amz-tagging writes (s3:RequestObjectTag*): on the routes that write an object, a copy only
    when it replaces its source's tags; None without them."""
    if req.operation not in _WRITES_OBJECT or "x-amz-tagging" not in req.headers:
        return None
    if req.operation == "CopyObject" and req.header("x-amz-tagging-directive", "COPY").strip().upper() != "REPLACE":
        return None
    # the operation's own parser (imported here: s3/ops imports this module); a malformed header is its 400
    from tunnelmesh.s3.ops.tags import parse_query

    return parse_query(req.headers["x-amz-tagging"])


def _listing_param(name: str) -> Any:
    def get(req: Request) -> str | None:
        return req.query.get(name) if req.operation.startswith(("ListObject", "ListMultipart")) else None

    return get


def _header(name: str) -> Any:
    return lambda req: req.headers.get(name)


_KEYS: dict[str, Any] = {
    "aws:sourceip": lambda req: req.client or None,
    "aws:securetransport": lambda req: "false",  # both listeners speak plain HTTP on the mesh
    "aws:referer": _header("referer"),
    "aws:useragent": _header("user-agent"),
    "s3:prefix": _listing_param("prefix"),  # absent without one: HeadBucket and a whole listing
    "s3:delimiter": _listing_param("delimiter"),
    "s3:max-keys": _listing_param("max-keys"),
    "s3:x-amz-copy-source": _header("x-amz-copy-source"),
    "s3:x-amz-metadata-directive": _header("x-amz-metadata-directive"),
    "s3:x-amz-server-side-encryption": _header("x-amz-server-side-encryption"),
    "s3:x-amz-acl": _header("x-amz-acl"),
    "s3:versionid": lambda req: req.query.get("versionId"),
    "s3:authtype": lambda req: req.auth_type or None,
    "s3:signatureversion": lambda req: req.signature_version or None,
}
