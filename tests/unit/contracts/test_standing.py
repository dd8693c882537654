"""Standing: every way a party becomes known to the ledger, that it is never lost, and that a block
holding an outsider's tx is refused by consensus (Ledger.validate) and by the audit alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from contracts_fixtures import World, doc
from factories import seeded_key
from ledger_fixtures import LedgerChain

from chain.tx import TxError
from contracts import read_asset
from contracts.apply import check_block_txs
from contracts.registry import validate_args
from contracts.standing import check_standing, has_standing
from contracts.state import standing_key
from node.runtime.consensus_app import LedgerApp
from node.runtime.ledger import LedgerError, audit_data_dir
from node.runtime.mempool import Mempool

OUTSIDER = seeded_key("outsider")


def _known(w: World, account: str) -> bool:
    return has_standing(w.state, account)


def test_genesis_roles_give_standing_and_a_fresh_key_has_none() -> None:
    w = World()
    c = w.c
    for key in (*c.members, c.issuer, c.regulator, c.auditor):
        assert _known(w, key.public) and w.state.get(standing_key(key.public)) == 0
    assert not _known(w, OUTSIDER.public)
    assert not any(_known(w, u.public) for u in c.users)


def _govern(w: World, action: str, params: dict) -> None:  # type: ignore[type-arg]
    receipt = w.ok(w.c.members[0], "gov.propose", {"action": action, "params": params})
    pid = receipt["tx_id"]
    for m in w.c.members[1:]:
        if any(e["type"] == "gov.executed" for e in w.run(m, "gov.approve", {"proposal_id": pid})["events"]):
            return
    raise AssertionError(f"{action} did not execute")


def test_a_granted_role_gives_standing_and_revoking_it_takes_none_away() -> None:
    w = World()
    grantee = w.c.users[5]
    _govern(w, "grant_role", {"account": grantee.public, "role": "auditor"})
    assert _known(w, grantee.public)
    since = w.state.get(standing_key(grantee.public))
    assert type(since) is int and since > 0
    _govern(w, "revoke_role", {"account": grantee.public, "role": "auditor"})
    assert w.state.get(f"role/{grantee.public}") is None
    assert _known(w, grantee.public) and w.state.get(standing_key(grantee.public)) == since
    # the genesis issuer, revoked, keeps standing too: its later txs get a committed answer
    _govern(w, "revoke_role", {"account": w.c.issuer.public, "role": "issuer"})
    assert _known(w, w.c.issuer.public)


def test_owners_past_and_present_and_pledgees_have_standing() -> None:
    w = World()
    first, second, bank, court_winner = w.c.users[0], w.c.users[1], w.c.users[2], w.c.users[3]
    w.register("WR-1", first)
    assert _known(w, first.public)  # registered to it
    w.ok(first, "asset.transfer", {"asset_id": "WR-1", "to": second.public})
    assert _known(w, second.public) and _known(w, first.public)  # new owner; previous owner keeps it
    w.ok(second, "asset.pledge", {"asset_id": "WR-1", "pledgee": bank.public, "terms_hash": doc("loan")})
    assert _known(w, bank.public)  # holds it in pledge
    w.ok(bank, "asset.release", {"asset_id": "WR-1"})
    assert _known(w, bank.public)  # once held in pledge
    w.ok(w.c.regulator, "asset.force_transfer", {"asset_id": "WR-1", "to": court_winner.public, "order_hash": doc("order")})
    assert _known(w, court_winner.public)
    assert read_asset(w.state, "WR-1")["owner"] == court_winner.public  # type: ignore[index]
    assert not _known(w, w.c.users[4].public)


def test_a_rejected_tx_confers_no_standing() -> None:
    w = World()
    args = {"asset_id": "WR-X", "class": "warehouse_receipt", "owner": OUTSIDER.public, "doc_hash": doc("x"), "meta": {}}
    assert w.rejected(w.c.regulator, "asset.register", args) == "not_authorized"
    assert not _known(w, OUTSIDER.public)


def test_standing_is_written_once_at_the_height_it_was_gained() -> None:
    w = World()
    w.register("WR-1", w.c.users[0])
    gained_at = w.state.get(standing_key(w.c.users[0].public))
    w.register("WR-2", w.c.users[0])
    writes, _ = w.run_tx(w.sign(w.c.users[0], "asset.transfer", {"asset_id": "WR-2", "to": w.c.users[0].public}))
    assert w.state.get(standing_key(w.c.users[0].public)) == gained_at
    assert not any(k.startswith("standing/") for k in writes)


def test_check_standing_names_the_first_outsider() -> None:
    w = World()
    txs = [w.sign(w.c.issuer, "asset.redeem", {"asset_id": "A"}), w.sign(OUTSIDER, "asset.redeem", {"asset_id": "A"})]
    with pytest.raises(TxError) as e:
        check_standing(w.state, txs)
    assert e.value.code == "not_permitted" and e.value.message.startswith("tx 1 ")
    check_standing(w.state, txs[:1])


# -- block validity: consensus and the audit apply the same rule --------------------------------


def _outsider_block(ch: LedgerChain):  # type: ignore[no-untyped-def]
    """What a Byzantine primary would propose: a well-formed block, its roots computed honestly
    by the primary's own ledger, holding an outsider's well-signed tx."""
    height = ch.ledger.height + 1
    proposer = ch.ledger.validator_set_at(height).primary(0).public
    assert proposer == ch.c.validator_keys[0].public  # the primary's real key names the block
    txs = [ch.register("WR-9", ch.c.users[0]), ch.transfer("WR-1", OUTSIDER, ch.c.users[1])]
    return ch.ledger.propose(txs, 0, proposer, ch.c.genesis.time + height)


def test_consensus_refuses_a_block_with_an_outsiders_tx(tmp_path: Path) -> None:
    primary = LedgerChain(tmp_path / "primary")
    replica = LedgerChain(tmp_path / "replica")
    for ch in (primary, replica):
        ch.block([ch.register("WR-1", ch.c.users[0])])
    block = _outsider_block(primary)
    with pytest.raises(LedgerError, match=r"block 2: tx refused \(not_permitted\): tx 1 "):
        replica.ledger.validate(block, {t.tx_id for t in block.txs})  # signatures even trusted
    # the consensus core's seam: the replica answers "invalid", so it never votes PREPARE for it
    mempool = Mempool(replica.c.genesis.chain_id, arg_validator=validate_args, is_committed=lambda t: False,
                      has_standing=replica.ledger.has_standing)
    app = LedgerApp(replica.ledger, mempool, replica.c.validator_keys[1])
    assert app.validate(block) is False
    # nor can a certificate make the replica commit it: commit re-validates a block it never saw
    with pytest.raises(LedgerError, match="not_permitted"):
        replica.ledger.commit(block, replica.certify(block))
    assert replica.ledger.height == 1


def test_standing_gained_in_a_block_counts_from_the_next_block(tmp_path: Path) -> None:
    ch = LedgerChain(tmp_path / "d")
    newcomer = ch.c.users[6]
    register = ch.register("WR-N", newcomer)
    spend = ch.transfer("WR-N", newcomer, ch.c.users[1])
    with pytest.raises(TxError) as e:
        check_block_txs(ch.ledger.store.get, [register, spend])  # parent state: newcomer not known yet
    assert e.value.code == "not_permitted" and e.value.message.startswith("tx 1 ")
    ch.block([register])
    assert ch.ledger.state(standing_key(newcomer.public)) == 1 and ch.ledger.has_standing(newcomer.public)
    check_block_txs(ch.ledger.store.get, [spend])
    ch.block([spend])
    assert ch.ledger.asset("WR-N")["owner"] == ch.c.users[1].public  # type: ignore[index]


def test_the_audit_refuses_a_certified_block_with_an_outsiders_tx(tmp_path: Path) -> None:
    ch = LedgerChain(tmp_path / "d")
    ch.block([ch.register("WR-1", ch.c.users[0])])
    block = _outsider_block(ch)
    # a quorum that broke the rules: the block is certified with the validators' real keys and
    # stored (commit trusts the result its own propose computed), as a colluding majority could
    ch.ledger.commit(block, ch.certify(block))
    ch.block([ch.transfer("WR-1", ch.c.users[0], ch.c.users[2])])
    assert ch.ledger.height == 3
    ch.close()
    report = audit_data_dir(tmp_path / "d", ch.c.genesis)
    assert not report.ok and report.height == 2
    assert "not_permitted" in report.reason and "tx 1 " in report.reason
