"""The route table is the single source: the router serves exactly its rows and the OpenAPI document
describes exactly them, with every schema reference resolving."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openapi_spec_validator as validator
from rpc_fake import FakeNode, rpc_client, until

from node.rpc.api import CommittedBlockEvent
from node.rpc.models import BlockEvent, NodeStatus
from node.rpc.routes import ROUTES, openapi_document
from node.rpc.server import make_app, serve


def refs(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == "$ref"] + [r for v in obj.values() for r in refs(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in refs(v)]
    return []


def test_router_serves_exactly_the_table() -> None:
    app = make_app(FakeNode())
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    assert served == {(r.method, r.path) for r in ROUTES}


def test_openapi_lists_every_route_and_every_ref_resolves() -> None:
    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    assert {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops} == {(r.method, r.path) for r in ROUTES}
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        assert set(op["responses"]) == {str(s) for s in r.responses}
        for p in r.params:
            assert any(q["name"] == p.name and q["in"] == p.where for q in op["parameters"])
    submit = doc["paths"]["/v1/txs"]["post"]
    assert set(submit["responses"]) >= {"200", "202", "400", "409", "413", "422", "429", "503", "504"}
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TxModel")
    assert schemas["AssetState"]["properties"]["class"]["type"] == "string"  # the alias, as on the wire


async def test_openapi_route_and_status_model_agree_with_the_node() -> None:
    node = FakeNode()
    async with rpc_client(node) as client:
        doc = await (await client.get("/v1/openapi.json")).json()
        assert doc == openapi_document()
        NodeStatus.model_validate(await (await client.get("/v1/status")).json())
    node.commit()
    ev = node.block_event(1)
    assert isinstance(ev, CommittedBlockEvent)
    BlockEvent.model_validate(ev.to_plain())


async def test_serve_binds_answers_and_stops_with_a_stream_open() -> None:
    node = FakeNode()
    runner = await serve(node, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/v1/status")).json()["chain_id"] == node.chain_id
        async with http.stream("GET", "/v1/events", timeout=10) as stream:
            assert stream.status_code == 200
            await until(lambda: len(node.subscribers) == 1)
            await asyncio.wait_for(runner.cleanup(), 10)  # an open stream does not hold the shutdown
    assert not node.subscribers


def test_openapi_document_is_valid_openapi_3_1() -> None:
    validator.validate(openapi_document())
    validator.validate(openapi_document(secured=True))
