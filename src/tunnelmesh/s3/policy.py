"""Who may do what to which bucket: the access class every route declares, and the rule deciding it.

Authentication says who signed; routing says what the request does (`Access`); a `Policy` says
whether that principal may do it to that bucket. Today's rule is the coordinator's own bucket;
per-bucket permissions are another `Policy`, checked at the same point.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from tunnelmesh.access.evaluate import ANONYMOUS, Ask, Who, decide
from tunnelmesh.access.view import SYSTEM_VIEW
from tunnelmesh.s3.errors import S3Error
from tunnelmesh.s3.request import Principal
from tunnelmesh.store.engine import SYSTEM_BUCKET


class Access(Enum):
    READ = "read"  # reads objects or bucket state
    WRITE = "write"  # creates, changes or deletes objects or uploads
    OWNER = "owner"  # changes the bucket itself (create, delete)


# until routes name their actions (issue 15 step 2): one action of each class, for the system rule
_ACTION = {Access.READ: "s3:ListBucket", Access.WRITE: "s3:PutObject", Access.OWNER: "s3:DeleteBucket"}


class Policy(Protocol):
    def check(self, principal: Principal | None, access: Access, bucket: str) -> None:
        """Raise AccessDenied unless `principal` may have `access` to `bucket`."""


class SystemBucketRule:
    """Only the coordinator writes `_tunnelmesh`; admins may read it, peers may not touch it."""

    def check(self, principal: Principal | None, access: Access, bucket: str) -> None:
        if bucket != SYSTEM_BUCKET:
            return
        # no principal yet: a form upload, which authenticates later from its body, and is a write
        who = ANONYMOUS if principal is None else Who("peer", principal.peer_id, principal.is_admin)
        if not decide(SYSTEM_VIEW, who, Ask(_ACTION[access], bucket)).allowed:
            raise S3Error("AccessDenied", BucketName=bucket)
