"""The validator process: the PBFT core driven by asyncio, the transport, the mempool, the ledger
and the RPC, in one event loop.

Theory of operation
-------------------
Everything runs on one thread. Events for the consensus core (peer messages, timers, "txs are
pending", "block persisted", synced blocks) go through `_feed`, which hands them to the core one at
a time and carries out the actions it returns in order: a `CommitBlock` is persisted (one synced
database batch) before the core is told `Persisted`; a `SaveVotes` is synced to the store before the
broadcast that follows it leaves. An event raised while actions are being carried out waits in the
queue, so the core is never re-entered.

Txs arrive from the RPC (`submit`) or from a peer's gossip; the mempool checks each signature once.
The core is told `TxsPending` at most once per `batch_delay_ms`, so a busy primary proposes full
blocks rather than one per tx; while a block is in flight, new txs wait for the next one.

Blocks travel beside the consensus messages: the core's `BroadcastBlock` is one block frame to
every peer, queued ahead of the PRE-PREPARE that names it (each link keeps order), and its
`FetchBlock` asks the connected peers for the block by hash (node/p2p/catchup.py `BlockFetcher`).
So no consensus message holds a block (the largest one sent is a metric). When the core learns it
is behind (`RequestSync`), or nothing has been committed for a while, `CatchUp` (same module)
fetches certified blocks, which go to the core as `SyncedBlock`s.

Observers (node/runtime/observer.py) link to the transport with an auditor's or a regulator's
account key; they may ask for committed blocks and for state sync only (`_on_observer_message`,
at a bounded rate per account), hear a `head` notice after each commit, and lose their link once their account loses the
role. Nothing they send reaches the consensus core or the mempool.

A block the ledger refuses to commit although a quorum certified it means the consortium broke its
fault assumption or this node's data is damaged: the node stops (exit 1) rather than go on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from chain.block import Block, Certificate
from chain.crypto import KeyPair
from chain.genesis import Genesis
from chain.store import StoreError
from chain.tx import Tx, TxError, tx_memo_size
from chain.validators import ValidatorSet
from contracts import validate_args
from contracts.snapshot_source import SnapshotSource
from node.consensus import pbft
from node.consensus.evidence import EquivocationEvidence
from node.consensus.messages import Signed
from node.p2p.catchup import BlockFetcher, CatchUp, SyncHost
from node.p2p.linkguard import LogSummary
from node.p2p.messages import (
    MAX_GOSSIP_TXS,
    BlockPush,
    BlockRequest,
    BlockResponse,
    HeadNotice,
    SyncRequest,
    SyncResponse,
    TxGossip,
    WireError,
    is_wire,
    parse_from_validator,
    parse_wire,
)
from node.p2p.observers import ObserverAccess
from node.p2p.snapshot_serve import SnapshotServer
from node.p2p.sync_wire import is_sync_message
from node.p2p.transport import Transport
from node.rpc.api import CommittedBlockEvent
from node.rpc.ratelimit import RateLimited, RateLimiter
from node.runtime.config import NodeConfig
from node.runtime.consensus_app import LedgerApp
from node.runtime.evidence_store import EvidenceStore, EvidenceStoreError
from node.runtime.ledger import Ledger, LedgerError
from node.runtime.membership import Membership, start_problem
from node.runtime.memory import probe_interval, run_probe
from node.runtime.mempool import Mempool
from node.runtime.metrics import NodeMetrics
from node.runtime.misbehave import MisbehaveError, Misbehaviour, from_environ
from node.runtime.node_common import FatalNodeError, NodeProcess, NodeStartError, load_node_files, serve_rpc
from node.runtime.service import NodeService
from node.runtime.votes import VoteRecordError, VoteStore

log = logging.getLogger("titlechain.node")

__all__ = ["FatalNodeError", "NodeStartError", "Validator", "open_validator"]

GOSSIP_FLUSH_S = 0.005


class Validator(NodeProcess):
    """One validator node: drives the consensus core; `service` answers the RPC."""

    role = "validator"

    def __init__(
        self, cfg: NodeConfig, genesis: Genesis, key: KeyPair, ledger: Ledger, transport: Transport | None = None
    ) -> None:
        """`transport`: links a state sync made (node/runtime/join.py), taken over as they are."""
        head_set = ledger.validator_set_at(ledger.height + 1)
        peer_keys = _peer_keys(cfg, head_set, key, ledger.height + 1)
        self.cfg = cfg
        self.genesis = genesis
        self.key = key
        self.ledger = ledger
        # a failed write or a checksum error anywhere (consensus, sync, an RPC read) stops the
        # node, even where the caller (the transport, a timer) would swallow the exception
        ledger.store.on_fault = self._on_store_fault
        self.metrics = NodeMetrics()
        self.mempool = self._new_mempool()
        self.metrics.watch_held_memory(self.held_bytes)
        self.app = LedgerApp(ledger, self.mempool, key)
        self.evidence_store = self._open_evidence()
        self.votes = VoteStore(ledger.store, key, cfg.data_dir)
        try:
            record = self.votes.load()
        except VoteRecordError as e:
            raise NodeStartError(str(e)) from None
        self.replica = pbft.Replica(key, genesis.chain_id, self.app, genesis.params, record=record)
        self.transport = self._links(transport, head_set, peer_keys)
        self.membership = Membership(key, cfg.node_id, head_set, self.transport)
        self._observer_rate = RateLimiter(cfg.observer_requests_per_s, cfg.observer_request_burst)
        self._observer_drops = LogSummary(log, "dropped an observer's message", 10.0)
        self.misbehaviour = self._misbehaviour()
        self._events: deque[pbft.Event | None] = deque()
        self._pumping = False
        self._timer: asyncio.TimerHandle | None = None
        self._pending_nudge: asyncio.TimerHandle | None = None
        self._gossip_out: list[Tx] = []
        self._gossip_flush: asyncio.TimerHandle | None = None
        self._view_seen = self.replica.view  # as restored from the vote record: not a view change
        self.serving = False
        self._stopping = False
        rng = random.Random()
        host = SyncHost(
            self.transport, lambda: self.ledger.store, lambda: self.ledger.height, lambda: self.fatal is not None,
            self.replica.block_by_hash, self.replica.wants_block,
            on_block=lambda peer, block: self._feed(pbft.BlockReceived(peer, block)),
            on_synced=lambda block, certificate: self._feed(pbft.SyncedBlock(block, certificate)),
        )
        self.fetcher = BlockFetcher(host, rng)
        self.catch_up = CatchUp(host, rng)
        tamper = self.misbehaviour.tamper_snapshot if self.misbehaviour is not None else None
        self.snapshots = SnapshotServer(self.transport.send, lambda: SnapshotSource(self.ledger.store), tamper)
        # an observer joining by state sync asks the same questions; answered on its own link
        self.observer_snapshots = SnapshotServer(
            self.transport.send_observer, lambda: SnapshotSource(self.ledger.store), tamper, who="observer"
        )
        self.service = NodeService(self)
        self.stopped = asyncio.Event()
        self.fatal: FatalNodeError | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _open_evidence(self) -> EvidenceStore:
        try:
            store = EvidenceStore(self.ledger.store)
        except EvidenceStoreError as e:
            raise NodeStartError(f"{self.cfg.data_dir}: {e}") from None
        for validator, n in store.by_validator.items():
            self.metrics.on_evidence(validator, n)
        return store

    def _links(self, transport: Transport | None, head_set: ValidatorSet, peer_keys: dict[str, str]) -> Transport:
        """This node's transport: a new one, or the state sync's (linked to the genesis set's nodes)
        taken over as it is."""
        cfg = self.cfg
        access = ObserverAccess(
            self.ledger.observer_role, self._on_observer_message, cfg.observers_max, on_link=self._on_observer_link
        ) if cfg.observers_max else None
        if transport is None:
            transport = Transport(
                self.key,
                chain_id=self.genesis.chain_id,
                genesis_hash=self.genesis.hash,
                validators=head_set,
                on_message=self._on_peer_message,
                addresses={peer_keys[n]: address for n, address in cfg.peer_addresses.items()},
                bootstrap=cfg.peers,
                observers=access,
            )
        else:  # the state sync's, linked to the genesis set's nodes: now this node's
            transport.set_on_message(self._on_peer_message)
            transport.set_observers(access)
            transport.set_validators(head_set)
        return transport

    def _new_mempool(self) -> Mempool:
        store = self.ledger.store
        return Mempool(
            self.genesis.chain_id,
            arg_validator=validate_args,
            is_committed=lambda tx_id: store.tx_location(tx_id) is not None,
            has_standing=self.ledger.has_standing,
            max_txs=self.cfg.mempool_max_txs,
            max_bytes=self.cfg.mempool_max_bytes,
            max_per_signer=self.cfg.mempool_max_per_signer,
            on_admitted=self._gossip,
        )

    def _misbehaviour(self) -> Misbehaviour | None:
        """Test-only tampering (node/runtime/misbehave.py), when the environment both asks and enables it."""
        try:
            behaviours = from_environ(os.environ)
        except MisbehaveError as e:
            raise NodeStartError(str(e)) from None
        if not behaviours:
            return None
        peers = [v.public for v in self.genesis.validators.validators if v.public != self.key.public]
        bad = Misbehaviour(
            behaviours, self.key, self.genesis.chain_id, peers, self.transport.send,
            lambda peer, block: self.transport.send_encoded(peer, BlockPush(block).encode()),
            self.replica.block_by_hash, self.replica.primary, self._changing_view,
        )
        bad.announce()
        return bad

    def _changing_view(self) -> tuple[int, int, tuple[Signed, ...]] | None:
        r = self.replica
        return (r.view, r.height, tuple(r.view_changes.get(r.view, {}).values())) if r.in_view_change else None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.cfg.rpc_ssl_context()  # a bad cert or key: ConfigError before anything binds
        next_set = self.ledger.validator_set_at(self.ledger.height + 1)
        self.metrics.set_height(self.ledger.height, (v.node_id for v in next_set.validators))
        try:
            if not self.transport.started:  # a state sync's links are up already
                await self.transport.start(self.cfg.peer_host, self.cfg.peer_port)
        except OSError as e:
            raise NodeStartError(f"cannot listen for peers on {self.cfg.peer_listen}: {e.strerror or e}") from None
        try:
            self._runner = await serve_rpc(self.service, self.cfg)
        except NodeStartError:
            await self.transport.close()
            raise
        self.serving = True
        log.info(
            "node %s started at height %d (view %d); peers on %s, RPC on %s",
            self.cfg.node_id, self.ledger.height, self.replica.view, self.cfg.peer_listen, self.cfg.rpc_url,
        )
        self._tasks = [loop.create_task(self.catch_up.run(), name="sync"), loop.create_task(self._gauges(), name="gauges")]
        if (seconds := probe_interval()) is not None:
            self._tasks.append(loop.create_task(run_probe(seconds, self.memory_sizes), name="memory probe"))
        self._feed(None)

    async def stop(self) -> None:
        """Stop serving, close the links and the database. Never interrupts a block being written:
        writes happen synchronously on this loop, so by the time this runs none is under way."""
        if self._stopping:
            await self.stopped.wait()
            return
        self._stopping = True
        self.serving = False
        for handle in (self._timer, self._pending_nudge, self._gossip_flush):
            if handle is not None:
                handle.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # answer the RPC's ?wait=true requests first: the runner's cleanup waits for them, and a
        # node stopping on a fault must exit in seconds, not when the last waiter times out
        self.service.fail_all(TxError("not_ready", "the node is shutting down"))
        self._observer_drops.close()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.transport.close()
        self.ledger.close()
        self.stopped.set()
        log.info("node %s stopped at height %d", self.cfg.node_id, self.ledger.height)

    # ------------------------------------------------------------------ driving the core

    def _feed(self, event: pbft.Event | None) -> None:
        """Hand an event to the core (None: start it) and carry out its actions, in order."""
        self._events.append(event)
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._events and self.fatal is None:
                ev = self._events.popleft()
                actions = self.replica.start() if ev is None else self.replica.handle(ev)
                for action in actions:
                    self._act(action)
                self._note_evidence()
                self._note_view()
                if self.misbehaviour is not None:
                    self.misbehaviour.after_step()
        except FatalNodeError as e:
            self._die(e)
        except StoreError as e:
            self._die(FatalNodeError(f"the store failed: {e}"))
        finally:
            self._pumping = False

    def _act(self, action: pbft.Action) -> None:
        # a message too large for a frame (e.g. a NEW-VIEW carrying several full blocks) is lost
        # like any other; the core recovers by timeout, and the rest of this step must still run
        bad = self.misbehaviour
        if isinstance(action, pbft.Broadcast):
            try:
                if bad is None or not bad.outgoing(action.message, None):
                    self.metrics.on_consensus_frame(self.transport.broadcast(action.message))
            except ValueError as e:
                log.error("could not broadcast a %s message: %s", _kind(action.message), e)
        elif isinstance(action, pbft.Send):
            try:
                if bad is None or not bad.outgoing(action.message, action.to):
                    self.metrics.on_consensus_frame(self.transport.send(action.to, action.message))
            except KeyError:
                log.warning("no link to validator %s… (not in the set this node links to)", action.to[:12])
            except ValueError as e:
                log.error("could not send a %s message: %s", _kind(action.message), e)
        elif isinstance(action, pbft.SetTimer):
            if self._timer is not None:
                self._timer.cancel()
            timeout = pbft.Timeout(action.view, action.height)
            self._timer = asyncio.get_running_loop().call_later(action.ms / 1000, self._feed, timeout)
        elif isinstance(action, pbft.CancelTimer):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        elif isinstance(action, pbft.CommitBlock):
            self._persist(action.block, action.certificate)
            self._events.append(pbft.Persisted(action.block.height))
        elif isinstance(action, pbft.RequestSync):
            self.catch_up.want(action.to_height)
        elif isinstance(action, pbft.SaveVotes):
            self.votes.save(action.record)
        elif isinstance(action, pbft.BroadcastBlock):
            try:
                self.transport.broadcast_encoded(BlockPush(action.block).encode())
            except ValueError as e:
                log.error("could not push block %d: %s", action.block.height, e)
        elif isinstance(action, pbft.FetchBlock):
            task = self.fetcher.fetch(action.block_hash, action.height)
            if task is not None:
                self._tasks.append(task)
                task.add_done_callback(self._tasks.remove)

    def _note_evidence(self) -> None:
        """Store what the core convicted (synced: a failed write stops the node) and count it."""
        for ev in self.replica.take_evidence():
            record = EquivocationEvidence.of(self.genesis.chain_id, self.genesis.hash, ev.first, ev.second)
            try:
                stored = self.evidence_store.add(record)
            except StoreError as e:
                raise FatalNodeError(f"cannot store equivocation evidence: {e}") from None
            log.warning(
                "equivocation by validator %s…: two different %s messages for view %d height %d (evidence %s… %s)",
                ev.sender[:12], ev.kind, ev.view, ev.height, record.evidence_id[:12], "stored" if stored else "not stored",
            )
            if stored:
                self.metrics.on_evidence(ev.sender)

    def _note_view(self) -> None:
        """Count view changes for the metrics (the core's view only grows)."""
        if self.replica.view > self._view_seen:
            log.info("view %d -> %d at height %d (view timer patience %d: docs/consensus.md, Timers)",
                     self._view_seen, self.replica.view, self.replica.height, self.replica.patience)
            self.metrics.on_view_change(self.replica.view - self._view_seen)
            self._view_seen = self.replica.view

    def _note_certificate(self, height: int, certificate: Certificate) -> None:
        vset = self.ledger.validator_set_at(height)
        by_key = {v.public: v.node_id for v in vset.validators}
        self.metrics.on_certificate(by_key.values(), (by_key.get(pub, "") for pub, _ in certificate.signatures))

    # ------------------------------------------------------------------ committing

    def _persist(self, block: Block, certificate: Certificate) -> None:
        self._note_certificate(block.height, certificate)
        try:
            committed = self.ledger.commit(block, certificate, verified=[t.tx_id for t in block.txs if self.mempool.verified(t)])
        except (LedgerError, StoreError) as e:
            raise FatalNodeError(f"block {block.height} is certified but cannot be committed here: {e}") from None
        if block.header.next_validators_hash != self.membership.linked_set.hash:
            self.membership.follow(block.height + 1, self.ledger.validator_set_at(block.height + 1))
        now = asyncio.get_running_loop().time()
        self.catch_up.committed()
        receipts = committed.receipts
        self.mempool.remove_committed(block.tx_ids)
        latencies = self.service.settled(receipts, now)
        for tx_id in self.mempool.evict_expired(block.height + 1):
            self.service.failed(tx_id, TxError("expired", f"tx {tx_id} expired before it could be included"))
        n_rejected = sum(1 for r in receipts if r["status"] != "ok")
        self.metrics.on_commit(block.height, len(receipts) - n_rejected, n_rejected, latencies)
        self.metrics.set_mempool(len(self.mempool), self.mempool.size_bytes)
        log.info(
            "committed block %d (%d txs, %d rejected) %s… view %d",
            block.height, len(receipts), n_rejected, block.block_hash[:12], block.header.view,
        )
        self.service.publish(
            CommittedBlockEvent(block.height, block.block_hash, block.header.to_plain(), tuple(block.tx_ids), tuple(receipts))
        )
        # observers: drop those whose role this block revoked, tell the others the head moved
        self.transport.recheck_observers()
        self.transport.broadcast_observers(HeadNotice(block.height).to_plain())

    # ------------------------------------------------------------------ txs

    def on_txs_admitted(self) -> None:
        """Txs entered the mempool: tell the core, at most once per batch delay."""
        if self._pending_nudge is None and self.serving:
            delay = self.genesis.params.batch_delay_ms / 1000
            self._pending_nudge = asyncio.get_running_loop().call_later(delay, self._nudge)

    def _nudge(self) -> None:
        self._pending_nudge = None
        self.metrics.set_mempool(len(self.mempool), self.mempool.size_bytes)
        self._feed(pbft.TxsPending())

    def _gossip(self, txs: Sequence[Tx]) -> None:
        self._gossip_out.extend(txs)
        if self._gossip_flush is None:
            self._gossip_flush = asyncio.get_running_loop().call_later(GOSSIP_FLUSH_S, self._flush_gossip)

    def _flush_gossip(self) -> None:
        self._gossip_flush = None
        out, self._gossip_out = self._gossip_out, []
        for i in range(0, len(out), MAX_GOSSIP_TXS):
            self.transport.broadcast_encoded(TxGossip(tuple(out[i : i + MAX_GOSSIP_TXS]), 0).encode())

    # ------------------------------------------------------------------ peers

    def _on_peer_message(self, sender: str, msg: Any) -> None:
        if not self.serving:
            return
        if not is_wire(msg):
            self._feed(pbft.Received(msg))
            return
        if is_sync_message(msg):
            self.snapshots.serve(sender, msg)
            return
        wire = parse_from_validator(sender, msg, log)
        if isinstance(wire, TxGossip):
            if wire.refused:
                log.warning("validator %s… gossiped %d malformed txs", sender[:12], wire.refused)
            if wire.txs:
                results = self.mempool.add_many(wire.txs, self.ledger.height + 1, gossip=False)
                if any(r is None for r in results):
                    self.on_txs_admitted()
        elif isinstance(wire, BlockPush):
            self._feed(pbft.BlockReceived(sender, wire.block))
        elif isinstance(wire, BlockRequest):
            self.fetcher.serve(sender, wire)
        elif isinstance(wire, BlockResponse):
            self.fetcher.answered(sender, wire)
        elif isinstance(wire, SyncRequest):
            self.catch_up.serve(sender, wire)
        elif isinstance(wire, SyncResponse):
            self.catch_up.answered(sender, wire)

    def _on_observer_message(self, account: str, msg: Any) -> None:
        """An observer may only ask for certified blocks, at `observer_requests_per_s`, and for
        state sync (`snap_*` requests, at the snapshot server's own rate per account). Anything
        else it sends (a vote, even one signed with its own key; tx gossip; a block) is dropped and
        counted, and reaches neither the consensus core nor the mempool."""
        if not self.serving:
            return
        if is_sync_message(msg):
            self.observer_snapshots.serve(account, msg)
            return
        try:
            wire = parse_wire(msg) if is_wire(msg) else None
        except WireError:
            wire = None
        if not isinstance(wire, SyncRequest):
            what = type(wire).__name__ if wire is not None else _kind(msg) if isinstance(msg, dict) else "malformed"
            self._drop_observer_message(account, f"a {what} message (observers may only ask for blocks)")
            return
        try:
            self._observer_rate.take(account)
        except RateLimited:
            self._drop_observer_message(account, "requests beyond its rate")
            return
        try:
            self.transport.send_observer(account, self.catch_up.answer(wire))
        except KeyError:
            pass  # its link closed meanwhile
        except ValueError as e:
            log.error("could not answer an observer's sync request: %s", e)

    def _on_observer_link(self, account: str) -> None:
        """A new observer hears the head at once: it need not wait for the next block to catch up."""
        self.transport.send_observer(account, HeadNotice(self.ledger.height).to_plain())

    def _drop_observer_message(self, account: str, what: str) -> None:
        self.metrics.on_observer_message_dropped()
        self._observer_drops.event(f"observer {account[:12]}…", what)

    def held_bytes(self) -> dict[str, int]:
        """What this node holds in memory, in bytes, by part (its `titlechain_memory_held_bytes`)."""
        return {**self.ledger.held_bytes(), "mempool": self.mempool.size_bytes}

    def memory_sizes(self) -> dict[str, int]:
        """What this node holds that could grow, by count (bytes where named so): what the memory
        probe logs (node/runtime/memory.py, TITLECHAIN_MEMLOG)."""
        r = self.replica
        out = {f"{part}_bytes": n for part, n in self.held_bytes().items()}
        out.update({
            "parse_memo": tx_memo_size(),
            "mempool": len(self.mempool),
            "arrived": self.service.pending_arrivals,
            "slots": len(r.slots),
            "blocks": len(r.blocks),
            "view_changes": sum(len(v) for v in r.view_changes.values()),
            "sent_new_view": len(r.sent_new_view),
            "tasks": len(self._tasks),
        })
        return out

    async def _gauges(self) -> None:
        while True:
            self.metrics.set_view(self.replica.view)
            self.metrics.set_peers(sum(1 for p in self.transport.peer_status() if p.connected))
            self.metrics.set_observers(len(self.transport.observer_status()))
            await asyncio.sleep(1.0)


def _peer_keys(cfg: NodeConfig, head_set: ValidatorSet, key: KeyPair, height: int) -> dict[str, str]:
    """The other validators' keys by node id, once the config and the key agree with the set of
    the height after the head (or the node is joining: node/runtime/membership.py)."""
    if problem := start_problem(head_set, key, cfg.node_id, cfg.peers, height):
        raise NodeStartError(f"{cfg.key}: {problem}")
    by_node_id = {v.node_id: v.public for v in head_set.validators if v.public != key.public}
    if unknown := sorted(set(cfg.peer_addresses) - set(by_node_id)):
        raise NodeStartError(f"peer_addresses names {', '.join(unknown)}: not another validator of the set at height {height}")
    return by_node_id


def _kind(message: dict[str, Any]) -> str:
    body = message.get("body")
    return str(body.get("kind")) if isinstance(body, dict) else "consensus"


# ---------------------------------------------------------------------- the process


def open_validator(cfg: NodeConfig) -> Validator:
    """Load genesis and key, open the data dir; every failure a NodeStartError that says what."""
    genesis, key, ledger = load_node_files(cfg)
    try:
        return Validator(cfg, genesis, key, ledger)
    except BaseException:
        ledger.close()
        raise
