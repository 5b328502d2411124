"""deploy/systemd/tunnelmesh.service: it parses, systemd accepts it, and it says what the coordinator does."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "tunnelmesh.service"


def unit() -> configparser.ConfigParser:
    # strict: a key given twice in a section (which systemd would take as a list or the last one) fails here
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def test_the_unit_parses_and_names_what_the_coordinator_needs() -> None:
    u = unit()
    assert u.sections() == ["Unit", "Service", "Install"]
    service = u["Service"]
    # READY=1 comes from the supervisor itself, once /healthz answers (server.py)
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    # the drain is the supervisor's: its workers must not be signalled before it
    assert service["KillMode"] == "mixed"
    # the data dir named, inside the state dir systemd makes for the service user
    assert service["ExecStart"].split()[1:] == ["coordinator", "--data-dir", "/var/lib/tunnelmesh/data"]
    assert service["ExecStart"].split()[0].endswith("/tunnelmesh")
    assert service["StateDirectory"] == "tunnelmesh"
    assert service["RuntimeDirectory"] == "tunnelmesh"
    assert service["WorkingDirectory"] == "/var/lib/tunnelmesh"
    assert service["EnvironmentFile"] == "-/etc/tunnelmesh/env"  # optional: '-'
    assert service["TimeoutStopSec"] == "30"
    assert service["Restart"] == "on-failure"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == "yes", key
    assert service["ProtectSystem"] == "strict"
    assert u["Install"]["WantedBy"] == "multi-user.target"


def test_the_coordinator_accepts_the_units_command() -> None:
    """The flags ExecStart passes exist (`--help` after them parses them, and fails on an unknown one)."""
    args = unit()["Service"]["ExecStart"].split()[1:]
    r = subprocess.run(
        [sys.executable, "-m", "tunnelmesh", *args, "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "Run the coordinator" in r.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists and is executable: point it at the installed console script
    exe = shutil.which("tunnelmesh") or str(Path(sys.executable).with_name("tunnelmesh"))
    assert Path(exe).exists(), "the tunnelmesh console script is not installed"
    copy = tmp_path / "tunnelmesh.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/tunnelmesh", exe))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # verify reports bad keys and values as warnings with exit 0: none may be about this unit
    assert copy.name not in r.stderr, r.stderr
