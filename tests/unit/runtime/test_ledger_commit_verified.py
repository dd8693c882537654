"""Ledger.commit of a block it has not validated (a block fetched in catch-up) trusts the
signatures of the tx ids it is told are verified, and checks every other one."""

from pathlib import Path

import pytest
from ledger_fixtures import LedgerChain

from chain.tx import Tx
from node.runtime.ledger import LedgerError


def _unvalidated_block(tmp_path: Path) -> tuple[LedgerChain, LedgerChain, list[Tx]]:
    """A block proposed on one ledger, to be committed on a second one that never saw it."""
    source = LedgerChain(tmp_path / "a")
    target = LedgerChain(tmp_path / "b", source.c)
    u = source.c.users
    txs = [source.register("WR-1", u[0]), source.register("WR-2", u[1])]
    return source, target, txs


def _count_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    checked: list[str] = []
    real = Tx.signature_valid

    def counting(tx: Tx) -> bool:
        checked.append(tx.tx_id)
        return real(tx)

    monkeypatch.setattr(Tx, "signature_valid", counting)
    return checked


def test_commit_trusts_the_verified_ids_and_checks_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, target, txs = _unvalidated_block(tmp_path)
    block = source.block(txs)
    checked = _count_checks(monkeypatch)
    target.ledger.commit(block, source.certify(block), verified=[txs[0].tx_id])
    assert checked == [txs[1].tx_id]
    assert target.ledger.height == 1 and target.ledger.state_root == source.ledger.state_root
    source.close()
    target.close()


def test_commit_without_verified_ids_checks_every_signature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, target, txs = _unvalidated_block(tmp_path)
    block = source.block(txs)
    checked = _count_checks(monkeypatch)
    target.ledger.commit(block, source.certify(block))
    assert sorted(checked) == sorted(t.tx_id for t in txs)
    source.close()
    target.close()


def test_a_forged_signature_not_claimed_verified_is_still_refused(tmp_path: Path) -> None:
    source, target, txs = _unvalidated_block(tmp_path)
    forged = Tx(body=txs[1].body, sig="00" * 64, body_bytes=txs[1].body_bytes)
    height = source.ledger.height + 1
    block = source.ledger.propose([txs[0], forged], 0, source.ledger.validator_set_at(height).primary(0).public, height)
    with pytest.raises(LedgerError, match="bad_signature"):
        target.ledger.commit(block, source.certify(block), verified=[txs[0].tx_id])
    source.close()
    target.close()
