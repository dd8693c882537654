"""The runtime's side of membership changes, in-process (n = 1, so the node commits alone): whose
votes the vote record holds, when a node may start, and a seat's key rotated under a running
node. Four- and five-process consortia that grow, shrink and rotate are in
tests/integration/test_membership.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from factories import Consortium, make_consortium, seeded_key

from chain.crypto import write_key_file
from chain.store import Store
from chain.tx import sign_tx
from chain.validators import Validator as Seat
from chain.validators import ValidatorSet
from node.consensus import pbft
from node.consensus.messages import Signed, ViewChange
from node.runtime.config import ConfigError, NodeConfig
from node.runtime.membership import start_problem
from node.runtime.validator import NodeStartError, open_validator
from node.runtime.votes import VOTES_OWNER, VOTES_RECORD, VoteStore


@pytest.fixture
def consortium() -> Consortium:
    return make_consortium(1, params={"batch_delay_ms": 1})


def _config(tmp_path: Path, c: Consortium, key_name: str = "v0.json") -> NodeConfig:
    c.genesis.write(tmp_path / "genesis.json")
    if not (tmp_path / "v0.json").exists():
        write_key_file(tmp_path / "v0.json", c.validator_keys[0])
    return NodeConfig(
        node_id="v0", genesis=tmp_path / "genesis.json", key=tmp_path / key_name, data_dir=tmp_path / "data",
        peer_listen="127.0.0.1:0", rpc_listen="127.0.0.1:0",
    )


def test_a_record_of_another_key_is_not_taken_for_this_keys(tmp_path: Path, consortium: Consortium) -> None:
    old, new = consortium.validator_keys[0], seeded_key("rotated")
    record = pbft.VoteRecord(3, None, Signed.sign(old, ViewChange(3, 1, None)))
    with Store.create_or_open(tmp_path / "data", consortium.genesis) as store:
        VoteStore(store, old, tmp_path).save(record)
        assert store.get_meta(VOTES_OWNER) == old.public.encode()  # written with the first record
        assert VoteStore(store, old, tmp_path).load() == record
        assert VoteStore(store, new, tmp_path).load() is None  # the new key has voted nothing
    # a record from before the owner was kept: the other key's VIEW-CHANGE is not re-sent
    with Store.create_or_open(tmp_path / "legacy", consortium.genesis) as store:
        store.put_meta(VOTES_RECORD, record.encode())
        loaded = VoteStore(store, new, tmp_path).load()
        assert loaded is not None and loaded.view == 3 and loaded.view_change is None
        assert VoteStore(store, old, tmp_path).load() == record


def test_who_may_start(consortium: Consortium) -> None:
    vset = consortium.genesis.validators
    key = consortium.validator_keys[0]
    assert start_problem(vset, key, "v0", (), 1) is None
    assert "gives this key the id 'v0'" in str(start_problem(vset, key, "v9", (), 1))
    outsider = seeded_key("outsider")
    assert "not a validator of the set at height 7" in str(start_problem(vset, outsider, "v9", (), 7))
    assert start_problem(vset, outsider, "v9", ("127.0.0.1:27000",), 7) is None  # joining


def test_bootstrap_peers_are_dialable_addresses(tmp_path: Path, consortium: Consortium) -> None:
    cfg = _config(tmp_path, consortium)
    assert cfg.with_peers(("10.0.0.1:26600", "[::1]:1")).peers == ("10.0.0.1:26600", "[::1]:1")
    for bad in ("0.0.0.0:26600", "host:0", "nohost"):
        with pytest.raises(ConfigError, match="--peers"):
            cfg.with_peers((bad,))


async def test_a_rotated_key_retires_the_running_node_and_its_restart_with_the_new_key_votes(
    tmp_path: Path, consortium: Consortium
) -> None:
    c = consortium
    fresh = seeded_key("v0-rotated")
    write_key_file(tmp_path / "fresh.json", fresh)
    node = open_validator(_config(tmp_path, c))
    await node.start()
    try:
        args = {"action": "rotate_validator", "params": {"node_id": "v0", "public": fresh.public}}
        tx = sign_tx(c.members[0], chain_id=c.genesis.chain_id, op="gov.propose", args=args, expires=50)
        node.service.submit(tx)
        receipt = await asyncio.wait_for(node.service.wait_committed(tx.tx_id), 10)
        assert receipt["events"][-1]["type"] == "validator.rotated"
        rotated_at = receipt["height"] + 1
        assert node.service.not_ready_reason() == f"this node's key is no validator from height {rotated_at} on: it serves the chain up to there"
        assert node.transport.peer_status() == [] and not node.transport.member
    finally:
        await node.stop()
    # the old key may not start again (no set from here on holds it), the new one may
    with pytest.raises(NodeStartError, match=f"not a validator of the set at height {rotated_at}"):
        open_validator(_config(tmp_path, c))
    node = open_validator(_config(tmp_path, c, "fresh.json"))
    await node.start()
    try:
        assert node.service.ready
        tx = sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", expires=50, args={
            "asset_id": "WR-AFTER", "class": "warehouse_receipt", "owner": c.users[0].public, "doc_hash": "cd" * 32, "meta": {}})
        node.service.submit(tx)
        receipt = await asyncio.wait_for(node.service.wait_committed(tx.tx_id), 10)
        cert = node.ledger.store.get_certificate(receipt["height"])
        assert cert is not None and [v for v, _ in cert.signatures] == [fresh.public]
        assert node.ledger.validator_set_at(receipt["height"]) == ValidatorSet((Seat("v0", fresh.public, c.genesis.validators.validators[0].address),))
    finally:
        await node.stop()
