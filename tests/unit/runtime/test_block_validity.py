"""One table of bad blocks, each refused by the three paths that accept blocks: a replica voting
on a proposal (the consensus core over the real ledger), the ledger (validate, and commit of a
certified block never validated here, as in catch-up) and the audit. Each bad block breaks one
rule of chain/validity.py (or the contracts' admission rule), and every path names that rule."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger_fixtures import LedgerChain

from chain.audit import verify_chain
from chain.block import Block, Certificate, Header
from chain.devnet import make_consortium
from chain.merkle import tx_root
from chain.receipt import Receipt
from chain.store import BlockCommit
from chain.tx import EXPIRY_WINDOW, Tx, sign_tx
from chain.txrecords import tx_index_key, tx_place
from chain.validity import BlockInvalid, Parent, check_block
from contracts import validate_args
from contracts.apply import reexecute
from node.consensus import pbft
from node.consensus.messages import Prepare, PrePrepare, Signed, parse_signed
from node.runtime.consensus_app import LedgerApp
from node.runtime.ledger import LedgerError
from node.runtime.mempool import Mempool

PARAMS = {"max_block_txs": 3, "max_block_bytes": 2000}  # small, so that a bad block stays small
HEIGHT = 2  # the bad block's: block 1 is committed (a tx to commit twice, a parent to link to)


class World:
    """A ledger with one committed block, and the pieces to build a bad block 2 on it."""

    def __init__(self, path: Path) -> None:
        self.ch = LedgerChain(path, make_consortium(params=PARAMS))
        u = self.ch.c.users
        self.first = self.ch.register("WR-1", u[0])
        self.ch.block([self.first])
        ledger = self.ch.ledger
        self.primary = next(k for k in self.ch.c.validator_keys if k.public == ledger.validator_set_at(HEIGHT).primary(0).public)

    def tx(self, op: str = "asset.register", expires_in: int = 50, chain_id: str | None = None, pad: int = 0, **kw: Any) -> Tx:
        self.ch._nonce += 1
        u = self.ch.c.users
        args = kw or {"asset_id": f"WR-{self.ch._nonce}", "class": "warehouse_receipt", "owner": u[1].public,
                      "doc_hash": "ab" * 32, "meta": {"pad": "x" * pad} if pad else {}}
        return sign_tx(
            self.ch.c.issuer, chain_id=chain_id or self.ch.c.genesis.chain_id, op=op, args=args,
            expires=self.ch.ledger.height + expires_in, nonce=f"n{self.ch._nonce}",
        )

    def block(self, txs: list[Tx] | None = None, **header: Any) -> Block:
        """A block of `txs` at height 2 by the primary of view 0, its header changed by `header`;
        the tx root follows the txs unless `header` sets it."""
        txs = [self.tx()] if txs is None else txs
        ledger = self.ch.ledger
        result = ledger.execute(txs, HEIGHT)  # not Ledger.propose: it would remember the block as its own
        fields: dict[str, Any] = {
            "chain_id": ledger.genesis.chain_id, "height": HEIGHT, "prev_hash": ledger.prev_hash,
            "tx_root": tx_root([t.tx_id for t in txs]), "state_root": result.state_root,
            "receipts_root": result.receipts_root, "validators_hash": ledger.validator_set_at(HEIGHT).hash,
            "next_validators_hash": result.next_validators.hash, "proposer": self.primary.public, "view": 0,
            "time": self.ch.c.genesis.time + HEIGHT,
        }
        return Block(Header(**{**fields, **header}), tuple(txs))


def _forged(tx: Tx) -> Tx:
    return Tx(body=tx.body, sig="00" * 64, body_bytes=tx.body_bytes)


# rule -> the bad block; the rule's name is BlockInvalid.rule (or the TxError code of admission)
BAD: dict[str, Callable[[World], Block]] = {
    "chain_id": lambda w: w.block(chain_id="other-chain"),
    "height": lambda w: w.block(height=HEIGHT + 1),
    "prev_hash": lambda w: w.block(prev_hash="00" * 32),
    "validators_hash": lambda w: w.block(validators_hash="11" * 32),
    "proposer": lambda w: w.block(proposer=w.ch.c.users[0].public),
    "too_many_txs": lambda w: w.block([w.tx() for _ in range(PARAMS["max_block_txs"] + 1)]),
    "too_large": lambda w: w.block([w.tx(pad=900) for _ in range(2)]),
    "tx_root": lambda w: w.block(tx_root="22" * 32),
    "duplicate_tx": lambda w: w.block([w.tx()] * 2),
    "wrong_chain": lambda w: w.block([w.tx(chain_id="other-chain")]),
    "expired": lambda w: w.block([w.tx(expires_in=0)]),
    "expires_too_far": lambda w: w.block([w.tx(expires_in=EXPIRY_WINDOW + 2)]),
    "bad_signature": lambda w: w.block([_forged(w.tx())]),
    "duplicate": lambda w: w.block([w.first]),
    # the contracts' admission rule (not chain/'s: it reads the state), on the same three paths
    "not_permitted": lambda w: w.block([sign_tx(w.ch.c.users[7], chain_id=w.ch.c.genesis.chain_id, op="asset.redeem",
                                                args={"asset_id": "WR-1"}, expires=HEIGHT + 5, nonce="stranger")]),
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path / "ledger")
    yield w
    w.ch.close()


def _direct(w: World, block: Block) -> BlockInvalid | None:
    ledger = w.ch.ledger
    try:
        check_block(
            block, Parent(ledger.genesis.chain_id, ledger.height, ledger.prev_hash), ledger.validator_set_at(HEIGHT),
            ledger.genesis.params, signature_ok=lambda _, tx: tx.signature_valid(),
            committed_at=lambda tx_id: (ledger.store.tx_location(tx_id) or (None,))[0],
        )
    except BlockInvalid as e:
        return e
    return None


def _consensus_refuses(w: World, block: Block, caplog: pytest.LogCaptureFixture) -> str:
    """A replica (not the primary) fed the block and the primary's PRE-PREPARE sends no PREPARE;
    the ledger's refusal, if the core got as far as asking it, is logged: returned."""
    ledger = w.ch.ledger
    key = next(k for k in w.ch.c.validator_keys if k.public != w.primary.public)
    mempool = Mempool(ledger.genesis.chain_id, arg_validator=validate_args, has_standing=ledger.has_standing,
                      is_committed=lambda tx_id: ledger.store.tx_location(tx_id) is not None)
    replica = pbft.Replica(key, ledger.genesis.chain_id, LedgerApp(ledger, mempool, key), ledger.genesis.params)
    replica.start()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="titlechain.node"):
        actions = replica.handle(pbft.BlockReceived(w.primary.public, block))
        pre_prepare = Signed.sign(w.primary, PrePrepare(0, HEIGHT, block.block_hash))
        actions += replica.handle(pbft.Received(pre_prepare.to_plain()))
    sent = [parse_signed(a.message).msg for a in actions if isinstance(a, pbft.Broadcast)]
    assert not any(isinstance(m, Prepare) for m in sent)
    assert replica.slot(0, HEIGHT).valid is not True
    return " ".join(r.getMessage() for r in caplog.records)


class OneBadBlock:
    """The ledger's store as an audit reads it, with `bad` certified in its place at height 2
    (what an RPC or a damaged copy could serve; the audit must not take it)."""

    def __init__(self, w: World, bad: Block, cert: Certificate, receipts: list[Receipt] | None = None) -> None:
        self.store, self.bad, self.cert, self.receipts = w.ch.ledger.store, bad, cert, receipts or []
        self.genesis_hash = self.store.genesis_hash
        self.height = HEIGHT

    def get_block(self, height: int) -> Block | None:
        return self.bad if height == HEIGHT else self.store.get_block(height)

    def get_certificate(self, height: int) -> Certificate | None:
        return self.cert if height == HEIGHT else self.store.get_certificate(height)

    def get_receipts(self, height: int) -> list[Receipt] | None:
        return self.receipts if height == HEIGHT else self.store.get_receipts(height)

    def height_of(self, block_hash: str) -> int | None:
        return HEIGHT if block_hash == self.bad.block_hash else self.store.height_of(block_hash)

    def tx_location(self, tx_id: str) -> tuple[int, int] | None:
        stored = self.store.tx_location(tx_id)
        if stored is None and tx_id in self.bad.tx_ids:
            return HEIGHT, self.bad.tx_ids.index(tx_id)
        return stored

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        raise AssertionError("audited with records=False: the records are not read")


@pytest.mark.parametrize("rule", sorted(BAD))
def test_each_rule_is_refused_by_consensus_the_ledger_and_the_audit(
    world: World, rule: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = BAD[rule](world)
    direct = _direct(world, bad)
    if rule == "not_permitted":
        assert direct is None  # chain/ leaves the state's rules to the contracts
        why = "(not_permitted)"
    else:
        assert direct is not None and direct.rule == rule, direct
        why = direct.message
    logged = _consensus_refuses(world, bad, caplog)
    if rule not in ("tx_root", "duplicate_tx", "proposer"):  # refused by the core before it asks the ledger
        assert why in logged, logged
    with pytest.raises(LedgerError) as validated:
        world.ch.ledger.validate(bad)
    assert why in str(validated.value)
    cert = world.ch.certify(bad)  # a quorum signs it: only validity can keep it out
    with pytest.raises(LedgerError) as committed:
        world.ch.ledger.commit(bad, cert)
    assert why in str(committed.value)
    assert world.ch.ledger.height == 1
    report = verify_chain(OneBadBlock(world, bad, cert), world.ch.c.genesis, reexecute, records=False)
    assert (report.ok, report.height) == (False, HEIGHT), report
    assert why in report.reason, report.reason


def test_the_good_block_passes_every_path(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """The table's blocks are bad by their one change only: unchanged, the same block passes all three."""
    good = world.block()
    assert _direct(world, good) is None
    world.ch.ledger.validate(good)
    cert = world.ch.certify(good)
    receipts = world.ch.ledger.execute(good.txs, HEIGHT).receipts
    report = verify_chain(OneBadBlock(world, good, cert, receipts), world.ch.c.genesis, reexecute, records=False)
    assert report.ok, report
    world.ch.ledger.commit(good, cert)
    assert world.ch.ledger.height == HEIGHT


@pytest.mark.parametrize("pointer", ["later copy", "earlier copy"])
def test_a_tx_committed_twice_into_a_store_is_refused_by_its_audit(world: World, pointer: str) -> None:
    """The data-dir audit (records compared) refuses a store that holds a tx twice, written past
    the ledger's refusal, at the second copy's height, whichever copy the store's one pointer for
    it names: the duplicate is found by the ids replayed, not by the store's index."""
    bad = world.block([world.first])
    cert = world.ch.certify(bad)
    result = world.ch.ledger.execute(bad.txs, HEIGHT)
    store = world.ch.ledger.store
    store.append(BlockCommit(bad, cert, result.receipts, result.writes, result.packed_receipts))
    assert store.get(tx_index_key(world.first.tx_id)) == tx_place(HEIGHT, 0)  # the append moved it
    if pointer == "earlier copy":
        store._db.put(tx_index_key(world.first.tx_id), tx_place(1, 0))
    report = verify_chain(store, world.ch.c.genesis, reexecute)
    assert (report.ok, report.height) == (False, HEIGHT), report
    assert "(duplicate): already committed at height 1" in report.reason, report.reason
