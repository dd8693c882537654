"""The ledger: the store at head, and the one place blocks are built, checked and committed.

Consensus calls `propose` (primary), `validate` (replicas, before voting), `commit` (after a
certificate); the RPC reads through the query methods. Synchronous: no asyncio here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chain import audit, smt
from chain.block import Block, BlockError, Certificate, Header
from chain.encoding import decode
from chain.genesis import Genesis
from chain.merkle import tx_root
from chain.receipt import Receipt
from chain.retention import ARCHIVE, Retention
from chain.smt import NODE_PREFIX
from chain.store import BlockCommit, Head, Store, StoreError
from chain.tx import Tx, TxError, check_for_chain, check_signature, parse_tx
from chain.validators import ValidatorSet
from contracts.apply import (
    HISTORY_PREFIX,
    OWNER_PREFIX,
    VALSET_PREFIX,
    ApplyResult,
    StoreView,
    apply_txs,
    check_block_txs,
    genesis_state,
    history_entry,
    history_key,
    history_place,
    reexecute,
    state_key,
)
from contracts.proofs import ProofError, build_ownership_proof
from contracts.standing import has_standing
from contracts.state import asset_key, read_roles, standing_key
from node.rpc import paging
from node.errors import NodeError

RESULT_CACHE = 16
STANDING_CACHE = 100_000  # accounts remembered as known (one entry per signer seen)
NODE_CACHE = 500_000  # state-tree nodes kept in memory (~100 MB at most); immutable, so never stale


class LedgerError(NodeError, ValueError):
    """A block that must not be voted for or committed; the message says why."""


@dataclass(frozen=True)
class TxRecord:
    tx: Tx
    height: int
    index: int
    receipt: Receipt


class Ledger:
    def __init__(self, store: Store, genesis: Genesis) -> None:
        if store.genesis_hash != genesis.hash:
            raise LedgerError("the store belongs to another genesis")
        self.store = store
        self.genesis = genesis
        self._results: OrderedDict[str, ApplyResult] = OrderedDict()
        self._nodes: dict[bytes, bytes] = {}
        self._valsets = self._load_valsets()
        self._standing: set[str] = set()

    @classmethod
    def open(cls, path: str | Path, genesis: Genesis, retention: Retention = ARCHIVE) -> Ledger:
        """Open a node's data dir, creating it with the genesis state if new; `retention` says which
        state versions it keeps (chain/retention.py)."""
        initial = genesis_state(genesis)
        writes = {k: v for k, v in initial.writes.items() if v is not None}
        ledger = cls(Store.create_or_open(path, genesis, initial_writes=writes, retention=retention), genesis)
        try:
            ledger.check_head()
        except BaseException:
            ledger.close()
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
        # the upper tree levels are read by every block: serve nodes from memory
        if key.startswith(NODE_PREFIX):
            raw = self._nodes.get(key)
            if raw is None:
                raw = self.store.get(key)
                if raw is not None:
                    self._cache_node(key, raw)
            return raw
        return self.store.get(key)

    def _cache_node(self, key: bytes, raw: bytes) -> None:
        if len(self._nodes) >= NODE_CACHE:
            self._nodes.clear()  # crude but O(1) amortised; the hot top levels refill in one block
        self._nodes[key] = raw

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

    def validate(self, block: Block, verified: Iterable[str] = ()) -> None:
        """Raise LedgerError unless block is a valid next block; signatures of `verified` tx ids are trusted."""
        h = block.header
        height = self.height + 1
        if h.chain_id != self.genesis.chain_id:
            raise LedgerError(f"block is for chain {h.chain_id!r}")
        if h.height != height:
            raise LedgerError(f"block height {h.height}, expected {height}")
        if h.prev_hash != self.prev_hash:
            raise LedgerError(f"block {height}: prev_hash does not link to the head")
        vset = self.validator_set_at(height)
        if h.validators_hash != vset.hash:
            raise LedgerError(f"block {height}: validators_hash is not the current validator set")
        if h.proposer not in vset.publics:
            raise LedgerError(f"block {height}: proposer is not a validator")
        try:
            block.check_tx_root()
        except BlockError as e:
            raise LedgerError(str(e)) from None
        trusted = set(verified)
        try:
            for tx in block.txs:
                check_for_chain(tx, self.genesis.chain_id, height)
                if tx.tx_id not in trusted:
                    check_signature(tx)
                if self.store.tx_location(tx.tx_id) is not None:
                    raise TxError("duplicate", f"tx {tx.tx_id} is already committed")
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
        for key, value in result.writes.items():
            if value is not None and key.startswith(NODE_PREFIX):
                self._cache_node(key, value)
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

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        return self.state(asset_key(asset_id))

    def has_standing(self, account: str) -> bool:
        """Whether the committed state knows the account (contracts/standing.py): the mempool's
        admission rule. Standing is never lost, so a yes is remembered; a no is asked again."""
        if account in self._standing:
            return True
        if not has_standing(StoreView(self.store.get), account):
            return False
        if len(self._standing) >= STANDING_CACHE:
            self._standing.clear()
        self._standing.add(account)
        return True

    def history(self, asset_id: str) -> list[dict[str, Any]]:
        prefix = HISTORY_PREFIX + asset_id.encode() + b"/"
        return [self._history_entry(k) for k, _ in self.store.iterate(prefix)]

    def _history_entry(self, key: bytes) -> dict[str, Any]:
        """The entry an h/ key indexes, built from its tx's record (the store keeps each tx once)."""
        height, index = history_place(key)
        entry = self.store.get_tx_at(height, index)
        if entry is None:
            raise StoreError(f"{self.store.path}: damaged data: history names a tx at {height}/{index} the store lacks")
        return history_entry(height, index, entry.tx, entry.receipt)

    def account_assets(self, account: str) -> list[str]:
        prefix = OWNER_PREFIX + account.encode() + b"/"
        return [k[len(prefix) :].decode() for k, _ in self.store.iterate(prefix)]

    def tx(self, tx_id: str) -> TxRecord | None:
        entry = self.store.get_tx_entry(tx_id)  # one small read, whatever the size of its block
        if entry is None:
            return None
        return TxRecord(parse_tx(entry.tx), entry.height, entry.index, entry.receipt)

    # -- answers in the shapes of docs/rpc.md (the RPC and the offline explorer share them) ---------

    def block_answer(self, height: int) -> dict[str, Any] | None:
        """{"header", "block_hash", "tx_ids", "certificate"}, or None if there is no such block."""
        if height < 1:
            return None
        summary, cert = self.store.get_summary(height), self.store.get_certificate(height)
        if summary is None or cert is None:
            return None
        header, tx_ids = summary
        return {"header": header.to_plain(), "block_hash": header.block_hash, "tx_ids": tx_ids, "certificate": cert.to_plain()}

    def committed_tx_answer(self, tx_id: str) -> dict[str, Any] | None:
        record = self.tx(tx_id)
        if record is None:
            return None
        return {"tx_id": tx_id, "status": "committed", "height": record.height, "receipt": record.receipt, "tx": record.tx.to_plain()}

    def proof_answer(self, asset_id: str) -> dict[str, Any] | None:
        """A proof of the asset's state, or of its absence, as of the head (docs/protocol.md,
        "Ownership and absence proofs"); None before the first block (no certified state root yet)."""
        try:
            return build_ownership_proof(self.store, asset_id)
        except ProofError:
            return None

    def history_answer(
        self, asset_id: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> dict[str, Any] | None:
        """{"asset_id", "entries", "next"}: one page of the asset's history, oldest first; None for an
        id no asset holds (rejected txs naming such an id are not indexed under it). Raises
        paging.CursorError for a cursor or limit no page can have."""
        paging.check_limit(limit)
        start = None if cursor is None else history_key(asset_id, *paging.parse_history_cursor(cursor))
        if self.asset(asset_id) is None:
            return None
        prefix = HISTORY_PREFIX + asset_id.encode() + b"/"
        rows = (self._history_entry(k) for k, _ in self.store.iterate(prefix, start=start))
        entries, nxt = paging.take_page(rows, limit, lambda e: paging.history_cursor(e["height"], e["index"]))
        return {"asset_id": asset_id, "entries": entries, "next": nxt}

    def account_answer(
        self, account: str, cursor: str | None = None, limit: int = paging.DEFAULT_LIMIT
    ) -> dict[str, Any]:
        """{"account", "roles", "assets", "next"}: the account's roles and one page of the ids of the
        assets it owns, in id order. Raises paging.CursorError as history_answer does."""
        paging.check_limit(limit)
        prefix = OWNER_PREFIX + account.encode() + b"/"
        start = None if cursor is None else prefix + paging.check_account_cursor(cursor).encode()
        ids = (k[len(prefix) :].decode() for k, _ in self.store.iterate(prefix, start=start))
        assets, nxt = paging.take_page(ids, limit, lambda a: a)
        view = StoreView(self.store.get)
        return {
            "account": account,
            "roles": read_roles(view, account),
            "assets": assets,
            "next": nxt,
            "standing_since": view.get(standing_key(account)),
        }

    def raw_state(self, key: str) -> bytes | None:
        return self.store.get(state_key(key))


def audit_data_dir(
    path: str | Path, genesis: Genesis, progress: audit.Progress | None = None, workers: int = 1
) -> audit.AuditReport:
    """chain.audit.audit_data_dir with the contracts' re-executor plugged in (CLI, demo)."""
    return audit.audit_data_dir(path, genesis, reexecute, progress, workers)
