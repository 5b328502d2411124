"""HTTPS on each listener (`tls:` for listen, `s3.tls:` for s3.listen): boto3 verifying against the test's
own CA on both, the minimum TLS version enforced, https in the log and in the CLI's derived endpoint, and
a certificate whose key is not its own (or a key others may read, or an encrypted one) refused at start
in one line."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config
from conftest import Coordinator, free_port, start_coordinator, tunnelmesh_exe
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PASSWORD = "open-sesame-7f3a"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate it signed for 127.0.0.1 and localhost, its key, and another key."""
    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tunnelmesh test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "ca": _write(d / "ca.pem", ca.public_bytes(serialization.Encoding.PEM), 0o644),
        "cert": _write(d / "cert.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644),
        "key": _write(d / "key.pem", _key_pem(key)),
        "other_key": _write(d / "other-key.pem", _key_pem(ec.generate_private_key(ec.SECP256R1()))),
        "locked_key": _write(
            d / "locked-key.pem",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(PASSWORD.encode()),
            ),
        ),
    }


def _tls_yaml(pki: dict[str, Path], key: str = "key", s3_min: str = "1.3") -> str:
    """s3.tls (indented under the s3 block start_coordinator writes), then the top level's tls."""
    return (
        f"  tls:\n    cert: {pki['cert']}\n    key: {pki[key]}\n    min_version: '{s3_min}'\n"
        f"tls:\n  cert: {pki['cert']}\n  key: {pki[key]}\n"
    )


@pytest.fixture(scope="module")
def tls_coordinator(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]):
    c = start_coordinator(tmp_path_factory.mktemp("tls"), extra_yaml=_tls_yaml(pki), workers=1)
    yield c
    c.stop()


def _client(c: Coordinator, endpoint: str, ca: Path):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="admin",
        aws_secret_access_key=c.token,
        region_name="us-east-1",
        verify=str(ca),
        config=Config(retries={"max_attempts": 1}),
    )


def test_boto3_over_https_on_both_listeners(tls_coordinator: Coordinator, pki: dict[str, Path]) -> None:
    c = tls_coordinator
    main = _client(c, f"https://127.0.0.1:{c.port}/s3", pki["ca"])
    root = _client(c, f"https://127.0.0.1:{c.s3_port}", pki["ca"])
    main.create_bucket(Bucket="secure")
    body = os.urandom(300_000)
    main.put_object(Bucket="secure", Key="a/b", Body=body)
    assert root.get_object(Bucket="secure", Key="a/b")["Body"].read() == body
    root.put_object(Bucket="secure", Key="c", Body=b"from s3.listen")
    assert main.get_object(Bucket="secure", Key="c")["Body"].read() == b"from s3.listen"
    # the start-up lines name the scheme clients must use
    c.wait_for_log(rf"S3 API at https://127\.0\.0\.1:{c.port}/s3 ")
    c.wait_for_log(rf"S3 API at https://127\.0\.0\.1:{c.s3_port}\n")


def test_a_form_uploads_location_names_https(tls_coordinator: Coordinator, pki: dict[str, Path]) -> None:
    """A browser form upload answers with the object's URL: over TLS an http:// one would send the
    browser following it to a port that speaks no plain HTTP."""
    c = tls_coordinator
    main = _client(c, f"https://127.0.0.1:{c.port}/s3", pki["ca"])
    main.create_bucket(Bucket="forms")
    post = main.generate_presigned_post("forms", "uploaded.txt")
    r = requests.post(post["url"], data=post["fields"], files={"file": b"hi"}, verify=str(pki["ca"]), timeout=30)
    assert r.status_code == 204, r.text
    assert r.headers["location"] == f"https://127.0.0.1:{c.port}/s3/forms/uploaded.txt"


@pytest.mark.parametrize("listener", ["main", "s3"])
def test_plain_http_gets_no_answer_and_an_unknown_ca_is_refused(
    tls_coordinator: Coordinator, pki: dict[str, Path], listener: str
) -> None:
    c = tls_coordinator
    port = c.port if listener == "main" else c.s3_port
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=30)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"https://127.0.0.1:{port}/", timeout=30)  # the system's CAs never signed it
    assert requests.get(f"https://127.0.0.1:{port}/", timeout=30, verify=str(pki["ca"])).status_code in (403, 404)


def _handshake(port: int, ca: Path, newest: ssl.TLSVersion) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.maximum_version = newest
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        return str(s.version())


def test_min_version_per_listener(tls_coordinator: Coordinator, pki: dict[str, Path]) -> None:
    """`tls:` defaults to 1.2 (older SDKs); s3.tls here asks for 1.3, so a client stuck at 1.2 is refused."""
    c = tls_coordinator
    assert _handshake(c.port, pki["ca"], ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(c.s3_port, pki["ca"], ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    with pytest.raises(ssl.SSLError):
        _handshake(c.s3_port, pki["ca"], ssl.TLSVersion.TLSv1_2)


def test_the_cli_derives_an_https_endpoint_from_the_config(tls_coordinator: Coordinator, pki: dict[str, Path]) -> None:
    c = tls_coordinator
    _client(c, f"https://127.0.0.1:{c.port}/s3", pki["ca"]).create_bucket(Bucket="seen-by-cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELMESH_")}
    env.update(TUNNELMESH_ADMIN_TOKEN=c.token, REQUESTS_CA_BUNDLE=str(pki["ca"]))
    res = subprocess.run(
        [tunnelmesh_exe(), "bucket", "list", "--json", "--config", str(c.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "seen-by-cli" in {b["name"] for b in json.loads(res.stdout)["buckets"]}


def _start_refused(tmp_path: Path, yaml: str) -> list[str]:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"listen: 127.0.0.1:{free_port()}\nworkers: 2\ns3:\n  data_dir: {tmp_path / 'data'}\n"
        f"  listen: 127.0.0.1:{free_port()}\n" + yaml
    )
    res = subprocess.run(
        [sys.executable, "-m", "tunnelmesh", "coordinator", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, TUNNELMESH_ADMIN_TOKEN="t" * 32),
    )
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    return [line for line in res.stderr.splitlines() if line.strip()]


def test_a_certificate_with_another_key_fails_the_start_in_one_line(tmp_path: Path, pki: dict[str, Path]) -> None:
    lines = _start_refused(tmp_path, _tls_yaml(pki, key="other_key"))
    assert len(lines) == 1, lines
    # s3.tls is checked after tls: the first bad pair is named
    assert lines[0].startswith("tunnelmesh: configuration error: tls: "), lines
    assert "not a certificate and its private key" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before anything was made
    lines = _start_refused(
        tmp_path, f"  tls:\n    cert: {pki['cert']}\n    key: {pki['other_key']}\n"
    )  # s3.listen only
    assert len(lines) == 1 and lines[0].startswith("tunnelmesh: configuration error: s3.tls: "), lines


def test_a_key_others_may_read_is_refused(tmp_path: Path, pki: dict[str, Path]) -> None:
    shared = _write(tmp_path / "shared-key.pem", pki["key"].read_bytes(), 0o640)
    lines = _start_refused(tmp_path, f"tls:\n  cert: {pki['cert']}\n  key: {shared}\n")
    assert len(lines) == 1, lines
    assert lines[0] == f"tunnelmesh: configuration error: tls.key: {shared}: mode 0640; it must be 0600 (owner only)"


def test_an_encrypted_key_is_refused_in_one_line(tmp_path: Path, pki: dict[str, Path]) -> None:
    """granian 2.8.7 cannot open an encrypted key (its worker aborts, respawn after respawn): the supervisor
    says so once, before any worker starts."""
    lines = _start_refused(tmp_path, f"tls:\n  cert: {pki['cert']}\n  key: {pki['locked_key']}\n")
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tunnelmesh: configuration error: tls.key: {pki['locked_key']} is encrypted"), lines
    assert not (tmp_path / "data").exists()
