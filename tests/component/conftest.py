"""The component tier's fixture: an in-process S3 app over a real Store, once per metadata backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from meta_backends import BACKENDS

from tunnelmesh.coordinator.peers import PeerRegistry
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3.app import S3Api
from tunnelmesh.s3.auth.credentials import Identity
from tunnelmesh.s3.ops.common import Context
from tunnelmesh.s3.request import Principal
from tunnelmesh.store.engine import Store, ensure_system_bucket

from .inprocess import ADMIN, MAX_SIZE, REGION, TOKEN, InProcessS3


@pytest.fixture(params=sorted(BACKENDS))
def s3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[InProcessS3]:
    loop = asyncio.new_event_loop()
    store = Store(tmp_path, MAX_SIZE, meta=BACKENDS[request.param](tmp_path))
    store.blobs.prepare()
    loop.run_until_complete(store.meta.write(lambda tx: ensure_system_bucket(tx, time.time())))
    peers = PeerRegistry(SystemState(store), Identity(Principal(ADMIN, is_admin=True), TOKEN))
    try:
        yield InProcessS3(S3Api(Context(store, REGION), peers), store, loop)
    finally:
        store.close()
        loop.close()
