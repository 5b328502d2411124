"""The console in a real browser (Debian's chromium through Playwright): the flows of issue 16."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import requests
from conftest import Coordinator, bucket_exists

from .conftest import sign_in


def test_sign_in_wrong_token_refused_then_sign_out(page: Any, console_coord: Coordinator, shots: Path) -> None:
    page.goto("/console/")
    assert page.url.endswith("/console/login")
    page.screenshot(path=str(shots / "login.png"), full_page=True)
    page.fill("#token", "not-the-token-0123456789abcdef")
    page.click("#sign-in")
    assert page.locator("#refused").inner_text() == "Sign-in refused."
    assert page.context.cookies() == []
    page.screenshot(path=str(shots / "login-refused.png"), full_page=True)

    sign_in(page, console_coord.token)
    assert page.url.endswith("/console/")
    assert "admin" in page.locator(".who").inner_text()
    cookie = page.context.cookies()[0]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console/"
    # the script cannot read the session cookie, and the page's own assets loaded under the strict CSP
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("document.documentElement.dataset.console") == "ready"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(245, 246, 248)"
    page.screenshot(path=str(shots / "home.png"), full_page=True)

    page.click("#logout")
    page.wait_for_selector("#signed-out")
    assert page.context.cookies() == []
    page.screenshot(path=str(shots / "logout.png"), full_page=True)
    page.goto("/console/")
    assert page.url.endswith("/console/login")


def test_buckets_and_objects(page: Any, console_coord: Coordinator, shots: Path) -> None:
    """Create a bucket, browse into a prefix, details, download and compare bytes, a share link fetched
    anonymously, versioning, delete one object and then a selection, delete the bucket."""
    s3 = console_coord.client()
    sign_in(page, console_coord.token)
    bucket = f"flow-{uuid.uuid4().hex[:8]}"
    page.fill("#bucket-name", bucket)
    page.click("#create")
    page.wait_for_selector("#notice")
    assert page.locator("#notice").inner_text() == "Bucket created."
    assert bucket_exists(s3, bucket)

    data = os.urandom(300 * 1024)
    s3.put_object(
        Bucket=bucket, Key="docs/report.bin", Body=data, Metadata={"owner": "ops"}, ChecksumAlgorithm="SHA256"
    )
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"docs/notes-{i}.txt", Body=b"note %d" % i)
    s3.put_object(Bucket=bucket, Key="top.txt", Body=b"top")
    requests.put(
        f"http://127.0.0.1:{console_coord.port}/api/buckets/{bucket}/quota",
        json={"quota": 4 * 1024 * 1024},
        headers={"Authorization": f"Bearer {console_coord.token}"},
        timeout=30,
    ).raise_for_status()
    page.goto("/console/")
    row = page.locator(f"tr[data-bucket='{bucket}']")
    assert int(row.locator("meter").get_attribute("max")) == 4 * 1024 * 1024
    assert int(row.locator("meter").get_attribute("value")) == len(data) + 3 * 6 + 3
    page.screenshot(path=str(shots / "buckets.png"), full_page=True)

    row.locator("a").click()
    assert page.locator("#objects tr.folder a").inner_text() == "docs/"
    assert page.locator("#objects tr.object a").all_inner_texts() == ["top.txt"]
    page.click("#objects tr.folder a")
    assert page.locator("#objects tr.object a").all_inner_texts() == [
        "notes-0.txt",
        "notes-1.txt",
        "notes-2.txt",
        "report.bin",
    ]
    page.screenshot(path=str(shots / "objects.png"), full_page=True)

    page.click("text=report.bin")
    assert page.locator("#key").inner_text() == "docs/report.bin"
    assert page.locator("#etag").inner_text() == s3.head_object(Bucket=bucket, Key="docs/report.bin")["ETag"]
    assert "owner" in page.locator("#facts").inner_text() and "ops" in page.locator("#facts").inner_text()
    assert "SHA256" in page.locator("#facts").inner_text()
    page.screenshot(path=str(shots / "object.png"), full_page=True)
    with page.expect_download() as got:
        page.click("#download")
    download = got.value
    assert download.suggested_filename == "report.bin"
    assert Path(download.path()).read_bytes() == data

    page.select_option("#expires", "900")
    page.click("#make-link")
    link = page.locator("#link").input_value()
    assert "Treat it as a password" in page.locator("#bearer").inner_text()
    page.screenshot(path=str(shots / "share.png"), full_page=True)
    anonymous = requests.get(link, timeout=30)
    assert anonymous.status_code == 200 and anonymous.content == data
    assert "X-Amz-Expires=900" in link

    # versioning toggle
    page.goto(f"/console/b/{bucket}/")
    assert page.locator("#versioning-state").inner_text() == "Off"
    page.click("#versioning-toggle")
    assert page.locator("#versioning-state").inner_text() == "Enabled"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    page.click("#versioning-toggle")
    assert page.locator("#versioning-state").inner_text() == "Suspended"

    # delete one (details page), with a confirmation
    page.goto(f"/console/b/{bucket}/object?key=top.txt")
    page.click("#delete")
    assert page.locator("#to-delete li").all_inner_texts() == ["top.txt"]
    page.screenshot(path=str(shots / "delete-confirm.png"), full_page=True)
    page.click("#confirm-delete")
    assert page.locator("#notice").inner_text() == "Deleted."
    assert "top.txt" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]

    # delete a selection
    page.goto(f"/console/b/{bucket}/?prefix=docs/")
    page.check("input[value='docs/notes-0.txt']")
    page.check("input[value='docs/notes-2.txt']")
    page.click("#delete-selected")
    assert page.locator("#to-delete li").all_inner_texts() == ["docs/notes-0.txt", "docs/notes-2.txt"]
    page.click("#confirm-delete")
    left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert left == ["docs/notes-1.txt", "docs/report.bin"]
    # select all, then delete the rest
    page.check("#select-all")
    page.click("#delete-selected")
    page.click("#confirm-delete")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0

    # the bucket itself (versioned once: its noncurrent versions must go first, through S3)
    for v in s3.list_object_versions(Bucket=bucket).get("Versions", []) + s3.list_object_versions(Bucket=bucket).get(
        "DeleteMarkers", []
    ):
        s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    page.goto(f"/console/b/{bucket}/")
    page.click("#delete-bucket")
    page.fill("#confirm", bucket)
    page.screenshot(path=str(shots / "bucket-delete.png"), full_page=True)
    page.click("#confirm-delete")
    assert page.locator("#notice").inner_text() == "Bucket deleted."
    # a refusal is the S3 API's own, shown as such
    response = page.goto(f"/console/b/{bucket}/")
    assert response.status == 404 and "NoSuchBucket" in page.locator("#error").inner_text()
    page.screenshot(path=str(shots / "error.png"), full_page=True)
    assert not bucket_exists(s3, bucket)
