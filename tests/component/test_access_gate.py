"""The rolling-upgrade gate on access changes (docs/access-control.md section 9): while a node of an older
release may still serve requests, it would ignore a bucket policy, a public access block or CORS rules,
so a change of them is refused (503) rather than in force on one node only."""

from __future__ import annotations

import base64
import hashlib
import json

from .inprocess import InProcessS3
from .test_tagging import code


def _md5(body: bytes) -> dict[str, str]:
    return {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}


POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::bkt/*"}
        ],
    }
).encode()
BLOCK = (
    b"<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls><IgnorePublicAcls>true</IgnorePublicAcls>"
    b"<BlockPublicPolicy>true</BlockPublicPolicy><RestrictPublicBuckets>true</RestrictPublicBuckets>"
    b"</PublicAccessBlockConfiguration>"
)
CORS = (
    b"<CORSConfiguration><CORSRule><AllowedOrigin>https://app.mesh</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
    b"</CORSRule></CORSConfiguration>"
)
CHANGES = {
    "PutBucketPolicy": ("policy", POLICY),
    "PutPublicAccessBlock": ("publicAccessBlock", BLOCK),
    "PutBucketCors": ("cors", CORS),
}


def test_access_changes_wait_while_a_node_of_an_older_release_may_serve(s3: InProcessS3) -> None:
    s3("PUT", "/bkt")
    meta = s3.store.meta
    run = s3.loop.run_until_complete
    run(meta.write(lambda tx: tx.claim_node("old-node", "dir-1", 1.0)))
    run(meta.write(lambda tx: tx.beat("old-node", "there", 1.0, 5.0)))
    for name, (query, body) in CHANGES.items():  # it beats this code's release: not older
        assert s3("PUT", "/bkt", query, body=body, headers=_md5(body)).status in (200, 204), name
    meta.release = meta.release + 1  # type: ignore[misc]
    for name, (query, body) in CHANGES.items():
        before = s3("GET", "/bkt", query).body
        changed = body.replace(b"app.mesh", b"other.mesh")
        r = s3("PUT", "/bkt", query, body=changed, headers=_md5(changed))
        assert (r.status, code(r.body)) == (503, "ServiceUnavailable"), name
        assert b"old-node" in r.body, name
        assert s3("GET", "/bkt", query).body == before, name  # nothing changed


def test_the_gate_never_waits_on_its_own_node_before_its_first_beat(s3: InProcessS3) -> None:
    """Between a node's claim and its first beat its row has no release: its own requests must not be refused
    as if an older node were serving (a start-up race that made access changes 503 at random)."""
    s3("PUT", "/bkt")
    meta = s3.store.meta
    run = s3.loop.run_until_complete
    s3.store.node = "this-node"
    for node in ("this-node", "other-node"):
        run(meta.write(lambda tx, n=node: tx.claim_node(n, f"dir-{n}", 1.0)))
        run(meta.write(lambda tx, n=node: tx.claim_writer_tag(f"tag-{n}", n)))  # it may have written blobs
    body = POLICY
    r = s3("PUT", "/bkt", "policy", body=body, headers=_md5(body))
    assert (r.status, code(r.body)) == (503, "ServiceUnavailable") and b"other-node" in r.body
    run(meta.write(lambda tx: tx.beat("other-node", "there", 1.0, 5.0)))  # it runs this release after all
    assert s3("PUT", "/bkt", "policy", body=body, headers=_md5(body)).status == 204
