"""What the RPC needs from a running validator: the seam between `node/rpc/server.py` and `node/runtime/validator.py`.

The RPC never touches the ledger, mempool or consensus directly; it calls this protocol, so it can
be tested against a small in-process node and the validator can change inside without the RPC
noticing. The answers crossing it are typed (node/rpc/views.py: TypedDicts, so each is its JSON
object, in the shapes of docs/rpc.md), and built there from a store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from chain.receipt import Receipt
from chain.tx import Tx, TxError
from node.rpc.views import (
    AccountPage,
    AssetAnswer,
    BlockAnswer,
    EvidencePage,
    HistoryPage,
    ProofAnswer,
    StatusAnswer,
    TxAnswer,
)

# The classic Prometheus text format: every Prometheus server and most scrapers read it.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

@dataclass(frozen=True)
class CommittedBlockEvent:
    """One committed block, as the SSE stream and `?wait=true` see it."""

    height: int
    block_hash: str
    header: dict[str, Any]
    tx_ids: tuple[str, ...]
    receipts: tuple[Receipt, ...]

    def to_plain(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "block_hash": self.block_hash,
            "header": self.header,
            "tx_ids": list(self.tx_ids),
            "receipts": list(self.receipts),
        }


class NodeApi(Protocol):
    role: str  # "validator", or "observer": a node that follows the chain and refuses writes (403 read_only)

    @property
    def ready(self) -> bool:
        """True once the node has recovered from its store and is connected enough to commit."""

    @property
    def chain_id(self) -> str: ...

    @property
    def height(self) -> int: ...

    @property
    def base_height(self) -> int:
        """0, or the base height of a node that joined by state sync (below it: 410 before_base)."""

    def not_ready_reason(self) -> str | None:
        """Why `ready` is False, for people (e.g. "connected to 1 of 3 peers, a quorum needs 2"); None when ready."""

    def status(self) -> StatusAnswer:
        """/v1/status (docs/rpc.md): node_id, chain_id, height, view, primary, validators, peers, mempool, ready, not_ready, version."""

    def genesis_doc(self) -> dict[str, Any]: ...

    def submit(self, tx: Tx) -> None:
        """Admit a parsed tx to the mempool and gossip it.

        Raises chain.tx.TxError; codes: malformed, too_large, bad_signature, wrong_chain, expired,
        expires_too_far, unknown_op, invalid_args (422 except malformed 400 and too_large 413),
        not_permitted (403: the signer has no standing), duplicate (409: already pending or
        committed), mempool_full and quota_exceeded (429).
        """

    def submit_many(self, txs: Sequence[Tx]) -> list[TxError | None]:
        """`submit` for a batch, in order: one result per tx, None if admitted, else its TxError
        (the codes of `submit`; a tx_id repeated in the batch is admitted once, the later copies
        are `duplicate`). The mempool checks the batch in one pass (node/runtime/mempool.py)."""

    def wait_committed(self, tx_id: str) -> asyncio.Future[Receipt]:
        """A future resolved with the tx's receipt when it commits (at once if it already has)."""

    def tx_info(self, tx_id: str) -> TxAnswer | None:
        """{"tx_id", "status": "pending"|"committed", "height", "receipt", "tx"} or None if unknown."""

    def asset(self, asset_id: str) -> AssetAnswer | None: ...

    def history(self, asset_id: str, cursor: str | None, limit: int) -> HistoryPage | None:
        """{"asset_id", "entries", "next"}: a page of entries oldest first (node/rpc/paging.py); None for
        an id no asset holds. Raises node.paging.CursorError for a cursor no page can have."""

    def proof(self, asset_id: str) -> ProofAnswer | None:
        """A proof of ownership, or of absence for an id no asset holds, as of the head
        (contracts/proofs.py); None only before the first block (nothing certified yet)."""

    def account(self, account: str, cursor: str | None, limit: int) -> AccountPage:
        """{"account", "roles", "assets", "next"}, assets paged like history; an unknown account has
        no roles and no assets."""

    def block(self, height: int) -> BlockAnswer | None:
        """{"header", "block_hash", "tx_ids", "certificate"} or None beyond the head."""

    def block_event(self, height: int) -> CommittedBlockEvent | None:
        """A past committed block in event form (SSE resume)."""

    def subscribe(self) -> asyncio.Queue[CommittedBlockEvent]:
        """A queue receiving every block committed from now on, in order."""

    def unsubscribe(self, queue: asyncio.Queue[CommittedBlockEvent]) -> None: ...

    def evidence(self, offset: int, limit: int, validator: str | None) -> EvidencePage:
        """{"total", "offset", "evidence": [full equivocation records]} (node/consensus/evidence.py)."""

    def metrics_text(self) -> bytes:
        """Prometheus exposition of the node's metrics, in METRICS_CONTENT_TYPE's format."""
