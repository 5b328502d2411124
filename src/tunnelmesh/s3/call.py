"""What an operation is handed: the request as the edge settled it, fixed once routing and the access
check are done (s3/app.py builds it), and the one place the request's bucket is looked up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tunnelmesh.s3.request import Principal, Request
from tunnelmesh.store.engine import Store
from tunnelmesh.store.records import Bucket

if TYPE_CHECKING:
    from tunnelmesh.s3.router import Route


@dataclass(frozen=True, slots=True)
class Call:
    req: Request
    route: Route
    store: Store
    # ?uploadId= of the multipart operations (routing guarantees it there), else ""
    upload_id: str
    # the bucket record once looked up: the only mutable part, filled at most once per request
    _bucket: list[Bucket] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def of(cls, req: Request, route: Route, store: Store, bucket: Bucket | None = None) -> Call:
        """`bucket`: the row the access check read in this request, if it read one (saves the lookup)."""
        return cls(req, route, store, req.query.get("uploadId", ""), [] if bucket is None else [bucket])

    @property
    def principal(self) -> Principal | None:
        """Who signed. None only for a browser form upload until post_object has verified the
        credentials in its body (which sets req.principal): read here, never copied, so it is never stale."""
        return self.req.principal

    async def bucket(self) -> Bucket:
        """The request's bucket, or NoSuchBucket. Looked up on the first call only, at the moment the
        operation asks: each operation checks it at its own point among its other checks (a listing
        validates its parameters first, CreateBucket never asks), which fixes which error wins."""
        if not self._bucket:
            self._bucket.append(await self.store.require_bucket(self.req.bucket))
        return self._bucket[0]
