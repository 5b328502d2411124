"""`bucket access B`: what each peer, each group and anyone may do in a bucket, decided by the real evaluator
over the bucket's real view (so the report cannot disagree with the S3 edge), at the bucket root and at each
granted prefix, each with the reason the evaluator gives (`Decision.why`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tunnelmesh.access.actions import ACTIONS, ROLES, Kind
from tunnelmesh.access.evaluate import ANONYMOUS, Ask, Who, decide
from tunnelmesh.access.grants import ALWAYS, LISTINGS
from tunnelmesh.access.policy import BUILTIN_GROUPS
from tunnelmesh.access.view import BucketView
from tunnelmesh.coordinator.peers import Peer

ORDER = ("read", "write", "admin")
# the action that tells each role apart from the one below it: its reason is the one shown
KEY_ACTION = {"read": "s3:GetObject", "write": "s3:PutObject", "admin": "s3:PutBucketPolicy"}


def _asks(role: str, bucket: str, prefix: str) -> list[Ask]:
    """The role's actions as asks at `prefix` ("" = the bucket root). At a prefix only what a prefix grant
    can give: object actions under it, listings of it, the bucket's location."""
    asks = []
    for action in sorted(ROLES[role]):
        if ACTIONS[action] is Kind.OBJECT:
            asks.append(Ask(action, bucket, prefix))
        elif action in LISTINGS:
            asks.append(Ask(action, bucket, None, {"s3:prefix": (prefix,)} if prefix else {}))
        elif not prefix or action in ALWAYS:
            asks.append(Ask(action, bucket, None))
    return asks


def rights(view: BucketView, who: Who, prefix: str) -> dict[str, Any]:
    best: str | None = None
    for role in ORDER:
        if not all(decide(view, who, ask).allowed for ask in _asks(role, view.bucket, prefix)):
            break
        best = role
    action = KEY_ACTION[best or "read"]
    why = decide(view, who, Ask(action, view.bucket, None if ACTIONS[action] is Kind.BUCKET else prefix))
    return {"prefix": prefix, "role": best or "none", "why": why.why}


def report(
    view: BucketView, grants: Iterable[Mapping[str, Any]], peers: Iterable[Peer], groups: Mapping[str, frozenset[str]]
) -> dict[str, Any]:
    grants = list(grants)
    prefixes = [""] + sorted({str(g.get("prefix", "")) for g in grants} - {""})
    principals: list[dict[str, Any]] = []
    for peer in peers:
        who = Who("peer", peer.id, peer.role == "admin", frozenset(g for g, m in groups.items() if peer.id in m))
        principals.append({"kind": "peer", "name": peer.id, "label": peer.name, "rights": _all(view, who, prefixes)})
    for group in sorted(set(groups) | BUILTIN_GROUPS):
        # a member of this group with no right of its own (no peer id any statement could name)
        who = Who("peer", f"group:{group}", False, frozenset({group}))
        principals.append({"kind": "group", "name": group, "label": "", "rights": _all(view, who, prefixes)})
    principals.append({"kind": "anyone", "name": "*", "label": "anonymous", "rights": _all(view, ANONYMOUS, prefixes)})
    return {
        "bucket": view.bucket,
        "owner": view.owner,
        "default_bucket_access": view.default_name,
        "grants": grants,
        "principals": principals,
    }


def _all(view: BucketView, who: Who, prefixes: list[str]) -> list[dict[str, Any]]:
    return [rights(view, who, p) for p in prefixes]
