"""access.glob (linear wildcard matching) and access.actions (catalogue, expansion, roles)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tunnelmesh.access.actions import ACTIONS, ROLES, Kind, UnknownAction, expand
from tunnelmesh.access.glob import Pattern, Shape, match, match_tokens, tokens

ACCESS = Path(__file__).resolve().parents[2] / "src" / "tunnelmesh" / "access"


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("abc", "abc", True),
        ("abc", "abd", False),
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("*", "any/thing", True),
        ("a*", "a", True),
        ("a*", "ab/c", True),
        ("*c", "abc", True),
        ("*c", "abd", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a*b*c", "aXXbYYc", True),
        ("a*b*c", "aXXbYY", False),
        ("*a*", "bab", True),
        ("b/*/x", "b/k/y/x", True),  # `*` spans `/`, as IAM's does
        ("a**", "a", True),
        ("?", "", False),
        ("mississippi*", "mississippi", True),
        ("*ss*ss*", "mississippi", True),
        ("*ppp", "mississippi", False),
    ],
)
def test_glob_matches_like_iam(pattern: str, text: str, expected: bool) -> None:
    assert match(pattern, text) is expected
    assert Pattern.of(pattern).matches(text) is expected


@pytest.mark.parametrize("k", [5, 20])
def test_a_hostile_pattern_costs_at_most_pattern_times_text_steps(k: int) -> None:
    # `a*a*...a*b` against a long run of `a`: a backtracking regex tries O(n^k) splits before failing
    pattern = "a*" * k + "b"
    text = "a" * 2000
    matched, steps = match_tokens(tokens(pattern), text)
    assert not matched
    assert steps <= (len(pattern) + 1) * (len(text) + 1)
    # and on this shape it is in fact linear in the text: the greedy matcher only ever resumes the last `*`
    assert steps <= 3 * len(text) + 2 * len(pattern)


@pytest.mark.parametrize(
    ("pattern", "shape"),
    [("bucket/key", Shape.EXACT), ("bucket/dir/*", Shape.PREFIX), ("b*/x", Shape.GLOB), ("b?", Shape.GLOB)],
)
def test_patterns_are_precompiled_to_the_cheapest_shape(pattern: str, shape: Shape) -> None:
    assert Pattern.of(pattern).shape is shape


@pytest.mark.parametrize(
    ("pattern", "includes", "excludes"),
    [
        ("s3:GetObject", {"s3:GetObject"}, {"s3:GetObjectVersion"}),
        ("s3:getobject", {"s3:GetObject"}, set()),  # action names are case-insensitive
        ("s3:Get*", {"s3:GetObject", "s3:GetBucketPolicy", "s3:GetObjectVersion"}, {"s3:PutObject", "s3:ListBucket"}),
        ("s3:*", set(ACTIONS), set()),
        ("*", set(ACTIONS), set()),
        ("s3:*Object", {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}, {"s3:GetObjectTagging"}),
        ("s3:List*", {"s3:ListBucket", "s3:ListAllMyBuckets", "s3:ListMultipartUploadParts"}, {"s3:GetObject"}),
    ],
)
def test_action_wildcards_expand_against_the_catalogue(pattern: str, includes: set[str], excludes: set[str]) -> None:
    got = expand(pattern)
    assert includes <= got
    assert not (excludes & got)
    assert got <= set(ACTIONS)


@pytest.mark.parametrize("pattern", ["s3:NoSuchAction", "s3:Frob*", "ec2:*", "iam:GetUser", "GetObject", ""])
def test_unknown_actions_are_refused(pattern: str) -> None:
    with pytest.raises(UnknownAction):
        expand(pattern)


def test_roles_nest_and_write_cannot_destroy_history() -> None:
    assert ROLES["read"] < ROLES["write"] < ROLES["admin"]
    assert "s3:DeleteObjectVersion" not in ROLES["write"]
    assert "s3:DeleteObjectVersion" in ROLES["admin"]
    assert "s3:BypassGovernanceRetention" not in ROLES["admin"]
    assert "s3:DeleteBucket" not in ROLES["admin"]
    assert not any(a.startswith("s3:Put") or a.startswith("s3:Delete") for a in ROLES["read"])
    assert ACTIONS["s3:ListAllMyBuckets"] is Kind.SERVICE
    assert ACTIONS["s3:ListBucket"] is Kind.BUCKET and ACTIONS["s3:GetObject"] is Kind.OBJECT


def test_the_access_package_imports_nothing_from_the_s3_layer_or_the_store() -> None:
    for path in ACCESS.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] != "tunnelmesh" or name.startswith("tunnelmesh.access"), (path.name, name)
