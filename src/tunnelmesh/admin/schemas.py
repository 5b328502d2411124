"""The admin API's request documents: one strict schema per body, checked before any handler runs.

Strict: no coercion, so `{"admin": "false"}` is an error, not a truthy string that makes an admin.
Unknown fields are errors too (a typo never silently falls back to a default). Strings and lists
are bounded. pydantic parses the JSON itself, with a nesting limit, so a deeply nested document is
a 400 like any other malformed body, never a RecursionError.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunnelmesh.s3.errors import S3Error

# a printable line: no control characters (they would forge log lines and break the CLI's tables)
_LINE = r"^[^\x00-\x1f\x7f]*$"
Line = Annotated[str, Field(max_length=1024, pattern=_LINE)]
PeerId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
# SQLite stores integers in 64 bits; a larger number must be refused here, not overflow in the commit
MAX_BYTES = 2**63 - 1


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class NoBody(_Body):
    """For actions that take no document (an empty body or `{}`)."""


class AddPeer(_Body):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=_LINE)]
    admin: bool = False


class CreateBucket(_Body):
    name: Annotated[str, Field(min_length=1, max_length=63)]


class SetQuota(_Body):
    quota: Annotated[int, Field(ge=0, le=MAX_BYTES)] | None


class SetNetwork(_Body):
    key: Annotated[str, Field(min_length=1, max_length=128, pattern=_LINE)]
    value: Line


class AddShare(_Body):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    bucket: Annotated[str, Field(min_length=1, max_length=63)]
    path: Line = ""
    peers: Annotated[list[PeerId], Field(max_length=1000)] = []
    read_only: bool = False


GroupName = Annotated[str, Field(min_length=1, max_length=63)]
Role = Literal["read", "write", "admin"]
# any key text but control characters is a prefix (they would forge log and CLI lines); `*`, `?` and NUL are
# refused by the grant itself
Prefix = Annotated[str, Field(max_length=1024, pattern=_LINE)]


class _GrantTarget(_Body):
    peer: PeerId | None = None
    group: GroupName | None = None
    anyone: bool = False

    @model_validator(mode="after")
    def _one_target(self) -> _GrantTarget:
        if sum((self.peer is not None, self.group is not None, self.anyone)) != 1:
            raise ValueError("name exactly one of peer, group, anyone")
        return self


class AddGrant(_GrantTarget):
    role: Role
    prefix: Prefix = ""


class RemoveGrant(_GrantTarget):
    """Role and prefix narrow what is removed; without them every grant to the target goes."""

    role: Role | None = None
    prefix: Prefix | None = None


class KeyScope(_Body):
    bucket: Annotated[str, Field(min_length=1, max_length=63)]
    role: Role
    prefix: Prefix = ""


class CreateKey(_Body):
    """A scoped access key (docs/access-control.md section 4); `peer` defaults to the caller."""

    peer: PeerId | None = None
    name: Annotated[str, Field(max_length=128, pattern=_LINE)] = ""
    scope: Annotated[list[KeyScope], Field(min_length=1, max_length=100)] | None = None
    expires_in: Annotated[int, Field(ge=1, le=10 * 366 * 86400)] | None = None  # seconds


class CreateGroup(_Body):
    name: GroupName


M = TypeVar("M", bound=_Body)


def parse(model: type[M], body: bytes) -> M:
    """The validated document, or an S3Error (400) that names the first bad field and what is wrong."""
    try:
        return model.model_validate_json(body.strip() or b"{}")
    except ValidationError as e:
        raise _error(e) from None
    except RecursionError:  # belt and braces: the parser limits nesting itself
        raise S3Error("MalformedJSON", "body: the document is nested too deeply.") from None


def _error(e: ValidationError) -> S3Error:
    errors = e.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if first["type"] == "json_invalid":
        return S3Error("MalformedJSON", f"body: {first['msg']}")
    return S3Error("InvalidRequest", f"{where}: {first['msg']}{more}")


# ---- the manifest of a backup archive (validated like a request document) -----------------------


class ManifestEntry(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    key: Annotated[str, Field(min_length=1, max_length=1024)]
    member: Annotated[str, Field(min_length=1, max_length=100)]
    size: Annotated[int, Field(ge=0, le=MAX_BYTES)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    content_type: Annotated[str, Field(max_length=256, pattern=_LINE)] = "application/json"


class Manifest(BaseModel):
    # extra keys ignored: a later format may add informational fields without breaking old restores
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    format: int
    bucket: str
    created: float
    objects: list[ManifestEntry]
