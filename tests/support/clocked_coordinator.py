"""`python -m tunnelmesh`, with the lifecycle scanner's clock ahead of the real one by the seconds written in a
file (read at every look, so a test moves time on without a restart): a test sees months pass without
sleeping. Usage: python tests/support/clocked_coordinator.py OFFSET_FILE coordinator --config ...

Only this test harness can do it: the production binary has no setting, flag or variable that shifts a
clock, and object lock never reads this one (a retention is checked on the metadata backend's clock). The
coordinator forks its workers, so they inherit the replaced clock.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tunnelmesh.cli.main import main
from tunnelmesh.store import lifecycle

OFFSET = Path(sys.argv.pop(1))


def clock() -> float:
    try:
        return time.time() + float(OFFSET.read_text() or 0)
    except FileNotFoundError:
        return time.time()


lifecycle.clock = clock
main()
