"""sd_notify: tell systemd (Type=notify) how start-up and stop are going, without a dependency on libsystemd.

The protocol is one datagram of newline-separated `KEY=value` lines to the unix socket `$NOTIFY_SOCKET`
names; a leading `@` is Linux's abstract namespace (a NUL byte on the wire). Without the variable the
process is not under systemd (or not Type=notify), and every call is a no-op.
"""

from __future__ import annotations

import os
import socket


def sd_notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1\\nSTATUS=serving"); True if a notify socket took it."""
    addr = os.environ.get("NOTIFY_SOCKET", "")
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    elif not addr.startswith("/"):  # unset, or a kind of address (vsock:) this coordinator never runs under
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError:
        # a notification is advice to the service manager: failing to send one must never stop the coordinator
        return False
    return True
