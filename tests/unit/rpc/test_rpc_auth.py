"""Bearer tokens: 401 without a valid token, 403 without the route's scope, constant-time comparison."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient
from rpc_fake import FakeNode, rpc_client, signed

from node.rpc.middleware import token_of
from node.rpc.models import RpcToken
from node.rpc.routes import ROUTES
from node.rpc.server import make_app

READER = "r" * 16 + "-reader"
SUBMITTER = "s" * 16 + "-submitter"
BOTH = "b" * 16 + "-both"
TOKENS = (
    RpcToken(token=READER, scopes=("read",), name="auditor"),
    RpcToken(token=SUBMITTER, scopes=("submit",), name="back office"),
    RpcToken(token=BOTH, scopes=("read", "submit")),
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[TestClient]:
    async with rpc_client(node, tokens=TOKENS) as c:
        yield c


@pytest.mark.parametrize("path", ["/v1/status", "/metrics", "/v1/openapi.json", "/v1/blocks/latest", "/v1/nowhere", "/v1/events"])
async def test_missing_token_is_401_with_a_bearer_challenge(client: TestClient, path: str) -> None:
    r = await client.get(path)
    assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [f"Bearer {READER}x", "Bearer", f"Basic {READER}", "Bearer \u00e9\u00e9\u00e9", f"bearer  {READER[:-1]}"])
async def test_invalid_token_is_401(client: TestClient, header: str) -> None:
    r = await client.get("/v1/status", headers={"Authorization": header})
    assert r.status == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_scopes(client: TestClient, node: FakeNode) -> None:
    tx = signed(node)
    r = await client.post("/v1/txs", json=tx.to_plain(), headers=bearer(READER))
    assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
    assert not node.mempool
    r = await client.post("/v1/txs/batch", json={"txs": []}, headers=bearer(READER))
    assert r.status == 403
    r = await client.post("/v1/txs", json=tx.to_plain(), headers=bearer(SUBMITTER))
    assert r.status == 202
    r = await client.get(f"/v1/txs/{tx.tx_id}", headers=bearer(SUBMITTER))
    assert r.status == 403
    for token in (READER, BOTH):
        assert (await client.get(f"/v1/txs/{tx.tx_id}", headers=bearer(token))).status == 200
        assert (await client.get("/metrics", headers=bearer(token))).status == 200
    r = await client.post("/v1/txs", json=signed(node, nonce="2").to_plain(), headers={"Authorization": f"bearer {BOTH}"})
    assert r.status == 202


async def test_unknown_route_with_a_valid_token_is_404(client: TestClient) -> None:
    assert (await client.get("/v1/nowhere", headers=bearer(SUBMITTER))).status == 404


async def test_openapi_declares_the_scheme_and_each_route_scope(client: TestClient) -> None:
    doc = await (await client.get("/v1/openapi.json", headers=bearer(READER))).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        assert op["security"] == [{"bearer": [r.scope]}] and "401" in op["responses"] and "403" in op["responses"]
    assert {r.scope for r in ROUTES if r.method == "POST"} == {"submit"}
    assert {r.scope for r in ROUTES if r.method == "GET"} == {"read"}


async def test_without_tokens_no_auth_is_asked(node: FakeNode) -> None:
    async with rpc_client(node) as client:
        assert (await client.get("/v1/status")).status == 200
        doc = await (await client.get("/v1/openapi.json")).json()
        assert "securitySchemes" not in doc["components"]


def test_token_lookup_checks_every_token() -> None:
    from node.rpc.base import CONFIG

    cfg = make_app(FakeNode(), tokens=TOKENS)[CONFIG]
    both, submitter = token_of(cfg, f"Bearer {BOTH}"), token_of(cfg, f"Bearer {SUBMITTER}")
    assert both is not None and both.scopes == frozenset({"read", "submit"})
    assert (both.index, both.name) == (2, "token#3")
    assert submitter is not None and submitter.scopes == frozenset({"submit"}) and submitter.name == "back office"
    assert token_of(cfg, None) is None
    assert token_of(cfg, "Bearer \udcff") is None
