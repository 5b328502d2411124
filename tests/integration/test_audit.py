"""The audit trail (docs/access-control.md section 6) of the changes step 3 wires: grants, ungrants, group
changes, the access defaults of `network set`, peer add and revoke. Each change writes one record in
`_tunnelmesh/audit/<day>/<ms>-<node>-<hex>.json` with the fields of section 6, read back through
`tunnelmesh audit` (and its filters) and straight from the system bucket; no token appears in any record or
in the coordinator's log."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Coordinator, start_coordinator

NODE = "audit-node"
FIELDS = {"at", "event", "actor", "actor_key", "admin", "via", "node", "request_id", "source_ip", "bucket", "detail"}


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coordinator]:
    coord = start_coordinator(tmp_path_factory.mktemp("audit"), extra_yaml=f"  node_id: {NODE}\n")
    yield coord
    coord.stop()


def ok(c: Coordinator, *args: str, token: str | None = None) -> str:
    r = c.cli(*args, token=token, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def records(c: Coordinator, *filters: str) -> list[dict[str, Any]]:
    return json.loads(ok(c, "audit", *filters, "--json"))["records"]


def stored(c: Coordinator) -> list[tuple[str, bytes]]:
    """Every audit object as stored, read by the mesh admin through S3 (the system rule lets admins read)."""
    s3 = c.client()
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket="_tunnelmesh", Prefix="audit/"):
        for o in page.get("Contents", []):
            out.append((o["Key"], s3.get_object(Bucket="_tunnelmesh", Key=o["Key"])["Body"].read()))
    return out


def test_each_change_has_its_record(c: Coordinator) -> None:
    started = time.time()
    owner = json.loads(ok(c, "peer", "add", "owner", "--json"))
    bob = json.loads(ok(c, "peer", "add", "bob", "--json"))
    ok(c, "network", "set", "default_bucket_access", "none")
    ok(c, "network", "set", "default_public_access_block", "on")
    ok(c, "network", "set", "mesh_name", "not-an-access-change")
    bucket = f"a-{uuid.uuid4().hex[:16]}"
    s3 = c.client()
    s3.create_bucket(Bucket=bucket)
    ok(c, "group", "create", "ci")
    ok(c, "group", "add", "ci", bob["peer_id"])
    ok(c, "bucket", "grant", bucket, "--peer", bob["peer_id"], "--role", "write", "--prefix", "team/")
    ok(c, "bucket", "grant", bucket, "--peer", bob["peer_id"], "--role", "write", "--prefix", "team/")  # no change
    ok(c, "bucket", "grant", bucket, "--group", "ci", "--role", "read")
    ok(c, "bucket", "ungrant", bucket, "--group", "ci")
    ok(c, "group", "remove", "ci", bob["peer_id"])
    ok(c, "group", "delete", "ci")
    ok(c, "peer", "revoke", owner["peer_id"])

    got = records(c, "--since", "1h")
    events = [r["event"] for r in got]
    assert events == [
        "peer.add",
        "peer.add",
        "network.set",
        "network.set",
        "group.create",
        "group.add",
        "grant.add",  # once: the repeated grant changed nothing
        "grant.add",
        "grant.remove",
        "group.remove",
        "group.delete",
        "peer.revoke",
    ], events
    for r in got:
        assert set(r) == FIELDS, r
        assert (r["actor"], r["admin"], r["via"], r["node"], r["actor_key"]) == ("admin", True, "admin-api", NODE, None)
        assert re.fullmatch(r"[0-9A-F]{16}", r["request_id"]), r
        assert r["source_ip"] == "127.0.0.1"
        at = time.mktime(time.strptime(r["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert started - 5 <= at <= time.time() + 5, r
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["at"]), r
    by = {e: [r for r in got if r["event"] == e] for e in set(events)}
    assert [r["detail"] for r in by["peer.add"]] == [
        {"peer": owner["peer_id"], "name": "owner", "role": "peer"},
        {"peer": bob["peer_id"], "name": "bob", "role": "peer"},
    ]
    assert by["peer.revoke"][0]["detail"] == {"peer": owner["peer_id"], "name": "owner"}
    assert [(r["detail"]["key"], r["detail"]["value"], r["detail"]["previous"]) for r in by["network.set"]] == [
        ("default_bucket_access", "none", None),
        ("default_public_access_block", "on", None),
    ]
    first, second = (r["detail"]["grant"] for r in by["grant.add"])
    assert {k: first[k] for k in ("to", "role", "prefix")} == {
        "to": {"peer": bob["peer_id"]},
        "role": "write",
        "prefix": "team/",
    }
    assert re.fullmatch(r"g-[0-9a-f]{6}", first["id"]) and second["to"] == {"group": "ci"}
    assert all(r["bucket"] == bucket for r in by["grant.add"] + by["grant.remove"])
    assert by["grant.remove"][0]["detail"] == {"grants": [second]}
    assert by["group.create"][0]["detail"] == {"group": "ci"}
    assert by["group.add"][0]["detail"] == by["group.remove"][0]["detail"] == {"group": "ci", "peer": bob["peer_id"]}
    assert by["group.delete"][0]["detail"] == {"group": "ci", "members": []}
    assert all(r["bucket"] is None for e in ("peer.add", "group.create", "network.set") for r in by[e])

    # the filters
    assert [r["event"] for r in records(c, "--bucket", bucket)] == ["grant.add", "grant.add", "grant.remove"]
    assert [r["event"] for r in records(c, "--event", "grant.remove")] == ["grant.remove"]
    assert [r["event"] for r in records(c, "--event", "group")] == [
        "group.create",
        "group.add",
        "group.remove",
        "group.delete",
    ]
    assert records(c, "--actor", bob["peer_id"]) == []
    assert len(records(c, "--actor", "admin")) == len(got)
    assert records(c, "--until", "2000-01-01T00:00:00Z") == []
    assert records(c, "--since", "2999-01-01") == []
    # a time range is a key range: from the third record's time, the first two are out
    third = got[2]["at"]
    assert records(c, "--since", third) == got[2:]
    assert records(c, "--until", got[1]["at"]) == got[:2]
    assert len(records(c, "--limit", "3")) == 3
    table = ok(c, "audit", "--event", "grant.add")
    assert table.splitlines()[0].split() == ["AT", "EVENT", "ACTOR", "VIA", "BUCKET", "DETAIL"]
    assert len(table.splitlines()) == 3

    # each record is its own object, keyed by day, time and node
    keys = [k for k, _ in stored(c)]
    assert len(keys) == len(got)
    assert all(re.fullmatch(rf"audit/\d{{4}}-\d\d-\d\d/\d{{13}}-{NODE}-[0-9a-f]{{8}}\.json", k) for k in keys), keys


def test_a_peer_managing_its_own_bucket_is_audited_as_itself(c: Coordinator) -> None:
    peer = json.loads(ok(c, "peer", "add", "self-owner", "--json"))
    other = json.loads(ok(c, "peer", "add", "grantee", "--json"))
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=c.endpoint,
        aws_access_key_id=peer["peer_id"],
        aws_secret_access_key=peer["token"],
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )
    bucket = f"s-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    ok(c, "bucket", "grant", bucket, "--peer", other["peer_id"], "--role", "read", token=peer["token"])
    (r,) = records(c, "--bucket", bucket)
    assert (r["event"], r["actor"], r["admin"], r["via"]) == ("grant.add", peer["peer_id"], False, "admin-api")


def test_the_audit_is_for_mesh_admins(c: Coordinator) -> None:
    peer = json.loads(ok(c, "peer", "add", "curious", "--json"))
    r = requests.get(
        f"http://127.0.0.1:{c.port}/api/audit", headers={"authorization": f"Bearer {peer['token']}"}, timeout=60
    )
    assert (r.status_code, r.json()["error"]) == (403, "AccessDenied"), r.text
    for since in ("yesterday", "nan", "inf", "1e20", "-5"):  # never a 500: a bad time is the caller's
        r = requests.get(
            f"http://127.0.0.1:{c.port}/api/audit?since={since}",
            headers={"authorization": f"Bearer {c.token}"},
            timeout=60,
        )
        assert (r.status_code, r.json()["error"]) == (400, "InvalidArgument"), (since, r.text)


def test_a_backup_and_a_restore_are_audited(c: Coordinator, tmp_path) -> None:
    """A backup holds every peer token, and a restore replaces the trail itself: both are recorded, the
    restore's record written after the restore so that it survives it."""
    archive = tmp_path / "backup.tar.gz"
    ok(c, "system", "backup", str(archive))
    ok(c, "system", "restore", str(archive))
    got = [(r["event"], r["actor"], r["via"]) for r in records(c, "--event", "system")]
    assert got[-2:] == [("system.backup", "admin", "admin-api"), ("system.restore", "admin", "admin-api")], got


def test_no_token_in_the_audit_or_the_log(c: Coordinator) -> None:
    """Runs last: every token handed out in this module (and the admin's) is looked for everywhere."""
    peers = json.loads(ok(c, "peer", "list", "--json"))["peers"]
    assert peers, "no peers were added"
    # the tokens were printed once, at `peer add`; the peer records hold them: read them as the admin may
    s3 = c.client()
    tokens = [c.token]
    for p in peers:
        rec = json.loads(s3.get_object(Bucket="_tunnelmesh", Key=f"peers/{p['id']}.json")["Body"].read())
        tokens.append(rec["token"])
    audit = stored(c)
    assert len(audit) >= len(peers)
    log = c.log()
    for token in tokens:
        assert len(token) >= 16
        for key, body in audit:
            assert token.encode() not in body, key
        assert token not in log
