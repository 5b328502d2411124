"""Peers for integration tests: one made through the real CLI, and a boto3 client signing as it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

REGION = "us-east-1"


def s3_client(endpoint: str, key: str, secret: str, signature_version: str = "s3v4") -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(
            retries={"max_attempts": 1}, s3={"addressing_style": "path"}, signature_version=signature_version
        ),
    )


def cli_ok(c: Any, *args: str, token: str | None = None) -> str:
    """`tunnelmesh ARGS` against coordinator `c`, as `token`'s holder (default: the admin); its output."""
    r = c.cli(*args, token=token, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return str(r.stdout)


def cli_fails(c: Any, code: str, *args: str, token: str | None = None) -> None:
    """`tunnelmesh ARGS` refused with the S3 or admin error `code`, and no traceback."""
    r = c.cli(*args, token=token, timeout=60)
    assert r.returncode != 0 and code in r.stderr, (args, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr


@dataclass
class TestPeer:
    id: str
    token: str
    s3: Any

    __test__ = False  # not a test class, whatever its name


def add_peer(c: Any, name: str, admin: bool = False) -> TestPeer:
    """A new peer of coordinator `c` (tests/conftest.py's Coordinator), added with `tunnelmesh peer add`."""
    doc = json.loads(cli_ok(c, "peer", "add", name, *(["--admin"] if admin else []), "--json"))
    return TestPeer(doc["peer_id"], doc["token"], s3_client(c.endpoint, doc["peer_id"], doc["token"]))


def err(fn: Any) -> tuple[int, str]:
    """The (HTTP status, S3 error code) `fn`'s S3 call is refused with; it must be refused."""
    with pytest.raises(ClientError) as e:
        fn()
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]
