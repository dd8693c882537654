"""The root of every error contracts/ raises (a rule a tx breaks, a proof that cannot be made)."""

from __future__ import annotations


class ContractError(Exception):
    """Something the contracts refuse."""
