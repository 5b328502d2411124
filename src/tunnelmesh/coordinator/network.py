"""Network configuration (`_tunnelmesh/network/config.json`): mesh name, CIDR, the coordinator's
mesh IP and DNS name, the access defaults of buckets (docs/access-control.md), and a free-form map
operators extend with `network set extra.KEY VALUE`."""

from __future__ import annotations

import ipaddress
from typing import Any

from tunnelmesh.coordinator.errors import InvalidInput
from tunnelmesh.coordinator.state import SystemState

KEY = "network/config.json"
FIELDS = ("mesh_name", "cidr", "coordinator_ip", "dns_name", "default_bucket_access", "default_public_access_block")
# what a peer may do to a bucket no statement names it in; unset: read-write, the behaviour before permissions
BUCKET_ACCESS = ("read-write", "read", "none")
UNSET_BUCKET_ACCESS = "read-write"
# whether a new bucket's public access is blocked until its owner says otherwise; unset: on, as on AWS
PUBLIC_ACCESS_BLOCK = ("on", "off")
_CHOICES = {"default_bucket_access": BUCKET_ACCESS, "default_public_access_block": PUBLIC_ACCESS_BLOCK}


def _validate(field: str, value: str) -> str:
    if field in _CHOICES and value not in _CHOICES[field]:
        raise InvalidInput(field, f"{field} must be one of {', '.join(_CHOICES[field])}")
    try:
        if field == "cidr":
            return str(ipaddress.ip_network(value, strict=False))
        if field == "coordinator_ip":
            return str(ipaddress.ip_address(value))
    except ValueError as e:
        raise InvalidInput(field, f"{field}: {e}") from None
    return value


class NetworkConfig:
    def __init__(self, state: SystemState) -> None:
        self.state = state

    async def show(self) -> dict[str, Any]:
        return _normalise(await self.state.get(KEY))

    async def set(self, key: str, value: str) -> dict[str, Any]:
        if key in FIELDS:
            value = _validate(key, value)
        elif not (key.startswith("extra.") and len(key) > len("extra.")):
            raise InvalidInput("key", f"unknown network key {key!r}; use one of {', '.join(FIELDS)} or extra.NAME")

        def change(current: Any) -> dict[str, Any]:
            doc = _normalise(current)
            if key in FIELDS:
                doc[key] = value
            else:
                doc["extra"][key[len("extra.") :]] = value
            return doc

        return await self.state.update(KEY, change)


def _normalise(doc: Any) -> dict[str, Any]:
    """The record as the coordinator uses it, whatever is stored: a restored archive is the admin's
    word, not a well-formed record, and a malformed one must not stop the coordinator."""
    if not isinstance(doc, dict):
        doc = {}
    out: dict[str, Any] = {f: doc[f] if isinstance(doc.get(f), str) else None for f in FIELDS}
    extra = doc.get("extra")
    out["extra"] = {str(k): v for k, v in extra.items() if isinstance(v, str)} if isinstance(extra, dict) else {}
    return out


def access_defaults(doc: Any) -> tuple[str, bool]:
    """(default_bucket_access, whether new buckets block public access) of a stored record. A value this
    coordinator does not know (a damaged or newer record) denies rather than opens: "none", blocked."""
    fields = _normalise(doc)
    access = fields["default_bucket_access"] or UNSET_BUCKET_ACCESS
    block = fields["default_public_access_block"] or "on"
    return (access if access in BUCKET_ACCESS else "none"), block != "off"
