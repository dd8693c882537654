"""A real observer following a real validator, both in-process (n = 1: the validator commits
alone): it stores what the validator committed, serves it, refuses writes, and a validator's key
or a role-less account does not make an observer. Four validator processes: tests/integration/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from factories import Consortium, make_consortium

from chain.crypto import KeyPair, write_key_file
from chain.tx import sign_tx
from node.p2p.handshake import OBSERVER
from node.p2p.transport import Transport
from node.runtime.config import ConfigError, NodeConfig
from node.runtime.join import JoinError, join
from node.runtime.node_common import NodeStartError
from node.runtime.observer import Observer
from node.runtime.process import open_node
from node.runtime.validator import Validator, open_validator

DEADLINE = 15.0


@pytest.fixture
def consortium() -> Consortium:
    return make_consortium(1, params={"batch_delay_ms": 1})


@pytest.fixture
async def validator(tmp_path: Path, consortium: Consortium) -> AsyncIterator[Validator]:
    consortium.genesis.write(tmp_path / "genesis.json")
    write_key_file(tmp_path / "v0.json", consortium.validator_keys[0])
    v = open_validator(NodeConfig(
        node_id="v0", genesis=tmp_path / "genesis.json", key=tmp_path / "v0.json", data_dir=tmp_path / "v0",
        peer_listen="127.0.0.1:0", rpc_listen="127.0.0.1:0",
    ))
    await v.start()
    yield v
    await v.stop()


def observer_config(tmp_path: Path, v: Validator, key: KeyPair, name: str = "obs") -> NodeConfig:
    write_key_file(tmp_path / f"{name}.json", key)
    return NodeConfig(
        node_id=name, observer=True, genesis=tmp_path / "genesis.json", key=tmp_path / f"{name}.json",
        data_dir=tmp_path / name, rpc_listen="127.0.0.1:0", peer_addresses={"v0": f"127.0.0.1:{v.transport.port}"},
    )


async def until(pred, what: str, deadline: float = DEADLINE) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(deadline):
        while not pred():
            await asyncio.sleep(0.02)


async def commit_assets(v: Validator, c: Consortium, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        args = {"asset_id": f"WR-{i}", "class": "warehouse_receipt", "owner": c.users[0].public, "doc_hash": f"{i:064x}", "meta": {}}
        tx = sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args=args, expires=v.ledger.height + 50)
        v.service.submit(tx)
        await asyncio.wait_for(v.service.wait_committed(tx.tx_id), DEADLINE)


async def test_an_observer_catches_up_follows_and_serves_what_the_validator_committed(
    tmp_path: Path, validator: Validator, consortium: Consortium
) -> None:
    c = consortium
    await commit_assets(validator, c, 3)  # before the observer exists: it catches up
    obs = open_node(observer_config(tmp_path, validator, c.auditor))
    assert isinstance(obs, Observer)
    await obs.start()
    try:
        # well within the 3 s idle probe: the validator tells a new observer its head on link-up
        await until(lambda: obs.service.ready and obs.ledger.height == validator.ledger.height, "the observer to catch up", 2.0)
        events = obs.service.subscribe()
        await commit_assets(validator, c, 2, first=3)  # while it follows: head notices
        await until(lambda: obs.ledger.height == validator.ledger.height, "the observer to follow")
        assert [(await events.get()).height for _ in range(2)] == [validator.ledger.height - 1, validator.ledger.height]
        for h in range(1, validator.ledger.height + 1):
            assert obs.service.block(h) == validator.service.block(h)
        assert obs.service.asset("WR-4") == validator.service.asset("WR-4")
        assert validator.transport.observer_status()[0].public == c.auditor.public
        url = f"http://127.0.0.1:{obs.rpc_port}"
        async with ClientSession() as http:
            status = await (await http.get(f"{url}/v1/status")).json()
            assert (status["role"], status["height"], status["ready"], status["mempool"]) == ("observer", validator.ledger.height, True, 0)
            args = {"asset_id": "WR-X", "class": "warehouse_receipt", "owner": c.users[0].public, "doc_hash": "ee" * 32, "meta": {}}
            tx = sign_tx(c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args=args, expires=validator.ledger.height + 50)
            for path, body in (("/v1/txs", tx.to_plain()), ("/v1/txs/batch", {"txs": [tx.to_plain()]})):
                r = await http.post(url + path, json=body)
                answer = await r.json()
                assert (r.status, answer["error"]["code"]) == (403, "read_only"), answer
            metrics = await (await http.get(f"{url}/metrics")).text()
            assert f"titlechain_height {validator.ledger.height}.0" in metrics
    finally:
        await obs.stop()


async def test_an_account_without_the_role_gets_no_link_and_says_why(tmp_path: Path, validator: Validator, consortium: Consortium) -> None:
    obs = open_node(observer_config(tmp_path, validator, consortium.users[0], "nobody"))
    await obs.start()
    try:
        await until(lambda: "holds neither the auditor nor the regulator role" in (obs.service.not_ready_reason() or ""), "the refusal")
        assert not obs.service.ready and obs.ledger.height == 0 and not validator.transport.observer_status()
    finally:
        await obs.stop()


def test_a_validator_key_does_not_make_an_observer_and_a_validator_needs_a_peer_port(
    tmp_path: Path, consortium: Consortium
) -> None:
    consortium.genesis.write(tmp_path / "genesis.json")
    write_key_file(tmp_path / "v0.json", consortium.validator_keys[0])
    cfg = NodeConfig(
        node_id="v0", observer=True, genesis=tmp_path / "genesis.json", key=tmp_path / "v0.json", data_dir=tmp_path / "d",
    )
    with pytest.raises(NodeStartError, match="validator's node key"):
        open_node(cfg)
    with pytest.raises(ValueError, match="peer_listen is required for a validator"):
        NodeConfig(node_id="v0", genesis=tmp_path / "genesis.json", key=tmp_path / "v0.json", data_dir=tmp_path / "d")
    path = tmp_path / "config.json"
    path.write_text(cfg.model_copy(update={"observer": False}).model_dump_json(exclude={"peer_listen"}))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="peer_listen is required"):
        NodeConfig.load(path)
    assert NodeConfig.load(path, observer=True).observer  # what `node run --observer` does



async def test_a_validator_answers_an_observer_at_its_rate_and_drops_the_rest(tmp_path: Path, consortium: Consortium) -> None:
    """An observer (its real auditor key, a valid link) that asks faster than the validator allows,
    and sends a vote and tx gossip besides: the validator answers `observer_request_burst` requests,
    drops and counts everything else, and its consensus hears nothing of it."""
    c = consortium
    c.genesis.write(tmp_path / "genesis.json")
    write_key_file(tmp_path / "v0.json", c.validator_keys[0])
    v = open_validator(NodeConfig(
        node_id="v0", genesis=tmp_path / "genesis.json", key=tmp_path / "v0.json", data_dir=tmp_path / "v0",
        peer_listen="127.0.0.1:0", rpc_listen="127.0.0.1:0", observer_requests_per_s=0.01, observer_request_burst=3,
    ))
    await v.start()
    answers: list[object] = []
    obs = Transport(
        c.auditor, role=OBSERVER, chain_id=c.genesis.chain_id, genesis_hash=c.genesis.hash, validators=c.genesis.validators,
        on_message=lambda sender, msg: answers.append(msg), addresses={c.validator_keys[0].public: f"127.0.0.1:{v.transport.port}"},
    )
    obs.dial()
    try:
        await until(lambda: obs.is_connected(c.validator_keys[0].public), "the observer's link")
        view_before = v.replica.view
        for _ in range(10):
            obs.send(c.validator_keys[0].public, {"t": "sync_req", "from": 1, "limit": 4})
        obs.send(c.validator_keys[0].public, {"body": {"kind": "view_change", "view": 5}, "sender": c.auditor.public, "sig": "00" * 64})
        await until(lambda: v.metrics.registry.get_sample_value("titlechain_observer_messages_dropped_total") == 8, "7 requests over the rate and 1 vote dropped")
        kinds = [a["t"] for a in answers if isinstance(a, dict)]
        assert kinds == ["head"] + ["sync_resp"] * 3  # the head on link-up, then three answers
        assert v.replica.view == view_before
    finally:
        await obs.close()
        await v.stop()


async def test_an_observer_joins_by_state_sync_then_follows(tmp_path: Path, validator: Validator, consortium: Consortium) -> None:
    """The validator's sync client over an observer's link (node/runtime/join.py): the data dir
    starts at the validator's head as its base, and the observer follows the blocks after it."""
    c = consortium
    await commit_assets(validator, c, 4)
    base = validator.ledger.height
    cfg = observer_config(tmp_path, validator, c.auditor)
    joined = await join(cfg)
    assert joined is not None and joined.store.base_height == base
    obs = open_node(cfg, joined)
    assert isinstance(obs, Observer) and obs.transport is joined.transport
    await obs.start()
    try:
        await commit_assets(validator, c, 2, first=4)
        await until(lambda: obs.ledger.height == validator.ledger.height, "the observer to follow")
        assert obs.service.asset("WR-5") == validator.service.asset("WR-5")
        assert obs.service.asset("WR-0") == validator.service.asset("WR-0")  # from the synced state
    finally:
        await obs.stop()
    with pytest.raises(JoinError, match="validator's node key"):  # refused before any sync (v0.json: the fixture's)
        await join(cfg.model_copy(update={"key": tmp_path / "v0.json", "data_dir": tmp_path / "other"}))
