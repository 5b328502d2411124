"""Each layer raises its own typed errors and each edge maps them in one place.

The store's errors become exactly the S3 answers (status, code, message, extra XML fields) the S3
API gave when the store raised S3Error itself; the coordinator's become the admin API's JSON answers.
"""

from __future__ import annotations

import ast
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import tunnelmesh.coordinator
import tunnelmesh.store
from tunnelmesh.admin.errors import admin_error
from tunnelmesh.coordinator import errors as ce
from tunnelmesh.s3.store_errors import s3_error
from tunnelmesh.store import errors as se
from tunnelmesh.store.engine import Store, prepare_data_dir

PRECONDITION = "At least one of the pre-conditions you specified did not hold"
NO_UPLOAD = (
    "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or "
    "completed."
)
BAD_PART = (
    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified "
    "entity tag may not match the part's entity tag."
)

# one instance of every store error (two where the answer depends on a field), with the S3 answer
S3_ANSWERS: list[tuple[se.StoreError, int, str, str, dict[str, str]]] = [
    (se.NoSuchBucket("b"), 404, "NoSuchBucket", "The specified bucket does not exist", {"BucketName": "b"}),
    (
        se.BucketExists("b", owned_by_caller=True),
        409,
        "BucketAlreadyOwnedByYou",
        "Your previous request to create the named bucket succeeded and you already own it.",
        {"BucketName": "b"},
    ),
    (
        se.BucketExists("b", owned_by_caller=False),
        409,
        "BucketAlreadyExists",
        "The requested bucket name is not available. Please select a different name and try again.",
        {"BucketName": "b"},
    ),
    (
        se.BucketDeleteDenied("b"),
        403,
        "AccessDenied",
        "Only an admin, or the peer that created it when it has no quota, may delete a bucket.",
        {"BucketName": "b"},
    ),
    (se.BucketNotEmpty("b"), 409, "BucketNotEmpty", "The bucket you tried to delete is not empty", {"BucketName": "b"}),
    (
        se.ReservedBucket("_tunnelmesh"),
        400,
        "InvalidArgument",
        "The coordinator's own bucket cannot have a quota.",
        {"BucketName": "_tunnelmesh"},
    ),
    (
        se.ReservedBucket("_tunnelmesh", "versioning"),
        400,
        "InvalidArgument",
        "The coordinator's own bucket cannot have versioning.",
        {"BucketName": "_tunnelmesh"},
    ),
    (
        se.InvalidBucketState("b", "Versioning cannot be suspended on a bucket with object lock"),
        409,
        "InvalidBucketState",
        "Versioning cannot be suspended on a bucket with object lock.",
        {"BucketName": "b"},
    ),
    (
        se.IsDeleteMarker("b", "k", "null"),
        405,
        "MethodNotAllowed",
        "The specified method is not allowed against this resource.",
        {"Method": "", "ResourceType": "DeleteMarker"},
    ),
    (
        se.ObjectLocked("b", "k", "null", "it is under a legal hold"),
        403,
        "AccessDenied",
        "Access Denied because object protected by object lock: it is under a legal hold.",
        {},
    ),
    (
        se.LockNotEnabled("b"),
        400,
        "InvalidRequest",
        "Bucket is missing Object Lock Configuration",
        {"BucketName": "b"},
    ),
    (
        se.NoSuchVersion("b", "k", "null"),
        404,
        "NoSuchVersion",
        "The specified version does not exist.",
        {"Key": "k", "VersionId": "null"},
    ),
    (
        se.QuotaExceeded("bucket", "b", 100, 90, 20),
        403,
        "QuotaExceeded",
        "Bucket b quota exceeded: quota 100 bytes, used 90 bytes, this write needs 20 more.",
        {"BucketName": "b"},
    ),
    (
        se.QuotaExceeded("store", "b", 1000, 990, 20),
        403,
        "QuotaExceeded",
        "Store size limit exceeded: max_size 1000 bytes, used 990 bytes, this write needs 20 more (bucket b).",
        {"BucketName": "b"},
    ),
    (
        se.NoRoom("b", 7),
        403,
        "QuotaExceeded",
        "Bucket b: this upload would exceed the bucket quota or the store size limit (room for 7 bytes).",
        {"BucketName": "b"},
    ),
    (se.ObjectTooLarge(5), 400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", {}),
    (se.NoSuchKey("b", "k"), 404, "NoSuchKey", "The specified key does not exist.", {}),
    (se.NoSuchUpload("u1"), 404, "NoSuchUpload", NO_UPLOAD, {"UploadId": "u1"}),
    (se.InvalidPart(3, "e3"), 400, "InvalidPart", BAD_PART, {"PartNumber": "3", "ETag": "e3"}),
    (se.PreconditionFailed("If-None-Match"), 412, "PreconditionFailed", PRECONDITION, {"Condition": "If-None-Match"}),
    (se.PreconditionFailed("If-Match"), 412, "PreconditionFailed", PRECONDITION, {"Condition": "If-Match"}),
    (se.DiskFull(), 507, "InsufficientStorage", "The coordinator's disk is full.", {}),
    (se.WriteFailed("object"), 500, "InternalError", "The object could not be stored.", {}),
    (se.WriteFailed("metadata"), 500, "InternalError", "The metadata could not be committed.", {}),
    (
        se.Unavailable(),
        503,
        "ServiceUnavailable",
        "The metadata database is unavailable. Please try again.",
        {},
    ),
    (
        se.CommitUnknown(),
        503,
        "ServiceUnavailable",
        "The metadata database is unavailable. Please try again.",
        {},
    ),
    (
        se.WriterRetired(),
        503,
        "ServiceUnavailable",
        "The metadata database is unavailable. Please try again.",
        {},
    ),
    (
        se.UpgradePending("tagging", "node-b", 5, 6),
        503,
        "ServiceUnavailable",
        "tagging is refused until every coordinator runs this release: node node-b (schema 5) is older than schema 6.",
        {},
    ),
    (
        se.EncryptionUnavailable(),
        501,
        "NotImplemented",
        "Server-side encryption is not configured on this server (s3.sse_key_file): the object was not stored.",
        {"Header": "x-amz-server-side-encryption"},
    ),
]

ADMIN_ANSWERS: list[tuple[ce.CoordinatorError, int, str, str]] = [
    (ce.NoSuchPeer("peer-1"), 404, "NoSuchPeer", "No peer peer-1."),
    (ce.NoSuchAccessKey("TMAKABCDEFGHIJKLMNOP"), 404, "NoSuchAccessKey", "No access key TMAKABCDEFGHIJKLMNOP."),
    (ce.NoSuchShare("s"), 404, "NoSuchShare", "no share s"),
    (ce.NoBucketToShare("b"), 404, "NoSuchBucket", "no bucket b"),
    (
        ce.InvalidInput("name", "A peer name is 1 to 128 characters."),
        400,
        "InvalidArgument",
        "A peer name is 1 to 128 characters.",
    ),
    (
        ce.InvalidArchive("it has no manifest.json"),
        400,
        "InvalidArchive",
        "The backup archive was refused: it has no manifest.json. Nothing was changed.",
    ),
    (ce.NoSuchGrant("b"), 404, "NoSuchGrant", "No grant of bucket b matched."),
    (ce.NoSuchGroup("ci"), 404, "NoSuchGroup", "No group ci."),
    (ce.GroupExists("ci"), 409, "GroupAlreadyExists", "Group ci exists already."),
    (ce.NotAMember("ci", "peer-1"), 404, "NoSuchGroupMember", "peer-1 is not a member of group ci."),
    (
        ce.PublicAccessBlocked("b"),
        403,
        "AccessDenied",
        "Bucket b's public access block (BlockPublicPolicy) refuses grants to anyone; lift it first "
        "(network set default_public_access_block off, or the bucket's own block).",
    ),
    (
        ce.Conflict("network/config.json"),
        409,
        "ConditionalRequestConflict",
        "network/config.json kept changing; try again.",
    ),
    (
        ce.CorruptRecord("_tunnelmesh/peers/p.json: blob b is missing"),
        500,
        "CorruptRecord",
        "_tunnelmesh/peers/p.json: blob b is missing (restore it from a backup, or delete it).",
    ),
]


def _subclasses(base: type) -> set[type]:
    found = set(base.__subclasses__())
    for c in list(found):
        found |= _subclasses(c)
    return found


def test_every_store_error_has_an_s3_answer_in_the_table() -> None:
    assert _subclasses(se.StoreError) == {type(e) for e, *_ in S3_ANSWERS}


@pytest.mark.parametrize("error, status, code, message, fields", S3_ANSWERS, ids=lambda v: repr(v)[:40])
def test_a_store_error_maps_to_the_s3_answer_clients_have_always_had(
    error: se.StoreError, status: int, code: str, message: str, fields: dict[str, str]
) -> None:
    s3 = s3_error(error)
    assert (s3.status, s3.code, s3.message, s3.fields) == (status, code, message, fields)


@pytest.mark.parametrize("error, status, code, message, fields", S3_ANSWERS, ids=lambda v: repr(v)[:40])
def test_the_admin_api_answers_a_store_error_with_the_s3_code_and_message(
    error: se.StoreError, status: int, code: str, message: str, fields: dict[str, str]
) -> None:
    assert admin_error(error) == (status, code, message)


def test_every_coordinator_error_has_an_admin_answer_in_the_table() -> None:
    assert _subclasses(ce.CoordinatorError) == {type(e) for e, *_ in ADMIN_ANSWERS}


@pytest.mark.parametrize("error, status, code, message", ADMIN_ANSWERS, ids=lambda v: repr(v)[:40])
def test_a_coordinator_error_maps_to_its_admin_answer(
    error: ce.CoordinatorError, status: int, code: str, message: str
) -> None:
    assert admin_error(error) == (status, code, message)


def _imports(package_dir: Path) -> dict[str, set[str]]:
    """Each module of the package, with every module it imports from."""
    out: dict[str, set[str]] = {}
    for path in sorted(package_dir.glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
        out[path.name] = names
    return out


def test_the_store_imports_nothing_from_the_s3_layer() -> None:
    store_dir = Path(tunnelmesh.store.__file__).parent
    imports = _imports(store_dir)
    assert "errors.py" in imports and "commits.py" in imports  # the walk saw the package
    leaks = {f: sorted(m for m in names if m.startswith("tunnelmesh.s3")) for f, names in imports.items()}
    assert {f: m for f, m in leaks.items() if m} == {}
    assert [p.name for p in store_dir.glob("*.py") if "S3Error" in p.read_text()] == []


def test_the_coordinator_raises_no_s3_errors() -> None:
    coordinator_dir = Path(tunnelmesh.coordinator.__file__).parent
    imports = _imports(coordinator_dir)
    assert "state.py" in imports
    assert sorted(f for f, names in imports.items() if "tunnelmesh.s3.errors" in names) == []


async def _body(n: int) -> AsyncIterator[bytes]:
    yield b"x" * n


@pytest.mark.parametrize(
    "room, expected", [(None, se.ObjectTooLarge), (50, se.NoRoom), (500, se.ObjectTooLarge)], ids=str
)
def test_ingest_cuts_off_a_body_past_its_limit_or_past_the_room_left(
    tmp_path: Path, room: int | None, expected: type[se.StoreError]
) -> None:
    prepare_data_dir(tmp_path)
    store = Store(tmp_path, 10**9)
    try:
        with pytest.raises(expected) as e:
            asyncio.run(store.ingest(_body(200), 100, room, "b"))
        if isinstance(e.value, se.NoRoom):
            assert (e.value.bucket, e.value.room) == ("b", 50)
        else:
            assert isinstance(e.value, se.ObjectTooLarge) and e.value.limit == 100
        # the cut-off body left nothing behind (temporaries live in per-process dirs under tmp/)
        assert [p for p in (tmp_path / "tmp").rglob("*") if p.is_file()] == []
    finally:
        store.close()
