"""A ledger on disk driven block by block with real certificates from the factories' keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from factories import Consortium, make_consortium, seeded_key

from chain import snapshot
from chain.block import Block, Certificate, sign_commit
from chain.crypto import KeyPair
from chain.encoding import H
from chain.retention import ARCHIVE, Retention
from chain.snapshot import StateChunk
from chain.store import Store
from chain.tx import Tx, sign_tx
from contracts.snapshot_source import SnapshotSource
from contracts.state_sync import StateSync
from node.runtime.ledger import Ledger, LedgerMemory


def doc(label: str) -> str:
    return H(b"doc/" + label.encode()).hex()


class LedgerChain:
    def __init__(
        self, path: Path, consortium: Consortium | None = None, retention: Retention | None = None,
        memory: LedgerMemory | None = None,
    ) -> None:
        self.c = consortium or make_consortium()
        self.path = path
        self.ledger = Ledger.open(path, self.c.genesis, retention or ARCHIVE, memory)
        self._nonce = 0

    def sign(self, key: KeyPair, op: str, args: dict[str, Any]) -> Tx:
        self._nonce += 1
        return sign_tx(
            key,
            chain_id=self.c.genesis.chain_id,
            op=op,
            args=args,
            expires=self.ledger.height + 50,
            nonce=f"n{self._nonce}",
        )

    def certify(self, block: Block) -> Certificate:
        """A quorum's commits in the view the block was proposed in (the normal case)."""
        vset = self.ledger.validator_set_at(block.height)
        keys = [k for k in self.c.validator_keys if k.public in vset.publics][: vset.quorum]
        view = block.header.view
        sigs = {k.public: sign_commit(k, self.c.genesis.chain_id, block.height, view, block.block_hash) for k in keys}
        return Certificate.build(block.height, view, block.block_hash, sigs)

    def block(self, txs: list[Tx], view: int = 0) -> Block:
        height = self.ledger.height + 1
        proposer = self.ledger.validator_set_at(height).primary(view).public
        block = self.ledger.propose(txs, view, proposer, self.c.genesis.time + height)
        self.ledger.validate(block, {t.tx_id for t in txs})
        self.ledger.commit(block, self.certify(block))
        return block

    def register(self, asset_id: str, owner: KeyPair) -> Tx:
        args = {
            "asset_id": asset_id,
            "class": "warehouse_receipt",
            "owner": owner.public,
            "doc_hash": doc(asset_id),
            "meta": {},
        }
        return self.sign(self.c.issuer, "asset.register", args)

    def transfer(self, asset_id: str, owner: KeyPair, to: KeyPair) -> Tx:
        return self.sign(owner, "asset.transfer", {"asset_id": asset_id, "to": to.public})

    def close(self) -> None:
        self.ledger.close()


def build_story(path: Path, retention: Retention | None = None) -> LedgerChain:
    """Five blocks: registrations, transfers, a rejected double-spend, a redemption."""
    ch = LedgerChain(path, retention=retention)
    u = ch.c.users
    ch.block([ch.register("WR-1", u[0]), ch.register("WR-2", u[1]), ch.register("WR-3", u[0])])
    ch.block([ch.transfer("WR-1", u[0], u[2]), ch.transfer("WR-1", u[0], u[3])])  # second is rejected
    ch.block([ch.transfer("WR-2", u[1], u[0]), ch.transfer("WR-1", u[2], u[4])])
    ch.block([])
    ch.block([ch.sign(u[0], "asset.redeem", {"asset_id": "WR-3"}), ch.transfer("WR-2", u[0], u[5])])
    return ch


def build_story_across_a_set_change(path: Path) -> LedgerChain:
    """build_story, then a fifth validator added by governance (blocks 6-7) and a block 8
    certified by the new set of five: a proof of height 8 must carry one validator change."""
    ch = build_story(path)
    m = ch.c.members
    params = {"node_id": "v4", "public": seeded_key("validator-new").public, "address": "10.0.0.5:27004"}
    propose = ch.sign(m[0], "gov.propose", {"action": "add_validator", "params": params})
    ch.block([propose])
    ch.block([ch.sign(m[i], "gov.approve", {"proposal_id": propose.tx_id}) for i in (1, 2)])
    ch.block([ch.transfer("WR-1", ch.c.users[4], ch.c.users[6])])
    return ch


def sync_locally(source: Store, path: Path, ch: LedgerChain, height: int, parts: int = 4) -> Store:
    """What the node's sync does, minus the network: anchor, window, chunks of every part."""
    src = SnapshotSource(source)
    sync = StateSync(path, ch.c.genesis)
    first = src.anchor(height, 0)
    changes = list(first.changes)
    while len(changes) < first.total_changes:
        changes += src.anchor(height, len(changes)).changes
    sync.take_anchor(changes, first.header, first.certificate)
    while sync.window_next is not None:
        sync.take_window(src.window(sync.window_next, height))
    for lo, hi in snapshot.split_space(parts):
        while True:
            chunk = src.state_chunk(height, lo, hi)
            sync.take_chunk(StateChunk.decode(chunk.encode()))
            if chunk.hi == hi:
                break
            lo = chunk.hi + 1
    return sync.finish()
