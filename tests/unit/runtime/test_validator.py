"""A real validator in-process (n = 1, so it commits alone): the NodeApi behind the RPC, restart
from its own store, and the peer messages of node/p2p/messages.py. Four-process consortia are in
tests/integration/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from factories import Consortium, make_consortium

from chain.crypto import write_key_file
from chain.encoding import canonical, decode
from chain.proofcheck import verify_ownership_proof
from chain.store import Store
from chain.tx import sign_tx
from node.p2p.catchup import BLOCK_SERVE_PER_S
from node.p2p.messages import MAX_SYNC_BLOCKS, BlockRequest, BlockResponse, SyncRequest, TxGossip, WireError, parse_wire
from node.runtime.config import NodeConfig
from node.runtime.validator import NodeStartError, Validator, open_validator
from node.runtime.votes import VOTES_RECORD

DOC = "ab" * 32


def _config(tmp_path: Path, c: Consortium) -> NodeConfig:
    c.genesis.write(tmp_path / "genesis.json")
    key = tmp_path / "v0.json"
    if not key.exists():
        write_key_file(key, c.validator_keys[0])
    return NodeConfig(
        node_id="v0", genesis=tmp_path / "genesis.json", key=key, data_dir=tmp_path / "data",
        peer_listen="127.0.0.1:0", rpc_listen="127.0.0.1:0",
    )


@pytest.fixture
def consortium() -> Consortium:
    return make_consortium(1, params={"batch_delay_ms": 1})


@pytest.fixture
async def node(tmp_path: Path, consortium: Consortium) -> AsyncIterator[Validator]:
    v = open_validator(_config(tmp_path, consortium))
    await v.start()
    yield v
    await v.stop()


def _register(c: Consortium, asset_id: str, height: int, doc: str = DOC, key=None):  # type: ignore[no-untyped-def]
    args = {"asset_id": asset_id, "class": "warehouse_receipt", "owner": c.users[0].public, "doc_hash": doc, "meta": {}}
    return sign_tx(key or c.issuer, chain_id=c.genesis.chain_id, op="asset.register", args=args, expires=height + 50)


async def test_a_tx_submitted_over_http_commits_and_every_read_route_answers(node: Validator, consortium: Consortium) -> None:
    c = consortium
    url = f"http://127.0.0.1:{node.rpc_port}"
    async with ClientSession() as http:
        status = await (await http.get(f"{url}/v1/status")).json()
        assert status["ready"] and status["height"] == 0 and status["primary"] == "v0"
        tx = _register(c, "WR-1", 0)
        r = await http.post(f"{url}/v1/txs?wait=true&timeout=10", json=tx.to_plain())
        body = await r.json()
        assert r.status == 200 and body["receipt"]["status"] == "ok", body
        dup = await http.post(f"{url}/v1/txs", json=tx.to_plain())
        assert dup.status == 409
        asset = await (await http.get(f"{url}/v1/assets/WR-1")).json()
        assert asset["owner"] == c.users[0].public and asset["status"] == "active"
        history = await (await http.get(f"{url}/v1/assets/WR-1/history")).json()
        assert [e["tx_id"] for e in history["entries"]] == [tx.tx_id]
        account = await (await http.get(f"{url}/v1/accounts/{c.users[0].public}")).json()
        assert account["assets"] == ["WR-1"]
        issuer = await (await http.get(f"{url}/v1/accounts/{c.issuer.public}")).json()
        assert issuer["roles"][0]["role"] == "issuer"
        info = await (await http.get(f"{url}/v1/txs/{tx.tx_id}")).json()
        assert info["status"] == "committed" and info["height"] == 1
        block = await (await http.get(f"{url}/v1/blocks/latest")).json()
        assert block["tx_ids"] == [tx.tx_id] and block["certificate"]["height"] == 1
        proof = await (await http.get(f"{url}/v1/assets/WR-1/proof")).json()
        assert verify_ownership_proof(proof, c.genesis).owner == c.users[0].public
        absent = await (await http.get(f"{url}/v1/assets/WR-404/proof")).json()
        assert verify_ownership_proof(absent, c.genesis).absent
        metrics = await (await http.get(f"{url}/metrics")).text()
        assert "titlechain_height 1.0" in metrics


async def test_a_contract_refusal_is_committed_with_a_rejected_receipt(node: Validator, consortium: Consortium) -> None:
    c = consortium
    first = _register(c, "WR-A", 0)
    node.service.submit(first)
    await asyncio.wait_for(node.service.wait_committed(first.tx_id), 10)
    # the same document under another id: the double-registration fraud
    twin = _register(c, "WR-B", node.service.height)
    node.service.submit(twin)
    receipt = await asyncio.wait_for(node.service.wait_committed(twin.tx_id), 10)
    assert receipt["status"] == "rejected" and receipt["error"]["code"] == "duplicate_document"
    assert node.service.asset("WR-B") is None
    # committed with its receipt, but not indexed under an id no asset holds (docs/rpc.md: 404 for it)
    assert node.service.history("WR-B", None, 100) is None and node.service.tx_info(twin.tx_id)["receipt"] == receipt


async def test_a_restarted_node_resumes_from_its_store(tmp_path: Path, consortium: Consortium) -> None:
    cfg = _config(tmp_path, consortium)
    v = open_validator(cfg)
    await v.start()
    tx = _register(consortium, "WR-R", 0)
    v.service.submit(tx)
    await asyncio.wait_for(v.service.wait_committed(tx.tx_id), 10)
    head = v.ledger.head
    await v.stop()
    again = open_validator(cfg)
    try:
        assert again.ledger.head == head
        assert again.replica.height == head.height + 1  # the core starts at the next height
        assert again.service.tx_info(tx.tx_id)["status"] == "committed"
    finally:
        again.ledger.close()


def test_a_key_outside_the_genesis_cannot_run_a_node(tmp_path: Path, consortium: Consortium) -> None:
    cfg = _config(tmp_path, consortium)
    write_key_file(tmp_path / "outsider.json", consortium.users[1])
    with pytest.raises(NodeStartError, match="not a validator"):
        open_validator(cfg.model_copy(update={"key": tmp_path / "outsider.json"}))


def test_peer_addresses_must_name_other_validators(tmp_path: Path, consortium: Consortium) -> None:
    cfg = _config(tmp_path, consortium)
    with pytest.raises(NodeStartError, match="peer_addresses names nobody"):
        open_validator(cfg.model_copy(update={"peer_addresses": {"nobody": "127.0.0.1:1"}}))
    with pytest.raises(NodeStartError, match=f"peer_addresses names {cfg.node_id}"):  # not itself either
        open_validator(cfg.model_copy(update={"peer_addresses": {cfg.node_id: "127.0.0.1:1"}}))


@pytest.mark.parametrize(
    "msg",
    [
        {"t": "nope"},
        {"t": "txs"},
        {"t": "txs", "txs": "x"},
        {"t": "txs", "txs": [], "extra": 1},
        {"t": "sync_req", "from": 0, "limit": 1},
        {"t": "sync_req", "from": 1, "limit": "9"},
        {"t": "sync_resp", "head": 1, "blocks": [{"block": {}, "certificate": {}}]},
        {"t": "sync_resp", "head": -1, "blocks": []},
        {"t": "sync_resp", "head": 1, "blocks": [1]},
        {"t": "block", "block": {}},
        {"t": "block", "block": {"header": {}, "txs": []}, "extra": 1},
        {"t": "block_req", "hash": "AB" * 32, "height": 1},
        {"t": "block_req", "hash": "ab" * 32, "height": 0},
        {"t": "block_resp", "hash": "ab" * 32},
        {"t": "block_resp", "hash": "ab" * 31, "block": None},
    ],
)
def test_malformed_peer_messages_are_refused_with_wire_error(msg: dict) -> None:
    with pytest.raises(WireError):
        parse_wire(msg)


def test_gossip_keeps_the_txs_that_parse_and_counts_the_rest(consortium: Consortium) -> None:
    good = _register(consortium, "WR-G", 0)
    parsed = parse_wire({"t": "txs", "txs": [good.to_plain(), {"body": 1, "sig": "x"}]})
    assert isinstance(parsed, TxGossip) and parsed.txs == (good,) and parsed.refused == 1
    req = parse_wire(SyncRequest(5, 10_000).to_plain())
    assert req == SyncRequest(5, MAX_SYNC_BLOCKS)  # a greedy request is capped, not refused


async def test_the_event_stream_delivers_every_committed_block_once_in_order(node: Validator, consortium: Consortium) -> None:
    from node.sdk.client import AsyncClient

    c = consortium
    seen: list[int] = []
    receipts: dict[str, str] = {}
    txs = [_register(c, f"WR-E{i}", 0, doc=f"{i:064x}") for i in range(30)]

    async def follow() -> None:
        async with AsyncClient(f"http://127.0.0.1:{node.rpc_port}") as client:
            async for ev in client.events(from_height=1):
                seen.append(ev["data"]["height"])
                receipts.update((r["tx_id"], r["status"]) for r in ev["data"]["receipts"])
                if len(receipts) == len(txs):
                    return

    reader = asyncio.create_task(follow())
    for i, tx in enumerate(txs):  # in several bursts, so they land in several blocks
        node.service.submit(tx)
        if i % 7 == 6:
            await asyncio.wait_for(node.service.wait_committed(tx.tx_id), 10)
    await asyncio.wait_for(reader, 20)
    assert seen == list(range(1, node.service.height + 1)) and len(seen) > 1
    assert set(receipts.values()) == {"ok"}


def test_an_old_vote_record_is_refused_naming_both_versions(tmp_path: Path, consortium: Consortium) -> None:
    cfg = _config(tmp_path, consortium)
    open_validator(cfg).ledger.close()  # creates the data dir
    with Store.create_or_open(cfg.data_dir, consortium.genesis) as store:
        store.put_meta(VOTES_RECORD, canonical({"view": 2, "prepared": None, "view_change": None}))
    with pytest.raises(NodeStartError, match="vote record version 1, this titlechain reads version 2"):
        open_validator(cfg)


async def test_a_block_is_served_by_hash_at_a_bounded_rate(node: Validator, consortium: Consortium) -> None:
    tx = _register(consortium, "WR-S", 0)
    node.service.submit(tx)
    await asyncio.wait_for(node.service.wait_committed(tx.tx_id), 10)
    block = node.ledger.store.get_block(1)
    assert block is not None
    sent: list[BlockResponse] = []
    def capture(peer: str, body: bytes) -> int:
        sent.append(parse_wire(decode(body)))  # type: ignore[arg-type]
        return len(body)

    node.transport.send_encoded = capture  # type: ignore[method-assign]
    peer = consortium.users[0].public  # the transport authenticated it; who it is does not matter here
    node.fetcher.serve(peer, BlockRequest(block.block_hash, 1))
    node.fetcher.serve(peer, BlockRequest("cd" * 32, 1))
    assert [(r.block_hash, r.block) for r in sent] == [(block.block_hash, block), ("cd" * 32, None)]
    for _ in range(BLOCK_SERVE_PER_S):
        node.fetcher.serve(peer, BlockRequest(block.block_hash, 1))
    assert len(sent) == BLOCK_SERVE_PER_S  # past the rate, requests are ignored


def test_state_retention_from_the_config_reaches_the_store(tmp_path: Path, consortium: Consortium) -> None:
    cfg = _config(tmp_path, consortium)
    archive = open_validator(cfg)
    try:
        assert archive.ledger.store.retention.archive  # the default keeps every state version
    finally:
        archive.ledger.close()
    pruning = open_validator(cfg.model_copy(update={"state_retention": 100}))
    try:
        assert pruning.ledger.store.retention.keep == 100
    finally:
        pruning.ledger.close()
    with pytest.raises(ValueError):
        NodeConfig(**{**cfg.model_dump(), "state_retention": 0})


async def test_the_memory_caps_from_the_config_reach_the_ledger(
    tmp_path: Path, consortium: Consortium, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TITLECHAIN_MEMLOG", "0.01")  # the probe runs, and reads every size named
    cfg = _config(tmp_path, consortium).model_copy(update={"cache_tree_nodes_bytes": 48_000, "cache_standing_bytes": 500})
    v = open_validator(cfg)
    await v.start()
    try:
        url = f"http://127.0.0.1:{v.rpc_port}"
        async with ClientSession() as http:
            for i in range(3):
                tx = _register(consortium, f"WR-M{i}", v.ledger.height)
                r = await http.post(f"{url}/v1/txs?wait=true&timeout=10", json=tx.to_plain())
                assert r.status == 200, await r.text()
        sizes = v.memory_sizes()
        # a generation of the tree-node cache is an eighth of its cap: a one-tx block's nodes fit in it
        assert 0 < sizes["tree_nodes_cache_bytes"] <= 48_000 and 0 < sizes["standing_cache_bytes"] <= 500
        assert {s.cap_bytes for s in v.ledger.cache_stats().values()} == {48_000, 500}
        assert sizes["rocksdb_memtables_bytes"] > 0  # the blocks just written are in the memtable
        assert sizes["mempool"] == 0 and sizes["arrived"] == 0  # every submit settled
        assert any(t.get_name() == "memory probe" for t in v._tasks)
    finally:
        await v.stop()
