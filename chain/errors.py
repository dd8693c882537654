"""The root of every error chain/ raises on bad input or a bad store: callers that only need to
know "the chain layer refused this" catch `ChainError`; each subclass keeps the builtin base
(ValueError, RuntimeError) its callers caught before."""

from __future__ import annotations


class ChainError(Exception):
    """Something chain/ refuses: a malformed value, tx, block, genesis or key file, a bad store."""
