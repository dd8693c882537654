"""A node that joined by state sync answers 410 before_base for what lies below its base, and
whole answers for the rest (docs/rpc.md, "Nodes that joined by state sync").

The RPC runs over a NodeApi whose reads are a real synced store's (node/rpc/views.py, what the
validator's service answers with); the rest is the in-memory fake's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from ledger_fixtures import LedgerChain, build_story_across_a_set_change, sync_locally
from rpc_fake import FakeNode, rpc_client

from node.rpc import views
from node.rpc.server import INTERNAL_ERRORS
from node.runtime.ledger import Ledger


class SyncedNode(FakeNode):
    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    @property
    def height(self) -> int:
        return self.ledger.height

    @property
    def base_height(self) -> int:
        return self.ledger.store.base_height

    def tx_info(self, tx_id: str) -> dict[str, Any] | None:
        return views.committed_tx_answer(self.ledger.store, tx_id)

    def history(self, asset_id: str, cursor: str | None, limit: int) -> dict[str, Any] | None:
        return views.history_answer(self.ledger.store, asset_id, cursor, limit)

    def block(self, height: int) -> dict[str, Any] | None:
        return views.block_answer(self.ledger.store, height)


@pytest.fixture
async def synced(tmp_path: Path) -> AsyncIterator[tuple[TestClient, LedgerChain, Ledger]]:
    full = build_story_across_a_set_change(tmp_path / "full")  # heights 1-8; WR-1..3 registered at 1
    sync_locally(full.ledger.store, tmp_path / "synced", full, 7).close()
    ledger = Ledger.open(tmp_path / "synced", full.c.genesis)
    block = full.ledger.store.get_block(8)
    ledger.commit(block, full.ledger.store.get_certificate(8))
    try:
        async with rpc_client(SyncedNode(ledger)) as client:
            yield client, full, ledger
            assert client.server.app[INTERNAL_ERRORS] == []
    finally:
        ledger.close()
        full.close()


async def get(client: TestClient, path: str) -> tuple[int, Any]:
    r = await client.get(path)
    return r.status, await r.json()


async def test_below_the_base_is_410_and_from_it_whole(synced: tuple[TestClient, LedgerChain, Ledger]) -> None:
    client, full, _ = synced
    status, body = await get(client, "/v1/blocks/3")
    assert status == 410 and body["error"]["code"] == "before_base" and "base height 7" in body["error"]["message"]
    assert (await get(client, "/v1/blocks?from=1"))[0] == 410
    status, body = await get(client, "/v1/blocks/7")  # the base itself: header, tx ids, certificate
    assert status == 200 and body["header"]["height"] == 7
    assert (await get(client, "/v1/blocks/8"))[1] == views.block_answer(full.ledger.store, 8)

    old_tx = full.ledger.store.get_block(1).txs[0].tx_id  # committed in the window below the base
    status, body = await get(client, f"/v1/txs/{old_tx}")
    assert status == 410 and "committed at height 1" in body["error"]["message"]
    new_tx = full.ledger.store.get_block(8).txs[0].tx_id
    status, body = await get(client, f"/v1/txs/{new_tx}")
    assert status == 200 and body["height"] == 8
    assert (await get(client, "/v1/txs/" + "ab" * 32))[0] == 404

    status, body = await get(client, "/v1/assets/WR-1/history")  # registered at 1: part of it is below
    assert status == 410 and body["error"]["code"] == "before_base"
    assert (await get(client, "/v1/assets/NOPE/history"))[0] == 404


async def test_an_event_stream_from_below_the_base_is_410(synced: tuple[TestClient, LedgerChain, Ledger]) -> None:
    client, _, _ = synced
    status, body = await get(client, "/v1/events?from=2")
    assert status == 410 and body["error"]["code"] == "before_base"
