"""`bench/run.py --access-policy N`: the access set-up the small-object workloads then run under.

The cost target of docs/access-control.md section 3: a 20-statement bucket policy within 5% of the server
CPU of no policy. Both sides take the same path through the evaluator, as a peer that neither owns the
bucket nor is a mesh admin, with `default_bucket_access none` (so nothing but the bucket's own statements
lets it in); they differ only in where its right comes from:

- N = 0: a grant (`bucket grant B --peer ID --role write`), no policy;
- N > 0: a bucket policy put by the owner with N statements: one Allow that matches (GetObject, PutObject
  on B/* for the bench peer) and N-1 that do not, all on the same two actions so that every one is indexed
  under what each request asks, and the matching Allow last (the evaluator stops at the first Allow that
  applies), so that every one is looked at: the worst case (statements on other actions cost nothing). They are
  one Deny of PutObject/DeleteObject under another prefix for the bench peer, then in turn Allows for other
  real peers, Allows for the bench peer under other prefixes, and Allows for the bench peer conditioned on
  an aws:SourceIp that the loopback never has. No principal is "*", so the policy is not public and the
  public access block has nothing to refuse.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

MAX_POLICY_BYTES = 20_480  # the server refuses more (AWS's limit, without insignificant whitespace)
OTHER_PEERS = 3


def _statement(sid: str, effect: str, peer: str, actions: list[str], resource: str, **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": effect, "Principal": {"AWS": peer}, "Action": actions, "Resource": resource} | extra


def bench_policy(n: int, bucket: str, bench_peer: str, others: list[str]) -> str:
    """A policy of `n` (>= 1) statements of which only the last lets `bench_peer` in (see the module doc)."""
    rw = ["s3:GetObject", "s3:PutObject"]
    objects = f"arn:aws:s3:::{bucket}/*"
    statements: list[dict[str, Any]] = []
    if n >= 2:
        statements.append(
            _statement(
                "DenyLocked",
                "Deny",
                bench_peer,
                ["s3:PutObject", "s3:DeleteObject"],
                f"arn:aws:s3:::{bucket}/locked/*",
                Condition={"NotIpAddress": {"aws:SourceIp": "10.99.0.0/16"}},
            )
        )
    for i in range(n - 1 - len(statements)):
        kind = i % 3
        if kind == 0:  # another principal: the principal check refuses it
            statements.append(_statement(f"Other{i}", "Allow", others[i % len(others)], rw, objects))
        elif kind == 1:  # the bench peer, elsewhere in the bucket: the resource check refuses it
            statements.append(_statement(f"Prefix{i}", "Allow", bench_peer, rw, f"arn:aws:s3:::{bucket}/team-{i}/*"))
        else:  # the bench peer, everywhere, but only from an address it does not have: the condition refuses it
            ip = {"IpAddress": {"aws:SourceIp": f"10.{i % 256}.0.0/16"}}
            statements.append(_statement(f"Net{i}", "Allow", bench_peer, rw, objects, Condition=ip))
    # last: the evaluator stops at the first Allow that applies, so every other one is looked at first
    statements.append(_statement("BenchAllow", "Allow", bench_peer, rw, objects))
    text = json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
    if len(text) > MAX_POLICY_BYTES:
        raise SystemExit(f"--access-policy {n}: the policy is {len(text)} bytes, over the {MAX_POLICY_BYTES} limit")
    return text


def _call(base: str, token: str, method: str, path: str, body: bytes = b"", ctype: str = "") -> tuple[int, bytes]:
    """One request with the token as Bearer credential: (status, body); HTTP errors are returned, not raised."""
    headers = {"Authorization": f"Bearer {token}"} | ({"Content-Type": ctype} if ctype else {})
    req = urllib.request.Request(base + path, data=body if method in ("PUT", "POST") else None, method=method)
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _ok(what: str, status: int, body: bytes) -> bytes:
    if status >= 300:
        raise SystemExit(f"--access-policy set-up: {what} answered {status}: {body[:300]!r}")
    return body


def _admin(base: str, admin_token: str, method: str, path: str, doc: dict[str, Any]) -> dict[str, Any]:
    body = _ok(
        f"{method} /api/{path}",
        *_call(base, admin_token, method, f"/api/{path}", json.dumps(doc).encode(), "application/json"),
    )
    out: dict[str, Any] = json.loads(body)
    return out


@dataclass(frozen=True)
class AccessSetup:
    peer_id: str  # the bench peer: signs the workloads (its access key is its id, its secret its token)
    token: str
    owner: str
    statements: int
    policy_bytes: int  # 0: no policy (a grant)

    def describe(self) -> str:
        if not self.statements:
            return "access: no policy, a write grant to the bench peer (non-owner, non-admin; default access none)"
        return (
            f"access: a bucket policy of {self.statements} statements ({self.policy_bytes} bytes), one matching "
            "Allow for the bench peer (non-owner, non-admin; default access none)"
        )


def prepare(base: str, s3_prefix: str, admin_token: str, bucket: str, n: int) -> AccessSetup:
    """Peers, the mesh default, the bucket (made by its owner) and the bench peer's right to it: a grant for
    n = 0, a policy of n statements otherwise. Checks that the bench peer is refused before and let in after."""
    doc = json.dumps({"key": "default_bucket_access", "value": "none"}).encode()
    status, body = _call(base, admin_token, "PUT", "/api/network", doc, "application/json")
    _ok("PUT /api/network default_bucket_access none", status, body)
    peers = [_admin(base, admin_token, "POST", "peers", {"name": name}) for name in ("bench-owner", "bench-peer")]
    others = [_admin(base, admin_token, "POST", "peers", {"name": f"bench-other-{i}"}) for i in range(OTHER_PEERS)]
    owner, peer = peers
    path = f"{s3_prefix}/{bucket}"
    _ok(f"CreateBucket {bucket} by its owner", *_call(base, owner["token"], "PUT", path))
    probe = f"{path}/access-probe"
    status, _ = _call(base, peer["token"], "PUT", probe, b"x")
    if status != 403:  # else the bench would not measure the non-owner path it claims to
        raise SystemExit(f"--access-policy set-up: the bench peer's PUT before any grant answered {status}, not 403")
    policy = ""
    if n == 0:
        _admin(base, admin_token, "POST", f"buckets/{bucket}/grants", {"peer": peer["peer_id"], "role": "write"})
    else:
        policy = bench_policy(n, bucket, peer["peer_id"], [o["peer_id"] for o in others])
        _ok("PutBucketPolicy by the owner", *_call(base, owner["token"], "PUT", f"{path}?policy", policy.encode()))
    for method in ("PUT", "GET", "HEAD"):
        _ok(f"the bench peer's {method} of {probe}", *_call(base, peer["token"], method, probe, b"x"))
    if n >= 2:  # the policy is what decides: its Deny refuses the bench peer under locked/
        status, _ = _call(base, peer["token"], "PUT", f"{path}/locked/access-probe", b"x")
        if status != 403:
            raise SystemExit(f"--access-policy set-up: the bench peer's PUT under locked/ answered {status}, not 403")
    return AccessSetup(peer["peer_id"], peer["token"], owner["peer_id"], n, len(policy))
