"""The SDK (node/sdk/client.py): sync and async clients with the same methods, submit(key, op, args)
filling in chain id, nonce and expiry, and retries on 429/503 that honour Retry-After."""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from ledger_fixtures import LedgerChain, doc
from ledger_node import LedgerNode, story_served

from node.sdk.client import NO_RETRY, AsyncClient, Client, Retry, RpcError, retry_after_seconds


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LedgerChain, LedgerNode, str]]:
    with story_served(tmp_path / "node") as s:
        yield s


def public_methods(cls: type) -> set[str]:
    return {n for n, v in vars(cls).items() if not n.startswith("_") and inspect.isfunction(v)}



def test_sync_and_async_clients_have_the_same_methods() -> None:
    sync, asyn = public_methods(Client), public_methods(AsyncClient)
    assert sync == asyn, (sync ^ asyn)
    assert {"history", "proof", "account", "blocks", "genesis", "status", "tx", "submit", "submit_batch"} <= sync
    for name in sync - {"close"}:
        assert inspect.signature(getattr(Client, name)).parameters.keys() == \
            inspect.signature(getattr(AsyncClient, name)).parameters.keys(), name


def test_submit_key_op_args_fills_in_chain_nonce_and_expiry(served: tuple[LedgerChain, LedgerNode, str]) -> None:
    ch, _, url = served
    u = ch.c.users
    with Client(url) as c:
        height = c.height()
        answer = c.submit(u[4], "asset.transfer", {"asset_id": "WR-1", "to": u[6].public}, wait=True, expires_in=9)
        info = c.tx(answer["tx_id"])
    assert answer["receipt"]["status"] == "ok"
    body = info["tx"]["body"]
    assert (body["chain_id"], body["signer"], body["expires"]) == (ch.c.genesis.chain_id, u[4].public, height + 9)
    assert len(body["nonce"]) == 32 and ch.ledger.asset("WR-1")["owner"] == u[6].public


async def test_async_client_reads_and_submits(served: tuple[LedgerChain, LedgerNode, str]) -> None:
    ch, _, url = served
    u = ch.c.users
    async with AsyncClient(url) as c:
        args = {"asset_id": "WR-77", "class": "warehouse_receipt", "owner": u[1].public, "doc_hash": doc("WR-77"), "meta": {}}
        answer = await c.submit(ch.c.issuer, "asset.register", args, wait=True)
        assert answer["receipt"]["status"] == "ok"
        history = await c.history("WR-77")
        assert [e["tx_id"] for e in history["entries"]] == [answer["tx_id"]]
        assert (await c.account(u[1].public))["assets"].count("WR-77") == 1
        assert (await c.proof("WR-77"))["asset"]["owner"] == u[1].public
        assert [b["header"]["height"] for b in await c.blocks(1, 2)] == [1, 2]
        assert [e["tx_id"] async for e in c.history_entries("WR-77", page_size=1)] == [answer["tx_id"]]
        assert "WR-77" in [a async for a in c.account_assets(u[1].public, page_size=1)]
        assert (await c.evidence())["total"] == 0
        assert (await c.genesis())["chain_id"] == ch.c.genesis.chain_id == (await c.status())["chain_id"]


def test_a_not_ready_node_is_asked_again_after_its_retry_after(served: tuple[LedgerChain, LedgerNode, str]) -> None:
    """The node answers 503 with Retry-After: 1 until it is ready; the client waits and succeeds."""
    ch, node, url = served
    node.ready_flag = False
    threading.Timer(0.5, lambda: setattr(node, "ready_flag", True)).start()
    u = ch.c.users
    t0 = time.monotonic()
    with Client(url, retry=Retry(attempts=3)) as c:
        answer = c.submit(u[4], "asset.transfer", {"asset_id": "WR-1", "to": u[6].public}, wait=True)
    assert answer["receipt"]["status"] == "ok" and time.monotonic() - t0 >= 0.9  # it waited the whole second
    node.ready_flag = False
    with Client(url, retry=NO_RETRY) as c, pytest.raises(RpcError) as e:
        c.submit(u[6], "asset.transfer", {"asset_id": "WR-1", "to": u[4].public})
    assert e.value.status == 503 and e.value.code == "not_ready"


def response(status: int, retry_after: str | None = None) -> httpx.Response:
    return httpx.Response(status, headers={"Retry-After": retry_after} if retry_after is not None else {})


def test_retry_policy() -> None:
    r = Retry(attempts=3, base=0.5, cap=4.0)
    assert r.delay(response(200), 0) is None and r.delay(response(409), 0) is None and r.delay(response(504), 0) is None
    assert r.delay(response(429, "2"), 0) == 2.0 and r.delay(response(503, "60"), 0) == 4.0  # capped
    assert r.delay(response(429, "2"), 2) is None  # the third answer is final
    assert 0.25 <= r.delay(response(503), 0) <= 0.5 and 0.5 <= r.delay(response(503), 1) <= 1.0  # backoff, jittered
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    assert 1.5 < retry_after_seconds(soon) <= 3.0  # type: ignore[operator]
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
