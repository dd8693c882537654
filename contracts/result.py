"""What a handler hands back: its effects, or a Rejection carrying a rejection code of docs/contracts.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.errors import ContractError
from contracts.state import Writes

REJECTION_CODES = frozenset(
    {
        "not_authorized",
        "not_owner",
        "not_pledgee",
        "asset_exists",
        "duplicate_document",
        "asset_not_found",
        "asset_locked",
        "asset_redeemed",
        "invalid_args",
        "proposal_not_found",
        "already_approved",
    }
)


class Rejection(ContractError):
    """A well-formed tx whose contract checks fail: committed with status "rejected"."""

    def __init__(self, code: str, message: str) -> None:
        if code not in REJECTION_CODES:
            raise ValueError(f"{code!r} is not a rejection code")
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Effects:
    writes: Writes = field(default_factory=dict)
    events: tuple[dict[str, Any], ...] = ()

    def then(self, other: Effects) -> Effects:
        """These effects followed by other's: later writes win, events keep their order."""
        return Effects({**self.writes, **other.writes}, self.events + other.events)
