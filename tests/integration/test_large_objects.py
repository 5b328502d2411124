"""A 2 GiB object goes up and comes back down in bounded server memory."""

from __future__ import annotations

import hashlib
import os
import threading

import requests
from conftest import tree_rss

GIB = 1024**3
CHUNK = os.urandom(1024 * 1024)


class Peak:
    def __init__(self, pid: int) -> None:
        self.pid, self.value, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.value = max(self.value, tree_rss(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Body:
    """2 GiB of data that is never held in memory at once."""

    def __init__(self, size: int) -> None:
        self.size, self.sent, self.md5 = size, 0, hashlib.md5()

    def __len__(self) -> int:
        return self.size

    def read(self, n: int = -1) -> bytes:
        if self.sent >= self.size:
            return b""
        data = CHUNK[: min(len(CHUNK), self.size - self.sent)]
        self.sent += len(data)
        self.md5.update(data)
        return data


def test_two_gib_upload_and_download_run_in_bounded_memory(coordinator, s3, bucket) -> None:
    url = f"{coordinator.endpoint}/{bucket}/big"
    auth = ("admin", coordinator.token)
    baseline = tree_rss(coordinator.proc.pid)
    body = Body(2 * GIB)
    with Peak(coordinator.proc.pid) as up:
        r = requests.put(url, data=body, auth=auth, headers={"content-length": str(body.size)})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == f'"{body.md5.hexdigest()}"'
    md5 = hashlib.md5()
    received = 0
    with Peak(coordinator.proc.pid) as down, requests.get(url, auth=auth, stream=True) as r:
        assert r.status_code == 200
        for chunk in r.iter_content(1024 * 1024):
            md5.update(chunk)
            received += len(chunk)
    assert received == body.size
    assert md5.hexdigest() == body.md5.hexdigest()
    # the whole process tree (supervisor, two listeners, their workers) may not grow with the object
    assert up.value - baseline < 150 * 1024**2, (baseline, up.value)
    assert down.value - baseline < 150 * 1024**2, (baseline, down.value)
    s3.delete_object(Bucket=bucket, Key="big")
