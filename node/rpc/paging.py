"""Cursors for the RPC's paged lists: an asset's history and the assets an account owns.

A page is at most `limit` items (default DEFAULT_LIMIT, at most MAX_LIMIT) and `next`, the cursor
of the following page, or None on the last page. A cursor names the first item of its page, so a
page is the same whenever it is asked for (lists only grow at their end: history by height, an
account's assets by id order, which can gain an id anywhere, but a page never skips one it had).

    history cursor   "<height>.<index>" of the first entry of the page
    account cursor   the first asset id of the page
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import TypeVar

from chain.patterns import WholePattern
from contracts.args import ASSET_ID_PATTERN
from node.errors import NodeError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
HISTORY_CURSOR = WholePattern(r"^[0-9]{1,12}\.[0-9]{1,6}$")

T = TypeVar("T")


class CursorError(NodeError, ValueError):
    """A cursor no page of this list can have; the message says which form is expected."""


def history_cursor(height: int, index: int) -> str:
    return f"{height}.{index}"


def parse_history_cursor(cursor: str) -> tuple[int, int]:
    if not HISTORY_CURSOR.matches(cursor):
        raise CursorError("a history cursor is '<height>.<index>', as a page's `next` gives it")
    height, index = cursor.split(".")
    return int(height), int(index)


def check_account_cursor(cursor: str) -> str:
    if not ASSET_ID_PATTERN.matches(cursor):
        raise CursorError("an account cursor is an asset id, as a page's `next` gives it")
    return cursor


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise CursorError(f"limit must be from 1 to {MAX_LIMIT}")
    return limit


def take_page(rows: Iterable[T], limit: int, cursor_of: Callable[[T], str]) -> tuple[list[T], str | None]:
    """The first `limit` rows and the cursor of the row after them (None if there is none)."""
    got = list(islice(rows, limit + 1))
    return got[:limit], (cursor_of(got[limit]) if len(got) > limit else None)


def page_of(items: Sequence[T], start: int, limit: int, cursor_of: Callable[[T], str]) -> tuple[list[T], str | None]:
    """take_page over an in-memory list, from position `start`."""
    return take_page(items[start:], limit, cursor_of)
