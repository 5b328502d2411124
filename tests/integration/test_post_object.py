"""POST Object: browser form uploads signed with a policy document (boto3's generate_presigned_post).

Every form field must be named by the signed policy and every condition must hold; the upload is a
PutObject write (quota, refusal table, integrity) streamed to the store.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.exceptions import ClientError
from conftest import Coordinator, tree_rss
from minio import Minio
from minio.datatypes import PostPolicy

MIB = 1024 * 1024


def client(c: Coordinator, endpoint: str, signature_version: str = "s3v4"):
    return c.client(endpoint, signature_version=signature_version)


@pytest.fixture(params=["prefix", "root"])
def endpoint(request: pytest.FixtureRequest, coordinator: Coordinator) -> str:
    """The S3 API under /s3 of the main listener, and at the root of the S3 listener."""
    return coordinator.endpoint if request.param == "prefix" else coordinator.root_endpoint


def post(url: str, fields: dict[str, str], data: bytes, filename: str = "upload.bin") -> requests.Response:
    """A browser-style form: the fields in order, then the file last."""
    parts = [(name, (None, value)) for name, value in fields.items()]
    parts.append(("file", (filename, data, "application/octet-stream")))
    return requests.post(url, files=parts, timeout=120)


def assert_error(r: requests.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    root = ET.fromstring(r.content)
    assert root.findtext("Code") == code, r.text
    return root.findtext("Message") or ""


def absent(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    return False


def v2_form(c: Coordinator, doc: dict, access_key: str = "admin", secret: str | None = None) -> dict[str, str]:
    """A policy signed by hand the SigV2 way (HMAC-SHA1 of the base64 policy)."""
    policy = base64.b64encode(json.dumps(doc).encode()).decode()
    sig = base64.b64encode(hmac.digest((secret or c.token).encode(), policy.encode(), hashlib.sha1)).decode()
    return {"AWSAccessKeyId": access_key, "policy": policy, "signature": sig}


def expiry(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))


# --- success ---------------------------------------------------------------------------------------


def test_boto3_presigned_post_uploads_with_filename_content_type_and_metadata(coordinator, s3, bucket, endpoint):
    p = client(coordinator, endpoint).generate_presigned_post(
        bucket,
        "uploads/${filename}",
        Fields={"Content-Type": "text/plain", "x-amz-meta-origin": "browser"},
        Conditions=[
            ["starts-with", "$key", "uploads/"],
            {"Content-Type": "text/plain"},
            {"x-amz-meta-origin": "browser"},
            ["content-length-range", 1, 1024],
        ],
        ExpiresIn=600,
    )
    assert p["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    r = post(p["url"], p["fields"], b"hello form", filename="notes.txt")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert r.headers["etag"] == f'"{hashlib.md5(b"hello form").hexdigest()}"'
    assert r.headers["location"].endswith(f"/{bucket}/uploads/notes.txt")
    assert r.headers.get("connection") != "close"  # the whole body was read: the connection is kept
    got = s3.get_object(Bucket=bucket, Key="uploads/notes.txt")
    assert got["Body"].read() == b"hello form"
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"origin": "browser"}


def test_sigv2_signed_form_uploads(coordinator, s3, bucket) -> None:
    p = client(coordinator, coordinator.endpoint, "s3").generate_presigned_post(bucket, "v2-object")
    assert "signature" in p["fields"] and "x-amz-signature" not in p["fields"]
    r = post(p["url"], p["fields"], b"signed the old way")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="v2-object")["Body"].read() == b"signed the old way"


def test_minio_presigned_post_policy_uploads(coordinator, s3, bucket) -> None:
    m = Minio(f"127.0.0.1:{coordinator.s3_port}", "admin", coordinator.token, secure=False, region="us-east-1")
    policy = PostPolicy(bucket, datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10))
    policy.add_starts_with_condition("key", "m/")
    policy.add_content_length_range_condition(1, 1000)
    form = m.presigned_post_policy(policy)
    r = post(f"{coordinator.root_endpoint}/{bucket}", {**form, "key": "m/obj"}, b"from minio")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="m/obj")["Body"].read() == b"from minio"


def test_a_large_file_streams_to_the_store_in_bounded_memory(coordinator, s3, bucket) -> None:
    size = 64 * MIB
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "big", Conditions=[["content-length-range", 0, size]]
    )
    chunk = bytes(range(256)) * 4096  # 1 MiB
    assert post(p["url"], p["fields"], b"warm-up").status_code == 204  # the parser is imported by now
    baseline = tree_rss(coordinator.proc.pid)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss(coordinator.proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        r = post(p["url"], p["fields"], chunk * (size // MIB))
    finally:
        done.set()
        sampler.join()
    assert r.status_code == 204, r.text
    md5 = hashlib.md5(chunk * (size // MIB)).hexdigest()
    assert r.headers["etag"] == f'"{md5}"'
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == size
    # a server that held the file would grow by at least its 64 MiB
    print(f"RSS baseline {baseline / MIB:.1f} MiB, peak {peak[0] / MIB:.1f} MiB")
    assert peak[0] - baseline < 32 * MIB, (baseline, peak[0])


@pytest.mark.parametrize(("status", "expected"), [("200", 200), ("201", 201), ("204", 204), ("404", 204)])
def test_success_action_status(coordinator, s3, bucket, status, expected) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "k", Fields={"success_action_status": status}, Conditions=[{"success_action_status": status}]
    )
    r = post(p["url"], p["fields"], b"abc")
    assert r.status_code == expected, r.text
    if expected == 201:
        doc = ET.fromstring(r.content)
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        assert doc.tag == f"{ns}PostResponse"
        assert doc.findtext(f"{ns}Bucket") == bucket
        assert doc.findtext(f"{ns}Key") == "k"
        assert doc.findtext(f"{ns}ETag") == f'"{hashlib.md5(b"abc").hexdigest()}"'
        assert doc.findtext(f"{ns}Location", "").endswith(f"/{bucket}/k")
    else:
        assert r.content == b""


def test_success_action_redirect_answers_303_with_bucket_key_and_etag(coordinator, bucket) -> None:
    target = "https://app.example/done?from=upload"
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "a b", Fields={"success_action_redirect": target}, Conditions=[{"success_action_redirect": target}]
    )
    r = requests.post(
        p["url"],
        files=[*((k, (None, v)) for k, v in p["fields"].items()), ("file", ("x", b"1"))],
        allow_redirects=False,
    )
    assert r.status_code == 303, r.text
    loc = urlsplit(r.headers["location"])
    assert (loc.scheme, loc.netloc, loc.path) == ("https", "app.example", "/done")
    q = parse_qs(loc.query)
    assert q == {"from": ["upload"], "bucket": [bucket], "key": ["a b"], "etag": [f'"{hashlib.md5(b"1").hexdigest()}"']}


def test_fields_after_the_file_are_ignored(coordinator, s3, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(bucket, "after")
    parts = [(k, (None, v)) for k, v in p["fields"].items()]
    parts += [("file", ("f", b"data")), ("x-amz-meta-late", (None, "never signed"))]
    r = requests.post(p["url"], files=parts, timeout=60)
    assert r.status_code == 204, r.text
    assert s3.head_object(Bucket=bucket, Key="after")["Metadata"] == {}


def test_checksum_and_content_md5_fields_are_verified(coordinator, s3, bucket) -> None:
    data = b"checked"
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    presign = client(coordinator, coordinator.endpoint).generate_presigned_post
    p = presign(bucket, "sum", Fields={"x-amz-checksum-sha256": good}, Conditions=[{"x-amz-checksum-sha256": good}])
    assert post(p["url"], p["fields"], data).status_code == 204
    got = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert got["ChecksumSHA256"] == good
    p = presign(bucket, "sum2", Fields={"x-amz-checksum-sha256": good}, Conditions=[{"x-amz-checksum-sha256": good}])
    assert_error(post(p["url"], p["fields"], b"tampered"), 400, "BadDigest")
    p = presign(bucket, "md5", Fields={"Content-MD5": bad_md5}, Conditions=[{"Content-MD5": bad_md5}])
    assert_error(post(p["url"], p["fields"], data), 400, "BadDigest")
    assert absent(s3, bucket, "sum2") and absent(s3, bucket, "md5")


# --- refusals: the policy --------------------------------------------------------------------------


def test_a_field_the_policy_does_not_name_is_refused(coordinator, s3, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(bucket, "k")
    msg = assert_error(post(p["url"], {**p["fields"], "x-amz-meta-evil": "1"}, b"x"), 403, "AccessDenied")
    assert msg == "Invalid according to Policy: Extra input fields: x-amz-meta-evil"
    # x-ignore-* fields are the documented exception
    assert post(p["url"], {**p["fields"], "x-ignore-note": "anything"}, b"x").status_code == 204


def test_an_expired_policy_is_refused(coordinator, s3, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(bucket, "k", ExpiresIn=-5)
    msg = assert_error(post(p["url"], p["fields"], b"x"), 403, "AccessDenied")
    assert msg == "Invalid according to Policy: Policy expired."
    assert absent(s3, bucket, "k")


def test_a_policy_for_another_bucket_is_refused(coordinator, s3, bucket) -> None:
    other = f"t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=other)
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(other, "k")
    url = p["url"].replace(f"/{other}", f"/{bucket}")
    msg = assert_error(post(url, p["fields"], b"x"), 403, "AccessDenied")
    assert msg.startswith("Invalid according to Policy: Policy Condition failed:") and other in msg
    assert absent(s3, bucket, "k") and absent(s3, other, "k")


def test_a_key_outside_the_starts_with_prefix_is_refused(coordinator, s3, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "user/alice/${filename}", Conditions=[["starts-with", "$key", "user/alice/"]]
    )
    fields = {**p["fields"], "key": "user/bob/x"}
    msg = assert_error(post(p["url"], fields, b"x"), 403, "AccessDenied")
    assert '["starts-with", "$key", "user/alice/"]' in msg
    assert absent(s3, bucket, "user/bob/x")


@pytest.mark.parametrize(("size", "code"), [(101, "EntityTooLarge"), (9, "EntityTooSmall")])
def test_a_file_outside_the_content_length_range_is_refused(coordinator, s3, bucket, size, code) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "sized", Conditions=[["content-length-range", 10, 100]]
    )
    assert_error(post(p["url"], p["fields"], b"z" * size), 400, code)
    assert absent(s3, bucket, "sized")
    assert post(p["url"], p["fields"], b"z" * 100).status_code == 204


def test_a_file_past_the_range_is_cut_off_while_streaming(coordinator, s3, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "cut", Conditions=[["content-length-range", 0, MIB]]
    )
    assert_error(post(p["url"], p["fields"], b"z" * (MIB + 1)), 400, "EntityTooLarge")
    assert absent(s3, bucket, "cut")


def test_a_tampered_policy_or_signature_is_refused(coordinator, s3, bucket) -> None:
    presign = client(coordinator, coordinator.endpoint).generate_presigned_post
    p = presign(bucket, "k", Conditions=[["content-length-range", 0, 10]])
    wider = presign(bucket, "k", Conditions=[["content-length-range", 0, 10**9]])
    swapped = {**p["fields"], "policy": wider["fields"]["policy"]}
    assert_error(post(p["url"], swapped, b"x"), 403, "SignatureDoesNotMatch")
    sig = p["fields"]["x-amz-signature"]
    forged = {**p["fields"], "x-amz-signature": ("0" if sig[0] != "0" else "1") + sig[1:]}
    assert_error(post(p["url"], forged, b"x"), 403, "SignatureDoesNotMatch")
    assert absent(s3, bucket, "k")


def test_an_unknown_access_key_or_wrong_secret_is_refused(coordinator, s3, bucket) -> None:
    doc = {"expiration": expiry(600), "conditions": [{"bucket": bucket}, {"key": "k"}]}
    url = f"{coordinator.endpoint}/{bucket}"
    assert_error(post(url, {"key": "k", **v2_form(coordinator, doc, "nobody")}, b"x"), 403, "InvalidAccessKeyId")
    wrong = v2_form(coordinator, doc, secret="not-the-token")
    assert_error(post(url, {"key": "k", **wrong}, b"x"), 403, "SignatureDoesNotMatch")
    assert post(url, {"key": "k", **v2_form(coordinator, doc)}, b"x").status_code == 204


@pytest.mark.parametrize(
    "doc",
    [
        {"conditions": []},
        {"expiration": "2099-01-01T00:00:00Z"},
        {"expiration": "tomorrow", "conditions": []},
        {"expiration": None, "conditions": [{}]},
        {"expiration": "EXP", "conditions": [["content-length-range", -1, 5]]},
        {"expiration": "EXP", "conditions": [["ends-with", "$key", "x"]]},
        {"expiration": "EXP", "conditions": [{}]},
    ],
)
def test_a_malformed_policy_is_invalid_policy_document(coordinator, s3, bucket, doc) -> None:
    if doc.get("expiration") == "EXP":
        doc = {**doc, "expiration": expiry(600)}
    url = f"{coordinator.endpoint}/{bucket}"
    assert_error(post(url, {"key": "k", **v2_form(coordinator, doc)}, b"x"), 400, "InvalidPolicyDocument")
    assert absent(s3, bucket, "k")


def test_a_form_without_signature_or_policy(coordinator, bucket) -> None:
    url = f"{coordinator.endpoint}/{bucket}"
    assert_error(post(url, {"key": "k"}, b"x"), 403, "AccessDenied")  # anonymous: never allowed
    doc = {"expiration": expiry(600), "conditions": [{"bucket": bucket}, {"key": "k"}]}
    fields = v2_form(coordinator, doc)
    del fields["signature"]
    assert_error(post(url, {"key": "k", **fields}, b"x"), 400, "InvalidArgument")
    signed = v2_form(coordinator, doc)
    assert_error(post(url, {"AWSAccessKeyId": "admin", "signature": signed["signature"]}, b"x"), 400, "InvalidArgument")


def test_a_form_without_key_or_file_is_invalid_argument(coordinator, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(bucket, "k")
    fields = {k: v for k, v in p["fields"].items() if k != "key"}
    assert_error(post(p["url"], fields, b"x"), 400, "InvalidArgument")
    r = requests.post(p["url"], files=[(k, (None, v)) for k, v in p["fields"].items()], timeout=60)
    assert_error(r, 400, "InvalidArgument")


def test_oversized_fields_before_the_file_are_refused(coordinator, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(bucket, "k")
    fields = {**p["fields"], "x-ignore-padding": "p" * (21 * 1024)}
    assert_error(post(p["url"], fields, b"x"), 400, "MaxPostPreDataLengthExceeded")


def test_a_bucket_post_that_is_not_a_form_is_precondition_failed(coordinator, bucket) -> None:
    r = requests.post(f"{coordinator.endpoint}/{bucket}", data=b"abc", auth=("admin", coordinator.token), timeout=30)
    assert_error(r, 412, "PreconditionFailed")


# --- refusals: the write ---------------------------------------------------------------------------


def test_the_system_bucket_is_refused(coordinator, s3) -> None:
    doc = {"expiration": expiry(600), "conditions": [{"bucket": "_tunnelmesh"}, {"key": "peers/x.json"}]}
    r = post(f"{coordinator.endpoint}/_tunnelmesh", {"key": "peers/x.json", **v2_form(coordinator, doc)}, b"{}")
    assert_error(r, 403, "AccessDenied")
    assert ET.fromstring(r.content).findtext("BucketName") == "_tunnelmesh"  # the system bucket's refusal
    assert absent(s3, "_tunnelmesh", "peers/x.json")


@pytest.mark.parametrize(
    ("field", "value", "status", "code"),
    [
        ("acl", "public-read", 400, "AccessControlListNotSupported"),
        ("x-amz-server-side-encryption", "AES256", 501, "NotImplemented"),
        ("x-amz-storage-class", "GLACIER", 501, "NotImplemented"),
        ("x-amz-object-lock-mode", "GOVERNANCE", 501, "NotImplemented"),
    ],
)
def test_unsupported_protections_get_put_objects_answers(coordinator, s3, bucket, field, value, status, code) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "prot", Fields={field: value}, Conditions=[{field: value}]
    )
    assert_error(post(p["url"], p["fields"], b"x"), status, code)
    assert absent(s3, bucket, "prot")


def test_private_acl_is_accepted(coordinator, s3, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(
        bucket, "priv", Fields={"acl": "private"}, Conditions=[{"acl": "private"}]
    )
    assert post(p["url"], p["fields"], b"x").status_code == 204


def test_the_bucket_quota_applies(coordinator, s3) -> None:
    b = f"q-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=b)
    r = coordinator.cli("bucket", "quota", "set", b, "20KB", timeout=60)
    assert r.returncode == 0, r.stderr
    presign = client(coordinator, coordinator.endpoint).generate_presigned_post
    p = presign(b, "small", Conditions=[["content-length-range", 0, MIB]])
    assert_error(post(p["url"], p["fields"], b"s" * 25_000), 403, "QuotaExceeded")  # held whole, refused at commit
    p = presign(b, "large", Conditions=[["content-length-range", 0, MIB]])
    assert_error(post(p["url"], p["fields"], b"l" * 200_000), 403, "QuotaExceeded")  # cut off while streaming
    assert absent(s3, b, "small") and absent(s3, b, "large")
    p = presign(b, "fits", Conditions=[["content-length-range", 0, MIB]])
    assert post(p["url"], p["fields"], b"f" * 19_000).status_code == 204


def test_the_form_is_not_logged(coordinator, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(bucket, "quiet")
    assert post(p["url"], p["fields"], b"x").status_code == 204
    log = coordinator.log()
    assert p["fields"]["x-amz-signature"] not in log and coordinator.token not in log


def test_condition_and_field_names_are_case_insensitive_but_policy_keys_are_not(coordinator, s3, bucket) -> None:
    doc = {
        "expiration": expiry(600),
        "conditions": [{"bUcKeT": bucket}, ["StArTs-WiTh", "$KeY", "ci/"], ["EQ", "$Content-TYPE", "text/plain"]],
    }
    signed = v2_form(coordinator, doc)
    fields = {"kEy": "ci/x", "content-type": "text/plain", "awsaccesskeyid": "admin"}
    fields |= {"pOLICy": signed["policy"], "SIGNATURE": signed["signature"]}
    r = post(f"{coordinator.endpoint}/{bucket}", fields, b"x")
    assert r.status_code == 204, r.text
    assert s3.head_object(Bucket=bucket, Key="ci/x")["ContentType"] == "text/plain"
    upper = {"EXPIRATION": expiry(600), "conditions": doc["conditions"]}
    r = post(f"{coordinator.endpoint}/{bucket}", {"key": "ci/y", **v2_form(coordinator, upper)}, b"x")
    assert_error(r, 400, "InvalidPolicyDocument")
    # values are compared exactly
    r = post(f"{coordinator.endpoint}/{bucket}", {**fields, "content-type": "TEXT/PLAIN"}, b"x")
    assert_error(r, 403, "AccessDenied")


def test_a_sigv4_credential_for_another_region_or_service_is_refused(coordinator, bucket) -> None:
    p = client(coordinator, coordinator.endpoint).generate_presigned_post(bucket, "k")
    cred = p["fields"]["x-amz-credential"]
    for bad in (cred.replace("/us-east-1/", "/eu-west-9/"), cred.replace("/s3/", "/sqs/")):
        r = post(p["url"], {**p["fields"], "x-amz-credential": bad}, b"x")
        assert_error(r, 400, "AuthorizationQueryParametersError")


def test_a_form_post_to_the_admin_api_is_refused_not_an_error(coordinator) -> None:
    r = requests.post(f"http://127.0.0.1:{coordinator.port}/api/peers", files=[("file", ("f", b"{}"))], timeout=30)
    assert r.status_code == 403, (r.status_code, r.text)


# --- what the attacker's review found ---------------------------------------------------------------


def test_unauthenticated_forms_that_never_send_their_fields_leave_the_s3_slots_free(tmp_path) -> None:
    """A form is authenticated only once its fields arrive, so anyone can open one: those wait in a
    pool of their own (max(2, max_requests / 16)), and every other S3 request still gets a slot."""
    import socket

    from conftest import start_coordinator

    c = start_coordinator(tmp_path, "limits:\n  max_requests: 4\n  body_timeout: 300\n", workers=1)
    held = []
    try:
        c.client().create_bucket(Bucket="slots")
        for _ in range(8):  # twice max_requests, none of them ever sending a byte of body
            s = socket.create_connection(("127.0.0.1", c.port), timeout=30)
            s.sendall(
                b"POST /s3/slots HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 20000\r\n\r\n"
            )
            held.append(s)
        s3 = c.client(read_timeout=30)  # held behind the stalled forms, a request would wait 300 s
        for i in range(6):  # more requests than max_requests, one after the other, each answered
            s3.put_object(Bucket="slots", Key=f"k{i}", Body=b"x")
        assert len(s3.list_objects_v2(Bucket="slots")["Contents"]) == 6
    finally:
        for s in held:
            s.close()
        c.stop()


def signed_form(c: Coordinator, bucket: str, key: str, conditions: list) -> dict[str, str]:
    return c.client(signature_version="s3v4").generate_presigned_post(bucket, key, Conditions=conditions)


@pytest.mark.parametrize("name", ["x-amz-meta-a b", "x-amz-meta-a:b", "x-amz-meta-\u00e9", "x-amz-meta-a\tb"])
def test_a_field_name_that_is_no_header_name_is_refused(coordinator, s3, bucket, name: str) -> None:
    """A PUT cannot carry such a header name; stored from a form it broke every later GET (500)."""
    p = signed_form(coordinator, bucket, "odd-name", [{name: "v"}])
    r = post(p["url"], {**p["fields"], name: "v"}, b"data")
    assert_error(r, 400, "InvalidArgument")
    assert absent(s3, bucket, "odd-name")


@pytest.mark.parametrize(("first", "second"), [("acl", "x-amz-acl"), ("tagging", "x-amz-tagging")])
def test_a_header_given_under_both_its_names_is_refused(coordinator, s3, bucket, first: str, second: str) -> None:
    """`acl=public-read` then `x-amz-acl=private`: the refused value must not be quietly replaced."""
    value = "public-read" if first == "acl" else "<Tagging><TagSet/></Tagging>"
    other = "private" if first == "acl" else ""
    p = signed_form(coordinator, bucket, "twice", [{first: value}, {second: other}])
    r = post(p["url"], {**p["fields"], first: value, second: other}, b"data")
    assert r.status_code in (400, 501), r.text
    assert absent(s3, bucket, "twice")


def test_conditional_and_protection_headers_of_the_request_itself_are_honoured(coordinator, s3, bucket) -> None:
    s3.put_object(Bucket=bucket, Key="exists", Body=b"old")
    p = signed_form(coordinator, bucket, "exists", [])
    parts = [(n, (None, v)) for n, v in p["fields"].items()] + [("file", ("f", b"new", "text/plain"))]
    r = requests.post(p["url"], files=parts, headers={"If-None-Match": "*"}, timeout=60)
    assert_error(r, 412, "PreconditionFailed")
    r = requests.post(p["url"], files=parts, headers={"x-amz-server-side-encryption": "AES256"}, timeout=60)
    assert_error(r, 501, "NotImplemented")
    assert s3.get_object(Bucket=bucket, Key="exists")["Body"].read() == b"old"
    r = requests.post(p["url"], files=parts, headers={"If-Match": '"nope"'}, timeout=60)
    assert_error(r, 412, "PreconditionFailed")
    assert s3.get_object(Bucket=bucket, Key="exists")["Body"].read() == b"old"
