"""Lifecycle (docs/data-protection.md section 4), in process, on every metadata backend: the configuration's
checks and round trip, and the scanner applying it with its clock moved forward (never slept): current
versions expire (a delete marker in a versioned bucket), noncurrent ones after their days and past the
newest kept, lone delete markers go, incomplete uploads are aborted, locked versions stay, and a pass reads
only what is due."""

from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET

import pytest

from tunnelmesh.store import lifecycle

from .inprocess import InProcessS3

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
DAY = 86400.0


def md5(body: bytes) -> dict[str, str]:
    return {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}


def code(body: bytes) -> str:
    return ET.fromstring(body).findtext("Code") or ""


def configure(s3: InProcessS3, bucket: str, rules: str) -> tuple[int, bytes]:
    body = f"<LifecycleConfiguration>{rules}</LifecycleConfiguration>".encode()
    r = s3("PUT", f"/{bucket}", "lifecycle", body, md5(body))
    return r.status, r.body


def versioned(s3: InProcessS3, bucket: str) -> None:
    body = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    assert s3("PUT", f"/{bucket}", "versioning", body).status == 200


def versions(s3: InProcessS3, bucket: str) -> list[tuple[str, str, bool]]:
    """(key, kind, latest) of every version, in listing order."""
    doc = ET.fromstring(s3("GET", f"/{bucket}", "versions").body)
    return [
        (el.findtext(NS + "Key") or "", el.tag.removeprefix(NS), el.findtext(NS + "IsLatest") == "true")
        for el in doc
        if el.tag in (NS + "Version", NS + "DeleteMarker")
    ]


@pytest.fixture
def at(monkeypatch: pytest.MonkeyPatch):
    """Run one lifecycle pass as if it were `days` from now."""

    def run(s3: InProcessS3, days: float) -> lifecycle.PassReport:
        monkeypatch.setattr(lifecycle, "clock", lambda: time.time() + days * DAY)
        return s3.loop.run_until_complete(lifecycle.run_once(s3.store))

    return run


def test_a_configuration_is_checked_and_read_back_as_written(s3: InProcessS3) -> None:
    assert s3("PUT", "/bkt").status == 200
    assert code(s3("GET", "/bkt", "lifecycle").body) == "NoSuchLifecycleConfiguration"
    assert s3("DELETE", "/bkt", "lifecycle").status == 204  # none to delete is fine
    rules = (
        "<Rule><ID>logs</ID><Prefix>logs/</Prefix><Status>Enabled</Status><Expiration><Days>30</Days></Expiration></Rule>"
        "<Rule><ID>old</ID><Filter><And><Prefix>a/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
        "<ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter><Status>Disabled</Status>"
        "<NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays><NewerNoncurrentVersions>3"
        "</NewerNoncurrentVersions></NoncurrentVersionExpiration></Rule>"
        "<Rule><ID>mpu</ID><Filter><Prefix>up/</Prefix></Filter><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
        "</Rule>"
    )
    assert configure(s3, "bkt", rules)[0] == 200
    got = s3("GET", "/bkt", "lifecycle")
    assert got.status == 200
    assert got.body.decode().count("<Rule>") == 3 and "<Prefix>logs/</Prefix>" in got.body.decode()
    assert "<NewerNoncurrentVersions>3</NewerNoncurrentVersions>" in got.body.decode()
    bad = {
        "<Rule><ID>x</ID><Prefix/><Status>enabled</Status><Expiration><Days>1</Days></Expiration></Rule>": (
            "MalformedXML"
        ),
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status><Expiration><Days>0</Days></Expiration></Rule>": (
            "InvalidArgument"
        ),
        f"<Rule><ID>{'a' * 256}</ID><Prefix/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>": (
            "InvalidArgument"
        ),
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>" * 2: (
            "InvalidArgument"
        ),
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status>"
        "<Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration></Rule>": "InvalidArgument",
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status>"
        "<Transition><Days>1</Days><StorageClass>GLACIER</StorageClass></Transition></Rule>": "NotImplemented",
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status></Rule>": "MalformedXML",
        # a number past what day arithmetic takes, digits of another script, a second Expiration, a bad boolean
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status>"
        f"<Expiration><Days>{10**400}</Days></Expiration></Rule>": "MalformedXML",
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status>"
        "<Expiration><Days>2147483648</Days></Expiration></Rule>": "InvalidArgument",
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status><Expiration><Days>\u0663</Days></Expiration></Rule>": (
            "MalformedXML"
        ),
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"
        "<Expiration><Days>2</Days></Expiration></Rule>": "MalformedXML",
        "<Rule><ID>x</ID><Prefix/><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>yes</ExpiredObjectDeleteMarker></Expiration></Rule>": "MalformedXML",
        # filters an upload or a lone marker cannot have, and a tag key twice
        "<Rule><ID>x</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload></Rule>": "InvalidRequest",
        "<Rule><ID>x</ID><Filter><ObjectSizeGreaterThan>5</ObjectSizeGreaterThan></Filter><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>": "InvalidRequest",
        "<Rule><ID>x</ID><Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value></Tag>"
        "</And></Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>": "InvalidRequest",
    }
    for rule, expected in bad.items():
        status, body = configure(s3, "bkt", rule)
        assert code(body) == expected, rule
    assert "<ID>logs</ID>" in s3("GET", "/bkt", "lifecycle").body.decode()  # a refused one changed nothing
    assert s3("DELETE", "/bkt", "lifecycle").status == 204
    assert code(s3("GET", "/bkt", "lifecycle").body) == "NoSuchLifecycleConfiguration"


def test_current_versions_expire_after_their_days_and_not_before(s3: InProcessS3, at) -> None:
    assert s3("PUT", "/bkt").status == 200
    for key in ("logs/a", "logs/b", "keep/c"):
        assert s3("PUT", f"/bkt/{key}", body=b"x").status == 200
    rule = (
        "<Rule><ID>r</ID><Prefix>logs/</Prefix><Status>Enabled</Status><Expiration><Days>3</Days></Expiration></Rule>"
    )
    assert configure(s3, "bkt", rule)[0] == 200
    assert at(s3, 0).walked == 3  # the rules changed: the bucket is walked once
    assert at(s3, 2).expired == 0
    assert s3("GET", "/bkt/logs/a").status == 200
    report = at(s3, 4)
    assert report.expired == 2
    assert s3("GET", "/bkt/logs/a").status == 404 and s3("GET", "/bkt/keep/c").status == 200
    # written after the rules: hinted by its own write
    assert s3("PUT", "/bkt/logs/new", body=b"y").status == 200
    assert at(s3, 4).expired == 1
    assert at(s3, 400) == lifecycle.PassReport()  # nothing left due: a pass reads nothing


def test_in_a_versioned_bucket_expiry_leaves_a_marker_and_old_versions_go_in_turn(s3: InProcessS3, at) -> None:
    assert s3("PUT", "/bkt").status == 200
    versioned(s3, "bkt")
    rules = (
        "<Rule><ID>cur</ID><Prefix></Prefix><Status>Enabled</Status><Expiration><Days>10</Days></Expiration></Rule>"
        "<Rule><ID>nc</ID><Prefix></Prefix><Status>Enabled</Status><NoncurrentVersionExpiration>"
        "<NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersions>1</NewerNoncurrentVersions>"
        "</NoncurrentVersionExpiration></Rule>"
        "<Rule><ID>dm</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>"
    )
    assert configure(s3, "bkt", rules)[0] == 200
    at(s3, 0)
    for i in range(3):
        assert s3("PUT", "/bkt/k", body=f"v{i}".encode()).status == 200
    assert [kind for _, kind, _ in versions(s3, "bkt")] == ["Version"] * 3
    # two noncurrent versions; one newer noncurrent version is kept, so the oldest goes after a day
    at(s3, 2)
    assert len(versions(s3, "bkt")) == 2
    # the current one expires: a delete marker; the version it replaced is kept (the newest noncurrent)
    at(s3, 11)
    assert [(kind, latest) for _, kind, latest in versions(s3, "bkt")][0] == ("DeleteMarker", True)
    # a day after it became noncurrent, v1 goes (v2 is the one kept); then v2 ages out only behind a newer one
    at(s3, 13)
    kinds = [kind for _, kind, _ in versions(s3, "bkt")]
    assert kinds == ["DeleteMarker", "Version"]


def test_a_lone_delete_marker_goes_and_a_locked_version_stays(s3: InProcessS3, at) -> None:
    assert s3("PUT", "/bkt").status == 200
    versioned(s3, "bkt")
    assert s3("PUT", "/bkt/k", body=b"v").status == 200
    assert s3("DELETE", "/bkt/k").status == 204
    rules = (
        "<Rule><ID>nc</ID><Prefix></Prefix><Status>Enabled</Status><NoncurrentVersionExpiration>"
        "<NoncurrentDays>1</NoncurrentDays></NoncurrentVersionExpiration>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration></Rule>"
    )
    assert configure(s3, "bkt", rules)[0] == 200
    at(s3, 0)
    at(s3, 2)  # the noncurrent version goes, which leaves the marker alone; a later pass removes it
    at(s3, 2)
    assert versions(s3, "bkt") == []
    # a locked bucket: the noncurrent version is retained past its expiry
    assert s3("PUT", "/lck", headers={"x-amz-bucket-object-lock-enabled": "true"}).status == 200
    assert configure(s3, "lck", rules)[0] == 200
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 30 * DAY))
    lock = {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": until}
    assert s3("PUT", "/lck/k", body=b"held", headers=lock).status == 200
    assert s3("PUT", "/lck/k", body=b"new").status == 200
    at(s3, 0)
    report = at(s3, 5)
    assert report.later >= 1 and report.expired == 0  # moved to when the retention ends
    assert [kind for _, kind, _ in versions(s3, "lck")] == ["Version", "Version"]


def test_incomplete_uploads_are_aborted_after_their_days(s3: InProcessS3, at) -> None:
    assert s3("PUT", "/bkt").status == 200
    rule = (
        "<Rule><ID>mpu</ID><Filter><Prefix>big/</Prefix></Filter><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload></Rule>"
    )
    assert configure(s3, "bkt", rule)[0] == 200
    r = s3("POST", "/bkt/big/file", "uploads")
    upload = ET.fromstring(r.body).findtext(NS + "UploadId") or ""
    assert s3("PUT", "/bkt/big/file", f"partNumber=1&uploadId={upload}", b"part").status == 200
    at(s3, 1)
    assert s3("GET", "/bkt/big/file", f"uploadId={upload}").status == 200
    assert at(s3, 3).expired == 1
    assert code(s3("GET", "/bkt/big/file", f"uploadId={upload}").body) == "NoSuchUpload"
