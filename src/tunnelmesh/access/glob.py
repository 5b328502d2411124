"""IAM globs: `*` (any run, `/` included) and `?` (one character), matched in linear passes.

The matcher is the greedy two-pointer one (versitygw `auth/bucket_cors.go::wildcardMatch`): on a
mismatch it resumes from the last `*` only, so a hostile `a*a*a*...b` costs at most
len(pattern) * len(text) steps, never the exponential work of a backtracking regex.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

# wildcard tokens: two characters long, so no literal (always one character) can be mistaken for them
STAR = "\0*"
QMARK = "\0?"


def tokens(pattern: str) -> tuple[str, ...]:
    return tuple(STAR if c == "*" else QMARK if c == "?" else c for c in pattern)


def match_tokens(pat: Sequence[str], text: str) -> tuple[bool, int]:
    """(matched, steps): the steps are the loop's iterations, the bound the tests hold us to."""
    p = t = steps = 0
    star = -1  # position in pat just after the last `*` seen
    resume = 0  # position in text that `*` is currently assumed to have consumed up to
    n, m = len(text), len(pat)
    while t < n:
        steps += 1
        if p < m and (pat[p] == QMARK or pat[p] == text[t]):
            p += 1
            t += 1
        elif p < m and pat[p] == STAR:
            star, resume = p + 1, t
            p += 1
        elif star >= 0:
            resume += 1
            p, t = star, resume
        else:
            return False, steps
    while p < m and pat[p] == STAR:
        steps += 1
        p += 1
    return p == m, steps


def match(pattern: str, text: str) -> bool:
    return match_tokens(tokens(pattern), text)[0]


class Shape(Enum):
    EXACT = "exact"
    PREFIX = "prefix"  # `literal*`: a startswith
    GLOB = "glob"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A glob compiled once: most resources are exact or `prefix*`, which need no matcher at all."""

    shape: Shape
    literal: str  # EXACT: the text; PREFIX: the prefix; GLOB: unused
    toks: tuple[str, ...]

    @staticmethod
    def compile(toks: Sequence[str]) -> Pattern:
        toks = tuple(toks)
        wild = [i for i, tok in enumerate(toks) if len(tok) == 2]
        if not wild:
            return Pattern(Shape.EXACT, "".join(toks), toks)
        if wild == [len(toks) - 1] and toks[-1] == STAR:
            return Pattern(Shape.PREFIX, "".join(toks[:-1]), toks)
        return Pattern(Shape.GLOB, "", toks)

    @staticmethod
    def of(pattern: str) -> Pattern:
        return Pattern.compile(tokens(pattern))

    def matches(self, text: str) -> bool:
        if self.shape is Shape.EXACT:
            return text == self.literal
        if self.shape is Shape.PREFIX:
            return text.startswith(self.literal)
        return match_tokens(self.toks, text)[0]

    @property
    def has_star(self) -> bool:
        return STAR in self.toks
