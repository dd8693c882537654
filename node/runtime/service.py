"""What the RPC asks of a running node (`node.rpc.api.NodeApi`), answered from its parts.

The validator drives consensus, the observer follows it; this is their face to the RPC: status and
readiness, submits and their `?wait=true` futures, reads through the ledger, event-stream
subscriptions. `LedgerService` is what both answer alike; `NodeService` is a validator's (its
mempool, submits, quorum of links), `node.runtime.observer.ObserverService` an observer's. The node
tells its service what each commit settled (`settled`, `failed`, `publish`); nothing here drives it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from chain.genesis import Genesis
from chain.receipt import Receipt
from chain.tx import Tx, TxError
from node.p2p.catchup import CatchUp
from node.p2p.transport import Transport
from node.rpc import views
from node.rpc.api import CommittedBlockEvent
from node.runtime.config import NodeConfig
from node.runtime.evidence_store import EvidenceStore
from node.runtime.ledger import Ledger
from node.runtime.metrics import NodeMetrics
from node.version import version

if TYPE_CHECKING:
    from node.runtime.validator import Validator

SUBSCRIBER_QUEUE = 256  # committed blocks an event stream may lag behind before it is cut off
# Further behind than this, a node is not ready: a validator refuses submits until it has caught up
# (it cannot judge a tx's expiry window, and its answers would lag); an observer's answers are
# stale. Closer, the normal path closes the gap in moments.
READY_LAG = 50


class RunningNode(Protocol):
    """What a service reads of its node (a Validator or an Observer)."""

    cfg: NodeConfig
    genesis: Genesis
    ledger: Ledger
    evidence_store: EvidenceStore
    metrics: NodeMetrics
    transport: Transport
    catch_up: CatchUp
    serving: bool

    @property
    def fatal(self) -> Exception | None: ...


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


class LedgerService:
    """The `NodeApi` answers a validator and an observer give alike, from the node's ledger."""

    role = "validator"
    starting = "starting: recovering from the data dir"

    def __init__(self, node: RunningNode) -> None:
        self._node = node
        self._waiters = _Waiters()
        self._arrived: dict[str, float] = {}  # tx_id -> loop time of its RPC submission (commit latency)
        self._subscribers: list[asyncio.Queue[CommittedBlockEvent]] = []

    @property
    def pending_arrivals(self) -> int:
        """Submits still waiting for their commit (their arrival times are kept for the latency metric)."""
        return len(self._arrived)

    def links_reason(self) -> str | None:
        """Why the node's links keep it from being ready (each kind of node says it its way)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ told by the node

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
        """Why this node is not ready (a validator refuses submits), in words an operator can act
        on; None when ready."""
        node = self._node
        if node.fatal is not None:
            return f"stopped after a fatal error: {node.fatal}"
        if not node.serving:
            return self.starting
        if (why := self.links_reason()) is not None:
            return why
        if node.catch_up.target - node.ledger.height > READY_LAG:
            return f"catching up from height {node.ledger.height} to {node.catch_up.target}"
        return None

    @property
    def chain_id(self) -> str:
        return self._node.genesis.chain_id

    @property
    def height(self) -> int:
        return self._node.ledger.height

    @property
    def base_height(self) -> int:
        return self._node.ledger.store.base_height

    def status_with(self, view: int, mempool: int) -> views.StatusAnswer:
        """/v1/status (docs/rpc.md), given what only the kind of node knows."""
        node = self._node
        height = node.ledger.height
        answer = views.status_answer(
            node.cfg.node_id, self.chain_id, height, view, node.ledger.validator_set_at(height + 1),
            peers=[p.to_plain() for p in node.transport.peer_status() if not p.guest],
            mempool=mempool, ready=self.ready,
        )
        answer["role"] = self.role
        answer["not_ready"] = self.not_ready_reason()
        answer["version"] = version()
        return answer

    def genesis_doc(self) -> dict[str, Any]:
        return self._node.genesis.doc

    def wait_committed(self, tx_id: str) -> asyncio.Future[Receipt]:
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        record = self._node.ledger.tx(tx_id)
        if record is not None:
            fut.set_result(record.receipt)
        else:
            self._waiters.add(tx_id, fut)
        return fut

    def tx_info(self, tx_id: str) -> views.TxAnswer | None:
        return views.committed_tx_answer(self._node.ledger.store, tx_id)

    def asset(self, asset_id: str) -> views.AssetAnswer | None:
        return views.asset_answer(self._node.ledger.store, asset_id)

    def history(self, asset_id: str, cursor: str | None, limit: int) -> views.HistoryPage | None:
        return views.history_answer(self._node.ledger.store, asset_id, cursor, limit)

    def proof(self, asset_id: str) -> views.ProofAnswer | None:
        return views.proof_answer(self._node.ledger.store, asset_id)

    def account(self, account: str, cursor: str | None, limit: int) -> views.AccountPage:
        return views.account_answer(self._node.ledger.store, account, cursor, limit)

    def block(self, height: int) -> views.BlockAnswer | None:
        return views.block_answer(self._node.ledger.store, height)

    def block_event(self, height: int) -> CommittedBlockEvent | None:
        store = self._node.ledger.store
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

    def evidence(self, offset: int, limit: int, validator: str | None) -> views.EvidencePage:
        listed = self._node.evidence_store.listing(offset, limit, validator)
        return {"total": listed.total, "offset": offset, "evidence": listed.records}

    def metrics_text(self) -> bytes:
        return self._node.metrics.render()


class NodeService(LedgerService):
    """One validator's `NodeApi`: the shared reads, plus its mempool and submits."""

    starting = "starting: recovering from the data dir, not yet serving consensus"

    def __init__(self, node: Validator) -> None:
        super().__init__(node)
        self.node = node

    def links_reason(self) -> str | None:
        return self.node.membership.not_ready_reason(self.node.ledger.height + 1)

    def status(self) -> views.StatusAnswer:
        return self.status_with(self.node.replica.view, len(self.node.mempool))

    def submit(self, tx: Tx) -> None:
        error = self.submit_many([tx])[0]
        if error is not None:
            raise error

    def submit_many(self, txs: Sequence[Tx]) -> list[TxError | None]:
        results = self.node.mempool.add_many(txs, self.node.ledger.height + 1)
        now = asyncio.get_running_loop().time()
        admitted = [tx.tx_id for tx, error in zip(txs, results, strict=True) if error is None]
        self._arrived.update(dict.fromkeys(admitted, now))
        if admitted:
            self.node.on_txs_admitted()
        return results

    def tx_info(self, tx_id: str) -> views.TxAnswer | None:
        pending = self.node.mempool.get(tx_id)
        if pending is not None:
            return views.pending_tx_answer(pending)
        return super().tx_info(tx_id)

    def metrics_text(self) -> bytes:
        self.node.metrics.set_mempool(len(self.node.mempool), self.node.mempool.size_bytes)
        return super().metrics_text()
