"""The README as a newcomer runs it: every variable its commands use is defined in it, every link
points at a file in the repository, and no example uses a file that nothing in it creates."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# fenced blocks and inline code: what a reader copies
CODE = re.findall(r"```[a-z]*\n(.*?)```", README, re.S) + re.findall(r"`([^`\n]+)`", README)
# the variables tunnelmesh itself reads, each explained where the README first names it
OWN_VARIABLES = re.compile(r"TUNNELMESH_[A-Z0-9_]+")


def test_every_shell_variable_is_defined() -> None:
    used = {m for block in CODE for m in re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", block)}
    # S3's own form-policy syntax ("$field" in a POST policy condition), not the shell's
    used -= {"field"}
    defined = {m for block in CODE for m in re.findall(r"(?:^|[\s;(])(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=", block)}
    missing = sorted(v for v in used - defined if not OWN_VARIABLES.fullmatch(v))
    assert not missing, f"README uses ${missing} without saying what to set it to"


def test_own_variables_are_explained() -> None:
    for name in sorted(set(OWN_VARIABLES.findall(README))):
        # explained: named in prose (outside a code block) at least once, not only used in commands
        prose = re.sub(r"```.*?```", "", README, flags=re.S)
        assert name in prose, f"{name} appears only in code, never explained"


def test_relative_links_exist() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README):
        if re.match(r"[a-z]+://", target):
            continue
        assert (ROOT / target).exists(), f"README links to {target}, which is not in the repository"


def test_no_example_uses_a_build_output_nobody_has() -> None:
    # `./dist/myapp` was copied from a template: a newcomer running the example got "file not found"
    used = [path for block in CODE for path in re.findall(r"\./dist/\S+", block)]
    assert not used, f"README's examples use {used}, which no command in it creates"
