"""The apply path through the Ledger: replay reproduces every root, indexes, block validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_fixtures import LedgerChain, build_story

from chain import smt
from chain.block import Block
from chain.encoding import canonical, decode
from chain.merkle import tx_root
from chain.store import RESERVED_PREFIXES, Store
from chain.txrecords import tx_record_key
from contracts.apply import apply_txs, genesis_state, pack, unpack
from node.rpc import paging, views
from node.runtime.ledger import Ledger, LedgerError


@pytest.fixture
def story(tmp_path: Path) -> LedgerChain:
    ch = build_story(tmp_path / "node")
    yield ch
    ch.close()


def _derived(store: Store) -> dict[bytes, bytes]:
    return {k: v for k, v in store.iterate(b"") if not k.startswith(RESERVED_PREFIXES)}


def test_replay_from_genesis_reproduces_every_root_and_write(story: LedgerChain) -> None:
    store = story.ledger.store
    g = genesis_state(story.c.genesis)
    replay: dict[bytes, bytes | None] = dict(g.writes)
    root = g.state_root
    for height in range(1, store.height + 1):
        block = store.get_block(height)
        assert block is not None
        result = apply_txs(replay.get, root, block.txs, height)
        assert result.state_root == block.header.state_root
        assert result.receipts_root == block.header.receipts_root
        assert result.next_validators.hash == block.header.next_validators_hash
        assert result.receipts == store.get_receipts(height)
        assert list(result.packed_receipts) == [canonical(r) for r in result.receipts]
        for index, tx in enumerate(block.txs):
            assert store.get(tx_record_key(height, index)) == canonical([height, index, tx.to_plain(), result.receipts[index]])
        replay.update(result.writes)
        root = result.state_root
    assert {k: v for k, v in replay.items() if v is not None} == _derived(store)


def test_receipts_and_rejections_are_committed(story: LedgerChain) -> None:
    store = story.ledger.store
    statuses = [[r["status"] for r in store.get_receipts(h)] for h in range(1, 6)]
    assert statuses == [["ok", "ok", "ok"], ["ok", "rejected"], ["ok", "ok"], [], ["ok", "ok"]]
    rejected = story.ledger.tx(store.get_block(2).txs[1].tx_id)
    assert rejected is not None and rejected.receipt["error"]["code"] == "not_owner"
    assert (rejected.height, rejected.index) == (2, 1)


def test_history_and_owner_indexes(story: LedgerChain) -> None:
    u = story.c.users
    led = story.ledger
    hist = led.history("WR-1")
    assert [(e["height"], e["index"], e["op"], e["status"]) for e in hist] == [
        (1, 0, "asset.register", "ok"),
        (2, 0, "asset.transfer", "ok"),
        (2, 1, "asset.transfer", "rejected"),
        (3, 1, "asset.transfer", "ok"),
    ]
    assert hist[2]["error"]["code"] == "not_owner" and hist[2]["signer"] == u[0].public
    assert led.asset("WR-1")["owner"] == u[4].public
    assert led.account_assets(u[4].public) == ["WR-1"]
    assert led.account_assets(u[0].public) == ["WR-3"]  # redeemed, still recorded as its owner's
    assert led.account_assets(u[5].public) == ["WR-2"]
    assert led.account_assets(u[1].public) == [] and led.account_assets(u[2].public) == []
    owners = {k.split(b"/")[2].decode(): k.split(b"/")[1].decode() for k, _ in led.store.iterate(b"o/")}
    assert owners == {a: led.asset(a)["owner"] for a in ("WR-1", "WR-2", "WR-3")}


def test_state_root_commits_every_state_key(story: LedgerChain) -> None:
    led = story.ledger
    read = led.store.get
    root = smt.root_at(read, led.height)
    assert root[0].hex() == led.state_root
    for key, raw in led.store.iterate(b"s/"):
        proof = smt.prove(root, key[2:], read)
        assert smt.verify_proof(led.state_root, key[2:], raw, proof), key


def test_reopen_keeps_head_and_validators(tmp_path: Path) -> None:
    ch = build_story(tmp_path / "n")
    head, root = ch.ledger.head, ch.ledger.state_root
    ch.close()
    again = Ledger.open(tmp_path / "n", ch.c.genesis)
    assert again.head == head and again.state_root == root
    assert again.validator_set_at(6) == ch.c.genesis.validators
    again.close()


def test_validate_refuses_bad_blocks(tmp_path: Path) -> None:
    ch = LedgerChain(tmp_path / "n")
    u = ch.c.users
    tx = ch.register("A-1", u[0])
    good = ch.ledger.propose([tx], 0, ch.ledger.validator_set_at(1).primary(0).public, 1)
    ch.ledger.validate(good)

    def variant(**changes: object) -> Block:
        return Block(dataclasses.replace(good.header, **changes), good.txs)

    for bad, why in [
        (variant(state_root="00" * 32), "state_root"),
        (variant(receipts_root="00" * 32), "receipts_root"),
        (variant(next_validators_hash="00" * 32), "next_validators_hash"),
        (variant(prev_hash="00" * 32), "prev_hash"),
        (variant(height=2), "height"),
        (variant(validators_hash="00" * 32), "validators_hash"),
        (variant(tx_root="00" * 32), "tx_root"),
        (Block(dataclasses.replace(good.header, tx_root=tx_root([tx.tx_id] * 2)), (tx, tx)), "twice"),
    ]:
        with pytest.raises(LedgerError, match=why):
            ch.ledger.validate(bad)
    forged = dataclasses.replace(tx, sig="00" * 64)
    with pytest.raises(LedgerError, match="bad_signature"):
        ch.ledger.validate(Block(good.header, (forged,)))
    bad_args = ch.sign(u[0], "asset.transfer", {"asset_id": "A-1"})
    with pytest.raises(LedgerError, match="invalid_args"):
        ch.ledger.validate(_proposed(ch, [bad_args]))
    ch.block([tx])
    with pytest.raises(LedgerError, match="already committed"):
        ch.ledger.validate(_proposed(ch, [tx]))
    ch.close()


def _proposed(ch: LedgerChain, txs: list) -> Block:
    """A block built around the contracts' own gate, as a faulty primary would."""
    from chain.block import Header
    from chain.merkle import EMPTY_ROOT

    height = ch.ledger.height + 1
    vset = ch.ledger.validator_set_at(height)
    header = Header(
        chain_id=ch.c.genesis.chain_id,
        height=height,
        prev_hash=ch.ledger.prev_hash,
        tx_root=tx_root([t.tx_id for t in txs]),
        state_root=EMPTY_ROOT,
        receipts_root=EMPTY_ROOT,
        validators_hash=vset.hash,
        next_validators_hash=vset.hash,
        proposer=vset.primary(0).public,
        view=0,
        time=0,
    )
    return Block(header, tuple(txs))


def test_genesis_state_holds_validators_and_roles(tmp_path: Path) -> None:
    ch = LedgerChain(tmp_path / "n")
    assert decode(ch.ledger.raw_state("validators")) == ch.c.genesis.validators.to_plain()
    assert ch.ledger.state(f"role/{ch.c.issuer.public}")
    assert ch.ledger.state_root == genesis_state(ch.c.genesis).state_root != smt.EMPTY_ROOT
    ch.close()


_PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_PLAIN)
def test_fast_pack_is_canonical(v: object) -> None:
    assert pack(v) == canonical(v)
    assert unpack(pack(v)) == v


def test_a_rejected_tx_naming_an_unregistered_id_is_not_indexed_and_not_inherited(tmp_path: Path) -> None:
    """Rejected txs naming an id no asset holds used to fill that id's history, which the asset
    registered later under the id inherited."""
    ch = LedgerChain(tmp_path / "n")
    try:
        u = ch.c.users
        squat = ch.sign(ch.c.issuer, "asset.transfer", {"asset_id": "WR-later", "to": u[2].public})  # a known party
        ch.block([squat])
        assert ch.ledger.tx(squat.tx_id).receipt["status"] == "rejected"  # committed with its receipt
        assert views.history_answer(ch.ledger.store, "WR-later") is None  # 404: no asset holds the id
        reg = ch.register("WR-later", u[0])
        ch.block([reg])
        page = views.history_answer(ch.ledger.store, "WR-later")
        assert [e["tx_id"] for e in page["entries"]] == [reg.tx_id] and page["next"] is None
    finally:
        ch.close()


def test_history_and_assets_are_paged_with_a_cursor(tmp_path: Path) -> None:
    ch = LedgerChain(tmp_path / "n")
    try:
        u = ch.c.users
        ch.block([ch.register(f"WR-{i:02d}", u[0]) for i in range(7)])
        for _ in range(2):  # WR-00 named three times: registered, transferred, a second transfer rejected
            ch.block([ch.sign(u[0], "asset.transfer", {"asset_id": "WR-00", "to": u[1].public})])
        led = ch.ledger
        full = views.history_answer(led.store, "WR-00", limit=1000)["entries"]
        seen, cursor = [], None
        while True:
            page = views.history_answer(led.store, "WR-00", cursor, 2)
            assert len(page["entries"]) <= 2
            seen += page["entries"]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == full and len(full) == 3
        assets, cursor = [], None
        while True:
            page = views.account_answer(led.store, u[0].public, cursor, 3)
            assets += page["assets"]
            cursor = page["next"]
            if cursor is None:
                break
        assert assets == [f"WR-{i:02d}" for i in range(1, 7)]
        for bad in ("x", "1.2\n", "1"):
            with pytest.raises(paging.CursorError):
                views.history_answer(led.store, "WR-00", bad)
        with pytest.raises(paging.CursorError):
            views.account_answer(led.store, u[0].public, "WR/0")
        with pytest.raises(paging.CursorError):
            views.history_answer(led.store, "WR-00", None, paging.MAX_LIMIT + 1)
    finally:
        ch.close()
