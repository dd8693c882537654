"""A replica validating a proposal looks up "already committed?" only for the txs its mempool does
not hold: a pending tx is known uncommitted (admitted after a lookup, dropped when a block commits
it), so the second store read per tx is skipped; every other tx is still looked up."""

from pathlib import Path

import pytest
from ledger_fixtures import LedgerChain

from chain.block import Block
from chain.tx import Tx
from contracts.registry import validate_args
from node.runtime.consensus_app import LedgerApp
from node.runtime.mempool import Mempool


def _app(ch: LedgerChain) -> tuple[LedgerApp, Mempool]:
    store = ch.ledger.store
    pool = Mempool(
        ch.c.genesis.chain_id, arg_validator=validate_args,
        is_committed=lambda tx_id: store.tx_location(tx_id) is not None, has_standing=ch.ledger.has_standing,
    )
    return LedgerApp(ch.ledger, pool, ch.c.validator_keys[1]), pool


def _lookups(ch: LedgerChain, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    looked: list[str] = []
    real = ch.ledger._committed_at

    def counting(tx_id: str) -> int | None:
        looked.append(tx_id)
        return real(tx_id)

    monkeypatch.setattr(ch.ledger, "_committed_at", counting)
    return looked


def _proposal(primary: LedgerChain, txs: list[Tx]) -> Block:
    height = primary.ledger.height + 1
    proposer = primary.ledger.validator_set_at(height).primary(0).public
    return primary.ledger.propose(txs, 0, proposer, primary.c.genesis.time + height)


def test_pending_txs_are_not_looked_up_the_others_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    primary = LedgerChain(tmp_path / "p")
    replica = LedgerChain(tmp_path / "r", primary.c)
    u = primary.c.users
    gossiped, unseen = primary.register("WR-1", u[0]), primary.register("WR-2", u[1])
    app, pool = _app(replica)
    pool.add(gossiped, replica.ledger.height + 1, gossip=False)
    looked = _lookups(replica, monkeypatch)
    block = _proposal(primary, [gossiped, unseen])
    assert app.validate(block) is True
    assert looked == [unseen.tx_id]


def test_a_committed_tx_proposed_again_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a Byzantine primary re-proposes a committed tx: not pending here (the commit dropped it),
    # so it is looked up and the block refused
    primary = LedgerChain(tmp_path / "p")
    replica = LedgerChain(tmp_path / "r", primary.c)
    app, pool = _app(replica)
    tx = primary.register("WR-1", primary.c.users[0])
    pool.add(tx, replica.ledger.height + 1, gossip=False)
    for ch in (primary, replica):
        ch.block([tx])
    pool.remove_committed([tx.tx_id])  # as the validator does after each commit
    looked = _lookups(replica, monkeypatch)
    again = _proposal(primary, [tx])
    assert app.validate(again) is False
    assert looked == [tx.tx_id]
