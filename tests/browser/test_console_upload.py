"""Uploads in a real browser (docs/operations.md 1.4, step 9): the file picker and drag and drop on the objects
page, multipart parts sent straight to /s3 with per-file progress, and cancel, which leaves no upload behind."""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from conftest import Coordinator, md5_etag, wait_until
from support.peers import add_peer

from .conftest import sign_in

MiB = 1024 * 1024
# the page's own progress events (console.js dispatches `tm-upload` on document), kept for the test
RECORD = "() => { window.seen = []; document.addEventListener('tm-upload', (e) => window.seen.push(e.detail)); }"
# a File of `size` bytes, byte i = i % 251, in a DataTransfer as a drop carries it
DROPPED = """([specs]) => {
  const dt = new DataTransfer();
  for (const [name, size] of specs) {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 1) bytes[i] = i % 251;
    dt.items.add(new File([bytes], name, { type: "application/octet-stream" }));
  }
  return dt;
}"""


def _new_bucket(c: Coordinator) -> tuple[Any, str]:
    s3 = c.client()
    bucket = f"up-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    return s3, bucket


def _access_lines(c: Coordinator, op: str) -> int:
    return len(re.findall(rf"\bop={op} status=200\b", c.log()))


def _row(page: Any, key: str) -> Any:
    return page.locator(f"#uploads li[data-key={json.dumps(key)}]")


def _wait_state(page: Any, key: str, state: str, timeout: float = 120_000) -> None:
    page.wait_for_selector(f"#uploads li[data-key={json.dumps(key)}][data-state={state}]", timeout=timeout)


def test_picker_upload_in_parts_with_progress(
    page: Any, console_coord: Coordinator, tmp_path: Path, shots: Path
) -> None:
    s3, bucket = _new_bucket(console_coord)
    data = os.urandom(20 * MiB + 5)
    source = tmp_path / "twenty.bin"
    source.write_bytes(data)
    sign_in(page, console_coord.token)
    page.goto(f"/console/b/{bucket}/?prefix=in/")
    page.evaluate(RECORD)
    parts_before = _access_lines(console_coord, "UploadPart")

    page.set_input_files("#upload-files", str(source))
    _wait_state(page, "in/twenty.bin", "done")
    row = _row(page, "in/twenty.bin")
    page.screenshot(path=str(shots / "upload-finished.png"), full_page=True)

    bar = row.locator("progress")
    assert float(bar.get_attribute("max") or 0) == len(data)
    assert float(bar.evaluate("b => b.value")) == len(data)
    assert row.locator(".status").inner_text().startswith("100 %")
    seen = page.evaluate("window.seen")
    loaded = [e["loaded"] for e in seen if e["key"] == "in/twenty.bin"]
    assert loaded and loaded[-1] == len(data) and seen[-1]["state"] == "done"
    assert loaded == sorted(loaded), "the progress went backwards"
    # on the way: at least the first part's end (how many progress events the browser fires within a part
    # depends on how fast the loopback takes it, so no more is asserted)
    assert {n for n in loaded if 0 < n < len(data)}, "no progress was reported on the way"
    # two parts of 16 MiB and 4 MiB went to /s3 as UploadPart (the coordinator's access log), then Complete
    assert row.get_attribute("data-parts") == "2"
    # each access line is written just after its response is sent: wait for both, then there are exactly 2
    wait_until("2 UploadPart lines", lambda: _access_lines(console_coord, "UploadPart") - parts_before >= 2)
    assert _access_lines(console_coord, "UploadPart") - parts_before == 2
    got = s3.get_object(Bucket=bucket, Key="in/twenty.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == md5_etag([data[: 16 * MiB], data[16 * MiB :]])
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    # the finished row links to the object's details; the refreshed list shows the object
    assert row.locator("a").get_attribute("href") == f"/console/b/{bucket}/object?key=in%2Ftwenty.bin"
    page.click("#uploads-refresh")
    assert page.locator("#objects tr.object a").all_inner_texts() == ["twenty.bin"]
    page.click("text=twenty.bin")
    assert page.locator("#key").inner_text() == "in/twenty.bin"


def test_cancel_midway_leaves_no_upload(page: Any, console_coord: Coordinator, tmp_path: Path, shots: Path) -> None:
    """Part 1 goes through; parts 2 and 3 are held in the browser (Playwright's routing), so the upload is
    certainly midway when Cancel is clicked: the parts in flight are dropped and the upload is aborted."""
    s3, bucket = _new_bucket(console_coord)
    source = tmp_path / "cancel-me.bin"
    source.write_bytes(os.urandom(40 * MiB))
    held: list[Any] = []

    def part_gate(route: Any) -> None:
        number = parse_qs(urlsplit(route.request.url).query).get("partNumber", [""])[0]
        if number == "1":
            route.continue_()
        else:
            held.append(route)

    sign_in(page, console_coord.token)
    page.goto(f"/console/b/{bucket}/")
    page.route(re.compile(r"/s3/"), part_gate)
    page.set_input_files("#upload-files", str(source))
    page.wait_for_selector("#uploads li[data-key='cancel-me.bin'][data-parts='1']", timeout=120_000)
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["cancel-me.bin"]
    stored = s3.list_parts(Bucket=bucket, Key="cancel-me.bin", UploadId=uploads[0]["UploadId"])["Parts"]
    assert [p["PartNumber"] for p in stored] == [1]
    row = _row(page, "cancel-me.bin")
    assert row.get_attribute("data-state") == "uploading"
    assert 0 < float(row.locator("progress").evaluate("b => b.value")) < 40 * MiB
    page.screenshot(path=str(shots / "upload-in-progress.png"), full_page=True)

    row.locator("button.cancel").click()
    _wait_state(page, "cancel-me.bin", "cancelled")
    assert row.locator(".status").inner_text() == "cancelled"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert len(held) == 2  # the two other parts had started (3 at a time) and were held, never sent
    page.unroute(re.compile(r"/s3/"))
    for route in held:
        with contextlib.suppress(Exception):  # the browser may have dropped the request Cancel aborted
            route.abort()


def test_drag_and_drop(page: Any, console_coord: Coordinator, shots: Path) -> None:
    """Two files dropped on the page: one small (one presigned PUT), one over 16 MiB (multipart)."""
    s3, bucket = _new_bucket(console_coord)
    sign_in(page, console_coord.token)
    page.goto(f"/console/b/{bucket}/?prefix=dropped/")
    sizes = {"small.bin": 1 * MiB + 3, "large.bin": 17 * MiB}
    transfer = page.evaluate_handle(DROPPED, [list(sizes.items())])
    page.dispatch_event("#upload", "dragover", {"dataTransfer": transfer})
    assert "over" in (page.get_attribute("#upload", "class") or "")
    page.dispatch_event("#upload", "drop", {"dataTransfer": transfer})
    for name in sizes:
        _wait_state(page, f"dropped/{name}", "done")
    assert "over" not in (page.get_attribute("#upload", "class") or "")
    assert _row(page, "dropped/small.bin").get_attribute("data-parts") == "1"
    assert _row(page, "dropped/large.bin").get_attribute("data-parts") == "2"
    page.screenshot(path=str(shots / "upload-dropped.png"), full_page=True)
    for name, size in sizes.items():
        expected = bytes(i % 251 for i in range(size))
        assert s3.get_object(Bucket=bucket, Key=f"dropped/{name}")["Body"].read() == expected


def test_refused_upload_says_why(page: Any, console_coord: Coordinator, tmp_path: Path) -> None:
    """A peer that may only read the bucket: S3 refuses the PUT, and the row says so with S3's code."""
    s3, bucket = _new_bucket(console_coord)
    peer = add_peer(console_coord, f"reader-{uuid.uuid4().hex[:6]}")
    read_only = {
        "Effect": "Allow",
        "Principal": {"AWS": peer.id},
        "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketVersioning"],  # what the objects page reads
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Statement": [read_only]}))
    small, large = tmp_path / "small.txt", tmp_path / "large.bin"
    small.write_bytes(b"hello")
    large.write_bytes(os.urandom(16 * MiB))
    sign_in(page, peer.token)
    page.goto(f"/console/b/{bucket}/")
    page.set_input_files("#upload-files", [str(small), str(large)])
    for name in ("small.txt", "large.bin"):
        _wait_state(page, name, "failed")
        assert "AccessDenied" in _row(page, name).locator(".status").inner_text()
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    page.problems.clear()  # the refused PUT is logged by the browser as a failed resource: expected here


def test_a_failed_part_is_retried_twice(page: Any, console_coord: Coordinator, tmp_path: Path) -> None:
    """Part 2 answered 500 by the browser's routing: the first time, it is sent again (with a fresh URL) and the
    upload completes; three times in a row, the upload fails and is aborted."""
    s3, bucket = _new_bucket(console_coord)
    data = os.urandom(32 * MiB + 1)
    source = tmp_path / "flaky.bin"
    source.write_bytes(data)
    attempts: dict[str, int] = {}
    failures = {"n": 1}

    def flaky(route: Any) -> None:
        number = parse_qs(urlsplit(route.request.url).query).get("partNumber", [""])[0]
        attempts[number] = attempts.get(number, 0) + 1
        if number == "2" and attempts[number] <= failures["n"]:
            route.fulfill(status=500, body="<Error><Code>InternalError</Code><Message>injected</Message></Error>")
        else:
            route.continue_()

    sign_in(page, console_coord.token)
    page.goto(f"/console/b/{bucket}/")
    page.route(re.compile(r"/s3/"), flaky)
    urls_before = console_coord.log().count("'/api/uploads/urls' status=200")  # other tests' uploads
    page.set_input_files("#upload-files", str(source))
    _wait_state(page, "flaky.bin", "done")
    assert attempts == {"1": 1, "2": 2, "3": 1}
    fresh = "'/api/uploads/urls' status=200"  # the retry's fresh URL, asked of the console
    wait_until("the console's log line", lambda: console_coord.log().count(fresh) > urls_before)
    assert console_coord.log().count(fresh) == urls_before + 1
    assert s3.get_object(Bucket=bucket, Key="flaky.bin")["Body"].read() == data

    attempts.clear()
    failures["n"] = 3
    source.rename(tmp_path / "broken.bin")
    page.set_input_files("#upload-files", str(tmp_path / "broken.bin"))
    _wait_state(page, "broken.bin", "failed")
    assert attempts["2"] == 3
    assert "InternalError" in _row(page, "broken.bin").locator(".status").inner_text()
    wait_until("the failed upload aborted", lambda: s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == [])
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["flaky.bin"]
    page.problems.clear()  # the injected 500s are logged by the browser as failed resources: expected here
