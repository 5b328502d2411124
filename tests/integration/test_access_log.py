"""The request log (docs/operations.md 1.10), in `log_format: text` and `json`, from a real coordinator.

- every S3 request line has id, peer, op, status, method, bucket, key, bytes_in, bytes_out, ms, client, ua,
  authz, auth; the admin API's line the same where they apply (`admin` for `op`, `path` for bucket and key);
- a key holding a newline, an escape, quotes and spaces reads back whole from its own line and forges none;
- in json mode every line of the log (start-up, workers, requests) is one JSON object;
- a 501 names the S3 operation we do not serve (`unknown` when S3 has no such operation either);
- no presign query (signature, credential), peer token, key secret, Authorization or cookie in any line.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from support.peers import add_peer, cli_ok, s3_client

from tests.conftest import Coordinator, start_coordinator

S3_FIELDS = [
    "id",
    "peer",
    "op",
    "status",
    "method",
    "bucket",
    "key",
    "bytes_in",
    "bytes_out",
    "ms",
    "client",
    "ua",
    "authz",
    "auth",
]
ADMIN_FIELDS = [
    "id",
    "peer",
    "admin",
    "status",
    "method",
    "path",
    "bytes_in",
    "bytes_out",
    "ms",
    "client",
    "ua",
    "authz",
    "auth",
]
# a key that would end the line, forge a request line after it, and repaint a terminal, were it written raw
FORGING_KEY = 'dir/a b\nid=FORGED peer=admin op=Forged status=200 ms=1.0\r\x1b[2J"q" \\ \u2028end'
BODY = b"x" * 1000
# a header holds no line end nor escape (the HTTP server refuses them), but may hold quotes and spaces
UA = 'agent "x" id=FAKE op=Forged \\ end'

TEXT_LINE = re.compile(r"(\S+ \S+) ([A-Z]+) (\S+) (.*)")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s"]+)(?: |$)')


def unquote(value: str) -> str:
    if not value.startswith('"'):
        return value
    return value[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse_text_fields(message: str) -> dict[str, str]:
    """A `key=value ...` message as logfmt reads it; the whole message must be made of fields."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(message):
        m = FIELD.match(message, pos)
        assert m, f"not key=value at {pos}: {message!r}"
        fields[m[1]] = unquote(m[2])
        pos = m.end()
    return fields


def request_lines(c: Coordinator, mode: str) -> list[dict[str, Any]]:
    """Every request line of the log (S3 and admin), as field dicts (text values as strings)."""
    out = []
    for line in c.log().splitlines():
        if mode == "json":
            doc = json.loads(line)
            if doc.get("msg") == "access":
                out.append(doc)
            continue
        m = TEXT_LINE.fullmatch(line)
        if m and m[3] in ("tunnelmesh.s3", "tunnelmesh.admin") and m[4].startswith("id="):
            out.append(parse_text_fields(m[4]))
    return out


@dataclass
class Run:
    c: Coordinator
    mode: str
    bucket: str
    ids: dict[str, str] = field(default_factory=dict)  # what -> request id
    secrets: list[str] = field(default_factory=list)
    key_signer: str = ""  # how the log names the scoped key's requests: <peer id>/<key id>

    def lines(self) -> dict[str, dict[str, Any]]:
        by_id = {str(d["id"]): d for d in request_lines(self.c, self.mode)}
        return {what: by_id[rid] for what, rid in self.ids.items() if rid in by_id}

    def line(self, what: str) -> dict[str, Any]:
        return self.lines()[what]


def wait_logged(run: Run) -> None:
    """The line of each request is written after its response went out: wait for all of them."""
    for rid in run.ids.values():
        run.c.wait_for_log(rf"id={rid}\b" if run.mode == "text" else rf'"id": "{rid}"')


def rid(r: requests.Response) -> str:
    return r.headers.get("x-amz-request-id") or r.headers["x-request-id"]


def workload(c: Coordinator, mode: str) -> Run:
    s3 = c.client()
    b = f"log-{uuid.uuid4().hex[:12]}"
    run = Run(c, mode, b, secrets=[c.token])
    run.ids["create"] = s3.create_bucket(Bucket=b)["ResponseMetadata"]["RequestId"]
    run.ids["put"] = s3.put_object(Bucket=b, Key=FORGING_KEY, Body=BODY)["ResponseMetadata"]["RequestId"]
    got = s3.get_object(Bucket=b, Key=FORGING_KEY)
    assert got["Body"].read() == BODY
    run.ids["get"] = got["ResponseMetadata"]["RequestId"]

    v4 = s3_client(c.endpoint, "admin", c.token, "s3v4")
    for version, client in (("v4", v4), ("v2", s3_client(c.endpoint, "admin", c.token, "s3"))):
        url = client.generate_presigned_url("get_object", Params={"Bucket": b, "Key": FORGING_KEY}, ExpiresIn=300)
        query = dict(p.split("=", 1) for p in url.split("?", 1)[1].split("&"))
        run.secrets += [v for k, v in query.items() if "Signature" in k or "Credential" in k]
        r = requests.get(url, headers={"Cookie": f"session={run.secrets[0]}-cookie"}, timeout=30)
        assert r.status_code == 200 and r.content == BODY
        run.ids[f"presign-{version}"] = rid(r)
    put_url = v4.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "presigned-put"}, ExpiresIn=300)
    r = requests.put(put_url, data=b"y" * 777, timeout=30)
    assert r.status_code == 200, r.text
    run.ids["presign-put"] = rid(r)

    r = requests.get(f"{c.endpoint}/{b}?logging", auth=("admin", c.token), timeout=30)
    assert r.status_code == 501, r.text
    run.ids["501-logging"] = rid(r)
    r = requests.put(
        f"{c.endpoint}/{b}?replication", data=b"<x/>", headers={"Authorization": f"Bearer {c.token}"}, timeout=30
    )
    assert r.status_code == 501, r.text
    run.ids["501-replication"] = rid(r)
    r = requests.post(f"{c.endpoint}/{b}/k", auth=("admin", c.token), timeout=30)
    assert r.status_code == 501, r.text
    run.ids["501-unknown"] = rid(r)
    r = requests.get(f"{c.endpoint}/{b}/k", headers={"User-Agent": UA}, timeout=30)
    assert r.status_code == 403, r.text
    run.ids["anonymous"] = rid(r)

    peer = add_peer(c, "logged")
    run.secrets.append(peer.token)
    key = json.loads(cli_ok(c, "key", "create", "--json", token=peer.token))
    run.secrets.append(key["secret"])
    run.key_signer = f"{peer.id}/{key['id']}"
    keyed = s3_client(c.endpoint, key["id"], key["secret"])
    run.ids["key-list"] = keyed.list_buckets()["ResponseMetadata"]["RequestId"]
    r = requests.get(f"http://127.0.0.1:{c.port}/api/peers", headers={"Authorization": f"Bearer {c.token}"}, timeout=30)
    assert r.status_code == 200
    run.ids["admin-peers"] = rid(r)
    wait_logged(run)
    return run


@pytest.fixture(scope="module", params=["text", "json"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    extra = "" if request.param == "text" else "log_format: json\n"
    c = start_coordinator(tmp_path_factory.mktemp(f"log-{request.param}"), extra_yaml=extra)
    try:
        yield workload(c, request.param)
    finally:
        c.stop()


def test_every_s3_line_has_every_field(run: Run) -> None:
    lines = [d for d in request_lines(run.c, run.mode) if "op" in d]
    assert len(lines) >= 10
    for d in lines:
        assert [k for k in d if k in S3_FIELDS] == S3_FIELDS, d
    put, get = run.line("put"), run.line("get")
    assert (put["op"], str(put["status"]), put["method"], put["bucket"]) == ("PutObject", "200", "PUT", run.bucket)
    assert (get["op"], str(get["status"]), get["method"], str(get["bytes_out"])) == ("GetObject", "200", "GET", "1000")
    assert int(put["bytes_in"]) >= len(BODY) and str(put["bytes_out"]) == "0"  # boto3 may frame it (aws-chunked)
    presigned_put = run.line("presign-put")
    assert str(presigned_put["bytes_in"]) == "777" and presigned_put["key"] == "presigned-put"
    for d in (put, get, presigned_put):
        assert d["peer"] == "admin" and d["client"] == "127.0.0.1" and float(d["ms"]) >= 0, d
        assert d["authz"] and d["authz"] != "-", d
    assert "Boto3" in put["ua"] and "python-requests" in presigned_put["ua"]
    assert (put["auth"], run.line("presign-v4")["auth"], run.line("presign-v2")["auth"]) == (
        "header",
        "presign",
        "presign",
    )
    anonymous = run.line("anonymous")
    assert (anonymous["auth"], anonymous["peer"], str(anonymous["status"])) == ("anonymous", "anonymous", "403")
    assert anonymous["ua"] == UA
    keyed = run.line("key-list")
    assert (keyed["peer"], keyed["op"], keyed["auth"]) == (run.key_signer, "ListBuckets", "header")


def test_admin_line_has_its_fields(run: Run) -> None:
    d = run.line("admin-peers")
    assert [k for k in d if k in ADMIN_FIELDS] == ADMIN_FIELDS, d
    assert (d["admin"], str(d["status"]), d["method"], d["path"], d["peer"]) == (
        "list_peers",
        "200",
        "GET",
        "/api/peers",
        "admin",
    )
    assert d["auth"] == "header" and d["client"] == "127.0.0.1" and int(d["bytes_out"]) > 0


def test_forging_key_reads_back_whole_and_forges_nothing(run: Run) -> None:
    for what in ("put", "get", "presign-v4", "presign-v2"):
        assert run.line(what)["key"] == FORGING_KEY, what
    lines = request_lines(run.c, run.mode)
    assert not [d for d in lines if d["id"] in ("FORGED", "FAKE") or d.get("op") == "Forged"]
    log = run.c.log()
    assert "\x1b" not in log and "\r" not in log and "\u2028" not in log


def test_every_line_is_a_record(run: Run) -> None:
    """json: each line of the whole log is one object; text: each line starts a record (its timestamp) or
    continues one (indented: a traceback), so no value can pass for a line of its own."""
    lines = run.c.log().splitlines()
    assert len(lines) > 12
    for line in lines:
        if run.mode == "json":
            assert {"ts", "level", "logger", "msg"} <= set(json.loads(line)), line
        else:
            assert TEXT_LINE.fullmatch(line) or line.startswith("    "), line
    assert any("workers; data in" in line for line in lines)


def test_not_implemented_names_its_operation(run: Run) -> None:
    seen = {what: (run.line(what)["op"], str(run.line(what)["status"])) for what in run.ids if what.startswith("501")}
    assert seen == {
        "501-logging": ("GetBucketLogging", "501"),
        "501-replication": ("PutBucketReplication", "501"),
        "501-unknown": ("unknown", "501"),
    }


def test_no_secret_in_any_line(run: Run) -> None:
    log = run.c.log()
    assert len(run.secrets) >= 6
    for secret in run.secrets:
        assert secret not in log
        assert requests.utils.unquote(secret) not in log
    for marker in ("X-Amz-Signature", "X-Amz-Credential", "Signature=", "AWSAccessKeyId", "Bearer", "Basic ", "cookie"):
        assert marker not in log, marker
