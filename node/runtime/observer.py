"""The observer process: a node that is not a validator. It follows the chain from the validators
by certificates and serves the read RPC, the event stream, the explorer's and the audit's reads.

What it trusts: nothing it is sent. Each block comes with its commit certificate; the ledger
commits it only if the certificate holds a quorum of the validator set of the block's height (the
set the observer's own verified chain gives for that height) and re-executing the block's txs gives
the header's state, receipts and next-validators roots (`Ledger.commit`). So its data dir holds
exactly what a validator's does and audits the same way.

What it may do on the network: it dials the validators of the set at its head (never the reverse:
it needs no listening port) with the key of an account that holds the auditor or regulator role,
and follows that set as its blocks change it. A validator answers its `sync_req`s at a bounded
rate, tells it its head on link-up and after each commit (`head` notices), and nothing else: no
consensus message, no tx gossip, no proposal. It never votes, and what it might send besides
`sync_req` is dropped by the validator, so it is never counted in a quorum.

Following: node/p2p/catchup.py's `CatchUp`, woken by each head notice above ours (and after 3 s
without a commit), asks linked validators in random order for the blocks after our head,
MAX_SYNC_BLOCKS at a time, until it reaches the head; `_on_synced` commits each. A validator that
serves a block that does not verify is logged and the next is asked; a block the ledger cannot
write (a storage fault) stops the node, as on a validator.

Writes: `submit` is refused (403 `read_only`, docs/rpc.md): an observer holds no mempool and sends
no txs to the validators; a client submits to a validator's RPC.
"""


from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from chain.block import Block, Certificate
from chain.crypto import KeyPair
from chain.genesis import Genesis
from chain.store import StoreError
from chain.tx import Tx, TxError
from node.p2p.catchup import CatchUp, SyncHost
from node.p2p.handshake import OBSERVER
from node.p2p.messages import HeadNotice, SyncResponse, parse_from_validator
from node.p2p.transport import Transport
from node.rpc import views
from node.rpc.api import CommittedBlockEvent
from node.runtime.config import NodeConfig
from node.runtime.evidence_store import EvidenceStore, EvidenceStoreError
from node.runtime.ledger import Ledger, LedgerError
from node.runtime.metrics import NodeMetrics
from node.runtime.node_common import NOT_AN_OBSERVER_KEY, FatalNodeError, NodeProcess, NodeStartError, serve_rpc
from node.runtime.service import LedgerService

log = logging.getLogger("titlechain.observer")

def _read_only() -> TxError:
    return TxError("read_only", "this node is an observer: it accepts no txs")


class ObserverService(LedgerService):
    """An observer's `NodeApi`: the shared reads; no mempool, and writes refused (the RPC answers
    them 403 read_only before they get here)."""

    role = "observer"

    def __init__(self, node: Observer) -> None:
        super().__init__(node)
        self.node = node

    def links_reason(self) -> str | None:
        peers = self.node.transport.peer_status()
        if any(p.connected for p in peers):
            return None
        failures = sorted(set(self.node.transport.failures().values()))
        why = f": {'; '.join(failures)}" if failures else ""
        return f"linked to none of the {len(peers)} validators{why}"

    def status(self) -> views.StatusAnswer:
        head = self.node.ledger.head
        certificate = self.node.ledger.store.get_certificate(head.height) if head is not None else None
        return self.status_with(certificate.view if certificate is not None else 0, 0)  # the view its head was committed in

    def submit(self, tx: Tx) -> None:
        raise _read_only()

    def submit_many(self, txs: Sequence[Tx]) -> list[TxError | None]:
        return [_read_only() for _ in txs]


class Observer(NodeProcess):
    """One observer node: follows the validators; `service` answers the RPC, writes refused."""

    role = "observer"

    def __init__(
        self, cfg: NodeConfig, genesis: Genesis, key: KeyPair, ledger: Ledger, transport: Transport | None = None
    ) -> None:
        """`transport`: the links a state sync made (node/runtime/join.py, to the genesis set's
        validators), taken over and moved to the set at the head."""
        if key.public in genesis.validators.publics:
            raise NodeStartError(f"{cfg.key}: {NOT_AN_OBSERVER_KEY}")
        self._linked_set = ledger.validator_set_at(ledger.height + 1)  # the set its links follow: the head's
        by_node_id = {v.node_id: v.public for v in self._linked_set.validators}
        if unknown := sorted(set(cfg.peer_addresses) - set(by_node_id)):
            raise NodeStartError(f"peer_addresses names {', '.join(unknown)}: not a validator of the set at the head")
        self.cfg = cfg
        self.genesis = genesis
        self.key = key
        self.ledger = ledger
        ledger.store.on_fault = self._on_store_fault  # a failed write or checksum error stops the node
        self.metrics = NodeMetrics()
        self.metrics.watch_held_memory(ledger.held_bytes)
        try:
            self.evidence_store = EvidenceStore(ledger.store)
        except EvidenceStoreError as e:
            raise NodeStartError(f"{cfg.data_dir}: {e}") from None
        if transport is None:
            transport = Transport(
                key, role=OBSERVER, chain_id=genesis.chain_id, genesis_hash=genesis.hash, validators=self._linked_set,
                on_message=self._on_validator_message, addresses={by_node_id[n]: a for n, a in cfg.peer_addresses.items()},
            )
        else:
            transport.set_on_message(self._on_validator_message)
            transport.set_validators(self._linked_set)
        self.transport = transport
        host = SyncHost(
            self.transport, lambda: self.ledger.store, lambda: self.ledger.height, lambda: self.fatal is not None,
            cached_block=lambda block_hash: None, wants_block=lambda block_hash: False,
            on_block=lambda peer, block: None, on_synced=self._on_synced,
        )
        self.catch_up = CatchUp(host, random.Random(), grace_s=0.0)
        self.service = ObserverService(self)
        self.serving = False
        self._stopping = False
        self.stopped = asyncio.Event()
        self.fatal: FatalNodeError | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.metrics.set_height(self.ledger.height)
        self._runner = await serve_rpc(self.service, self.cfg)
        if not self.transport.started:  # a state sync's links are up already
            self.transport.dial()  # an observer listens for no one
        self.serving = True
        log.info(
            "observer %s (account %s…) started at height %d; RPC on %s",
            self.cfg.node_id, self.key.public[:12], self.ledger.height, self.cfg.rpc_url,
        )
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.catch_up.run(), name="follow"), loop.create_task(self._gauges(), name="gauges")]

    async def stop(self) -> None:
        """Stop serving, close the links and the database (blocks are written synchronously on this
        loop, so none is being written when this runs)."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.serving = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.service.fail_all(TxError("not_ready", "the node is shutting down"))
        if self._runner is not None:
            await self._runner.cleanup()
        await self.transport.close()
        self.ledger.close()
        self.stopped.set()
        log.info("observer %s stopped at height %d", self.cfg.node_id, self.ledger.height)

    # ------------------------------------------------------------------ following

    def _on_validator_message(self, sender: str, msg: Any) -> None:
        if not self.serving:
            return
        wire = parse_from_validator(sender, msg, log)
        if wire is None:
            return
        if isinstance(wire, HeadNotice):
            if wire.height > self.ledger.height:
                self.catch_up.want(wire.height)
        elif isinstance(wire, SyncResponse):
            self.catch_up.answered(sender, wire)
        else:  # a validator sends an observer nothing else; a buggy one is ignored
            log.warning("validator %s… sent this observer a %s message; ignored", sender[:12], type(wire).__name__)

    def _on_synced(self, block: Block, certificate: Certificate) -> None:
        """A block a validator sent with its certificate: committed only if the certificate holds a
        quorum of the set of its height and re-execution gives its roots (`Ledger.commit`)."""
        if block.height != self.ledger.height + 1 or self.fatal is not None:
            return
        try:
            committed = self.ledger.commit(block, certificate)
        except LedgerError as e:
            log.warning("refusing block %d %s… from a validator: %s", block.height, block.block_hash[:12], e)
            return
        except StoreError as e:
            self._die(FatalNodeError(f"block {block.height} verified but cannot be written: {e}"))
            return
        self.catch_up.committed()
        self._follow_set(block.height + 1)
        receipts = committed.receipts
        self.service.settled(receipts, asyncio.get_running_loop().time())
        n_rejected = sum(1 for r in receipts if r["status"] != "ok")
        self.metrics.on_commit(block.height, len(receipts) - n_rejected, n_rejected)
        log.info("followed block %d (%d txs) %s… view %d", block.height, len(receipts), block.block_hash[:12], certificate.view)
        self.service.publish(
            CommittedBlockEvent(block.height, block.block_hash, block.header.to_plain(), tuple(block.tx_ids), tuple(receipts))
        )

    def _follow_set(self, height: int) -> None:
        """Link to the validators of the set at the head (governance may have changed it)."""
        vset = self.ledger.validator_set_at(height)
        if vset.hash != self._linked_set.hash:
            self._linked_set = vset
            added, removed = self.transport.set_validators(vset)
            log.info("the validator set changes at height %d: links added %s, dropped %s", height, added or "none", removed or "none")

    async def _gauges(self) -> None:
        while True:
            self.metrics.set_peers(sum(1 for p in self.transport.peer_status() if p.connected))
            await asyncio.sleep(1.0)
