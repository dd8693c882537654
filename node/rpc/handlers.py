"""The route handlers: each checks its input, asks the `NodeApi` and answers in the shapes of
docs/rpc.md (node/rpc/models.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from chain.crypto import is_account
from chain.limits import MAX_HEIGHT
from chain.tx import Tx, TxError
from node.rpc import models as m
from node.rpc import paging
from node.rpc.api import METRICS_CONTENT_TYPE, NodeApi
from node.rpc.base import (
    BATCH_YIELD_EVERY,
    DEFAULT_BLOCKS_LIMIT,
    DEFAULT_EVIDENCE_LIMIT,
    DEFAULT_WAIT_S,
    DIGITS,
    MAX_BLOCKS_LIMIT,
    MAX_EVIDENCE_LIMIT,
    MAX_EVIDENCE_OFFSET,
    MAX_WAIT_S,
    OPENAPI,
    RETRY_AFTER_S,
    ROUTE_OF,
    TX_ERROR_STATUS,
    ApiError,
    api_of,
    dumps,
    found,
    json_response,
    path_asset_id,
    path_tx_id,
    query_bool,
    query_int,
    query_seconds,
    read_json,
    require_ready,
    require_writable,
    tx_error,
    tx_from_json,
)
from node.rpc.middleware import charge
from node.version import version

log = logging.getLogger("titlechain.rpc")



async def submit_tx(request: web.Request) -> web.StreamResponse:
    api = api_of(request)
    require_writable(api)
    require_ready(api)
    wait = query_bool(request, "wait")
    timeout = query_seconds(request, "timeout", DEFAULT_WAIT_S, MAX_WAIT_S)
    tx = tx_from_json(await read_json(request, request.app[ROUTE_OF][("POST", "/v1/txs")]))
    try:
        api.submit(tx)
    except TxError as e:
        raise tx_error(e) from None
    if not wait:
        return json_response({"tx_id": tx.tx_id, "status": "pending"}, 202)
    # wait_for cancels the node's future on timeout or client disconnect: the node discards it.
    try:
        receipt = await asyncio.wait_for(api.wait_committed(tx.tx_id), timeout)
    except TimeoutError:
        raise ApiError(
            504, "timeout", f"not committed within {timeout:g} s; it may still commit: GET /v1/txs/{tx.tx_id}"
        ) from None
    except TxError as e:  # the node gave up on it (expired before inclusion)
        raise tx_error(e) from None
    return json_response({"tx_id": tx.tx_id, "status": "committed", "receipt": receipt})


async def submit_batch(request: web.Request) -> web.StreamResponse:
    api = api_of(request)
    require_writable(api)
    require_ready(api)
    obj = await read_json(request, request.app[ROUTE_OF][("POST", "/v1/txs/batch")])
    if type(obj) is not dict or set(obj) != {"txs"} or type(obj["txs"]) is not list:
        raise ApiError(400, "malformed", 'a batch is {"txs": [tx, ...]}')
    txs = obj["txs"]
    if len(txs) > m.MAX_BATCH_TXS:
        raise ApiError(413, "too_large", f"{len(txs)} txs; a batch holds at most {m.MAX_BATCH_TXS}")
    if len(txs) > 1:  # the request itself paid for one tx in rate_limit
        charge(request, len(txs) - 1)
    results: list[dict[str, Any]] = []
    for start in range(0, len(txs), BATCH_YIELD_EVERY):
        if start:
            await asyncio.sleep(0)
        results.extend(_admit_chunk(api, txs[start : start + BATCH_YIELD_EVERY]))
    # entries refused for a full mempool or a signer's quota may be sent again: say when
    retry = any("error" in r and TX_ERROR_STATUS.get(r["error"]["code"]) == 429 for r in results)
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return web.json_response({"results": results}, status=202, headers=headers, dumps=dumps)


def _admit_chunk(api: NodeApi, raws: list[Any]) -> list[dict[str, Any]]:
    """One result per raw tx, in order: those that parse are admitted together (`submit_many`:
    one mempool pass and one gossip hand-off, which measured ~20 us per tx cheaper than a
    submit each; docs/performance.md), the others answered with their parse error."""
    parsed: list[Tx] = []
    answers: list[dict[str, Any] | Tx] = []
    for raw in raws:
        try:
            tx = tx_from_json(raw)
        except ApiError as e:
            answers.append(_error(e))
        else:
            parsed.append(tx)
            answers.append(tx)
    outcome = iter(api.submit_many(parsed))
    results: list[dict[str, Any]] = []
    for answer in answers:
        if isinstance(answer, Tx):
            error = next(outcome)
            answer = {"tx_id": answer.tx_id, "status": "pending"} if error is None else _error(error)
        results.append(answer)
    return results


def _error(e: ApiError | TxError) -> dict[str, Any]:
    return {"error": {"code": e.code, "message": e.message}}


async def get_tx(request: web.Request) -> web.StreamResponse:
    tx_id = path_tx_id(request)
    return json_response(found(api_of(request).tx_info(tx_id), f"tx {tx_id}"))


async def get_asset(request: web.Request) -> web.StreamResponse:
    asset_id = path_asset_id(request)
    return json_response(found(api_of(request).asset(asset_id), f"asset {asset_id!r}"))


def _page_query(request: web.Request) -> tuple[str | None, int]:
    """?cursor= (as a page's `next` gave it) and ?limit= of a paged list."""
    cursor = request.query.get("cursor") or None
    limit = query_int(request, "limit", paging.DEFAULT_LIMIT, 1, paging.MAX_LIMIT) or paging.DEFAULT_LIMIT
    return cursor, limit


async def get_history(request: web.Request) -> web.StreamResponse:
    asset_id = path_asset_id(request)
    cursor, limit = _page_query(request)
    try:
        page = api_of(request).history(asset_id, cursor, limit)
    except paging.CursorError as e:
        raise ApiError(400, "malformed", str(e)) from None
    return json_response(found(page, f"asset {asset_id!r}"))


async def get_proof(request: web.Request) -> web.StreamResponse:
    """A proof of ownership, or for an id no asset holds, of absence: never a 404."""
    asset_id = path_asset_id(request)
    proof = api_of(request).proof(asset_id)
    if proof is None:
        raise ApiError(503, "not_ready", "no block is committed yet: there is no certified state root to prove against")
    return json_response(proof)


async def get_account(request: web.Request) -> web.StreamResponse:
    account = request.match_info["account"]
    if not is_account(account):
        raise ApiError(400, "malformed", "account must be 64 lowercase hex characters (an Ed25519 public key)")
    cursor, limit = _page_query(request)
    try:
        return json_response(api_of(request).account(account, cursor, limit))
    except paging.CursorError as e:
        raise ApiError(400, "malformed", str(e)) from None


def _block_at(api: NodeApi, height: int) -> dict[str, Any]:
    if height == 0:
        raise ApiError(404, "not_found", "blocks start at height 1; the genesis is at /v1/genesis")
    return found(api.block(height), f"block at height {height} (the head is {api.height})")


async def get_block(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["height"]
    if not DIGITS.matches(raw) or int(raw) > MAX_HEIGHT:
        raise ApiError(400, "malformed", "height must be a non-negative integer, or 'latest'")
    return json_response(_block_at(api_of(request), int(raw)))


async def get_latest_block(request: web.Request) -> web.StreamResponse:
    api = api_of(request)
    if api.height == 0:
        raise ApiError(404, "not_found", "no block has been committed yet")
    return json_response(_block_at(api, api.height))


async def list_blocks(request: web.Request) -> web.StreamResponse:
    api = api_of(request)
    start = query_int(request, "from", 1, 0, MAX_HEIGHT) or 1
    limit = query_int(request, "limit", DEFAULT_BLOCKS_LIMIT, 1, MAX_BLOCKS_LIMIT) or DEFAULT_BLOCKS_LIMIT
    blocks = []
    for height in range(start, min(start + limit - 1, api.height) + 1):
        block = api.block(height)
        if block is None:
            break
        blocks.append(block)
    after = start + len(blocks)
    return json_response({"blocks": blocks, "next": after if blocks and after <= api.height else None})


async def list_evidence(request: web.Request) -> web.StreamResponse:
    offset = query_int(request, "offset", 0, 0, MAX_EVIDENCE_OFFSET) or 0
    limit = query_int(request, "limit", DEFAULT_EVIDENCE_LIMIT, 1, MAX_EVIDENCE_LIMIT) or DEFAULT_EVIDENCE_LIMIT
    validator = request.query.get("validator")
    if validator is not None and not is_account(validator):
        raise ApiError(400, "malformed", "validator must be 64 lowercase hex characters (a validator's public key)")
    return json_response(api_of(request).evidence(offset, limit, validator))


async def get_status(request: web.Request) -> web.StreamResponse:
    return json_response(api_of(request).status())


async def get_genesis(request: web.Request) -> web.StreamResponse:
    return json_response(api_of(request).genesis_doc())


async def get_health(request: web.Request) -> web.StreamResponse:
    """Liveness: answering at all is the check (a supervisor restarts a node that stops answering)."""
    return json_response({"status": "alive", "version": version()})


async def get_ready(request: web.Request) -> web.StreamResponse:
    """Readiness: 200 when the node accepts submits, else 503 not_ready saying why."""
    require_ready(api_of(request))
    return json_response({"ready": True})


async def get_metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(body=api_of(request).metrics_text(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def get_openapi(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[OPENAPI])
