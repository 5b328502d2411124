"""Peers for integration tests: one made through the real CLI, and a boto3 client signing as it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"


def s3_client(endpoint: str, key: str, secret: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}),
    )


@dataclass
class TestPeer:
    id: str
    token: str
    s3: Any

    __test__ = False  # not a test class, whatever its name


def add_peer(c: Any, name: str) -> TestPeer:
    """A new peer of coordinator `c` (tests/conftest.py's Coordinator), added with `tunnelmesh peer add`."""
    r = c.cli("peer", "add", name, "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    return TestPeer(doc["peer_id"], doc["token"], s3_client(c.endpoint, doc["peer_id"], doc["token"]))
