"""The write rules (store/commits.py) run through a metadata backend, on every backend: each test
drives the same functions the Store runs, inside the backend's transactions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from meta_backends import BACKENDS
from meta_rules import Rules

from tunnelmesh.store import commits
from tunnelmesh.store.errors import BucketExists, InvalidPart, NoSuchBucket, NoSuchKey, NoSuchUpload
from tunnelmesh.store.records import ObjectRecord, Part, Segment, Upload, WriteConditions


@pytest.fixture(params=sorted(BACKENDS))
def m(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rules]:
    rules = Rules(BACKENDS[request.param](tmp_path))
    yield rules
    rules.close()


def test_buckets_remember_their_creator(m) -> None:
    m.create_bucket("shared", "peer-a", "us-east-1", 1.0)
    with pytest.raises(BucketExists) as e:
        m.create_bucket("shared", "peer-b", "us-east-1", 2.0)
    assert not e.value.owned_by_caller
    with pytest.raises(BucketExists) as e:
        m.create_bucket("shared", "peer-a", "us-east-1", 2.0)
    assert e.value.owned_by_caller
    assert m.bucket("shared").owner == "peer-a"


def test_room_is_the_smaller_of_quota_and_store_limit(m) -> None:
    m.create_bucket("a", "p", "r", 1.0)
    assert m.room(m.bucket("a"), 1000) == 1000
    m.set_quota("a", 300)
    assert m.room(m.bucket("a"), 1000) == 300
    assert m.room(m.bucket("a"), 100) == 100


def _upload(m: Rules, upload_id: str = "u1", initiated: float = 10.0) -> Upload:
    up = Upload(upload_id, "b", "k", initiated, "p", {}, None)
    m.create_upload(up)
    return up


def _part(number: int, etag: str, blob: str, mtime: float = 20.0, size: int = 100) -> Part:
    return Part(number, size, etag, mtime, blob)


def _object_from(parts: list[Part]) -> ObjectRecord:
    """What the Complete handler builds from the parts it read before its commit."""
    return ObjectRecord(
        bucket="b",
        key="k",
        size=sum(p.size for p in parts),
        etag="e-1",
        mtime=30.0,
        headers={},
        checksums={},
        segments=[Segment(p.blob, p.size, p.etag) for p in parts],
        owner="p",
    )


@pytest.fixture
def mb(m: Rules) -> Rules:
    m.create_bucket("b", "p", "r", 1.0)
    return m


def test_complete_names_the_blob_of_a_part_reuploaded_with_the_same_etag_since_it_was_read(mb) -> None:
    _upload(mb)
    first = _part(1, "aa", "blob-1")
    mb.put_part("b", "k", "u1", first, 10**9)
    rec = _object_from([first])  # built from blob-1 ...
    assert mb.put_part("b", "k", "u1", _part(1, "aa", "blob-2"), 10**9) == ["blob-1"]  # ... which is now freed
    freed = mb.complete_upload("u1", rec, [1], "1:aa", WriteConditions(), 10**9)
    assert freed == []
    assert [s.blob for s in mb.get_object("b", "k").segments] == ["blob-2"]
    assert mb.referenced_blobs() == {"blob-2"}
    assert (mb.bucket("b").used, mb.bucket("b").mpu_used) == (100, 0)


def test_complete_refuses_a_part_reuploaded_with_other_bytes_and_changes_nothing(mb) -> None:
    _upload(mb)
    first = _part(1, "aa", "blob-1")
    mb.put_part("b", "k", "u1", first, 10**9)
    rec = _object_from([first])
    mb.put_part("b", "k", "u1", _part(1, "bb", "blob-2"), 10**9)
    with pytest.raises(InvalidPart) as e:
        mb.complete_upload("u1", rec, [1], "1:aa", WriteConditions(), 10**9)
    assert (e.value.part_number, e.value.etag) == (1, "aa")
    assert mb.get_object("b", "k") is None
    assert mb.referenced_blobs() == {"blob-2"}
    assert mb.bucket("b").mpu_used == 100


def test_complete_frees_every_part_blob_the_object_does_not_name(mb) -> None:
    _upload(mb)
    one, two = _part(1, "aa", "blob-1"), _part(2, "bb", "blob-2")
    mb.put_part("b", "k", "u1", one, 10**9)
    mb.put_part("b", "k", "u1", two, 10**9)
    freed = mb.complete_upload("u1", _object_from([two]), [2], "2:bb", WriteConditions(), 10**9)
    assert freed == ["blob-1"]
    assert mb.referenced_blobs() == {"blob-2"}


def test_a_second_identical_complete_succeeds_without_changes_and_a_different_one_is_no_such_upload(mb) -> None:
    _upload(mb)
    one = _part(1, "aa", "blob-1")
    mb.put_part("b", "k", "u1", one, 10**9)
    assert mb.complete_upload("u1", _object_from([one]), [1], "1:aa", WriteConditions(), 10**9) == []
    assert mb.complete_upload("u1", _object_from([one]), [1], "1:aa", WriteConditions(), 10**9) == []
    assert mb.bucket("b").objects == 1 and mb.bucket("b").used == 100
    with pytest.raises(NoSuchUpload) as e:
        mb.complete_upload("u1", _object_from([one]), [1], "1:zz", WriteConditions(), 10**9)
    assert e.value.upload_id == "u1"


def test_expiry_goes_by_the_last_part_and_rechecks_under_the_commit(mb) -> None:
    _upload(mb, "idle", initiated=10.0)
    mb.put_part("b", "k", "idle", _part(1, "aa", "blob-1", mtime=20.0), 10**9)
    _upload(mb, "slow", initiated=5.0)  # initiated long ago, but a part came recently
    mb.put_part("b", "k", "slow", _part(1, "bb", "blob-2", mtime=100.0), 10**9)
    _upload(mb, "empty", initiated=15.0)
    assert [u.upload_id for u in mb.stale_uploads(50.0, 10)] == ["empty", "idle"]  # oldest activity first
    assert mb.expire_upload("idle", 50.0) == (["blob-1"], 100)
    assert mb.expire_upload("idle", 50.0) is None  # already gone: a second pass is harmless
    assert mb.expire_upload("slow", 50.0) is None  # not stale
    assert mb.expire_upload("empty", 50.0) == ([], 0)
    assert [u.upload_id for u in mb.list_uploads("b", "", "", "", 10)] == ["slow"]
    assert mb.bucket("b").mpu_used == 100
    assert mb.pending_uploads() == {"b": 1}


def _obj(key: str, blob: str, mtime: float, etag: str = "same-bytes") -> ObjectRecord:
    return ObjectRecord(
        bucket="s",
        key=key,
        size=100,
        etag=etag,
        mtime=mtime,
        headers={},
        checksums={},
        segments=[Segment(blob, 100, etag)],
        owner="p",
    )


def test_scrub_repair_deletes_only_the_version_found_rotten_never_an_overwrite_since(m) -> None:
    """Found in the attacker's review: repair deleted by key after a long scrub, so an acknowledged
    overwrite made meanwhile (same bytes, so the same ETag) was deleted with the rotten version."""
    m.create_bucket("s", "p", "r", 1.0)
    m.put_object(_obj("k", "rotten-blob", 10.0), WriteConditions(), 10**9)
    m.put_object(_obj("k", "fresh-blob", 20.0), WriteConditions(), 10**9)  # the overwrite
    assert m.delete_object_version("s", "k", 10.0, ["rotten-blob"]) == []
    assert m.get_object("s", "k").segments[0].blob == "fresh-blob"
    # the version found rotten, still in place, is deleted, and its blob freed
    m.put_object(_obj("r", "rotten-2", 30.0), WriteConditions(), 10**9)
    assert m.delete_object_version("s", "r", 30.0, ["rotten-2"]) == ["rotten-2"]
    assert m.get_object("s", "r") is None
    assert (m.bucket("s").objects, m.bucket("s").used) == (1, 100)


def test_complete_keeps_each_parts_checksum_of_the_objects_algorithm_in_its_segment(mb) -> None:
    _upload(mb)
    one = Part(1, 100, "aa", 20.0, "blob-1", {"crc32": "AAAAAQ==", "sha1": "other-algorithm"})
    two = Part(2, 100, "bb", 20.0, "blob-2", {"crc32": "AAAAAg=="})
    for p in (one, two):
        mb.put_part("b", "k", "u1", p, 10**9)
    rec = _object_from([one, two])
    rec.checksums = {"crc32": "AAAAAw==-2"}
    mb.complete_upload("u1", rec, [1, 2], "1:aa,2:bb", WriteConditions(), 10**9)
    segments = mb.get_object("b", "k").segments
    assert [(s.blob, s.checksums) for s in segments] == [
        ("blob-1", {"crc32": "AAAAAQ=="}),
        ("blob-2", {"crc32": "AAAAAg=="}),
    ]
    # the part checksums do not hide the blob ids from the tag scan that recovery runs
    assert mb.referenced_blobs_tagged(["-1", "-2"]) == {"blob-1", "blob-2"}


def test_tags_are_set_on_the_current_object_and_change_no_counter(m) -> None:
    m.create_bucket("b", "p", "r", 1.0)
    rec = ObjectRecord("b", "k", 5, "e", 2.0, {}, {}, [Segment("blob-k", 5, "e")], "p")
    m.put_object(rec, WriteConditions(), 1 << 30)
    before = m.bucket("b")
    assert m.freed(lambda tx: commits.set_object_tags(tx, "b", "k", None, {"a": "1"})) == []
    assert m.read(lambda r: r.get_object("b", "k")).tags == {"a": "1"}
    assert m.bucket("b") == before  # no counter moved
    m.write(lambda tx: commits.set_object_tags(tx, "b", "k", None, None))
    assert m.read(lambda r: r.get_object("b", "k")).tags is None
    with pytest.raises(NoSuchKey):
        m.write(lambda tx: commits.set_object_tags(tx, "b", "absent", None, {"a": "1"}))
    with pytest.raises(NoSuchBucket):
        m.write(lambda tx: commits.set_object_tags(tx, "nob", "k", None, {"a": "1"}))
    # an overwrite that names no tags leaves the key untagged
    m.write(lambda tx: commits.set_object_tags(tx, "b", "k", None, {"a": "1"}))
    m.put_object(ObjectRecord("b", "k", 5, "e2", 3.0, {}, {}, [], "p", data=b"12345"), WriteConditions(), 1 << 30)
    assert m.read(lambda r: r.get_object("b", "k")).tags is None
    m.write(lambda tx: commits.set_bucket_tags(tx, "b", '{"t": "v"}'))
    assert m.bucket("b").tags == '{"t": "v"}'
    m.write(lambda tx: commits.set_bucket_tags(tx, "b", None))
    assert m.bucket("b").tags is None
    with pytest.raises(NoSuchBucket):
        m.write(lambda tx: commits.set_bucket_tags(tx, "nob", None))
