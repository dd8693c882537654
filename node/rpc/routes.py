"""One table, `ROUTES`, lists every route with its method, path, parameters, request model, answer
models by status, scope and summary; the aiohttp router and the OpenAPI document are both built
from it, so the two cannot drift apart."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from node.rpc import models as m
from node.rpc import paging
from node.rpc.base import (
    API_VERSION,
    DEFAULT_BLOCKS_LIMIT,
    DEFAULT_EVIDENCE_LIMIT,
    DEFAULT_MAX_BODY,
    DEFAULT_WAIT_S,
    MAX_BLOCKS_LIMIT,
    MAX_EVIDENCE_LIMIT,
    MAX_EVIDENCE_OFFSET,
    MAX_TX_BODY,
    MAX_WAIT_S,
    Param,
    Route,
)
from node.rpc.events import events
from node.rpc.handlers import (
    get_account,
    get_asset,
    get_block,
    get_genesis,
    get_health,
    get_history,
    get_latest_block,
    get_metrics,
    get_openapi,
    get_proof,
    get_ready,
    get_status,
    get_tx,
    list_blocks,
    list_evidence,
    submit_batch,
    submit_tx,
)

log = logging.getLogger("titlechain.rpc")


_TX_ID = Param("tx_id", "path", {"type": "string", "pattern": m.HEX64}, "64 lowercase hex characters", True)
_ASSET = Param("asset_id", "path", {"type": "string", "pattern": m.ASSET_ID_PATTERN}, "the asset's id", True)
_LIMIT = Param(
    "limit", "query",
    {"type": "integer", "minimum": 1, "maximum": paging.MAX_LIMIT, "default": paging.DEFAULT_LIMIT},
    "at most this many items in the page",
)

ROUTES: tuple[Route, ...] = (
    Route(
        "POST", "/v1/txs", submit_tx, "Submit one signed transaction", "submit",
        ok=(202, m.TxAccepted), also_ok=((200, m.TxCommitted),), errors=(400, 403, 409, 413, 422, 429, 503, 504),
        request=m.TxModel, max_body=MAX_TX_BODY,
        params=(
            Param("wait", "query", {"type": "boolean", "default": False},
                  "answer 200 with the receipt once committed instead of 202 at once"),
            Param("timeout", "query", {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WAIT_S, "default": DEFAULT_WAIT_S},
                  "with wait=true: seconds to wait before answering 504 (the tx may still commit later)"),
        ),
    ),
    Route(
        "POST", "/v1/txs/batch", submit_batch, "Submit up to 10,000 signed transactions; one result per tx, in order",
        "submit", ok=(202, m.BatchResponse), errors=(400, 413, 503), request=m.BatchRequest, max_body=DEFAULT_MAX_BODY,
    ),
    Route("GET", "/v1/txs/{tx_id}", get_tx, "A transaction, pending or committed, with its receipt", "read",
          ok=(200, m.TxInfo), errors=(400, 404), params=(_TX_ID,)),
    Route("GET", "/v1/assets/{asset_id}", get_asset, "The current state of an asset", "read",
          ok=(200, m.AssetState), errors=(400, 404), params=(_ASSET,)),
    Route("GET", "/v1/assets/{asset_id}/history", get_history,
          "Every committed tx naming the asset, rejected ones included, oldest first, paged", "read",
          ok=(200, m.AssetHistory), errors=(400, 404),
          params=(_ASSET, Param("cursor", "query", {"type": "string", "pattern": paging.HISTORY_CURSOR.pattern},
                                "the `next` of the previous page; omit for the first"), _LIMIT)),
    Route("GET", "/v1/assets/{asset_id}/proof", get_proof,
          "A proof of the asset's state, or for an id no asset holds, of its absence; verifiable offline", "read",
          ok=(200, m.OwnershipProof), errors=(400, 503), params=(_ASSET,)),
    Route("GET", "/v1/accounts/{account}", get_account, "An account's roles and the assets it owns, paged", "read",
          ok=(200, m.AccountInfo), errors=(400,),
          params=(Param("account", "path", {"type": "string", "pattern": m.HEX64}, "hex Ed25519 public key", True),
                  Param("cursor", "query", {"type": "string", "pattern": m.ASSET_ID_PATTERN},
                        "the `next` of the previous page; omit for the first"), _LIMIT)),
    Route(
        "GET", "/v1/blocks", list_blocks, "Consecutive committed blocks", "read", ok=(200, m.BlockList), errors=(400,),
        params=(
            Param("from", "query", {"type": "integer", "minimum": 0, "default": 1}, "the first height"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_BLOCKS_LIMIT,
                                     "default": DEFAULT_BLOCKS_LIMIT}, "at most this many blocks"),
        ),
    ),
    Route("GET", "/v1/blocks/latest", get_latest_block, "The last committed block", "read",
          ok=(200, m.BlockInfo), errors=(404,)),
    Route("GET", "/v1/blocks/{height}", get_block, "The committed block at a height", "read",
          ok=(200, m.BlockInfo), errors=(400, 404),
          params=(Param("height", "path", {"type": "integer", "minimum": 1}, "a height; blocks start at 1", True),)),
    Route(
        "GET", "/v1/evidence", list_evidence,
        "Equivocation evidence this node holds: self-verifying records "
        "(verify offline with `titlechain audit verify-evidence`)",
        "read", ok=(200, m.EvidenceList), errors=(400,),
        params=(
            Param("offset", "query", {"type": "integer", "minimum": 0, "maximum": MAX_EVIDENCE_OFFSET, "default": 0},
                  "skip this many records"),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_EVIDENCE_LIMIT,
                                     "default": DEFAULT_EVIDENCE_LIMIT},
                  "at most this many records (pages also stop at ~8 MiB)"),
            Param("validator", "query", {"type": "string", "pattern": m.HEX64}, "only records against this validator"),
        ),
    ),
    Route("GET", "/v1/status", get_status, "The node's view of the chain and its peers", "read", ok=(200, m.NodeStatus)),
    Route("GET", "/v1/genesis", get_genesis, "The genesis document", "read", ok=(200, m.GenesisDoc)),
    Route(
        "GET", "/v1/events", events, "Server-Sent Events: one `block` event per committed block, with its receipts",
        "read", ok=(200, m.BlockEvent), errors=(400, 429), media_type="text/event-stream",
        params=(
            Param("from", "query", {"type": "integer", "minimum": 0},
                  "replay committed blocks from this height first (default: only new blocks)"),
            Param("Last-Event-ID", "header", {"type": "string", "pattern": "^[0-9]+$"},
                  "resume after this height (sent by EventSource on reconnect); wins over `from`"),
        ),
    ),
    Route("GET", "/metrics", get_metrics, "Prometheus metrics", "read", ok=(200, None), media_type="text/plain"),
    Route("GET", "/health", get_health, "Liveness: the process answers", "read", ok=(200, m.Health)),
    Route("GET", "/ready", get_ready, "Readiness: 200 when submits are accepted, else 503 saying why", "read",
          ok=(200, m.Readiness), errors=(503,)),
    Route("GET", "/v1/openapi.json", get_openapi, "This document", "read", ok=(200, m.OpenApiDoc)),
)


def find_route(method: str, path: str) -> Route:
    """The table's row for a method and path template, e.g. ("GET", "/v1/txs/{tx_id}")."""
    for r in ROUTES:
        if r.method == method and r.path == path:
            return r
    raise KeyError(f"{method} {path}")


# -- OpenAPI -----------------------------------------------------------------------------------


def openapi_document(routes: Sequence[Route] = ROUTES, *, secured: bool = False) -> dict[str, Any]:
    """An OpenAPI 3.1 document of the routes, with schemas generated from their models."""
    pairs: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(m.ErrorResponse, "serialization")]
    for r in routes:
        if r.request is not None:
            pairs.append((r.request, "validation"))
        pairs.extend((model, "serialization") for model in r.responses.values() if model is not None)
    pairs = list(dict.fromkeys(pairs))
    refs, top = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {"summary": r.summary, "operationId": r.handler.__name__, "responses": {}}
        if r.params:
            op["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required, "description": p.description, "schema": dict(p.schema)}
                for p in r.params
            ]
        if r.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(r.request, "validation")]}},
            }
        answers = r.responses
        if secured:
            answers.update({401: m.ErrorResponse, 403: m.ErrorResponse})
        for status, model in sorted(answers.items()):
            answer: dict[str, Any] = {"description": HTTPStatus(status).phrase}
            if status < 400 and r.media_type == "text/event-stream" and model is not None:
                answer["description"] = "a stream of `block` events; each event's data is a BlockEvent"
                answer["content"] = {r.media_type: {"schema": {"type": "string"}, "x-event-data": refs[(model, "serialization")]}}
            elif model is not None:
                answer["content"] = {"application/json": {"schema": refs[(model, "serialization")]}}
            else:
                answer["content"] = {r.media_type: {"schema": {"type": "string"}}}
            op["responses"][str(status)] = answer
        if secured:
            op["security"] = [{"bearer": [r.scope]}]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "titlechain node RPC",
            "version": API_VERSION,
            "description": "Register and transfer the rights to real assets on a permissioned BFT ledger.",
        },
        "paths": paths,
        "components": {"schemas": top.get("$defs", {})},
    }
    if secured:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a token of the node's config, scopes read/submit"}
        }
    return doc
