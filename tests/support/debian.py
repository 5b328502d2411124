"""Debian programs the suite drives for real (chromium for the console, promtool for the metrics): found on
the PATH or, as root on a fresh Debian machine, installed here with apt-get, so the README's one test
command sets up what it needs. Where neither works the test fails saying what to install: never a skip."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_updated = False


def debian_program(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` for it first where it is missing and we may."""
    found = shutil.which(command) or (f"/usr/bin/{command}" if os.access(f"/usr/bin/{command}", os.X_OK) else None)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        global _updated
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not _updated:
            subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
            _updated = True
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package], check=True, env=env, capture_output=True
        )
        found = shutil.which(command) or (f"/usr/bin/{command}" if os.access(f"/usr/bin/{command}", os.X_OK) else None)
    if found is None:
        pytest.fail(f"no {command}: run `apt-get install {package}` as root (Debian), then the tests again")
    return found
