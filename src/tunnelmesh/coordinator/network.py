"""Network configuration (`_tunnelmesh/network/config.json`): mesh name, CIDR, the coordinator's
mesh IP and DNS name, and a free-form map operators extend with `network set extra.KEY VALUE`."""

from __future__ import annotations

import ipaddress
from typing import Any

from tunnelmesh.coordinator.errors import InvalidInput
from tunnelmesh.coordinator.state import SystemState

KEY = "network/config.json"
FIELDS = ("mesh_name", "cidr", "coordinator_ip", "dns_name", "default_bucket_access")


def _validate(field: str, value: str) -> str:
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
