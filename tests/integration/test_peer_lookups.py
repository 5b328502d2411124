"""Peer lookups cost the same however many peers exist, for a wrong credential too.

A wrong Bearer token used to read every peer record (an unauthenticated request doing work in
proportion to the peer count). The component tests build a real Store on a temporary directory and
count the SQL statements the lookups run on its read connection (metadata reads), for 10 and for
2,000 peers; the integration tests show that a data dir or a backup archive from before the token
index still authenticates its peers by token.
"""

from __future__ import annotations

import asyncio
import io
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from conftest import start_coordinator

from tunnelmesh.admin.backup import write_backup
from tunnelmesh.coordinator.peers import Peer, PeerRegistry
from tunnelmesh.coordinator.state import SystemState
from tunnelmesh.s3.auth.credentials import Identity
from tunnelmesh.s3.request import Principal
from tunnelmesh.store.engine import Store, prepare_data_dir
from tunnelmesh.store.sqlite_meta import SqliteMeta

T = TypeVar("T")
BOOTSTRAP_TOKEN = "bootstrap-" + "x" * 32
SMALL, LARGE = 10, 2000
# a lookup is a handful of keyed reads; reading every record would be thousands
MAX_READS = 4


def registry(store: Store) -> PeerRegistry:
    return PeerRegistry(SystemState(store), Identity(Principal("admin", is_admin=True), BOOTSTRAP_TOKEN))


def new_store(path: Path) -> Store:
    path.mkdir()
    prepare_data_dir(path)
    return Store(path, 10 * 1024**3)


async def add_peers(reg: PeerRegistry, n: int) -> list[Peer]:
    peers: list[Peer] = []
    for start in range(0, n, 250):  # concurrent adds share group commits
        peers += await asyncio.gather(*(reg.add(f"peer-{i}", admin=False) for i in range(start, min(n, start + 250))))
    return peers


def metadata_reads(store: Store, lookup: Callable[[], Coroutine[Any, Any, T]]) -> tuple[int, T]:
    """The SQL statements `lookup` runs on the store's read connection (but the BEGIN and COMMIT around
    each read), and its result."""
    count = 0

    def seen(sql: str) -> None:
        nonlocal count
        count += sql not in ("BEGIN", "COMMIT")

    assert isinstance(store.meta, SqliteMeta)
    reader = store.meta._reader.c  # the SQLite backend's own read connection: what the statements run on
    reader.set_trace_callback(seen)
    try:
        result = asyncio.run(lookup())
    finally:
        reader.set_trace_callback(None)
    return count, result


def lookup_costs(store: Store, peer: Peer) -> dict[str, int]:
    """Reads per lookup, for hits and misses of both lookups: the first in a fresh registry (nothing
    cached in this process) and the same lookup repeated."""
    wrong_token, unknown_id = secrets.token_urlsafe(32), f"peer-{secrets.token_hex(6)}"
    lookups: dict[str, tuple[Callable[[PeerRegistry], Coroutine[Any, Any, Identity | None]], bool]] = {
        "token hit": (lambda r: r.by_token(peer.token), True),
        "token miss": (lambda r: r.by_token(wrong_token), False),
        "access key hit": (lambda r: r.by_access_key(peer.id), True),
        "access key miss": (lambda r: r.by_access_key(unknown_id), False),
    }
    costs: dict[str, int] = {}
    for name, (lookup, found) in lookups.items():
        reg = registry(store)
        for when in ("first", "repeated"):
            costs[f"{when} {name}"], ident = metadata_reads(store, partial(lookup, reg))
            assert (ident is not None and ident.principal.peer_id == peer.id) if found else ident is None
    return costs


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[int, tuple[Store, list[Peer]]]]:
    out: dict[int, tuple[Store, list[Peer]]] = {}
    for n in (SMALL, LARGE):
        store = new_store(tmp_path / f"store-{n}")
        out[n] = (store, asyncio.run(add_peers(registry(store), n)))
    yield out
    for store, _ in out.values():
        store.close()


def test_lookups_read_the_same_for_10_and_2000_peers_hits_and_misses_alike(stores) -> None:
    costs = {}
    for n, (store, peers) in stores.items():
        assert len(asyncio.run(registry(store).peers())) == n
        costs[n] = lookup_costs(store, peers[n // 2])
    assert costs[SMALL] == costs[LARGE], costs
    assert all(1 <= reads <= MAX_READS for reads in costs[LARGE].values()), costs[LARGE]
    # a wrong token costs no more than a right one
    assert costs[LARGE]["first token miss"] <= costs[LARGE]["first token hit"]


def test_a_revoked_peer_is_found_by_neither_lookup(tmp_path: Path) -> None:
    store = new_store(tmp_path / "s")
    try:
        reg = registry(store)
        peer = asyncio.run(add_peers(reg, 1))[0]
        assert asyncio.run(reg.by_token(peer.token)) is not None
        asyncio.run(reg.revoke(peer.id))
        for r in (reg, registry(store)):
            assert asyncio.run(r.by_token(peer.token)) is None
            assert asyncio.run(r.by_access_key(peer.id)) is None
    finally:
        store.close()


def test_a_token_that_moved_to_another_peer_is_found_on_it_despite_a_cached_mapping(tmp_path: Path) -> None:
    """After a restore (made through another worker) a token may belong to another peer than the one
    this worker cached it for: the lookup reads the index again instead of refusing the token."""
    store = new_store(tmp_path / "s")
    try:
        worker = registry(store)
        first = asyncio.run(add_peers(worker, 1))[0]
        assert asyncio.run(worker.by_token(first.token)).principal.peer_id == first.id  # cached: token -> first
        other = registry(store)  # the worker that applies the restore
        moved = Peer(f"peer-{secrets.token_hex(6)}", "moved", first.token, "peer", "2026-01-01T00:00:00Z")
        asyncio.run(other.state.put(f"peers/{first.id}.json", asdict(first) | {"token": secrets.token_urlsafe(32)}))
        asyncio.run(other.state.put(f"peers/{moved.id}.json", asdict(moved)))
        assert asyncio.run(other.reindex()) >= 1
        ident = asyncio.run(worker.by_token(first.token))
        assert ident is not None and ident.principal.peer_id == moved.id
    finally:
        store.close()


async def _put_pre_index_peer(state: SystemState, role: str = "peer") -> Peer:
    """A peer record as written before the token index existed: the record alone."""
    peer = Peer(f"peer-{secrets.token_hex(6)}", "old", secrets.token_urlsafe(32), role, "2026-01-01T00:00:00Z")
    await state.put(f"peers/{peer.id}.json", asdict(peer))
    return peer


def test_reindex_gives_pre_index_peers_their_entries(tmp_path: Path) -> None:
    store = new_store(tmp_path / "s")
    try:
        reg = registry(store)
        old = [asyncio.run(_put_pre_index_peer(reg.state)) for _ in range(3)]
        new = asyncio.run(add_peers(reg, 2))
        assert all(asyncio.run(registry(store).by_token(p.token)) is None for p in old)  # no scan on a miss
        assert asyncio.run(reg.reindex()) == 3
        assert asyncio.run(reg.reindex()) == 0
        for p in old + new:
            ident = asyncio.run(registry(store).by_token(p.token))
            assert ident is not None and ident.principal.peer_id == p.id
    finally:
        store.close()


# ---- a coordinator on a pre-index data dir, and a restore of a pre-index archive ----------------


def bearer_lists_buckets(coordinator, token: str) -> int:
    return requests.get(
        f"{coordinator.endpoint}/", headers={"Authorization": f"Bearer {token}"}, timeout=30
    ).status_code


def test_a_data_dir_from_before_the_token_index_authenticates_its_peers_by_token(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = new_store(data)
    try:
        peer = asyncio.run(_put_pre_index_peer(SystemState(store)))
    finally:
        store.close()
    c = start_coordinator(tmp_path, data_dir=data)
    try:
        c.wait_for_log(r"token index: 1 entries written")
        assert bearer_lists_buckets(c, peer.token) == 200
        assert bearer_lists_buckets(c, secrets.token_urlsafe(32)) == 403
    finally:
        c.stop()


def test_restoring_an_archive_from_before_the_token_index_authenticates_its_peers_by_token(tmp_path: Path) -> None:
    store = new_store(tmp_path / "old")
    try:
        state = SystemState(store)
        peer = asyncio.run(_put_pre_index_peer(state))
        archive = io.BytesIO()
        assert asyncio.run(write_backup(state, archive)) == 1  # the peer record and nothing else
    finally:
        store.close()
    c = start_coordinator(tmp_path)
    try:
        assert bearer_lists_buckets(c, peer.token) == 403
        resp = requests.post(
            f"http://127.0.0.1:{c.port}/api/system/restore",
            data=archive.getvalue(),
            auth=("admin", c.token),
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        # both workers find it, whichever serves the request
        assert all(bearer_lists_buckets(c, peer.token) == 200 for _ in range(6))
    finally:
        c.stop()
