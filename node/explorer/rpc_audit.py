"""The full audit (chain/audit.py) of a chain read through a node's RPC instead of its data dir.

`GET /v1/blocks` answers headers, tx ids and certificates but not the txs, so each block's txs
and receipts are fetched with `GET /v1/txs/{id}` (a few at a time) and the block is rebuilt.
`RpcChain` offers the result in the shape `chain.audit.verify_chain` reads (`ChainSource`), one
height at a time in the order the audit asks for them, so memory stays bounded on long chains.
The audit then runs exactly as on a data dir, with `records=False`: the RPC does not serve the
store's derived records (state, indexes), so what is checked is everything the blocks and their
certificates commit to: links, roots, signatures, certificates and re-execution to the same
state and receipts roots. Anything the node serves that contradicts itself (a tx that is not the
one asked for, a block hash that is not its header's) is reported at that height.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Self

from chain import audit
from chain.block import Block, BlockError, Certificate, Header
from chain.genesis import Genesis, GenesisError
from chain.receipt import Receipt
from chain.tx import Tx, TxError, parse_tx
from contracts.apply import reexecute
from node.explorer.sources import MAX_BLOCKS, NotFound, rpc_call
from node.sdk.client import Client

FETCH_WORKERS = 8  # concurrent /v1/txs requests; a node answers reads off its event loop quickly


@dataclass(frozen=True)
class _Height:
    """One height as the node serves it, rebuilt into chain objects."""

    block: Block
    certificate: Any  # the plain certificate; parsed when the audit asks, so its errors land there
    receipts: list[Receipt]  # as the node served them: the audit checks them against its own replay
    locations: dict[str, tuple[int, int]]  # tx_id -> (height, index), as the node reports it


class RpcChain:
    """A `chain.audit.ChainSource` over a node's RPC, up to the head it had when opened."""

    def __init__(self, client: Client, genesis_hash: str, head: int, workers: int = FETCH_WORKERS) -> None:
        self.client = client
        self.genesis_hash = genesis_hash
        self._head = head
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc-audit")
        self._page: dict[int, dict[str, Any]] = {}  # block answers not yet rebuilt, by height
        self._current: _Height | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def height(self) -> int:
        return self._head

    # -- fetching --------------------------------------------------------------------------------

    def _at(self, height: int) -> _Height | None:
        if self._current is not None and self._current.block.height == height:
            return self._current
        if not 1 <= height <= self._head:
            return None
        if height not in self._page:
            limit = min(MAX_BLOCKS, self._head - height + 1)
            answers = rpc_call(self.client.rpc, lambda: self.client.blocks(height, limit))
            self._page = {height + i: a for i, a in enumerate(answers)}
        answer = self._page.pop(height, None)
        if answer is None:
            return None
        self._current = self._rebuild(height, answer)
        return self._current

    def _rebuild(self, height: int, answer: Any) -> _Height:
        try:
            header = Header.from_plain(answer["header"])
            tx_ids = answer["tx_ids"]
            if type(tx_ids) is not list or any(type(t) is not str for t in tx_ids):
                raise BlockError("tx_ids must be a list of tx ids")
            infos = list(self._pool.map(self._tx_info, tx_ids))
            txs = tuple(_served_tx(tx_id, info, height) for tx_id, info in zip(tx_ids, infos, strict=True))
            receipts = [info["receipt"] for info in infos]
            locations = {
                t.tx_id: (info["height"], info["receipt"]["index"]) for t, info in zip(txs, infos, strict=True)
            }
            block = Block(header, txs)
            if answer["block_hash"] != block.block_hash:
                raise BlockError("the block_hash the node serves is not the hash of the header it serves")
            return _Height(block, answer["certificate"], receipts, locations)
        except (KeyError, TypeError) as e:
            raise BlockError(f"the node's answer for height {height} is malformed ({type(e).__name__}: {e})") from None

    def _tx_info(self, tx_id: str) -> Any:
        try:
            return rpc_call(self.client.rpc, lambda: self.client.tx(tx_id))
        except NotFound:
            return None  # the block names a tx the node cannot show: a defect at that height

    # -- the ChainSource the audit reads ---------------------------------------------------------

    def get_block(self, height: int) -> Block | None:
        at = self._at(height)
        return None if at is None else at.block

    def get_certificate(self, height: int) -> Certificate | None:
        at = self._at(height)
        return None if at is None else Certificate.from_plain(at.certificate)

    def get_receipts(self, height: int) -> list[Receipt] | None:
        at = self._at(height)
        return None if at is None else at.receipts

    def height_of(self, block_hash: str) -> int | None:
        at = self._current
        return at.block.height if at is not None and at.block.block_hash == block_hash else None

    def tx_location(self, tx_id: str) -> tuple[int, int] | None:
        at = self._current
        return None if at is None else at.locations.get(tx_id)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise NotImplementedError("an RPC serves no store records; audit it with records=False")


def _served_tx(tx_id: str, info: Any, height: int) -> Tx:
    """The tx the node serves for tx_id, which must be that tx, committed in this block."""
    if info is None:
        raise BlockError(f"the node does not serve tx {tx_id[:16]}… that block {height} names")
    try:
        tx = parse_tx(info["tx"])
    except TxError as e:
        raise BlockError(f"tx {tx_id[:16]}… as served does not parse: {e}") from None
    if tx.tx_id != tx_id:
        raise BlockError(f"the node serves another tx under the id {tx_id[:16]}…")
    if info["status"] != "committed" or info["height"] != height or type(info["receipt"]) is not dict:
        raise BlockError(f"the node does not report tx {tx_id[:16]}… as committed at height {height}")
    return tx


def audit_rpc(client: Client, genesis: Genesis, progress: audit.Progress | None = None) -> audit.AuditReport:
    """Audit every block the node has committed (up to its head when this starts) from `genesis`.

    Raises SourceError if the node cannot be read; a chain that fails a check is a report, not an error.
    """
    served = rpc_call(client.rpc, client.genesis)
    try:
        served_hash = Genesis.from_plain(served).hash
    except GenesisError as e:
        return audit.AuditReport(False, 0, f"the genesis the node serves does not parse: {e}")
    if served_hash != genesis.hash:
        return audit.AuditReport(False, 0, f"the node serves the genesis of another chain (hash {served_hash[:16]}…)")
    head = rpc_call(client.rpc, client.height)
    with RpcChain(client, served_hash, head) as chain:
        return audit.verify_chain(chain, genesis, reexecute, progress, records=False)
