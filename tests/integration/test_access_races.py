"""Access checks against races: a request checked for one incarnation of a bucket never lands in the next.

The edge decides a request on the bucket row it read (owner, created); a slow request (a body sent in
pieces) may commit after that bucket was deleted and re-created by another peer. The commit must then find
another incarnation and refuse (NoSuchBucket), never write into the successor.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import uuid
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from conftest import start_coordinator
from support.peers import add_peer


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory):
    c = start_coordinator(tmp_path_factory.mktemp("races"))
    try:
        assert c.cli("network", "set", "default_bucket_access", "none", timeout=60).returncode == 0
        yield c, add_peer(c, "mallory"), add_peer(c, "victim")
    finally:
        c.stop()


def _start_put(url: str, size: int, first: bytes) -> http.client.HTTPConnection:
    """A PUT of `size` bytes, headers and the first piece sent; the rest is the caller's."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("PUT", f"{u.path}?{u.query}", skip_accept_encoding=True)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    conn.send(first)
    return conn


@pytest.mark.parametrize("size", [1024, 3 * 1024 * 1024], ids=["inline", "blob"])
def test_a_slow_put_never_lands_in_the_bucket_re_created_by_another_peer(mesh, size: int) -> None:
    c, mallory, victim = mesh
    name = f"race-{uuid.uuid4().hex[:10]}"
    mallory.s3.create_bucket(Bucket=name)
    url = mallory.s3.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "planted.txt"})
    body = b"x" * size
    conn = _start_put(url, size, body[: size // 2])  # checked and allowed: mallory owns the bucket now
    mallory.s3.delete_bucket(Bucket=name)
    victim.s3.create_bucket(Bucket=name)
    conn.send(body[size // 2 :])
    resp = conn.getresponse()
    answer = resp.read()
    conn.close()
    assert resp.status == 404 and b"<Code>NoSuchBucket</Code>" in answer, (resp.status, answer)
    assert victim.s3.list_objects_v2(Bucket=name).get("KeyCount") == 0
    with pytest.raises(ClientError) as e:
        victim.s3.head_object(Bucket=name, Key="planted.txt")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_slow_config_put_never_lands_in_the_successor(mesh) -> None:
    """A lifecycle rule that expires everything, checked on mallory's bucket, must not reach victim's."""
    c, mallory, victim = mesh
    name = f"race-{uuid.uuid4().hex[:10]}"
    mallory.s3.create_bucket(Bucket=name)
    doc = (
        b"<LifecycleConfiguration><Rule><ID>wipe</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>"
        b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"
    )
    md5 = base64.b64encode(hashlib.md5(doc).digest()).decode()
    url = f"{c.endpoint}/{name}?lifecycle"
    headers = {"Content-MD5": md5, "x-amz-content-sha256": hashlib.sha256(doc).hexdigest()}
    signed = AWSRequest("PUT", url, headers=headers, data=doc)
    SigV4Auth(Credentials(mallory.id, mallory.token), "s3", "us-east-1").add_auth(signed)
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest("PUT", f"{u.path}?{u.query}", skip_accept_encoding=True)
    for k, v in signed.headers.items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(doc)))
    conn.endheaders()
    conn.send(doc[:10])
    mallory.s3.delete_bucket(Bucket=name)
    victim.s3.create_bucket(Bucket=name)
    conn.send(doc[10:])
    resp = conn.getresponse()
    answer = resp.read()
    conn.close()
    assert resp.status == 404 and b"<Code>NoSuchBucket</Code>" in answer, (resp.status, answer)
    with pytest.raises(ClientError) as e:
        victim.s3.get_bucket_lifecycle_configuration(Bucket=name)
    assert e.value.response["Error"]["Code"] == "NoSuchLifecycleConfiguration"
