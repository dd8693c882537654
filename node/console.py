"""The terminal output every command and the demo share: rich, but never breaking a line of text."""

from __future__ import annotations

from rich.console import Console

PIPE_WIDTH = 1000  # piped output: rich's default of 80 columns cut hashes and sentences in two


def console(stderr: bool = False) -> Console:
    """A console that never breaks a line of text (soft wrap) and, piped, is wide enough for any
    table, so `| grep` and copy-paste get whole hashes. Resolved per call so that click's test
    runner (which swaps sys.stdout) captures it."""
    c = Console(highlight=False, stderr=stderr, soft_wrap=True)
    if not c.is_terminal:
        c = Console(highlight=False, stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)
    return c
