"""The node's HTTP RPC (docs/rpc.md): an aiohttp application over the `NodeApi` seam.

`make_app` builds the application from the route table (node/rpc/routes.py) and the middleware
(node/rpc/middleware.py); `serve` binds it with the connection cap, timeouts and TLS. Input is
never trusted: path and query parameters are checked (node/rpc/base.py), bodies are read up to a
per-route cap, JSON is parsed defensively and txs go through `chain.tx.parse_tx`, so bad input
always ends in a 4xx with an error code of docs/rpc.md. Anything unexpected is logged and answered
503 `internal`, never a 500.
"""


from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from node.rpc.api import NodeApi
from node.rpc.base import (
    API,
    BODY_TIMEOUT_S,
    CONFIG,
    DEFAULT_MAX_BODY,
    HEADER_TIMEOUT_S,
    HEARTBEAT_S,
    INTERNAL_ERRORS,
    LINGER_S,
    MAX_CONNECTIONS,
    MAX_STREAMS,
    OPENAPI,
    ROUTE_OF,
    STREAMS,
    TOKEN_NAME,
    WRITE_TIMEOUT_S,
    Route,
    RpcConfig,
    TokenEntry,
)
from node.rpc.middleware import answer_errors, auth, browser_guard, host_name, rate_limit
from node.rpc.models import RpcToken
from node.rpc.ratelimit import RateLimiter
from node.rpc.routes import ROUTES, openapi_document
from node.rpc.tls import Handshakes

log = logging.getLogger("titlechain.rpc")



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
    app = web.Application(middlewares=[answer_errors, browser_guard, auth, rate_limit], client_max_size=max_body_bytes)
    app[API] = api
    app[CONFIG] = RpcConfig(
        tokens=tuple(
            TokenEntry(i, t.token.encode("utf-8", "surrogateescape"), frozenset(t.scopes), t.name or f"token#{i + 1}")
            for i, t in enumerate(tokens)
        ),
        allowed_hosts=None if tokens else LOOPBACK_NAMES | {host_name(h) for h in allowed_hosts},
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
