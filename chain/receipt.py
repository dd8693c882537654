"""A receipt: the outcome of one committed tx, as `receipts_root` commits to it and the RPC serves
it (docs/protocol.md, Blocks). Built by contracts/registry.py, stored by chain/store.py."""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class ReceiptError(TypedDict):
    code: str  # a rejection code of docs/contracts.md
    message: str


class Receipt(TypedDict):
    tx_id: str
    height: int
    index: int
    status: Literal["ok", "rejected"]
    error: ReceiptError | None  # None exactly when status is "ok"
    events: list[dict[str, Any]]
