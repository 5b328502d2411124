"""Run ceph/s3-tests, the field's conformance suite, against a fresh coordinator.

    python bench/s3tests.py --s3tests /path/to/s3-tests [pytest args, e.g. -k test_multipart]

The suite is not vendored (its code is not ours to commit): bring a checkout of
https://github.com/ceph/s3-tests anywhere and name it with `--s3tests` or `$S3TESTS_DIR`. Its Python
dependencies beyond ours (`munch`, `isodate`, `pytz`, `httplib2`, `lxml`, `gevent`, `PyYAML`) are
pip-installed on first use.

The script starts a coordinator on free loopback ports with two peers (s3-tests' "main" and "alt"
users), writes the suite's config, runs the tests of the operations tunnelmesh implements (the
markers below deselect whole features it answers 501 to), and compares every outcome with
`bench/s3tests-known.txt`: each test there fails for the reason written beside it. It prints
passed / failed / skipped, and exits 1 if a test failed that is not known to, or a known failure now
passes (so the list stays exact).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
KNOWN = HERE / "s3tests-known.txt"

# Features tunnelmesh does not serve (each answers 501 NotImplemented, or is not S3 at all): their
# tests are deselected as a whole. Everything else in test_s3.py and test_headers.py runs. The
# `encryption` marker is deselected too (SSE-C and SSE-KMS) except for its SSE-S3 tests (`sse_s3`).
UNSERVED_MARKERS = [
    "appendobject",
    "bucket_logging",
    "bucket_logging_cleanup",
    "cloud_restore",
    "cloud_transition",
    "fails_without_logging_rollover",
    "group",
    "group_policy",
    "iam_account",
    "iam_cross_account",
    "iam_role",
    "iam_tenant",
    "iam_user",
    "lifecycle_expiration",
    "lifecycle_transition",
    "object_ownership",
    "role_policy",
    "s3select",
    "s3website",
    "s3website_redirect_location",
    "s3website_routing_rules",
    "session_policy",
    "sns",
    "storage_class",
    "target_by_bucket",
    "test_of_sts",
    "user_policy",
    "webidentity_test",
    # Ceph's own expectations where it knowingly differs from AWS
    "fails_on_aws",
]

CATEGORIES = ("unserved", "setup", "aws", "client")

EXTRA_REQUIREMENTS = ["munch", "isodate", "pytz", "httplib2", "lxml", "gevent", "PyYAML"]

CONFIG = """\
[DEFAULT]
host = 127.0.0.1
port = {port}
is_secure = False
ssl_verify = False

[fixtures]
bucket prefix = s3t-{{random}}-
iam name prefix = s3-tests-
iam path prefix = /s3-tests/

[s3 main]
display_name = {main_id}
user_id = {main_id}
email = main@example.com
# us-east-1, where AWS takes no LocationConstraint: the suite then skips its location test (ours has one)
api_name =
access_key = {main_id}
secret_key = {main_token}

[s3 alt]
display_name = {alt_id}
user_id = {alt_id}
email = alt@example.com
access_key = {alt_id}
secret_key = {alt_token}

[s3 tenant]
display_name = {tenant_id}
user_id = {tenant_id}
email = tenant@example.com
access_key = {tenant_id}
secret_key = {tenant_token}
tenant = tenant

[iam]
email = s3@example.com
user_id = {main_id}
access_key = {main_id}
secret_key = {main_token}
display_name = {main_id}

[iam root]
access_key = {main_id}
secret_key = {main_token}
user_id = {main_id}
email = root@example.com

[iam alt root]
access_key = {alt_id}
secret_key = {alt_token}
user_id = {alt_id}
email = altroot@example.com
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit(f"coordinator exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"coordinator did not listen on {port} within {deadline} s")


def admin_call(port: int, admin_token: str, method: str, path: str, doc: dict) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{path}",
        data=json.dumps(doc).encode(),
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(req) as resp:
        out: dict = json.load(resp)
    return out


def add_peer(port: int, admin_token: str, name: str, admin: bool = False) -> tuple[str, str]:
    peer = admin_call(port, admin_token, "POST", "peers", {"name": name, "admin": admin})
    return str(peer["peer_id"]), str(peer["token"])


def read_known() -> dict[str, tuple[str, str]]:
    """`test_name  category  reason` lines; `#` starts a comment. Categories:
    unserved: the test is of a feature tunnelmesh does not serve (it answers 501, or refuses, by design);
    setup: the test needs such a feature (a public-read ACL, a bucket policy) only to set itself up;
    aws: the test asserts Ceph's behaviour where AWS's documented or observed behaviour differs;
    client: the test cannot pass with current boto3 / urllib3 (it fails before a byte is sent, or the
    client re-adds what the test removes)."""
    known: dict[str, tuple[str, str]] = {}
    for line in KNOWN.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, category, reason = (line.split(None, 2) + ["", ""])[:3]
            if category not in CATEGORIES:
                raise SystemExit(f"{KNOWN.name}: {name}: unknown category {category!r}")
            known[name] = (category, reason)
    return known


def outcomes(junit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        if case.find("skipped") is not None:
            out[name] = "skipped"
        elif case.find("failure") is not None or case.find("error") is not None:
            out[name] = "failed"
        else:
            out[name] = "passed"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--s3tests", default=os.environ.get("S3TESTS_DIR"), help="a checkout of ceph/s3-tests")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the coordinator's data and log")
    args, pytest_args = ap.parse_known_args()
    if not args.s3tests:
        ap.error("name a checkout of ceph/s3-tests with --s3tests or $S3TESTS_DIR")
    suite = Path(args.s3tests).resolve()
    if not (suite / "s3tests" / "functional" / "test_s3.py").exists():
        ap.error(f"{suite} is not a checkout of ceph/s3-tests")
    missing = []
    for req in EXTRA_REQUIREMENTS:
        mod = {"PyYAML": "yaml"}.get(req, req)
        try:
            __import__(mod)
        except ImportError:
            missing.append(req)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)

    work = Path(tempfile.mkdtemp(prefix="s3tests-"))
    port, s3_port = free_port(), free_port()
    admin_token = secrets.token_urlsafe(24)
    config = work / "coordinator.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nworkers: {args.workers}\n"
        f"s3:\n  data_dir: {work / 'data'}\n  listen: 127.0.0.1:{s3_port}\n"
        # one test retains an object until 2140: past the default cap of 10 years (s3.max_retention_days)
        "  max_retention_days: 60000\n"
    )
    # an SSE-S3 key file, outside the data dir as the coordinator requires: encryption at rest is served
    keys = work / "keys" / "sse.json"
    keys.parent.mkdir(mode=0o700)
    subprocess.run([sys.executable, "-m", "tunnelmesh", "sse", "init", "--key-file", str(keys)], check=True)
    config.write_text(config.read_text() + f"  sse_key_file: {keys}\n")
    log = work / "coordinator.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=dict(os.environ, TUNNELMESH_ADMIN_TOKEN=admin_token),
    )
    try:
        wait_for_port(port, proc)
        wait_for_port(s3_port, proc)
        # The suite's teardown empties every bucket the main user lists, alt's and tenant's too: only a
        # mesh admin sees and may delete every bucket, so "main" is one.
        main_id, main_token = add_peer(port, admin_token, "s3tests-main", admin=True)
        # as on AWS, where other accounts' buckets are closed unless a policy opens them, and Ceph's
        # setup has no account-level public access block (docs/access-control.md section 9)
        admin_call(port, admin_token, "PUT", "network", {"key": "default_bucket_access", "value": "none"})
        admin_call(port, admin_token, "PUT", "network", {"key": "default_public_access_block", "value": "off"})
        alt_id, alt_token = add_peer(port, admin_token, "s3tests-alt")
        tenant_id, tenant_token = add_peer(port, admin_token, "s3tests-tenant")
        conf = work / "s3tests.conf"
        conf.write_text(
            CONFIG.format(
                port=s3_port,
                main_id=main_id,
                main_token=main_token,
                alt_id=alt_id,
                alt_token=alt_token,
                tenant_id=tenant_id,
                tenant_token=tenant_token,
            )
        )
        junit = work / "junit.xml"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            f"--junitxml={junit}",
            "-m",
            " and ".join(f"not {m}" for m in UNSERVED_MARKERS) + " and not (encryption and not sse_s3)",
            "s3tests/functional/test_s3.py",
            "s3tests/functional/test_headers.py",
            *pytest_args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(S3TEST_CONF=str(conf), AWS_DEFAULT_REGION="us-east-1")
        subprocess.run(cmd, cwd=suite, env=env)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    got = outcomes(junit)
    known = read_known()
    counts = {k: sum(1 for v in got.values() if v == k) for k in ("passed", "failed", "skipped")}
    print(f"\ns3-tests: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
    failed = [n for n, v in got.items() if v == "failed"]
    for category in CATEGORIES:
        print(f"  failed, {category}: {sum(1 for n in failed if known.get(n, ('',))[0] == category)}")
    implemented = [n for n in got if known.get(n, ("",))[0] != "unserved"]
    print(
        f"tests of the operations tunnelmesh implements: {len(implemented)}, of which "
        f"{sum(1 for n in implemented if got[n] == 'passed')} passed"
    )
    new_failures = sorted(n for n in failed if n not in known)
    fixed = sorted(n for n, v in got.items() if v == "passed" and n in known)
    for n in new_failures:
        print(f"UNEXPECTED FAILURE  {n}")
    for n in fixed:
        print(f"NOW PASSES (drop it from {KNOWN.name})  {n}")
    print(f"coordinator data, log and junit.xml: {work}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if new_failures or fixed else 0


if __name__ == "__main__":
    sys.exit(main())
