"""What the RPC asks of a running validator (`node.rpc.api.NodeApi`), answered from its parts.

The validator drives consensus; this is its face to the RPC: status and readiness, submits and
their `?wait=true` futures, reads through the ledger, event-stream subscriptions. The validator
tells it what each commit settled (`settled`, `failed`, `publish`); nothing here drives the core.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chain.receipt import Receipt
from chain.tx import Tx
from node.rpc.api import CommittedBlockEvent
from node.version import version

if TYPE_CHECKING:
    from node.runtime.validator import Validator

SUBSCRIBER_QUEUE = 256  # committed blocks an event stream may lag behind before it is cut off
# Further behind than this, a node refuses submits until it has caught up: it cannot judge a tx's
# expiry window, and its answers would lag. Closer, the normal commit path closes the gap in moments.
READY_LAG = 50


@dataclass
class _Waiters:
    """The RPC's `?wait=true` futures, by tx_id."""

    by_tx: dict[str, list[asyncio.Future[Receipt]]] = field(default_factory=dict)

    def add(self, tx_id: str, fut: asyncio.Future[Receipt]) -> None:
        self.by_tx.setdefault(tx_id, []).append(fut)

    def resolve(self, tx_id: str, receipt: Receipt) -> None:
        for fut in self.by_tx.pop(tx_id, ()):
            if not fut.done():
                fut.set_result(receipt)

    def fail(self, tx_id: str, error: Exception) -> None:
        for fut in self.by_tx.pop(tx_id, ()):
            if not fut.done():
                fut.set_exception(error)


class NodeService:
    """One validator's `NodeApi`."""

    def __init__(self, node: Validator) -> None:
        self.node = node
        self._waiters = _Waiters()
        self._arrived: dict[str, float] = {}  # tx_id -> loop time of its RPC submission (commit latency)
        self._subscribers: list[asyncio.Queue[CommittedBlockEvent]] = []

    # ------------------------------------------------------------------ told by the validator

    def settled(self, receipts: list[Receipt], now: float) -> list[float]:
        """A block committed these receipts: answer their waiters; the submit-to-commit latencies."""
        latencies = []
        for receipt in receipts:
            arrived = self._arrived.pop(receipt["tx_id"], None)
            if arrived is not None:
                latencies.append(now - arrived)
            self._waiters.resolve(receipt["tx_id"], receipt)
        return latencies

    def failed(self, tx_id: str, error: Exception) -> None:
        self._arrived.pop(tx_id, None)
        self._waiters.fail(tx_id, error)

    def fail_all(self, error: Exception) -> None:
        for tx_id in list(self._waiters.by_tx):
            self.failed(tx_id, error)

    def publish(self, event: CommittedBlockEvent) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # a stream that cannot keep up is cut loose; it refills from the store (node/rpc/events.py)
                self._subscribers.remove(queue)

    # ------------------------------------------------------------------ NodeApi

    @property
    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why this node refuses submits now, in words an operator can act on; None when ready."""
        if self.node.fatal is not None:
            return f"stopped after a fatal error: {self.node.fatal}"
        if not self.node.serving:
            return "starting: recovering from the data dir, not yet serving consensus"
        if (reason := self.node.membership.not_ready_reason(self.node.ledger.height + 1)) is not None:
            return reason
        if self.node.catch_up.target - self.node.ledger.height > READY_LAG:
            return f"catching up from height {self.node.ledger.height} to {self.node.catch_up.target}"
        return None

    @property
    def chain_id(self) -> str:
        return self.node.genesis.chain_id

    @property
    def height(self) -> int:
        return self.node.ledger.height

    def status(self) -> dict[str, Any]:
        vset = self.node.ledger.validator_set_at(self.node.ledger.height + 1)
        return {
            "node_id": self.node.cfg.node_id,
            "chain_id": self.chain_id,
            "height": self.node.ledger.height,
            "view": self.node.replica.view,
            "primary": vset.primary(self.node.replica.view).node_id,
            "validators": vset.to_plain(),
            "peers": [p.to_plain() for p in self.node.transport.peer_status() if not p.guest],
            "mempool": len(self.node.mempool),
            "ready": self.ready,
            "not_ready": self.not_ready_reason(),
            "version": version(),
        }

    def genesis_doc(self) -> dict[str, Any]:
        return self.node.genesis.doc

    def submit(self, tx: Tx) -> None:
        self.node.mempool.add(tx, self.node.ledger.height + 1)
        self._arrived[tx.tx_id] = asyncio.get_running_loop().time()
        self.node.on_txs_admitted()

    def wait_committed(self, tx_id: str) -> asyncio.Future[Receipt]:
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        record = self.node.ledger.tx(tx_id)
        if record is not None:
            fut.set_result(record.receipt)
        else:
            self._waiters.add(tx_id, fut)
        return fut

    def tx_info(self, tx_id: str) -> dict[str, Any] | None:
        pending = self.node.mempool.get(tx_id)
        if pending is not None:
            return {"tx_id": tx_id, "status": "pending", "height": None, "receipt": None, "tx": pending.to_plain()}
        return self.node.ledger.committed_tx_answer(tx_id)

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        return self.node.ledger.asset(asset_id)

    def history(self, asset_id: str, cursor: str | None, limit: int) -> dict[str, Any] | None:
        return self.node.ledger.history_answer(asset_id, cursor, limit)

    def proof(self, asset_id: str) -> dict[str, Any] | None:
        return self.node.ledger.proof_answer(asset_id)

    def account(self, account: str, cursor: str | None, limit: int) -> dict[str, Any]:
        return self.node.ledger.account_answer(account, cursor, limit)

    def block(self, height: int) -> dict[str, Any] | None:
        return self.node.ledger.block_answer(height)

    def block_event(self, height: int) -> CommittedBlockEvent | None:
        store = self.node.ledger.store
        summary, receipts = store.get_summary(height), store.get_receipts(height)
        if summary is None or receipts is None:
            return None
        header, tx_ids = summary
        return CommittedBlockEvent(height, header.block_hash, header.to_plain(), tuple(tx_ids), tuple(receipts))

    def subscribe(self) -> asyncio.Queue[CommittedBlockEvent]:
        queue: asyncio.Queue[CommittedBlockEvent] = asyncio.Queue(maxsize=SUBSCRIBER_QUEUE)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[CommittedBlockEvent]) -> None:
        if queue in self._subscribers:
            self._subscribers.remove(queue)

    def evidence(self, offset: int, limit: int, validator: str | None) -> dict[str, Any]:
        listed = self.node.evidence_store.listing(offset, limit, validator)
        return {"total": listed.total, "offset": offset, "evidence": listed.records}

    def metrics_text(self) -> bytes:
        self.node.metrics.set_mempool(len(self.node.mempool), self.node.mempool.size_bytes)
        return self.node.metrics.render()
