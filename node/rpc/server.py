"""The node's HTTP RPC (docs/rpc.md): an aiohttp application over the `NodeApi` seam.

One table, `ROUTES`, lists every route with its method, path, parameters, request model, answer
models by status, scope and summary; the aiohttp router and the OpenAPI document are both built
from it, so the two cannot drift apart.

Input is never trusted: path and query parameters are checked here, bodies are read up to a per
route cap (the Content-Length is checked first, then the bytes actually read), JSON is parsed
defensively and txs go through `chain.tx.parse_tx`, so bad input always ends in a 4xx with a
error code of docs/rpc.md. Anything unexpected is logged and answered 503 `internal`, never a 500.

The event stream (`GET /v1/events`) subscribes to the node BEFORE replaying past blocks from the
store, then skips the heights it has already sent, so there is neither a gap nor a duplicate at
the switch from replay to live. The node's subscriber queue is bounded: a client that falls so far
behind that its queue fills is disconnected (it resumes with `Last-Event-ID`); while replaying,
the queue is renewed instead, since then the delay is the stream's own.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chain.crypto import is_account
from chain.encoding import is_hex
from chain.patterns import WholePattern
from chain.store import StoreFault
from chain.tx import Tx, TxError, parse_tx
from contracts.args import ASSET_ID_PATTERN
from node.rpc import paging
from node.rpc import models as m
from node.rpc.api import METRICS_CONTENT_TYPE, CommittedBlockEvent, NodeApi
from node.rpc.models import RpcToken
from node.errors import NodeError
from node.rpc.ratelimit import RateLimited, RateLimiter
from node.rpc.tls import Handshakes
from node.version import version

log = logging.getLogger("titlechain.rpc")

Scope = Literal["read", "submit"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_VERSION = "1"
DEFAULT_MAX_BODY = 32 * 1024 * 1024  # a full batch: 10,000 txs of a few KiB of JSON each
MAX_TX_BODY = 64 * 1024  # one tx is at most 8 KiB encoded; JSON escapes can inflate it a few times
DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
DEFAULT_BLOCKS_LIMIT = 20
MAX_BLOCKS_LIMIT = 100
DEFAULT_EVIDENCE_LIMIT = 10
MAX_EVIDENCE_LIMIT = 50  # a record is about a kilobyte; pages also stop at ~8 MiB whatever records come to hold
MAX_EVIDENCE_OFFSET = 1_000_000
MAX_HEIGHT = 2**63 - 1
HEARTBEAT_S = 15.0
WRITE_TIMEOUT_S = 30.0
MAX_STREAMS = 256
HEADER_TIMEOUT_S = 10.0  # from accept (or the end of the last answer) to a whole request head
BODY_TIMEOUT_S = 30.0  # to read a whole body once its head has arrived
LINGER_S = 2.0
MAX_CONNECTIONS = 1024  # open RPC connections; more are closed at once (keep it below `ulimit -n`)
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BATCH_YIELD_EVERY = 256  # let other requests run while a 10,000-tx batch is checked

TX_ERROR_STATUS = {
    "malformed": 400,
    "not_permitted": 403,
    "too_large": 413,
    "duplicate": 409,
    "mempool_full": 429,
    "quota_exceeded": 429,
}
RETRY_AFTER_S = 1  # what a 429 from the mempool (full, or the signer's quota) asks a client to wait
HTTP_ERROR_CODE = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    411: "malformed",
    413: "too_large",
    414: "too_large",
    415: "malformed",
    429: "too_many_requests",
    431: "too_large",
}

_DIGITS = WholePattern(r"^[0-9]{1,19}$")
_SECONDS = WholePattern(r"^[0-9]{1,4}(\.[0-9]{1,6})?$")


class ApiError(NodeError):
    """An answer other than success, in the error shape of docs/rpc.md."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def tx_error(e: TxError) -> ApiError:
    status = TX_ERROR_STATUS.get(e.code, 422)
    return ApiError(status, e.code, e.message, {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None)


# -- the route table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    scope: Scope
    ok: tuple[int, type[BaseModel] | None]  # success status and its model (None: not JSON)
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    request: type[BaseModel] | None = None
    media_type: str = "application/json"
    max_body: int = 0  # 0: no body accepted; else the cap (bounded by make_app's max_body_bytes)
    also_ok: tuple[tuple[int, type[BaseModel]], ...] = ()  # other success answers (submit with wait=true)

    @property
    def responses(self) -> dict[int, type[BaseModel] | None]:
        # every route may answer 429: every request is rate limited (_rate_limit)
        return {self.ok[0]: self.ok[1], **dict(self.also_ok), **{s: m.ErrorResponse for s in (*self.errors, 429)}}


@dataclass(frozen=True)
class TokenEntry:
    index: int  # its place in the config (the rate limiter charges "token:<index>")
    secret: bytes
    scopes: frozenset[str]
    name: str  # for the access log; the secret is never logged


@dataclass(frozen=True)
class RpcConfig:
    tokens: tuple[TokenEntry, ...]
    allowed_hosts: frozenset[str] | None  # Host names served; None: any (tokens guard the RPC)
    body_timeout_s: float
    max_body_bytes: int
    heartbeat_s: float
    write_timeout_s: float
    max_streams: int
    limiter: RateLimiter


# Keys of the application's state.
API = web.AppKey("api", NodeApi)
CONFIG = web.AppKey("config", RpcConfig)
STREAMS = web.AppKey("streams", set)
INTERNAL_ERRORS = web.AppKey("internal_errors", list)
OPENAPI = web.AppKey("openapi", dict)
ROUTE_OF = web.AppKey("route_of", dict)
TOKEN_NAME = "titlechain.token_name"  # request key: the name of the token that authorised it
CLIENT = web.RequestKey("client", str)  # whom the rate limiter charges (set by _auth when tokens are on)


# -- request helpers ---------------------------------------------------------------------------


def _api(request: web.Request) -> NodeApi:
    return request.app[API]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(obj).encode(), status=status, content_type="application/json")


def _require_writable(api: NodeApi) -> None:
    if api.role == "observer":
        raise ApiError(403, "read_only", "this node is an observer: it accepts no txs; submit them to a validator's RPC")


def _require_ready(api: NodeApi) -> None:
    if not api.ready:
        why = api.not_ready_reason() or "the node is starting or catching up"
        raise ApiError(503, "not_ready", f"{why}; retry shortly", {"Retry-After": "1"})


def _query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.matches(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, "malformed", f"query parameter {name!r} must be an integer from {lo} to {hi}")
    return int(raw)


def _query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0", ""):
        return False
    raise ApiError(400, "malformed", f"query parameter {name!r} must be true or false")


def _query_seconds(request: web.Request, name: str, default: float, hi: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _SECONDS.matches(raw) or not 0 < float(raw) <= hi:
        raise ApiError(400, "malformed", f"query parameter {name!r} must be seconds, more than 0 and at most {hi:g}")
    return float(raw)


async def _read_json(request: web.Request, route: Route) -> Any:
    cap = min(route.max_body, request.app[CONFIG].max_body_bytes)
    if request.content_length is not None and request.content_length > cap:
        raise ApiError(413, "too_large", f"body of {request.content_length} bytes; the limit here is {cap}")
    chunks: list[bytes] = []
    size = 0
    timeout = request.app[CONFIG].body_timeout_s
    # Content-Length may be absent (chunked) or lie, and a compressed body inflates as it is read:
    # count the bytes that actually arrive, after decoding. A body that trickles in is cut off
    # at the body timeout (a slowloris holds a connection and a handler for as long as it may).
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > cap:
                    raise ApiError(413, "too_large", f"body exceeds the limit of {cap} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(
            408, "timeout", f"the body did not arrive within {timeout:g} s", {"Connection": "close"}
        ) from None
    except web.RequestPayloadError as e:  # a Content-Encoding that does not decode, a broken chunk
        raise ApiError(400, "malformed", f"body could not be read: {str(e.__cause__ or e).strip()}") from None
    if not size:
        raise ApiError(400, "malformed", "empty body; a JSON document is expected")
    try:
        return json.loads(b"".join(chunks))
    except RecursionError:
        raise ApiError(400, "malformed", "JSON nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, bad UTF-8, integers too long to convert
        raise ApiError(400, "malformed", f"body is not JSON: {e}") from None


def _parse_tx(obj: Any) -> Tx:
    try:
        return parse_tx(obj)
    except TxError as e:
        raise tx_error(e) from None
    except RecursionError:
        raise ApiError(400, "malformed", "tx nested too deeply") from None


def _path_tx_id(request: web.Request) -> str:
    tx_id = request.match_info["tx_id"]
    if not is_hex(tx_id, 32):
        raise ApiError(400, "malformed", "tx_id must be 64 lowercase hex characters")
    return tx_id


def _path_asset_id(request: web.Request) -> str:
    asset_id = request.match_info["asset_id"]
    if not ASSET_ID_PATTERN.matches(asset_id):
        raise ApiError(400, "malformed", f"asset_id must match {m.ASSET_ID_PATTERN}")
    return asset_id


def _found(value: Any, what: str) -> Any:
    if value is None:
        raise ApiError(404, "not_found", f"no such {what}")
    return value


# -- handlers ----------------------------------------------------------------------------------


async def submit_tx(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    _require_writable(api)
    _require_ready(api)
    wait = _query_bool(request, "wait")
    timeout = _query_seconds(request, "timeout", DEFAULT_WAIT_S, MAX_WAIT_S)
    tx = _parse_tx(await _read_json(request, request.app[ROUTE_OF][("POST", "/v1/txs")]))
    try:
        api.submit(tx)
    except TxError as e:
        raise tx_error(e) from None
    if not wait:
        return _json({"tx_id": tx.tx_id, "status": "pending"}, 202)
    # wait_for cancels the node's future on timeout or client disconnect: the node discards it.
    try:
        receipt = await asyncio.wait_for(api.wait_committed(tx.tx_id), timeout)
    except TimeoutError:
        raise ApiError(
            504, "timeout", f"not committed within {timeout:g} s; it may still commit: GET /v1/txs/{tx.tx_id}"
        ) from None
    except TxError as e:  # the node gave up on it (expired before inclusion)
        raise tx_error(e) from None
    return _json({"tx_id": tx.tx_id, "status": "committed", "receipt": receipt})


async def submit_batch(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    _require_writable(api)
    _require_ready(api)
    obj = await _read_json(request, request.app[ROUTE_OF][("POST", "/v1/txs/batch")])
    if type(obj) is not dict or set(obj) != {"txs"} or type(obj["txs"]) is not list:
        raise ApiError(400, "malformed", 'a batch is {"txs": [tx, ...]}')
    txs = obj["txs"]
    if len(txs) > m.MAX_BATCH_TXS:
        raise ApiError(413, "too_large", f"{len(txs)} txs; a batch holds at most {m.MAX_BATCH_TXS}")
    if len(txs) > 1:  # the request itself paid for one tx in _rate_limit
        _charge(request, len(txs) - 1)
    results: list[dict[str, Any]] = []
    retry = False
    for i, raw in enumerate(txs):
        if i and i % BATCH_YIELD_EVERY == 0:
            await asyncio.sleep(0)
        try:
            tx = _parse_tx(raw)
            api.submit(tx)
        except (ApiError, TxError) as e:
            results.append({"error": {"code": e.code, "message": e.message}})
            retry = retry or TX_ERROR_STATUS.get(e.code) == 429
        else:
            results.append({"tx_id": tx.tx_id, "status": "pending"})
    # entries refused for a full mempool or a signer's quota may be sent again: say when
    headers = {"Retry-After": str(RETRY_AFTER_S)} if retry else None
    return web.json_response({"results": results}, status=202, headers=headers, dumps=_dumps)


async def get_tx(request: web.Request) -> web.StreamResponse:
    tx_id = _path_tx_id(request)
    return _json(_found(_api(request).tx_info(tx_id), f"tx {tx_id}"))


async def get_asset(request: web.Request) -> web.StreamResponse:
    asset_id = _path_asset_id(request)
    return _json(_found(_api(request).asset(asset_id), f"asset {asset_id!r}"))


def _page_query(request: web.Request) -> tuple[str | None, int]:
    """?cursor= (as a page's `next` gave it) and ?limit= of a paged list."""
    cursor = request.query.get("cursor") or None
    limit = _query_int(request, "limit", paging.DEFAULT_LIMIT, 1, paging.MAX_LIMIT) or paging.DEFAULT_LIMIT
    return cursor, limit


async def get_history(request: web.Request) -> web.StreamResponse:
    asset_id = _path_asset_id(request)
    cursor, limit = _page_query(request)
    try:
        page = _api(request).history(asset_id, cursor, limit)
    except paging.CursorError as e:
        raise ApiError(400, "malformed", str(e)) from None
    return _json(_found(page, f"asset {asset_id!r}"))


async def get_proof(request: web.Request) -> web.StreamResponse:
    """A proof of ownership, or for an id no asset holds, of absence: never a 404."""
    asset_id = _path_asset_id(request)
    proof = _api(request).proof(asset_id)
    if proof is None:
        raise ApiError(503, "not_ready", "no block is committed yet: there is no certified state root to prove against")
    return _json(proof)


async def get_account(request: web.Request) -> web.StreamResponse:
    account = request.match_info["account"]
    if not is_account(account):
        raise ApiError(400, "malformed", "account must be 64 lowercase hex characters (an Ed25519 public key)")
    cursor, limit = _page_query(request)
    try:
        return _json(_api(request).account(account, cursor, limit))
    except paging.CursorError as e:
        raise ApiError(400, "malformed", str(e)) from None


def _block_at(api: NodeApi, height: int) -> dict[str, Any]:
    if height == 0:
        raise ApiError(404, "not_found", "blocks start at height 1; the genesis is at /v1/genesis")
    return _found(api.block(height), f"block at height {height} (the head is {api.height})")


async def get_block(request: web.Request) -> web.StreamResponse:
    raw = request.match_info["height"]
    if not _DIGITS.matches(raw) or int(raw) > MAX_HEIGHT:
        raise ApiError(400, "malformed", "height must be a non-negative integer, or 'latest'")
    return _json(_block_at(_api(request), int(raw)))


async def get_latest_block(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    if api.height == 0:
        raise ApiError(404, "not_found", "no block has been committed yet")
    return _json(_block_at(api, api.height))


async def list_blocks(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    start = _query_int(request, "from", 1, 0, MAX_HEIGHT) or 1
    limit = _query_int(request, "limit", DEFAULT_BLOCKS_LIMIT, 1, MAX_BLOCKS_LIMIT) or DEFAULT_BLOCKS_LIMIT
    blocks = []
    for height in range(start, min(start + limit - 1, api.height) + 1):
        block = api.block(height)
        if block is None:
            break
        blocks.append(block)
    after = start + len(blocks)
    return _json({"blocks": blocks, "next": after if blocks and after <= api.height else None})


async def list_evidence(request: web.Request) -> web.StreamResponse:
    offset = _query_int(request, "offset", 0, 0, MAX_EVIDENCE_OFFSET) or 0
    limit = _query_int(request, "limit", DEFAULT_EVIDENCE_LIMIT, 1, MAX_EVIDENCE_LIMIT) or DEFAULT_EVIDENCE_LIMIT
    validator = request.query.get("validator")
    if validator is not None and not is_account(validator):
        raise ApiError(400, "malformed", "validator must be 64 lowercase hex characters (a validator's public key)")
    return _json(_api(request).evidence(offset, limit, validator))


async def get_status(request: web.Request) -> web.StreamResponse:
    return _json(_api(request).status())


async def get_genesis(request: web.Request) -> web.StreamResponse:
    return _json(_api(request).genesis_doc())


async def get_health(request: web.Request) -> web.StreamResponse:
    """Liveness: answering at all is the check (a supervisor restarts a node that stops answering)."""
    return _json({"status": "alive", "version": version()})


async def get_ready(request: web.Request) -> web.StreamResponse:
    """Readiness: 200 when the node accepts submits, else 503 not_ready saying why."""
    _require_ready(_api(request))
    return _json({"ready": True})


async def get_metrics(request: web.Request) -> web.StreamResponse:
    return web.Response(body=_api(request).metrics_text(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def get_openapi(request: web.Request) -> web.StreamResponse:
    return _json(request.app[OPENAPI])


# -- server-sent events ------------------------------------------------------------------------


def _sse_block(ev: CommittedBlockEvent) -> bytes:
    data = json.dumps(ev.to_plain(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {ev.height}\nevent: block\ndata: {data}\n\n".encode()


def _events_start(request: web.Request, api: NodeApi) -> int:
    last_id = request.headers.get("Last-Event-ID")
    if last_id is not None and last_id.strip() != "":
        if not _DIGITS.matches(last_id.strip()) or int(last_id) >= MAX_HEIGHT:
            raise ApiError(400, "malformed", "Last-Event-ID must be the height of the last block received")
        return int(last_id) + 1  # a reconnect resumes after what it has; it wins over ?from
    start = _query_int(request, "from", None, 0, MAX_HEIGHT)
    return api.height + 1 if start is None else max(start, 1)


class _SlowClient(Exception):
    pass


async def events(request: web.Request) -> web.StreamResponse:
    api = _api(request)
    cfg = request.app[CONFIG]
    streams = request.app[STREAMS]
    start = _events_start(request, api)
    if len(streams) >= cfg.max_streams:
        raise ApiError(429, "too_many_streams", f"this node serves at most {cfg.max_streams} event streams")
    task = asyncio.current_task()
    assert task is not None
    streams.add(task)
    queue = api.subscribe()  # before replaying, so that nothing committed meanwhile is missed
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    try:
        await resp.prepare(request)

        async def send(data: bytes) -> None:
            try:
                await asyncio.wait_for(resp.write(data), cfg.write_timeout_s)
            except TimeoutError:
                raise _SlowClient(f"a write did not complete within {cfg.write_timeout_s:g} s") from None

        async def replay(next_height: int) -> int:
            """Send stored blocks from next_height up to the head (which may move meanwhile)."""
            nonlocal queue
            while next_height <= api.height:
                ev = api.block_event(next_height)
                if ev is None:
                    break
                await send(_sse_block(ev))
                next_height += 1
                if queue.maxsize and queue.full():
                    # Our own replay kept us from the queue: renew it; what it missed comes from the store.
                    api.unsubscribe(queue)
                    queue = api.subscribe()
            return next_height

        next_height = await replay(start)
        while True:
            try:
                ev = await asyncio.wait_for(queue.get(), cfg.heartbeat_s)
            except TimeoutError:
                await send(b": keep-alive\n\n")
                next_height = await replay(next_height)  # in case the node dropped our queue
                continue
            if queue.maxsize > 1 and queue.qsize() + 1 >= queue.maxsize:  # it was full: we fell behind
                raise _SlowClient("the subscriber queue filled up")
            if ev.height < next_height:
                continue  # already sent during the replay
            while next_height < ev.height:  # the node skipped us (dropped events): fill from the store
                missing = api.block_event(next_height)
                if missing is None:
                    raise _SlowClient(f"block {next_height} not available to fill a gap")
                await send(_sse_block(missing))
                next_height += 1
            await send(_sse_block(ev))
            next_height = ev.height + 1
    except _SlowClient as e:
        log.info("event stream to %s closed: %s; the client resumes with Last-Event-ID", request.remote, e)
        resp.force_close()
    except (ConnectionError, asyncio.CancelledError):
        pass  # the client went away, or the server is shutting down
    except Exception:
        # The headers are sent: no error answer is possible any more, only closing the stream.
        log.exception("event stream to %s failed", request.remote)
        request.app[INTERNAL_ERRORS].append("events")
        resp.force_close()
    finally:
        api.unsubscribe(queue)
        streams.discard(task)
    return resp


# -- the table ---------------------------------------------------------------------------------

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


# -- middleware --------------------------------------------------------------------------------


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        resp = error_response(e.status, e.code, e.message, e.headers)
        if e.status == 408:
            resp.force_close()  # the rest of a body that timed out is not worth waiting for
        return resp
    except web.HTTPException as e:  # the router's 404/405, aiohttp's own 413
        if e.status < 400:
            raise
        if e.status >= 500:
            log.error("aiohttp answered %s for %s %s", e.status, request.method, request.path)
            request.app[INTERNAL_ERRORS].append(f"{e.status} {request.method} {request.path}")
            return error_response(503, "internal", "internal error; the node logged it")
        code = HTTP_ERROR_CODE.get(e.status, "malformed")
        headers = {"Allow": e.headers["Allow"]} if "Allow" in e.headers else None
        return error_response(e.status, code, e.reason or HTTPStatus(e.status).phrase, headers)
    except StoreFault as e:  # the node is stopping on it (node/runtime/validator.py); the client may retry elsewhere
        log.error("storage fault answering %s %s: %s", request.method, request.path, e)
        return error_response(503, "internal", "storage fault; the node is stopping")
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path)
        request.app[INTERNAL_ERRORS].append(f"{request.method} {request.path}")
        return error_response(503, "internal", "internal error; the node logged it")


def _token(cfg: RpcConfig, header: str | None) -> TokenEntry | None:
    """The configured token the header's bearer token is, or None."""
    if header is None:
        return None
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        given = presented.strip().encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None
    found: TokenEntry | None = None
    for entry in cfg.tokens:  # compare with every token, so the time does not tell which matched
        if hmac.compare_digest(entry.secret, given):
            found = entry
    return found


def _host_name(value: str) -> str:
    """The name part of a Host or Origin authority: without port, brackets or a final dot, lowercase."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0].rstrip(".") if value.count(":") == 1 else value.rstrip(".")


def _origin_host(origin: str) -> str | None:
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https"):
        return None  # "null" (a sandboxed page, a file: URL) or anything odd: cross-site
    return _host_name(rest.split("/", 1)[0])


@web.middleware
async def _browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """DNS rebinding and cross-site writes from a browser.

    Without tokens only loopback names and configured names may appear in Host: a page whose
    name an attacker re-points at 127.0.0.1 is refused. A write must be JSON (a browser cannot
    send `application/json` cross-site without a CORS preflight, which this node never grants),
    and is refused if the browser says it comes from another site (Sec-Fetch-Site, Origin)."""
    cfg = request.app[CONFIG]
    allowed = cfg.allowed_hosts
    host = _host_name(request.headers.get("Host", ""))
    if allowed is not None and host not in allowed:
        raise ApiError(
            403, "forbidden", f"Host {host!r} is not served here; an operator can add it to rpc_allowed_hosts"
        )
    if request.method not in WRITE_METHODS or request.match_info.http_exception is not None:
        return await handler(request)  # a read, or no such route/method: the router's 404/405 follows
    fetch_site = request.headers.get("Sec-Fetch-Site", "").lower()
    if fetch_site not in ("", "same-origin", "none"):
        raise ApiError(403, "forbidden", f"cross-site write refused (Sec-Fetch-Site: {fetch_site})")
    origin = request.headers.get("Origin")
    if origin is not None:
        origin_host = _origin_host(origin)
        if origin_host is None or origin_host != host or (allowed is not None and origin_host not in allowed):
            raise ApiError(403, "forbidden", f"cross-site write refused (Origin: {origin[:100]})")
    if request.body_exists and request.content_type != "application/json":
        raise ApiError(403, "forbidden", "a write must be sent with Content-Type: application/json")
    return await handler(request)


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    if not cfg.tokens:
        return await handler(request)
    header = request.headers.get("Authorization")
    token = _token(cfg, header)
    if token is None:
        challenge = 'Bearer realm="titlechain"' + ("" if header is None else ', error="invalid_token"')
        what = "missing Authorization: Bearer <token>" if header is None else "invalid token"
        raise ApiError(401, "unauthorized", what, {"WWW-Authenticate": challenge})
    request[TOKEN_NAME] = token.name
    request[CLIENT] = f"token:{token.index}"  # the rate limit follows the token, wherever it is used from
    route = request.app[ROUTE_OF].get(request.match_info.route)
    if route is not None and route.scope not in token.scopes:
        raise ApiError(403, "forbidden", f"this token lacks the {route.scope!r} scope")
    return await handler(request)


def _charge(request: web.Request, cost: int) -> None:
    """Charge the request's client `cost` units of its rate limit, or answer 429 with Retry-After."""
    client = request.get(CLIENT) or f"address:{request.remote or 'unknown'}"
    try:
        request.app[CONFIG].limiter.take(client, cost)
    except RateLimited as e:
        raise ApiError(429, "rate_limited", e.message, {"Retry-After": str(e.retry_after_s)}) from None


@web.middleware
async def _rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One unit per request, charged before the body is read; a batch pays for its other txs
    once its size is known (submit_batch). Runs after _auth, so a token's requests share one bucket
    and a request with no valid token is refused before it costs anyone's allowance."""
    _charge(request, 1)
    return await handler(request)


# -- the application ---------------------------------------------------------------------------


async def _stop_streams(app: web.Application) -> None:
    streams: set[asyncio.Task[None]] = app[STREAMS]
    for task in list(streams):
        task.cancel()


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "localhost.localdomain"})


def make_app(
    api: NodeApi,
    *,
    tokens: Sequence[RpcToken] = (),
    allowed_hosts: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY,
    body_timeout_s: float = BODY_TIMEOUT_S,
    heartbeat_s: float = HEARTBEAT_S,
    write_timeout_s: float = WRITE_TIMEOUT_S,
    max_streams: int = MAX_STREAMS,
    rate_limiter: RateLimiter | None = None,
) -> web.Application:
    """The RPC application; `rate_limiter` None gives one with the default limits. Without tokens,
    only loopback names and `allowed_hosts` are served."""
    if not (max_body_bytes > 0 and heartbeat_s > 0 and write_timeout_s > 0 and max_streams > 0 and body_timeout_s > 0):
        raise ValueError(
            "max_body_bytes, body_timeout_s, heartbeat_s, write_timeout_s and max_streams must be positive"
        )
    if not all(math.isfinite(x) for x in (heartbeat_s, write_timeout_s, body_timeout_s)):
        raise ValueError("heartbeat_s, write_timeout_s and body_timeout_s must be finite")
    app = web.Application(middlewares=[_errors, _browser_guard, _auth, _rate_limit], client_max_size=max_body_bytes)
    app[API] = api
    app[CONFIG] = RpcConfig(
        tokens=tuple(
            TokenEntry(i, t.token.encode("utf-8", "surrogateescape"), frozenset(t.scopes), t.name or f"token#{i + 1}")
            for i, t in enumerate(tokens)
        ),
        allowed_hosts=None if tokens else LOOPBACK_NAMES | {_host_name(h) for h in allowed_hosts},
        body_timeout_s=body_timeout_s,
        max_body_bytes=max_body_bytes,
        heartbeat_s=heartbeat_s,
        write_timeout_s=write_timeout_s,
        max_streams=max_streams,
        limiter=rate_limiter or RateLimiter(),
    )
    app[STREAMS] = set()
    app[INTERNAL_ERRORS] = []
    app[OPENAPI] = openapi_document(ROUTES, secured=bool(tokens))
    route_of: dict[Any, Route] = {}
    for r in ROUTES:
        route_of[app.router.add_route(r.method, r.path, r.handler)] = r
        route_of[(r.method, r.path)] = r
    app[ROUTE_OF] = route_of
    app.on_shutdown.append(_stop_streams)
    return app


class AccessLog(AbstractAccessLogger):
    """One line per request: who (the token's name, never its value), what, the answer, how long."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.1fms token=%s",
            request.remote, request.method, request.path, response.status, time * 1000, request.get(TOKEN_NAME, "-"),
        )


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed at once, before it costs a handler."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class _CappedSite(web.TCPSite):
    """A TCP site that accepts at most `max_connections` open connections; the rest are closed at once
    (a slowloris must not exhaust the process's file descriptors)."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, max_connections: int,
        ssl_context: ssl.SSLContext | None = None, handshake_timeout_s: float = HEADER_TIMEOUT_S,
    ) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self.handshake_timeout_s = handshake_timeout_s
        self._handshakes: Handshakes | None = None
        self.max_connections = max_connections
        self.refused = 0

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        tls = Handshakes(self._ssl_context, self.handshake_timeout_s) if self._ssl_context else None
        self._handshakes = tls

        def protocol() -> asyncio.Protocol:
            # with TLS, sockets still in their handshake count too (node/rpc/tls.py says why)
            if len(server.connections) + (tls.count if tls is not None else 0) >= self.max_connections:
                self.refused += 1
                if self.refused % 1000 == 1:
                    log.warning("RPC connection cap (%d) reached: closing new connections (%d so far)",
                                self.max_connections, self.refused)
                return _Refused()
            return tls.protocol(server) if tls is not None else server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(protocol, self._host, self._port, backlog=self._backlog)

    async def stop(self) -> None:
        if self._handshakes is not None:
            await self._handshakes.close()
        await super().stop()


async def serve(
    api: NodeApi,
    host: str,
    port: int,
    tokens: Sequence[RpcToken] = (),
    *,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    max_connections: int = MAX_CONNECTIONS,
    access_log: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    **options: Any,
) -> web.AppRunner:
    """Start the RPC on host:port; stop it with `await runner.cleanup()`.

    `port` 0 binds a free port: read it back from `runner.addresses`. A connection must deliver a
    whole request head within `header_timeout_s` of being accepted or of its last answer (aiohttp's
    keep-alive timer, which a trickle of bytes does not reset), or it is closed. With `ssl_context`
    the site speaks HTTPS only (a plain HTTP request to it fails the TLS handshake).
    """
    if not (header_timeout_s > 0 and math.isfinite(header_timeout_s) and max_connections > 0):
        raise ValueError("header_timeout_s and max_connections must be positive")
    runner = web.AppRunner(
        make_app(api, tokens=tokens, **options),
        access_log=logging.getLogger("titlechain.access") if access_log else None,
        access_log_class=AccessLog,
        keepalive_timeout=header_timeout_s,
        # after an answer sent before its body was read (413, 408), aiohttp drains the rest for this
        # long so the client sees the answer, not a reset; a slow client must not stretch it
        lingering_time=min(LINGER_S, options.get("body_timeout_s", BODY_TIMEOUT_S)),
        shutdown_timeout=5.0,
    )
    await runner.setup()
    site = _CappedSite(runner, host, port, max_connections, ssl_context, header_timeout_s)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
