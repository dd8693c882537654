"""Identifier patterns that match whole strings, and only whole strings.

Python's `$` also matches just before a trailing newline, so `re.match(r"^[A-Z0-9-]+$", "WR-1\\n")`
succeeds: `WR-1` and `WR-1\\n` were once registered as two assets. Every identifier pattern of
the project is a `WholePattern`, whose `matches` uses `fullmatch` (the string must be consumed
to its last character) and also refuses anything that is not a str. The source text, with its
`^...$` anchors, stays available as `.pattern` for JSON Schema and the OpenAPI document, where
`$` means the end of the string.
"""

from __future__ import annotations

import re


class WholePattern:
    def __init__(self, pattern: str) -> None:
        if not (pattern.startswith("^") and pattern.endswith("$")):
            raise ValueError(f"an identifier pattern is anchored at both ends: {pattern!r}")
        self.pattern = pattern
        self._re = re.compile(pattern)

    def matches(self, value: object) -> bool:
        """True only for a str the pattern matches from its first to its last character."""
        return type(value) is str and self._re.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"WholePattern({self.pattern!r})"
