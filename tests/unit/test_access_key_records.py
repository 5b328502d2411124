"""Scoped access keys' records and secrets (coordinator/keys.py): derivation, validation, expiry, scope."""

from __future__ import annotations

import time

import pytest

from tunnelmesh.access.evaluate import Ask, Who, decide, visible
from tunnelmesh.access.view import BucketIdent, compile_view
from tunnelmesh.coordinator.errors import InvalidInput
from tunnelmesh.coordinator.keys import SECRET_CHARS, AccessKey, Scope, derive_secret, is_key_id, new_key, new_key_id


def test_ids_are_never_peer_ids_and_secrets_are_derived_not_stored() -> None:
    kid = new_key_id()
    assert is_key_id(kid) and not is_key_id("peer-0123456789ab") and not is_key_id(kid.lower())
    a = derive_secret("token-one-long-enough", kid, "00" * 16)
    assert a == derive_secret("token-one-long-enough", kid, "00" * 16)  # every coordinator derives the same
    assert len(a) == SECRET_CHARS
    # another token, id or salt: another secret (the secret does not reveal the token, and dies with it)
    assert a != derive_secret("token-two-long-enough", kid, "00" * 16)
    assert a != derive_secret("token-one-long-enough", new_key_id(), "00" * 16)
    assert a != derive_secret("token-one-long-enough", kid, "11" * 16)
    key = new_key("peer-1", "ci", None, None, "peer-1")
    assert "secret" not in key.record() and "salt" not in key.public
    assert AccessKey.from_record(key.record()) == key


def test_expiry_is_decided_by_the_clock_given() -> None:
    key = new_key("peer-1", "ci", None, 3600, "peer-1")
    now = time.time()
    assert not key.expired(now) and key.expired(now + 3601)
    assert not new_key("peer-1", "ci", None, None, "peer-1").expired(now + 10**9)


@pytest.mark.parametrize(
    "scope, expires",
    [([Scope("b", "owner")], None), ([Scope("b", "admin", "p/")], None), ([Scope("b", "read", "a*")], None), (None, 0)],
)
def test_a_bad_scope_or_expiry_is_refused(scope: list[Scope] | None, expires: float | None) -> None:
    with pytest.raises(InvalidInput):
        new_key("peer-1", "x", scope, expires, "peer-1")


@pytest.mark.parametrize(
    "change",
    [{"id": "peer-1"}, {"salt": "short"}, {"expires": "tomorrow"}, {"scope": [{"bucket": "b", "role": "god"}]}],
)
def test_a_damaged_record_is_refused(change: dict) -> None:
    record = new_key("peer-1", "ci", [Scope("b", "read")], None, "peer-1").record()
    with pytest.raises((ValueError, KeyError, TypeError)):
        AccessKey.from_record({**record, **change})


def test_the_scope_bounds_what_the_key_may_do_and_see() -> None:
    key = new_key("peer-1", "ci", [Scope("build", "write", "out/")], None, "peer-1")
    who = Who("key", "peer-1", False, frozenset(), key.id, key.statements())
    own = compile_view(None, BucketIdent("peer-1", 1.0), "build", frozenset(), "none", True)
    other = compile_view(None, BucketIdent("peer-1", 1.0), "photos", frozenset(), "none", True)
    assert decide(own, who, Ask("s3:PutObject", "build", "out/x")).allowed
    assert not decide(own, who, Ask("s3:PutObject", "build", "src/x")).allowed  # outside its prefix
    assert not decide(own, who, Ask("s3:DeleteObjectVersion", "build", "out/x")).allowed  # beyond its role
    assert not decide(other, who, Ask("s3:GetObject", "photos", "a")).allowed  # its peer owns it; the key may not
    assert visible(own, who) and not visible(other, who)
    # never an admin, whatever its peer is
    admin_key = Who("key", "admin-peer", True, frozenset(), key.id, None)
    assert not decide(other, admin_key, Ask("s3:GetObject", "photos", "a")).allowed
