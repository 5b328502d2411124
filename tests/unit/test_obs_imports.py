"""prometheus-client picks its value class when it is imported: a process that imports it before the
supervisor has set PROMETHEUS_MULTIPROC_DIR would count on its own and the workers' sums would silently
miss it. So the supervisor's code and the CLI must not import it (docs/operations.md 1.6)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import sys
import tunnelmesh.server
import tunnelmesh.cli.main
assert "tunnelmesh.obs.multiproc" in sys.modules, "the supervisor prepares the metrics dir"
print(sorted(m for m in sys.modules if m == "prometheus_client" or m.startswith("prometheus_client.")))
"""


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")}


def test_server_and_cli_do_not_import_prometheus_client() -> None:
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", r.stdout


def test_metrics_module_refuses_to_load_without_the_dir() -> None:
    r = subprocess.run(
        [sys.executable, "-c", "import tunnelmesh.obs.metrics"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=120,
    )
    assert r.returncode != 0 and "PROMETHEUS_MULTIPROC_DIR" in r.stderr, r.stderr
