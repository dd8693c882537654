"""What a validator (node/runtime/validator.py) and an observer (node/runtime/observer.py) share:
their start-up errors, the loading of genesis, key and data dir, the RPC server, and the read side
of the RPC's `NodeApi` over the ledger (txs, assets, histories, proofs, accounts, blocks, evidence,
the event stream and `?wait=true`).

A node class mixes `LedgerReads` in and sets `cfg`, `ledger`, `genesis` and `evidence_store`;
it calls `_init_reads()` in its constructor and `_published(block, receipts)` once per committed
block, which answers the waiters and feeds the event streams.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from chain.block import Block
from chain.crypto import KeyFileError, KeyPair, load_key_file
from chain.genesis import Genesis, GenesisError
from chain.receipt import Receipt
from chain.store import StoreError, StoreFault
from chain.tx import TxError
from node.errors import NodeError
from node.p2p.catchup import CatchUp
from node.p2p.transport import Transport
from node.rpc.api import CommittedBlockEvent, NodeApi
from node.rpc.ratelimit import RateLimiter
from node.rpc.server import serve
from node.runtime.config import NodeConfig
from node.runtime.evidence_store import EvidenceStore
from node.runtime.ledger import Ledger, LedgerError
from node.version import version

SUBSCRIBER_QUEUE = 256  # committed blocks an event stream may lag behind before it is cut off
# Further behind than this, a node says it is not ready: a validator refuses submits until it has
# caught up (it cannot judge a tx's expiry window, and its answers would lag), an observer's
# answers are stale. Closer, the normal path closes the gap in moments.
READY_LAG = 50

log = logging.getLogger("titlechain.node")


class NodeStartError(NodeError, RuntimeError):
    """The node cannot start: a bad genesis, key, data dir or address; the message says which."""


class FatalNodeError(NodeError, RuntimeError):
    """The node must stop to protect its data (a certified block its ledger refuses)."""


def load_node_files(cfg: NodeConfig) -> tuple[Genesis, KeyPair, Ledger]:
    """Load genesis and key, open the data dir; every failure a NodeStartError that says what."""
    try:
        genesis = Genesis.load(cfg.genesis)
    except (GenesisError, OSError, ValueError) as e:
        raise NodeStartError(f"{cfg.genesis}: {e}") from None
    try:
        key = load_key_file(cfg.key)
    except KeyFileError as e:
        raise NodeStartError(str(e)) from None
    try:
        ledger = Ledger.open(cfg.data_dir, genesis)
    except (StoreError, LedgerError) as e:
        raise NodeStartError(str(e)) from None
    return genesis, key, ledger


async def serve_rpc(api: NodeApi, cfg: NodeConfig) -> web.AppRunner:
    """Serve the RPC as the config says; NodeStartError if its address cannot be bound."""
    ssl_context = cfg.rpc_ssl_context()  # a bad cert or key: ConfigError
    try:
        return await serve(
            api, cfg.rpc_host, cfg.rpc_port, tokens=cfg.rpc_tokens,
            rate_limiter=RateLimiter(cfg.rpc_rate_per_s, cfg.rpc_rate_burst),
            allowed_hosts=cfg.rpc_allowed_hosts, header_timeout_s=cfg.rpc_header_timeout_s,
            body_timeout_s=cfg.rpc_body_timeout_s, max_connections=cfg.rpc_max_connections,
            access_log=cfg.rpc_access_log, ssl_context=ssl_context,
        )
    except OSError as e:
        raise NodeStartError(f"cannot serve the RPC on {cfg.rpc_listen}: {e.strerror or e}") from None


@dataclass
class Waiters:
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

    def fail_all(self, why: str) -> None:
        """At shutdown: the RPC's cleanup waits for these, and a node stopping on a fault must exit
        in seconds, not when the last waiter times out."""
        for tx_id in list(self.by_tx):
            self.fail(tx_id, TxError("not_ready", why))


class LedgerReads:
    role: str
    cfg: NodeConfig
    ledger: Ledger
    genesis: Genesis
    evidence_store: EvidenceStore
    transport: Transport
    catch_up: CatchUp
    fatal: FatalNodeError | None
    _started: bool
    _runner: web.AppRunner | None
    _STARTING = "starting: recovering from the data dir"

    async def stop(self) -> None:
        raise NotImplementedError

    def _links_reason(self) -> str | None:
        """Why the node's links keep it from being ready (each kind of node says it its way)."""
        raise NotImplementedError

    def _on_store_fault(self, fault: StoreFault) -> None:
        self._die(FatalNodeError(f"storage fault: {fault}"))

    def _die(self, error: FatalNodeError) -> None:
        if self.fatal is not None:
            return
        log.critical("%s; stopping the node", error)
        self.fatal = error
        asyncio.get_running_loop().create_task(self.stop())

    @property
    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """Why this node is not ready, in words an operator can act on; None when ready."""
        if self.fatal is not None:
            return f"stopped after a fatal error: {self.fatal}"
        if not self._started:
            return self._STARTING
        if (why := self._links_reason()) is not None:
            return why
        if self.catch_up.target - self.ledger.height > READY_LAG:
            return f"catching up from height {self.ledger.height} to {self.catch_up.target}"
        return None

    def _status(self, view: int, mempool: int) -> dict[str, Any]:
        """/v1/status (docs/rpc.md), given what only the node's kind knows."""
        vset = self.ledger.validator_set_at(self.ledger.height + 1)
        return {
            "node_id": self.cfg.node_id,
            "role": self.role,
            "chain_id": self.chain_id,
            "height": self.ledger.height,
            "view": view,
            "primary": vset.primary(view).node_id,
            "validators": vset.to_plain(),
            "peers": [p.to_plain() for p in self.transport.peer_status()],
            "mempool": mempool,
            "ready": self.ready,
            "not_ready": self.not_ready_reason(),
            "version": version(),
        }

    def _init_reads(self) -> None:
        self._waiters = Waiters()
        self._subscribers: list[asyncio.Queue[CommittedBlockEvent]] = []

    def _published(self, block: Block, receipts: Sequence[Receipt]) -> None:
        """A block was committed: answer its txs' waiters and hand it to every event stream."""
        for receipt in receipts:
            self._waiters.resolve(receipt["tx_id"], receipt)
        event = CommittedBlockEvent(block.height, block.block_hash, block.header.to_plain(), tuple(block.tx_ids), tuple(receipts))
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # a stream that cannot keep up is cut loose; it refills from the store (node/rpc/server.py)
                self._subscribers.remove(queue)

    @property
    def rpc_port(self) -> int:
        """The port the RPC listens on (the config may ask for 0: any free port)."""
        assert self._runner is not None, "the node is not started"
        return int(self._runner.addresses[0][1])

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    @property
    def height(self) -> int:
        return self.ledger.height

    def genesis_doc(self) -> dict[str, Any]:
        return self.genesis.doc

    def wait_committed(self, tx_id: str) -> asyncio.Future[Receipt]:
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        record = self.ledger.tx(tx_id)
        if record is not None:
            fut.set_result(record.receipt)
        else:
            self._waiters.add(tx_id, fut)
        return fut

    def tx_info(self, tx_id: str) -> dict[str, Any] | None:
        return self.ledger.committed_tx_answer(tx_id)

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        return self.ledger.asset(asset_id)

    def history(self, asset_id: str, cursor: str | None, limit: int) -> dict[str, Any] | None:
        return self.ledger.history_answer(asset_id, cursor, limit)

    def proof(self, asset_id: str) -> dict[str, Any] | None:
        return self.ledger.proof_answer(asset_id)

    def account(self, account: str, cursor: str | None, limit: int) -> dict[str, Any]:
        return self.ledger.account_answer(account, cursor, limit)

    def block(self, height: int) -> dict[str, Any] | None:
        return self.ledger.block_answer(height)

    def block_event(self, height: int) -> CommittedBlockEvent | None:
        store = self.ledger.store
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
        listed = self.evidence_store.listing(offset, limit, validator)
        return {"total": listed.total, "offset": offset, "evidence": listed.records}
