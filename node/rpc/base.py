"""What every part of the RPC shares: its limits, the error shape, the route and config types,
the application's state keys and request parsing (path, query, body)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from chain.encoding import is_hex
from chain.limits import MAX_TX_BYTES
from chain.patterns import WholePattern
from chain.tx import Tx, TxError, parse_tx
from contracts.args import ASSET_ID_PATTERN
from node.errors import NodeError
from node.rpc import models as m
from node.rpc.api import NodeApi
from node.rpc.ratelimit import RateLimiter

log = logging.getLogger("titlechain.rpc")

Scope = Literal["read", "submit"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


API_VERSION = "1"
DEFAULT_MAX_BODY = 32 * 1024 * 1024  # a full batch: 10,000 txs of a few KiB of JSON each
MAX_TX_BODY = 8 * MAX_TX_BYTES  # 64 KiB: JSON escapes can inflate a tx's encoding a few times
DEFAULT_WAIT_S = 30.0
MAX_WAIT_S = 300.0
DEFAULT_BLOCKS_LIMIT = 20
MAX_BLOCKS_LIMIT = 100
DEFAULT_EVIDENCE_LIMIT = 10
MAX_EVIDENCE_LIMIT = 50  # a record is about a kilobyte; pages also stop at ~8 MiB whatever records come to hold
MAX_EVIDENCE_OFFSET = 1_000_000
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

DIGITS = WholePattern(r"^[0-9]{1,19}$")
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
        # every route may answer 429: every request is rate limited (rate_limit)
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
TOKEN_NAME = web.RequestKey("token_name", str)  # the name of the token that authorised the request
CLIENT = web.RequestKey("client", str)  # whom the rate limiter charges (set by auth when tokens are on)


# -- request helpers ---------------------------------------------------------------------------


def api_of(request: web.Request) -> NodeApi:
    return request.app[API]


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(obj).encode(), status=status, content_type="application/json")


def require_writable(api: NodeApi) -> None:
    """An observer follows the chain and never takes a tx: a write to it is refused whole."""
    if api.role == "observer":
        raise ApiError(403, "read_only", "this node is an observer: it accepts no txs; submit them to a validator's RPC")


def require_ready(api: NodeApi) -> None:
    if not api.ready:
        why = api.not_ready_reason() or "the node is starting or catching up"
        raise ApiError(503, "not_ready", f"{why}; retry shortly", {"Retry-After": "1"})


def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not DIGITS.matches(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, "malformed", f"query parameter {name!r} must be an integer from {lo} to {hi}")
    return int(raw)


def query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "false").lower()
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0", ""):
        return False
    raise ApiError(400, "malformed", f"query parameter {name!r} must be true or false")


def query_seconds(request: web.Request, name: str, default: float, hi: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _SECONDS.matches(raw) or not 0 < float(raw) <= hi:
        raise ApiError(400, "malformed", f"query parameter {name!r} must be seconds, more than 0 and at most {hi:g}")
    return float(raw)


async def read_json(request: web.Request, route: Route) -> Any:
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


def tx_from_json(obj: Any) -> Tx:
    try:
        return parse_tx(obj)
    except TxError as e:
        raise tx_error(e) from None
    except RecursionError:
        raise ApiError(400, "malformed", "tx nested too deeply") from None


def path_tx_id(request: web.Request) -> str:
    tx_id = request.match_info["tx_id"]
    if not is_hex(tx_id, 32):
        raise ApiError(400, "malformed", "tx_id must be 64 lowercase hex characters")
    return tx_id


def path_asset_id(request: web.Request) -> str:
    asset_id = request.match_info["asset_id"]
    if not ASSET_ID_PATTERN.matches(asset_id):
        raise ApiError(400, "malformed", f"asset_id must match {m.ASSET_ID_PATTERN}")
    return asset_id


def found(value: Any, what: str) -> Any:
    if value is None:
        raise ApiError(404, "not_found", f"no such {what}")
    return value
