"""The consensus core's view of the ledger and the mempool (`pbft.Application`): the one adapter
between the sans-I/O replica and the node's storage."""

from __future__ import annotations

import logging
import time

from chain.block import Block
from chain.crypto import KeyPair
from chain.validators import ValidatorSet
from node.consensus import pbft
from node.runtime.ledger import Ledger, LedgerError
from node.runtime.mempool import Mempool

log = logging.getLogger("titlechain.node")


class LedgerApp:
    """The consensus core's view of the ledger and the mempool (`pbft.Application`)."""

    def __init__(self, ledger: Ledger, mempool: Mempool, key: KeyPair) -> None:
        self.ledger = ledger
        self.mempool = mempool
        self.key = key
        self.params = ledger.genesis.params

    def head(self) -> pbft.ChainHead:
        head = self.ledger.head
        if head is None:
            return pbft.ChainHead(0, self.ledger.genesis.hash, None)
        return pbft.ChainHead(head.height, head.block_hash, self.ledger.store.get_certificate(head.height))

    def validator_set(self, height: int) -> ValidatorSet:
        return self.ledger.validator_set_at(height)

    def propose(self, height: int, view: int) -> Block | None:
        if height != self.ledger.height + 1:
            return None
        txs = self.mempool.take_batch(self.params.max_block_txs, self.params.max_block_bytes, height)
        if not txs:
            return None
        # the proposer's clock, informational only (docs/protocol.md, Blocks); never before the genesis
        now_ms = max(int(time.time() * 1000), self.ledger.genesis.time)
        return self.ledger.propose(txs, view, self.key.public, now_ms)

    def validate(self, block: Block) -> bool:
        try:
            # the mempool's txs: signatures checked at admission, and not committed (it drops the
            # txs of every block this node commits), so neither is checked again
            verified = {t.tx_id for t in block.txs if self.mempool.verified(t)}
            self.ledger.validate(block, verified=verified, pending=verified)
        except LedgerError as e:
            log.warning("refusing the proposal for height %d from %s…: %s", block.height, block.header.proposer[:12], e)
            return False
        return True

    def has_pending(self) -> bool:
        return len(self.mempool) > 0
