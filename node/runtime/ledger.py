"""The ledger: the store at head, and the one place blocks are built, checked and committed.

Consensus calls `propose` (primary), `validate` (replicas, before voting), `commit` (after a
certificate); the node reads through the query methods (the RPC's answers are built from the
store by node/rpc/views.py). Synchronous: no asyncio here.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain import audit, smt
from chain.block import Block, Certificate, Header
from chain.bytecache import ENTRY_OVERHEAD, ByteCache, CacheStats
from chain.database import DEFAULT_MEMORY, DbMemory
from chain.encoding import decode
from chain.genesis import Genesis
from chain.merkle import tx_root
from chain.receipt import Receipt
from chain.retention import ARCHIVE, Retention
from chain.smt import NODE_PREFIX
from chain.store import BlockCommit, Head, Store
from chain.treecache import TreeNodeCache
from chain.tx import Tx, TxError, parse_tx
from chain.validators import ValidatorSet
from chain.validity import BlockInvalid, Parent, check_block
from contracts.apply import (
    HISTORY_PREFIX,
    OWNER_PREFIX,
    VALSET_PREFIX,
    ApplyResult,
    StoreView,
    apply_txs,
    check_block_txs,
    genesis_state,
    reexecute,
    state_key,
    stored_history_entry,
)
from contracts.roles import observer_role_at
from contracts.snapshot_rules import RULES
from contracts.standing import has_standing
from contracts.state import AssetState, read_asset
from node.errors import NodeError

RESULT_CACHE = 16  # execution results of proposed blocks; emptied on every commit
# Node config `cache_tree_nodes_bytes` and `cache_standing_bytes` (docs/operations.md, Memory).
# Tree nodes are immutable (keyed by version and hash), so never stale; a commit drops the nodes
# its block replaced, so the cache holds the current tree as the last blocks wrote it (chain/
# treecache.py: generations of heights, the oldest dropped as the young need room), its upper
# levels, rewritten by every block, always. ~350 bytes a state key in the 16-ary tree (store
# schema 12's inner records: 3 + 40 bytes a child): 256 MiB holds the whole tree of ~375,000
# assets; past that, the nodes no block has rewritten for longest are read from the store. 64 MiB
# (before) left ~5 store reads a tx at 150,000 assets:
# docs/performance.md, "The tree-node cache" and "The tree-node cache by height".
TREE_NODE_CACHE_BYTES = 256 << 20
# Accounts known to have standing (never lost, so a yes may be remembered): ~200 bytes each.
STANDING_CACHE_BYTES = 8 << 20


@dataclass(frozen=True)
class LedgerMemory:
    """What a ledger may hold in memory: its own caches, and its store's database (RocksDB)."""

    tree_node_bytes: int = TREE_NODE_CACHE_BYTES
    standing_bytes: int = STANDING_CACHE_BYTES
    db: DbMemory = DEFAULT_MEMORY


class LedgerError(NodeError, ValueError):
    """A block that must not be voted for or committed; the message says why."""


@dataclass(frozen=True)
class TxRecord:
    tx: Tx
    height: int
    index: int
    receipt: Receipt


class Ledger:
    def __init__(self, store: Store, genesis: Genesis, memory: LedgerMemory | None = None) -> None:
        if store.genesis_hash != genesis.hash:
            raise LedgerError("the store belongs to another genesis")
        memory = memory or LedgerMemory()
        self.store = store
        self.genesis = genesis
        self._results: OrderedDict[str, ApplyResult] = OrderedDict()
        self._nodes = TreeNodeCache(memory.tree_node_bytes)
        self._valsets = self._load_valsets()
        self._standing: ByteCache[str, bool] = ByteCache(memory.standing_bytes, _standing_size)

    @classmethod
    def open(
        cls, path: str | Path, genesis: Genesis, retention: Retention = ARCHIVE, memory: LedgerMemory | None = None
    ) -> Ledger:
        """Open a node's data dir, creating it with the genesis state if new; `retention` says which
        state versions it keeps (chain/retention.py), `memory` what it may hold in memory."""
        memory = memory or LedgerMemory()
        initial = genesis_state(genesis)
        writes = {k: v for k, v in initial.writes.items() if v is not None}
        store = Store.create_or_open(path, genesis, initial_writes=writes, retention=retention, memory=memory.db)
        ledger = cls(store, genesis, memory)
        try:
            ledger.check_head()
        except BaseException:
            ledger.close()
            raise
        return ledger

    @classmethod
    def adopt(
        cls, store: Store, genesis: Genesis, retention: Retention = ARCHIVE, memory: LedgerMemory | None = None
    ) -> Ledger:
        """A ledger over a store this process holds open already (a state sync's import, opened
        with `memory.db`), with the checks of `open`; the store is closed if they fail."""
        store.retention = retention
        try:
            ledger = cls(store, genesis, memory)
            ledger.check_head()
        except BaseException:
            store.close()
            raise
        return ledger

    def check_head(self) -> None:
        """Refuse a data dir whose head is damaged: the head block, its certificate against the
        validator set of its height, and the state tree's root node under the header's state_root.

        The store already holds the head record equal to the block's hash and root (chain/store.py)
        and every read checks its table's checksums; this catches what decodes but is wrong, in a
        constant time whatever the chain's length (a full check is `titlechain audit`)."""
        head = self.store.head
        if head is None:
            return
        where = f"{self.store.path}: damaged data at the head (block {head.height})"
        try:
            cert = self.store.get_certificate(head.height)
        except (ValueError, KeyError, TypeError) as e:
            raise LedgerError(f"{where}: its commit certificate does not decode: {e}") from None
        if cert is None:
            raise LedgerError(f"{where}: its commit certificate is missing")
        try:
            cert.verify(self.genesis.chain_id, head.height, head.block_hash, self.validator_set_at(head.height))
        except ValueError as e:
            raise LedgerError(
                f"{where}: its commit certificate does not verify against its validator set: {e}"
            ) from None
        try:
            smt.check_root(self.store.get, head.height, head.state_root)
        except smt.SmtError as e:
            raise LedgerError(f"{where}: {e}") from None

    def close(self) -> None:
        self.store.close()

    # -- validator sets -------------------------------------------------------------------------

    def _load_valsets(self) -> list[tuple[int, ValidatorSet]]:
        out = []
        for key, raw in self.store.iterate(VALSET_PREFIX):
            out.append((int(key[len(VALSET_PREFIX) :]), ValidatorSet.from_plain(decode(raw))))
        if not out:
            raise LedgerError("the store holds no validator set (not created through Ledger.open?)")
        return out

    def validator_set_at(self, height: int) -> ValidatorSet:
        """The set whose certificate commits block `height` (the current one for head + 1)."""
        found = self._valsets[0][1]
        for start, vset in self._valsets:
            if start <= height:
                found = vset
        return found

    # -- head -----------------------------------------------------------------------------------

    @property
    def head(self) -> Head | None:
        return self.store.head

    @property
    def height(self) -> int:
        return self.store.height

    @property
    def state_root(self) -> str:
        head = self.store.head
        if head is not None:
            return head.state_root
        return genesis_state(self.genesis).state_root

    @property
    def prev_hash(self) -> str:
        head = self.store.head
        return head.block_hash if head is not None else self.genesis.hash

    # -- building and checking blocks -----------------------------------------------------------

    def execute(self, txs: Sequence[Tx], height: int) -> ApplyResult:
        return apply_txs(self._read, self.state_root, txs, height)

    def _read(self, key: bytes) -> bytes | None:
        # what the last blocks wrote is what the next ones read first: serve it from memory. A node
        # read from the store is not cached: the block reading it replaces it (chain/treecache.py)
        if key.startswith(NODE_PREFIX):
            raw = self._nodes.get(key)
            if raw is not None:
                return raw
        return self.store.get(key)

    def cache_stats(self) -> dict[str, CacheStats]:
        """Entries and estimated bytes of each cache the ledger holds, against its cap."""
        return {"tree_nodes": self._nodes.stats(), "standing": self._standing.stats()}

    def held_bytes(self) -> dict[str, int]:
        """What the ledger holds in memory, in bytes, by part: each cache (estimated) and each of
        RocksDB's parts (its own counts), as `titlechain_memory_held_bytes` shows them."""
        out = {f"{name}_cache": stats.bytes for name, stats in self.cache_stats().items()}
        out.update({f"rocksdb_{part}": n for part, n in self.store.db_memory_parts().items()})
        return out

    def propose(self, txs: Sequence[Tx], view: int, proposer: str, time: int) -> Block:
        """A block of txs (already admitted: well formed, signed, unexpired) on top of the head."""
        height = self.height + 1
        result = self.execute(txs, height)
        header = Header(
            chain_id=self.genesis.chain_id,
            height=height,
            prev_hash=self.prev_hash,
            tx_root=tx_root([t.tx_id for t in txs]),
            state_root=result.state_root,
            receipts_root=result.receipts_root,
            validators_hash=self.validator_set_at(height).hash,
            next_validators_hash=result.next_validators.hash,
            proposer=proposer,
            view=view,
            time=time,
        )
        block = Block(header, tuple(txs))
        self._remember(block.block_hash, result)
        return block

    def validate(self, block: Block, verified: Iterable[str] = (), pending: AbstractSet[str] = frozenset()) -> None:
        """Raise LedgerError unless block is a valid next block; signatures of `verified` tx ids are trusted.

        `pending`: tx ids known not to be committed, as the validator knows its mempool's (it
        admitted each only after looking it up, and drops every tx of each block it commits);
        their committed-already lookup, a store read per tx, is skipped. Every other tx is looked up.

        The block's own rules are chain.validity's, shared with the audit; the state's (admission,
        re-execution to the header's roots) are checked here on the head's state."""
        h = block.header
        height = self.height + 1
        trusted = set(verified)
        committed_at = self._committed_at
        try:
            check_block(
                block,
                Parent(self.genesis.chain_id, self.height, self.prev_hash),
                self.validator_set_at(height),
                self.genesis.params,
                signature_ok=lambda _, tx: tx.tx_id in trusted or tx.signature_valid(),
                committed_at=lambda tx_id: None if tx_id in pending else committed_at(tx_id),
            )
        except BlockInvalid as e:
            raise LedgerError(f"block {height}: {e}") from None
        try:
            check_block_txs(self._read, block.txs)
        except TxError as e:
            raise LedgerError(f"block {height}: tx refused ({e.code}): {e.message}") from None
        result = self._results.get(block.block_hash) or self.execute(block.txs, height)
        for name, mine in (
            ("state_root", result.state_root),
            ("receipts_root", result.receipts_root),
            ("next_validators_hash", result.next_validators.hash),
        ):
            if getattr(h, name) != mine:
                raise LedgerError(f"block {height}: {name} differs from re-execution")
        self._remember(block.block_hash, result)

    def _committed_at(self, tx_id: str) -> int | None:
        location = self.store.tx_location(tx_id)
        return None if location is None else location[0]

    def commit(self, block: Block, certificate: Certificate, verified: Iterable[str] = ()) -> BlockCommit:
        """Persist a block certified by a quorum of its height's validators; returns what was written.

        A block not validated here before (one fetched in catch-up) is validated now, trusting the
        signatures of `verified` tx ids as `validate` does: a lagging node has most of them in its
        mempool already, and checking them again is what kept it behind under load."""
        vset = self.validator_set_at(block.height)
        try:
            certificate.verify(self.genesis.chain_id, block.height, block.block_hash, vset)
        except ValueError as e:
            raise LedgerError(str(e)) from None
        result = self._results.pop(block.block_hash, None)
        if result is None:
            self.validate(block, verified)
            result = self._results.pop(block.block_hash)
        committed = BlockCommit(block, certificate, result.receipts, result.writes, result.packed_receipts)
        self.store.append(committed)
        self._results.clear()  # results were computed on the old head
        # the block's new tree nodes are what the next blocks read first; the nodes it replaced
        # belong to older states only, and would hold the cache's room (most of it, as the state
        # grows) against the current tree's lower levels
        self._nodes.discard_many(list(map(NODE_PREFIX.__add__, result.tree.retired)))
        self._nodes.add_block(result.tree.nodes)
        if result.next_validators.hash != vset.hash:
            self._valsets.append((block.height + 1, result.next_validators))
        return committed

    def _remember(self, block_hash: str, result: ApplyResult) -> None:
        self._results[block_hash] = result
        while len(self._results) > RESULT_CACHE:
            self._results.popitem(last=False)

    # -- reads ----------------------------------------------------------------------------------

    def state(self, key: str) -> Any:
        return StoreView(self.store.get).get(key)

    def asset(self, asset_id: str) -> AssetState | None:
        return read_asset(StoreView(self.store.get), asset_id)

    def observer_role(self, account: str) -> str | None:
        """The role that lets `account` run an observer, as of the head (contracts/roles.py); None:
        validators refuse its observer link. Read from the store each time: a revocation counts
        from the block that commits it."""
        return observer_role_at(StoreView(self.store.get), account)

    def has_standing(self, account: str) -> bool:
        """Whether the committed state knows the account (contracts/standing.py): the mempool's
        admission rule. Standing is never lost, so a yes is remembered; a no is asked again."""
        if self._standing.get(account):
            return True
        if not has_standing(StoreView(self.store.get), account):
            return False
        self._standing.put(account, True)
        return True

    def history(self, asset_id: str) -> list[dict[str, Any]]:
        prefix = HISTORY_PREFIX + asset_id.encode() + b"/"
        return [stored_history_entry(self.store, k) for k, _ in self.store.iterate(prefix)]

    def account_assets(self, account: str) -> list[str]:
        prefix = OWNER_PREFIX + account.encode() + b"/"
        return [k[len(prefix) :].decode() for k, _ in self.store.iterate(prefix)]

    def tx(self, tx_id: str) -> TxRecord | None:
        entry = self.store.get_tx_entry(tx_id)  # one small read, whatever the size of its block
        if entry is None:
            return None
        return TxRecord(parse_tx(entry.tx), entry.height, entry.index, entry.receipt)

    def raw_state(self, key: str) -> bytes | None:
        return self.store.get(state_key(key))


def _standing_size(account: str, _: bool) -> int:
    return sys.getsizeof(account) + ENTRY_OVERHEAD


def audit_data_dir(
    path: str | Path, genesis: Genesis, progress: audit.Progress | None = None, workers: int = 1
) -> audit.AuditReport:
    """chain.audit.audit_data_dir with the contracts' re-executor and, for a data dir made by state
    sync, the records they keep for its base state plugged in (CLI, demo)."""
    return audit.audit_data_dir(path, genesis, reexecute, progress, workers, base_rules=RULES)
