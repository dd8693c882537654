"""Admission at the node's edge: 403 not_permitted for a signer without standing (POST /v1/txs, each
batch entry, and gossip from peers), 429 with Retry-After for a signer's quota and a client's rate
limit. A real in-process validator (n = 1) behind the real RPC, and the rate limiter on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from factories import Consortium, make_consortium, seeded_key
from pydantic import ValidationError
from rpc_fake import FakeNode, rpc_client, signed

from chain.crypto import write_key_file
from chain.tx import Tx, sign_tx
from node.p2p.messages import TxGossip
from node.rpc.models import RpcToken
from node.rpc.ratelimit import RateLimited, RateLimiter
from node.runtime.config import NodeConfig
from node.runtime.validator import Validator, open_validator

OUTSIDER = seeded_key("outsider")
QUOTA = 3


@pytest.fixture
def consortium() -> Consortium:
    return make_consortium(1, params={"batch_delay_ms": 1})


@pytest.fixture
async def node(tmp_path: Path, consortium: Consortium) -> AsyncIterator[Validator]:
    consortium.genesis.write(tmp_path / "genesis.json")
    write_key_file(tmp_path / "v0.json", consortium.validator_keys[0])
    cfg = NodeConfig(
        node_id="v0", genesis=tmp_path / "genesis.json", key=tmp_path / "v0.json", data_dir=tmp_path / "data",
        peer_listen="127.0.0.1:0", rpc_listen="127.0.0.1:0", mempool_max_per_signer=QUOTA,
    )
    v = open_validator(cfg)
    await v.start()
    yield v
    await v.stop()


def _tx(c: Consortium, key: Any, asset_id: str, owner: str | None = None) -> Tx:
    args = {"asset_id": asset_id, "class": "warehouse_receipt", "owner": owner or c.users[0].public,
            "doc_hash": seeded_key(asset_id).public, "meta": {}}
    return sign_tx(key, chain_id=c.genesis.chain_id, op="asset.register", args=args, expires=50)


async def test_an_outsider_gets_403_and_nothing_of_it_is_kept(node: Validator, consortium: Consortium) -> None:
    c = consortium
    url = f"http://127.0.0.1:{node.rpc_port}"
    mine = _tx(c, OUTSIDER, "WR-OUT-1")
    ours = _tx(c, c.issuer, "WR-IN-1")
    theirs = _tx(c, OUTSIDER, "WR-OUT-2")
    async with ClientSession() as http:
        r = await http.post(f"{url}/v1/txs", json=mine.to_plain())
        body = await r.json()
        assert r.status == 403 and body["error"]["code"] == "not_permitted", body
        assert "no standing" in body["error"]["message"]
        r = await http.post(f"{url}/v1/txs/batch", json={"txs": [theirs.to_plain(), ours.to_plain()]})
        results = (await r.json())["results"]
        assert r.status == 202 and results[0]["error"]["code"] == "not_permitted"
        assert results[1] == {"tx_id": ours.tx_id, "status": "pending"}
        await asyncio.wait_for(node.service.wait_committed(ours.tx_id), 10)
        for tx in (mine, theirs):
            assert (await http.get(f"{url}/v1/txs/{tx.tx_id}")).status == 404
    assert node.ledger.asset("WR-OUT-1") is None and node.ledger.history("WR-OUT-2") == []


async def test_a_known_signer_whose_rules_fail_still_gets_a_committed_rejection(node: Validator, consortium: Consortium) -> None:
    c = consortium
    first = _tx(c, c.issuer, "WR-1", owner=c.users[0].public)
    node.service.submit(first)
    await asyncio.wait_for(node.service.wait_committed(first.tx_id), 10)
    # users[0] has standing now (it owns WR-1) but does not own WR-404: rejected, yet committed
    steal = sign_tx(c.users[0], chain_id=c.genesis.chain_id, op="asset.transfer",
                    args={"asset_id": "WR-1-other", "to": c.users[1].public}, expires=50)
    node.service.submit(steal)
    receipt = await asyncio.wait_for(node.service.wait_committed(steal.tx_id), 10)
    assert receipt["status"] == "rejected" and receipt["error"]["code"] == "asset_not_found"


async def test_gossip_from_a_peer_is_filtered_the_same_way(node: Validator, consortium: Consortium) -> None:
    c = consortium
    outsider, issuer = _tx(c, OUTSIDER, "WR-G1"), _tx(c, c.issuer, "WR-G2")
    node._on_peer_message(c.validator_keys[0].public, TxGossip((outsider, issuer), 0).to_plain())
    assert outsider.tx_id not in node.mempool and node.mempool.pending_of(OUTSIDER.public) == 0
    assert node.service.tx_info(issuer.tx_id) is not None  # admitted (pending, or committed already)


async def test_the_signer_quota_answers_429_with_retry_after(node: Validator, consortium: Consortium) -> None:
    c = consortium
    url = f"http://127.0.0.1:{node.rpc_port}"
    txs = [_tx(c, c.issuer, f"WR-Q{i}") for i in range(QUOTA + 2)]
    async with ClientSession() as http:
        r = await http.post(f"{url}/v1/txs/batch", json={"txs": [t.to_plain() for t in txs]})
        results = (await r.json())["results"]
    assert r.status == 202 and r.headers["Retry-After"] == "1"
    codes = [x.get("error", {}).get("code") for x in results]
    assert codes == [None] * QUOTA + ["quota_exceeded"] * 2
    for t in txs[:QUOTA]:
        await asyncio.wait_for(node.service.wait_committed(t.tx_id), 10)
    node.service.submit(txs[QUOTA])  # committed txs free the quota


# -- the rate limiter --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_and_says_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, 4, clock=clock)
    limiter.take("a", 4)
    with pytest.raises(RateLimited) as e:
        limiter.take("a", 3)
    assert e.value.retry_after_s == 2  # 3 units at 2/s from empty: 1.5 s, rounded up
    limiter.take("b", 4)  # another client has its own bucket
    clock.now += 1.5
    limiter.take("a", 3)
    clock.now += 100
    with pytest.raises(RateLimited, match="burst"):
        limiter.take("a", 5)  # more than the bucket can ever hold
    limiter.take("a", 4)  # a refused request took nothing; the refill stops at the burst


def test_the_bucket_table_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 2, max_clients=2, clock=clock)
    limiter.take("a", 2)
    limiter.take("b", 1)
    limiter.take("c", 1)  # "a" was least recently seen: dropped
    assert len(limiter._buckets) == 2 and "a" not in limiter._buckets


async def test_rpc_rate_limit_per_address_answers_429_with_retry_after() -> None:
    clock = Clock()
    node = FakeNode()
    async with rpc_client(node, rate_limiter=RateLimiter(1.0, 3, clock=clock)) as client:
        for _ in range(3):
            assert (await client.get("/v1/status")).status == 200
        r = await client.get("/v1/status")
        assert r.status == 429 and r.headers["Retry-After"] == "1"
        assert (await r.json())["error"]["code"] == "rate_limited"
        clock.now += 2
        txs = [signed(node, nonce=str(i)).to_plain() for i in range(3)]
        r = await client.post("/v1/txs/batch", json={"txs": txs})  # 3 units: more than the 2 left
        assert r.status == 429 and r.headers["Retry-After"] == "1" and node.mempool == {}
        clock.now += 2  # the refused request itself still cost its one unit
        r = await client.post("/v1/txs/batch", json={"txs": txs})
        assert r.status == 202 and len(node.mempool) == 3


async def test_rpc_rate_limit_follows_the_bearer_token() -> None:
    clock = Clock()
    a, b = "a" * 20, "b" * 20
    tokens = [RpcToken(token=a, scopes=("read",)), RpcToken(token=b, scopes=("read",))]
    async with rpc_client(FakeNode(), tokens=tokens, rate_limiter=RateLimiter(1.0, 2, clock=clock)) as client:
        for _ in range(2):
            assert (await client.get("/v1/status", headers={"Authorization": f"Bearer {a}"})).status == 200
        assert (await client.get("/v1/status", headers={"Authorization": f"Bearer {a}"})).status == 429
        assert (await client.get("/v1/status", headers={"Authorization": f"Bearer {b}"})).status == 200
        assert (await client.get("/v1/status")).status == 401  # no token: refused before it costs anything


def test_the_config_refuses_a_burst_smaller_than_a_batch(tmp_path: Path) -> None:
    base = {"node_id": "v0", "genesis": "g.json", "key": "k.json", "data_dir": "d", "peer_listen": "127.0.0.1:1"}
    assert NodeConfig(**base).rpc_rate_burst >= 10_000
    with pytest.raises(ValidationError, match="rpc_rate_burst"):
        NodeConfig(**base, rpc_rate_burst=100)
    with pytest.raises(ValidationError, match="mempool_max_per_signer"):
        NodeConfig(**base, mempool_max_per_signer=0)
