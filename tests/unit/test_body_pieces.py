"""How a request body reaches the layers that hash and write it (s3/request.py raw_body): what it holds at a
time, and when the worker gives freed body memory back (tunnelmesh/lanes.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

from tunnelmesh import lanes
from tunnelmesh.lanes import BATCH, OFFLOAD_MIN
from tunnelmesh.s3.request import Request, raw_body

READ_BUFFER = 408 * 1024  # granian's message size for a large body at the coordinator's default read buffer


def request(messages: list[bytes]) -> Request:
    """A PUT whose ASGI receive hands out `messages` in order, the last one ending the body."""
    queue: Iterator[bytes] = iter(messages)
    last = len(messages) - 1
    sent = 0

    async def receive() -> dict:
        nonlocal sent
        body = next(queue)
        sent += 1
        return {"type": "http.request", "body": body, "more_body": sent - 1 < last}

    return Request(method="PUT", raw_path="/b/k", raw_query="", headers={}, receive=receive, prefix="")


def pieces(messages: list[bytes]) -> list[bytes]:
    async def drain() -> list[bytes]:
        return [p async for p in raw_body(request(messages))]

    return asyncio.run(drain())


def test_large_messages_are_passed_on_as_they_are() -> None:
    # joining them would hold each message, its copy and the piece before it at once
    messages = [os.urandom(READ_BUFFER) for _ in range(5)] + [os.urandom(1000)]
    out = pieces(messages)
    assert b"".join(out) == b"".join(messages)
    assert len(out) == len(messages)
    assert all(p is m for p, m in zip(out, messages, strict=True)), "a large message was copied"


def test_small_messages_are_joined_into_batches() -> None:
    messages = [os.urandom(16 * 1024) for _ in range(100)]
    out = pieces(messages)
    assert b"".join(out) == b"".join(messages)
    assert all(BATCH <= len(p) < BATCH + 16 * 1024 for p in out[:-1])
    assert len(out[-1]) <= BATCH + 16 * 1024


def test_large_messages_after_small_ones_are_not_joined_to_them() -> None:
    small = [os.urandom(1024) for _ in range(3)]
    large, larger = os.urandom(OFFLOAD_MIN), os.urandom(READ_BUFFER)
    out = pieces([*small, large, larger, b""])
    assert out == [b"".join(small), large, larger]
    assert out[1] is large and out[2] is larger


def test_a_small_body_is_one_piece_and_never_asks_for_a_trim() -> None:
    before = lanes.trims()
    assert pieces([b"x" * 4096]) == [b"x" * 4096]
    assert pieces([b""]) == []
    assert lanes.trims() == before


def test_freed_body_memory_is_given_back_once_no_large_body_is_in_flight() -> None:
    """Two large bodies at once: nothing is trimmed while either is in flight, and once when both are over,
    since together they passed more than lanes.TRIM_AFTER bytes (each alone passed less)."""
    count = lanes.TRIM_AFTER // READ_BUFFER // 2 + 1
    message = os.urandom(READ_BUFFER)

    async def both() -> tuple[int, int, int]:
        first = raw_body(request([message] * count))
        second = raw_body(request([message] * count))
        start = lanes.trims()
        await anext(first)
        await anext(second)
        async for _ in first:
            pass
        after_first = lanes.trims() - start
        async for _ in second:
            pass
        return start, after_first, lanes.trims() - start

    start, after_first, after_both = asyncio.run(both())
    assert after_first == 0, "trimmed while a large body was in flight"
    assert after_both == 1
    # the bytes counted toward the next trim started again from nothing
    assert pieces([message] * count) and lanes.trims() == start + 1


def test_a_body_in_flight_does_not_keep_freed_memory_forever() -> None:
    """A body held open (a dripping upload, or uploads that always overlap) defers the trim, but once
    lanes.TRIM_ANYWAY bytes of other bodies have passed the worker trims all the same."""
    message = os.urandom(READ_BUFFER)
    count = lanes.TRIM_AFTER // READ_BUFFER + 1  # each body alone passes more than TRIM_AFTER

    async def held_open() -> list[int]:
        stalled = raw_body(request([message] * 3))
        await anext(stalled)  # in flight from here on
        start = lanes.trims()
        seen = []
        for _ in range(lanes.TRIM_ANYWAY // (count * READ_BUFFER) + 1):
            async for _ in raw_body(request([message] * count)):
                pass
            seen.append(lanes.trims() - start)
        await stalled.aclose()
        return seen

    seen = asyncio.run(held_open())
    assert seen[0] == 0, "trimmed at TRIM_AFTER while a body was in flight"
    assert seen[-1] == 1


def test_a_large_body_of_small_messages_counts_too() -> None:
    """Joined batches go to the lanes' threads as large messages do: such a body counts toward the trim."""
    before = lanes.trims()
    small = os.urandom(16 * 1024)
    pieces([small] * (lanes.TRIM_AFTER // len(small) + 1))
    assert lanes.trims() == before + 1
