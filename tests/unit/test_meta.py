"""The SQLite metadata layer on a real database file."""

from __future__ import annotations

import pytest

from tunnelmesh.s3.errors import S3Error
from tunnelmesh.store import meta


@pytest.fixture
def m(tmp_path) -> meta.Meta:
    conn = meta.connect(tmp_path / "meta.sqlite3")
    meta.init_schema(conn)
    return meta.Meta(conn)


def test_buckets_remember_their_creator(m) -> None:
    m.create_bucket("shared", "peer-a", "us-east-1", 1.0)
    with pytest.raises(S3Error) as e:
        m.create_bucket("shared", "peer-b", "us-east-1", 2.0)
    assert e.value.code == "BucketAlreadyExists"
    with pytest.raises(S3Error) as e:
        m.create_bucket("shared", "peer-a", "us-east-1", 2.0)
    assert e.value.code == "BucketAlreadyOwnedByYou"
    assert m.bucket("shared").owner == "peer-a"


def test_room_is_the_smaller_of_quota_and_store_limit(m) -> None:
    m.create_bucket("a", "p", "r", 1.0)
    assert m.room(m.bucket("a"), 1000) == 1000
    m.set_quota("a", 300)
    assert m.room(m.bucket("a"), 1000) == 300
    assert m.room(m.bucket("a"), 100) == 100
