"""Every asset op, its success and every rejection it can give, on a dict-backed state."""

from __future__ import annotations

import pytest
from contracts_fixtures import World, doc

from contracts import doc_key, execute, read_asset

ORDER = "0d" * 32
TERMS = "7e" * 32


@pytest.fixture
def w() -> World:
    return World()


def test_register_creates_the_asset_and_indexes_its_document(w: World) -> None:
    owner = w.c.users[0]
    meta = {"doc_uri": "https://docs.example/wr/1.pdf", "lot": "CU-1"}
    args = {"asset_id": "WR-1", "class": "warehouse_receipt", "owner": owner.public, "doc_hash": doc("wr1"), "meta": meta}
    receipt = w.ok(w.c.issuer, "asset.register", args)
    assert w.asset("WR-1") == {
        "asset_id": "WR-1",
        "class": "warehouse_receipt",
        "issuer": w.c.issuer.public,
        "owner": owner.public,
        "status": "active",
        "doc_hash": doc("wr1"),
        "meta": meta,
        "pledgee": None,
        "registered_at": 1,
        "updated_at": 1,
        "version": 1,
    }
    assert w.state.get(doc_key(doc("wr1"))) == "WR-1"
    assert receipt["events"] == [
        {
            "type": "asset.registered",
            "asset_id": "WR-1",
            "class": "warehouse_receipt",
            "issuer": w.c.issuer.public,
            "owner": owner.public,
            "doc_hash": doc("wr1"),
        }
    ]
    assert receipt["tx_id"] and receipt["height"] == 1 and receipt["index"] == 0 and receipt["error"] is None


def reg_args(w: World, asset_id: str, label: str, cls: str = "warehouse_receipt") -> dict:
    return {"asset_id": asset_id, "class": cls, "owner": w.c.users[0].public, "doc_hash": doc(label), "meta": {}}


def test_register_rejections(w: World) -> None:
    assert w.rejected(w.c.users[0], "asset.register", reg_args(w, "WR-1", "a")) == "not_authorized"
    assert w.rejected(w.c.regulator, "asset.register", reg_args(w, "WR-1", "a")) == "not_authorized"
    assert w.rejected(w.c.issuer, "asset.register", reg_args(w, "WR-1", "a", cls="ship")) == "not_authorized"
    w.ok(w.c.issuer, "asset.register", reg_args(w, "WR-1", "a"))
    assert w.rejected(w.c.issuer, "asset.register", reg_args(w, "WR-1", "b")) == "asset_exists"
    assert w.rejected(w.c.issuer, "asset.register", reg_args(w, "WR-2", "a")) == "duplicate_document"


def test_redeemed_id_stays_taken_but_its_document_is_freed(w: World) -> None:
    owner = w.c.users[0]
    w.register("WR-1", owner, "a")
    w.ok(owner, "asset.redeem", {"asset_id": "WR-1"})
    assert w.state.get(doc_key(doc("a"))) is None
    assert w.rejected(w.c.issuer, "asset.register", reg_args(w, "WR-1", "b")) == "asset_exists"
    w.ok(w.c.issuer, "asset.register", reg_args(w, "WR-2", "a"))
    assert w.state.get(doc_key(doc("a"))) == "WR-2"


def test_transfer(w: World) -> None:
    a, b = w.c.users[:2]
    w.register("WR-1", a)
    receipt = w.ok(a, "asset.transfer", {"asset_id": "WR-1", "to": b.public})
    asset = w.asset("WR-1")
    assert asset["owner"] == b.public and asset["version"] == 2 and asset["updated_at"] == 2
    assert receipt["events"] == [{"type": "asset.transferred", "asset_id": "WR-1", "from": a.public, "to": b.public}]
    assert w.rejected(a, "asset.transfer", {"asset_id": "WR-1", "to": a.public}) == "not_owner"
    assert w.rejected(b, "asset.transfer", {"asset_id": "WR-1", "to": b.public}) == "invalid_args"
    assert w.rejected(b, "asset.transfer", {"asset_id": "WR-9", "to": a.public}) == "asset_not_found"


def test_transfer_refused_while_pledged_frozen_or_redeemed(w: World) -> None:
    a, b, bank = w.c.users[:3]
    w.register("P", a, "p")
    w.ok(a, "asset.pledge", {"asset_id": "P", "pledgee": bank.public, "terms_hash": TERMS})
    assert w.rejected(a, "asset.transfer", {"asset_id": "P", "to": b.public}) == "asset_locked"
    w.register("F", a, "f")
    w.ok(w.c.regulator, "asset.freeze", {"asset_id": "F", "reason": "court order"})
    assert w.rejected(a, "asset.transfer", {"asset_id": "F", "to": b.public}) == "asset_locked"
    w.register("R", a, "r")
    w.ok(a, "asset.redeem", {"asset_id": "R"})
    assert w.rejected(a, "asset.transfer", {"asset_id": "R", "to": b.public}) == "asset_redeemed"


def test_pledge_and_release(w: World) -> None:
    a, bank, other = w.c.users[:3]
    w.register("WR-1", a)
    receipt = w.ok(a, "asset.pledge", {"asset_id": "WR-1", "pledgee": bank.public, "terms_hash": TERMS})
    asset = w.asset("WR-1")
    assert asset["status"] == "pledged" and asset["pledgee"] == bank.public and asset["owner"] == a.public
    assert receipt["events"][0] == {
        "type": "asset.pledged",
        "asset_id": "WR-1",
        "owner": a.public,
        "pledgee": bank.public,
        "terms_hash": TERMS,
    }
    # the double pledge of one receipt to two banks
    assert w.rejected(a, "asset.pledge", {"asset_id": "WR-1", "pledgee": other.public, "terms_hash": TERMS}) == "asset_locked"
    assert w.rejected(a, "asset.release", {"asset_id": "WR-1"}) == "not_pledgee"
    assert w.rejected(other, "asset.release", {"asset_id": "WR-1"}) == "not_pledgee"
    receipt = w.ok(bank, "asset.release", {"asset_id": "WR-1"})
    assert receipt["events"] == [{"type": "asset.released", "asset_id": "WR-1", "pledgee": bank.public}]
    asset = w.asset("WR-1")
    assert asset["status"] == "active" and asset["pledgee"] is None and asset["version"] == 3
    assert w.rejected(bank, "asset.release", {"asset_id": "WR-1"}) == "not_pledgee"
    w.ok(a, "asset.transfer", {"asset_id": "WR-1", "to": other.public})


def test_pledge_rejections(w: World) -> None:
    a, bank = w.c.users[:2]
    w.register("WR-1", a)
    args = {"asset_id": "WR-1", "pledgee": bank.public, "terms_hash": TERMS}
    assert w.rejected(bank, "asset.pledge", args) == "not_owner"
    assert w.rejected(a, "asset.pledge", {**args, "asset_id": "nope"}) == "asset_not_found"
    assert w.rejected(a, "asset.pledge", {**args, "pledgee": a.public}) == "invalid_args"
    w.ok(w.c.regulator, "asset.freeze", {"asset_id": "WR-1", "reason": "r"})
    assert w.rejected(a, "asset.pledge", args) == "asset_locked"
    w.ok(w.c.regulator, "asset.unfreeze", {"asset_id": "WR-1", "reason": "r"})
    w.ok(a, "asset.redeem", {"asset_id": "WR-1"})
    assert w.rejected(a, "asset.pledge", args) == "asset_redeemed"


def test_freeze_and_unfreeze_return_to_what_it_was(w: World) -> None:
    a, bank = w.c.users[:2]
    reg = w.c.regulator
    w.register("A", a, "a")
    receipt = w.ok(reg, "asset.freeze", {"asset_id": "A", "reason": "court order 1"})
    assert receipt["events"] == [
        {"type": "asset.frozen", "asset_id": "A", "previous_status": "active", "reason": "court order 1"}
    ]
    assert w.asset("A")["status"] == "frozen"
    assert w.rejected(reg, "asset.freeze", {"asset_id": "A", "reason": "again"}) == "asset_locked"
    receipt = w.ok(reg, "asset.unfreeze", {"asset_id": "A", "reason": "settled"})
    assert receipt["events"][0]["status"] == "active" and w.asset("A")["status"] == "active"
    assert w.rejected(reg, "asset.unfreeze", {"asset_id": "A", "reason": "again"}) == "invalid_args"

    w.ok(a, "asset.pledge", {"asset_id": "A", "pledgee": bank.public, "terms_hash": TERMS})
    w.ok(reg, "asset.freeze", {"asset_id": "A", "reason": "r"})
    assert w.asset("A")["pledgee"] == bank.public
    assert w.rejected(bank, "asset.release", {"asset_id": "A"}) == "asset_locked"
    w.ok(reg, "asset.unfreeze", {"asset_id": "A", "reason": "r"})
    assert w.asset("A")["status"] == "pledged" and w.asset("A")["pledgee"] == bank.public


def test_freeze_rejections(w: World) -> None:
    a = w.c.users[0]
    w.register("A", a)
    for who in (a, w.c.issuer, w.c.auditor, w.c.members[0]):
        assert w.rejected(who, "asset.freeze", {"asset_id": "A", "reason": "r"}) == "not_authorized"
    assert w.rejected(w.c.regulator, "asset.freeze", {"asset_id": "B", "reason": "r"}) == "asset_not_found"
    w.ok(w.c.regulator, "asset.freeze", {"asset_id": "A", "reason": "r"})
    assert w.rejected(a, "asset.unfreeze", {"asset_id": "A", "reason": "r"}) == "not_authorized"
    w.ok(w.c.regulator, "asset.unfreeze", {"asset_id": "A", "reason": "r"})
    w.ok(a, "asset.redeem", {"asset_id": "A"})
    assert w.rejected(w.c.regulator, "asset.freeze", {"asset_id": "A", "reason": "r"}) == "asset_redeemed"
    assert w.rejected(w.c.regulator, "asset.unfreeze", {"asset_id": "A", "reason": "r"}) == "asset_redeemed"


def test_force_transfer_keeps_pledge_and_freeze(w: World) -> None:
    a, b, bank = w.c.users[:3]
    reg = w.c.regulator
    w.register("A", a)
    w.ok(a, "asset.pledge", {"asset_id": "A", "pledgee": bank.public, "terms_hash": TERMS})
    w.ok(reg, "asset.freeze", {"asset_id": "A", "reason": "r"})
    receipt = w.ok(reg, "asset.force_transfer", {"asset_id": "A", "to": b.public, "order_hash": ORDER})
    assert receipt["events"] == [
        {
            "type": "asset.force_transferred",
            "asset_id": "A",
            "from": a.public,
            "to": b.public,
            "order_hash": ORDER,
            "status": "frozen",
        }
    ]
    asset = w.asset("A")
    assert (asset["owner"], asset["status"], asset["pledgee"]) == (b.public, "frozen", bank.public)
    w.ok(reg, "asset.unfreeze", {"asset_id": "A", "reason": "r"})
    assert w.asset("A")["status"] == "pledged"
    assert w.rejected(b, "asset.transfer", {"asset_id": "A", "to": a.public}) == "asset_locked"


def test_force_transfer_rejections(w: World) -> None:
    a, b = w.c.users[:2]
    w.register("A", a)
    args = {"asset_id": "A", "to": b.public, "order_hash": ORDER}
    assert w.rejected(a, "asset.force_transfer", args) == "not_authorized"
    assert w.rejected(w.c.regulator, "asset.force_transfer", {**args, "asset_id": "Z"}) == "asset_not_found"
    assert w.rejected(w.c.regulator, "asset.force_transfer", {**args, "to": a.public}) == "invalid_args"
    w.ok(a, "asset.redeem", {"asset_id": "A"})
    assert w.rejected(w.c.regulator, "asset.force_transfer", args) == "asset_redeemed"


def test_amend_moves_the_document_index_and_keeps_the_old_hash_in_the_event(w: World) -> None:
    a = w.c.users[0]
    w.register("A", a, "v1")
    receipt = w.ok(w.c.issuer, "asset.amend", {"asset_id": "A", "doc_hash": doc("v2"), "reason": "corrected weight"})
    assert receipt["events"] == [
        {
            "type": "asset.amended",
            "asset_id": "A",
            "old_doc_hash": doc("v1"),
            "new_doc_hash": doc("v2"),
            "reason": "corrected weight",
        }
    ]
    assert w.asset("A")["doc_hash"] == doc("v2") and w.asset("A")["version"] == 2
    assert w.state.get(doc_key(doc("v1"))) is None and w.state.get(doc_key(doc("v2"))) == "A"
    w.register("B", a, "v1")  # the old hash is free again


def test_amend_rejections(w: World) -> None:
    a = w.c.users[0]
    w.register("A", a, "a")
    w.register("B", a, "b")
    args = {"asset_id": "A", "doc_hash": doc("new"), "reason": "r"}
    assert w.rejected(a, "asset.amend", args) == "not_authorized"
    assert w.rejected(w.c.issuer, "asset.amend", {**args, "asset_id": "Z"}) == "asset_not_found"
    assert w.rejected(w.c.issuer, "asset.amend", {**args, "doc_hash": doc("b")}) == "duplicate_document"
    assert w.rejected(w.c.issuer, "asset.amend", {**args, "doc_hash": doc("a")}) == "invalid_args"
    w.ok(w.c.regulator, "asset.freeze", {"asset_id": "A", "reason": "r"})
    assert w.rejected(w.c.issuer, "asset.amend", args) == "asset_locked"
    w.ok(w.c.regulator, "asset.unfreeze", {"asset_id": "A", "reason": "r"})
    w.ok(a, "asset.redeem", {"asset_id": "A"})
    assert w.rejected(w.c.issuer, "asset.amend", args) == "asset_redeemed"


def test_amend_allowed_while_pledged(w: World) -> None:
    a, bank = w.c.users[:2]
    w.register("A", a, "a")
    w.ok(a, "asset.pledge", {"asset_id": "A", "pledgee": bank.public, "terms_hash": TERMS})
    w.ok(w.c.issuer, "asset.amend", {"asset_id": "A", "doc_hash": doc("a2"), "reason": "r"})
    assert w.asset("A")["status"] == "pledged"


def test_redeem(w: World) -> None:
    a, b, bank = w.c.users[:3]
    w.register("A", a, "a")
    assert w.rejected(b, "asset.redeem", {"asset_id": "A"}) == "not_owner"
    assert w.rejected(a, "asset.redeem", {"asset_id": "Z"}) == "asset_not_found"
    w.ok(a, "asset.pledge", {"asset_id": "A", "pledgee": bank.public, "terms_hash": TERMS})
    assert w.rejected(a, "asset.redeem", {"asset_id": "A"}) == "asset_locked"
    w.ok(bank, "asset.release", {"asset_id": "A"})
    receipt = w.ok(a, "asset.redeem", {"asset_id": "A"})
    assert receipt["events"] == [{"type": "asset.redeemed", "asset_id": "A", "owner": a.public, "doc_hash": doc("a")}]
    assert w.asset("A")["status"] == "redeemed"
    assert w.rejected(a, "asset.redeem", {"asset_id": "A"}) == "asset_redeemed"


def test_redeem_refused_while_frozen(w: World) -> None:
    a = w.c.users[0]
    w.register("A", a)
    w.ok(w.c.regulator, "asset.freeze", {"asset_id": "A", "reason": "r"})
    assert w.rejected(a, "asset.redeem", {"asset_id": "A"}) == "asset_locked"


def test_revoked_issuer_can_no_longer_register_or_amend(w: World) -> None:
    """Authority is read from the state at execution, not remembered from registration."""
    from contracts import roles_key

    w.register("A", w.c.users[0], "a")
    w.state.apply({roles_key(w.c.issuer.public): None})
    assert w.rejected(w.c.issuer, "asset.register", reg_args(w, "B", "b")) == "not_authorized"
    args = {"asset_id": "A", "doc_hash": doc("a2"), "reason": "r"}
    assert w.rejected(w.c.issuer, "asset.amend", args) == "not_authorized"


def test_txs_in_one_block_see_each_others_writes(w: World) -> None:
    """Sequential execution: the caller layers each tx's writes before the next (the double spend)."""
    from contracts import MemoryView

    a, b, c = w.c.users[:3]
    w.register("A", a)
    block = MemoryView(base=w.state)
    spends = [w.sign(a, "asset.transfer", {"asset_id": "A", "to": to.public}) for to in (b, c)]
    results = []
    for index, tx in enumerate(spends):
        writes, receipt = execute(block, tx, 7, index)
        block.apply(writes)
        results.append(receipt)
    assert [r["status"] for r in results] == ["ok", "rejected"]
    assert results[1]["error"]["code"] == "not_owner" and results[1]["index"] == 1
    assert read_asset(block, "A")["owner"] == b.public
    assert w.asset("A")["owner"] == a.public  # the base is untouched until the block commits


def test_execute_is_deterministic_and_does_not_mutate_the_view(w: World) -> None:
    import copy

    a, b = w.c.users[:2]
    w.register("A", a)
    tx = w.sign(a, "asset.transfer", {"asset_id": "A", "to": b.public})
    before = copy.deepcopy(w.state.items())
    first = execute(w.state, tx, 5, 3)
    assert execute(w.state, tx, 5, 3) == first
    assert w.state.items() == before
