"""The middleware every request passes, outermost first: errors to their answers (never a 500),
the browser guard (Host and cross-site checks), bearer-token auth and scopes, the rate limit."""

from __future__ import annotations

import hmac
import logging
from http import HTTPStatus

from aiohttp import web

from chain.store import StoreFault
from node.rpc.base import (
    CLIENT,
    CONFIG,
    HTTP_ERROR_CODE,
    INTERNAL_ERRORS,
    ROUTE_OF,
    TOKEN_NAME,
    WRITE_METHODS,
    ApiError,
    Handler,
    RpcConfig,
    TokenEntry,
    error_response,
)
from node.rpc.ratelimit import RateLimited

log = logging.getLogger("titlechain.rpc")



@web.middleware
async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
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


def token_of(cfg: RpcConfig, header: str | None) -> TokenEntry | None:
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


def host_name(value: str) -> str:
    """The name part of a Host or Origin authority: without port, brackets or a final dot, lowercase."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0].rstrip(".") if value.count(":") == 1 else value.rstrip(".")


def _origin_host(origin: str) -> str | None:
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https"):
        return None  # "null" (a sandboxed page, a file: URL) or anything odd: cross-site
    return host_name(rest.split("/", 1)[0])


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """DNS rebinding and cross-site writes from a browser.

    Without tokens only loopback names and configured names may appear in Host: a page whose
    name an attacker re-points at 127.0.0.1 is refused. A write must be JSON (a browser cannot
    send `application/json` cross-site without a CORS preflight, which this node never grants),
    and is refused if the browser says it comes from another site (Sec-Fetch-Site, Origin)."""
    cfg = request.app[CONFIG]
    allowed = cfg.allowed_hosts
    host = host_name(request.headers.get("Host", ""))
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
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    cfg = request.app[CONFIG]
    if not cfg.tokens:
        return await handler(request)
    header = request.headers.get("Authorization")
    token = token_of(cfg, header)
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


def charge(request: web.Request, cost: int) -> None:
    """Charge the request's client `cost` units of its rate limit, or answer 429 with Retry-After."""
    client = request.get(CLIENT) or f"address:{request.remote or 'unknown'}"
    try:
        request.app[CONFIG].limiter.take(client, cost)
    except RateLimited as e:
        raise ApiError(429, "rate_limited", e.message, {"Retry-After": str(e.retry_after_s)}) from None


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One unit per request, charged before the body is read; a batch pays for its other txs
    once its size is known (submit_batch). Runs after auth, so a token's requests share one bucket
    and a request with no valid token is refused before it costs anyone's allowance."""
    charge(request, 1)
    return await handler(request)
