"""The coordinator's own failures (peers, shares, network settings, its records, backups).

The admin API maps them, with the store's, to its JSON answers in one place (`admin/errors.py`).
"""

from __future__ import annotations


class CoordinatorError(Exception):
    """A request about the coordinator's records that is refused; nothing has changed."""


class NoSuchPeer(CoordinatorError):
    def __init__(self, peer_id: str) -> None:
        super().__init__(f"no peer {peer_id}")
        self.peer_id = peer_id


class NoSuchShare(CoordinatorError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no share {name}")
        self.name = name


class NoSuchAccessKey(CoordinatorError):
    def __init__(self, key_id: str) -> None:
        super().__init__(f"no access key {key_id}")
        self.key_id = key_id


class NoBucketToShare(CoordinatorError):
    """A share names a bucket that does not exist."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"no bucket {bucket}")
        self.bucket = bucket


class InvalidInput(CoordinatorError):
    """A value the coordinator does not take: `field` names it, `why` says what is wrong, in words
    for the operator."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(why)
        self.field = field
        self.why = why


class InvalidArchive(CoordinatorError):
    """A backup archive refused before anything was restored; `why` says what is wrong with it."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class Conflict(CoordinatorError):
    """A record kept changing under a read-modify-write until the retries ran out."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} kept changing")
        self.key = key


class CorruptRecord(CoordinatorError):
    """A record that exists but cannot be read (not JSON, or its stored bytes damaged); the message names
    its key. Readers of many records skip it; a backup, which must be whole, fails on it."""


class NoSuchGrant(CoordinatorError):
    """An ungrant that matched no grant of the bucket."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"no matching grant on bucket {bucket}")
        self.bucket = bucket


class NoSuchGroup(CoordinatorError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no group {name}")
        self.name = name


class GroupExists(CoordinatorError):
    def __init__(self, name: str) -> None:
        super().__init__(f"group {name} exists")
        self.name = name


class NotAMember(CoordinatorError):
    def __init__(self, group: str, peer_id: str) -> None:
        super().__init__(f"{peer_id} is not a member of group {group}")
        self.group = group
        self.peer_id = peer_id


class PublicAccessBlocked(CoordinatorError):
    """A grant to anyone while the bucket's public access block has BlockPublicPolicy (AWS refuses a public
    policy the same way): the block must be lifted first, deliberately."""

    def __init__(self, bucket: str) -> None:
        super().__init__(f"bucket {bucket} blocks public grants")
        self.bucket = bucket
