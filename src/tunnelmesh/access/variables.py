"""Policy variables (`${aws:username}`, `${*}`, ...) in Resource and condition values (section 2.1).

A value is kept as glob tokens; a variable that depends on the caller stays a marker until the
decision, where it becomes literal characters (so a peer id holding `*` is never a wildcard).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from tunnelmesh.access.glob import Pattern, tokens

# the caller-dependent variables and the context key each reads
CALLER_VARS = {"aws:username": "aws:username", "aws:userid": "aws:userid"}
_LITERAL_VARS = {"*": "*", "?": "?", "$": "$"}
_VAR = re.compile(r"\$\{([^}]*)\}")


class BadVariable(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Template:
    """Glob tokens, some of them `${var}` markers (written "\\0$name") filled in at decision time."""

    toks: tuple[str, ...]
    fixed: Pattern | None  # no caller variable: compiled once

    @staticmethod
    def parse(text: str, substitute: bool) -> Template:
        if not substitute:
            toks = tokens(text)
            return Template(toks, Pattern.compile(toks))
        out: list[str] = []
        pos = 0
        for m in _VAR.finditer(text):
            out.extend(tokens(text[pos : m.start()]))
            name = m.group(1)
            if name in _LITERAL_VARS:
                out.append(_LITERAL_VARS[name])  # one literal character, never a wildcard
            elif name.lower() in CALLER_VARS:
                out.append("\0$" + CALLER_VARS[name.lower()])
            else:
                raise BadVariable(name)
            pos = m.end()
        out.extend(tokens(text[pos:]))
        toks = tuple(out)
        has_var = any(t.startswith("\0$") for t in toks)
        return Template(toks, None if has_var else Pattern.compile(toks))

    def pattern(self, ctx: Mapping[str, tuple[str, ...]]) -> Pattern | None:
        """The glob for this caller; None when a variable it needs is absent (an anonymous caller)."""
        if self.fixed is not None:
            return self.fixed
        out: list[str] = []
        for t in self.toks:
            if t.startswith("\0$"):
                vals = ctx.get(t[2:])
                if not vals:
                    return None
                out.extend(vals[0])
            else:
                out.append(t)
        return Pattern.compile(out)

    def literal(self, ctx: Mapping[str, tuple[str, ...]]) -> str | None:
        """The value as plain text (wildcards as the characters they are), for the non-glob operators."""
        pat = self.pattern(ctx)
        if pat is None:
            return None
        return "".join(t[1] if len(t) == 2 else t for t in pat.toks)
