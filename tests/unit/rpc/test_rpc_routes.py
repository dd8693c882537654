"""Every route of docs/rpc.md and every error status, against the in-memory node."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from rpc_fake import FakeNode, check_answer, rpc_client, signed, until

from chain.encoding import hash_hex
from chain.tx import EXPIRY_WINDOW
from node.consensus.evidence import EquivocationEvidence, verify_evidence
from node.consensus.messages import Prepare, Signed
from node.rpc.base import INTERNAL_ERRORS
from node.rpc.models import MAX_BATCH_TXS

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[TestClient]:
    async with rpc_client(node) as c:
        yield c
    assert c.server.app[INTERNAL_ERRORS] == []  # bad input must never take the internal-error path


async def call(client: TestClient, method: str, template: str, path: str | None = None, **kw: Any) -> tuple[int, Any]:
    r = await client.request(method, path or template, **kw)
    body = await r.json() if r.content_type == "application/json" else await r.read()
    check_answer(method, template, r.status, body)
    return r.status, body


async def submit(client: TestClient, tx_json: Any, query: str = "") -> tuple[int, Any]:
    return await call(client, "POST", "/v1/txs", "/v1/txs" + query, json=tx_json)


# -- submit ------------------------------------------------------------------------------------


async def test_submit_accepts_and_tx_becomes_pending_then_committed(client: TestClient, node: FakeNode) -> None:
    tx = signed(node)
    assert await submit(client, tx.to_plain()) == (202, {"tx_id": tx.tx_id, "status": "pending"})
    status, info = await call(client, "GET", "/v1/txs/{tx_id}", f"/v1/txs/{tx.tx_id}")
    assert status == 200 and info["status"] == "pending" and info["tx"] == tx.to_plain() and info["receipt"] is None
    node.commit()
    status, info = await call(client, "GET", "/v1/txs/{tx_id}", f"/v1/txs/{tx.tx_id}")
    assert (status, info["status"], info["height"], info["receipt"]["status"]) == (200, "committed", 1, "ok")


async def test_submit_wait_answers_with_receipt_once_committed(client: TestClient, node: FakeNode) -> None:
    import asyncio

    tx = signed(node)
    pending = asyncio.ensure_future(submit(client, tx.to_plain(), "?wait=true&timeout=20"))
    await until(lambda: tx.tx_id in node.waiters or pending.done())
    assert not pending.done(), pending.result()
    node.commit()
    status, body = await asyncio.wait_for(pending, 10)
    assert status == 200 and body["status"] == "committed" and body["tx_id"] == tx.tx_id
    assert body["receipt"] == {"tx_id": tx.tx_id, "height": 1, "index": 0, "status": "ok", "error": None, "events": []}


async def test_submit_wait_times_out_with_504_and_the_tx_stays_pending(client: TestClient, node: FakeNode) -> None:
    tx = signed(node)
    status, body = await submit(client, tx.to_plain(), "?wait=true&timeout=0.05")
    assert status == 504 and body["error"]["code"] == "timeout"
    assert all(f.cancelled() for f in node.waiters[tx.tx_id])  # the node's future was released
    assert tx.tx_id in node.mempool


@pytest.mark.parametrize("query", ["?wait=maybe", "?wait=true&timeout=0", "?wait=true&timeout=301", "?wait=true&timeout=nan",
                                   "?wait=true&timeout=-1", "?wait=true&timeout=1e3", "?timeout=abc"])
async def test_bad_wait_or_timeout_is_400(client: TestClient, node: FakeNode, query: str) -> None:
    status, body = await submit(client, signed(node).to_plain(), query)
    assert status == 400 and body["error"]["code"] == "malformed"
    assert not node.mempool


async def test_duplicate_is_409(client: TestClient, node: FakeNode) -> None:
    tx = signed(node)
    assert (await submit(client, tx.to_plain()))[0] == 202
    status, body = await submit(client, tx.to_plain())
    assert status == 409 and body["error"]["code"] == "duplicate"
    node.commit()
    assert (await submit(client, tx.to_plain()))[0] == 409  # committed once, ever


def _tampered(tx_json: dict[str, Any]) -> dict[str, Any]:
    sig = tx_json["sig"]
    return {"body": tx_json["body"], "sig": ("0" if sig[0] != "0" else "1") + sig[1:]}


@pytest.mark.parametrize(
    "make, code",
    [
        (lambda n: _tampered(signed(n).to_plain()), "bad_signature"),
        (lambda n: signed(n, chain_id="other-chain").to_plain(), "wrong_chain"),
        (lambda n: signed(n, expires=0).to_plain(), "expired"),
        (lambda n: signed(n, expires=n.height + 2 + EXPIRY_WINDOW).to_plain(), "expires_too_far"),
        (lambda n: signed(n, op="asset.steal").to_plain(), "unknown_op"),
        (lambda n: signed(n, op="asset.transfer", args={"asset_id": "", "to": "ab" * 32}).to_plain(), "invalid_args"),
    ],
)
async def test_invalid_txs_are_422_with_their_code(client: TestClient, node: FakeNode, make: Any, code: str) -> None:
    status, body = await submit(client, make(node))
    assert (status, body["error"]["code"]) == (422, code)
    assert not node.mempool


@pytest.mark.parametrize("raw", [b"{", b"", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000, b'{"body": 1e999999}', b"1" * 5000, b"NaN"])
async def test_malformed_json_is_400(client: TestClient, raw: bytes) -> None:
    status, body = await call(client, "POST", "/v1/txs", data=raw, headers={"Content-Type": "application/json"})
    assert status in (400, 413) and body["error"]["code"] in ("malformed", "too_large")
    if len(raw) < 64 * 1024:
        assert status == 400


@pytest.mark.parametrize("obj", [[], {}, {"body": {}, "sig": "00"}, {"body": {}, "sig": "0" * 128}, "tx", 7, None,
                                 {"body": {"chain_id": "x"}, "sig": "0" * 128, "extra": 1}])
async def test_not_a_tx_shape_is_400(client: TestClient, obj: Any) -> None:
    status, body = await submit(client, obj)
    assert (status, body["error"]["code"]) == (400, "malformed")


async def test_float_in_args_is_400(client: TestClient, node: FakeNode) -> None:
    tx = signed(node).to_plain()
    tx["body"]["args"]["amount"] = 1.5
    assert (await submit(client, tx))[0] == 400


async def test_tx_over_the_encoded_limit_is_413(client: TestClient, node: FakeNode) -> None:
    args = {"asset_id": "WR-big", "class": "warehouse_receipt", "owner": node.consortium.users[0].public,
            "doc_hash": "ab" * 32, "meta": {"note": "x" * 9000}}
    raw = {"body": {"chain_id": node.chain_id, "signer": node.consortium.issuer.public, "op": "asset.register",
                    "args": args, "nonce": "n1", "expires": 50}, "sig": "0" * 128}
    status, body = await submit(client, raw)
    assert (status, body["error"]["code"]) == (413, "too_large")


async def test_body_over_the_cap_is_413_by_content_length_and_by_bytes_read(client: TestClient) -> None:
    big = b'{"x": "' + b"a" * 70_000 + b'"}'
    status, body = await call(client, "POST", "/v1/txs", data=big, headers=JSON)
    assert (status, body["error"]["code"]) == (413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(20):
            yield b"a" * 4096

    status, body = await call(client, "POST", "/v1/txs", data=chunks(), headers=JSON)
    assert (status, body["error"]["code"]) == (413, "too_large")


async def test_mempool_full_is_429(node: FakeNode) -> None:
    node.mempool_cap = 1
    async with rpc_client(node) as client:
        assert (await submit(client, signed(node, nonce="a").to_plain()))[0] == 202
        r = await client.post("/v1/txs", json=signed(node, nonce="b").to_plain())
        assert (r.status, (await r.json())["error"]["code"], r.headers["Retry-After"]) == (429, "mempool_full", "1")


async def test_not_ready_refuses_submits_with_503_but_reads_answer(client: TestClient, node: FakeNode) -> None:
    node.ready_flag = False
    status, body = await submit(client, signed(node).to_plain())
    assert (status, body["error"]["code"]) == (503, "not_ready")
    status, body = await call(client, "POST", "/v1/txs/batch", json={"txs": []})
    assert status == 503
    status, body = await call(client, "GET", "/v1/status")
    assert status == 200 and body["ready"] is False


# -- batch -------------------------------------------------------------------------------------


async def test_batch_reports_each_tx_in_order_and_a_bad_one_fails_alone(client: TestClient, node: FakeNode) -> None:
    good1, good2 = signed(node, nonce="g1"), signed(node, nonce="g2")
    txs = [good1.to_plain(), _tampered(signed(node, nonce="b").to_plain()), {"nope": 1}, good2.to_plain(), good1.to_plain()]
    status, body = await call(client, "POST", "/v1/txs/batch", json={"txs": txs})
    assert status == 202
    r = body["results"]
    assert r[0] == {"tx_id": good1.tx_id, "status": "pending"}
    assert r[1]["error"]["code"] == "bad_signature"
    assert r[2]["error"]["code"] == "malformed"
    assert r[3] == {"tx_id": good2.tx_id, "status": "pending"}
    assert r[4]["error"]["code"] == "duplicate"
    assert set(node.mempool) == {good1.tx_id, good2.tx_id}


@pytest.mark.parametrize("obj", [[], {"txs": {}}, {"txs": [], "more": 1}, {"tx": []}])
async def test_batch_of_wrong_shape_is_400(client: TestClient, obj: Any) -> None:
    status, body = await call(client, "POST", "/v1/txs/batch", json=obj)
    assert (status, body["error"]["code"]) == (400, "malformed")


@pytest.mark.parametrize("sig", [{}, [], ["0" * 128], {"hex": "0" * 128}, None, 7])
async def test_a_sig_of_the_wrong_type_is_400_not_an_internal_error(client: TestClient, node: FakeNode, sig: Any) -> None:
    # an unhashable sig (object, list) used to reach a dict lookup in the parser: 503 internal
    tx = signed(node).to_plain()
    tx["sig"] = sig
    status, body = await submit(client, tx)
    assert (status, body["error"]["code"]) == (400, "malformed")
    status, body = await call(client, "POST", "/v1/txs/batch", json={"txs": [tx, tx]})
    assert status == 202 and [r["error"]["code"] for r in body["results"]] == ["malformed", "malformed"]


async def test_batch_over_10000_is_413(client: TestClient, node: FakeNode) -> None:
    status, body = await call(client, "POST", "/v1/txs/batch", json={"txs": [0] * (MAX_BATCH_TXS + 1)})
    assert (status, body["error"]["code"]) == (413, "too_large")
    assert not node.mempool


# -- reads -------------------------------------------------------------------------------------


async def test_tx_lookup_errors(client: TestClient) -> None:
    assert (await call(client, "GET", "/v1/txs/{tx_id}", "/v1/txs/" + "ab" * 32))[0] == 404
    for bad in ("AB" * 32, "ab" * 31, "xyz"):
        status, body = await call(client, "GET", "/v1/txs/{tx_id}", "/v1/txs/" + bad)
        assert (status, body["error"]["code"]) == (400, "malformed")


async def test_asset_history_proof_and_account(client: TestClient, node: FakeNode) -> None:
    owner = node.consortium.users[0].public
    tx = signed(node, args={"asset_id": "WR-NGB-2026-0001", "class": "warehouse_receipt", "owner": owner,
                            "doc_hash": "cd" * 32, "meta": {"doc_uri": "https://x/1"}})
    await submit(client, tx.to_plain())
    node.commit()
    status, asset = await call(client, "GET", "/v1/assets/{asset_id}", "/v1/assets/WR-NGB-2026-0001")
    assert status == 200 and asset["owner"] == owner and asset["class"] == "warehouse_receipt"
    status, hist = await call(client, "GET", "/v1/assets/{asset_id}/history", "/v1/assets/WR-NGB-2026-0001/history")
    assert status == 200 and hist["asset_id"] == "WR-NGB-2026-0001" and [e["tx_id"] for e in hist["entries"]] == [tx.tx_id]
    status, proof = await call(client, "GET", "/v1/assets/{asset_id}/proof", "/v1/assets/WR-NGB-2026-0001/proof")
    assert status == 200 and proof["asset"]["asset_id"] == "WR-NGB-2026-0001"
    status, acct = await call(client, "GET", "/v1/accounts/{account}", f"/v1/accounts/{owner}")
    assert status == 200 and acct == {"account": owner, "roles": [], "assets": ["WR-NGB-2026-0001"], "next": None,
                                      "standing_since": 1}
    status, acct = await call(client, "GET", "/v1/accounts/{account}", f"/v1/accounts/{node.consortium.issuer.public}")
    assert acct["roles"][0]["role"] == "issuer"
    for template in ("/v1/assets/{asset_id}", "/v1/assets/{asset_id}/history"):
        assert (await call(client, "GET", template, template.replace("{asset_id}", "WR-none")))[0] == 404
    # an id no asset holds has a proof too: of its absence
    status, proof = await call(client, "GET", "/v1/assets/{asset_id}/proof", "/v1/assets/WR-none/proof")
    assert (status, proof["claim"], proof["asset_id"], proof["asset"]) == (200, "absence", "WR-none", None)
    for template in ("/v1/assets/{asset_id}", "/v1/assets/{asset_id}/history", "/v1/assets/{asset_id}/proof"):
        status, body = await call(client, "GET", template, template.replace("{asset_id}", "-bad%20id"))
        assert (status, body["error"]["code"]) == (400, "malformed")
    status, body = await call(client, "GET", "/v1/accounts/{account}", "/v1/accounts/alice")
    assert (status, body["error"]["code"]) == (400, "malformed")


async def test_no_proof_before_the_first_block(client: TestClient) -> None:
    """No certified state root yet: neither ownership nor absence can be proven, and the node says why."""
    status, body = await call(client, "GET", "/v1/assets/{asset_id}/proof", "/v1/assets/WR-1/proof")
    assert (status, body["error"]["code"]) == (503, "not_ready")
    assert "no block is committed yet" in body["error"]["message"]


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%00", "%7F", "%0A%0A"])
async def test_ids_with_a_newline_or_control_character_in_the_path_are_400(client: TestClient, node: FakeNode,
                                                                            suffix: str) -> None:
    # the FakeNode would find "WR-1\n" under "WR-1" if the id check let it through (it strips nothing,
    # but a `$`-anchored pattern did: Python's $ matches before a final newline)
    owner = node.consortium.users[0].public
    await submit(client, signed(node, args={"asset_id": "WR-1", "class": "warehouse_receipt", "owner": owner,
                                            "doc_hash": "cd" * 32, "meta": {}}).to_plain())
    node.commit()
    for template in ("/v1/assets/{asset_id}", "/v1/assets/{asset_id}/history", "/v1/assets/{asset_id}/proof"):
        status, body = await call(client, "GET", template, template.replace("{asset_id}", "WR-1" + suffix))
        assert (status, body["error"]["code"]) == (400, "malformed"), (template, suffix)
    for template, good in (("/v1/txs/{tx_id}", "ab" * 32), ("/v1/accounts/{account}", owner), ("/v1/blocks/{height}", "1")):
        status, body = await call(client, "GET", template, template.split("{")[0] + good + suffix)
        assert (status, body["error"]["code"]) == (400, "malformed"), (template, suffix)


async def test_history_and_account_are_paged_and_an_unregistered_id_is_404(client: TestClient, node: FakeNode) -> None:
    owner = node.consortium.users[0].public
    for i in range(5):
        await submit(client, signed(node, args={"asset_id": f"WR-p{i}", "class": "warehouse_receipt", "owner": owner,
                                                "doc_hash": "cd" * 32, "meta": {}}).to_plain())
    node.commit()
    assets, cursor = [], None
    while True:
        status, page = await call(client, "GET", "/v1/accounts/{account}", f"/v1/accounts/{owner}?limit=2"
                                  + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200 and len(page["assets"]) <= 2
        assets += page["assets"]
        cursor = page["next"]
        if cursor is None:
            break
    assert assets == [f"WR-p{i}" for i in range(5)]
    status, hist = await call(client, "GET", "/v1/assets/{asset_id}/history", "/v1/assets/WR-p1/history?limit=1")
    assert status == 200 and len(hist["entries"]) == 1 and hist["next"] is None
    status, body = await call(client, "GET", "/v1/assets/{asset_id}/history", "/v1/assets/WR-never/history")
    assert (status, body["error"]["code"]) == (404, "not_found")
    for query in ("cursor=x", "cursor=1.2%0A", "limit=0", "limit=1001"):
        status, body = await call(client, "GET", "/v1/assets/{asset_id}/history", f"/v1/assets/WR-p1/history?{query}")
        assert (status, body["error"]["code"]) == (400, "malformed"), query
    status, body = await call(client, "GET", "/v1/accounts/{account}", f"/v1/accounts/{owner}?cursor=WR%0A")
    assert (status, body["error"]["code"]) == (400, "malformed")


async def test_blocks(client: TestClient, node: FakeNode) -> None:
    assert (await call(client, "GET", "/v1/blocks/latest"))[0] == 404
    assert await call(client, "GET", "/v1/blocks") == (200, {"blocks": [], "next": None})
    for i in range(25):
        if i % 2:
            await submit(client, signed(node, nonce=f"n{i}").to_plain())
        node.commit()
    status, latest = await call(client, "GET", "/v1/blocks/latest")
    assert status == 200 and latest["header"]["height"] == 25 and latest == node.block(25)
    status, b3 = await call(client, "GET", "/v1/blocks/{height}", "/v1/blocks/3")
    assert status == 200 and b3 == node.block(3) and b3["certificate"]["block_hash"] == b3["block_hash"]
    status, page = await call(client, "GET", "/v1/blocks")
    assert [b["header"]["height"] for b in page["blocks"]] == list(range(1, 21)) and page["next"] == 21
    status, page = await call(client, "GET", "/v1/blocks", "/v1/blocks?from=20&limit=100")
    assert [b["header"]["height"] for b in page["blocks"]] == list(range(20, 26)) and page["next"] is None
    assert (await call(client, "GET", "/v1/blocks", "/v1/blocks?from=26"))[1] == {"blocks": [], "next": None}
    for q in ("limit=101", "limit=0", "from=-1", "from=x", "limit=1.5", "from=99999999999999999999"):
        status, body = await call(client, "GET", "/v1/blocks", "/v1/blocks?" + q)
        assert (status, body["error"]["code"]) == (400, "malformed"), q
    for h, expected in (("0", 404), ("26", 404), ("-1", 400), ("1x", 400), ("9" * 30, 400)):
        assert (await call(client, "GET", "/v1/blocks/{height}", "/v1/blocks/" + h))[0] == expected, h


async def test_status_genesis_metrics(client: TestClient, node: FakeNode) -> None:
    status, st = await call(client, "GET", "/v1/status")
    assert status == 200 and st["chain_id"] == node.chain_id and st["ready"] is True and st["height"] == 0
    status, gen = await call(client, "GET", "/v1/genesis")
    assert status == 200 and gen == json.loads(json.dumps(node.genesis.doc))
    await submit(client, signed(node).to_plain())
    node.commit()
    r = await client.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = await r.text()
    for line in ("titlechain_height 1.0", 'titlechain_txs_committed_total{status="ok"} 1.0', "titlechain_mempool_txs 0.0",
                 "titlechain_commit_latency_seconds_count 1.0", "titlechain_peers_connected", "titlechain_view"):
        assert line in text


async def test_evidence_lists_verifiable_records_in_pages_and_refuses_bad_queries(client: TestClient, node: FakeNode) -> None:
    g, keys = node.genesis, node.consortium.validator_keys
    for i in (1, 2):
        a, b = (Signed.sign(keys[i], Prepare(0, 1, hash_hex(x))) for x in (b"a", b"b"))
        node.evidence_records.append(EquivocationEvidence.of(g.chain_id, g.hash, a, b).to_plain([], None))
    status, body = await call(client, "GET", "/v1/evidence")
    assert status == 200 and body["total"] == 2 and all(verify_evidence(r, g).ok for r in body["evidence"])
    status, body = await call(client, "GET", "/v1/evidence", f"/v1/evidence?offset=1&limit=1&validator={keys[2].public}")
    assert (status, body["total"], body["evidence"]) == (200, 1, [])
    for query in ("limit=0", "limit=51", "offset=-1", "validator=zz", "offset=x"):
        status, body = await call(client, "GET", "/v1/evidence", f"/v1/evidence?{query}")
        assert status == 400 and body["error"]["code"] == "malformed", query


async def test_unknown_route_and_method_answer_json_errors(client: TestClient) -> None:
    r = await client.get("/v1/nothing")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
    r = await client.delete("/v1/txs")
    assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed" and "POST" in r.headers["Allow"]


async def test_unexpected_exception_is_a_logged_503_not_a_500(node: FakeNode) -> None:
    node.fail_status = True
    async with rpc_client(node) as client:
        r = await client.get("/v1/status")
        assert r.status == 503 and (await r.json())["error"]["code"] == "internal"
        assert client.server.app[INTERNAL_ERRORS] == ["GET /v1/status"]
        node.fail_status = False
        assert (await client.get("/v1/status")).status == 200


async def test_compressed_bodies_are_decoded_capped_and_bad_ones_are_400(client: TestClient, node: FakeNode) -> None:
    import zlib

    tx = signed(node)
    status, _ = await call(client, "POST", "/v1/txs", data=zlib.compress(json.dumps(tx.to_plain()).encode()),
                           headers={**JSON, "Content-Encoding": "deflate"})
    assert status == 202 and tx.tx_id in node.mempool
    bomb = zlib.compress(b'{"a": "' + b"x" * 5_000_000 + b'"}')  # 5 KB on the wire, 5 MB inflated
    status, body = await call(client, "POST", "/v1/txs", data=bomb, headers={**JSON, "Content-Encoding": "deflate"})
    assert (status, body["error"]["code"]) == (413, "too_large")
    status, body = await call(client, "POST", "/v1/txs/batch", data=b"\x1bR" * 100, headers={**JSON, "Content-Encoding": "gzip"})
    assert (status, body["error"]["code"]) == (400, "malformed")
