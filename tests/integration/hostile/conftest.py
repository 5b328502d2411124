"""The module-scoped fixtures every hostile-input module uses; each module gets its own (one coordinator each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import descendants

from .helpers import CASES, CHECKED, SENTINEL


@pytest.fixture(scope="module", autouse=True)
def case_report(request: pytest.FixtureRequest) -> Iterator[None]:
    """Count the module's cases and print the counts at its end."""
    CASES.clear()
    CHECKED.clear()
    yield
    total = sum(CASES.values())
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items()))
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(CHECKED.items(), key=lambda kv: str(kv[0])))
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[hostile-input] {total} cases tried ({detail})")
        print(f"[hostile-input] {sum(CHECKED.values())} responses checked, by status ({statuses})")


@pytest.fixture(scope="module", autouse=True)
def processes(coordinator) -> set[int]:
    """The process tree the module's coordinator started with, to tell a worker crash."""
    return set(descendants(coordinator.proc.pid))


@pytest.fixture(scope="module")
def sentinel(coordinator) -> Path:
    """<data_dir>/../etc/passwd: where `../../etc/passwd` lands if a key is ever joined onto <data_dir>/<bucket>."""
    path = coordinator.data_dir.parent / "etc" / "passwd"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(SENTINEL)
    return path
